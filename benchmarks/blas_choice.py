"""Which OpenBLAS should the compiled path call?  GEMM floors and epochs per BLAS build.

cymlp calls the BLAS through ``scipy.linalg.cython_blas``, that is SciPy's
bundled OpenBLAS (``scipy.libs/libscipy_openblas-*.so``).  NumPy bundles its
own, often newer, build, and the builds both ship as ``scipy-openblas32`` /
``scipy-openblas64`` on the package index.  This script answers whether
linking another build is worth a dependency, in two parts:

``--floor``
    The GEMMs of one training step of each network, with exactly the shapes
    and transposes cymlp issues (row-major products as column-major calls with
    the operands swapped), called through ctypes in every library given with
    ``--lib NAME=PATH`` (the SciPy and NumPy builds found in this environment
    are added by themselves), at 1 and 2 threads, libraries interleaved, best
    of ``--repeats`` blocks of at least ``--seconds``.
``--epoch``
    One ``Network.fit`` epoch per library, a fresh process each, taking turns:
    another build is put under the compiled path with ``LD_PRELOAD`` (its
    ``scipy_sgemm_``/``scipy_dgemm_`` symbols then win over SciPy's own; Linux
    only).  ``--lib 0.3.34=/path/to/libscipy_openblas.so`` for instance, from
    ``pip download scipy-openblas32`` unzipped.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/blas_choice.py --floor --epoch \\
        --lib 0.3.34=/tmp/ob/scipy_openblas32/lib/libscipy_openblas.so
"""

import argparse
import ctypes
import glob
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

NETWORKS = {     # name: (sizes, batch)
    "784-100-10/200": ((784, 100, 10), 200),
    "784-256-128-10/64": ((784, 256, 128, 10), 64),
    "1000-900x3-10/100": ((1000, 900, 900, 900, 10), 100),
    "784-30-10/10": ((784, 30, 10), 10),
    "64-32-10/16": ((64, 32, 10), 16),
}


def found_libraries():
    """SciPy's and NumPy's bundled OpenBLAS in this environment: {name: (path, suffix, int type)}."""
    import numpy
    import scipy
    libs = {}
    for path in glob.glob(os.path.join(os.path.dirname(scipy.__file__) + ".libs", "libscipy_openblas*.so")):
        libs["scipy (cymlp's)"] = (path, "", ctypes.c_int)
    for path in glob.glob(os.path.join(os.path.dirname(numpy.__file__) + ".libs", "libscipy_openblas64_*.so")):
        libs["numpy"] = (path, "64_", ctypes.c_int64)
    return libs


