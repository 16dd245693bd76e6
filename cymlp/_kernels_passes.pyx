# cython: language_level=3
"""The passes of the compiled path outside training: forward (predict, evaluate,
loss) and the loss gradient (gradcheck, ``backprop``), on whole blocks of rows.

Whole-block GEMMs, threaded by the BLAS pool as limited by the caller; the
elementwise passes run on the calling thread, with subnormals flushed as in
training (``cymlp/_fpu.pxd``).  Re-exported by :mod:`cymlp._kernels`.
"""

from libc.string cimport memcpy

import numpy as np
cimport numpy as cnp

from ._blas cimport floating
from ._fpu cimport flush_subnormals, restore_fpu
from ._kernels_common cimport (
    Plan as _Plan, Shape, StepOut, act_ptr, zout_ptr, delta_ptr, loss_delta_rows, sum_rows,
    block_forward, block_backward_grad,
)
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


def forward(_Plan plan not None, const floating[::1] theta, const floating[:, ::1] X,
            floating[:, ::1] out, floating[::1] scratch, Y=None, sample_weight=None):
    """Output activations of the rows of X into ``out`` (n, k).

    Whole-block GEMMs (threaded by the BLAS pool as limited by the caller);
    the elementwise passes run on this thread, as in batch mode.

    ``scratch`` holds ``n · plan.row_width`` elements.  With targets ``Y``
    (n, k) returns the summed loss over the rows (else None), each row's loss
    times its weight when ``sample_weight`` (n,) float64 is given.
    """
    cdef const Shape* s = &plan.s
    cdef Py_ssize_t n = X.shape[0], cap = n, k = s.sizes[s.n_layers]
    cdef int L = s.n_layers
    cdef const floating[:, ::1] Yv
    cdef double[::1] row_loss
    cdef unsigned char[::1] row_correct
    cdef StepOut res
    cdef const double[::1] w
    cdef Py_ssize_t r
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
    cdef unsigned int csr
    with nogil:
        csr = flush_subnormals()
        block_forward(s, &theta[0], &X[0, 0], &scratch[0], cap, n, NULL, NULL, 0)
        memcpy(&out[0, 0], act_ptr(s, &scratch[0], cap, L), n * k * sizeof(floating))
        restore_fpu(csr)
    if Y is None:
        return None
    row_loss = np.zeros(n, dtype=np.float64)
    row_correct = np.zeros(n, dtype=np.uint8)
    with nogil:
        csr = flush_subnormals()
        loss_delta_rows(s, act_ptr(s, &scratch[0], cap, L), zout_ptr(s, &scratch[0], cap),
                        delta_ptr(s, &scratch[0], cap, 0), &Yv[0, 0], NULL, NULL, 0, n,
                        &row_loss[0], &row_correct[0])
        if sample_weight is not None:
            for r in range(n):
                row_loss[r] = row_loss[r] * w[r]
        res = sum_rows(&row_loss[0], &row_correct[0], n)
        restore_fpu(csr)
    return res.loss_sum


def loss_grad(_Plan plan not None, const floating[::1] theta, const floating[:, ::1] X,
              const floating[:, ::1] Y, floating[::1] grad, floating[::1] scratch,
              sample_weight=None, floating[::1] masks=None):
    """Gradient sums over the rows (laid out like theta) into ``grad``; returns the summed loss.

    ``grad`` holds ``plan.n_params`` elements, ``scratch`` ``n · plan.row_width``.
    ``sample_weight`` (n,) float64 with a positive sum: the sums are those of
    the weighted mean times n (row r counts w_r·n/Σw).  ``masks``: fixed
    dropout multipliers M_h of every hidden layer, (n, sizes[h+1]) each, flat
    and in order, followed by room for as many elements again (gradcheck).
    """
    cdef const Shape* s = &plan.s
    cdef Py_ssize_t n = X.shape[0], cap = n
    cdef int L = s.n_layers
    cdef double[::1] row_loss
    cdef unsigned char[::1] row_correct
    cdef const double[::1] w
    cdef double wsum = 0
    cdef StepOut res
    cdef Dropout dropout = None
    cdef const Drop* d = NULL
    cdef floating* dbuf = NULL
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
        block_forward(s, &theta[0], &X[0, 0], &scratch[0], cap, n, d, dbuf, 0)
        loss_delta_rows(s, act_ptr(s, &scratch[0], cap, L), zout_ptr(s, &scratch[0], cap),
                        delta_ptr(s, &scratch[0], cap, 0), &Y[0, 0], NULL, NULL, 0, n,
                        &row_loss[0], &row_correct[0])
        if sample_weight is not None:
            weight_rows(delta_ptr(s, &scratch[0], cap, 0), &row_loss[0], &w[0], NULL, n,
                        s.sizes[L], n / wsum)
        res = sum_rows(&row_loss[0], &row_correct[0], n)
        block_backward_grad(s, &theta[0], &X[0, 0], &scratch[0], cap, n, &grad[0], d, dbuf)
        restore_fpu(csr)
    return res.loss_sum
