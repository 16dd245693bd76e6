"""What dropout costs a compiled training step (issue 14: at most 10% of a step).

The Fashion-MNIST network 784-256-128-10, float32, batch 128, on random data
of that shape.  Interleaves repeats of a plain step and a step with dropout
on both hidden layers (the machine is shared and noisy) and reports the
median time per step of each and their ratio.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/dropout_cost.py
"""

import argparse
import statistics
import time

import numpy as np

from cymlp import _kernels
from cymlp._backends import TrainerOptions
from cymlp._cython_backend import CythonTrainer, choose_mode
from cymlp._spec import ModelSpec
from cymlp._threads import effective_n_threads
from cymlp.training_state import OptimizerConfig

SIZES = (784, 256, 128, 10)


def make_trainer(spec, X, Y, labels, rate, n_threads, mode, optimizer):
    theta = np.random.default_rng(0).normal(0, 0.05, spec.n_params).astype(spec.dtype)
    options = TrainerOptions(batch_size=128, optimizer=optimizer, n_threads=n_threads, mode=mode,
                             dropout=(rate,) * (len(SIZES) - 2))
    return CythonTrainer(spec, theta, X, Y, labels, options)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="default: every usable core")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40, help="steps per timed block")
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--mode", choices=_kernels.MODES, default=None)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="adam")
    args = parser.parse_args()
    n_threads = effective_n_threads(args.threads)
    spec = ModelSpec(SIZES, "relu", "softmax", "cross_entropy", np.float32)
    mode = choose_mode(SIZES, 128, 4, args.mode)
    rng = np.random.default_rng(0)
    n = 128 * args.steps
    X = rng.random((n, SIZES[0]), dtype=np.float32)
    labels = rng.integers(0, 10, n)
    Y = np.eye(10, dtype=np.float32)[labels]
    optimizer = OptimizerConfig(args.optimizer, momentum=0.9)
    order = np.arange(n, dtype=np.intp)
    trainers = {0.0: make_trainer(spec, X, Y, labels, 0.0, n_threads, mode, optimizer),
                args.rate: make_trainer(spec, X, Y, labels, args.rate, n_threads, mode, optimizer)}
    times = {rate: [] for rate in trainers}
    try:
        for trainer in trainers.values():          # warm up
            trainer.run(order, 0, args.steps, 1e-4)
        for _ in range(args.repeats):
            for rate, trainer in trainers.items():
                t0 = time.perf_counter()
                trainer.run(order, 0, args.steps, 1e-4)
                times[rate].append((time.perf_counter() - t0) / args.steps)
    finally:
        for trainer in trainers.values():
            trainer.close()
    base, drop = statistics.median(times[0.0]), statistics.median(times[args.rate])
    print(f"784-256-128-10 float32 batch 128, {mode} mode, {n_threads} thread(s), {args.optimizer}")
    print(f"step without dropout: {base * 1e3:.3f} ms (median of {args.repeats}; "
          f"min {min(times[0.0]) * 1e3:.3f})")
    print(f"step with dropout {args.rate}: {drop * 1e3:.3f} ms (min {min(times[args.rate]) * 1e3:.3f})")
    print(f"dropout costs {100 * (drop / base - 1):+.1f}% of a step "
          f"(min vs min {100 * (min(times[args.rate]) / min(times[0.0]) - 1):+.1f}%)")


if __name__ == "__main__":
    main()
