# cython: language_level=3
"""The synchronous trainer (``parallel="sync"``) of the compiled path, and the
one import path of every compiled entry point.

Three layers, as in scikit-learn's k-means kernels:

1. :mod:`cymlp._cython_backend` picks the mode and the threads, and limits
   the BLAS thread pool once per fit;
2. typed ``def`` entry points here (:class:`SyncTrainer`, :func:`forward`,
   :func:`loss_grad`) check the buffers against the plan (ValueError, never
   a crash), unpack them into pointers and release the GIL;
3. ``cdef ... noexcept nogil`` helpers (most in ``_kernels_common.pyx``) do
   the work on a range of rows with their own buffers.

Two modes split a mini-batch over threads (``prange``, static schedule):

``chunked``
    The batch rows are cut into ``n_chunks(B)`` balanced chunks (a function
    of the batch size only).  Each chunk runs forward and backward on its rows
    with single-threaded BLAS into its own gradient buffer; the buffers are
    then summed in chunk order, fused with the optimizer update.  The
    arithmetic does not depend on the thread count: weights are bitwise equal
    for any ``n_threads``.
``batch``
    One (BLAS-multithreaded) GEMM per product on the whole batch; the
    elementwise passes (fused bias + activation, loss and δ, derivative)
    stay on the calling thread so the BLAS pool and an OpenMP team never
    compete for the cores.  Plain SGD and momentum fold the update into the
    weight-gradient GEMM (``C = αAB + βC``).  Equal across thread counts to
    rounding only (the BLAS's threaded summation order).
``split``
    Batch mode's arithmetic with all of the step shared by an OpenMP team,
    the BLAS on one thread: batch rows for the forward pass and the δ's,
    units for the gradients and the update (``_kernels_split.pyx``).  Batch
    mode bit for bit on one thread; equal across thread counts to rounding.
    Steps with dropout or gradient clipping run in batch mode.

The hogwild and average strategies live in ``_kernels_parallel.pyx``, the
passes outside training (forward, loss gradient) in ``_kernels_passes.pyx``;
this module re-exports their entry points (and :class:`Plan`) so that
``cymlp._kernels`` stays the one import path of the compiled kernels.
"""

from cython.parallel cimport prange
from libc.math cimport sqrt
from libc.stdint cimport uint64_t

import numpy as np
cimport numpy as cnp

from ._blas cimport floating, gemm
from ._openmp cimport CYMLP_OPENMP_ENABLED, CYMLP_DEBUG, omp_get_max_threads
from ._kernels_common cimport (
    Plan as _Plan, Shape, Opt, StepOut, OPT_ADAM, OPT_SGD, ROWS_PER_CHUNK, MAX_CHUNKS, ELEM_BLOCK,
    make_opt, adam_corrections, check_trainer_arrays, check_order, n_chunks,
    act_ptr, zout_ptr, delta_ptr, gather_rows, loss_delta_rows, sum_rows, deriv_range, col_sum,
    update_range, momentum_range, block_forward, block_backward_grad,
    chunk_loss_grad_terms, deriv_mask_range, ACT_RELU,
)
from ._kernels_terms cimport (
    Drop, Terms, Dropout, weight_rows, mask_ptr, dropped_ptr, relu_drop_deriv, reduce_squares,
    scale_range,
)
from ._random cimport dropout_key
from ._kernels_split cimport step_split, split_delta_width
from ._fpu cimport FLUSH_SUBNORMALS, flush_subnormals, restore_fpu, fpu_flags

from ._kernels_common import lookup_code
# re-exported: cymlp._kernels stays the one import path of the compiled kernels
from ._kernels_common import ACTIVATION_CODES, LOSS_CODES, Plan  # no-cython-lint
from ._kernels_terms import Dropout  # no-cython-lint
from ._kernels_parallel import ParallelTrainer, average_replicas  # no-cython-lint
from ._kernels_passes import forward, loss_grad  # no-cython-lint
from ._kernels_passes import _check_weights

cnp.import_array()

OPENMP_ENABLED = bool(CYMLP_OPENMP_ENABLED)
DEBUG_BUILD = bool(CYMLP_DEBUG)

