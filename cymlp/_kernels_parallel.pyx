# cython: language_level=3
"""``parallel="hogwild"`` and ``parallel="average"``: one SGD worker per thread.

See docs/parallel-sgd.md for what each strategy does and when it helps.

The epoch's global batches 0..n_batches-1 (consecutive slices of the
permutation ``order``, as for sync) are dealt round-robin: worker w takes
every batch i with i % n_workers == w, in increasing order.  A ``run`` call
for batches first..stop-1 therefore hands each worker its share of that
range, so network.py's calls of ~0.2 s, progress and Ctrl-C work unchanged.
Each worker does whole-batch steps on one thread (``chunk_loss_grad`` on the
whole batch, BLAS limited to one thread by the caller) with its own scratch,
gradient buffer and optimizer state (momentum/Adam m, v, step count).

hogwild
    Every worker reads and writes the one shared ``theta`` with plain,
    unsynchronised loads and stores (no locks, no atomics): a worker's
    gradient may be computed from weights that other workers are changing,
    and two updates of one weight can overwrite each other.
average
    Worker w trains replica w (started from theta); at an averaging point
    the replicas' weighted mean is checked for finiteness, copied into theta
    and (unless one-shot) back into every replica.  Between averaging points
    theta holds the last averaged model.
"""

from cython.parallel cimport prange
from libc.math cimport isfinite
from libc.string cimport memcpy

import numpy as np
cimport numpy as cnp

from ._blas cimport floating
from ._fpu cimport flush_subnormals, restore_fpu
from ._kernels_common cimport (
    Plan, Shape, Opt, StepOut, OPT_ADAM, ELEM_BLOCK, make_opt, adam_corrections,
    check_trainer_arrays, check_order, chunk_loss_grad, sum_rows, update_range,
)

from ._kernels_common import lookup_code

cnp.import_array()

STRATEGIES = {"hogwild": 0, "average": 1}
WEIGHTINGS = {"uniform": 0, "examples": 1}

cdef enum:
    STRATEGY_HOGWILD = 0
    STRATEGY_AVERAGE = 1

# Per-worker tallies, padded to one 64-byte cache line each (no false sharing).
cdef enum:
    TALLY_WIDTH = 8
    T_OPT_STEPS = 0       # optimizer steps of this worker (Adam's t), for the whole fit
    T_SINCE_SYNC = 1      # examples since this replica was last overwritten by the average
    T_CORRECT = 2         # this run call: correctly classified examples
    T_SEEN = 3            # this run call: examples
    T_STEPS = 4           # this run call: steps

cdef extern from *:
    """
    /* The stop flag is written by one worker and polled by the others between
       batches; volatile keeps the compiler from caching it in a register. */
    static inline int cymlp_flag_get(int* p) { return *(volatile int*)p; }
    static inline void cymlp_flag_set(int* p) { *(volatile int*)p = 1; }
    """
    int cymlp_flag_get(int* p) noexcept nogil
    void cymlp_flag_set(int* p) noexcept nogil


# --------------------------------------------------------------------------
# One worker's steps
# --------------------------------------------------------------------------

