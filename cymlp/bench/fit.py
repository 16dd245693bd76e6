"""``cymlp bench --fit``: end-to-end ``fit`` epochs against the GEMM floor and the peers.

Users time ``fit`` on shuffled real data with Adam or momentum, not one
idealised step.  For each case (network, optimizer, batch size, data), dtype
and thread count this times, in one process, on the same rows and from the
same initial weights:

``floor``
    The GEMMs of one epoch alone: every training step's forward,
    weight-gradient and back-propagated-delta products (``numpy.matmul`` on
    operands of the step's shapes, at the row's BLAS threads), times the
    number of steps, the last smaller batch included.  No implementation
    that multiplies the same matrices can beat it by much.
``cython``, ``numpy``
    ``Network(backend=..., n_threads=t).fit(X, y, epochs=E, ...)``, timed
    from the call to its return (input checks and set-up included, as a
    user pays them), divided by ``E``.
``sklearn``
    ``MLPClassifier`` (``MLPRegressor`` on one-hot targets for the sigmoid +
    quadratic cases) with the same layers, solver, batch size, learning rate
    and momentum, no L2 penalty: ``E`` calls of ``partial_fit`` (each one
    shuffled epoch).
``torch``
    ``nn.Sequential`` with ``torch.optim.SGD``/``Adam``: an idiomatic loop,
    ``randperm`` each epoch, index-slice batches, ``zero_grad``, ``backward``,
    ``optimizer.step()``; ``torch.set_num_threads(t)``.

Every runner is warmed up once (one pass over a few batches, then its
weights are reset), then the runners take turns (interleaved repeats, the
worker threads let go idle between them); the table shows medians.
"""

import functools
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from . import peers
from .cases import gemm_shapes
from .machine import blas_line, default_n_threads, environment_line, load_line, machine_info
from .measure import blas_limits, gemm_step_runner, interleaved, load_average, summary
from .report import command_line, fmt_time, log, markdown_table, write_json

__all__ = ["FIT_CASES", "FIT_IMPLEMENTATIONS", "FitCase", "load_case_data", "run"]


@dataclass(frozen=True)
class FitCase:
    """A network, its optimizer settings and its training data (the same for every implementation)."""
    name: str
    sizes: tuple
    activation: str
    output: str
    loss: str
    optimizer: str            # "sgd" or "adam"
    batch_size: int
    lr: float
    momentum: float
    data: str                 # "fashion_mnist", "digits" or "random"
    n_train: int = 0          # 0: every training row
    target_ratio: float = 1.25    # the goal: epoch time within this factor of the GEMM floor
    target_step: float = None     # the goal as seconds per step (the tiny case)
    repeat_epochs: int = 1        # epochs per timed repeat, times --epochs (short epochs time poorly)
    sklearn_lr: float = None      # scikit-learn's rate where cymlp's diverges there (None: lr)
    description: str = ""

    def settings(self):
        opt = "Adam" if self.optimizer == "adam" else (
            f"SGD momentum {self.momentum:g}" if self.momentum else "SGD")
        return (f"{'-'.join(map(str, self.sizes))} {self.activation}/{self.output} {self.loss}, "
                f"{opt} lr {self.lr:g}, batch {self.batch_size}")