MODES = {"chunked": 0, "batch": 1, "split": 2}
CHUNK_ROWS = ROWS_PER_CHUNK

cdef enum:
    MODE_CHUNKED = 0
    MODE_BATCH = 1
    MODE_SPLIT = 2


FLUSHES_SUBNORMALS = bool(FLUSH_SUBNORMALS)


def fpu_flush_flags():
    """The calling thread's FTZ|DAZ bits (0 outside a kernel: kernels restore what they found)."""
    return fpu_flags()


def openmp_max_threads():
    """``omp_get_max_threads()`` (1 when built without OpenMP)."""
    return omp_get_max_threads()


def n_chunks_for(Py_ssize_t batch_rows):
    """Chunks a batch of ``batch_rows`` rows is cut into in chunked mode."""
    return n_chunks(batch_rows)


# --------------------------------------------------------------------------
# One synchronous step
# --------------------------------------------------------------------------

# The two per-step threaded sites below skip the OpenMP region when they
# would run on one thread.  ``prange(..., use_threads_if=False)`` still
# enters a region (libgomp sets up a team of one): ~0.6 µs each on the
# 2-core Xeon we measure on, three per step of the 64-32-10 network, whose
# whole step takes ~4 µs.  Rarer sites (one per run segment or averaging
# point, _kernels_parallel.pyx) use ``use_threads_if``.

cdef void update_threaded(floating* p, floating* G, Py_ssize_t n_src, Py_ssize_t stride,
                          Py_ssize_t count, floating n_rows, bint decay, const Opt* o,
                          floating* m, floating* v, int nthreads) noexcept nogil:
    """update_range over ``count`` parameters, in blocks of ELEM_BLOCK on ``nthreads`` threads."""
    cdef Py_ssize_t nb = (count + ELEM_BLOCK - 1) // ELEM_BLOCK, i
    if nthreads <= 1 or nb < 2:
        update_range(p, G, n_src, stride, 0, count, n_rows, decay, o, m, v)
        return
    cdef unsigned int csr
    for i in prange(nb, schedule='static', num_threads=nthreads):
        csr = flush_subnormals()      # each worker as the calling thread (cymlp/_fpu.pxd)
        update_range(p, G, n_src, stride, i * ELEM_BLOCK, min((i + 1) * ELEM_BLOCK, count),
                     n_rows, decay, o, m, v)
        restore_fpu(csr)


cdef StepOut step_chunked(const Shape* s, floating* theta, const floating* X, const floating* Y,
                          const cnp.intp_t* rows, const cnp.int64_t* labels, Py_ssize_t n,
                          floating* scratch, Py_ssize_t chunk_cap, floating* grads,
                          floating* m, floating* v, double* row_loss,
                          unsigned char* row_correct, const Opt* o, int nthreads,
                          const Terms* t) noexcept nogil:
    """One SGD step on ``n`` rows split into balanced chunks (see module doc).

    ``t`` (or NULL) adds sample weights, dropout (each chunk draws the masks of
    its rows in its own dropout buffer) and gradient clipping.
    """
    cdef Py_ssize_t chunks = n_chunks(n), c, r0, r1, l, P = s.n_params, n_src = chunks
    cdef Py_ssize_t scr_stride = chunk_cap * s.row_width
    cdef int threads = nthreads if nthreads < chunks else <int>chunks
    cdef floating* drop = <floating*>t.drop_buf if t != NULL and t.drop != NULL else NULL
    cdef Py_ssize_t drop_stride = t.drop_stride if drop != NULL else 0
    cdef floating n_rows = <floating>n
    cdef unsigned int csr
    cdef StepOut out
    if threads <= 1:
        for c in range(chunks):
            r0 = c * n // chunks
            r1 = (c + 1) * n // chunks
            chunk_loss_grad_terms(s, theta, X, Y, rows + r0, labels, r1 - r0,
                                  scratch + c * scr_stride, chunk_cap, grads + c * P,
                                  row_loss + r0, row_correct + r0, t, r0, drop + c * drop_stride)
    else:
        for c in prange(chunks, schedule='static', num_threads=threads):
            csr = flush_subnormals()
            r0 = c * n // chunks
            r1 = (c + 1) * n // chunks
            chunk_loss_grad_terms(s, theta, X, Y, rows + r0, labels, r1 - r0,
                                  scratch + c * scr_stride, chunk_cap, grads + c * P,
                                  row_loss + r0, row_correct + r0, t, r0, drop + c * drop_stride)
            restore_fpu(csr)
    out = sum_rows(row_loss, row_correct, n)
    if not out.finite:
        return out
    if t != NULL and t.clip_norm > 0:     # reduce the chunk buffers first, then clip
        n_rows = clip_gradient(grads, chunks, P, n_rows, t, nthreads)
        n_src = 1
    # Fixed-order reduction over the chunk buffers, fused with the update.
    for l in range(s.n_layers):
        update_threaded(theta + s.w_off[l], grads + s.w_off[l], n_src, P,
                        s.sizes[l] * s.sizes[l + 1], n_rows, True, o,
                        m + s.w_off[l], v + s.w_off[l], nthreads)
        update_range(theta + s.b_off[l], grads + s.b_off[l], n_src, P, 0, s.sizes[l + 1],
                     n_rows, False, o, m + s.b_off[l], v + s.b_off[l])
    return out


