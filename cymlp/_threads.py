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
- :class:`TeamPolicy`: with the default thread count, a sync fit (every mode)
  runs on every usable core unless the process does not get them (its CPU
  time falls behind its team's wall time), so a fit on a busy machine backs
  off to the cores it gets instead of spinning at OpenMP barriers against
  other processes.

This module decides how many threads there may be; the compiled trainers
(:mod:`cymlp._cython_backend`) decide which of those a step uses (the OpenMP
team, or the BLAS pool in batch mode, with :class:`TeamPolicy`), and the
split-mode kernel runs fewer threads than asked when a step is too small to
share (``cymlp/_kernels_split.pyx``).

Nothing here changes environment variables.
"""

import contextlib
import os
import threading
import time
from typing import Any

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
        from . import _openmp_runtime  # type: ignore[attr-defined]  # compiled, no stub: see [tool.mypy]
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
        self._controller: Any = None    # threadpoolctl's controller of the BLAS pools, made when first needed
        self._asked: list[int] = []     # one entry per holder
        self._restore: Any = None       # the limiter of the first change, which restores the originals
        self._original: Any = None      # the BLAS pool's thread count before the first holder
        self._current: int | None = None

    def _blas(self):
        if self._controller is None:
            from threadpoolctl import ThreadpoolController
            self._controller = ThreadpoolController().select(user_api="blas")
        return self._controller

    def _apply(self):
        # one threadpoolctl call per change (a few µs each, which a small fit pays): none
        # while the target is the pool's own count, and the first limiter made keeps the
        # original counts for the restore
        target = min([self._original, *self._asked])
        if target != self._current:
            limiter = self._blas().limit(limits=target)
            if self._restore is None:
                self._restore = limiter
            self._current = target

    def acquire(self, n_threads):
        with self._lock:
            if not self._asked:
                counts = [lib.num_threads for lib in self._blas().lib_controllers]
                self._original = min(counts) if counts else 1
                # pools of different counts are all set to the lowest, as asked
                self._current = self._original if len(set(counts)) <= 1 else None
            self._asked.append(max(1, int(n_threads)))
            self._apply()

    def release(self, n_threads):
        with self._lock:
            self._asked.remove(max(1, int(n_threads)))
            if self._asked:
                self._apply()
            else:
                restore, self._restore, self._current = self._restore, None, None
                if restore is not None:
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
# The default thread count: all cores, unless the process does not get them
# ---------------------------------------------------------------------------

def process_clock():
    """(wall seconds, CPU seconds of this process, every thread included)."""
    return time.perf_counter(), time.process_time()


class _TeamDemand:
    """How many threads the default-threaded fits of this process ask for right now.

    Two fits in two Python threads share the process's CPU time: each judges
    its share against the threads of both (:class:`TeamPolicy`).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._threads = 0

    def enter(self, threads):
        with self._lock:
            self._threads += threads
            return self._threads

    def leave(self, threads):
        with self._lock:
            total = self._threads
            self._threads -= threads
            return total


TEAM_DEMAND = _TeamDemand()


class TeamPolicy:
    """The thread count of a fit with the default ``n_threads=None``.

    The rule, in three parts:

    1. **On a quiet machine, every usable core** (``n_threads``), exactly as
       an explicit ``n_threads`` of that count: no probing.  Whether a step
       is big enough to share is the kernels' model, the same for the
       default and an explicit count (split mode gives a thread at least
       ``SPLIT_MIN_FLOPS`` of the step's work, chunked mode at least a chunk),
       so the default never loses to the explicit count.
    2. **Back off when the process does not get its cores.**  Each kernel
       call is timed in wall-clock seconds and in the process's CPU seconds.
       Waiting OpenMP and OpenBLAS threads spin, so a team that has its cores
       keeps them busy: ``share = cpu / (wall · demand)`` is about 1, where
       ``demand`` is the threads this process's default-threaded fits ask
       for.  When other processes hold cores, the team's threads are
       descheduled and the share drops (two busy processes on two cores: 1/2
       to 2/3).  A team whose share over at least :attr:`JUDGE_SECONDS` of
       calls is below :attr:`SHARE_LOW` shrinks to the cores it got,
       ``floor(share · team + 1/4)``, at least one thread: a team whose
       threads wait at every barrier for one that is descheduled is slower
       than a smaller one (two ``[64, 32, 10]`` fits at once took 70x longer
       than one before any back-off).
    3. **Look again.**  While shrunk, the full team runs one short probe
       (:attr:`PROBE_SECONDS` of steps at the shrunk team's pace) after an
       interval that starts at :attr:`RETRY_SECONDS` and doubles up to
       :attr:`MAX_RETRY_SECONDS` while the machine stays busy; a probe whose
       share reaches :attr:`SHARE_LOW` brings the full team back.

    The policy only does arithmetic on the times it is given
    (:meth:`record`), so tests drive it with a deterministic timing stub.
    Used by the sync trainer in every mode: the OpenMP team's size in
    chunked and split mode, the BLAS pool's in batch mode.  In chunked mode
    the choice changes the speed, never the weights; in split and batch mode
    another thread count sums in another order (equal to rounding;
    docs/guarantees.md), so only fits that backed off depend on timing.
    """

    SHARE_LOW = 0.75           # below this share of its cores, the team shrinks
    JUDGE_SECONDS = 0.01       # judge the share over at least this much wall time
    PROBE_SECONDS = 0.005      # a probe of the full team: steps worth this at the shrunk pace
    RETRY_SECONDS = 0.25       # first probe this long after shrinking ...
    MAX_RETRY_SECONDS = 4.0    # ... then twice as long each time the machine is still busy

    def __init__(self, n_threads):
        self.n_threads = n_threads
        self.team = n_threads           # the team the next calls run on
        self.shrinks = 0                # how many times it backed off
        self.probes = 0                 # probes of the full team while shrunk
        self.share = None               # the last judged share
        self._wall = self._cpu = self._demand = 0.0   # calls not yet judged
        self._per_step = None           # seconds a step at the shrunk team
        self._interval = self.RETRY_SECONDS
        self._until_probe = 0.0
        self._probing = False

    def next(self, remaining):
        """``(threads, steps)`` for the next kernel call, ``remaining`` steps left."""
        if self.team < self.n_threads and self._until_probe <= 0:
            steps = int(self.PROBE_SECONDS / self._per_step) if self._per_step else 1
            self._probing = True
            return self.n_threads, max(1, min(remaining, steps))
        return self.team, remaining

    def record(self, threads, steps, wall, cpu, demand=None):
        """Report a kernel call made as :meth:`next` said: its ``steps``, ``wall`` and
        process ``cpu`` seconds, and the threads this process's fits asked for during it
        (``demand``, default ``threads``)."""
        demand = threads if demand is None else demand
        if self._probing:
            self._probing = False
            self._end_probe(cpu / (wall * demand) if wall > 0 else 1.0)
            return
        if threads < self.n_threads:
            self._until_probe -= wall
            if steps:
                self._per_step = wall / steps
        if threads == 1 and demand <= 1:
            return                       # nothing to shrink
        self._wall += wall
        self._cpu += cpu
        self._demand += wall * demand
        if self._wall < self.JUDGE_SECONDS:
            return
        self.share = self._cpu / self._demand
        self._wall = self._cpu = self._demand = 0.0
        if self.share < self.SHARE_LOW:
            team = max(1, min(self.team - 1, int(self.share * self.team + 0.25)))
            if team < self.team:
                self.team = team
                self.shrinks += 1
                self._until_probe = self._interval

    def _end_probe(self, share):
        self.probes += 1
        self.share = share
        if share >= self.SHARE_LOW:
            self.team = self.n_threads
            self._interval = self.RETRY_SECONDS
        else:
            self.team = max(1, min(self.team, int(share * self.n_threads + 0.25)))
            self._interval = min(2 * self._interval, self.MAX_RETRY_SECONDS)
            self._until_probe = self._interval
