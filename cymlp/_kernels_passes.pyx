# cython: language_level=3
"""The passes of the compiled path outside training: forward (predict, evaluate,
loss) and the loss gradient (gradcheck, ``backprop``), on whole blocks of rows.

Whole-block GEMMs, threaded by the BLAS pool as limited by the caller; the
elementwise passes run on the calling thread, with subnormals flushed as in
training (``cymlp/_fpu.pxd``).  Re-exported by :mod:`cymlp._kernels`.
"""

from cython.parallel cimport prange
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

import numpy as np
cimport numpy as cnp

from ._blas cimport floating
from ._fpu cimport flush_subnormals, restore_fpu
from ._kernels_common cimport (
    Plan as _Plan, Shape, Block, StepOut, act_ptr, delta_ptr, rows_block, sum_rows,
)
from ._kernels_block cimport loss_delta_rows, block_forward, block_backward
from ._kernels_terms cimport Drop, Dropout, weight_rows

cnp.import_array()


cdef void _check_pass(str where, _Plan plan, Py_ssize_t n_theta, Py_ssize_t n, Py_ssize_t width,
                      Py_ssize_t n_scratch) except *:
    cdef const Shape* s = &plan.s
    if n_theta != s.n_params:
        raise ValueError(f"{where}: theta has {n_theta} parameters but the network "
                         f"{plan.sizes} has {s.n_params}")
    if width != s.sizes[0]:
        raise ValueError(f"{where}: X has {width} columns but the network's input layer "
                         f"has {s.sizes[0]}")
    if n_scratch < n * s.row_width:
        raise ValueError(f"{where}: scratch holds {n_scratch} elements; {n} rows need "
                         f"{n * s.row_width} (n · plan.row_width)")


cdef void _check_rows(str where, str name, _Plan plan, Py_ssize_t rows, Py_ssize_t cols,
                      Py_ssize_t n) except *:
    cdef Py_ssize_t k = plan.s.sizes[plan.s.n_layers]
    if rows != n or cols != k:
        raise ValueError(f"{where}: {name} has shape ({rows}, {cols}), expected ({n}, {k})")


def _check_weights(str where, w, Py_ssize_t n):
    if not isinstance(w, np.ndarray) or w.dtype != np.float64 or w.ndim != 1 or w.shape[0] != n \
            or not w.flags.c_contiguous:
        raise ValueError(f"{where}: sample_weight must be a C-contiguous float64 array of {n} "
                         f"weights; got {getattr(w, 'dtype', type(w).__name__)} "
                         f"{getattr(w, 'shape', '')}")


def forward(_Plan plan not None,
            const floating[::1] theta,      # IN
            const floating[:, ::1] X,       # IN
            floating[:, ::1] out,           # OUT
            floating[::1] scratch,          # OUT
            Y=None, sample_weight=None):    # IN
    """Output activations of the rows of X into ``out``; with targets, their summed loss.

    Whole-block GEMMs (threaded by the BLAS pool as limited by the caller);
    the elementwise passes run on this thread, as in batch mode.

    Parameters
    ----------
    plan : Plan
        The network's shape.
    theta : ndarray of shape (plan.n_params,), float32 or float64
        The parameters.
    X : ndarray of shape (n, sizes[0]), theta's dtype
        The rows.
    out : ndarray of shape (n, sizes[-1]), theta's dtype
        Receives the output activations.
    scratch : ndarray of shape (>= n · plan.row_width,), theta's dtype
        Work space.
    Y : ndarray of shape (n, sizes[-1]), theta's dtype, or None
        Targets.
    sample_weight : ndarray of shape (n,), float64, or None
        With ``Y``: each row's loss counts times its weight.

    Returns
    -------
    float or None
        The summed (weighted) loss over the rows with ``Y``, else None.
    """
    cdef const Shape* s = &plan.s
    cdef Py_ssize_t n = X.shape[0], k = s.sizes[s.n_layers]
    cdef const floating[:, ::1] Yv
    cdef double[::1] row_loss
    cdef unsigned char[::1] row_correct
    cdef StepOut res
    cdef const double[::1] w
    cdef Py_ssize_t r
    cdef Block b
    _check_pass("forward", plan, theta.shape[0], n, X.shape[1], scratch.shape[0])
    _check_rows("forward", "out", plan, out.shape[0], out.shape[1], n)
    if Y is not None:
        Yv = Y
        _check_rows("forward", "Y", plan, Yv.shape[0], Yv.shape[1], n)
    if sample_weight is not None:
        _check_weights("forward", sample_weight, n)
        w = sample_weight
    if n == 0:
        return None if Y is None else 0.0
    row_loss = np.zeros(n if Y is not None else 1, dtype=np.float64)
    row_correct = np.zeros(n if Y is not None else 1, dtype=np.uint8)
    cdef unsigned int csr
    with nogil:
        csr = flush_subnormals()
        b = rows_block(&X[0, 0], &scratch[0], n, NULL, NULL, &row_loss[0], &row_correct[0])
        block_forward(s, &theta[0], &b, 0, n)
        memcpy(&out[0, 0], act_ptr(s, &scratch[0], n, s.n_layers), n * k * sizeof(floating))
        restore_fpu(csr)
    if Y is None:
        return None
    with nogil:
        csr = flush_subnormals()
        loss_delta_rows(s, &b, &Yv[0, 0], NULL, 0, n, delta_ptr(s, &scratch[0], n, 0))
        if sample_weight is not None:
            for r in range(n):
                row_loss[r] = row_loss[r] * w[r]
        res = sum_rows(&row_loss[0], &row_correct[0], n)
        restore_fpu(csr)
    return res.loss_sum


