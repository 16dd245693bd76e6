"""Compiled path vs NumPy path, side by side, on five reference cases.

Run with the OpenBLAS overrides unset, so both paths use the BLAS as shipped::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compiled_vs_numpy.py

Each case builds a network on random data (SGD, momentum 0, lr 0.1) and times
``trainer.run`` (the loop ``Network.fit`` drives) over a whole epoch or a
fixed number of steps, for ``backend="numpy"`` and ``backend="cython"`` at 1
and 2 threads (NumPy's threads are its BLAS threads).  Reported: the median
of ``--repeats`` timings after one warm-up run.  ``--mode`` forces the
compiled mode (``chunked``/``batch``); the default lets the backend choose.
"""

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from cymlp import Network
from cymlp._training import make_trainer
from cymlp.network import OptimizerConfig

# name, sizes, hidden, output, loss, batch, dtype, unit, steps (None: one epoch of 60,000 rows), targets
CASES = [
    ("1000-900-900-900-10 sigmoid quadratic b100 f64", [1000, 900, 900, 900, 10], "sigmoid", "sigmoid",
     "quadratic", 100, "float64", "ms/step", 20, dict(numpy=19.2, torch=15.4, target=9)),
    ("1000-900-900-900-10 sigmoid quadratic b100 f32", [1000, 900, 900, 900, 10], "sigmoid", "sigmoid",
     "quadratic", 100, "float32", "ms/step", 40, dict(numpy=6.9, torch=9.1, target=4.8)),
    ("784-30-10 sigmoid quadratic b10 f64", [784, 30, 10], "sigmoid", "sigmoid", "quadratic", 10,
     "float64", "s/epoch", None, dict(numpy=0.23, torch=0.99, target=0.11)),
    ("784-256-128-10 relu softmax CE b64 f32", [784, 256, 128, 10], "relu", "softmax",
     "cross_entropy", 64, "float32", "s/epoch", None, dict(numpy=0.37, torch=0.59, target=0.25)),
    ("64-32-10 relu softmax CE b16 f32", [64, 32, 10], "relu", "softmax", "cross_entropy", 16,
     "float32", "us/step", 20000, dict(numpy=19.8, torch=112, target=7)),
]
SCALE = {"ms/step": 1e3, "s/epoch": 1.0, "us/step": 1e6}


def time_case(case, backend, n_threads, repeats, mode=None, max_steps=None):
    name, sizes, hidden, output, loss, batch, dtype, unit, steps, _ = case
    rng = np.random.default_rng(0)
    n_rows = 60000 if steps is None else min(60000, steps * batch)
    X = rng.random((n_rows, sizes[0])).astype(dtype)
    labels = rng.integers(0, sizes[-1], n_rows).astype(np.int64)
    Y = np.eye(sizes[-1], dtype=dtype)[labels]
    net = Network(sizes, hidden, output, loss, dtype=dtype, backend=backend, n_threads=n_threads, seed=0)
    if mode is not None:
        net._cython_mode = mode
    n_batches = -(-n_rows // batch)
    n_steps = n_batches if steps is None else steps
    if max_steps is not None and n_steps > max_steps:     # time part of the epoch, scale it up
        n_steps = max_steps
    order = rng.permutation(n_rows).astype(np.intp)
    opt = OptimizerConfig("sgd", momentum=0.0)
    with threadpool_limits(limits=n_threads, user_api="blas"):   # NumPy's threads; the trainer sets its own
        trainer = make_trainer(net, X, Y, labels, batch, opt)
        try:
            def one():
                done = 0
                t0 = time.perf_counter()
                while done < n_steps:       # wrap around the data for fixed step counts
                    first = done % n_batches
                    stop = min(n_batches, first + n_steps - done)
                    done += trainer.run(order, first, stop, 0.1)[3]
                return time.perf_counter() - t0
            one()                           # warm-up
            times = [one() for _ in range(repeats)]
        finally:
            if hasattr(trainer, "close"):
                trainer.close()
    per = statistics.median(times) / n_steps
    if steps is None:
        per *= n_batches                     # seconds per epoch
    chosen = getattr(trainer, "mode", "-")
    return per * SCALE[unit], chosen


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
        for t in threads:
            row.append(f"{time_case(case, 'numpy', t, args.repeats, None, args.max_steps)[0]:.3g}")
        mode = "-"
        for t in threads:
            value, mode = time_case(case, "cython", t, args.repeats, args.mode, args.max_steps)
            row.append(f"{value:.3g}")
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
