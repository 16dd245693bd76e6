"""The one timing harness of ``cymlp bench``: warm-up, interleaved repeats, medians and spread.

Every benchmark mode (the step benchmark, ``--fit``, ``--strategies``, the
scripts in benchmarks/) times through these functions, so they all mean the
same thing by "median of repeats":

- :func:`settle` before every timed run: sleep long enough for the BLAS and
  OpenMP worker threads of the previous run to stop spinning (OpenBLAS and
  libgomp threads busy-wait for a while after their last job), so one
  measurement does not steal cycles from the next;
- :func:`interleaved`: one warm-up call per runner, then ``repeats`` rounds
  that call every runner once each, in the same order, so a drift in the
  machine's load hits every runner alike;
- :func:`summary`: the median and the interquartile range over the median;
- :func:`measure`: calibrated blocks for runners whose unit of work is a
  step (the per-step benchmark);
- :func:`gemm_step_runner`: the GEMMs of one training step alone, the floor
  that the other timings are compared with.
"""

import math
import os
import statistics
import time
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FULL",
    "QUICK",
    "SETTLE_SECONDS",
    "Budget",
    "blas_limits",
    "gemm_operands",
    "gemm_roofline",
    "gemm_step_runner",
    "interleaved",
    "load_average",
    "measure",
    "peak_gemm",
    "settle",
    "summary",
]

# OpenBLAS's idle threads spin for up to 2**28 cycles (~0.1 s) before sleeping.
SETTLE_SECONDS = 0.12


def settle(seconds=SETTLE_SECONDS):
    """Sleep so that the worker threads of the previous measurement go idle."""
    if seconds > 0:
        time.sleep(seconds)


def blas_limits(threads):
    """Context manager: the BLAS (and OpenMP) pools of this process at ``threads`` threads."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=threads)


def load_average():
    """The 1-minute load average, or NaN where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def summary(samples):
    """(median, interquartile range / median) of ``samples`` (the full range below 4 samples)."""
    median = statistics.median(samples)
    if len(samples) >= 4:
        q = statistics.quantiles(samples, n=4)
        iqr = q[2] - q[0]
    else:
        iqr = max(samples) - min(samples)
    return median, iqr / median if median > 0 else float("nan")


def interleaved(runners, repeats, warmup=True, settle_seconds=SETTLE_SECONDS, on_error=None):
    """Time every runner ``repeats`` times, interleaved.

    ``runners`` maps a name to ``(run, warm)``: ``run()`` does the timed work
    and returns its seconds (a float, or None to have the harness time the
    call with ``perf_counter``); ``warm()`` is called once first when
    ``warmup`` (None: no warm-up for that runner).  A runner that raises is
    dropped from the later rounds and reported through ``on_error(name,
    exc)``.  Returns ``{name: [seconds, ...]}`` (runners that failed on their
    first try are absent).
    """
    times: dict[str, list[float]] = {name: [] for name in runners}
    alive = dict(runners)

    def call(name, fn):
        settle(settle_seconds)
        try:
            t0 = time.perf_counter()
            seconds = fn()
            return time.perf_counter() - t0 if seconds is None else seconds
        except Exception as exc:
            alive.pop(name, None)
            if on_error is not None:
                on_error(name, exc)
            return None

    if warmup:
        for name, (_, warm) in list(alive.items()):
            if warm is not None:
                call(name, warm)
    for _ in range(repeats):
        for name, (run, _) in list(alive.items()):
            seconds = call(name, run)
            if seconds is not None:
                times[name].append(seconds)
    return {name: t for name, t in times.items() if t}


# --------------------------------------------------------------------------
# Calibrated blocks of steps (the per-step benchmark)
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """How long to spend on one row."""
    seconds: float = 1.5          # measured time per row, after calibration
    block_seconds: float = 0.15   # aim for blocks about this long
    min_repeats: int = 5
    max_repeats: int = 25


QUICK = Budget(seconds=0.25, block_seconds=0.04, min_repeats=3, max_repeats=8)
FULL = Budget()