def loss_grad(_Plan plan not None,
              const floating[::1] theta,     # IN
              const floating[:, ::1] X,      # IN
              const floating[:, ::1] Y,      # IN
              floating[::1] grad,            # OUT
              floating[::1] scratch,         # OUT
              sample_weight=None,            # IN
              floating[::1] masks=None):     # IN; OUT its second half
    """Gradient sums over the rows (laid out like theta) into ``grad``; returns the summed loss.

    Parameters
    ----------
    plan : Plan
        The network's shape.
    theta : ndarray of shape (plan.n_params,), float32 or float64
        The parameters.
    X, Y : ndarrays of shape (n, sizes[0]) and (n, sizes[-1]), theta's dtype
        Rows (n >= 1) and their targets.
    grad : ndarray of shape (plan.n_params,), theta's dtype
        Receives the gradient *sums* (not divided by n).
    scratch : ndarray of shape (>= n · plan.row_width,), theta's dtype
        Work space.
    sample_weight : ndarray of shape (n,), float64, or None
        Weights with a positive sum: the sums are those of the weighted mean
        times n (row r counts w_r·n/Σw).
    masks : ndarray of shape (2 · n · Σ hidden widths,), theta's dtype, or None
        Fixed dropout multipliers M_h of every hidden layer, (n, sizes[h+1])
        each, flat and in order, followed by room for as many elements again
        (gradcheck).

    Returns
    -------
    float
        The summed (weighted) loss over the rows.
    """
    cdef const Shape* s = &plan.s
    cdef Py_ssize_t n = X.shape[0]
    cdef double[::1] row_loss
    cdef unsigned char[::1] row_correct
    cdef const double[::1] w
    cdef double wsum = 0
    cdef StepOut res
    cdef Dropout dropout = None
    cdef const Drop* d = NULL
    cdef floating* dbuf = NULL
    cdef Block b
    _check_pass("loss_grad", plan, theta.shape[0], n, X.shape[1], scratch.shape[0])
    _check_rows("loss_grad", "Y", plan, Y.shape[0], Y.shape[1], n)
    if grad.shape[0] != s.n_params:
        raise ValueError(f"loss_grad: grad has {grad.shape[0]} elements, expected {s.n_params}")
    if n == 0:
        raise ValueError("loss_grad: X has no rows")
    if sample_weight is not None:
        _check_weights("loss_grad", sample_weight, n)
        w = sample_weight
        wsum = float(np.sum(sample_weight))
        if not wsum > 0:
            raise ValueError("loss_grad: sample_weight must have a positive sum")
    if masks is not None:
        dropout = Dropout(plan.sizes, None)
        if masks.shape[0] != 2 * n * dropout.d.width or dropout.d.n_hidden == 0:
            raise ValueError(f"loss_grad: masks has {masks.shape[0]} elements, expected "
                             f"{2 * n * dropout.d.width} (2 · n · Σ hidden widths)")
        d = &dropout.d
        dbuf = &masks[0]
    cdef unsigned int csr
    row_loss = np.zeros(n, dtype=np.float64)
    row_correct = np.zeros(n, dtype=np.uint8)
    with nogil:
        csr = flush_subnormals()
        b = rows_block(&X[0, 0], &scratch[0], n, d, dbuf, &row_loss[0], &row_correct[0])
        block_forward(s, &theta[0], &b, 0, n)
        loss_delta_rows(s, &b, &Y[0, 0], NULL, 0, n, delta_ptr(s, &scratch[0], n, 0))
        if sample_weight is not None:
            weight_rows(delta_ptr(s, &scratch[0], n, 0), &row_loss[0], &w[0], NULL, n,
                        s.sizes[s.n_layers], n / wsum)
        res = sum_rows(&row_loss[0], &row_correct[0], n)
        # theta is only read: without a worker, block_backward writes the gradient only
        block_backward(s, <floating*>&theta[0], &b, n, &grad[0], NULL)
        restore_fpu(csr)
    return res.loss_sum


