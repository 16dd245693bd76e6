"""One ``cymlp bench --fit`` row for several source trees side by side (A/B of a change).

Each source tree is a checkout with its extensions built in place.  Every
tree gets a worker process of its own (``cymlp/bench/fit_worker.py``, as
``cymlp bench --fit`` runs them: data loaded, warmed up, then one timed
``fit`` call per request); the rounds are interleaved, reversing the order
every other round, and the report gives each tree's median and fastest
repeat and the ratio of its median to the first tree's.

A tree may be prefixed with the implementation and thread count it runs,
``IMPL:THREADS@ROOT`` (``floor:2@.``, ``default:none@.``), so that one run
also compares the GEMM floor, the default thread count or another count.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/fit_ab.py \\
        fmnist-100-adam float32 1 --repeats 7 /path/to/before /path/to/after
"""

import argparse
import json
import statistics
import subprocess
import sys

MARK = "@@cymlp-bench "


def parse_tree(text, impl, threads):
    """(impl, threads, root) of ``[IMPL[:THREADS]@]ROOT``."""
    if "@" in text:
        spec, text = text.split("@", 1)
        impl, _, count = spec.partition(":")
        if count:
            threads = None if count == "none" else int(count)
    return impl, threads, text


class Worker:
    def __init__(self, root, spec):
        code = (f"import sys; sys.path[0] = {root!r}; "
                "from cymlp.bench.fit_worker import main; sys.exit(main(sys.argv[1]))")
        self.proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        ready = self.read()
        if not ready.get("ready"):
            raise RuntimeError(f"worker for {root} failed: {ready}")

    def read(self):
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RuntimeError("the worker exited")

    def run(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        answer = self.read()
        if "seconds" not in answer:
            raise RuntimeError(f"worker failed: {answer}")
        return answer["seconds"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", help="a case of cymlp bench --fit (cymlp.bench.fit_cases.FIT_CASES)")
    parser.add_argument("dtype", choices=("float32", "float64"))
    parser.add_argument("threads", help="explicit thread count, or 'none' for the default")
    parser.add_argument("trees", nargs="+", help="[IMPL[:THREADS]@]ROOT, IMPL: cython, default, floor, numpy")
    parser.add_argument("--impl", default="cython", help="implementation of trees without a prefix")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rows", type=int, default=None, help="cap the training rows (smoke tests)")
    args = parser.parse_args(argv)
    threads = None if args.threads == "none" else int(args.threads)
    trees = [parse_tree(t, args.impl, threads) for t in args.trees]
    workers = [Worker(root, {"case": args.case, "dtype": args.dtype, "impl": impl, "epochs": 1,
                             "rows": args.rows, "threads": count}) for impl, count, root in trees]
    times = [[] for _ in trees]
    try:
        for k in range(args.repeats):
            order = range(len(trees)) if k % 2 == 0 else reversed(range(len(trees)))
            for i in order:
                times[i].append(workers[i].run())
    finally:
        for w in workers:
            w.close()
    base = statistics.median(times[0])
    print(f"{args.case} {args.dtype}, one-epoch fit, median (fastest) of {args.repeats}:")
    for (impl, count, root), t in zip(trees, times):
        med = statistics.median(t)
        print(f"  {impl} {count if count is not None else 'default'} threads {root}: "
              f"{med * 1e3:.1f} ms ({min(t) * 1e3:.1f}), {med / base:.3f}x the first")
    return 0


if __name__ == "__main__":
    sys.exit(main())
