"""``cymlp bench``: how fast does one SGD step run, and why?

The learner who started cymlp asked "how can I increase the performance?".
This module answers with numbers anyone can reproduce with one command::

    cymlp bench --quick                       # under a minute
    cymlp bench --json out.json --plot out.png
    python -m cymlp.bench --sizes 784,100,10 --batch-size 32 --threads 1,2

Every *implementation* trains the same *case* (layer sizes, activation, loss,
batch size) on the same data, from the same initial weights, in the same dtype
and with the same thread count, with plain SGD (no momentum):

``loop``
    The learner's formulation written afresh: one example at a time as a
    column vector, matrix-vector products, gradients accumulated over the
    batch, then one update.  (Unlike the original, the last layer's weight
    gradient is added once.)
``numpy``
    ``Network(backend="numpy").fit``: the whole batch as one matrix, so the
    products become matrix-matrix products (GEMM).
``cython``
    ``Network(backend="cython", n_threads=t).fit``: the compiled path.
``torch``, ``sklearn``
    Peers, measured only when importable (cymlp never installs them).
    ``torch``: ``nn.Sequential`` + ``optim.SGD``, the usual
    zero_grad/forward/loss/backward/step loop over shuffled index batches,
    ``torch.set_num_threads(t)``.  ``sklearn``: ``MLPClassifier`` (softmax +
    cross-entropy cases) or ``MLPRegressor`` (identity output + squared error,
    the nearest it has to sigmoid + quadratic) with ``solver="sgd"``,
    ``alpha=0``, ``momentum=0``; one timed block is one ``partial_fit`` call,
    which is one shuffled epoch over the block's rows in mini-batches
    (input validation included, as a user would pay it).

What is timed
-------------
A *block* is ``n_steps`` SGD steps over the first ``n_steps * batch_size``
rows (shuffled each block, as in an epoch); at most one epoch of the case's
training set.  Each row is warmed up and calibrated first, then timed over
several blocks; the table shows the median time per step and the spread
(interquartile range over the median).  For cymlp the block time is the
``seconds`` of one epoch in ``fit``'s history (validation and set-up excluded).

GFLOP/s counts only the matrix products, 2 FLOPs per multiply-add, per example::

    FLOPs/example = 2 * (  sum_l n_{l-1} n_l        forward   z = a W^T
                         + sum_l n_{l-1} n_l        weight gradient  dW = delta^T a
                         + sum_{l>=2} n_{l-1} n_l ) back-propagated delta = delta W
                                                    (not needed for the first layer)

The *roofline* is the time this machine's BLAS takes for exactly those GEMM
shapes (``numpy.matmul`` at the row's thread count, best of several runs,
measured in the same run); ``% roof`` = roofline time / measured step time.
For small layers the "roofline" is dominated by call overhead, so read it as
"how close to doing nothing but the GEMMs".

The timing harness is :mod:`cymlp.bench.measure`, the peers are built in
:mod:`cymlp.bench.peers`, the tables and chart are written by
:mod:`cymlp.bench.report`.
"""

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import peers
from .cases import CASES, Case, make_problem
from .machine import blas_line, default_n_threads, environment_line, load_line, machine_info
from .measure import (
    FULL,
    QUICK,
    Budget,
    blas_limits,
    gemm_roofline,
    load_average,
    measure,
    peak_gemm,
    summary,
)
from .report import (
    command_line,
    log,
    plot,
    results_markdown,
    scaling_markdown,
    scaling_rows,
    write_json,
)

__all__ = ["IMPLEMENTATIONS", "Implementation", "run", "select_cases"]


@dataclass(frozen=True)
class Implementation:
    """A way of training a case.  ``unavailable()`` returns None or why it cannot run here."""
    name: str
    description: str
    prepare: Callable[..., Any]
    unavailable: Callable[[], str | None] = staticmethod(lambda: None)
    supports: Callable[[Any], bool] = staticmethod(lambda case: True)


