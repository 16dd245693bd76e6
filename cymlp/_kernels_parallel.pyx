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

from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cython.parallel cimport prange
from libc.math cimport isfinite
from libc.stdint cimport uintptr_t
from libc.string cimport memcpy, memset

import numpy as np
cimport numpy as cnp

from ._atomic cimport flag_get, flag_set
from ._blas cimport floating
from ._fpu cimport flush_subnormals, restore_fpu
from ._kernels_common cimport (
    Plan, Worker, StepOut, Strategy, Weighting, ADAM, AVERAGE, EXAMPLES, ELEM_BLOCK, lookup,
    make_opt, adam_corrections, check_trainer_arrays, check_order, set_worker_inputs, sum_rows,
)
from ._kernels_block cimport chunk_loss_grad
from ._kernels_update cimport update_layers

from ._kernels_common import STRATEGIES, WEIGHTINGS

cnp.import_array()


cdef struct Tally:
    # One worker's counters, 64 bytes: one cache line each (no false sharing).
    cnp.int64_t opt_steps       # optimizer steps of this worker (Adam's t), for the whole fit
    cnp.int64_t since_sync      # examples since this replica was last overwritten by the average
    cnp.int64_t correct         # this run call: correctly classified examples
    cnp.int64_t seen            # this run call: examples
    cnp.int64_t steps           # this run call: steps
    double loss_sum             # this run call: their summed loss
    char pad[16]


cdef struct Averaging:
    # The replicas of ``average`` and the buffers to average them (once per fit).
    void* replicas              # (n_rep, n_params) of theta's dtype: worker w trains row w
    void* avg                   # (n_params,) the weighted mean
    void* weights               # (n_rep,) the replicas' weights, summing to 1
    unsigned char* block_ok     # (ceil(n_params / ELEM_BLOCK),) finiteness per block
    Py_ssize_t n_rep
    Weighting weighting
    bint one_shot               # average_every="end": the replicas are never reset


# --------------------------------------------------------------------------
# One worker's steps
# --------------------------------------------------------------------------

cdef void worker_steps(const Worker* worker,      # IN; OUT the buffers it points to
                       floating* theta,           # INOUT the weights this worker trains
                       const cnp.intp_t* order,   # IN (N,) the epoch's order of the rows
                       Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t stride,
                       Tally* tally,              # INOUT this worker's counters
                       int* failed) noexcept nogil:   # INOUT the flag shared by all workers
    """One worker's SGD steps on global batches i0, i0 + stride, ... < i1.

    ``theta`` is the shared weights (hogwild, updated without locks) or the
    worker's replica (average).  A non-finite loss sets ``failed``; every
    worker stops before its next batch once it is set.  The worker runs on a
    copy of its ``Worker`` on this thread's stack: what a step writes into it
    (Adam's bias corrections) shares no cache line with another thread's.
    """
    cdef Worker own = worker[0]
    cdef Worker* w = &own
    cdef Py_ssize_t i = i0, n, start, B = w.cap
    cdef StepOut res
    while i < i1:
        if flag_get(failed):
            break
        start = i * B
        n = min(B, w.n_examples - start)
        if n <= 0:
            break
        if w.opt.kind == ADAM:
            adam_corrections(&w.opt, <double>(tally.opt_steps + 1))
        chunk_loss_grad(w, theta, order + start, 0, n, 0)
        res = sum_rows(w.row_loss, w.row_correct, n)
        if not res.finite:
            flag_set(failed)
            break
        update_layers(w, theta, 1, <floating>n, 1)
        tally.opt_steps += 1
        tally.since_sync += n
        tally.correct += res.correct
        tally.seen += n
        tally.steps += 1
        tally.loss_sum += res.loss_sum
        i += stride


# --------------------------------------------------------------------------
# Averaging the replicas
# --------------------------------------------------------------------------

