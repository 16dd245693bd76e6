"""``cymlp bench --strategies``: time to accuracy of the parallel SGD strategies.

The learner asked "how can I parallelize the loop over the batches?".  This
benchmark answers with measurements: for a few networks it trains with each
strategy of ``Network.fit(parallel=...)`` on one thread and on all usable
cores, from the same initial weights, and records

- examples/s: training examples per second of training time (the sum of the
  history's per-epoch ``seconds``: the epoch loop only, evaluation excluded);
- test accuracy after every epoch (``validation_data`` = the test set,
  evaluated outside the timed loop);
- time to target: training seconds until the first epoch whose test
  accuracy reaches the case's target (``–`` when it never does).

With one thread every strategy runs the same arithmetic as ``sync`` (tested
bit for bit in tests/test_parallel.py), so the one-thread row is measured
once, as ``sync``.  Hogwild is not repeatable, so every row is run
``repeats`` times (interleaved) and the medians are shown, with the range of
the final accuracy.

    cymlp bench --strategies                     # a few minutes
    cymlp bench --strategies --quick             # digits only, seconds
    cymlp bench --strategies --strategy-case fmnist-small --json out.json
"""

import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .machine import blas_line, default_n_threads, environment_line, load_line, machine_info
from .measure import interleaved, load_average
from .peers import cymlp_network, flat_params
from .report import command_line, fmt_time, log, markdown_table, write_json

__all__ = ["CASES", "STRATEGIES", "StrategyCase", "add_arguments", "run"]


@dataclass(frozen=True)
class StrategyCase:
    """A network, its data and its SGD settings (the same for every strategy)."""
    name: str
    sizes: tuple
    data: str                 # "digits" or "fashion_mnist"
    batch_size: int
    lr: float
    momentum: float
    epochs: int
    target: float             # test accuracy whose time to reach is reported
    repeats: int
    n_train: int = 0          # 0: every training row
    description: str = ""


CASES = {
    "digits": StrategyCase("digits", (64, 64, 10), "digits", 16, 0.05, 0.9, 12, 0.95, 5, 0,
                           "8x8 digits, 1437 training rows: tiny GEMMs, an epoch is a few ms"),
    "fmnist-small": StrategyCase("fmnist-small", (784, 32, 10), "fashion_mnist", 32, 0.02, 0.9, 6,
                                 0.84, 3, 0, "A small network: GEMMs too small for threaded BLAS"),
    "fmnist-large": StrategyCase("fmnist-large", (784, 256, 128, 10), "fashion_mnist", 64, 0.02, 0.9,
                                 4, 0.85, 2, 0, "The `cymlp bench` fmnist network: sync runs "
                                 "whole-batch GEMMs on threaded BLAS"),
}

# (label, parallel, average_every): the rows measured on every thread count > 1
STRATEGIES = [
    ("sync", "sync", None),
    ("hogwild", "hogwild", None),
    ("local SGD, average every 8 steps", "average", 8),
    ("average every epoch", "average", None),
    ("one-shot average (end)", "average", "end"),
]


def add_arguments(parser):
    """The ``--strategies`` options, added to ``cymlp bench``'s parser."""
    parser.add_argument("--strategies", action="store_true",
                        help="time to accuracy of parallel='sync'/'hogwild'/'average' "
                             "(docs/parallel-sgd.md) instead of the per-step benchmark")
    parser.add_argument("--strategy-case", default=None,
                        help=f"with --strategies: comma-separated cases, {', '.join(CASES)} "
                             "(default: all; digits only with --quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="with --strategies: runs per row (default: per case, 1 to 5); with --fit: "
                             "timed repeats per row (default 3, 2 with --quick)")


