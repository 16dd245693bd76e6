"""The ``backend="cython"`` passes: the compiled kernels of :mod:`cymlp._kernels`.

Implements :class:`cymlp._backends.Backend` (the contract is stated there
once); the inputs arrive validated (C-contiguous, finite, of the spec's dtype).

Threads (policy in :mod:`cymlp._threads`).  One thread pool owns the cores
at a time.  The BLAS pool is held once per ``fit`` (by the trainer, released
by ``close``): at 1 thread in ``chunked`` mode, where ``n_threads`` OpenMP
threads run the chunks (GEMMs inside ``prange``) and the reduction/update
pass, and in ``split`` mode, where the OpenMP team shares one whole-batch
step (rows for the forward pass and the δ's, units for the gradients and the
update); at ``n_threads`` in ``batch`` mode, where one BLAS-threaded GEMM
covers the whole batch and the elementwise passes stay on the calling thread.
``n_threads=1`` is strictly serial (no OpenMP team, BLAS on one thread).
With the default ``n_threads=None``, a fit runs on every usable core, as an
explicit count would, and backs off to fewer threads only when the process
does not get its cores (:class:`cymlp._threads.TeamPolicy`): the OpenMP
team's size in chunked and split mode, the BLAS pool's in batch mode.

Determinism.  ``chunked``: bitwise-identical weights for any ``n_threads``
(fixed chunks, fixed-order reduction), so backing off changes only the
speed.  ``split`` and ``batch``: another thread count computes each element
in another BLAS call (split) or lets the BLAS sum in another order (batch):
equal to rounding (tested to rtol 1e-12 in float64), bitwise for a fixed
thread count; with ``n_threads=None`` a fit that backed off under contention
depends on timing, so it agrees with another to rounding.  On one thread split
mode is batch mode, bit for bit.

Strategies.  ``parallel="sync"`` uses the modes below; ``"hogwild"`` and
``"average"`` run one worker per thread (:class:`ParallelTrainer`, BLAS on
one thread); with one thread every strategy runs the sync trainer, so it is
plain SGD bit for bit.  See docs/parallel-sgd.md.

Modes.  ``TrainerOptions.mode`` (``Network.compiled_mode``) forces
``"chunked"``, ``"split"`` or ``"batch"``; ``None`` chooses by size, dropout
and clipping (:func:`choose_mode`), never by the thread count, so that
results do not depend on ``n_threads``.
"""

import contextlib
import functools
from typing import Any

import numpy as np

from . import _kernels  # type: ignore[attr-defined]  # compiled, no stub: see [tool.mypy]
from ._sparse import is_sparse
from ._spec import layer_views, n_params
from ._threads import TEAM_DEMAND, BlasHold, TeamPolicy, blas_limit, process_clock
from .training_state import TrainingState, dropout_seed

MODES = tuple(_kernels.MODES)          # the kernels' own names: "chunked", "batch", "split"

# Chunked mode pays for one gradient buffer per chunk (written by a GEMM with
# only CHUNK_ROWS rows of depth, then summed); it wins over whole-batch GEMMs
# only for small networks, whose GEMMs the BLAS would not thread well, and
# batches of at least two chunks.  Measured with benchmarks/compiled_vs_numpy.py.
CHUNKED_MAX_PARAM_BYTES = 256 * 1024
FORWARD_BLOCK_ROWS = 1024       # rows per block in feedforward / loss outside training
FULL_BATCH_ELEMENTS = 1 << 22   # scratch of a full-batch pass: one block of rows' activations


def choose_mode(sizes, batch_size, itemsize, requested=None, options=None):
    """``"chunked"``, ``"split"`` or ``"batch"`` for a network, batch size, dropout and
    clipping (``options``, a :class:`~cymlp._backends.TrainerOptions`; never the thread count).

    Split mode (batch mode's arithmetic, every part of the step on the OpenMP
    team) beat batch mode (only the GEMMs threaded, by BLAS) at 2 threads on
    every ``cymlp bench --fit`` case, by 5-28% (float32 and float64), and is
    batch mode itself on one thread; dropout and clipping are not split.
    """
    if requested is not None:
        if requested not in MODES:
            raise ValueError(f"compiled_mode must be one of {MODES} or None; got {requested!r}")
        return requested
    if _kernels.n_chunks_for(batch_size) >= 2 and n_params(sizes) * itemsize <= CHUNKED_MAX_PARAM_BYTES:
        return "chunked"
    if options is not None and (options.has_dropout or options.clip_norm is not None):
        return "batch"
    return "split"


@functools.lru_cache(maxsize=64)
def _cached_plan(sizes, activation, output, loss):
    return _kernels.Plan(list(sizes), activation, output, loss)


def plan_for(spec):
    """The compiled shape plan of a spec, made once per architecture."""
    return _cached_plan(spec.sizes, spec.activation, spec.output, spec.loss)


def _labels(labels):
    return None if labels is None else np.ascontiguousarray(labels, dtype=np.int64)