FIT_CASES = {
    "fmnist-100-adam": FitCase("fmnist-100-adam", (784, 100, 10), "relu", "softmax", "cross_entropy", "adam",
                               200, 0.001, 0.0, "fashion_mnist",
                               description="the Fashion-MNIST paper's best MLP"),
    "fmnist-256-sgd": FitCase("fmnist-256-sgd", (784, 256, 128, 10), "relu", "softmax", "cross_entropy", "sgd",
                              64, 0.05, 0.9, "fashion_mnist", description="a modern classifier, momentum"),
    "fmnist-256-adam": FitCase("fmnist-256-adam", (784, 256, 128, 10), "relu", "softmax", "cross_entropy",
                               "adam", 128, 0.001, 0.0, "fashion_mnist",
                               description="the same network with Adam (cymlp train's default)"),
    "nielsen": FitCase("nielsen", (784, 30, 10), "sigmoid", "sigmoid", "quadratic", "sgd", 10, 3.0, 0.0,
                       "fashion_mnist", sklearn_lr=0.5,
                       description="Nielsen's chapter 1 network (scikit-learn's MLPRegressor, identity "
                                   "output, diverges at lr 3: it runs at lr 0.5)"),
    "seed": FitCase("seed", (1000, 900, 900, 900, 10), "sigmoid", "sigmoid", "quadratic", "sgd", 100, 0.1, 0.0,
                    "random", 10000, target_ratio=1.15,
                    description="the learner's network from the original question, random data"),
    "digits": FitCase("digits", (64, 32, 10), "relu", "softmax", "cross_entropy", "sgd", 16, 0.05, 0.9,
                      "digits", target_step=6e-6, repeat_epochs=20, description="8x8 digits: overheads dominate"),
}

# name -> description; "floor" is measured whenever any other is
FIT_IMPLEMENTATIONS = {
    "cython": "Network(backend='cython', n_threads=t).fit",
    "numpy": "Network(backend='numpy').fit under threadpool_limits(t)",
    "sklearn": "scikit-learn MLPClassifier/MLPRegressor, one partial_fit per epoch",
    "torch": "PyTorch nn.Sequential + torch.optim, index-slice batches, optimizer.step()",
}
_UNAVAILABLE = {"cython": peers.cython_unavailable, "numpy": lambda: None,
                "sklearn": peers.sklearn_unavailable, "torch": peers.torch_unavailable}


# --------------------------------------------------------------------------
# Data: the same rows for every implementation
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _fashion_mnist(dtype):
    from .. import datasets
    return datasets.load_fashion_mnist(dtype=dtype)


def load_case_data(case, dtype, rows=None):
    """(X, y, X_test, y_test, description) for ``case``; raises FileNotFoundError when data is absent.

    ``rows`` caps the training rows (for smoke tests); X_test is None for random data.
    """
    from .. import datasets
    dtype = np.dtype(dtype)
    if case.data == "fashion_mnist":
        X, y, Xt, yt = _fashion_mnist(dtype.name)
        what = "Fashion-MNIST, pixels / 255"
    elif case.data == "digits":
        X, y = datasets.load_digits(dtype=dtype.name)
        Xt, yt, what = X, y, "UCI digits (bundled), every row; accuracy on the training rows"
    else:
        n = case.n_train or 10000
        X, y = datasets.make_random_classification(n, case.sizes[0], case.sizes[-1], seed=0, dtype=dtype.name)
        Xt = yt = None
        what = "random uniform inputs, random labels"
    n = min(x for x in (X.shape[0], case.n_train or X.shape[0], rows or X.shape[0]))
    X, y = np.ascontiguousarray(X[:n]), np.ascontiguousarray(y[:n], dtype=np.int64)
    return X, y, Xt, yt, f"{what}; {n:,} training rows"


def _one_hot(y, k, dtype):
    Y = np.zeros((y.shape[0], k), dtype=dtype)
    Y[np.arange(y.shape[0]), y] = 1
    return Y


# --------------------------------------------------------------------------
# Runners: run() trains `epochs` epochs and returns None (timed by the harness);
# warm() trains a few batches and puts the initial weights back.
# --------------------------------------------------------------------------

def _warm_rows(case, n):
    return min(n, 20 * case.batch_size)


