# cython: language_level=3
"""Forward, loss and backward on a block of rows (defined in ``_kernels_block.pyx``),
and the pieces of a worker's step made of them.  Every function is ``noexcept
nogil`` and serial; the trainers decide what runs on which thread.
"""

cimport numpy as cnp

from ._blas cimport floating
from ._kernels_common cimport Shape, Block, Worker


# rows of a block
cdef void gather_rows(const floating* X, const cnp.intp_t* rows, Py_ssize_t r0, Py_ssize_t r1,
                      Py_ssize_t width, floating* out) noexcept nogil
cdef void gather_inputs(const Worker* w, const Block* b, Py_ssize_t r0, Py_ssize_t r1,
                        floating* A0) noexcept nogil
cdef void deriv_range(floating* D, const floating* A, const floating* M, Py_ssize_t i0,
                      Py_ssize_t i1, int act) noexcept nogil
cdef void loss_delta_rows(const Shape* s, const Block* b, const floating* Y,
                          const cnp.int64_t* labels, Py_ssize_t r0, Py_ssize_t r1,
                          floating* D) noexcept nogil

# forward and backward
cdef void layer_forward(const Shape* s, const floating* theta, const Block* b, int l,
                        Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t u0, Py_ssize_t u1) noexcept nogil
cdef void block_forward(const Shape* s, const floating* theta, const Block* b, Py_ssize_t r0,
                        Py_ssize_t r1) noexcept nogil
cdef void backprop_delta(const Shape* s, const floating* theta, const Block* b, int l,
                         Py_ssize_t r0, Py_ssize_t r1, const floating* D,
                         floating* P) noexcept nogil
cdef void backprop_delta_cols(const Shape* s, const floating* theta, const Block* b, int l,
                              Py_ssize_t n, Py_ssize_t i0, Py_ssize_t i1, const floating* D,
                              floating* P) noexcept nogil
cdef void block_backward(const Shape* s, floating* theta, const Block* b, Py_ssize_t n,
                         floating* G, const Worker* w) noexcept nogil

# a worker's step, in pieces
cdef void rows_loss(const Worker* w, const Block* b, Py_ssize_t r0, Py_ssize_t r1,
                    floating* D) noexcept nogil
cdef void forward_loss(const Worker* w, const floating* theta, const Block* b, Py_ssize_t r0,
                       Py_ssize_t r1, floating* D) noexcept nogil
cdef void chunk_loss_grad(const Worker* w, floating* theta, const cnp.intp_t* rows,
                          Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c) noexcept nogil