def kernel_inputs(X):
    """What the kernels take as training inputs: ``X`` itself, or a checked CSR matrix's arrays."""
    if not is_sparse(X):
        return X
    return _kernels.SparseRows(X.data, X.indices, X.indptr, X.shape[1])


class CythonBackend:
    """The compiled passes (:class:`cymlp._backends.Backend`)."""

    name = "cython"

    def feedforward(self, spec, theta, X, n_threads):
        return self._forward(spec, theta, X, n_threads)[1]

    def loss_and_output(self, spec, theta, X, Y, n_threads, *, sample_weight=None):
        total, out = self._forward(spec, theta, X, n_threads, Y, sample_weight)
        if sample_weight is None:
            return total / X.shape[0], out
        return total / float(np.sum(sample_weight)), out

    def _forward(self, spec, theta, X, n_threads, Y=None, sample_weight=None):
        """Outputs for ``X`` in blocks of rows; with ``Y``, also the (weighted) summed loss."""
        plan = plan_for(spec)
        out = np.empty((X.shape[0], spec.n_outputs), dtype=spec.dtype)
        rows = min(X.shape[0], FORWARD_BLOCK_ROWS)
        scratch = np.empty(rows * plan.row_width, dtype=spec.dtype)
        total = 0.0
        with blas_limit(n_threads, rows * plan.n_params):
            for start in range(0, X.shape[0], rows):
                block = slice(start, start + rows)
                if Y is None:
                    _kernels.forward(plan, theta, X[block], out[block], scratch)
                else:
                    total += _kernels.forward(plan, theta, X[block], out[block], scratch, Y[block],
                                              None if sample_weight is None else sample_weight[block])
        return total, out

    def backprop(self, spec, theta, X, Y, n_threads, *, sample_weight=None, masks=None):
        plan = plan_for(spec)
        n = X.shape[0]
        grad = np.empty(plan.n_params, dtype=spec.dtype)
        scratch = np.empty(n * plan.row_width, dtype=spec.dtype)
        if masks is not None:       # fixed dropout multipliers (gradcheck): M_0, M_1, ..., then room for Ã
            masks = np.concatenate([np.asarray(m, dtype=spec.dtype).ravel() for m in masks]
                                   + [np.empty(sum(m.size for m in masks), dtype=spec.dtype)])
        with blas_limit(n_threads, n * plan.n_params):
            loss = _kernels.loss_grad(plan, theta, X, Y, grad, scratch, sample_weight, masks)
        grad /= grad.dtype.type(n)
        grads_w, grads_b = layer_views(spec.sizes, grad)
        return grads_w, grads_b, loss / n

    def full_batch(self, spec, X, Y, n_threads, *, sample_weight=None):
        return CythonFullBatch(spec, X, Y, n_threads, sample_weight)

    def trainer(self, spec, theta, X, Y, labels, options, *, state=None, should_stop=None):
        # With one thread every strategy is plain mini-batch SGD: one worker,
        # one replica (averaging one model is the identity).  Running it
        # through the sync trainer makes that exact, bit for bit.
        if options.parallel == "sync" or options.n_threads == 1:
            return CythonTrainer(spec, theta, X, Y, labels, options, state=state, should_stop=should_stop)
        return ParallelTrainer(spec, theta, X, Y, labels, options)


