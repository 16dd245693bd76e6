"""``cymlp bench``: how fast does cymlp train, and why?

This package is the ``cymlp bench`` command, installed with cymlp.  The
repository's ``benchmarks/`` folder is something else: scripts and recorded
results (benchmarks/README.md), which use this package but are not installed.

One command, three benchmarks, one timing harness::

    cymlp bench --quick                       # one SGD step per implementation, under a minute
    cymlp bench --fit                         # end-to-end fit epochs against the GEMM floor and peers
    cymlp bench --strategies                  # parallel SGD strategies: time to accuracy

Where each concern lives:

``measure``     the timing harness (warm-up, interleaved repeats, medians/IQR, idle worker
                threads between timings) and the GEMM floor
``machine``     CPU model, BLAS/OpenMP pools, load average, OPENBLAS_* overrides
``cases``       the per-step cases and the problem they share (data + initial weights)
``peers``       the per-example loop, PyTorch, scikit-learn, cymlp's two paths (optional imports)
``step``        the per-step benchmark (``cymlp bench``)
``fit``         end-to-end fit epochs (``cymlp bench --fit``): one process per implementation
                and row (``fit_worker``), rounds interleaved; ``fit_cases`` its cases and data,
                ``fit_report`` its tables, goals and chart
``strategies``  parallel SGD strategies (``cymlp bench --strategies``)
``report``      markdown tables, JSON, the charts
``command``     the command-line options
"""

from .cases import CASES, Case, Problem, make_problem
from .command import add_arguments, add_parser, main, run
from .machine import machine_info
from .measure import gemm_roofline, measure
from .peers import PerExampleLoop
from .report import markdown_table, write_json
from .step import IMPLEMENTATIONS, Implementation

__all__ = ["CASES", "IMPLEMENTATIONS", "Case", "Implementation", "PerExampleLoop", "Problem", "add_arguments",
           "add_parser", "gemm_roofline", "machine_info", "main", "make_problem", "markdown_table", "measure",
           "run", "write_json"]