def _cymlp_runner(backend, case, data, theta, threads, epochs, record):
    X, y = data["X"], data["y"]
    net = peers.cymlp_network(case.sizes, case.activation, case.output, case.loss, X.dtype, backend,
                              threads, theta)
    settings = {"batch_size": case.batch_size, "lr": case.lr, "momentum": case.momentum, "optimizer": case.optimizer,
                    "shuffle": True, "on_divergence": "warn"}

    def fit(rows, n_epochs):
        with blas_limits(threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return net.fit(X[:rows], y[:rows], epochs=n_epochs, **settings)

    def warm():
        fit(_warm_rows(case, X.shape[0]), 1)
        peers.set_flat_params(net, theta)

    def run():
        t0 = time.perf_counter()
        history = fit(X.shape[0], epochs)
        seconds = time.perf_counter() - t0
        if history.diverged:
            raise RuntimeError(f"{backend} diverged on {case.name}")
        record.setdefault("epoch_loop_seconds", []).extend(history.seconds)
        return seconds

    def predict(Xt):
        with blas_limits(threads):
            return net.predict(Xt)
    return run, warm, predict


def _sklearn_runner(case, data, weights, biases, threads, epochs, record):
    X, y, Y = data["X"], data["y"], data["Y"]
    est, classifier = peers.sklearn_estimator(case.sizes, case.activation, case.output, case.loss,
                                              case.batch_size, case.sklearn_lr or case.lr,
                                              solver=case.optimizer,
                                              momentum=case.momentum)
    target = y if classifier else Y
    first = {"classes": np.arange(case.sizes[-1])} if classifier else {}

    def partial_fit(rows, **kwargs):
        with blas_limits(threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.partial_fit(X[:rows], target[:rows], **kwargs)

    def warm():
        partial_fit(_warm_rows(case, X.shape[0]), **first)      # allocates coefs_ and intercepts_
        peers.sklearn_set_weights(est, weights, biases)

    def run():
        t0 = time.perf_counter()
        for _ in range(epochs):
            partial_fit(X.shape[0])                              # one shuffled epoch
        return time.perf_counter() - t0

    def predict(Xt):
        with blas_limits(threads):
            out = est.predict(Xt)
        return out if classifier else np.argmax(out, axis=1)
    return run, warm, predict


def _torch_runner(case, data, weights, biases, threads, epochs, record):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = peers.torch_model(weights, biases, case.activation, case.output, case.loss, data["X"].dtype)
    loss_fn = peers.torch_loss(case.output, case.loss)
    X, labels, Y = (torch.from_numpy(data[k]) for k in ("X", "y", "Y"))
    B = case.batch_size
    state = {}

    def make_optimizer():
        if case.optimizer == "adam":
            return torch.optim.Adam(model.parameters(), lr=case.lr)
        return torch.optim.SGD(model.parameters(), lr=case.lr, momentum=case.momentum)

    def train(n, n_epochs):
        torch.set_num_threads(threads)
        opt = state["opt"]
        for _ in range(n_epochs):
            order = torch.randperm(n)
            for start in range(0, n, B):
                rows = order[start:start + B]
                opt.zero_grad()
                loss = loss_fn(model(X[rows]), labels[rows], Y[rows])
                loss.backward()
                opt.step()

    def warm():
        state["opt"] = make_optimizer()
        train(_warm_rows(case, X.shape[0]), 1)
        with torch.no_grad():
            linear = [m for m in model if isinstance(m, torch.nn.Linear)]
            for lin, W, b in zip(linear, weights, biases):
                lin.weight.copy_(torch.from_numpy(W))
                lin.bias.copy_(torch.from_numpy(b))
        state["opt"] = make_optimizer()

    def run():
        if "opt" not in state:
            state["opt"] = make_optimizer()
        t0 = time.perf_counter()
        train(X.shape[0], epochs)
        return time.perf_counter() - t0

    def predict(Xt):
        with torch.no_grad():
            return model(torch.from_numpy(Xt)).argmax(dim=1).numpy()
    return run, warm, predict


def _floor_runner(case, dtype, threads, n, epochs):
    full, rest = divmod(n, case.batch_size)
    plan = [(gemm_shapes(case.sizes, case.batch_size), full * epochs)]
    if rest:
        plan.append((gemm_shapes(case.sizes, rest), epochs))
    warm = gemm_step_runner(gemm_shapes(case.sizes, case.batch_size), dtype, threads, min(full or 1, 20))
    return gemm_step_runner(plan, dtype, threads, None), warm, None


# --------------------------------------------------------------------------
# One (case, dtype, threads) group
# --------------------------------------------------------------------------

def _measure_group(case, data, impls, threads, epochs, repeats, settle_seconds, failures):
    X = data["X"]
    dtype = X.dtype
    theta_net = peers.cymlp_network(case.sizes, case.activation, case.output, case.loss, dtype, "numpy", 1)
    theta = peers.flat_params(theta_net)
    weights = [W.copy() for W in theta_net.weights]
    biases = [b.copy() for b in theta_net.biases]
    records = {name: {} for name in ["floor"] + impls}
    runners, predictors = {}, {}
    for name in ["floor"] + impls:
        try:
            if name == "floor":
                run, warm, predict = _floor_runner(case, dtype, threads, X.shape[0], epochs)
            elif name in ("cython", "numpy"):
                run, warm, predict = _cymlp_runner(name, case, data, theta, threads, epochs, records[name])
            elif name == "sklearn":
                run, warm, predict = _sklearn_runner(case, data, weights, biases, threads, epochs, records[name])
            else:
                run, warm, predict = _torch_runner(case, data, weights, biases, threads, epochs, records[name])
        except Exception as exc:
            failures.append({"case": case.name, "dtype": dtype.name, "threads": threads, "impl": name,
                                 "error": f"{type(exc).__name__}: {exc}"})
            continue
        runners[name] = (run, warm)
        predictors[name] = predict

    def failed(name, exc):
        failures.append({"case": case.name, "dtype": dtype.name, "threads": threads, "impl": name,
                             "error": f"{type(exc).__name__}: {exc}"})
        log(f"bench:   {name} failed: {type(exc).__name__}: {exc}")

    load = load_average()
    times = interleaved(runners, repeats, settle_seconds=settle_seconds, on_error=failed)
    steps = -(-X.shape[0] // case.batch_size)
    rows = []
    floor = summary([t / epochs for t in times["floor"]])[0] if "floor" in times else float("nan")
    for name, samples in times.items():
        per_epoch = [t / epochs for t in samples]
        epoch, spread = summary(per_epoch)
        row = {"case": case.name, "dtype": dtype.name, "threads": threads, "impl": name, "epoch_seconds": epoch,
                   "spread": spread, "step_seconds": epoch / steps, "steps_per_epoch": steps,
                   "epochs_per_repeat": epochs,
                   "repeats": len(samples), "samples_epoch_seconds": per_epoch, "floor_ratio": epoch / floor,
                   "load_average": load}
        loop = records.get(name, {}).get("epoch_loop_seconds")
        if loop:
            row["epoch_loop_seconds"] = summary(loop)[0]
        if data["X_test"] is not None and predictors.get(name) is not None:
            try:
                row["test_accuracy"] = float(np.mean(predictors[name](data["X_test"]) == data["y_test"]))
            except Exception as exc:
                log(f"bench:   {name} predict failed: {exc}")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------

PEERS = ("numpy", "sklearn", "torch")


def _goal(case, cells):
    """"met" or how it is missed: within target_ratio of the floor (or target_step) and faster than every peer."""
    c = cells.get("cython")
    if c is None:
        return "–"
    misses = []
    if case.target_step is not None:
        if c["step_seconds"] > case.target_step:
            misses.append(f"{c['step_seconds'] * 1e6:.3g} µs/step > {case.target_step * 1e6:g}")
    elif "floor" in cells and c["floor_ratio"] > case.target_ratio:
        misses.append(f"> {case.target_ratio:g}× floor")
    slower = [p for p in PEERS if p in cells and cells[p]["epoch_seconds"] <= c["epoch_seconds"]]
    if slower:
        misses.append("not faster than " + ", ".join(slower))
    return "met" if not misses else "; ".join(misses)


def fit_markdown(rows, cases):
    """One table per case: epoch times of every implementation, cymlp against the floor, the goal."""
    parts = []
    def cell(name):
        return lambda r: (f"{fmt_time(r[name]['epoch_seconds'])} ±{100 * r[name]['spread'] / 2:.0f}%"
                          if name in r else "–")
    columns = [("dtype", "dtype", "l"), ("threads", "threads", "r"), ("GEMM floor", cell("floor"), "r"),
               ("cymlp", cell("cython"), "r"),
               ("cymlp / floor", lambda r: f"{r['cython']['floor_ratio']:.2f}×"
                if "cython" in r and "floor" in r else "–", "r"),
               ("cymlp / step", lambda r: fmt_time(r["cython"]["step_seconds"]) if "cython" in r else "–", "r"),
               ("NumPy path", cell("numpy"), "r"), ("scikit-learn", cell("sklearn"), "r"),
               ("PyTorch", cell("torch"), "r"), ("goal", "goal", "l"),
               ("load", lambda r: f"{r['load']:.1f}", "r")]
    for case, what in cases:
        groups = {}
        for r in rows:
            if r["case"] == case.name:
                groups.setdefault((r["dtype"], r["threads"]), {})[r["impl"]] = r
        if not groups:
            continue
        steps = next(iter(next(iter(groups.values())).values()))["steps_per_epoch"]
        parts.append(f"### {case.name}: {case.settings()}\n\n{case.description}; {what}; {steps:,} steps "
                     f"per epoch. Goal: cymlp within {case.target_ratio:g}× of the GEMM floor"
                     + (f" (here: ≤ {case.target_step * 1e6:g} µs/step)" if case.target_step else "")
                     + " and faster than every peer.\n")
        table = []
        for (dtype, threads), cells in groups.items():
            row = {"dtype": dtype, "threads": threads, "goal": _goal(case, cells),
                       "load": max(c["load_average"] for c in cells.values())}
            for name, c in cells.items():
                row[name] = c
            table.append(row)

        parts.append(markdown_table(table, columns) + "\n")
        accs = {}
        for cells in groups.values():
            for name, c in cells.items():
                if "test_accuracy" in c:
                    accs.setdefault(name, []).append(c["test_accuracy"])
        if accs:
            parts.append("Accuracy after the timed epochs (min–max over the rows): " + ", ".join(
                f"{name} {min(a):.3f}–{max(a):.3f}" for name, a in accs.items()) + ".\n")
    return "\n".join(parts)


def plot_fit(rows, cases, path):
    """One panel per case: epoch time / GEMM floor of every implementation, per dtype and thread count."""
    from matplotlib.figure import Figure  # the object API: pyplot's state and backend untouched

    from .._files import save_figure
    from .report import IMPL_COLORS
    cases = [c for c, _ in cases if any(r["case"] == c.name for r in rows)]
    ncols = 2 if len(cases) > 1 else 1
    nrows = -(-len(cases) // ncols)
    fig = Figure(figsize=(6.5 * ncols, 0.5 + 3.0 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(cases):]:
        ax.set_visible(False)
    impls = [i for i in ("cython", "numpy", "sklearn", "torch") if any(r["impl"] == i for r in rows)]
    for ax, case in zip(axes.flat, cases):
        sel = [r for r in rows if r["case"] == case.name]
        configs = sorted({(r["dtype"], r["threads"]) for r in sel})
        width = 0.8 / max(1, len(impls))
        for j, impl in enumerate(impls):
            vals = [next((r["floor_ratio"] for r in sel if r["impl"] == impl and (r["dtype"], r["threads"]) == c),
                         np.nan) for c in configs]
            ax.bar(np.arange(len(configs)) + j * width, vals, width, label=impl, color=IMPL_COLORS.get(impl))
        ax.axhline(1.0, color="black", lw=0.8)
        ax.axhline(case.target_ratio, color="black", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(configs)) + 0.4 - width / 2, [f"{d} {t} thr" for d, t in configs], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("epoch time / GEMM floor", fontsize=8)
        ax.set_title(f"{case.name}: {case.settings()}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("cymlp bench --fit: end-to-end fit epoch time against the GEMM floor (lower is better; "
                 "dashed = goal)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------

def run(args):
    """Run ``cymlp bench --fit`` for parsed arguments; returns the JSON payload."""
    t_start = time.perf_counter()
    names = args.cases or list(FIT_CASES)
    dtypes = args.dtype or (["float32"] if args.quick else ["float32", "float64"])
    threads = sorted(set(args.threads or [1, default_n_threads()]))
    epochs = args.epochs or 1
    repeats = args.repeats or (2 if args.quick else 3)
    rows_cap = args.rows or (5000 if args.quick else None)
    wanted = [i for i in (args.impl or list(FIT_IMPLEMENTATIONS)) if i != "loop"]
    impls, skipped = [], {}
    for name in wanted:
        why = _UNAVAILABLE[name]() if name in _UNAVAILABLE else "not a fit implementation"
        if why is None:
            impls.append(name)
        else:
            skipped[name] = why
            log(f"bench: skipping {name}: {why}")
    info = machine_info()
    print("# cymlp bench --fit\n")
    print(f"CPU: {info['cpu']} ({info['cpu_vendor']}, {' '.join(info['cpu_flags'])}; "
          f"{info['usable_cores']} usable cores); BLAS: {blas_line(info)}")
    print(f"Environment: {environment_line(info)}; backends: {', '.join(info['backends'])}")
    load0 = load_average()
    print(load_line(load0))
    print(f"Per epoch: median of {repeats} interleaved repeat(s) of {epochs} epoch(s) after a warm-up, "
          "± half the interquartile range (the full range below 4 repeats); fit called end to end"
          + (f"; at most {rows_cap:,} training rows per case" if rows_cap else "") + ".\n")
    results, failures, measured = [], [], []
    for name in names:
        case = FIT_CASES[name]
        for dtype in dtypes:
            try:
                X, y, Xt, yt, what = load_case_data(case, dtype, rows_cap)
            except FileNotFoundError as exc:
                skipped[name] = f"data not installed ({exc})"
                log(f"bench: skipping {name}: {skipped[name]}")
                break
            data = {"X": X, "y": y, "Y": _one_hot(y, case.sizes[-1], X.dtype), "X_test": Xt, "y_test": yt}
            if not measured or measured[-1][0] is not case:
                measured.append((case, what))
            for t in threads:
                case_impls = [i for i in impls if i != "sklearn" or peers.sklearn_supports(case.activation)]
                log(f"bench: {name} {dtype} {t} thread(s): floor, {', '.join(case_impls)} ...")
                results.extend(_measure_group(case, data, case_impls, t, epochs * case.repeat_epochs, repeats,
                                              args.settle if args.settle is not None else 0.12, failures))
    elapsed = time.perf_counter() - t_start
    print(fit_markdown(results, measured))
    load1 = load_average()
    if skipped:
        print("Not measured: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    if failures:
        print("Failed: " + "; ".join(f"{f['impl']} on {f['case']} {f['dtype']} {f['threads']}t: {f['error']}"
                                      for f in failures))
    print(f"\nLoad average at the end: {load1:.2f}. Total time {elapsed:.0f} s.")
    payload = {"command": command_line(args), "mode": "fit", "threads": threads, "dtypes": dtypes, "epochs": epochs,
                   "repeats": repeats, "rows": rows_cap, "elapsed_seconds": elapsed, "machine": info,
                   "load_average_start": load0, "load_average_end": load1,
                   "cases": {c.name: dict(asdict(c), data_description=w) for c, w in measured},
                   "implementations": dict(FIT_IMPLEMENTATIONS, floor="the step's GEMMs alone (numpy.matmul), "
                                        "times the number of steps"),
                   "skipped": skipped, "failures": failures, "results": results}
    if args.json:
        write_json(args.json, payload)
        log(f"bench: wrote {args.json}")
    if args.plot and results:
        try:
            plot_fit(results, measured, args.plot)
            log(f"bench: wrote {args.plot}")
        except ImportError:
            log("bench: --plot needs matplotlib: pip install matplotlib")
    return payload
