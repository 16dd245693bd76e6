# cython: language_level=3
"""What every compiled module shares: the shape plan, the scratch layout,
scalar maths, the row-wise passes, the optimizer update and one chunk's
forward/backward (defined in ``_kernels_common.pyx``); the training terms
(dropout, sample weights, clipping) are in ``_kernels_terms.pxd``.

The sync trainer (``_kernels.pyx``) and the parallel strategies
(``_kernels_parallel.pyx``) cimport from here, as scikit-learn's k-means
kernels cimport ``_k_means_common.pxd``.
"""

cimport numpy as cnp
from libc.math cimport log, logf, log1p, log1pf, tanh, tanhf, sqrt, sqrtf
from libc.math cimport fabs, fabsf

from ._blas cimport floating
from ._vmath cimport exp_nonpos_f32, exp_nonpos_f64
from ._kernels_terms cimport Drop, Terms

cdef enum:
    ACT_SIGMOID = 0
    ACT_TANH = 1
    ACT_RELU = 2
    ACT_LEAKY = 3
    ACT_SOFTMAX = 4
    ACT_IDENTITY = 5

cdef enum:
    LOSS_QUADRATIC = 0
    LOSS_CE = 1

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1

cdef enum:
    # Rows per chunk in chunked mode (chunks are balanced: B rows make
    # ceil(B / ROWS_PER_CHUNK) chunks of nearly equal size), and the cap on chunks.
    ROWS_PER_CHUNK = 32
    MAX_CHUNKS = 64
    # Threaded elementwise passes hand each thread blocks of this many elements.
    ELEM_BLOCK = 8192


# --------------------------------------------------------------------------
# The network's shape, the optimizer settings and a step's tallies as C structs
# --------------------------------------------------------------------------

cdef struct Shape:
    int n_layers
    int hidden
    int output
    int loss
    Py_ssize_t* sizes     # (n_layers + 1,)
    Py_ssize_t* w_off     # (n_layers,) offset of W_l in theta
    Py_ssize_t* b_off     # (n_layers,) offset of b_l in theta
    Py_ssize_t* cum       # (n_layers + 2,) cum[l] = sizes[0] + ... + sizes[l-1]
    Py_ssize_t max_width  # max(sizes[1:])
    Py_ssize_t n_params
    Py_ssize_t row_width  # scratch elements per row


cdef struct Opt:
    int kind
    bint nesterov
    double lr
    double momentum
    double weight_decay
    double beta1
    double beta2
    double eps
    double bc1            # 1 - beta1**step
    double bc2            # 1 - beta2**step


cdef struct StepOut:
    double loss_sum
    Py_ssize_t correct
    bint finite


cdef class Plan:
    cdef Shape s
    cdef cnp.intp_t[::1] _ints


cdef Opt make_opt(str optimizer, double momentum, bint nesterov, double weight_decay,
                  double beta1, double beta2, double eps) except *
cdef void adam_corrections(Opt* o, double step) noexcept nogil
cdef void check_trainer_arrays(Plan plan, theta, X, Y, labels, Py_ssize_t batch_size,
                               str optimizer) except *
cdef void check_order(const cnp.intp_t[::1] order, Py_ssize_t n_rows, Py_ssize_t first,
                      Py_ssize_t stop, Py_ssize_t batch_size) except *


# --------------------------------------------------------------------------
# Scalar maths, one source for float and double
# --------------------------------------------------------------------------