def measure(run_blocks, max_block_steps, budget):
    """Warm up, calibrate, then time blocks of steps.

    ``run_blocks(n_steps, n_blocks)`` returns the seconds of each of
    ``n_blocks`` blocks of ``n_steps`` steps.  Returns a dict with the
    per-step seconds of every timed block and the block length.  Two one-step
    blocks come first: the first warms caches and thread pools, the second
    estimates the step time.  When the chosen block is longer than one step,
    one more block is discarded as its warm-up; when it is one step (slow
    rows such as the loop on ``seed``), the calibration step counts as the
    first sample.
    """
    settle()
    calibration = run_blocks(1, 2)
    per_step = calibration[1]
    n_steps = int(min(max_block_steps, max(1, round(budget.block_seconds / max(per_step, 1e-9)))))
    block = n_steps * per_step
    n_blocks = int(min(budget.max_repeats, max(budget.min_repeats, budget.seconds / max(block, 1e-9))))
    if n_steps == 1:
        times = calibration[1:] + run_blocks(1, n_blocks - 1)
    else:
        times = run_blocks(n_steps, n_blocks + 1)[1:]
    return {"steps_per_block": n_steps, "repeats": len(times), "step_seconds": [t / n_steps for t in times]}


# --------------------------------------------------------------------------
# GEMMs alone: the floor
# --------------------------------------------------------------------------

def gemm_operands(shapes, dtype, seed=0):
    """Operands and outputs for ``shapes`` = [(name, m, k, n), ...], laid out as the reference path.

    forward: A (B, n_in) @ W.T; weight_grad: D.T @ A; delta: D @ W.
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    ops = []
    for name, m, k, n in shapes:
        if name.startswith("forward"):
            a, b = rng.random((m, k), dtype=dtype), rng.random((n, k), dtype=dtype).T
        elif name.startswith("weight_grad"):
            a, b = rng.random((k, m), dtype=dtype).T, rng.random((k, n), dtype=dtype)
        else:
            a, b = rng.random((m, k), dtype=dtype), rng.random((k, n), dtype=dtype)
        ops.append((a, b, np.empty((m, n), dtype=dtype)))
    return ops


def gemm_step_runner(shapes, dtype, threads, n_steps):
    """A runner for :func:`interleaved`: ``n_steps`` times the GEMMs ``shapes`` of one step.

    ``shapes`` may be a list of (shapes, count) pairs instead, for an epoch
    whose last batch is smaller.  Each call times the whole sequence at
    ``threads`` BLAS threads with ``numpy.matmul(..., out=...)``.
    """
    if shapes and isinstance(shapes[0][0], str):
        shapes = [(shapes, n_steps)]
    plan = [(gemm_operands(s, dtype), count) for s, count in shapes if count > 0]
    matmul = np.matmul

    def run():
        with blas_limits(threads):
            t0 = time.perf_counter()
            for ops, count in plan:
                for _ in range(count):
                    for a, b, out in ops:
                        matmul(a, b, out=out)
            return time.perf_counter() - t0
    return run


def gemm_roofline(case, dtype, threads, quick=False):
    """Time this machine's BLAS on exactly the GEMMs of one SGD step of ``case``.

    Uses ``numpy.matmul`` on operands laid out as in the reference path
    (transposed views included), best of several runs, at ``threads`` BLAS
    threads.  Returns seconds per step and GFLOP/s.
    """
    dtype = np.dtype(dtype)
    target = 0.003 if quick else 0.01
    samples = 3 if quick else 5
    per_gemm = []
    shapes = case.gemm_shapes()
    settle()
    with blas_limits(threads):
        for (name, m, k, n), (a, b, out) in zip(shapes, gemm_operands(shapes, dtype)):
            np.matmul(a, b, out=out)
            t0 = time.perf_counter()
            np.matmul(a, b, out=out)
            reps = max(1, int(target / max(time.perf_counter() - t0, 1e-7)))
            best = math.inf
            for _ in range(samples):
                t0 = time.perf_counter()
                for _ in range(reps):
                    np.matmul(a, b, out=out)
                best = min(best, (time.perf_counter() - t0) / reps)
            per_gemm.append({"name": name, "m": m, "k": k, "n": n, "seconds": best,
                             "gflops": 2 * m * k * n / best / 1e9})
    seconds = sum(g["seconds"] for g in per_gemm)
    flops = case.flops_per_example * case.batch_size
    return {"case": case.name, "dtype": dtype.name, "threads": threads, "seconds_per_step": seconds,
                "gflops": flops / seconds / 1e9, "gemms": per_gemm}


def peak_gemm(dtype, threads, n=1024):
    """GFLOP/s of one large square GEMM: the machine's practical peak."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.dtype(dtype))
    b = rng.random((n, n), dtype=np.dtype(dtype))
    out = np.empty_like(a)
    settle()
    with blas_limits(threads):
        np.matmul(a, b, out=out)
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
    return {"dtype": np.dtype(dtype).name, "threads": threads, "n": n, "gflops": 2 * n ** 3 / best / 1e9}
