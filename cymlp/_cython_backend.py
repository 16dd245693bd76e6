"""The ``backend="cython"`` passes: the compiled kernels of :mod:`cymlp._kernels`.

Same interface as :mod:`cymlp._numpy_backend` (read its docstring); the
inputs arrive validated (C-contiguous, finite, of the network's dtype).

Threads.  One thread pool owns the cores at a time.  The BLAS pool is
limited once per ``fit`` (in the trainer, restored by ``close``): to 1
thread in ``chunked`` mode, where ``net.effective_n_threads`` OpenMP threads
run the chunks (GEMMs inside ``prange``) and the reduction/update pass; to
``effective_n_threads`` in ``batch`` mode, where one GEMM covers the whole
batch and the cheap elementwise passes stay on the calling thread.
``n_threads=1`` is strictly serial (no OpenMP team, BLAS on one thread).

Determinism.  ``chunked``: bitwise-identical weights for any ``n_threads``
(fixed chunks, fixed-order reduction).  ``batch``: the BLAS's threaded
GEMMs may sum in another order for another thread count: equal to rounding
(tested to rtol 1e-12 in float64), bitwise for a fixed thread count.

Strategies.  ``parallel="sync"`` uses the modes below; ``"hogwild"`` and
``"average"`` run one worker per thread (:class:`ParallelTrainer`, BLAS on
one thread); with one thread every strategy runs the sync trainer, so it is
plain SGD bit for bit.  See docs/parallel-sgd.md.

Modes.  ``net._cython_mode`` (private, for tests and benchmarks) forces
``"chunked"`` or ``"batch"``; ``None`` chooses by size (:func:`choose_mode`),
never by the thread count, so that results do not depend on ``n_threads``.
"""

import contextlib

import numpy as np
from threadpoolctl import ThreadpoolController

from . import _kernels

MODES = ("chunked", "batch")

# Chunked mode pays for one gradient buffer per chunk (written by a GEMM with
# only CHUNK_ROWS rows of depth, then summed); it wins over whole-batch GEMMs
# only for small networks, whose GEMMs the BLAS would not thread well, and
# batches of at least two chunks.  Measured with benchmarks/compiled_vs_numpy.py.
CHUNKED_MAX_PARAM_BYTES = 256 * 1024
FORWARD_BLOCK_ROWS = 1024       # rows per block in feedforward / loss outside training


def choose_mode(sizes, batch_size, itemsize, requested=None):
    """``"chunked"`` or ``"batch"`` for a network and batch size (not thread count)."""
    if requested is not None:
        if requested not in MODES:
            raise ValueError(f"_cython_mode must be one of {MODES} or None; got {requested!r}")
        return requested
    n_params = sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:]))
    if _kernels.n_chunks_for(batch_size) >= 2 and n_params * itemsize <= CHUNKED_MAX_PARAM_BYTES:
        return "chunked"
    return "batch"


_controller = None


# OpenBLAS runs a GEMM on one thread when m·n·k < 65536 · 4 (interface/gemm.c);
# below that, limiting the pool changes nothing and costs ~25 µs.
BLAS_SERIAL_BELOW = 65536 * 4


# Fits whose OpenMP team owns the cores (chunked sync, hogwild, average) and
# that therefore hold the BLAS pool at one thread until close().  While one
# runs, evaluation in between its calls (validation_data, callbacks) leaves
# the pool at one thread: waking BLAS threads between OpenMP regions makes
# the two pools' spinning threads fight over the cores (measured on 2 cores:
# an epoch of the digits network went from 0.6 ms to 4.5 ms).
_team_fits = 0


def _blas_limits(n_threads, work=None):
    """Limit the BLAS pools to ``n_threads``; returns the limiter (a context manager).

    ``work`` (rows × parameters, a bound on every GEMM's m·n·k) small enough
    that the BLAS stays serial anyway skips the limit, and so does a running
    fit that holds the pool at one thread for its OpenMP team (see above).

    One ThreadpoolController is made on first use (after ``_kernels`` loaded
    SciPy's BLAS) and reused: a fresh ``threadpool_limits`` rescans every
    loaded library, which costs more than a small forward pass.
    """
    global _controller
    if work is not None and (work < BLAS_SERIAL_BELOW or _team_fits):
        return contextlib.nullcontext()
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=n_threads, user_api="blas")


def _plan(net):
    return _kernels.Plan(list(net.sizes), net.activation, net.output, net.loss_name)