cdef inline floating _exp_nonpos(floating x) noexcept nogil:
    """e^x for x <= 0, vectorisable (cymlp/_vmath.pxd)."""
    if floating is float:
        return exp_nonpos_f32(x)
    else:
        return exp_nonpos_f64(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _fabs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


# --------------------------------------------------------------------------
# Scratch layout of a block of at most ``cap`` rows (see _kernels_common.pyx)
# --------------------------------------------------------------------------

cdef inline floating* act_ptr(const Shape* s, floating* scr, Py_ssize_t cap, int l) noexcept nogil:
    """Activations A_l of a scratch block (A_0 is the gathered input)."""
    return scr + cap * s.cum[l]


cdef inline floating* zout_ptr(const Shape* s, floating* scr, Py_ssize_t cap) noexcept nogil:
    """Z_out, the output layer's weighted input."""
    return scr + cap * s.cum[s.n_layers + 1]


cdef inline floating* delta_ptr(const Shape* s, floating* scr, Py_ssize_t cap, int which) noexcept nogil:
    """D_0 or D_1, the two ping-pong buffers of errors δ."""
    return scr + cap * (s.cum[s.n_layers + 1] + s.sizes[s.n_layers] + which * s.max_width)


cdef inline Py_ssize_t n_chunks(Py_ssize_t rows) noexcept nogil:
    """Chunks a batch of ``rows`` rows is cut into in chunked mode."""
    cdef Py_ssize_t c = (rows + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK
    if c > MAX_CHUNKS:
        c = MAX_CHUNKS
    return c if c > 0 else 1


# --------------------------------------------------------------------------
# Row-wise passes (serial: a caller that wants threads gives each a range)
# --------------------------------------------------------------------------

cdef void gather_rows(const floating* X, const cnp.intp_t* rows, Py_ssize_t r0, Py_ssize_t r1,
                      Py_ssize_t width, floating* out) noexcept nogil
cdef void bias_act_rows(floating* Z, floating* A, const floating* b, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t m, int act) noexcept nogil
cdef void deriv_range(floating* D, const floating* A, Py_ssize_t i0, Py_ssize_t i1,
                      int act) noexcept nogil
cdef void deriv_mask_range(floating* D, const floating* A, const floating* M, Py_ssize_t i0,
                           Py_ssize_t i1, int act) noexcept nogil
cdef void loss_delta_rows(const Shape* s, const floating* A_out, const floating* Z_out,
                          floating* D, const floating* Y, const cnp.intp_t* rows,
                          const cnp.int64_t* labels, Py_ssize_t r0, Py_ssize_t r1,
                          double* row_loss, unsigned char* row_correct) noexcept nogil
cdef void col_sum(const floating* D, Py_ssize_t n, Py_ssize_t m, floating* out) noexcept nogil
cdef void col_sum_range(const floating* D, Py_ssize_t n, Py_ssize_t m, Py_ssize_t j0,
                        Py_ssize_t j1, floating* out) noexcept nogil
cdef StepOut sum_rows(const double* row_loss, const unsigned char* row_correct,
                      Py_ssize_t n) noexcept nogil
cdef void update_range(floating* p, floating* G, Py_ssize_t n_src, Py_ssize_t stride,
                       Py_ssize_t i0, Py_ssize_t i1, floating n_rows, bint decay,
                       const Opt* o, floating* m, floating* v) noexcept nogil
cdef void momentum_range(floating* p, floating* vel, Py_ssize_t i0, Py_ssize_t i1,
                         const Opt* o) noexcept nogil


# --------------------------------------------------------------------------
# Forward and backward on a block of rows
# --------------------------------------------------------------------------

cdef void block_forward(const Shape* s, const floating* theta, const floating* A0,
                        floating* scr, Py_ssize_t cap, Py_ssize_t n,
                        const Drop* d, floating* dbuf, Py_ssize_t row0) noexcept nogil
cdef void block_backward_grad(const Shape* s, const floating* theta, const floating* A0,
                              floating* scr, Py_ssize_t cap, Py_ssize_t n,
                              floating* G, const Drop* d, floating* dbuf) noexcept nogil
cdef void chunk_loss_grad(const Shape* s, const floating* theta, const floating* X,
                          const floating* Y, const cnp.intp_t* rows, const cnp.int64_t* labels,
                          Py_ssize_t n, floating* scr, Py_ssize_t cap, floating* G,
                          double* row_loss, unsigned char* row_correct) noexcept nogil
cdef void chunk_loss_grad_terms(const Shape* s, const floating* theta, const floating* X,
                                const floating* Y, const cnp.intp_t* rows,
                                const cnp.int64_t* labels, Py_ssize_t n, floating* scr,
                                Py_ssize_t cap, floating* G, double* row_loss,
                                unsigned char* row_correct, const Terms* t, Py_ssize_t row0,
                                floating* dbuf) noexcept nogil
