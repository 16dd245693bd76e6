# cython: language_level=3
"""The synchronous trainer (``parallel="sync"``) of the compiled path, and the
one import path of every compiled entry point.

Three layers, as in scikit-learn's k-means kernels:

1. :mod:`cymlp._cython_backend` picks the mode and the threads, and limits
   the BLAS thread pool once per fit;
2. typed ``def`` entry points (:class:`SyncTrainer` here, :func:`forward`,
   :func:`loss_grad`) check the buffers against the plan (ValueError, never
   a crash), keep pointers to them in C structs and release the GIL;
3. ``cdef ... noexcept nogil`` functions (``_kernels_block.pyx``) do the work
   on a block of rows with their own buffers.

Three modes share a mini-batch's step among threads (``prange``, static
schedule):

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
this module re-exports their entry points (and :class:`Plan`, and the Python
names of the kernels' codes) so that ``cymlp._kernels`` stays the one import
path of the compiled kernels.
"""

from cython.parallel cimport prange
from libc.stdint cimport uint64_t

import numpy as np
cimport numpy as cnp

from ._blas cimport floating
from ._openmp cimport CYMLP_OPENMP_ENABLED, CYMLP_DEBUG, CYMLP_SANITIZE, omp_get_max_threads
from ._kernels_common cimport (
    Plan as _Plan, Block, Worker, StepOut, Mode, ADAM, RELU, CHUNKED, BATCH, SPLIT,
    ROWS_PER_CHUNK, MAX_CHUNKS, ELEM_BLOCK, lookup, make_opt, adam_corrections,
    check_trainer_arrays, check_order, check_state, set_worker_inputs, n_chunks, delta_ptr,
    worker_block, sum_rows,
)
from ._kernels_block cimport forward_loss, block_backward, chunk_loss_grad
from ._kernels_update cimport update_layers, clip_gradient
from ._kernels_terms cimport Dropout as _Dropout
from ._random cimport dropout_key
from ._kernels_split cimport step_split, split_delta_width
from ._fpu cimport FLUSH_SUBNORMALS, flush_subnormals, restore_fpu, fpu_flags
from ._simd cimport CYMLP_SIMD_CLONES

# re-exported: cymlp._kernels stays the one import path of the compiled kernels
from ._kernels_common import ACTIVATIONS, LOSSES, OPTIMIZERS  # no-cython-lint
from ._kernels_common import MODES, STRATEGIES, WEIGHTINGS, Plan  # no-cython-lint
from ._kernels_terms import Dropout  # no-cython-lint
from ._kernels_parallel import ParallelTrainer, average_replicas  # no-cython-lint
from ._kernels_passes import all_finite, forward, loss_grad  # no-cython-lint
from ._kernels_objective import FullBatch  # no-cython-lint
from ._kernels_sparse import SparseRows  # no-cython-lint
from ._kernels_passes import _check_weights

cnp.import_array()

OPENMP_ENABLED = bool(CYMLP_OPENMP_ENABLED)
DEBUG_BUILD = bool(CYMLP_DEBUG)
SANITIZE_BUILD = bool(CYMLP_SANITIZE)
SIMD_CLONES = bool(CYMLP_SIMD_CLONES)     # AVX2/AVX-512 clones of the elementwise passes (_simd.pxd)
FLUSHES_SUBNORMALS = bool(FLUSH_SUBNORMALS)
CHUNK_ROWS = ROWS_PER_CHUNK


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

