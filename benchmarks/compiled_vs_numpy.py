"""Compiled path vs NumPy path, side by side, on five reference cases.

Run with the OpenBLAS overrides unset, so both paths use the BLAS as shipped::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compiled_vs_numpy.py

Each case builds a network on random data (SGD, momentum 0, lr 0.1) and times
the epoch loop of ``Network.fit`` (the history's ``seconds``: set-up and input
checks excluded) over a whole epoch or a fixed number of steps, for
``backend="numpy"`` and ``backend="cython"`` at 1 and 2 threads (NumPy's
threads are its BLAS threads).  Timing goes through cymlp bench's harness
(:mod:`cymlp.bench.measure`): one warm-up each, then ``--repeats`` interleaved
rounds with the worker threads let go idle between timings; the table shows
medians.  ``--mode`` forces the compiled mode (``chunked``/``batch``); the
default lets the backend choose.  For end-to-end ``fit`` epochs against the
GEMM floor and the peers, use ``cymlp bench --fit``.
"""

import argparse
import warnings

import numpy as np
from threadpoolctl import threadpool_info

from cymlp import Network
from cymlp.bench.measure import blas_limits, interleaved, summary

# name, sizes, hidden, output, loss, batch, dtype, unit, steps (None: one epoch of 60,000 rows), targets
CASES = [
    ("1000-900-900-900-10 sigmoid quadratic b100 f64", [1000, 900, 900, 900, 10], "sigmoid", "sigmoid",
     "quadratic", 100, "float64", "ms/step", 20, {"numpy": 19.2, "torch": 15.4, "target": 9}),
    ("1000-900-900-900-10 sigmoid quadratic b100 f32", [1000, 900, 900, 900, 10], "sigmoid", "sigmoid",
     "quadratic", 100, "float32", "ms/step", 40, {"numpy": 6.9, "torch": 9.1, "target": 4.8}),
    ("784-30-10 sigmoid quadratic b10 f64", [784, 30, 10], "sigmoid", "sigmoid", "quadratic", 10,
     "float64", "s/epoch", None, {"numpy": 0.23, "torch": 0.99, "target": 0.11}),
    ("784-256-128-10 relu softmax CE b64 f32", [784, 256, 128, 10], "relu", "softmax",
     "cross_entropy", 64, "float32", "s/epoch", None, {"numpy": 0.37, "torch": 0.59, "target": 0.25}),
    ("64-32-10 relu softmax CE b16 f32", [64, 32, 10], "relu", "softmax", "cross_entropy", 16,
     "float32", "us/step", 20000, {"numpy": 19.8, "torch": 112, "target": 7}),
]
SCALE = {"ms/step": 1e3, "s/epoch": 1.0, "us/step": 1e6}


def _chosen_mode(sizes, batch, dtype, mode):
    try:
        from cymlp._cython_backend import choose_mode
        return choose_mode(sizes, batch, np.dtype(dtype).itemsize, mode)
    except (ImportError, TypeError, ValueError):
        return mode or "-"


def time_case(case, threads, repeats, mode=None, max_steps=None):
    """{(backend, threads): value in the case's unit}, and the compiled mode chosen."""
    _, sizes, hidden, output, loss, batch, dtype, unit, steps, _ = case
    rng = np.random.default_rng(0)
    n_rows = 60000 if steps is None else min(60000, steps * batch)
    n_batches = -(-n_rows // batch)
    n_steps = n_batches if steps is None else steps
    if max_steps is not None and n_steps > max_steps:     # time part of the epoch, scale it up
        n_steps = max_steps
    n_rows = min(n_rows, n_steps * batch)
    X = rng.random((n_rows, sizes[0])).astype(dtype)
    labels = rng.integers(0, sizes[-1], n_rows).astype(np.int64)

    def runner(backend, t):
        net = Network(sizes, hidden, output, loss, dtype=dtype, backend=backend, n_threads=t, seed=0)
        if mode is not None and backend == "cython":
            net.compiled_mode = mode                     # force the step mode (benchmarks, tests)

        def run():
            seconds = 0.0
            done = 0
            with blas_limits(t), warnings.catch_warnings():   # NumPy's threads; the trainer sets its own
                warnings.simplefilter("ignore")
                while done < n_steps:                   # wrap around the data for fixed step counts
                    rows = min(n_rows, (n_steps - done) * batch)
                    seconds += sum(net.fit(X[:rows], labels[:rows], epochs=1, batch_size=batch, lr=0.1,
                                           momentum=0.0).seconds)
                    done += -(-rows // batch)
            return seconds
        return run, run

    runners = {(backend, t): runner(backend, t) for backend in ("numpy", "cython") for t in threads}
    times = interleaved(runners, repeats)
    values = {}
    for key, samples in times.items():
        per = summary(samples)[0] / n_steps
        if steps is None:
            per *= n_batches                     # seconds per epoch
        values[key] = per * SCALE[unit]
    return values, _chosen_mode(sizes, batch, dtype, mode)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=["chunked", "batch"], default=None)
    parser.add_argument("--cases", default="", help="comma-separated case numbers (1-based)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="time at most this many steps per run (epochs are scaled up)")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    chosen = [int(c) - 1 for c in args.cases.split(",") if c] or range(len(CASES))
    header = ["case", "unit"] + [f"numpy {t}t" for t in threads] + [f"cymlp {t}t" for t in threads] \
        + ["mode", "ref numpy", "ref torch", "target"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for i in chosen:
        case = CASES[i]
        row = [case[0], case[7]]
        values, mode = time_case(case, threads, args.repeats, args.mode, args.max_steps)
        row += [f"{values[('numpy', t)]:.3g}" for t in threads]
        row += [f"{values[('cython', t)]:.3g}" for t in threads]
        ref = case[9]
        row += [mode, str(ref["numpy"]), str(ref["torch"]), "≤ " + str(ref["target"])]
        print("| " + " | ".join(row) + " |", flush=True)
    print()
    print("threadpoolctl:")
    for p in threadpool_info():
        print(f"  {p['internal_api']} {p['version']} {p.get('architecture')} "
              f"threads={p['num_threads']} {p['filepath']}")


if __name__ == "__main__":
    main()
