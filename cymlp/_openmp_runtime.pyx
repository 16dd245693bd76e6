# cython: language_level=3
"""The compiled path's OpenMP runtime, loaded alone: ``import cymlp`` imports this module.

Importing it loads the OpenMP runtime (libgomp) that every compiled kernel
links, without the kernels or SciPy's BLAS (whose import takes ~0.1 s), so
that a ``threadpoolctl.threadpool_limits`` block entered after ``import
cymlp`` finds cymlp's OpenMP and limits it: threadpoolctl limits only the
libraries already loaded when the block is entered.
"""

from ._openmp cimport CYMLP_OPENMP_ENABLED, omp_get_max_threads

OPENMP_ENABLED = bool(CYMLP_OPENMP_ENABLED)


def openmp_max_threads():
    """``omp_get_max_threads()``: it follows ``OMP_NUM_THREADS`` and threadpoolctl limits (1 without OpenMP)."""
    return omp_get_max_threads()
