"""Time of one ``partial_fit`` call on 200-row chunks: cymlp.sklearn against scikit-learn.

Streaming training calls ``partial_fit`` once per chunk, so what a call costs
besides the arithmetic (checks, label encoding, setting up the step) counts.
The estimators get the same parameters (``MLPClassifier()``'s defaults: 100
relu units, adam, ``random_state=0``) and the same chunks of the digits
(1797 x 64, scaled to [0, 1], float64): 8 chunks of 200 rows, one epoch each.
Each library runs in its own fresh process (``--child``), and the processes
alternate (cymlp, scikit-learn, cymlp, ...), so that a change of load hits
both; each process warms up, then times every call with ``perf_counter``.
The table gives the median over the processes of each process's median call
time; the ratio is scikit-learn's over cymlp's.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/partial_fit_overhead.py
    python benchmarks/partial_fit_overhead.py --rounds 3 --calls 200     # a quick look
    python benchmarks/partial_fit_overhead.py --baseline /path/to/other/cymlp/checkout

``--baseline`` adds a third process per round running cymlp from another
(built) source tree, e.g. before a change.

Prints a Markdown table with the CPU (``lscpu``), the load averages and
``threadpoolctl``'s view of the BLAS and OpenMP pools.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

LIBRARIES = {"cymlp": "cymlp.sklearn", "sklearn": "sklearn.neural_network"}


def child(library, calls, chunk, n_threads):
    """One process: warm up, then time ``calls`` partial_fit calls; print JSON."""
    warnings.simplefilter("ignore")
    from cymlp.datasets import load_digits
    module = __import__(LIBRARIES[library], fromlist=["MLPClassifier"])
    X, y = load_digits()
    n = (len(X) // chunk) * chunk
    chunks = [(X[i:i + chunk], y[i:i + chunk]) for i in range(0, n, chunk)]
    extra = {"n_threads": n_threads} if library == "cymlp" and n_threads else {}
    if library == "sklearn" and n_threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n_threads)             # for the rest of this process
    est = module.MLPClassifier(random_state=0, **extra)
    est.partial_fit(*chunks[0], classes=np.arange(10))
    for X_c, y_c in chunks * 2:                      # warm-up: two passes
        est.partial_fit(X_c, y_c)
    times = []
    for i in range(calls):
        X_c, y_c = chunks[i % len(chunks)]
        t0 = time.perf_counter()
        est.partial_fit(X_c, y_c)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"library": library, "median_ms": 1e3 * statistics.median(times),
                      "p10_ms": 1e3 * float(np.percentile(times, 10)),
                      "min_ms": 1e3 * min(times), "accuracy": float(est.score(X, y))}))


def pools():
    """threadpoolctl's view after both libraries are imported (their BLAS and OpenMP)."""
    import sklearn.neural_network  # noqa: F401
    import threadpoolctl

    import cymlp.sklearn  # noqa: F401
    return [f"{p['internal_api']} {p.get('version')} ({p['prefix']}), {p['num_threads']} threads"
            for p in threadpoolctl.threadpool_info()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="processes per library")
    parser.add_argument("--calls", type=int, default=400, help="timed calls per process")
    parser.add_argument("--chunk", type=int, default=200, help="rows per call")
    parser.add_argument("--n-threads", type=int, default=None,
                        help="threads of both: cymlp's n_threads, scikit-learn's BLAS limit "
                             "(default: every usable core)")
    parser.add_argument("--baseline", default=None,
                        help="also run cymlp from this source tree (built in place)")
    parser.add_argument("--child", choices=list(LIBRARIES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.calls, args.chunk, args.n_threads)
    runs = [("cymlp", "cymlp.sklearn", None), ("sklearn", LIBRARIES["sklearn"], None)]
    if args.baseline:
        runs.append(("cymlp", f"cymlp.sklearn ({args.baseline})", args.baseline))
    results = {label: [] for _, label, _ in runs}
    loads = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name, label, tree in runs:
            command = [sys.executable, __file__, "--child", name, "--calls", str(args.calls),
                       "--chunk", str(args.chunk)]
            if args.n_threads:
                command += ["--n-threads", str(args.n_threads)]
            env = dict(os.environ)
            if tree:
                env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, env.get("PYTHONPATH")) if p)
            out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
            results[label].append(json.loads(out.strip().splitlines()[-1]))
            loads.append(os.getloadavg()[0])
    from cymlp.bench.machine import cpu_model  # lscpu, /proc/cpuinfo or platform
    print(f"CPU: {cpu_model()[0]}, {os.cpu_count()} logical cores; load average "
          f"{min(loads):.1f}-{max(loads):.1f} during the run")
    for line in pools():
        print(f"threadpoolctl: {line}")
    print(f"\n{args.rounds} processes per library, {args.calls} timed calls each, "
          f"{args.chunk} rows a call; threads: {args.n_threads or 'all'}\n")
    print("| library | median of medians (ms/call) | median p10 (ms) | fastest call (ms) | accuracy |")
    print("|:---|---:|---:|---:|---:|")
    summary = {}
    for label, done in results.items():
        summary[label] = statistics.median(r["median_ms"] for r in done)
        print(f"| {label} | {summary[label]:.3f} | "
              f"{statistics.median(r['p10_ms'] for r in done):.3f} | "
              f"{min(r['min_ms'] for r in done):.3f} | "
              f"{statistics.median(r['accuracy'] for r in done):.3f} |")
    ours = summary["cymlp.sklearn"]
    for label, value in summary.items():
        if label != "cymlp.sklearn":
            print(f"\n{label} / cymlp.sklearn: {value / ours:.2f}x")


if __name__ == "__main__":
    main()
