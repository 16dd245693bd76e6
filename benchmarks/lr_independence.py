"""Does a fit epoch's time depend on the learning rate? (issue 12)

It did: a large learning rate saturates sigmoids and drives activations,
derivatives and the momentum velocity into the subnormal range, where x86
cores take a microcode assist per operation.  The compiled kernels now flush
subnormals to zero while they run (cymlp/_fpu.pxd); this script shows the
epoch time per learning rate, interleaved, with the NumPy path for contrast
(NumPy keeps subnormals, so its time may still move with the rate).

Nielsen's 784-30-10 sigmoid network, quadratic cost, SGD with momentum 0.9,
batch 10, on Fashion-MNIST (or random data of that shape when it is absent).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/lr_independence.py
"""

import argparse
import statistics
import time

import numpy as np

import cymlp
from cymlp import datasets


def load(dtype, rows):
    try:
        X, y, _, _ = datasets.load_fashion_mnist(dtype=dtype)
        what = "Fashion-MNIST"
    except FileNotFoundError:
        X, y = datasets.make_random_classification(rows, 784, 10, seed=0, dtype=dtype)
        what = "random data (Fashion-MNIST not installed)"
    return X[:rows], y[:rows], what


def epoch_seconds(backend, dtype, lr, X, y, threads):
    net = cymlp.Network([784, 30, 10], activation="sigmoid", output="sigmoid", loss="quadratic",
                        dtype=dtype, backend=backend, n_threads=threads, seed=0)
    kw = dict(batch_size=10, lr=lr, momentum=0.9, optimizer="sgd")
    net.fit(X, y, epochs=1, **kw)              # the first epoch saturates (or not)
    time.sleep(0.2)
    start = time.perf_counter()
    net.fit(X, y, epochs=1, resume=True, **kw)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.1,0.5,3,10")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backends", default="cython,numpy")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    backends = [b for b in args.backends.split(",") if b in cymlp.available_backends()]
    X, y, what = load(args.dtype, args.rows)
    print(f"784-30-10 sigmoid, SGD momentum 0.9, batch 10, {args.dtype}, {len(X):,} rows of {what}, "
          f"{args.threads} thread(s); seconds per epoch after a first epoch, median of {args.repeats}")
    times = {(b, r): [] for b in backends for r in rates}
    for _ in range(args.repeats):
        for b in backends:
            for r in rates:
                times[b, r].append(epoch_seconds(b, args.dtype, r, X, y, args.threads))
    print("| backend | " + " | ".join(f"lr {r:g}" for r in rates) + " | slowest / fastest |")
    print("|:---|" + "---:|" * (len(rates) + 1))
    for b in backends:
        med = [statistics.median(times[b, r]) for r in rates]
        print(f"| {b} | " + " | ".join(f"{m:.3f} s" for m in med) + f" | {max(med) / min(med):.2f}× |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
