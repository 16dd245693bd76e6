# cython: language_level=3
"""Split mode's step (``_kernels_split.pyx``), cimported by the sync trainer."""

cimport numpy as cnp

from ._blas cimport floating
from ._kernels_common cimport Shape, Worker, StepOut


cdef Py_ssize_t split_delta_width(const Shape* s) noexcept nogil
cdef StepOut step_split(Worker* w, floating* theta, const cnp.intp_t* rows,
                        Py_ssize_t n) noexcept nogil