class CythonFullBatch:
    """``_kernels.FullBatch``: one kernel call per evaluation, in blocks of rows whose
    activations fit :data:`FULL_BATCH_ELEMENTS`; the GEMMs on ``n_threads`` BLAS threads."""

    def __init__(self, spec, X, Y, n_threads, sample_weight):
        plan = plan_for(spec)
        rows = max(1, min(X.shape[0], FULL_BATCH_ELEMENTS // plan.row_width))
        self._pass = _kernels.FullBatch(plan, kernel_inputs(X), Y, sample_weight, rows)
        self._threads, self._work = n_threads, rows * plan.n_params

    def evaluate(self, theta, grad):
        with blas_limit(self._threads, self._work):
            return self._pass.evaluate(theta, grad)


class _CompiledTrainer:
    """What every compiled trainer shares: ``run`` is one call into the kernel
    object; ``close`` releases the BLAS hold taken by the constructor."""

    _kernel: Any = None       # the compiled trainer object (cymlp._kernels)
    _blas: BlasHold | None = None

    def run(self, order, first, stop, lr):
        return self._kernel.run(order, first, stop, lr)

    def close(self):
        if self._blas is not None:
            self._blas.release()
            self._blas = None


class CythonTrainer(_CompiledTrainer):
    """Mini-batch SGD/Adam where ``run`` loops over whole batches in compiled code.

    Buffers are allocated here, once per ``fit``; the BLAS pool is held here
    and released by :meth:`close`.  With ``options.adaptive`` (the default
    thread count, a team of 2+), every kernel call is timed and
    :class:`~cymlp._threads.TeamPolicy` picks the next call's thread count
    (the OpenMP team's size in chunked and split mode, the BLAS pool's in
    batch mode): all of them unless the process does not get its cores, with
    ``should_stop`` checked between calls.
    """

    def __init__(self, spec, theta, X, Y, labels, options, *, state=None, should_stop=None):
        n_threads, optimizer = options.n_threads, options.optimizer
        mode = choose_mode(spec.sizes, options.batch_size, spec.dtype.itemsize, options.mode, options)
        self.n_threads = n_threads
        self.mode = mode
        self._should_stop = should_stop or (lambda: False)
        if state is None:
            state = TrainingState(optimizer, theta.size, theta.dtype, seed=None)
        self.state = state        # its m, v ARE the kernel's buffers; its step goes into each run
        self._kernel = _kernels.SyncTrainer(
            plan_for(spec), theta, kernel_inputs(X), Y, _labels(labels), options.batch_size, mode, n_threads,
            optimizer.name, optimizer.momentum, optimizer.nesterov, optimizer.weight_decay,
            optimizer.beta1, optimizer.beta2, optimizer.eps, state.m, state.v)
        # the dropout masks are keyed by the state's (seed, epoch, step): _kernel_run passes
        # the epoch the loop is in and the state's step
        self._kernel.set_terms(options.sample_weight, options.dropout if options.has_dropout else None,
                               options.clip_norm or 0.0, dropout_seed(state.seed))
        self._keyed = options.has_dropout
        # chunked, split: the OpenMP team's size; batch: the BLAS pool's (see _run)
        self.policy = TeamPolicy(n_threads) if options.adaptive and n_threads > 1 else None
        self._blas = BlasHold(n_threads if mode == "batch" else 1)

    def _kernel_run(self, order, first, stop, lr):
        """One kernel call from the state's step, which it advances (the state is the step's
        one owner); the dropout masks keyed by the current epoch and that step."""
        if self._keyed:
            self._kernel.epoch = self.state.epoch
        loss_sum, n_correct, n_seen, steps, self.state.step = self._kernel.run(order, first, stop, lr,
                                                                               self.state.step)
        return loss_sum, n_correct, n_seen, steps

    def run(self, order, first, stop, lr):
        if self.policy is None:
            return self._kernel_run(order, first, stop, lr)
        loss_sum, n_correct, n_seen, steps = 0.0, 0, 0, 0
        i = first
        while i < stop and not self._should_stop():
            threads, wanted = self.policy.next(stop - i)
            blas: contextlib.AbstractContextManager[Any]
            if self.mode != "batch":     # chunked, split: the OpenMP team
                self._kernel.nthreads = threads
                blas = contextlib.nullcontext()
            else:           # batch mode: only the GEMMs are threaded, by BLAS
                blas = BlasHold(threads) if threads < self.n_threads else contextlib.nullcontext()
            demand = TEAM_DEMAND.enter(threads)
            try:
                wall, cpu = process_clock()
                with blas:
                    l_sum, n_corr, n_rows, done = self._kernel_run(order, i, i + wanted, lr)
                wall1, cpu1 = process_clock()
            finally:
                demand = max(demand, TEAM_DEMAND.leave(threads))
            self.policy.record(threads, done, wall1 - wall, cpu1 - cpu, demand)
            loss_sum += l_sum
            n_correct += n_corr
            n_seen += n_rows
            steps += done
            i += done
            if done < wanted:           # a non-finite loss: let the caller see it
                break
        return loss_sum, n_correct, n_seen, steps


class ParallelTrainer(_CompiledTrainer):
    """``parallel="hogwild"`` or ``"average"`` on ``n_threads`` (>= 2) workers.

    Worker ``w`` takes the epoch's global batches ``i`` with ``i % n_threads
    == w`` (see :mod:`cymlp._kernels`); every worker does whole-batch steps on
    one thread, so BLAS is held at one thread for the whole fit (released
    by :meth:`close`).  Each worker keeps its own optimizer state.  The
    number of workers defines the algorithm, so it is never adapted.

    ``average``: replicas are averaged every ``average_every`` rounds of
    ``n_threads`` batches (each replica's ``average_every`` steps) and at the
    end of every epoch, then reset to the average; ``average_every="end"``
    never resets them (one-shot averaging: independent runs from the same
    start), and writes their current average into the network at each epoch
    end so that validation, history and Ctrl-C see the model one would get by
    stopping there.
    """

    def __init__(self, spec, theta, X, Y, labels, options):
        n_threads, optimizer = options.n_threads, options.optimizer
        self.n_threads = n_threads
        self.mode = options.parallel
        self._kernel = _kernels.ParallelTrainer(
            plan_for(spec), theta, kernel_inputs(X), Y, _labels(labels), options.batch_size,
            options.parallel, n_threads, options.average_every, options.average_weighting,
            optimizer.name, optimizer.momentum, optimizer.nesterov, optimizer.weight_decay,
            optimizer.beta1, optimizer.beta2, optimizer.eps)
        self._blas = BlasHold(1)

    @property
    def n_averages(self):
        """How many times the replicas have been averaged (0 for hogwild)."""
        return self._kernel.n_averages
