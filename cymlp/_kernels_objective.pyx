# cython: language_level=3
"""The full-batch loss and gradient of the compiled path: what a quasi-Newton
optimizer (scipy's L-BFGS-B, ``solver="lbfgs"``) evaluates at every point.

``FullBatch`` is made once per optimisation (its buffers too); each
``evaluate`` is one call that runs forward, loss and backward over every row
of the data in blocks of ``block_rows`` rows and returns the summed loss with
the summed gradient, laid out like theta.  The blocks bound the memory
(activations of one block; sparse rows are densified a block at a time) and
are fixed by the data, so a given thread count gives the same bits every
time.  Whole-block GEMMs run on the BLAS pool as the caller limits it; the
elementwise passes on the calling thread, as in batch mode.  Re-exported by
:mod:`cymlp._kernels`.
"""


import numpy as np
cimport numpy as cnp

from ._blas cimport floating
from ._fpu cimport flush_subnormals, restore_fpu
from ._kernels_common cimport (
    Plan as _Plan, Shape, Block, StepOut, act_ptr, delta_ptr, rows_block, sum_rows,
)
from ._kernels_block cimport loss_delta_rows, block_forward, block_backward
from ._kernels_terms cimport weight_rows
from ._kernels_sparse cimport SparseRows, CSR, gather_csr_rows

from ._kernels_common import _check_array
from ._kernels_passes import _check_weights

cnp.import_array()


cdef class FullBatch:
    """Loss and gradient sums over all rows of a data set, in blocks of rows.

    Parameters
    ----------
    plan : Plan
        The network's shape.
    X : ndarray of shape (N, sizes[0]), float32 or float64, or SparseRows
        The rows (IN), dense and C-contiguous or sparse (densified one block
        at a time); N >= 1.
    Y : ndarray of shape (N, sizes[-1]), X's dtype
        Their targets (IN).
    sample_weight : ndarray of shape (N,), float64, or None
        Row weights (IN): row r's loss and error count w_r times.
    block_rows : int
        Rows per block (>= 1): the scratch holds one block.
    """
    cdef _Plan plan
    cdef object X, Y, weights, scratch, block_grad, row_loss, row_correct
    cdef readonly Py_ssize_t n_rows, block_rows
    cdef readonly object dtype

    def __init__(self, _Plan plan not None, X, Y, sample_weight, Py_ssize_t block_rows):
        cdef const Shape* s = &plan.s
        where = "FullBatch"
        if isinstance(X, SparseRows):
            if X.n_cols != s.sizes[0]:
                raise ValueError(f"{where}: X has {X.n_cols} columns; expected {s.sizes[0]}")
            dtype = X.dtype
        else:
            if not isinstance(X, np.ndarray) or X.dtype not in (np.float32, np.float64):
                raise ValueError(f"{where}: X must be a float32 or float64 ndarray or a SparseRows")
            dtype = X.dtype
            _check_array(where, "X", X, 2, dtype, (None, s.sizes[0]))
        n = X.shape[0]
        if n < 1:
            raise ValueError(f"{where}: X has no rows")
        _check_array(where, "Y", Y, 2, dtype, (n, s.sizes[s.n_layers]))
        if sample_weight is not None:
            _check_weights(where, sample_weight, n)
        if block_rows < 1:
            raise ValueError(f"{where}: block_rows must be >= 1; got {block_rows}")
        self.plan, self.X, self.Y, self.weights = plan, X, Y, sample_weight
        self.n_rows = n
        self.block_rows = min(block_rows, n)
        self.dtype = dtype
        self.scratch = np.zeros(self.block_rows * s.row_width, dtype=dtype)
        self.block_grad = np.zeros(s.n_params if n > self.block_rows else 1, dtype=dtype)
        self.row_loss = np.zeros(self.block_rows, dtype=np.float64)
        self.row_correct = np.zeros(self.block_rows, dtype=np.uint8)

    def evaluate(self, theta, grad):
        """The summed (weighted) loss over all rows; their summed gradient into ``grad``.

        Parameters
        ----------
        theta : ndarray of shape (plan.n_params,), the data's dtype
            The parameters (IN).
        grad : ndarray of shape (plan.n_params,), the data's dtype
            Receives the gradient sums Σ_r w_r ∂C_r/∂θ (OUT), not divided by
            anything (w_r = 1 without sample weights).

        Returns
        -------
        float
            Σ_r w_r C_r.
        """
        P = self.plan.s.n_params
        _check_array("FullBatch.evaluate", "theta", theta, 1, self.dtype, (P,))
        _check_array("FullBatch.evaluate", "grad", grad, 1, self.dtype, (P,), True)
        if self.dtype == np.float32:
            return _evaluate[float](self, <const float*>cnp.PyArray_DATA(theta),
                                    <float*>cnp.PyArray_DATA(grad))
        return _evaluate[double](self, <const double*>cnp.PyArray_DATA(theta),
                                 <double*>cnp.PyArray_DATA(grad))