def _prepare_loop(problem, threads):
    loop = peers.PerExampleLoop(problem)
    rng = np.random.default_rng(1)
    B = problem.case.batch_size

    def run_blocks(n_steps, n_blocks):
        times = []
        with blas_limits(threads):
            for _ in range(n_blocks):
                t0 = time.perf_counter()
                order = rng.permutation(n_steps * B)
                for s in range(n_steps):
                    loop.step(order[s * B:(s + 1) * B])
                times.append(time.perf_counter() - t0)
        return times
    return run_blocks


# ---- cymlp: Network.fit, per-epoch seconds from the history

def _prepare_cymlp(backend):
    def prepare(problem, threads):
        case = problem.case
        net = peers.cymlp_network(case.sizes, case.activation, case.output, case.loss, problem.dtype,
                                  backend, threads, problem.theta)

        def run_blocks(n_steps, n_blocks):
            rows = n_steps * case.batch_size
            with blas_limits(threads), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                history = net.fit(problem.X[:rows], problem.labels[:rows], epochs=n_blocks,
                                  batch_size=case.batch_size, lr=case.lr, momentum=0.0,
                                  on_divergence="warn")
            if history.diverged or len(history.seconds) != n_blocks:
                raise RuntimeError(f"{backend} diverged on case {case.name}; lower its lr")
            return list(history.seconds)
        return run_blocks
    return prepare


def _prepare_torch(problem, threads):
    import torch
    case = problem.case
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = peers.torch_model(problem.weights, problem.biases, case.activation, case.output, case.loss,
                              problem.dtype)
    loss_fn = peers.torch_loss(case.output, case.loss)
    opt = torch.optim.SGD(model.parameters(), lr=case.lr)
    X = torch.from_numpy(problem.X)
    Y = torch.from_numpy(problem.Y)
    labels = torch.from_numpy(problem.labels)

    def run_blocks(n_steps, n_blocks):
        B = case.batch_size
        times = []
        torch.set_num_threads(threads)
        for _ in range(n_blocks):
            t0 = time.perf_counter()
            order = torch.randperm(n_steps * B)
            for s in range(n_steps):
                rows = order[s * B:(s + 1) * B]
                opt.zero_grad()
                loss = loss_fn(model(X[rows]), labels[rows], Y[rows])
                loss.backward()
                opt.step()
            times.append(time.perf_counter() - t0)
        return times
    return run_blocks


# ---- scikit-learn