cdef void worker_steps(const Shape* s, floating* theta, const floating* X, const floating* Y,
                       const cnp.intp_t* order, const cnp.int64_t* labels, Py_ssize_t N,
                       Py_ssize_t B, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t stride,
                       floating* scr, floating* G, floating* m, floating* v,
                       double* row_loss, unsigned char* row_correct, const Opt* shared_opt,
                       cnp.int64_t* tally, double* loss_sum, int* failed) noexcept nogil:
    """One worker's SGD steps on global batches i0, i0 + stride, ... < i1.

    theta     IN/OUT  the weights this worker trains: the shared weights
                      (hogwild, updated without locks) or its replica (average)
    scr, G    scratch for ``B`` rows, gradient sums (n_params): this worker's own
    m, v      IN/OUT  this worker's optimizer state
    tally     IN/OUT  this worker's counters (T_* slots)
    loss_sum  IN/OUT  this call's summed loss of the worker's examples
    failed    IN/OUT  shared flag: set on a non-finite loss; every worker stops
                      before its next batch once it is set
    """
    cdef Opt o = shared_opt[0]          # own copy: Adam's bias corrections are per worker
    cdef Py_ssize_t i = i0, n, start, l
    cdef StepOut res
    while i < i1:
        if cymlp_flag_get(failed):
            break
        start = i * B
        n = min(B, N - start)
        if n <= 0:
            break
        if o.kind == OPT_ADAM:
            adam_corrections(&o, <double>(tally[T_OPT_STEPS] + 1))
        chunk_loss_grad(s, theta, X, Y, order + start, labels, n, scr, B, G, row_loss, row_correct)
        res = sum_rows(row_loss, row_correct, n)
        if not res.finite:
            cymlp_flag_set(failed)
            break
        for l in range(s.n_layers):
            update_range(theta + s.w_off[l], G + s.w_off[l], 1, 0, 0, s.sizes[l] * s.sizes[l + 1],
                         <floating>n, True, &o, m + s.w_off[l], v + s.w_off[l])
            update_range(theta + s.b_off[l], G + s.b_off[l], 1, 0, 0, s.sizes[l + 1],
                         <floating>n, False, &o, m + s.b_off[l], v + s.b_off[l])
        tally[T_OPT_STEPS] += 1
        tally[T_SINCE_SYNC] += n
        tally[T_CORRECT] += res.correct
        tally[T_SEEN] += n
        tally[T_STEPS] += 1
        loss_sum[0] += res.loss_sum
        i += stride


# --------------------------------------------------------------------------
# Averaging the replicas
# --------------------------------------------------------------------------