class CythonBackend:
    name = "cython"

    def feedforward(self, net, X):
        return self._forward(net, X)[1]

    def loss_and_output(self, net, X, Y):
        total, out = self._forward(net, X, Y)
        return total / X.shape[0], out

    def _forward(self, net, X, Y=None):
        """Outputs for ``X`` in blocks of rows; with ``Y``, also the summed loss."""
        plan = _plan(net)
        out = np.empty((X.shape[0], net.sizes[-1]), dtype=net.dtype)
        rows = min(X.shape[0], FORWARD_BLOCK_ROWS)
        scratch = np.empty(rows * plan.row_width, dtype=net.dtype)
        total = 0.0
        with _blas_limits(net.effective_n_threads, rows * plan.n_params):
            for start in range(0, X.shape[0], rows):
                block = slice(start, start + rows)
                if Y is None:
                    _kernels.forward(plan, net._theta, X[block], out[block], scratch)
                else:
                    total += _kernels.forward(plan, net._theta, X[block], out[block], scratch, Y[block])
        return total, out

    def backprop(self, net, X, Y):
        plan = _plan(net)
        n_threads = net.effective_n_threads
        n = X.shape[0]
        grad = np.empty(plan.n_params, dtype=net.dtype)
        scratch = np.empty(n * plan.row_width, dtype=net.dtype)
        with _blas_limits(n_threads, n * plan.n_params):
            loss = _kernels.loss_grad(plan, net._theta, X, Y, grad, scratch)
        grad /= grad.dtype.type(n)
        grads_w, grads_b, offset = [], [], 0
        for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:]):
            grads_w.append(grad[offset:offset + n_out * n_in].reshape(n_out, n_in))
            offset += n_out * n_in
            grads_b.append(grad[offset:offset + n_out])
            offset += n_out
        return grads_w, grads_b, loss / n

    def trainer(self, net, X, Y, labels, batch_size, optimizer, parallel="sync", average_every=None,
                average_weighting="uniform"):
        # With one thread every strategy is plain mini-batch SGD: one worker,
        # one replica (averaging one model is the identity).  Running it
        # through the sync trainer makes that exact, bit for bit.
        if parallel == "sync" or net.effective_n_threads == 1:
            return CythonTrainer(net, X, Y, labels, batch_size, optimizer)
        return ParallelTrainer(net, X, Y, labels, batch_size, optimizer, parallel, average_every,
                               average_weighting)


class _CompiledTrainer:
    """What every compiled trainer shares: ``run`` is one call into the kernel
    object; ``close`` restores the BLAS thread limit set by the constructor."""

    _kernel = None
    _limits = None
    _team = False

    def run(self, order, first, stop, lr):
        return self._kernel.run(order, first, stop, lr)

    def close(self):
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None
        self._team = _release_blas_for_team(self._team)


class CythonTrainer(_CompiledTrainer):
    """Mini-batch SGD/Adam where ``run`` loops over whole batches in compiled code.

    Buffers are allocated here, once per ``fit``; the BLAS thread limit is set
    here and restored by :meth:`close`.
    """

    def __init__(self, net, X, Y, labels, batch_size, optimizer):
        self.n_threads = net.effective_n_threads
        self.mode = choose_mode(net.sizes, batch_size, net.dtype.itemsize,
                                getattr(net, "_cython_mode", None))
        labels = None if labels is None else np.ascontiguousarray(labels, dtype=np.int64)
        self._kernel = _kernels.SyncTrainer(
            _plan(net), net._theta, X, Y, labels, batch_size, self.mode, self.n_threads,
            optimizer.name, optimizer.momentum, optimizer.nesterov, optimizer.weight_decay,
            optimizer.beta1, optimizer.beta2, optimizer.eps)
        blas_threads = 1 if self.mode == "chunked" else self.n_threads
        self._limits = _blas_limits(blas_threads)
        self._team = _hold_blas_for_team(self.mode == "chunked" and self.n_threads > 1)
        self.should_stop = lambda: False


def _hold_blas_for_team(team):
    """Count a fit whose OpenMP team owns the cores; returns whether it was counted."""
    global _team_fits
    if team:
        _team_fits += 1
    return team


def _release_blas_for_team(team):
    global _team_fits
    if team:
        _team_fits -= 1
    return False


class ParallelTrainer(_CompiledTrainer):
    """``parallel="hogwild"`` or ``"average"`` on ``net.effective_n_threads`` (>= 2) workers.

    Worker ``w`` takes the epoch's global batches ``i`` with ``i % n_threads
    == w`` (see :mod:`cymlp._kernels`); every worker does whole-batch steps on
    one thread, so BLAS is limited to one thread for the whole fit (restored
    by :meth:`close`).  Each worker keeps its own optimizer state.

    ``average``: replicas are averaged every ``average_every`` rounds of
    ``n_threads`` batches (each replica's ``average_every`` steps) and at the
    end of every epoch, then reset to the average; ``average_every="end"``
    never resets them (one-shot averaging: independent runs from the same
    start), and writes their current average into the network at each epoch
    end so that validation, history and Ctrl-C see the model one would get by
    stopping there.
    """

    def __init__(self, net, X, Y, labels, batch_size, optimizer, parallel, average_every,
                 average_weighting):
        self.n_threads = net.effective_n_threads
        self.mode = parallel
        labels = None if labels is None else np.ascontiguousarray(labels, dtype=np.int64)
        self._kernel = _kernels.ParallelTrainer(
            _plan(net), net._theta, X, Y, labels, batch_size, parallel, self.n_threads,
            average_every, average_weighting, optimizer.name, optimizer.momentum,
            optimizer.nesterov, optimizer.weight_decay, optimizer.beta1, optimizer.beta2,
            optimizer.eps)
        self._limits = _blas_limits(1)
        self._team = _hold_blas_for_team(True)
        self.should_stop = lambda: False

    @property
    def n_averages(self):
        """How many times the replicas have been averaged (0 for hogwild)."""
        return self._kernel.n_averages