# --------------------------------------------------------------------------
# Finiteness of a whole input array (the boundary's check of X, issue 24)
# --------------------------------------------------------------------------

cdef enum:
    FINITE_BLOCK = 1 << 16      # elements per block of the threaded check


ctypedef fused float_bits:      # the bit pattern of a float32 or a float64
    uint32_t
    uint64_t


cdef bint finite_bits(const float_bits* u, Py_ssize_t n) noexcept nogil:   # IN (n,)
    """True if none of the n float bit patterns is inf or NaN.

    A float is inf or NaN when its exponent bits (8 in float32, 11 in float64)
    are all ones; adding one to the exponent field then carries into the sign
    bit.  An OR of those sums is integer arithmetic the compiler vectorises (a
    float sum or ``isfinite`` loop it would not, without -ffast-math), and it
    reads the data once.  Sixteen accumulators: independent SIMD registers
    even with SSE2.
    """
    cdef float_bits exponent, unit, sign, total = 0
    cdef float_bits acc[16]
    cdef Py_ssize_t i, j, n16 = n - n % 16
    if float_bits is uint32_t:
        exponent = 0x7f800000u
        unit = 0x00800000u
        sign = 0x80000000u
    else:
        exponent = 0x7ff0000000000000u
        unit = 0x0010000000000000u
        sign = 0x8000000000000000u
    for j in range(16):
        acc[j] = 0
    for i in range(0, n16, 16):
        for j in range(16):
            acc[j] |= (u[i + j] & exponent) + unit
    for i in range(n16, n):
        total |= (u[i] & exponent) + unit
    for j in range(16):
        total |= acc[j]
    return (total & sign) == 0


cdef bint blocks_finite(const float_bits* u,    # IN (n,)
                        Py_ssize_t n, int threads) noexcept nogil:
    """``finite_bits`` over blocks of FINITE_BLOCK elements on ``threads`` threads; one
    thread enters no OpenMP region (a forked child asks for one)."""
    cdef Py_ssize_t nb = (n + FINITE_BLOCK - 1) // FINITE_BLOCK, blk, i0
    cdef int bad = 0
    if threads <= 1 or nb < 2:
        return finite_bits(u, n)
    for blk in prange(nb, schedule='static', num_threads=threads):
        i0 = blk * FINITE_BLOCK
        bad |= not finite_bits(u + i0, min(i0 + FINITE_BLOCK, n) - i0)
    return not bad


def all_finite(cnp.ndarray X not None, int n_threads=1):
    """True if every element of ``X`` is finite (no NaN, no ±inf).

    Equal to ``bool(np.isfinite(X).all())`` for a C-contiguous float32 or
    float64 array of any shape, without its temporary array of booleans: one
    read of the data, in blocks on ``n_threads`` threads (the check is bound
    by memory bandwidth, which a second core adds to).  ValueError for
    another dtype or layout.
    """
    if X.dtype != np.float32 and X.dtype != np.float64:
        raise ValueError(f"all_finite: X must be float32 or float64; got {X.dtype}")
    if not X.flags.c_contiguous:
        raise ValueError("all_finite: X must be C-contiguous")
    cdef Py_ssize_t n = X.size
    cdef bint wide = X.dtype == np.float64, ok
    cdef const void* data = cnp.PyArray_DATA(X)
    cdef int threads = max(1, n_threads)
    with nogil:
        if wide:
            ok = blocks_finite(<const uint64_t*>data, n, threads)
        else:
            ok = blocks_finite(<const uint32_t*>data, n, threads)
    return ok