cdef double _evaluate(FullBatch fb,
                      const floating* theta,     # IN (n_params,)
                      floating* grad) except? -1:   # OUT (n_params,)
    cdef const Shape* s = &fb.plan.s
    cdef Py_ssize_t N = fb.n_rows, B = fb.block_rows, P = s.n_params, start, n, i
    cdef Py_ssize_t width = s.sizes[0], k = s.sizes[s.n_layers]
    cdef floating* scr = <floating*>cnp.PyArray_DATA(fb.scratch)
    cdef floating* G_block = <floating*>cnp.PyArray_DATA(fb.block_grad)
    cdef double* row_loss = <double*>cnp.PyArray_DATA(fb.row_loss)
    cdef unsigned char* row_correct = <unsigned char*>cnp.PyArray_DATA(fb.row_correct)
    cdef const double* w = NULL
    cdef const CSR* Xs = NULL
    cdef const floating* Xd = NULL
    cdef const floating* Y = <const floating*>cnp.PyArray_DATA(fb.Y)
    cdef floating* G
    cdef double total = 0
    cdef StepOut out
    cdef Block b
    cdef unsigned int csr
    if fb.weights is not None:
        w = <const double*>cnp.PyArray_DATA(fb.weights)
    if isinstance(fb.X, SparseRows):
        Xs = &(<SparseRows>fb.X).c
    else:
        Xd = <const floating*>cnp.PyArray_DATA(fb.X)
    with nogil:
        csr = flush_subnormals()
        b = rows_block(Xd, scr, B, NULL, NULL, row_loss, row_correct)     # A0 set per block below
        start = 0
        while start < N:
            n = min(B, N - start)
            if Xs != NULL:        # sparse rows densified into the block's A_0
                b.A0 = act_ptr(s, scr, B, 0)
                _gather_from(Xs, start, n, width, act_ptr(s, scr, B, 0))
            else:
                b.A0 = Xd + start * width
            block_forward(s, theta, &b, 0, n)
            loss_delta_rows(s, &b, Y + start * k, NULL, 0, n, delta_ptr(s, scr, B, 0))
            if w != NULL:
                weight_rows(delta_ptr(s, scr, B, 0), row_loss, w + start, NULL, n, k, 1.0)
            out = sum_rows(row_loss, row_correct, n)
            total += out.loss_sum
            G = grad if start == 0 else G_block
            # theta is only read: without a worker, block_backward writes the gradient only
            block_backward(s, <floating*>theta, &b, n, G, NULL)
            if start > 0:
                for i in range(P):
                    grad[i] = grad[i] + G_block[i]
            start += n
        restore_fpu(csr)
    return total


cdef inline void _gather_from(const CSR* X,      # IN
                              Py_ssize_t start, Py_ssize_t n, Py_ssize_t width,
                              floating* out) noexcept nogil:   # OUT (n, width)
    """Rows start..start+n-1 of X densified into out (an in-order gather: the rows of
    the block are examples start, start+1, ...)."""
    cdef CSR shifted = X[0]
    if X.wide:
        shifted.indptr = <const cnp.int64_t*>X.indptr + start
    else:
        shifted.indptr = <const cnp.int32_t*>X.indptr + start
    gather_csr_rows(&shifted, NULL, 0, n, width, out)
