"""Thread policy, in one place: how many threads, and who owns the cores.

- :func:`effective_n_threads`: ``n_threads`` resolved (``None``: every core
  of the affinity mask (:func:`affinity_cores`), within ``OMP_NUM_THREADS``
  and threadpoolctl limits).
- Fork safety: libgomp (GCC's OpenMP) is not fork-safe; a child forked after
  the parent ran a parallel region can hang in its first one (sklearn #7650).
  A child created by ``fork`` runs the compiled path on one thread, and the
  compiled path never enters a parallel region with one thread.
- :func:`blas_limit`: the BLAS pool's thread limit, owned here for the whole
  process.  Concurrent holders (fits in several Python threads, evaluation
  during a fit) nest: the pool runs at the smallest limit any holder asked
  for, never above what it was when the first holder came, and is restored
  when the last holder leaves.
- :class:`AdaptiveThreads`: with the default thread count, a sync fit (every
  mode) follows measured step times, so a fit on a busy machine falls back to
  one thread instead of spinning at OpenMP barriers against other processes.

This module decides how many threads there may be; the compiled trainers
(:mod:`cymlp._cython_backend`) decide which of those a step uses (the OpenMP
team, or the BLAS pool in batch mode, with :class:`AdaptiveThreads`), and the
split-mode kernel runs fewer threads than asked when a step is too small to
share (``cymlp/_kernels_split.pyx``).

Nothing here changes environment variables.
"""

import contextlib
import os
import threading

from ._validation import operator_index

# ---------------------------------------------------------------------------
# Fork safety
# ---------------------------------------------------------------------------

_in_forked_child = False


def _mark_forked_child():
    global _in_forked_child
    _in_forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked_child)


def in_forked_child():
    """True in a process created by ``fork`` from one that imported cymlp."""
    return _in_forked_child


# ---------------------------------------------------------------------------
# Thread counts
# ---------------------------------------------------------------------------

def affinity_cores():
    """Cores this process may run on (its affinity mask), at least 1.

    Not the default thread count: :func:`effective_n_threads` (``None``) also
    follows ``OMP_NUM_THREADS`` and threadpoolctl limits.
    """
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def openmp_max_threads():
    """``omp_get_max_threads()`` of the compiled path, or None when it is not built.

    It follows ``OMP_NUM_THREADS`` as read at start-up and
    ``threadpoolctl.threadpool_limits(..., user_api="openmp")``.
    """
    try:
        from . import _openmp_runtime  # the runtime alone: no kernels, no SciPy import
    except ImportError:
        return None
    try:
        return int(_openmp_runtime.openmp_max_threads())
    except (AttributeError, TypeError, ValueError):
        return None


def check_n_threads(n_threads):
    """Validate ``n_threads`` (None or a sane positive int) without resolving it."""
    if n_threads is None:
        return None
    try:
        n_threads = operator_index(n_threads)
    except TypeError:
        raise TypeError(f"n_threads must be None or a positive integer; got {n_threads!r}") from None
    if n_threads < 1:
        raise ValueError(f"n_threads must be None (all cores) or >= 1; got {n_threads}")
    usable = affinity_cores()
    limit = 4 * max(usable, 64)
    if n_threads > limit:
        raise ValueError(f"n_threads={n_threads} is absurd for this machine ({usable} usable cores); "
                         f"use at most {limit}, or None for all cores")
    return n_threads


def effective_n_threads(n_threads):
    """Number of threads the compiled path uses: ``None`` means every usable core.

    ``None`` respects the CPU affinity mask, ``OMP_NUM_THREADS`` and limits set
    with ``threadpoolctl.threadpool_limits``.  An explicit count is used as
    given (after a sanity check).  In a child created by ``fork`` the answer is
    always 1 (see above); validation still happens there.
    """
    n_threads = check_n_threads(n_threads)
    if n_threads is not None:
        return 1 if _in_forked_child else n_threads
    if _in_forked_child:
        return 1            # and do not touch the OpenMP runtime at all
    resolved = affinity_cores()
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        resolved = min(resolved, int(env))
    omp = openmp_max_threads()
    if omp is not None and omp > 0:
        resolved = min(resolved, omp)
    return max(1, resolved)


# ---------------------------------------------------------------------------
# The BLAS pool: one owner, nested holders
# ---------------------------------------------------------------------------

# OpenBLAS runs a GEMM on one thread when m·n·k < 65536 · 4 (interface/gemm.c);
# below that, limiting the pool changes nothing and costs ~25 µs.
BLAS_SERIAL_BELOW = 65536 * 4