cdef bint average_range(floating* out,               # OUT (P,), entries i0..i1-1
                        const floating* replicas,    # IN (n_rep, P)
                        Py_ssize_t n_rep, Py_ssize_t P,
                        const floating* weights,     # IN (n_rep,)
                        Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
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


cdef bint average_replicas_into(floating* out,               # OUT (P,)
                                const floating* replicas,    # IN (n_rep, P)
                                Py_ssize_t n_rep, Py_ssize_t P,
                                const floating* weights,     # IN (n_rep,), summing to 1
                                unsigned char* block_ok,     # OUT (ceil(P / ELEM_BLOCK),)
                                int nthreads) noexcept nogil:
    """Weighted mean of ``n_rep`` replicas into ``out``, blocks of ELEM_BLOCK parameters
    on ``nthreads`` threads; True if it is finite."""
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


def _weights(examples, Weighting weighting):
    """Averaging weights summing to 1: uniform, or proportional to ``examples``.

    Raises ValueError for examples-weighting when no replica has processed anything.
    """
    examples = np.asarray(examples, dtype=np.float64)
    total = examples.sum()
    if weighting == EXAMPLES:
        if total <= 0:
            raise ValueError("examples-weighted averaging needs at least one example")
        return examples / total
    return np.full(examples.shape[0], 1.0 / examples.shape[0])


def average_replicas(const floating[:, ::1] replicas,   # IN
                     const double[::1] examples,        # IN
                     str weighting,
                     floating[::1] out):                # OUT
    """Average the rows of ``replicas`` into ``out``, as ``average`` does.

    For tests and teaching; the trainer calls the same nogil function.

    Parameters
    ----------
    replicas : ndarray of shape (n_rep, P), float32 or float64
        The models to average, one per row; n_rep, P >= 1.
    examples : ndarray of shape (n_rep,), float64
        Examples each replica processed since the last averaging.
    weighting : {"uniform", "examples"}
        ``"uniform"``: every replica counts 1/n_rep (Zinkevich et al.);
        ``"examples"``: replica t counts examples[t] / Σ examples (a
        simplified reading of Cheng et al.'s weighted averaging).
    out : ndarray of shape (P,), of replicas' dtype
        The mean; unspecified when it is not finite.

    Returns
    -------
    bool
        Whether the mean is finite.
    """
    cdef Py_ssize_t n_rep = replicas.shape[0], P = replicas.shape[1]
    if n_rep < 1 or P < 1 or out.shape[0] != P or examples.shape[0] != n_rep:
        raise ValueError(f"average_replicas: replicas ({n_rep}, {P}), examples "
                         f"({examples.shape[0]},) and out ({out.shape[0]},) do not match: "
                         "want (n_rep, P), (n_rep,), (P,) with n_rep, P >= 1")
    weights = np.asarray(_weights(np.asarray(examples), lookup(WEIGHTINGS, "weighting", weighting)),
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


cdef int average_point(const Averaging* a,    # IN the replicas; OUT the mean, replicas reset
                       floating* theta,       # OUT (P,) the mean
                       Py_ssize_t P,
                       Tally* tallies) noexcept nogil:   # INOUT (n_rep,) since_sync reset
    """Average the replicas into theta, and back into them unless ``one_shot``.

    Returns 1 when it averaged, 0 when no replica had trained since the last
    averaging (nothing to do), -1 when the mean is not finite (theta and the
    replicas are left untouched).
    """
    cdef Py_ssize_t w, W = a.n_rep, total = 0
    cdef floating* weights = <floating*>a.weights
    cdef floating* avg = <floating*>a.avg
    cdef floating* replicas = <floating*>a.replicas
    for w in range(W):
        total += tallies[w].since_sync
    if total == 0:
        return 0
    for w in range(W):
        if a.weighting == EXAMPLES:
            weights[w] = <floating>(<double>tallies[w].since_sync / <double>total)
        else:
            weights[w] = <floating>(1.0 / <double>W)
    if not average_replicas_into(avg, replicas, W, P, weights, a.block_ok, <int>W):
        return -1
    memcpy(theta, avg, P * sizeof(floating))
    if not a.one_shot:
        for w in range(W):
            memcpy(replicas + w * P, avg, P * sizeof(floating))
            tallies[w].since_sync = 0
    return 1


# --------------------------------------------------------------------------
# The trainer: buffers once per fit, then many rounds per run call
# --------------------------------------------------------------------------

cdef class ParallelTrainer:
    """Buffers and state for one ``fit`` with ``parallel="hogwild"`` or ``"average"``.

    Everything is allocated here, once: per worker scratch for one batch, a
    gradient buffer, optimizer state, per-row loss slots and tallies; for
    ``average`` the replicas and the averaging buffer.

    Parameters
    ----------
    plan, theta, X, Y, labels, batch_size
        As for :class:`cymlp._kernels.SyncTrainer` (and checked alike).
    strategy : {"hogwild", "average"}
        A name of ``STRATEGIES`` (module doc).
    n_workers : int
        Workers, one per thread, >= 2 (n_threads == 1 goes through
        :class:`cymlp._kernels.SyncTrainer`, which is exact SGD).
    average_every : int >= 1, "end" or None
        ``average``: rounds of ``n_workers`` batches between averaging points
        (and at each epoch end); "end": one-shot averaging, never reset.
    weighting : {"uniform", "examples"}
        The replicas' weights at an averaging point (a name of ``WEIGHTINGS``).
    optimizer, momentum, nesterov, weight_decay, beta1, beta2, eps
        As for SyncTrainer; each worker keeps its own optimizer state.
    """
    cdef Plan plan
    cdef object theta, X, Y, labels, replicas, scratch, grads, state_m, state_v
    cdef object row_loss, row_correct, avg, weights, block_ok
    cdef readonly Py_ssize_t batch_size, n_workers, average_every, n_averages
    cdef Strategy _strategy
    cdef Averaging averaging
    cdef Worker* workers
    cdef Tally* tallies
    cdef void* tally_mem
    cdef bint is_float
    cdef int failed

    def __init__(self, Plan plan not None, theta, X, Y, labels, Py_ssize_t batch_size,
                 str strategy, int n_workers, average_every, str weighting, str optimizer,
                 double momentum, bint nesterov, double weight_decay, double beta1, double beta2,
                 double eps):
        if n_workers < 2:
            raise ValueError("ParallelTrainer needs at least two workers; use SyncTrainer")
        check_trainer_arrays(plan, theta, X, Y, labels, batch_size, optimizer)
        self._strategy = <Strategy>lookup(STRATEGIES, "strategy", strategy)
        self.averaging.weighting = <Weighting>lookup(WEIGHTINGS, "weighting", weighting)
        self.averaging.one_shot = isinstance(average_every, str) and average_every == "end"
        self.average_every = (0 if average_every is None or self.averaging.one_shot
                              else int(average_every))
        if self.average_every < 0:
            raise ValueError(f"average_every must be None, 'end' or >= 1; got {average_every!r}")
        self.plan = plan
        self.theta, self.X, self.Y, self.labels = theta, X, Y, labels
        self.batch_size = batch_size
        self.n_workers = n_workers
        self.is_float = theta.dtype == np.float32
        dtype = theta.dtype
        cdef Py_ssize_t P = plan.s.n_params, W = n_workers
        cdef Py_ssize_t V = P if optimizer == "adam" else 0     # SGD never reads v
        self.scratch = np.zeros(W * batch_size * plan.s.row_width, dtype=dtype)
        self.grads = np.zeros(W * P, dtype=dtype)
        self.state_m = np.zeros(W * P, dtype=dtype)
        self.state_v = np.zeros(max(1, W * V), dtype=dtype)
        self.row_loss = np.zeros(W * batch_size, dtype=np.float64)
        self.row_correct = np.zeros(W * batch_size, dtype=np.uint8)
        if self._strategy == AVERAGE:
            self.replicas = np.tile(theta, W)
            self.avg = np.zeros(P, dtype=dtype)
            self.weights = np.zeros(W, dtype=dtype)
            self.block_ok = np.zeros((P + ELEM_BLOCK - 1) // ELEM_BLOCK, dtype=np.uint8)
        else:
            self.replicas = self.avg = self.weights = np.zeros(1, dtype=dtype)
            self.block_ok = np.zeros(1, dtype=np.uint8)
        self.averaging.replicas = cnp.PyArray_DATA(self.replicas)
        self.averaging.avg = cnp.PyArray_DATA(self.avg)
        self.averaging.weights = cnp.PyArray_DATA(self.weights)
        self.averaging.block_ok = <unsigned char*>cnp.PyArray_DATA(self.block_ok)
        self.averaging.n_rep = W
        self.n_averages = 0
        # the workers, and their tallies on cache lines of their own
        self.workers = <Worker*>PyMem_Malloc(W * sizeof(Worker))
        self.tally_mem = PyMem_Malloc((W + 1) * sizeof(Tally))
        if self.workers == NULL or self.tally_mem == NULL:
            raise MemoryError()
        self.tallies = <Tally*>((<uintptr_t>self.tally_mem + 63) & ~(<uintptr_t>63))
        memset(self.tallies, 0, W * sizeof(Tally))
        cdef Worker* w
        cdef Py_ssize_t k, itemsize = theta.itemsize
        for k in range(W):
            w = &self.workers[k]
            memset(w, 0, sizeof(Worker))
            w.s = &plan.s
            w.opt = make_opt(optimizer, momentum, nesterov, weight_decay, beta1, beta2, eps)
            w.terms.weight_scale = 1
            set_worker_inputs(w, X)
            w.Y = cnp.PyArray_DATA(Y)
            w.labels = <const cnp.int64_t*>cnp.PyArray_DATA(labels) if labels is not None else NULL
            w.cap = batch_size
            w.scratch = <char*>cnp.PyArray_DATA(self.scratch) + k * batch_size * plan.s.row_width * itemsize
            w.grads = <char*>cnp.PyArray_DATA(self.grads) + k * P * itemsize
            w.m = <char*>cnp.PyArray_DATA(self.state_m) + k * P * itemsize
            w.v = <char*>cnp.PyArray_DATA(self.state_v) + k * V * itemsize
            w.row_loss = <double*>cnp.PyArray_DATA(self.row_loss) + k * batch_size
            w.row_correct = <unsigned char*>cnp.PyArray_DATA(self.row_correct) + k * batch_size
            w.nthreads = 1

    def __dealloc__(self):
        PyMem_Free(self.workers)
        PyMem_Free(self.tally_mem)

    @property
    def strategy(self):
        """The strategy's name (a key of ``STRATEGIES``)."""
        return Strategy(self._strategy).name.lower()

    @property
    def examples_since_sync(self):
        """Examples each replica has processed since it was last reset to the average."""
        return np.array([self.tallies[k].since_sync for k in range(self.n_workers)], dtype=np.int64)

    def replica(self, Py_ssize_t w):
        """A copy of replica ``w`` (average only; for tests)."""
        P = self.plan.s.n_params
        return np.asarray(self.replicas)[w * P:(w + 1) * P].copy()

    def run(self, order, Py_ssize_t first, Py_ssize_t stop, double lr):
        """Steps for global batches first..stop-1 of ``order``, dealt round-robin to the workers.

        Parameters
        ----------
        order : ndarray of shape (N,), intp
            The epoch's order of the rows (IN); batch i is order[i·B:(i+1)·B].
        first, stop : int
            The global batches to train on, first..stop-1.
        lr : float
            The learning rate of these steps.

        Returns
        -------
        (loss_sum, n_correct, n_seen, steps)
            As :meth:`cymlp._kernels.SyncTrainer.run`; ``loss_sum`` is NaN when
            an averaging point found a non-finite replica (theta is then left at
            the last good average).
        """
        check_order(order, self.X.shape[0], first, stop, self.batch_size)
        cdef void* theta = cnp.PyArray_DATA(self.theta)
        if self.is_float:
            return _run_parallel[float](self, <float*>theta, order, first, stop, lr)
        return _run_parallel[double](self, <double*>theta, order, first, stop, lr)


cdef tuple _run_parallel(ParallelTrainer t,              # INOUT its workers, replicas
                         floating* theta,                # INOUT (n_params,)
                         const cnp.intp_t[::1] order,    # IN (N,)
                         Py_ssize_t first, Py_ssize_t stop, double lr):
    cdef Py_ssize_t N = order.shape[0], B = t.batch_size, W = t.n_workers
    cdef Py_ssize_t P = t.plan.s.n_params, n_batches = (N + B - 1) // B
    cdef Py_ssize_t period = t.average_every * W
    cdef Py_ssize_t seg_begin, seg_end, k, active
    cdef bint average = t._strategy == AVERAGE
    cdef int averaged = 0, n_averages = 0
    cdef Py_ssize_t rep_stride = P if average else 0
    cdef floating* base = <floating*>t.averaging.replicas if average else theta
    cdef Tally* tallies = t.tallies
    cdef int* failed = &t.failed
    cdef double loss_sum = 0
    cdef Py_ssize_t n_correct = 0, n_seen = 0, steps = 0
    cdef unsigned int csr, csr_w
    if stop > n_batches:
        stop = n_batches
    t.failed = 0
    for k in range(W):
        t.workers[k].opt.lr = lr
        tallies[k].correct = tallies[k].seen = tallies[k].steps = 0
        tallies[k].loss_sum = 0
    with nogil:
        csr = flush_subnormals()
        seg_begin = first
        while seg_begin < stop:
            # a segment ends at the next averaging point (every average_every rounds of W batches)
            seg_end = stop
            if average and period > 0:
                seg_end = min(stop, (seg_begin // period + 1) * period)
            active = min(W, seg_end - seg_begin)
            # one batch in the segment: no OpenMP team for it
            for k in prange(W, schedule='static', chunksize=1, num_threads=active,
                            use_threads_if=active > 1):
                csr_w = flush_subnormals()
                worker_steps(&t.workers[k], base + k * rep_stride, &order[0],
                             seg_begin + (k - seg_begin % W + W) % W, seg_end, W, &tallies[k],
                             failed)
                restore_fpu(csr_w)
            if flag_get(failed):
                break
            if average and (seg_end == n_batches or (period > 0 and seg_end % period == 0)):
                averaged = average_point(&t.averaging, theta, P, tallies)
                if averaged < 0:
                    break
                n_averages += averaged
            seg_begin = seg_end
        for k in range(W):
            loss_sum += tallies[k].loss_sum
            n_correct += tallies[k].correct
            n_seen += tallies[k].seen
            steps += tallies[k].steps
        restore_fpu(csr)
    t.n_averages += n_averages
    if averaged < 0:
        loss_sum = float("nan")       # network.py restores the last good weights and reports it
    return loss_sum, n_correct, n_seen, steps