def _load(case, dtype="float32"):
    """(X_train, y_train, X_test, y_test, description) or None when the data is absent."""
    from .. import datasets
    if case.data == "digits":
        X, y, Xt, yt = datasets.load_digits(return_split=True, dtype=dtype)
        return X, y, Xt, yt, "UCI digits (bundled), stratified 80/20 split"
    try:
        X, y, Xt, yt = datasets.load_fashion_mnist(dtype=dtype)
    except FileNotFoundError:
        return None
    if case.n_train:
        X, y = X[:case.n_train], y[:case.n_train]
    return X, y, Xt, yt, f"Fashion-MNIST, {X.shape[0]} training and {Xt.shape[0]} test rows, pixels / 255"


def _train(case, data, theta, parallel, average_every, threads, epochs):
    X, y, Xt, yt = data[:4]
    net = cymlp_network(case.sizes, "relu", "softmax", "cross_entropy", "float32", "cython", threads, theta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = net.fit(X, y, epochs=epochs, batch_size=case.batch_size, lr=case.lr,
                          momentum=case.momentum, validation_data=(Xt, yt), parallel=parallel,
                          average_every=average_every, on_divergence="warn")
    seconds = list(history["seconds"])
    acc = list(history["val_accuracy"])
    elapsed = np.cumsum(seconds)
    reached = next((i for i, a in enumerate(acc) if a >= case.target), None)
    return {"seconds": seconds, "accuracy": acc, "diverged": bool(history.diverged),
                "examples_per_second": X.shape[0] * len(seconds) / sum(seconds),
                "time_to_target": float(elapsed[reached]) if reached is not None else None,
                "epochs_to_target": reached + 1 if reached is not None else None}


def _summarise(runs):
    """Medians over repeated runs (time to target: median of the runs that got there)."""
    reached = [r["time_to_target"] for r in runs if r["time_to_target"] is not None]
    finals = [r["accuracy"][-1] for r in runs]
    per_epoch = [statistics.median(a) for a in zip(*[r["accuracy"] for r in runs])]
    return {"examples_per_second": statistics.median(r["examples_per_second"] for r in runs),
                "time_to_target": statistics.median(reached) if reached else None,
                "reached": f"{len(reached)}/{len(runs)}",
                "epochs_to_target": statistics.median([r["epochs_to_target"] for r in runs
                                                    if r["epochs_to_target"] is not None])
                if reached else None,
                "final_accuracy": statistics.median(finals), "final_min": min(finals), "final_max": max(finals),
                "accuracy_by_epoch": per_epoch, "diverged": any(r["diverged"] for r in runs)}


def _table(rows, case):
    columns = [
        ("strategy", "label", "l"),
        ("threads", "threads", "r"),
        ("examples/s", lambda r: f"{r['examples_per_second']:,.0f}", "r"),
        ("× sync 1 thr", lambda r: f"{r['speedup']:.2f}×", "r"),
        (f"time to {case.target:.2f}",
         lambda r: "–" if r["time_to_target"] is None else fmt_time(r["time_to_target"]), "r"),
        ("epochs to it", lambda r: "–" if r["epochs_to_target"] is None else f"{r['epochs_to_target']:g}", "r"),
        ("reached", "reached", "r"),
        ("final test acc (range)", lambda r: f"{r['final_accuracy']:.4f}" + (
            f" ({r['final_min']:.4f}–{r['final_max']:.4f})" if r["final_max"] > r["final_min"] else ""),
         "r"),
        ("test acc by epoch (median)", lambda r: " ".join(f"{a:.3f}" for a in r["accuracy_by_epoch"]), "l"),
    ]
    return markdown_table(rows, columns)


def _select(args):
    names = args.strategy_case.split(",") if args.strategy_case else (
        ["digits"] if args.quick else list(CASES))
    bad = [n for n in names if n not in CASES]
    if bad:
        raise SystemExit(f"cymlp bench: unknown --strategy-case {', '.join(bad)}; "
                         f"choose from {', '.join(CASES)}")
    return [CASES[n] for n in names]


def run(args):
    """Run the strategies benchmark for parsed ``cymlp bench`` arguments; returns the payload."""
    from ..network import Network, available_backends
    if "cython" not in available_backends():
        raise SystemExit("cymlp bench --strategies needs the compiled extension (backend='cython')")
    t_start = time.perf_counter()
    usable = default_n_threads()
    threads = sorted(set(args.threads or [1, usable]))
    info = machine_info()
    results, skipped = [], {}
    print("# cymlp bench --strategies\n")
    print(f"CPU: {info['cpu']} ({info['usable_cores']} usable cores); BLAS: {blas_line(info)}")
    print(f"Environment: {environment_line(info)}; "
          f"OMP_NUM_THREADS={info['environment'].get('OMP_NUM_THREADS')}")
    load0 = load_average()
    print(load_line(load0) + "\n")
    for case in _select(args):
        data = _load(case)
        if data is None:
            skipped[case.name] = "Fashion-MNIST not installed (see cymlp.datasets.load_fashion_mnist)"
            log(f"bench: skipping {case.name}: {skipped[case.name]}")
            continue
        epochs = max(2, case.epochs // 2) if args.quick else case.epochs
        repeats = args.repeats or (1 if args.quick else case.repeats)
        theta = flat_params(Network(list(case.sizes), dtype="float32", seed=0))
        plan = [(label, parallel, every, t) for t in threads for label, parallel, every in STRATEGIES
                if t > 1 or parallel == "sync"]
        runs: dict[Any, list[Any]] = {key: [] for key in plan}
        loads: dict[Any, list[float]] = {key: [] for key in plan}

        def runner(key, case=case, data=data, theta=theta, epochs=epochs, repeats=repeats, runs=runs,
                   loads=loads):
            label, parallel, every, t = key

            def run():
                log(f"bench: {case.name} {label} {t} thread(s), run {len(runs[key]) + 1}/{repeats} ...")
                loads[key].append(load_average())
                result = _train(case, data, theta, parallel, every, t, epochs)
                runs[key].append(result)
                return sum(result["seconds"])
            return run, None

        def failed(key, exc):
            raise exc
        # interleaved repeats: drifts in the machine's load hit every row alike
        interleaved({key: runner(key) for key in plan}, repeats, warmup=False, on_error=failed)
        rows = []
        for key in plan:
            label, parallel, every, t = key
            row = dict(case=case.name, label=label, parallel=parallel, average_every=every, threads=t,
                       runs=runs[key], load_average=max(loads[key]), **_summarise(runs[key]))
            rows.append(row)
        base = rows[0]["examples_per_second"]
        for row in rows:
            row["speedup"] = row["examples_per_second"] / base
        results.extend(rows)
        shape = "-".join(map(str, case.sizes))
        print(f"### {case.name}: {shape}, batch {case.batch_size}, SGD lr {case.lr} momentum "
              f"{case.momentum}, {epochs} epochs, float32\n")
        print(f"{data[4]}. {case.description}. Median of {repeats} run(s) per row; load average "
              f"{min(r['load_average'] for r in rows):.2f} to {max(r['load_average'] for r in rows):.2f}.\n")
        print(_table(rows, case) + "\n")
    elapsed = time.perf_counter() - t_start
    load1 = load_average()
    if skipped:
        print("Not measured: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    print(f"With 1 thread every strategy is the same arithmetic as sync (bitwise; "
          f"tests/test_parallel.py), so it is measured once.  Load average at the end: {load1:.2f}. "
          f"Total time {elapsed:.0f} s.")
    payload = {"command": command_line(args), "threads": threads, "machine": info,
                   "cases": {c.name: asdict(c) for c in _select(args)}, "skipped": skipped,
                   "load_average_start": load0, "load_average_end": load1, "elapsed_seconds": elapsed,
                   "results": results}
    if args.json:
        write_json(args.json, payload)
        log(f"bench: wrote {args.json}")
    return payload
