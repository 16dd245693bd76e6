# cython: language_level=3
"""Gradients, clipping and the optimizer update (``_kernels_update.pyx``)."""

from ._blas cimport floating
from ._kernels_common cimport Worker


cdef void col_sum_range(const floating* D, Py_ssize_t n, Py_ssize_t m, Py_ssize_t j0,
                        Py_ssize_t j1, floating* out) noexcept nogil
cdef void layer_update(const Worker* w, floating* theta, int l, const floating* D,
                       const floating* A_in, Py_ssize_t n, Py_ssize_t u0,
                       Py_ssize_t u1) noexcept nogil
cdef void update_layers(const Worker* w, floating* theta, Py_ssize_t n_src, floating n_rows,
                        int nthreads) noexcept nogil
cdef floating clip_gradient(const Worker* w, floating* G, Py_ssize_t n_src, floating n_rows,
                            int nthreads) noexcept nogil
