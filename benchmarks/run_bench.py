"""Thin wrapper: ``python benchmarks/run_bench.py [options]`` is ``cymlp bench [options]``.

The code lives in :mod:`cymlp.bench`; see benchmarks/README.md for the results and how to read them.
For the numbers in the README, run with the OpenBLAS overrides of this machine unset::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_bench.py --json out.json --plot out.png
"""

import sys

from cymlp.bench import main

if __name__ == "__main__":
    sys.exit(main())
