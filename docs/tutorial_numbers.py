"""Print the numbers quoted in docs/tutorial.md, one step at a time.

    python docs/tutorial_numbers.py step1     # the learner's two bugs, caught
    python docs/tutorial_numbers.py step2     # GEMM vs GEMV: arithmetic intensity and speed
    python docs/tutorial_numbers.py step6     # validation, early stopping, divergence
    python docs/tutorial_numbers.py all

Steps 3 and 4 are measured by ``cymlp bench`` itself (see the tutorial).
Every function returns its numbers as a dict, so the tests can check them.
"""

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import cymlp
except ImportError:                       # run from a checkout built in place
    sys.path.insert(0, str(HERE.parent))
    import cymlp
import learner_loop

from cymlp.datasets import load_digits

SEED_SIZES = [1000, 900, 900, 900, 10]    # the learner's network
SEED_BATCH = 100


def _relative_error(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def step1(verbose=True):
    """The per-example loop against the reference path, and the label-length check."""
    rng = np.random.default_rng(0)
    X, labels = load_digits()                    # float64, pixels in [0, 1]
    I, L = X[:200], labels[:200]
    layer_size = [64, 30, 30, 10]
    W, b = learner_loop.init_network(layer_size, rng)

    net = cymlp.Network(layer_size, activation="sigmoid", output="sigmoid", loss="quadratic",
                        dtype="float64", backend="numpy", seed=0)
    for l in range(len(W)):
        net.weights[l][...] = W[l]
        net.biases[l][...] = b[l].ravel()

    batch = rng.integers(0, len(I), 32)
    y = learner_loop.ground_truth(L, 10)
    ref_w, ref_b = net.backprop(I[batch], L[batch])
    out = {}
    for label, twice in (("buggy", True), ("fixed", False)):
        dW, db = learner_loop.batch_gradient(W, b, I, y, batch, add_last_twice=twice)
        out[label] = [_relative_error(dW[l], ref_w[l]) for l in range(len(W))]
        out[label + "_bias"] = max(_relative_error(db[l].ravel(), ref_b[l]) for l in range(len(W)))
    out["gradcheck"] = cymlp.gradcheck(net, I[:20], L[:20])

    # BUG 2: one label per *input feature* (64) instead of one per example (200)
    L_bad = rng.integers(0, 10, layer_size[0])
    class RecordingRng:                             # records which rows the loop draws
        def __init__(self):
            self.used = set()

        def integers(self, low, high, size):
            rows = rng.integers(low, high, size)
            self.used.update(rows.tolist())
            return rows
    recording = RecordingRng()
    learner_loop.train(W, b, I, L_bad, batch_size=10, eta=1.0, steps=50, rng=recording,
                       add_last_twice=False)
    used = recording.used
    out["rows_used"] = (len(used), len(I))
    try:
        cymlp.gradcheck(net, I, L_bad)
        out["label_error"] = None
    except ValueError as exc:
        out["label_error"] = str(exc)

    if verbose:
        print("step 1: the per-example loop against cymlp's reference path (digits, 64-30-30-10)")
        print("  relative error of dW per layer, loop with the doubled line:",
              "  ".join(f"{e:.2g}" for e in out["buggy"]))
        print("  relative error of dW per layer, line removed:          ",
              "  ".join(f"{e:.2g}" for e in out["fixed"]))
        print(f"  relative error of db, line removed: {out['fixed_bias']:.2g}")
        print(f"  cymlp.gradcheck of the reference path: {out['gradcheck']:.2g}")
        print(f"  labels sized by the input size: the loop trained on {out['rows_used'][0]} "
              f"of {out['rows_used'][1]} examples without a word")
        print(f"  cymlp.gradcheck(net, I, L_bad) raises ValueError: {out['label_error']}")
    return out


def _step_bytes_and_flops(sizes, n, itemsize=8):
    """FLOPs and the minimum bytes moved by one SGD step's matrix products.

    Forward z = a Wᵀ, weight gradient δᵀ a and back-propagated δ W (all layers
    but the first): three products per layer, each reading its two operands
    and writing its result once.  As GEMMs the batch of ``n`` rows goes through
    each product once; as GEMVs every example reads the whole weight matrix again.
    """
    flops = gemm_bytes = gemv_bytes = 0
    for l in range(len(sizes) - 1):
        k, m = sizes[l], sizes[l + 1]
        products = 3 if l > 0 else 2
        flops += products * 2 * n * m * k
        # forward: read a (n,k) and W (m,k), write z (n,m)
        gemm_bytes += (n * k + m * k + n * m)
        gemv_bytes += n * (k + m * k + m)
        # weight gradient: read δ (n,m) and a (n,k), write dW (m,k)
        gemm_bytes += (n * m + n * k + m * k)
        gemv_bytes += n * (m + k + 2 * m * k)      # an outer product per example, accumulated
        if l > 0:
            # δ W: read δ (n,m) and W (m,k), write (n,k)
            gemm_bytes += (n * m + m * k + n * k)
            gemv_bytes += n * (m + m * k + k)
    return flops, gemm_bytes * itemsize, gemv_bytes * itemsize


def _gflops(fn, flops, seconds=0.3):
    fn()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        reps += 1
    return flops * reps / (time.perf_counter() - t0) / 1e9


def step2(verbose=True):
    """Arithmetic intensity of the learner's step as GEMMs and as GEMVs; one layer timed."""
    from threadpoolctl import threadpool_limits

    flops, gemm_bytes, gemv_bytes = _step_bytes_and_flops(SEED_SIZES, SEED_BATCH)
    out = {"flops": flops, "gemm_bytes": gemm_bytes, "gemv_bytes": gemv_bytes,
               "gemm_intensity": flops / gemm_bytes, "gemv_intensity": flops / gemv_bytes}
    out["intensity_ratio"] = out["gemm_intensity"] / out["gemv_intensity"]

    rng = np.random.default_rng(0)
    A = rng.random((SEED_BATCH, 1000))
    W = rng.standard_normal((900, 1000))
    layer_flops = 2 * SEED_BATCH * 900 * 1000
    with threadpool_limits(1):
        out["gemm_gflops"] = _gflops(lambda: A @ W.T, layer_flops)
        out["gemv_gflops"] = _gflops(lambda: [W @ A[i] for i in range(SEED_BATCH)], layer_flops)
    out["speed_ratio"] = out["gemm_gflops"] / out["gemv_gflops"]

    if verbose:
        print(f"step 2: one SGD step of {'-'.join(map(str, SEED_SIZES))}, batch {SEED_BATCH}, float64")
        print(f"  FLOPs in the matrix products: {flops / 1e6:.0f} million")
        print(f"  bytes moved as GEMMs (batch as a matrix):   {gemm_bytes / 1e6:8.1f} MB "
              f"-> {out['gemm_intensity']:.1f} FLOPs per byte")
        print(f"  bytes moved as GEMVs (one example at a time): {gemv_bytes / 1e6:6.0f} MB "
              f"-> {out['gemv_intensity']:.2f} FLOPs per byte")
        print(f"  arithmetic intensity, GEMM / GEMV: {out['intensity_ratio']:.0f}x")
        print(f"  measured on this machine, one thread, layer 1000->900, batch {SEED_BATCH}: "
              f"GEMM {out['gemm_gflops']:.1f} GFLOP/s, {SEED_BATCH} GEMVs {out['gemv_gflops']:.1f} GFLOP/s "
              f"({out['speed_ratio']:.0f}x)")
    return out


def step6(verbose=True):
    """Validation and early stopping on digits; what divergence looks like."""
    import warnings

    X_train, y_train, X_test, y_test = load_digits(return_split=True, dtype="float32")
    net = cymlp.Network([64, 64, 10], activation="relu", output="softmax", dtype="float32", seed=0)
    history = net.fit(X_train, y_train, epochs=60, batch_size=32, lr=0.1, momentum=0.9,
                      lr_schedule="cosine", validation_fraction=0.2,
                      early_stopping=True, patience=5)
    out = {"epochs_run": len(history), "best_epoch": history.best_epoch,
               "best_val_loss": min(history.val_loss), "test_accuracy": net.score(X_test, y_test)}

    # a regression-style output (identity + quadratic) is not bounded like softmax
    Y_train = np.eye(10, dtype="float32")[y_train]
    out["by_lr"] = {}
    for lr in (0.5, 2.0, 5.0):
        wild = cymlp.Network([64, 64, 10], activation="relu", output="identity", loss="quadratic",
                             dtype="float32", seed=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h = wild.fit(X_train, Y_train, epochs=5, batch_size=32, lr=lr, momentum=0.9,
                         on_divergence="warn")
        message = str(caught[-1].message) if h.diverged else None
        out["by_lr"][lr] = {"loss": list(h.loss), "diverged": h.diverged, "message": message}
    if verbose:
        print("step 6: digits 64-64-10, SGD lr 0.1 momentum 0.9 cosine schedule, 20% validation")
        print(f"  early stopping: ran {out['epochs_run']} epochs, best validation loss "
              f"{out['best_val_loss']:.4f} at epoch {out['best_epoch']}, "
              f"test accuracy {out['test_accuracy']:.4f}")
        print("  identity output + quadratic loss, relu, SGD momentum 0.9, 5 epochs:")
        for lr, run in out["by_lr"].items():
            curve = " ".join(f"{x:.3g}" for x in run["loss"])
            print(f"    lr={lr:g}: training loss by epoch [{curve}]"
                  + (f"; diverged: {run['message']}" if run["diverged"] else ""))
    return out


STEPS = {"step1": step1, "step2": step2, "step6": step6}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    names = list(STEPS) if argv in ([], ["all"]) else argv
    for name in names:
        if name not in STEPS:
            sys.exit(f"unknown step {name!r}; choose from {', '.join(STEPS)} or all "
                     "(steps 3 and 4 are measured by `cymlp bench`, see docs/tutorial.md)")
        STEPS[name]()


if __name__ == "__main__":
    main()