class Blas:
    """The Fortran ``?gemm_`` of one library, and its thread setting."""

    def __init__(self, path, suffix, int_type):
        self.lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
        self.int = int_type
        self.gemm = {np.float32: getattr(self.lib, f"scipy_sgemm_{suffix}"),
                     np.float64: getattr(self.lib, f"scipy_dgemm_{suffix}")}
        name = "scipy_openblas_set_num_threads" + ("64_" if suffix else "")
        self._threads = getattr(self.lib, name)
        config = getattr(self.lib, "scipy_openblas_get_config" + ("64_" if suffix else ""))
        config.restype = ctypes.c_char_p
        self.config = config().decode()

    def set_threads(self, n):
        self._threads(ctypes.c_int(n))

    def row_major(self, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
        """The arguments of C (m, n) = alpha op(A) op(B) + beta C, row-major: the column-major call
        with A and B swapped (made once, so that a timed call is little more than the GEMM)."""
        scalar = ctypes.c_float if C.dtype == np.float32 else ctypes.c_double
        i = self.int
        args = (ctypes.c_char_p(b"T" if transb else b"N"), ctypes.c_char_p(b"T" if transa else b"N"),
                ctypes.byref(i(n)), ctypes.byref(i(m)), ctypes.byref(i(k)), ctypes.byref(scalar(alpha)),
                ctypes.c_void_p(B.ctypes.data), ctypes.byref(i(ldb)),
                ctypes.c_void_p(A.ctypes.data), ctypes.byref(i(lda)), ctypes.byref(scalar(beta)),
                ctypes.c_void_p(C.ctypes.data), ctypes.byref(i(ldc)))
        return self.gemm[C.dtype.type], args


def step_calls(sizes, batch, dtype):
    """The GEMMs of one cymlp step: forward Z = A Wᵀ, gradient δᵀ A, back-propagated δ W."""
    rng = np.random.default_rng(0)
    calls = []
    for l in range(len(sizes) - 1):
        n_in, n_out = sizes[l], sizes[l + 1]
        A = rng.random((batch, n_in)).astype(dtype)
        W = rng.random((n_out, n_in)).astype(dtype)
        Z = np.empty((batch, n_out), dtype)
        D = rng.random((batch, n_out)).astype(dtype)
        G = np.empty((n_out, n_in), dtype)
        calls.append((False, True, batch, n_out, n_in, 1.0, A, n_in, W, n_in, 0.0, Z, n_out))
        calls.append((True, False, n_out, n_in, batch, 1.0, D, n_out, A, n_in, 0.0, G, n_in))
        if l > 0:
            P = np.empty((batch, n_in), dtype)
            calls.append((False, False, batch, n_in, n_out, 1.0, D, n_out, W, n_in, 0.0, P, n_in))
    return calls


def floor(libs, threads, repeats, seconds):
    blas = {name: Blas(*spec) for name, spec in libs.items()}
    for name, b in blas.items():
        print(f"{name}: {b.config}")
    rows = []
    for net, (sizes, batch) in NETWORKS.items():
        for dtype in (np.float32, np.float64):
            arrays = step_calls(sizes, batch, dtype)
            calls = {name: [b.row_major(*c) for c in arrays] for name, b in blas.items()}
            for t in threads:
                best = {name: float("inf") for name in blas}
                for name, b in blas.items():
                    b.set_threads(t)
                    for f, a in calls[name]:
                        f(*a)
                t0 = time.perf_counter()
                for f, a in next(iter(calls.values())):
                    f(*a)
                reps = max(1, int(seconds / max(time.perf_counter() - t0, 1e-7)))
                for _ in range(repeats):
                    for name in blas:
                        todo = calls[name]
                        t0 = time.perf_counter()
                        for _ in range(reps):
                            for f, a in todo:
                                f(*a)
                        best[name] = min(best[name], (time.perf_counter() - t0) / reps)
                rows.append({"network": net, "dtype": np.dtype(dtype).name, "threads": t,
                             "step_seconds": best})
                ref = best["scipy (cymlp's)"]
                print(f"{net:20s} {np.dtype(dtype).name} {t}t " + "  ".join(
                    f"{name} {s * 1e6:9.1f} µs ({s / ref:.3f})" for name, s in best.items()), flush=True)
    return rows


EPOCH_CHILD = r"""
import json, sys, time, warnings
import numpy as np
from cymlp import Network
from cymlp.bench.fit_cases import FIT_CASES, load_case_data
case = FIT_CASES[sys.argv[1]]; dtype = sys.argv[2]; threads = int(sys.argv[3]); epochs = int(sys.argv[4])
X, y, *_ = load_case_data(case, dtype)
net = Network(list(case.sizes), case.activation, case.output, case.loss, dtype=dtype, n_threads=threads, seed=0)
kw = dict(batch_size=case.batch_size, lr=case.lr, momentum=case.momentum, optimizer=case.optimizer)
net.fit(X[:4000], y[:4000], epochs=1, **kw)
times = []
for _ in range(epochs):
    t = time.perf_counter()
    net.fit(X, y, epochs=case.repeat_epochs, **kw)
    times.append((time.perf_counter() - t) / case.repeat_epochs)
print(json.dumps(times))
"""


def epochs(libs, cases, dtypes, threads, turns, per_turn):
    rows = []
    names = ["scipy (cymlp's)"] + [n for n in libs if n not in ("scipy (cymlp's)", "numpy")]
    for case in cases:
        for dtype in dtypes:
            for t in threads:
                times = {n: [] for n in names}
                for turn in range(turns):
                    for name in (names if turn % 2 == 0 else names[::-1]):
                        env = dict(os.environ)
                        if name != "scipy (cymlp's)":
                            env["LD_PRELOAD"] = libs[name][0]
                        out = subprocess.run([sys.executable, "-c", EPOCH_CHILD, case, dtype, str(t), str(per_turn)],
                                             env=env, capture_output=True, text=True, check=True)
                        times[name].append(min(json.loads(out.stdout.strip().splitlines()[-1])))
                ref = statistics.median(times[names[0]])
                print(f"{case:16s} {dtype} {t}t epoch " + "  ".join(
                    f"{n} {statistics.median(v) * 1e3:8.1f} ms ({statistics.median(v) / ref:.3f}; best "
                    f"{min(v) * 1e3:.1f})" for n, v in times.items()) + f"  load {os.getloadavg()[0]:.1f}",
                    flush=True)
                rows.append({"case": case, "dtype": dtype, "threads": t, "epoch_seconds": times})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", action="append", default=[], metavar="NAME=PATH",
                        help="another OpenBLAS build (scipy-openblas32's libscipy_openblas.so)")
    parser.add_argument("--floor", action="store_true", help="GEMM floors through ctypes")
    parser.add_argument("--epoch", action="store_true", help="fit epochs per library (LD_PRELOAD)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.05)
    parser.add_argument("--cases", default="fmnist-100-adam,fmnist-256-sgd,seed,nielsen,digits")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--per-turn", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    libs = found_libraries()
    for item in args.lib:
        name, _, path = item.partition("=")
        libs[name] = (path, "", ctypes.c_int)
    threads = [int(t) for t in args.threads.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f}; OPENBLAS_CORETYPE "
          f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    out = {"load_start": os.getloadavg()[0]}
    if args.floor:
        out["floor"] = floor(libs, threads, args.repeats, args.seconds)
    if args.epoch:
        out["epoch"] = epochs(libs, args.cases.split(","), args.dtypes.split(","), threads, args.turns,
                              args.per_turn)
    out["load_end"] = os.getloadavg()[0]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
