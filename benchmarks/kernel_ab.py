"""One training epoch per compiled mode, two builds side by side (A/B).

For kernel changes that must not change speed: each build is a source tree
with its extensions built in place; the builds take turns (a fresh
subprocess per turn, so the machine's load drifts over both alike), and the
report gives each case's median epoch time per build and the ratio B/A
(and the fastest turn's, a second estimate on a busy machine).

Cases: 784-128-10, relu / softmax / cross-entropy, float32, batch 64, SGD
with momentum 0.9, 8,192 random rows (128 steps an epoch), through the
kernel entry points only (``cymlp._kernels.SyncTrainer`` in chunked, batch
and split mode, chunked with dropout 0.2; ``ParallelTrainer`` hogwild and
average), on ``--threads`` threads (BLAS held at that count in batch mode and
at 1 otherwise, as the backend does; hogwild and average need two workers, so
they run on two threads at ``--threads 1``).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/kernel_ab.py A_ROOT B_ROOT
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIZES = [784, 128, 10]
ROWS, BATCH = 8192, 64
CASES = ("chunked", "batch", "split", "chunked+dropout", "hogwild", "average")


def one_turn(threads, epochs, rows=ROWS, cases=CASES):
    """Time ``epochs`` epochs of each case in this process (the build on sys.path)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from cymlp import _kernels
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, SIZES[0])).astype(np.float32)
    labels = rng.integers(0, SIZES[-1], rows)
    Y = np.eye(SIZES[-1], dtype=np.float32)[labels]
    plan = _kernels.Plan(SIZES, "relu", "softmax", "cross_entropy")
    theta0 = rng.normal(0, 0.05, plan.n_params).astype(np.float32)
    order = rng.permutation(rows).astype(np.intp)
    opt = ("sgd", 0.9, False, 0.0, 0.9, 0.999, 1e-8)
    n_batches = (rows + BATCH - 1) // BATCH
    times = {}
    for case in cases:
        theta = theta0.copy()
        step = ()
        if case in ("hogwild", "average"):
            kernel = _kernels.ParallelTrainer(plan, theta, X, Y, labels, BATCH, case,
                                              max(2, threads), 1, "uniform", *opt)
        else:
            mode = case.split("+")[0]
            kernel = _kernels.SyncTrainer(plan, theta, X, Y, labels, BATCH, mode, threads, *opt)
            # later builds take the step per run (the training state owns it); older kept their own
            step = () if hasattr(kernel, "step") else (0,)
            if case.endswith("+dropout"):
                kernel.set_terms(None, [0.2], 0.0, 0)
        blas = threads if case == "batch" else 1
        with threadpool_limits(limits=blas, user_api="blas"):
            kernel.run(order, 0, n_batches // 4, 0.01, *step)    # warm up
            best = []
            for _ in range(epochs):
                t0 = time.perf_counter()
                kernel.run(order, 0, n_batches, 0.01, *step)
                best.append(time.perf_counter() - t0)
        times[case] = min(best)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs=2, metavar="ROOT", help="source trees A and B, built in place")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--turns", type=int, default=7, help="turns per build (alternating)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per case and turn (the best counts)")
    parser.add_argument("--rows", type=int, default=ROWS, help="rows an epoch")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument("--turn", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.turn:
        print(json.dumps(one_turn(args.threads, args.epochs, args.rows, args.cases.split(","))))
        return
    cases = args.cases.split(",")
    if not set(cases) <= set(CASES):
        parser.error(f"--cases: choose from {', '.join(CASES)}")
    results = {root: {case: [] for case in cases} for root in args.roots}
    for turn in range(args.turns):
        for root in (args.roots if turn % 2 == 0 else args.roots[::-1]):
            env = dict(os.environ, PYTHONPATH=os.path.abspath(root))
            out = subprocess.run([sys.executable, os.path.abspath(__file__), *args.roots, "--turn",
                                  "--threads", str(args.threads), "--epochs", str(args.epochs),
                                  "--rows", str(args.rows), "--cases", args.cases],
                                 env=env, cwd=os.path.abspath(root), capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{root}: the timing run failed:\n{out.stderr}")
            for case, seconds in json.loads(out.stdout.splitlines()[-1]).items():
                results[root][case].append(seconds)
    a, b = args.roots
    print(f"threads {args.threads}, {args.turns} turns per build, best of {args.epochs} epochs a turn; "
          f"median ms per epoch ({args.rows} rows, batch {BATCH}, {'-'.join(map(str, SIZES))} float32)")
    print(f"{'case':<16} {'A':>9} {'B':>9} {'B/A':>6}   {'min A':>9} {'min B':>9} {'B/A':>6}")
    for case in cases:
        ma, mb = statistics.median(results[a][case]), statistics.median(results[b][case])
        la, lb = min(results[a][case]), min(results[b][case])
        print(f"{case:<16} {1e3 * ma:9.2f} {1e3 * mb:9.2f} {mb / ma:6.3f}   "
              f"{1e3 * la:9.2f} {1e3 * lb:9.2f} {lb / la:6.3f}")


if __name__ == "__main__":
    main()