cdef floating clip_gradient(floating* G, Py_ssize_t n_src, Py_ssize_t P, floating n_rows,
                            const Terms* t, int nthreads) noexcept nogil:
    """Sum the ``n_src`` gradient buffers into G and clip the mean gradient G/n_rows to
    ``t.clip_norm`` (global L2 norm, before weight decay, as reference.clip_by_global_norm).

    The squared norm is summed per block of ELEM_BLOCK parameters (on ``nthreads``
    threads), then over the blocks in order: the same for any thread count.
    Returns the divisor the update must use: ``n_rows`` when the norm is within the
    bound (G untouched: the step is bit for bit the unclipped one), else 1 with
    G = (G / n_rows) · clip_norm / norm.
    """
    cdef Py_ssize_t nb = (P + ELEM_BLOCK - 1) // ELEM_BLOCK, i
    cdef double total = 0, norm
    cdef floating factor
    cdef unsigned int csr
    if nthreads <= 1 or nb < 2:
        for i in range(nb):
            t.norm_parts[i] = reduce_squares(G, n_src, P, i * ELEM_BLOCK,
                                             min((i + 1) * ELEM_BLOCK, P), n_rows)
    else:
        for i in prange(nb, schedule='static', num_threads=nthreads):
            csr = flush_subnormals()
            t.norm_parts[i] = reduce_squares(G, n_src, P, i * ELEM_BLOCK,
                                             min((i + 1) * ELEM_BLOCK, P), n_rows)
            restore_fpu(csr)
    for i in range(nb):
        total += t.norm_parts[i]
    norm = sqrt(total)
    if not norm > t.clip_norm:
        return n_rows
    factor = <floating>(t.clip_norm / norm)
    scale_range(G, 0, P, n_rows, factor)
    return 1