cdef StepOut step_chunked(Worker* w,                 # IN; OUT its buffers
                          floating* theta,           # INOUT (n_params,)
                          const cnp.intp_t* rows,    # IN (n,) the batch's examples
                          Py_ssize_t n) noexcept nogil:
    """One SGD step on ``n`` rows split into balanced chunks (see module doc).

    Each chunk runs on one thread with its own buffers (``chunk_loss_grad``:
    sample weights, and dropout masks drawn in its own dropout buffer); then
    the chunk buffers are summed in chunk order, fused with the update (after
    clipping, if any).  A single-thread step enters no OpenMP region (see
    ``update_threaded`` in _kernels_update.pyx).
    """
    cdef Py_ssize_t chunks = n_chunks(n), c, n_src = chunks
    cdef int threads = w.nthreads if w.nthreads < chunks else <int>chunks
    cdef floating n_rows = <floating>n
    cdef unsigned int csr
    cdef StepOut out
    if threads <= 1:
        for c in range(chunks):
            chunk_loss_grad(w, theta, rows, c * n // chunks, (c + 1) * n // chunks, c)
    else:
        for c in prange(chunks, schedule='static', num_threads=threads):
            csr = flush_subnormals()      # each worker as the calling thread (cymlp/_fpu.pxd)
            chunk_loss_grad(w, theta, rows, c * n // chunks, (c + 1) * n // chunks, c)
            restore_fpu(csr)
    out = sum_rows(w.row_loss, w.row_correct, n)
    if not out.finite:
        return out
    if w.terms.clip_norm > 0:     # reduce the chunk buffers first, then clip
        n_rows = clip_gradient(w, <floating*>w.grads, chunks, n_rows, w.nthreads)
        n_src = 1
    update_layers(w, theta, n_src, n_rows, w.nthreads)
    return out


cdef StepOut step_batch(Worker* w,                 # IN; OUT its buffers
                        floating* theta,           # INOUT (n_params,)
                        const cnp.intp_t* rows,    # IN (n,) the batch's examples
                        Py_ssize_t n) noexcept nogil:
    """One SGD step on ``n`` rows with whole-batch GEMMs (BLAS threads).

    The elementwise passes stay on this thread: the BLAS pool owns the cores
    in this mode, and alternating it with an OpenMP team (both spin while
    waiting) oversubscribes them; measured 100x slower on a busy machine.
    Each layer is updated as soon as its δ^{l-1} is known (``block_backward``
    with the worker); clipping needs the whole gradient first, so it is not fused.
    """
    cdef floating* scr = <floating*>w.scratch
    cdef Block b = worker_block(w, scr, <floating*>w.drop_buf, rows, 0)
    cdef floating* G = <floating*>w.grads
    cdef StepOut out
    forward_loss(w, theta, &b, 0, n, delta_ptr(w.s, scr, w.cap, 0))
    out = sum_rows(w.row_loss, w.row_correct, n)
    if not out.finite:
        return out
    if not w.terms.clip_norm > 0:
        block_backward(w.s, theta, &b, n, G, w)
        return out
    block_backward(w.s, theta, &b, n, G, NULL)
    update_layers(w, theta, 1, clip_gradient(w, G, 1, <floating>n, 1), 1)
    return out


# --------------------------------------------------------------------------
# The trainer: buffers once per fit, then many steps per run call
# --------------------------------------------------------------------------

cdef class SyncTrainer:
    """Buffers and state for one ``fit`` with ``parallel="sync"``.

    Everything is allocated here, once: scratch for every chunk (or the
    whole batch), the gradient buffers, optimizer state, per-row loss slots.
    ``run`` then performs many steps without touching Python objects.

    Parameters
    ----------
    plan : Plan
        The network's shape.
    theta : ndarray of shape (plan.n_params,), float32 or float64
        The parameters, trained in place (INOUT).
    X : ndarray of shape (N, sizes[0]), theta's dtype, or SparseRows
        Training inputs (IN), C-contiguous; sparse rows are densified a batch
        at a time (``_kernels_sparse.pxd``).
    Y : ndarray of shape (N, sizes[-1]), theta's dtype
        Targets (IN).
    labels : ndarray of shape (N,), int64, or None
        Class labels for the accuracy count (IN).
    batch_size : int
        Rows per step (the last batch of an epoch may be smaller).
    mode : {"chunked", "batch", "split"}
        How a step is shared among threads (a name of ``MODES``; module doc).
    nthreads : int
        The OpenMP team's size; settable between runs (``nthreads``).
    optimizer : {"sgd", "adam"}
        With its settings ``momentum``, ``nesterov``, ``weight_decay``,
        ``beta1``, ``beta2``, ``eps`` (as reference.sgd_update / adam_update).
    state_m, state_v : ndarray of shape (plan.n_params,), theta's dtype, or None
        Momentum velocity or Adam's m, and Adam's v (INOUT): continued and
        updated in place (the training state's own buffers); None allocates zeros.
    """
    cdef _Plan plan
    cdef object theta, X, Y, labels, scratch, grads, state_m, state_v, row_loss, row_correct
    cdef object weights, drop_buf, norm_parts, deltas
    cdef _Dropout dropout
    cdef Worker w
    cdef readonly Py_ssize_t batch_size, cap, n_chunks
    cdef Mode _mode
    cdef public int nthreads      # settable between runs: chunked results do not depend on it
    cdef bint is_float
    # The dropout masks of a step are keyed by (seed, epoch, step): step is the optimizer
    # step about to be taken (Adam's t - 1), passed to run; the caller sets epoch before run.
    cdef readonly unsigned long long seed
    cdef public unsigned long long epoch

    def __init__(self, _Plan plan not None, theta, X, Y, labels, Py_ssize_t batch_size, str mode,
                 int nthreads, str optimizer, double momentum, bint nesterov,
                 double weight_decay, double beta1, double beta2, double eps,
                 state_m=None, state_v=None):
        check_trainer_arrays(plan, theta, X, Y, labels, batch_size, optimizer)
        check_state("state_m", state_m, theta)
        if optimizer == "adam":
            check_state("state_v", state_v, theta)
        self._mode = <Mode>lookup(MODES, "mode", mode)
        self.plan = plan
        self.theta, self.X, self.Y, self.labels = theta, X, Y, labels
        self.batch_size = batch_size
        self.nthreads = max(1, nthreads)
        self.is_float = theta.dtype == np.float32
        dtype = theta.dtype
        P = plan.s.n_params
        if self._mode == CHUNKED:
            self.n_chunks = n_chunks(batch_size)
            # the largest chunk of any batch of <= batch_size rows (the last one may be smaller)
            self.cap = max(min(batch_size, ROWS_PER_CHUNK), (batch_size + MAX_CHUNKS - 1) // MAX_CHUNKS)
        else:
            self.n_chunks = 1
            self.cap = batch_size
        self.scratch = np.zeros(self.n_chunks * self.cap * plan.s.row_width, dtype=dtype)
        self.grads = np.zeros(self.n_chunks * P, dtype=dtype)
        # split mode keeps the δ of every layer (cap rows each)
        self.deltas = np.zeros(self.cap * split_delta_width(&plan.s) if self._mode == SPLIT else 1,
                               dtype=dtype)
        self.state_m = np.zeros(P, dtype=dtype) if state_m is None else state_m
        if optimizer == "adam":
            self.state_v = np.zeros(P, dtype=dtype) if state_v is None else state_v
        else:
            self.state_v = np.zeros(1, dtype=dtype)
        self.row_loss = np.zeros(batch_size, dtype=np.float64)
        self.row_correct = np.zeros(batch_size, dtype=np.uint8)
        self.epoch = self.seed = 0
        w = &self.w                 # the arrays above live as long as the trainer
        w.s = &plan.s
        w.opt = make_opt(optimizer, momentum, nesterov, weight_decay, beta1, beta2, eps)
        w.terms.weight = NULL
        w.terms.weight_scale = 1
        w.terms.drop = NULL
        w.terms.clip_norm = 0
        w.terms.norm_parts = NULL
        set_worker_inputs(w, X)
        w.Y = cnp.PyArray_DATA(Y)
        w.labels = <const cnp.int64_t*>cnp.PyArray_DATA(labels) if labels is not None else NULL
        w.cap = self.cap
        w.scratch = cnp.PyArray_DATA(self.scratch)
        w.drop_buf = NULL
        w.drop_stride = 0
        w.grads = cnp.PyArray_DATA(self.grads)
        w.m = cnp.PyArray_DATA(self.state_m)
        w.v = cnp.PyArray_DATA(self.state_v)
        w.deltas = cnp.PyArray_DATA(self.deltas)
        w.row_loss = <double*>cnp.PyArray_DATA(self.row_loss)
        w.row_correct = <unsigned char*>cnp.PyArray_DATA(self.row_correct)
        w.nthreads = self.nthreads

    @property
    def mode(self):
        """The mode's name (a key of ``MODES``)."""
        return Mode(self._mode).name.lower()

    def set_terms(self, sample_weight, dropout, double clip_norm, seed):
        """Add sample weights, dropout and clipping to every step (issue 14).

        Buffers are made here, once: the dropout buffers of every block
        (2 · cap · Σ hidden widths each) and the partial norms.

        Parameters
        ----------
        sample_weight : ndarray of shape (N,), float64, or None
            One weight >= 0 per row of X (IN).
        dropout : sequence of float, or None
            One drop rate per hidden layer.
        clip_norm : float
            > 0 to clip the mean gradient's global norm; 0 for none.
        seed : int
            The dropout masks' seed (with ``epoch`` and the step).
        """
        cdef Worker* w = &self.w
        P = self.plan.s.n_params
        w.terms.weight = NULL
        w.terms.drop = NULL
        w.drop_buf = NULL
        w.drop_stride = 0
        w.terms.weight_scale = 1
        w.terms.clip_norm = clip_norm if clip_norm > 0 else 0
        self.norm_parts = np.zeros((P + ELEM_BLOCK - 1) // ELEM_BLOCK, dtype=np.float64)
        w.terms.norm_parts = <double*>cnp.PyArray_DATA(self.norm_parts)
        if sample_weight is not None:
            _check_weights("trainer", sample_weight, self.X.shape[0])
            self.weights = sample_weight
            w.terms.weight = <const double*>cnp.PyArray_DATA(self.weights)
        if dropout is not None:
            self.dropout = _Dropout(self.plan.sizes, dropout, self.plan.s.hidden == RELU)
            # ReLU layers are masked in place and need no buffer (see drop_rows)
            w.drop_stride = 0 if self.dropout.d.in_place else 2 * self.cap * self.dropout.d.width
            self.drop_buf = np.zeros(max(1, self.n_chunks * w.drop_stride), dtype=self.theta.dtype)
            w.terms.drop = &self.dropout.d
            w.drop_buf = cnp.PyArray_DATA(self.drop_buf)
        self.seed = int(seed) % 2**64

    def run(self, order, Py_ssize_t first, Py_ssize_t stop, double lr, long step):
        """Steps for batches first..stop-1 of ``order`` (a permutation of the rows).

        The trainer keeps no step count of its own: the caller's training state
        owns it, passes it in and stores the one returned.

        Parameters
        ----------
        order : ndarray of shape (N,), intp
            The epoch's order of the rows (IN); batch i is order[i·B:(i+1)·B].
        first, stop : int
            The batches to train on, first..stop-1.
        lr : float
            The learning rate of these steps.
        step : int
            Optimizer steps taken before this call (Adam's t; it also keys the
            dropout masks), >= 0.

        Returns
        -------
        (loss_sum, n_correct, n_seen, steps, step)
            ``steps`` batches were visited; ``step`` is the optimizer step count
            after them (a batch of weight 0 takes no step).  Stops early, without
            updating, at a batch whose loss is not finite.
        """
        check_order(order, self.X.shape[0], first, stop, self.batch_size)
        if step < 0:
            raise ValueError(f"trainer: step must be >= 0; got {step}")
        cdef void* theta = cnp.PyArray_DATA(self.theta)
        if self.is_float:
            return _run[float](self, <float*>theta, order, first, stop, lr, step)
        return _run[double](self, <double*>theta, order, first, stop, lr, step)


cdef tuple _run(SyncTrainer t,                    # INOUT its worker
                floating* theta,                  # INOUT (n_params,)
                const cnp.intp_t[::1] order,      # IN (N,)
                Py_ssize_t first, Py_ssize_t stop, double lr,
                long step):                       # IN optimizer steps taken before
    cdef Worker* w = &t.w
    cdef Py_ssize_t N = order.shape[0], B = t.batch_size, i, start, n, r
    cdef double loss_sum = 0, wsum
    cdef Py_ssize_t n_correct = 0, n_seen = 0, steps = 0
    cdef StepOut out
    cdef Mode mode = t._mode
    cdef int h
    cdef const cnp.intp_t* rows
    cdef uint64_t* keys = t.dropout.keys if w.terms.drop != NULL else NULL
    cdef uint64_t seed = t.seed, epoch = t.epoch
    cdef unsigned int csr
    if mode == SPLIT and (w.terms.drop != NULL or w.terms.clip_norm > 0):
        mode = BATCH       # not split (see _kernels_split.pyx); the caller holds BLAS at 1
    w.opt.lr = lr
    w.nthreads = t.nthreads
    with nogil:
        csr = flush_subnormals()
        for i in range(first, stop):
            start = i * B
            n = min(B, N - start)
            if n <= 0:
                break
            rows = &order[start]
            if w.terms.weight != NULL:
                wsum = 0
                for r in range(n):
                    wsum += w.terms.weight[rows[r]]
                if not wsum > 0:        # a batch of weight 0: no update, no examples
                    steps += 1
                    continue
                w.terms.weight_scale = n / wsum
            if keys != NULL:
                for h in range(w.terms.drop.n_hidden):
                    keys[h] = dropout_key(seed, epoch, <uint64_t>step, h)
            if w.opt.kind == ADAM:
                adam_corrections(&w.opt, <double>(step + 1))
            if mode == SPLIT:
                out = step_split(w, theta, rows, n)
            elif mode == CHUNKED:
                out = step_chunked(w, theta, rows, n)
            else:
                out = step_batch(w, theta, rows, n)
            if not out.finite:
                break
            step += 1
            loss_sum += out.loss_sum
            n_correct += out.correct
            n_seen += n
            steps += 1
        restore_fpu(csr)
    return loss_sum, n_correct, n_seen, steps, step