def _prepare_sklearn(problem, threads):
    case = problem.case
    est, classifier = peers.sklearn_estimator(case.sizes, case.activation, case.output, case.loss,
                                              case.batch_size, case.lr)
    target = problem.labels if classifier else problem.Y
    first = {"classes": np.arange(case.sizes[-1])} if classifier else {}
    B = case.batch_size
    with blas_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(problem.X[:B], target[:B], **first)      # allocates coefs_ and intercepts_
    peers.sklearn_set_weights(est, problem.weights, problem.biases)

    def run_blocks(n_steps, n_blocks):
        rows = n_steps * B
        times = []
        with blas_limits(threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(n_blocks):
                t0 = time.perf_counter()
                est.partial_fit(problem.X[:rows], target[:rows])  # one shuffled epoch over the rows
                times.append(time.perf_counter() - t0)
        return times
    return run_blocks


IMPLEMENTATIONS = {
    "loop": Implementation("loop", "the learner's per-example loop (column vectors, matrix-vector "
                           "products), written fresh", _prepare_loop),
    "numpy": Implementation("numpy", "Network(backend='numpy').fit: batched GEMMs in NumPy",
                            _prepare_cymlp("numpy")),
    "cython": Implementation("cython", "Network(backend='cython', n_threads=t).fit: the compiled path",
                             _prepare_cymlp("cython"), peers.cython_unavailable),
    "torch": Implementation("torch", "PyTorch CPU: nn.Sequential + optim.SGD, set_num_threads(t)",
                            _prepare_torch, peers.torch_unavailable),
    "sklearn": Implementation("sklearn", "scikit-learn MLPClassifier/MLPRegressor(solver='sgd'), "
                              "one partial_fit per block", _prepare_sklearn, peers.sklearn_unavailable,
                              lambda case: peers.sklearn_supports(case.activation, case.sizes[-1], case.output,
                                                                  case.loss)),
}


def select_cases(args):
    if args.sizes is not None:
        if len(args.sizes) < 2:
            raise SystemExit("cymlp bench: --sizes needs at least an input and an output size")
        batch = 32 if args.batch_size is None else args.batch_size
        output, loss = args.output, args.loss
        if loss == "cross_entropy" and output == "identity":
            raise SystemExit("cymlp bench: --loss cross_entropy needs --output softmax or sigmoid")
        return [Case("custom", tuple(args.sizes), args.activation, output, loss, batch,
                     max(50 * batch, 2000), "random", args.lr, "your network, random data")]
    if args.batch_size is not None:
        raise SystemExit("cymlp bench: --batch-size goes with --sizes (the built-in cases fix their own)")
    return [CASES[name] for name in (args.case or list(CASES))]


def _contended(load, threads):
    """Whether other processes were busy when a row started.

    The 1-minute load average counts this benchmark's own threads too, so
    "busy" means at least half a core more than the row itself uses.  It lags
    by up to a minute: a hint, not a measurement.
    """
    return bool(math.isfinite(load) and load - threads > 0.5)


def run(args):
    """Run the per-step benchmark described by parsed ``args``; returns the JSON payload."""
    t_start = time.perf_counter()
    cases = select_cases(args)
    dtypes = args.dtype or (["float32"] if args.quick else ["float32", "float64"])
    usable = default_n_threads()
    threads = args.threads or sorted({1, usable})
    budget = QUICK if args.quick else FULL
    if args.seconds is not None:
        budget = Budget(args.seconds, min(budget.block_seconds, args.seconds / 3),
                        budget.min_repeats, budget.max_repeats)
    wanted = args.impl or list(IMPLEMENTATIONS)
    impls, skipped = [], {}
    for name in wanted:
        if name not in IMPLEMENTATIONS:
            skipped[name] = "only with --fit"
            continue
        why = IMPLEMENTATIONS[name].unavailable()
        if why is None:
            impls.append(IMPLEMENTATIONS[name])
        else:
            skipped[name] = why
    for name, why in skipped.items():
        log(f"bench: skipping {name}: {why}")

    info = machine_info()
    rows, rooflines, peaks, failures = [], [], [], []
    if not args.no_roofline:
        for dtype in dtypes:
            for t in threads:
                peaks.append(peak_gemm(dtype, t, n=512 if args.quick else 1024))
    for case in cases:
        for dtype in dtypes:
            problem = make_problem(case, dtype)
            for t in threads:
                roof = None
                if not args.no_roofline:
                    roof = gemm_roofline(case, dtype, t, quick=args.quick)
                    rooflines.append(roof)
                group = []
                for impl in impls:
                    if not impl.supports(case):
                        skipped.setdefault(f"{impl.name}:{case.name}", "case not supported")
                        continue
                    log(f"bench: {case.name} {dtype} {t} thread(s) {impl.name} ...")
                    load = load_average()
                    try:
                        runner = impl.prepare(problem, t)
                        m = measure(runner, case.max_block_steps, budget)
                    except Exception as exc:
                        failures.append({"case": case.name, "dtype": dtype, "threads": t, "impl": impl.name,
                                             "error": f"{type(exc).__name__}: {exc}"})
                        log(f"bench:   failed: {type(exc).__name__}: {exc}")
                        continue
                    step, spread = summary(m["step_seconds"])
                    flops = case.flops_per_example * case.batch_size
                    row = {"case": case.name, "dtype": dtype, "threads": t, "impl": impl.name,
                           "data": problem.data_source,
                               "step_seconds": step, "spread": spread, "epoch_seconds": step * case.steps_per_epoch,
                               "examples_per_second": case.batch_size / step, "gflops": flops / step / 1e9,
                               "roofline_fraction": (roof["seconds_per_step"] / step) if roof else float("nan"),
                               "steps_per_block": m["steps_per_block"], "repeats": m["repeats"],
                               "samples_step_seconds": m["step_seconds"],
                               "step_seconds_min": min(m["step_seconds"]), "step_seconds_max": max(m["step_seconds"]),
                               "load_average": load, "contended": _contended(load, t)}
                    group.append(row)
                base = {r["impl"]: r["step_seconds"] for r in group}
                for r in group:
                    r["speedup_vs_loop"] = base["loop"] / r["step_seconds"] if "loop" in base else None
                    r["speedup_vs_numpy"] = base["numpy"] / r["step_seconds"] if "numpy" in base else None
                rows.extend(group)

    cymlp_impl_order = {name: i for i, name in enumerate(IMPLEMENTATIONS)}
    rows.sort(key=lambda r: ([c.name for c in cases].index(r["case"]), dtypes.index(r["dtype"]),
                             threads.index(r["threads"]), cymlp_impl_order.get(r["impl"], 99)))
    scaling = scaling_rows(rows) if len(threads) > 1 else []
    elapsed = time.perf_counter() - t_start

    print(f"# cymlp bench{' --quick' if args.quick else ''}\n")
    print(f"CPU: {info['cpu']} ({info['cpu_vendor']}, {' '.join(info['cpu_flags'])}; "
          f"{info['usable_cores']} usable cores); BLAS: {blas_line(info)}")
    print(f"Environment: {environment_line(info)}; backends: {', '.join(info['backends'])}")
    if info.get("load_average"):
        print(load_line(info["load_average"][0]))
    if peaks:
        print("Large-GEMM peak (1024² matmul): " + ", ".join(
            f"{p['dtype']} {p['threads']}t {p['gflops']:.3g} GFLOP/s" for p in peaks))
    print("GFLOP/s counts 2·MACs of the forward, weight-gradient and back-propagated-delta GEMMs; "
          "% roof = the same GEMMs timed alone in numpy.matmul / the step time.\n")
    print(results_markdown(rows, cases, rooflines))
    if scaling:
        print("### Thread scaling (examples/s, speed-up against the fewest threads)\n")
        print(scaling_markdown(scaling) + "\n")
    if skipped:
        print("Not measured: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    if failures:
        print("Failed: " + "; ".join(f"{f['impl']} on {f['case']} {f['dtype']} {f['threads']}t: {f['error']}"
                                      for f in failures))
    print(f"\nTotal time {elapsed:.0f} s.")

    payload = {
        "command": command_line(args),
        "quick": bool(args.quick), "threads": threads, "dtypes": dtypes, "elapsed_seconds": elapsed,
        "budget": asdict(budget), "machine": info,
        "flops_formula": "FLOPs/example = 2*(sum_l n_{l-1} n_l [forward] + sum_l n_{l-1} n_l [weight gradient] "
                      "+ sum_{l>=2} n_{l-1} n_l [back-propagated delta]); FLOPs/step = FLOPs/example * batch",
        "roofline_method": "numpy.matmul on the step's GEMM shapes (transposed views as in the reference path), "
                        "best of several runs, at the row's thread count; fraction = roofline seconds / step seconds",
        "cases": {c.name: dict(asdict(c), flops_per_example=c.flops_per_example,
                            steps_per_epoch=c.steps_per_epoch) for c in cases},
        "implementations": {i.name: i.description for i in impls},
        "skipped": skipped, "failures": failures, "peak_gemm": peaks, "rooflines": rooflines, "results": rows,
        "scaling": scaling}
    if args.json:
        write_json(args.json, payload)
        log(f"bench: wrote {args.json}")
    if args.plot:
        try:
            plot(rows, cases, args.plot)
            log(f"bench: wrote {args.plot}")
        except ImportError:
            log("bench: --plot needs matplotlib: pip install matplotlib")
    return payload
