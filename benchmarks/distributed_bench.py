"""Time to a target accuracy: one process vs a Dask LocalCluster (model averaging, synchronous SGD).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/distributed_bench.py \
        --dataset digits --epochs 15
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/distributed_bench.py \
        --dataset fashion-mnist --epochs 6 --target 0.85

Every run starts from the same initial weights (seed 0) and reports the
wall time until the validation accuracy first reaches ``--target`` (checked
after every epoch; the evaluation is excluded from the time), the epochs that
took, the training examples per second and the final accuracy.  The
LocalCluster is started once, before the timed runs (its start-up time is
printed separately).  Prints a markdown table and, with ``--json``, writes
the rows.
"""

import argparse
import json
import os
import platform
import time

import cymlp
from cymlp.datasets import load_digits, load_fashion_mnist


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class _Clock:
    """A callback that records, after each epoch, the training seconds so far and the test accuracy."""

    def __init__(self, net, X_test, y_test):
        self.net, self.X_test, self.y_test = net, X_test, y_test
        self.start = time.perf_counter()
        self.excluded = 0.0
        self.rows = []

    def __call__(self, history):
        t0 = time.perf_counter()
        accuracy = self.net.score(self.X_test, self.y_test)
        self.rows.append((t0 - self.start - self.excluded, accuracy))
        self.excluded += time.perf_counter() - t0


def _summary(label, clock, history, n_rows, target, extra=""):
    reached = next(((i + 1, t) for i, (t, acc) in enumerate(clock.rows) if acc >= target), None)
    seconds = clock.rows[-1][0] if clock.rows else float("nan")
    return {
        "run": label, "epochs_to_target": reached[0] if reached else None,
        "seconds_to_target": round(reached[1], 2) if reached else None,
        "examples_per_second": round(n_rows * len(clock.rows) / seconds) if seconds > 0 else None,
        "final_accuracy": round(clock.rows[-1][1], 4) if clock.rows else None, "note": extra,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("digits", "fashion-mnist"), default="digits")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--target", type=float, default=None, help="default: 0.95 digits, 0.85 fashion-mnist")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--average-every", type=int, default=5, help="local steps between averagings")
    parser.add_argument("--sync-batch-size", type=int, default=256, help="the global batch of strategy=sync")
    parser.add_argument("--sync-lr", type=float, default=0.1)
    parser.add_argument("--skip-sync", action="store_true", help="sync takes one round trip per step")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from cymlp.distributed import fit_distributed

    if args.dataset == "digits":
        X_train, y_train, X_test, y_test = load_digits(return_split=True, dtype="float32")
        sizes, target = [64, 64, 10], args.target or 0.95
    else:
        X_train, y_train, X_test, y_test = load_fashion_mnist(dtype="float32")
        sizes, target = [784, 256, 128, 10], args.target or 0.85
    template = cymlp.Network(sizes, dtype="float32", seed=0)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=0.9)
    rows = []

    for threads in (1, None):
        net = template.copy()
        net.n_threads = threads
        clock = _Clock(net, X_test, y_test)
        history = net.fit(X_train, y_train, callbacks=[clock], **common)
        label = "1 thread" if threads == 1 else f"n_threads=None ({net.effective_n_threads} cores, adaptive)"
        rows.append(_summary(f"one process, {label}", clock, history, len(X_train), target))

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    client = Client(cluster)
    startup = time.perf_counter() - t0
    try:
        runs = [("average", dict(average_every=None), "average every epoch"),
                ("average", dict(average_every=args.average_every),
                 f"average every {args.average_every} local steps")]
        if not args.skip_sync:
            runs.append(("sync", dict(batch_size=args.sync_batch_size, lr=args.sync_lr),
                         f"sync, global batch {args.sync_batch_size}, lr {args.sync_lr}"))
        for strategy, options, label in runs:
            net = template.copy()
            clock = _Clock(net, X_test, y_test)
            settings = {**common, **options}
            history = fit_distributed(net, X_train, y_train, client=client, strategy=strategy,
                                      callbacks=[clock], **settings)
            rows.append(_summary(f"LocalCluster 2 workers x 1 thread: {label}", clock, history, len(X_train),
                                 target, f"{history.bytes_per_round / 1e6:.2f} MB of weights per round"))
    finally:
        client.close()
        cluster.close()

    from threadpoolctl import threadpool_info
    blas = [f"{i.get('internal_api')} {i.get('version')} {i.get('threading_layer', '')} "
            f"({i.get('architecture', '')}, {i.get('num_threads')} threads)"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"\n{args.dataset}: {'-'.join(map(str, sizes))} float32, target test accuracy {target}, "
          f"{args.epochs} epochs; CPU {_cpu_model()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; BLAS {'; '.join(blas)}; "
          f"LocalCluster start-up {startup:.1f} s (not in the times)\n")
    print("| run | epochs to target | seconds to target | examples/s | final accuracy | note |")
    print("|:---|---:|---:|---:|---:|:---|")
    for r in rows:
        print(f"| {r['run']} | {r['epochs_to_target'] or '-'} | {r['seconds_to_target'] or '-'} | "
              f"{r['examples_per_second']:,} | {r['final_accuracy']} | {r['note']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": args.dataset, "target": target, "rows": rows, "cpu": _cpu_model()}, f, indent=2)


if __name__ == "__main__":
    main()