cdef void block_backward_update(const Shape* s, floating* theta, const floating* A0,
                                floating* scr, Py_ssize_t cap, Py_ssize_t n, floating* G,
                                floating* m, floating* v, const Opt* o,
                                const Drop* d, floating* dbuf) noexcept nogil:
    """Backward pass and optimizer step for ``n`` rows (the whole batch), δ^L in D_0.

    Each layer's update happens right after its δ^{l-1} has been computed
    from the old W^l.  Plain SGD folds the update into the gradient GEMM:
    W ← (1 − lr·λ)·W − (lr/n)·δᵀA; momentum folds the velocity:
    v ← μ·v + δᵀA/n, then v += λ·W, W −= lr·v.  Nesterov and Adam go through
    the gradient buffer G and an elementwise pass.  With dropout ``d`` (else
    NULL), as block_backward_grad: BP4 uses Ã, BP2 gains the factor M.
    """
    cdef int L = s.n_layers, l, which = 0
    cdef Py_ssize_t n_in, n_out, nw
    cdef floating* delta = delta_ptr(s, scr, cap, 0)
    cdef floating* prev
    cdef floating* W
    cdef const floating* A_prev
    cdef floating rows = <floating>n
    cdef bint masked
    for l in range(L - 1, -1, -1):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        nw = n_in * n_out
        W = theta + s.w_off[l]
        A_prev = A0 if l == 0 else act_ptr(s, scr, cap, l)
        masked = d != NULL and l > 0 and d.active[l - 1]
        if l > 0:
            prev = delta_ptr(s, scr, cap, 1 - which)
            gemm(False, False, n, n_in, n_out, <floating>1, delta, n_out, W, n_in,
                 <floating>0, prev, n_in)
            if masked and d.in_place:     # A_prev is Ã already
                relu_drop_deriv(prev, A_prev, d.scale[l - 1], n * n_in)
            elif masked:
                deriv_mask_range(prev, A_prev, mask_ptr(d, dbuf, cap, l - 1), 0, n * n_in, s.hidden)
                A_prev = dropped_ptr(d, dbuf, cap, l - 1)      # BP4 sees what the layer saw
            else:
                deriv_range(prev, A_prev, 0, n * n_in, s.hidden)
        if o.kind == OPT_SGD and o.momentum == 0:
            gemm(True, False, n_out, n_in, n, <floating>(-o.lr / n), delta, n_out, A_prev, n_in,
                 <floating>(1 - o.lr * o.weight_decay), W, n_in)
        elif o.kind == OPT_SGD and not o.nesterov:
            gemm(True, False, n_out, n_in, n, <floating>(1.0 / n), delta, n_out, A_prev, n_in,
                 <floating>o.momentum, m + s.w_off[l], n_in)
            momentum_range(W, m + s.w_off[l], 0, nw, o)
        else:
            gemm(True, False, n_out, n_in, n, <floating>1, delta, n_out, A_prev, n_in,
                 <floating>0, G + s.w_off[l], n_in)
            update_range(W, G + s.w_off[l], 1, 0, 0, nw, rows, True, o,
                         m + s.w_off[l], v + s.w_off[l])
        col_sum(delta, n, n_out, G + s.b_off[l])
        update_range(theta + s.b_off[l], G + s.b_off[l], 1, 0, 0, n_out, rows, False, o,
                     m + s.b_off[l], v + s.b_off[l])
        if l > 0:
            which = 1 - which
            delta = prev


cdef StepOut step_batch(const Shape* s, floating* theta, const floating* X, const floating* Y,
                        const cnp.intp_t* rows, const cnp.int64_t* labels, Py_ssize_t n,
                        floating* scratch, Py_ssize_t cap, floating* grads,
                        floating* m, floating* v, double* row_loss,
                        unsigned char* row_correct, const Opt* o, const Terms* t) noexcept nogil:
    """One SGD step on ``n`` rows with whole-batch GEMMs (BLAS threads).

    The elementwise passes stay on this thread: the BLAS pool owns the cores
    in this mode, and alternating it with an OpenMP team (both spin while
    waiting) oversubscribes them; measured 100x slower on a busy machine.
    ``t`` (or NULL) adds sample weights, dropout and clipping (which needs
    the whole gradient before the update, so it is not fused).
    """
    cdef floating* A0 = act_ptr(s, scratch, cap, 0)
    cdef int L = s.n_layers, l
    cdef const Drop* d = t.drop if t != NULL else NULL
    cdef floating* dbuf = <floating*>t.drop_buf if d != NULL else NULL
    cdef floating n_rows
    cdef StepOut out
    gather_rows(X, rows, 0, n, s.sizes[0], A0)
    block_forward(s, theta, A0, scratch, cap, n, d, dbuf, 0)
    loss_delta_rows(s, act_ptr(s, scratch, cap, L), zout_ptr(s, scratch, cap),
                    delta_ptr(s, scratch, cap, 0), Y, rows, labels, 0, n, row_loss, row_correct)
    if t != NULL and t.weight != NULL:
        weight_rows(delta_ptr(s, scratch, cap, 0), row_loss, t.weight, rows, n, s.sizes[L],
                    t.weight_scale)
    out = sum_rows(row_loss, row_correct, n)
    if not out.finite:
        return out
    if t == NULL or not t.clip_norm > 0:
        block_backward_update(s, theta, A0, scratch, cap, n, grads, m, v, o, d, dbuf)
        return out
    block_backward_grad(s, theta, A0, scratch, cap, n, grads, d, dbuf)
    n_rows = clip_gradient(grads, 1, s.n_params, <floating>n, t, 1)
    for l in range(L):
        update_range(theta + s.w_off[l], grads + s.w_off[l], 1, 0, 0, s.sizes[l] * s.sizes[l + 1],
                     n_rows, True, o, m + s.w_off[l], v + s.w_off[l])
        update_range(theta + s.b_off[l], grads + s.b_off[l], 1, 0, 0, s.sizes[l + 1],
                     n_rows, False, o, m + s.b_off[l], v + s.b_off[l])
    return out