class _BlasPool:
    """The process's BLAS thread limit, shared by every holder.

    Each holder asks for a limit; the pool runs at ``min(original, *asked)``
    where ``original`` is the smallest BLAS thread count found when the first
    holder arrived (so a fit inside ``threadpool_limits(1)`` stays at 1), and
    the original limits are restored when the last holder leaves.  The
    threadpoolctl controller is made on first use (after ``_kernels`` loaded
    SciPy's BLAS) and reused: a fresh scan of the loaded libraries costs more
    than a small forward pass.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._controller = None
        self._asked = []            # one entry per holder
        self._restore = None        # the limiter made by the first holder
        self._original = None
        self._current = None

    def _blas(self):
        if self._controller is None:
            from threadpoolctl import ThreadpoolController
            self._controller = ThreadpoolController()
        return self._controller.select(user_api="blas")

    def _apply(self):
        target = min([self._original, *self._asked])
        if target != self._current:
            self._blas().limit(limits=target)    # the first holder's limiter restores
            self._current = target

    def acquire(self, n_threads):
        with self._lock:
            if not self._asked:
                pools = self._blas()
                counts = [lib["num_threads"] for lib in pools.info()]
                self._original = min(counts) if counts else 1
                self._restore = pools.limit(limits=self._original)
                self._current = self._original
            self._asked.append(max(1, int(n_threads)))
            self._apply()

    def release(self, n_threads):
        with self._lock:
            self._asked.remove(max(1, int(n_threads)))
            if self._asked:
                self._apply()
            else:
                restore, self._restore, self._current = self._restore, None, None
                restore.restore_original_limits()

    def holders(self):
        """How many holders there are now (for tests)."""
        return len(self._asked)

    def lowest_request(self):
        with self._lock:
            return min(self._asked) if self._asked else None


_BLAS = _BlasPool()


class BlasHold:
    """Hold the BLAS pool at (at most) ``n_threads`` until :meth:`release`.

    For a trainer that holds it for a whole fit; also a context manager.
    Releasing twice is harmless.
    """

    def __init__(self, n_threads):
        self.n_threads = n_threads
        _BLAS.acquire(n_threads)
        self._held = True

    def release(self):
        if self._held:
            self._held = False
            _BLAS.release(self.n_threads)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def blas_limit(n_threads, work=None):
    """A context manager limiting the BLAS pool to ``n_threads`` while it runs.

    ``work`` (rows × parameters, a bound on every GEMM's m·n·k) small enough
    that the BLAS stays serial anyway skips the limit; so does a holder that
    already keeps the pool at or below ``n_threads`` (a fit whose OpenMP team
    owns the cores keeps evaluation between its calls at one thread: waking
    BLAS threads between OpenMP regions makes both pools' spinning threads
    fight over the cores, measured on 2 cores: an epoch of the digits network
    went from 0.6 ms to 4.5 ms).
    """
    if work is not None:
        lowest = _BLAS.lowest_request()
        if work < BLAS_SERIAL_BELOW or (lowest is not None and lowest <= n_threads):
            return contextlib.nullcontext()
    return BlasHold(n_threads)


def blas_holders():
    """How many holders keep the BLAS pool limited now (0 outside any fit)."""
    return _BLAS.holders()


# ---------------------------------------------------------------------------
# The default thread count under contention
# ---------------------------------------------------------------------------

class AdaptiveThreads:
    """Choose between a team of ``n_threads`` and one thread by measured step time.

    On a busy machine (two fits at once, a CI runner) an OpenMP team loses a
    scheduler time slice at every barrier whenever one of its threads is
    descheduled, while libgomp's waiting threads spin on the cores the others
    need: two [64, 32, 10] fits at once took 70x longer than one.  So the
    trainer times short probes of a few steps on each count and runs on the
    faster for a while, then probes again.  While one thread keeps winning,
    the team is probed with a single step and ever less often (the interval
    doubles up to :attr:`MAX_RUN_SECONDS`), so a busy machine pays little
    for the probes.

    Used by the sync trainer in every mode when ``n_threads`` was left at its
    default: the OpenMP team's size in chunked and split mode, the BLAS pool's
    in batch mode.  In chunked mode the choice changes the speed, never the
    weights (fixed chunks, fixed-order reduction); in split and batch mode
    another thread count sums in another order, so a fit's weights then
    depend on the choices (equal to rounding; docs/guarantees.md).
    """

    PROBE_SECONDS = 0.002      # each probe: at least this long ...
    PROBE_PIECE = 4            # ... in kernel calls of this many steps
    PROBE_MAX_STEPS = 64       # ... and at most this many steps
    RUN_SECONDS = 0.25         # then run on the faster count this long,
    MAX_RUN_SECONDS = 4.0      # doubling up to this while one thread keeps winning
    TEAM_MARGIN = 0.9          # the team must be 10% faster to be chosen

    def __init__(self, n_threads):
        self.n_threads = n_threads
        self.per_step = {}              # threads -> seconds per step in the last probe
        self.choice = n_threads
        self._queue = [n_threads, 1]    # counts still to probe
        self._probe = [0, 0.0]          # steps, seconds of the probe under way
        self._interval = self.RUN_SECONDS
        self._run_left = 0.0
        self.probes = 0

    def next(self, remaining):
        """``(threads, steps)`` for the next kernel call, ``remaining`` steps left."""
        if not self._queue and self._run_left <= 0:
            self._queue = [self.n_threads, 1]
        if self._queue:
            threads = self._queue[0]
            piece = 1 if threads > 1 and self.choice == 1 else self.PROBE_PIECE
            return threads, min(remaining, piece)
        per_step = self.per_step.get(self.choice) or 1e-6
        return self.choice, max(1, min(remaining, int(self._run_left / per_step) + 1))

    def record(self, threads, steps, seconds):
        """Report a kernel call made as :meth:`next` said."""
        if not self._queue:
            self._run_left -= seconds
            return
        probe = self._probe
        probe[0] += steps
        probe[1] += seconds
        if steps and probe[1] < self.PROBE_SECONDS and probe[0] < self.PROBE_MAX_STEPS:
            return
        if probe[0]:
            self.per_step[threads] = probe[1] / probe[0]
        self._probe = [0, 0.0]
        self._queue.pop(0)
        if not self._queue:
            self.probes += 1
            team = self.per_step.get(self.n_threads, float("inf"))
            alone = self.per_step.get(1, float("inf"))
            previous, self.choice = self.choice, (self.n_threads if team < self.TEAM_MARGIN * alone else 1)
            if self.choice == 1 and previous == 1:
                self._interval = min(2 * self._interval, self.MAX_RUN_SECONDS)
            else:
                self._interval = self.RUN_SECONDS
            self._run_left = self._interval