cdef bint average_range(floating* out, const floating* replicas, Py_ssize_t n_rep, Py_ssize_t P,
                        const floating* weights, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    """out[i] = r_0[i] + Σ_{t≥1} w_t (r_t[i] − r_0[i]) for i in i0..i1-1; True if all finite.

    Written as a correction of replica 0 so that identical replicas average to
    exactly themselves (every difference is 0).  With Σ w = 1 this is the
    weighted mean Σ w_t r_t.  A non-finite replica makes the result
    non-finite (inf − x, inf − inf, 0·inf), so it is caught here.
    """
    cdef Py_ssize_t i, t
    cdef const floating* r0 = replicas
    cdef const floating* rt
    cdef floating w
    for i in range(i0, i1):
        out[i] = 0
    for t in range(1, n_rep):
        rt = replicas + t * P
        w = weights[t]
        for i in range(i0, i1):
            out[i] = out[i] + w * (rt[i] - r0[i])
    for i in range(i0, i1):
        out[i] = r0[i] + out[i]
    for i in range(i0, i1):
        if not isfinite(out[i]):
            return False
    return True


cdef bint average_replicas_into(floating* out, const floating* replicas, Py_ssize_t n_rep,
                                Py_ssize_t P, const floating* weights, unsigned char* block_ok,
                                int nthreads) noexcept nogil:
    """Weighted mean of ``n_rep`` replicas (n_rep, P) into ``out`` (P,); True if finite.

    ``weights`` (n_rep,) must sum to 1.  ``block_ok`` holds one flag per
    block of ELEM_BLOCK parameters (blocks run on ``nthreads`` threads).
    """
    cdef Py_ssize_t nb = (P + ELEM_BLOCK - 1) // ELEM_BLOCK, i
    cdef unsigned int csr
    for i in prange(nb, schedule='static', num_threads=nthreads,
                    use_threads_if=nthreads > 1 and nb > 1):
        csr = flush_subnormals()      # each worker as the calling thread (cymlp/_fpu.pxd)
        block_ok[i] = average_range(out, replicas, n_rep, P, weights,
                                    i * ELEM_BLOCK, min((i + 1) * ELEM_BLOCK, P))
        restore_fpu(csr)
    for i in range(nb):
        if not block_ok[i]:
            return False
    return True


def _weights(examples, int weighting):
    """Averaging weights summing to 1: uniform, or proportional to ``examples``.

    Raises ValueError for examples-weighting when no replica has processed anything.
    """
    examples = np.asarray(examples, dtype=np.float64)
    total = examples.sum()
    if weighting == 1:
        if total <= 0:
            raise ValueError("examples-weighted averaging needs at least one example")
        return examples / total
    return np.full(examples.shape[0], 1.0 / examples.shape[0])


def average_replicas(const floating[:, ::1] replicas, const double[::1] examples, str weighting,
                     floating[::1] out):
    """Average the rows of ``replicas`` (n_rep, P) into ``out`` (P,), as ``average`` does.

    ``weighting="uniform"``: every replica counts 1/n_rep (Zinkevich et al.);
    ``"examples"``: replica t counts examples[t] / Σ examples (examples
    processed since the last averaging, a simplified reading of Cheng et al.'s
    weighted averaging).  Returns False, leaving ``out`` unspecified, when the
    mean is not finite.  For tests and teaching; the trainer calls the same
    nogil helper.
    """
    cdef Py_ssize_t n_rep = replicas.shape[0], P = replicas.shape[1]
    if n_rep < 1 or P < 1 or out.shape[0] != P or examples.shape[0] != n_rep:
        raise ValueError(f"average_replicas: replicas ({n_rep}, {P}), examples "
                         f"({examples.shape[0]},) and out ({out.shape[0]},) do not match: "
                         "want (n_rep, P), (n_rep,), (P,) with n_rep, P >= 1")
    weights = np.asarray(_weights(np.asarray(examples), lookup_code(WEIGHTINGS, "weighting", weighting)),
                         dtype=np.asarray(out).dtype)
    cdef floating[::1] w = weights
    cdef unsigned char[::1] block_ok = np.zeros((P + ELEM_BLOCK - 1) // ELEM_BLOCK, dtype=np.uint8)
    cdef bint ok
    cdef unsigned int csr
    with nogil:
        csr = flush_subnormals()
        ok = average_replicas_into(&out[0], &replicas[0, 0], n_rep, P, &w[0], &block_ok[0], 1)
        restore_fpu(csr)
    return ok


cdef int average_point(floating* theta, floating* replicas, floating* avg, floating* weights,
                       cnp.int64_t* tally, unsigned char* block_ok, Py_ssize_t W, Py_ssize_t P,
                       int weighting, bint one_shot) noexcept nogil:
    """Average the replicas into theta, and back into them unless ``one_shot``.

    Returns 1 when it averaged, 0 when no replica had trained since the last
    averaging (nothing to do), -1 when the mean is not finite (theta and the
    replicas are left untouched).
    """
    cdef Py_ssize_t w, total = 0
    for w in range(W):
        total += tally[w * TALLY_WIDTH + T_SINCE_SYNC]
    if total == 0:
        return 0
    for w in range(W):
        if weighting == 1:
            weights[w] = <floating>(<double>tally[w * TALLY_WIDTH + T_SINCE_SYNC] / <double>total)
        else:
            weights[w] = <floating>(1.0 / <double>W)
    if not average_replicas_into(avg, replicas, W, P, weights, block_ok, <int>W):
        return -1
    memcpy(theta, avg, P * sizeof(floating))
    if not one_shot:
        for w in range(W):
            memcpy(replicas + w * P, avg, P * sizeof(floating))
            tally[w * TALLY_WIDTH + T_SINCE_SYNC] = 0
    return 1


# --------------------------------------------------------------------------
# The trainer: buffers once per fit, then many rounds per run call
# --------------------------------------------------------------------------

cdef class ParallelTrainer:
    """Buffers and state for one ``fit`` with ``parallel="hogwild"`` or ``"average"``.

    Everything is allocated here, once: per worker scratch for one batch, a
    gradient buffer, optimizer state, per-row loss slots and tallies; for
    ``average`` the replicas and the averaging buffer.  ``n_workers`` >= 2
    (n_threads == 1 goes through :class:`cymlp._kernels.SyncTrainer`, which is exact SGD).
    The arrays are checked as for SyncTrainer.
    """
    cdef Plan plan
    cdef object theta, X, Y, labels, replicas, scratch, grads, state_m, state_v
    cdef object row_loss, row_correct, tally, losses, avg, weights, block_ok
    cdef readonly Py_ssize_t batch_size, n_workers, average_every, n_averages
    cdef readonly int strategy, weighting
    cdef readonly bint one_shot
    cdef Opt opt
    cdef bint is_float, has_labels
    cdef int failed

    def __init__(self, Plan plan not None, theta, X, Y, labels, Py_ssize_t batch_size,
                 str strategy, int n_workers, average_every, str weighting, str optimizer,
                 double momentum, bint nesterov, double weight_decay, double beta1, double beta2,
                 double eps):
        if n_workers < 2:
            raise ValueError("ParallelTrainer needs at least two workers; use SyncTrainer")
        check_trainer_arrays(plan, theta, X, Y, labels, batch_size, optimizer)
        self.strategy = lookup_code(STRATEGIES, "strategy", strategy)
        self.weighting = lookup_code(WEIGHTINGS, "weighting", weighting)
        self.one_shot = isinstance(average_every, str) and average_every == "end"
        self.average_every = 0 if average_every is None or self.one_shot else int(average_every)
        if self.average_every < 0:
            raise ValueError(f"average_every must be None, 'end' or >= 1; got {average_every!r}")
        self.plan = plan
        self.theta, self.X, self.Y = theta, X, Y
        self.has_labels = labels is not None
        self.labels = labels if labels is not None else np.zeros(1, dtype=np.int64)
        self.batch_size = batch_size
        self.n_workers = n_workers
        self.is_float = theta.dtype == np.float32
        dtype = theta.dtype
        P = plan.s.n_params
        W = n_workers
        self.scratch = np.zeros(W * batch_size * plan.s.row_width, dtype=dtype)
        self.grads = np.zeros(W * P, dtype=dtype)
        self.state_m = np.zeros(W * P, dtype=dtype)
        self.state_v = np.zeros(W * P if optimizer == "adam" else 1, dtype=dtype)
        self.row_loss = np.zeros(W * batch_size, dtype=np.float64)
        self.row_correct = np.zeros(W * batch_size, dtype=np.uint8)
        self.tally = np.zeros(W * TALLY_WIDTH, dtype=np.int64)
        self.losses = np.zeros(W * TALLY_WIDTH, dtype=np.float64)
        if self.strategy == STRATEGY_AVERAGE:
            self.replicas = np.tile(theta, W)
            self.avg = np.zeros(P, dtype=dtype)
            self.weights = np.zeros(W, dtype=dtype)
            self.block_ok = np.zeros((P + ELEM_BLOCK - 1) // ELEM_BLOCK, dtype=np.uint8)
        else:
            self.replicas = self.avg = self.weights = np.zeros(1, dtype=dtype)
            self.block_ok = np.zeros(1, dtype=np.uint8)
        self.opt = make_opt(optimizer, momentum, nesterov, weight_decay, beta1, beta2, eps)
        self.n_averages = 0

    @property
    def examples_since_sync(self):
        """Examples each replica has processed since it was last reset to the average."""
        return np.asarray(self.tally)[T_SINCE_SYNC::TALLY_WIDTH].copy()

    def replica(self, Py_ssize_t w):
        """A copy of replica ``w`` (average only; for tests)."""
        P = self.plan.s.n_params
        return np.asarray(self.replicas)[w * P:(w + 1) * P].copy()

    def run(self, order, Py_ssize_t first, Py_ssize_t stop, double lr):
        """Steps for global batches first..stop-1 of ``order``, dealt round-robin to the workers.

        Returns ``(loss_sum, n_correct, n_seen, steps)`` as SyncTrainer.run;
        ``loss_sum`` is NaN when an averaging point found a non-finite replica
        (theta is then left at the last good average).
        """
        check_order(order, self.X.shape[0], first, stop, self.batch_size)
        if self.is_float:
            return _run_parallel[float](self, self.theta, self.replicas, self.X, self.Y,
                                        self.scratch, self.grads, self.state_m, self.state_v,
                                        self.avg, self.weights, order, first, stop, lr)
        return _run_parallel[double](self, self.theta, self.replicas, self.X, self.Y,
                                     self.scratch, self.grads, self.state_m, self.state_v,
                                     self.avg, self.weights, order, first, stop, lr)


cdef tuple _run_parallel(ParallelTrainer t, floating[::1] theta, floating[::1] replicas,
                         const floating[:, ::1] X, const floating[:, ::1] Y,
                         floating[::1] scratch, floating[::1] grads, floating[::1] m,
                         floating[::1] v, floating[::1] avg, floating[::1] weights,
                         const cnp.intp_t[::1] order, Py_ssize_t first, Py_ssize_t stop,
                         double lr):
    cdef const cnp.int64_t[::1] labels_mv = t.labels
    cdef double[::1] row_loss = t.row_loss
    cdef unsigned char[::1] row_correct = t.row_correct
    cdef cnp.int64_t[::1] tally_mv = t.tally
    cdef double[::1] losses_mv = t.losses
    cdef unsigned char[::1] block_ok_mv = t.block_ok
    cdef const Shape* s = &t.plan.s
    cdef const cnp.int64_t* labels = &labels_mv[0] if t.has_labels else NULL
    cdef Py_ssize_t N = order.shape[0], B = t.batch_size, W = t.n_workers, P = s.n_params
    cdef Py_ssize_t n_batches = (N + B - 1) // B
    cdef Py_ssize_t period = t.average_every * W
    cdef Py_ssize_t seg_begin, seg_end, w, active
    cdef Py_ssize_t scr_stride = B * s.row_width
    cdef Py_ssize_t v_stride = P if t.opt.kind == OPT_ADAM else 0
    cdef bint average = t.strategy == STRATEGY_AVERAGE, one_shot = t.one_shot
    cdef int weighting = t.weighting, averaged = 0, n_averages = 0
    cdef Py_ssize_t rep_stride = P if average else 0
    cdef floating* base = &replicas[0] if average else &theta[0]
    cdef cnp.int64_t* tally = &tally_mv[0]
    cdef double* losses = &losses_mv[0]
    cdef Opt* o = &t.opt
    cdef int* failed = &t.failed
    cdef double loss_sum = 0
    cdef Py_ssize_t n_correct = 0, n_seen = 0, steps = 0
    cdef unsigned int csr, csr_w
    if stop > n_batches:
        stop = n_batches
    o.lr = lr
    t.failed = 0
    with nogil:
        csr = flush_subnormals()
        for w in range(W):
            tally[w * TALLY_WIDTH + T_CORRECT] = 0
            tally[w * TALLY_WIDTH + T_SEEN] = 0
            tally[w * TALLY_WIDTH + T_STEPS] = 0
            losses[w * TALLY_WIDTH] = 0
        seg_begin = first
        while seg_begin < stop:
            # a segment ends at the next averaging point (every average_every rounds of W batches)
            seg_end = stop
            if average and period > 0:
                seg_end = min(stop, (seg_begin // period + 1) * period)
            active = min(W, seg_end - seg_begin)
            # one batch in the segment: no OpenMP team for it
            for w in prange(W, schedule='static', chunksize=1, num_threads=active,
                            use_threads_if=active > 1):
                csr_w = flush_subnormals()
                worker_steps(s, base + w * rep_stride, &X[0, 0], &Y[0, 0], &order[0], labels,
                             N, B, seg_begin + (w - seg_begin % W + W) % W, seg_end, W,
                             &scratch[0] + w * scr_stride, &grads[0] + w * P,
                             &m[0] + w * P, &v[0] + w * v_stride,
                             &row_loss[0] + w * B, &row_correct[0] + w * B, o,
                             tally + w * TALLY_WIDTH, losses + w * TALLY_WIDTH, failed)
                restore_fpu(csr_w)
            if failed[0]:
                break
            if average and (seg_end == n_batches or (period > 0 and seg_end % period == 0)):
                averaged = average_point(&theta[0], &replicas[0], &avg[0], &weights[0], tally,
                                         &block_ok_mv[0], W, P, weighting, one_shot)
                if averaged < 0:
                    break
                n_averages += averaged
            seg_begin = seg_end
        for w in range(W):
            loss_sum += losses[w * TALLY_WIDTH]
            n_correct += tally[w * TALLY_WIDTH + T_CORRECT]
            n_seen += tally[w * TALLY_WIDTH + T_SEEN]
            steps += tally[w * TALLY_WIDTH + T_STEPS]
        restore_fpu(csr)
    t.n_averages += n_averages
    if averaged < 0:
        loss_sum = float("nan")       # network.py restores the last good weights and reports it
    return loss_sum, n_correct, n_seen, steps
