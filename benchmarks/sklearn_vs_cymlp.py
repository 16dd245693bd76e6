"""cymlp.sklearn.MLPClassifier against sklearn.neural_network.MLPClassifier on Fashion-MNIST.

The Fashion-MNIST paper's best MLP setting: one hidden layer of 100 relu units, adam,
learning rate 1e-3, batch 200, alpha 1e-4, 20 epochs (exactly: the no-improvement stop is
switched off).  Both estimators get the same arrays, in float32 and in float64, with every core
they may use (``--threads all``: cymlp's OpenMP team, scikit-learn's BLAS threads) and/or one
thread (``--threads 1``: cymlp ``n_threads=1``, scikit-learn inside ``threadpool_limits(1)``).

    python benchmarks/sklearn_vs_cymlp.py                   # the full run (minutes)
    python benchmarks/sklearn_vs_cymlp.py --epochs 2 --train-rows 10000   # a quick look

Needs the data (``apt-get install dataset-fashion-mnist``, or ``--data DIR``) and scikit-learn.
Prints a Markdown table, the machine and ``threadpoolctl`` information.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def run_one(est, threads, X_train, y_train, X_test, y_test):
    from threadpoolctl import threadpool_limits
    load_before = os.getloadavg()[0]
    with warnings.catch_warnings(), threadpool_limits(None if threads == "all" else int(threads)):
        warnings.simplefilter("ignore")          # ConvergenceWarning after a fixed 20 epochs
        t0 = time.perf_counter()
        est.fit(X_train, y_train)
        seconds = time.perf_counter() - t0
    return {"accuracy": float(est.score(X_test, y_test)), "seconds": seconds,
            "epochs": est.n_iter_, "final_loss": float(est.loss_curve_[-1]),
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dtype", default="float32,float64")
    parser.add_argument("--threads", default="all", help="comma-separated: all and/or 1")
    parser.add_argument("--train-rows", type=int, default=None, help="first rows only (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--json", default=None, help="write every number here")
    args = parser.parse_args(argv)

    import sklearn
    import threadpoolctl
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    import cymlp
    from cymlp.datasets import load_fashion_mnist
    from cymlp.sklearn import MLPClassifier

    params = {"hidden_layer_sizes": (100,), "activation": "relu", "solver": "adam",
              "learning_rate_init": 1e-3, "batch_size": 200, "alpha": 1e-4,
              "max_iter": args.epochs, "n_iter_no_change": args.epochs + 1,
              "random_state": args.seed}
    rows = []
    for dtype in args.dtype.split(","):
        X_train, y_train, X_test, y_test = load_fashion_mnist(args.data, dtype=dtype)
        if args.train_rows:
            X_train, y_train = X_train[:args.train_rows], y_train[:args.train_rows]
        for threads in args.threads.split(","):
            n_threads = None if threads == "all" else int(threads)
            for name, est in (("cymlp.sklearn", MLPClassifier(**params, n_threads=n_threads)),
                              ("sklearn", SkMLPClassifier(**params))):
                result = run_one(est, threads, X_train, y_train, X_test, y_test)
                result.update(impl=name, dtype=dtype, threads=threads)
                rows.append(result)
                print(f"{name:>14} {dtype} threads={threads}: accuracy {result['accuracy']:.4f}, "
                      f"{result['seconds']:.1f} s", file=sys.stderr, flush=True)

    pools = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture",
                                    "filepath")} for p in threadpoolctl.threadpool_info()]
    info = {"command": "python " + " ".join(sys.argv), "cpu": cpu_model(),
            "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "sklearn": sklearn.__version__, "cymlp": cymlp.__version__,
            "train_rows": len(y_train), "params": params, "threadpools": pools}
    print(f"\n`{info['command']}` on {info['cpu']} ({info['cores']} logical CPUs), "
          f"Python {info['python']}, NumPy {info['numpy']}, scikit-learn {info['sklearn']}, "
          f"cymlp {info['cymlp']}; {info['train_rows']} training rows, 10,000 test rows.\n")
    print("| estimator | dtype | threads | test accuracy | epochs | train time (s) | s/epoch | "
          "final loss | load avg before → after |")
    print("|:---|:---|:---|---:|---:|---:|---:|---:|:---|")
    for r in rows:
        print(f"| {r['impl']} | {r['dtype']} | {r['threads']} | {r['accuracy']:.4f} | {r['epochs']} | "
              f"{r['seconds']:.1f} | {r['seconds'] / r['epochs']:.2f} | {r['final_loss']:.4f} | "
              f"{r['load_before']:.1f} → {r['load_after']:.1f} |")
    for i in range(0, len(rows), 2):
        ours, theirs = rows[i], rows[i + 1]
        print(f"\n{ours['dtype']}, threads={ours['threads']}: cymlp.sklearn is "
              f"{theirs['seconds'] / ours['seconds']:.1f}x as fast; accuracy difference "
              f"{100 * (ours['accuracy'] - theirs['accuracy']):+.2f} points", end="")
    print("\n\nthreadpoolctl:")
    for p in info["threadpools"]:
        print(f"- {p['internal_api']} {p['version']}, {p['num_threads']} threads, "
              f"{p.get('architecture')}, {p['filepath']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(info, rows=rows), f, indent=2)


if __name__ == "__main__":
    main()