# --------------------------------------------------------------------------
# The trainer: buffers once per fit, then many steps per run call
# --------------------------------------------------------------------------

cdef class SyncTrainer:
    """Buffers and state for one ``fit`` with ``parallel="sync"``.

    Everything is allocated here, once: scratch for every chunk (or the
    whole batch), the gradient buffers, optimizer state, per-row loss slots.
    ``run`` then performs many steps without touching Python objects.

    plan         the network's shape
    theta        IN/OUT  (plan.n_params,) float32 or float64, trained in place
    X            IN      (N, sizes[0]) of theta's dtype
    Y            IN      (N, sizes[-1]) targets, of theta's dtype
    labels       IN      (N,) int64 class labels for accuracy, or None
    state_m      IN/OUT  (plan.n_params,) of theta's dtype: momentum velocity or Adam's m,
                         continued and updated in place (the training state's own buffer);
                         None allocates zeros
    state_v      IN/OUT  (plan.n_params,) Adam's v, as state_m (ignored by SGD)
    step                 optimizer steps already taken (Adam's t); ``step`` is current
                         after every ``run``
    """
    cdef _Plan plan
    cdef object theta, X, Y, labels, scratch, grads, state_m, state_v, row_loss, row_correct
    cdef object weights, drop_buf, norm_parts, deltas
    cdef Dropout dropout
    cdef readonly Py_ssize_t batch_size, cap, n_chunks
    cdef readonly int mode
    cdef public int nthreads      # settable between runs: chunked results do not depend on it
    cdef readonly long step
    cdef Opt opt
    cdef bint is_float, has_labels, has_terms
    cdef Terms terms
    # The dropout masks of a step are keyed by (seed, epoch, step): step is the optimizer
    # step about to be taken (Adam's t - 1); the caller sets epoch before run.
    cdef readonly unsigned long long seed
    cdef public unsigned long long epoch

    def __init__(self, _Plan plan not None, theta, X, Y, labels, Py_ssize_t batch_size, str mode,
                 int nthreads, str optimizer, double momentum, bint nesterov,
                 double weight_decay, double beta1, double beta2, double eps,
                 state_m=None, state_v=None, long step=0):
        check_trainer_arrays(plan, theta, X, Y, labels, batch_size, optimizer)
        _check_state("state_m", state_m, theta)
        if optimizer == "adam":
            _check_state("state_v", state_v, theta)
        if step < 0:
            raise ValueError(f"trainer: step must be >= 0; got {step}")
        self.mode = lookup_code(MODES, "mode", mode)
        self.plan = plan
        self.theta, self.X, self.Y = theta, X, Y
        self.has_labels = labels is not None
        self.labels = labels if labels is not None else np.zeros(1, dtype=np.int64)
        self.batch_size = batch_size
        self.nthreads = max(1, nthreads)
        self.is_float = theta.dtype == np.float32
        dtype = theta.dtype
        P = plan.s.n_params
        if self.mode == MODE_CHUNKED:
            self.n_chunks = n_chunks(batch_size)
            # the largest chunk of any batch of <= batch_size rows (the last one may be smaller)
            self.cap = max(min(batch_size, ROWS_PER_CHUNK), (batch_size + MAX_CHUNKS - 1) // MAX_CHUNKS)
            self.scratch = np.zeros(self.n_chunks * self.cap * plan.s.row_width, dtype=dtype)
            self.grads = np.zeros(self.n_chunks * P, dtype=dtype)
        else:
            self.n_chunks = 1
            self.cap = batch_size
            self.scratch = np.zeros(self.cap * plan.s.row_width, dtype=dtype)
            self.grads = np.zeros(P, dtype=dtype)
        # split mode keeps the δ of every layer (cap rows each)
        self.deltas = np.zeros(self.cap * split_delta_width(&plan.s) if self.mode == MODE_SPLIT else 1,
                               dtype=dtype)
        self.state_m = np.zeros(P, dtype=dtype) if state_m is None else state_m
        if optimizer == "adam":
            self.state_v = np.zeros(P, dtype=dtype) if state_v is None else state_v
        else:
            self.state_v = np.zeros(1, dtype=dtype)
        self.row_loss = np.zeros(batch_size, dtype=np.float64)
        self.row_correct = np.zeros(batch_size, dtype=np.uint8)
        self.opt = make_opt(optimizer, momentum, nesterov, weight_decay, beta1, beta2, eps)
        self.step = step
        self.has_terms = False
        self.epoch = self.seed = 0

    def set_terms(self, sample_weight, dropout, double clip_norm, seed):
        """Add sample weights, dropout and clipping to every step (issue 14).

        sample_weight  IN  (N,) float64, >= 0, one per row of X; or None
        dropout        IN  one drop rate per hidden layer; or None
        clip_norm      IN  > 0 to clip the mean gradient's global norm; 0 for none
        seed           IN  the dropout masks' seed (with ``epoch`` and the step)

        Buffers are made here, once: the dropout buffers of every block
        (2 · cap · Σ hidden widths each) and the partial norms.
        """
        cdef const Shape* s = &self.plan.s
        P = s.n_params
        self.terms.weight = NULL
        self.terms.drop = NULL
        self.terms.drop_buf = NULL
        self.terms.drop_stride = 0
        self.terms.weight_scale = 1
        self.terms.clip_norm = clip_norm if clip_norm > 0 else 0
        self.norm_parts = np.zeros((P + ELEM_BLOCK - 1) // ELEM_BLOCK, dtype=np.float64)
        self.terms.norm_parts = <double*>cnp.PyArray_DATA(self.norm_parts)
        if sample_weight is not None:
            _check_weights("trainer", sample_weight, self.X.shape[0])
            self.weights = sample_weight
            self.terms.weight = <const double*>cnp.PyArray_DATA(self.weights)
        if dropout is not None:
            self.dropout = Dropout(self.plan.sizes, dropout, self.plan.s.hidden == ACT_RELU)
            # ReLU layers are masked in place and need no buffer (see drop_in_place)
            self.terms.drop_stride = 0 if self.dropout.d.in_place else 2 * self.cap * self.dropout.d.width
            self.drop_buf = np.zeros(max(1, self.n_chunks * self.terms.drop_stride),
                                     dtype=self.theta.dtype)
            self.terms.drop = &self.dropout.d
            self.terms.drop_buf = cnp.PyArray_DATA(self.drop_buf)
        self.seed = int(seed) % 2**64
        self.has_terms = True

    def run(self, order, Py_ssize_t first, Py_ssize_t stop, double lr):
        """Steps for batches first..stop-1 of ``order`` (a permutation of the rows).

        Returns ``(loss_sum, n_correct, n_seen, steps)``; stops early, without
        updating, at a batch whose loss is not finite.
        """
        check_order(order, self.X.shape[0], first, stop, self.batch_size)
        if self.is_float:
            return _run[float](self, self.theta, self.X, self.Y, self.scratch, self.grads,
                               self.state_m, self.state_v, self.deltas, order, first, stop, lr)
        return _run[double](self, self.theta, self.X, self.Y, self.scratch, self.grads,
                            self.state_m, self.state_v, self.deltas, order, first, stop, lr)


cdef void _check_state(str name, buf, theta) except *:
    """An optimizer state buffer given to the trainer: None, or laid out like theta, writable."""
    if buf is None:
        return
    if (not isinstance(buf, np.ndarray) or buf.dtype != theta.dtype or buf.shape != theta.shape
            or not buf.flags.c_contiguous or not buf.flags.writeable):
        raise ValueError(f"trainer: {name} must be a writable C-contiguous {theta.dtype} array of "
                         f"shape {theta.shape}; got {getattr(buf, 'dtype', type(buf).__name__)} "
                         f"{getattr(buf, 'shape', '')}")


cdef tuple _run(SyncTrainer t, floating[::1] theta, const floating[:, ::1] X,
                const floating[:, ::1] Y, floating[::1] scratch, floating[::1] grads,
                floating[::1] m, floating[::1] v, floating[::1] deltas,
                const cnp.intp_t[::1] order, Py_ssize_t first, Py_ssize_t stop, double lr):
    cdef const cnp.int64_t[::1] labels_mv = t.labels
    cdef double[::1] row_loss = t.row_loss
    cdef unsigned char[::1] row_correct = t.row_correct
    cdef const Shape* s = &t.plan.s
    cdef const cnp.int64_t* labels = &labels_mv[0] if t.has_labels else NULL
    cdef Py_ssize_t N = order.shape[0], B = t.batch_size, i, start, n
    cdef double loss_sum = 0
    cdef Py_ssize_t n_correct = 0, n_seen = 0, steps = 0
    cdef StepOut out
    cdef Opt* o = &t.opt
    cdef long step = t.step
    cdef int mode = t.mode, nthreads = t.nthreads, h
    cdef Py_ssize_t cap = t.cap, r
    cdef Terms* terms = &t.terms if t.has_terms else NULL
    cdef uint64_t* keys = t.dropout.keys if terms != NULL and terms.drop != NULL else NULL
    cdef uint64_t seed = t.seed, epoch = t.epoch
    cdef double wsum
    cdef unsigned int csr
    if mode == MODE_SPLIT and terms != NULL and (terms.drop != NULL or terms.clip_norm > 0):
        mode = MODE_BATCH       # not split (see _kernels_split.pyx); the caller holds BLAS at 1
    o.lr = lr
    with nogil:
        csr = flush_subnormals()
        for i in range(first, stop):
            start = i * B
            n = min(B, N - start)
            if n <= 0:
                break
            if terms != NULL and terms.weight != NULL:
                wsum = 0
                for r in range(n):
                    wsum += terms.weight[order[start + r]]
                if not wsum > 0:        # a batch of weight 0: no update, no examples
                    steps += 1
                    continue
                terms.weight_scale = n / wsum
            if keys != NULL:
                for h in range(terms.drop.n_hidden):
                    keys[h] = dropout_key(seed, epoch, <uint64_t>step, h)
            if o.kind == OPT_ADAM:
                adam_corrections(o, <double>(step + 1))
            if mode == MODE_SPLIT:
                out = step_split(s, &theta[0], &X[0, 0], &Y[0, 0], &order[start], labels, n,
                                 &scratch[0], &deltas[0], cap, &grads[0], &m[0], &v[0],
                                 &row_loss[0], &row_correct[0], o, nthreads, terms)
            elif mode == MODE_CHUNKED:
                out = step_chunked(s, &theta[0], &X[0, 0], &Y[0, 0], &order[start], labels, n,
                                   &scratch[0], cap, &grads[0], &m[0], &v[0],
                                   &row_loss[0], &row_correct[0], o, nthreads, terms)
            else:
                out = step_batch(s, &theta[0], &X[0, 0], &Y[0, 0], &order[start], labels, n,
                                 &scratch[0], cap, &grads[0], &m[0], &v[0],
                                 &row_loss[0], &row_correct[0], o, terms)
            if not out.finite:
                break
            step += 1
            loss_sum += out.loss_sum
            n_correct += out.correct
            n_seen += n
            steps += 1
        restore_fpu(csr)
    t.step = step
    return loss_sum, n_correct, n_seen, steps
