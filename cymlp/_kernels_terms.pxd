# cython: language_level=3
"""The training terms of the compiled path: dropout, sample weights and
gradient clipping (defined in ``_kernels_terms.pyx``).

``_kernels_common.pxd`` (the structs) and ``_kernels_block`` (a block's
forward and backward) cimport from here; this module cimports nothing of theirs.
"""

cimport numpy as cnp
from libc.stdint cimport uint64_t

from ._blas cimport floating


cdef struct Drop:
    # Dropout on the hidden layers (training; or fixed masks for gradcheck).  In a block's
    # dropout buffer of ``cap`` rows, hidden layer h (layer h + 1) keeps its multipliers
    # M_h (0 or 1/(1-p)) at cap·offset[h] and its masked activations Ã_h = A_h ⊙ M_h at
    # cap·(width + offset[h]), each (cap, sizes[h + 1]) row-major.
    int n_hidden
    Py_ssize_t width              # Σ hidden widths: the buffer holds 2·cap·width elements
    const Py_ssize_t* offset      # (n_hidden,)
    const unsigned char* active   # (n_hidden,) layers with dropout
    const uint64_t* threshold     # (n_hidden,) keep a unit when (hash >> 11) >= threshold
    const double* scale           # (n_hidden,) 1/(1-p)
    const uint64_t* key           # (n_hidden,) this step's keys (set per step by the trainer)
    bint generate                 # hash the masks (training), or use the buffer's (gradcheck)
    bint in_place                 # ReLU and generated: A ← A ⊙ M in place, M never stored


cdef struct Terms:
    # What a training step adds to the plain one (issue 14); NULL/0 fields are off.
    # (The dropout buffers are the worker's: Worker.drop_buf.)
    const double* weight          # (N,) sample weights of the training rows, or NULL
    double weight_scale           # this batch's n / Σ w (set per step)
    const Drop* drop              # or NULL
    double clip_norm              # > 0: clip the mean gradient to this global norm
    double* norm_parts            # (ceil(n_params / ELEM_BLOCK),) partial sums of squares


cdef class Dropout:
    cdef Drop d
    cdef object _offset, _active, _threshold, _scale, _key
    cdef uint64_t* keys


# --------------------------------------------------------------------------
# Sample weights and dropout on a block of rows
# --------------------------------------------------------------------------

cdef void weight_rows(floating* D, double* row_loss, const double* w, const cnp.intp_t* rows,
                      Py_ssize_t n, Py_ssize_t k, double scale) noexcept nogil
cdef void drop_rows(const Drop* d, int h, const floating* A, floating* M, floating* At,
                    Py_ssize_t row0, Py_ssize_t n, Py_ssize_t m) noexcept nogil
cdef void relu_drop_deriv(floating* D, const floating* At, double scale,
                          Py_ssize_t count) noexcept nogil


cdef inline floating* mask_ptr(const Drop* d,       # IN
                               floating* dbuf,      # IN (an address: neither read nor written)
                               Py_ssize_t cap, int h) noexcept nogil:
    """M_h, the dropout multipliers of hidden layer h (layer h + 1)."""
    return dbuf + cap * d.offset[h]


cdef inline floating* dropped_ptr(const Drop* d,       # IN
                                  floating* dbuf,      # IN (an address)
                                  Py_ssize_t cap, int h) noexcept nogil:
    """Ã_h = A_{h+1} ⊙ M_h, what the next layer sees."""
    return dbuf + cap * (d.width + d.offset[h])


# --------------------------------------------------------------------------
# Gradient clipping on a range of parameters
# --------------------------------------------------------------------------

cdef double reduce_squares(floating* G, Py_ssize_t n_src, Py_ssize_t stride, Py_ssize_t i0,
                           Py_ssize_t i1, floating n_rows) noexcept nogil
cdef void scale_range(floating* G, Py_ssize_t i0, Py_ssize_t i1, floating n_rows,
                      floating factor) noexcept nogil
