"""Sparse input: cymlp.sklearn against scikit-learn's MLPClassifier on a TF-IDF matrix.

The documents are the Python source files of 16 packages installed next to
scikit-learn (numpy, scipy, sklearn, dask, ...), the label of a file is the
package it belongs to, and ``TfidfVectorizer(min_df=2, sublinear_tf=True,
dtype=float32)`` turns them into a CSR matrix (in this environment 4855 x
73930 with 0.39 % of the entries stored: 1.4 GB if it were dense).  Both
estimators get the same CSR matrix, the same split (75 % train, stratified,
``random_state=0``) and the same parameters: 100 relu units, adam, batch
200, ``alpha=1e-4``, exactly ``--epochs`` epochs (``tol=0``), ``random_state=0``;
every usable core, or ``--n-threads N`` (cymlp's ``n_threads``, scikit-learn
inside ``threadpool_limits(N)``).
Each fit runs in its own fresh process; the processes alternate (cymlp,
scikit-learn, cymlp, ...), so that a change of load hits both.  Reported: fit
time, time per epoch, test accuracy, and the growth of the process's peak
resident memory during ``fit`` (``ru_maxrss``).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/sparse_vs_sklearn.py
    python benchmarks/sparse_vs_sklearn.py --rounds 1 --epochs 2          # a quick look

The matrix is built once and cached (``--cache``, default a file in the
temporary folder).  Prints a Markdown table, the CPU (``lscpu``), the load
averages and ``threadpoolctl``'s view of the BLAS and OpenMP pools.
"""

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

PACKAGES = ["numpy", "scipy", "sklearn", "dask", "distributed", "onnx", "skl2onnx", "Cython",
            "matplotlib", "setuptools", "pip", "hypothesis", "_pytest", "docutils", "sphinx", "mypy"]
LIBRARIES = {"cymlp": "cymlp.sklearn", "sklearn": "sklearn.neural_network"}


def build(cache, files_per_package=None):
    """The TF-IDF matrix and package labels of the installed packages' source files (cached)."""
    import scipy.sparse as sp
    if os.path.exists(cache):
        with np.load(cache, allow_pickle=False) as f:
            X = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
            return X, f["labels"], [str(p) for p in f["packages"]]
    from sklearn.feature_extraction.text import TfidfVectorizer
    site = sysconfig.get_paths()["purelib"]
    docs, labels, found = [], [], []
    for package in PACKAGES:
        files = sorted(glob.glob(os.path.join(site, package, "**", "*.py"), recursive=True))
        texts = [Path(f).read_text(encoding="utf8", errors="replace") for f in files]
        texts = [t for t in texts if len(t) >= 200][:files_per_package]
        if len(texts) >= 20:
            docs += texts
            labels += [len(found)] * len(texts)
            found.append(package)
    X = TfidfVectorizer(min_df=2, sublinear_tf=True, dtype=np.float32).fit_transform(docs).tocsr()
    labels = np.array(labels)
    np.savez(cache, data=X.data, indices=X.indices, indptr=X.indptr, shape=np.array(X.shape),
             labels=labels, packages=np.array(found))
    return X, labels, found


def child(library, cache, epochs, n_threads):
    """One process: load the matrix, fit, print JSON (time, accuracy, memory growth)."""
    warnings.simplefilter("ignore")
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits
    module = __import__(LIBRARIES[library], fromlist=["MLPClassifier"])
    X, y, _ = build(cache)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    extra = {"n_threads": n_threads} if library == "cymlp" and n_threads else {}
    limits = threadpool_limits(n_threads) if library == "sklearn" and n_threads else None
    est = module.MLPClassifier(hidden_layer_sizes=(100,), solver="adam", batch_size=200,
                               alpha=1e-4, max_iter=epochs, tol=0, n_iter_no_change=epochs + 1,
                               random_state=0, **extra)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    est.fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if limits is not None:
        limits.restore_original_limits()
    print(json.dumps({"seconds": seconds, "epochs": est.n_iter_,
                      "accuracy": float(est.score(X_test, y_test)),
                      "peak_growth_mb": (rss_after - rss_before) / 1024}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="fits per library")
    parser.add_argument("--n-threads", type=int, default=None,
                        help="threads of both: cymlp's n_threads, scikit-learn's BLAS limit "
                             "(default: every usable core)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(),
                                                        "cymlp-tfidf-site-packages.npz"))
    parser.add_argument("--files-per-package", type=int, default=None,
                        help="at most this many files of each package (a smaller matrix; "
                             "use another --cache)")
    parser.add_argument("--child", choices=list(LIBRARIES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.cache, args.epochs, args.n_threads)
    X, y, packages = build(args.cache, args.files_per_package)
    results = {name: [] for name in LIBRARIES}
    loads = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name in LIBRARIES:
            command = [sys.executable, __file__, "--child", name, "--cache", args.cache,
                       "--epochs", str(args.epochs)]
            if args.n_threads:
                command += ["--n-threads", str(args.n_threads)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[name].append(json.loads(out.strip().splitlines()[-1]))
            loads.append(os.getloadavg()[0])
    import threadpoolctl

    import cymlp.sklearn  # noqa: F401
    dense_gb = X.shape[0] * X.shape[1] * X.dtype.itemsize / 1e9
    from cymlp.bench.machine import cpu_model  # lscpu, /proc/cpuinfo or platform
    print(f"CPU: {cpu_model()[0]}, {os.cpu_count()} logical cores; load average "
          f"{min(loads):.1f}-{max(loads):.1f} during the run")
    for p in threadpoolctl.threadpool_info():
        print(f"threadpoolctl: {p['internal_api']} {p.get('version')} ({p['prefix']}), "
              f"{p['num_threads']} threads")
    print(f"\nTF-IDF of {X.shape[0]} source files of {len(packages)} packages: {X.shape[0]} x "
          f"{X.shape[1]}, {X.nnz} stored values ({100 * X.nnz / X.shape[0] / X.shape[1]:.2f} %), "
          f"{X.dtype}; dense it would take {dense_gb:.1f} GB.  {args.epochs} epochs, "
          f"{args.rounds} fits per library, threads: {args.n_threads or 'all'}\n")
    print("| estimator | fit (s), median | s/epoch | test accuracy | peak memory growth (MB) |")
    print("|:---|---:|---:|---:|---:|")
    medians = {}
    for name, runs in results.items():
        medians[name] = statistics.median(r["seconds"] for r in runs)
        print(f"| {LIBRARIES[name]} | {medians[name]:.2f} | "
              f"{medians[name] / args.epochs:.3f} | "
              f"{statistics.median(r['accuracy'] for r in runs):.4f} | "
              f"{statistics.median(r['peak_growth_mb'] for r in runs):.0f} |")
    each = {name: ", ".join(f"{r['seconds']:.1f}" for r in runs) for name, runs in results.items()}
    print(f"\nscikit-learn / cymlp: {medians['sklearn'] / medians['cymlp']:.2f}x "
          f"(each fit: {each['cymlp']} s vs {each['sklearn']} s)")


if __name__ == "__main__":
    main()
