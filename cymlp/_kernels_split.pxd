# cython: language_level=3
"""Split mode's step (``_kernels_split.pyx``), cimported by the sync trainer."""

cimport numpy as cnp

from ._blas cimport floating
from ._kernels_common cimport Shape, Opt, StepOut
from ._kernels_terms cimport Terms


cdef Py_ssize_t split_delta_width(const Shape* s) noexcept nogil
cdef StepOut step_split(const Shape* s, floating* theta, const floating* X, const floating* Y,
                        const cnp.intp_t* rows, const cnp.int64_t* labels, Py_ssize_t n,
                        floating* scratch, floating* deltas, Py_ssize_t cap, floating* grads,
                        floating* m, floating* v, double* row_loss, unsigned char* row_correct,
                        const Opt* o, int nthreads, const Terms* t) noexcept nogil
