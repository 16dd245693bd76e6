"""One implementation of one ``cymlp bench --fit`` row, in a process of its own.

:mod:`.fit` starts one fresh interpreter per implementation (cymlp at an
explicit thread count, cymlp with the default thread count, the NumPy path,
scikit-learn, PyTorch, the GEMM floor) and row (case, dtype, threads), so no
implementation's thread pools, caches or allocator state share a process
with another's.  The worker loads the case's data, builds its runner, warms
it up (a pass over a few batches, then the initial weights put back), says
it is ready, and then times one repeat each time the orchestrator asks, so
that the orchestrator can interleave the rounds of every implementation.

The protocol is line-based: the worker is started as ``python -c ...
SPEC_JSON`` (see :func:`command`), answers on stdout with lines that begin
with :data:`MARK` followed by a JSON object, and reads commands from stdin:
``run`` (time one repeat: ``{"seconds": ..., "epoch_loop_seconds": [...]}``),
``accuracy`` (``{"accuracy": ...}`` or ``{}``); end of input ends it.
"""

import json
import os
import sys
import time
import warnings
from typing import Any

import numpy as np

from . import peers
from .cases import gemm_shapes
from .fit_cases import FIT_CASES, load_case_data, one_hot
from .measure import blas_limits, gemm_step_runner

__all__ = ["MARK", "command", "make_runner", "main"]

MARK = "@@cymlp-bench "


def command(spec):
    """The argv that starts a worker for ``spec`` with this interpreter and this cymlp.

    ``sys.path[0]`` (the working directory) is replaced by the folder that
    holds the cymlp package the orchestrator runs, so a worker started from
    anywhere times the same build.
    """
    import cymlp
    root = os.path.dirname(os.path.dirname(os.path.abspath(cymlp.__file__)))
    code = (f"import sys; sys.path[0] = {root!r}; "
            "from cymlp.bench.fit_worker import main; sys.exit(main(sys.argv[1]))")
    return [sys.executable, "-c", code, json.dumps(spec)]


def _warm_rows(case, n):
    return min(n, 20 * case.batch_size)


def _cymlp_runner(backend, case, data, theta, threads, epochs):
    X, y = data["X"], data["y"]
    net = peers.cymlp_network(case.sizes, case.activation, case.output, case.loss, X.dtype, backend,
                              threads, theta)
    settings = {"batch_size": case.batch_size, "lr": case.lr, "momentum": case.momentum,
                "optimizer": case.optimizer, "shuffle": True, "on_divergence": "warn"}
    # the default thread count (None) is timed as a user gets it: nothing limited around fit
    limits = (lambda: blas_limits(threads)) if threads is not None else _no_limits

    def fit(rows, n_epochs):
        with limits(), warnings.catch_warnings():
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
        return {"seconds": seconds, "epoch_loop_seconds": list(history.seconds)}

    def predict(Xt):
        with limits():
            return net.predict(Xt)
    return run, warm, predict


class _no_limits:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _sklearn_runner(case, data, weights, biases, threads, epochs):
    X, y, Y = data["X"], data["y"], data["Y"]
    est, classifier = peers.sklearn_estimator(case.sizes, case.activation, case.output, case.loss,
                                              case.batch_size, case.sklearn_lr or case.lr,
                                              solver=case.optimizer, momentum=case.momentum)
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
        return {"seconds": time.perf_counter() - t0}

    def predict(Xt):
        with blas_limits(threads):
            out = est.predict(Xt)
        return out if classifier else np.argmax(out, axis=1)
    return run, warm, predict


def _torch_runner(case, data, weights, biases, threads, epochs):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = peers.torch_model(weights, biases, case.activation, case.output, case.loss, data["X"].dtype)
    loss_fn = peers.torch_loss(case.output, case.loss)
    X, labels, Y = (torch.from_numpy(data[k]) for k in ("X", "y", "Y"))
    B = case.batch_size
    state: dict[str, Any] = {}

    def make_optimizer():
        if case.optimizer == "adam":
            return torch.optim.Adam(model.parameters(), lr=case.lr)
        return torch.optim.SGD(model.parameters(), lr=case.lr, momentum=case.momentum)

    def train(n, n_epochs):
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
        t0 = time.perf_counter()
        train(X.shape[0], epochs)
        return {"seconds": time.perf_counter() - t0}

    def predict(Xt):
        with torch.no_grad():
            return model(torch.from_numpy(Xt)).argmax(dim=1).numpy()
    return run, warm, predict


def _floor_runner(case, dtype, threads, n, epochs):
    full, rest = divmod(n, case.batch_size)
    plan = [(gemm_shapes(case.sizes, case.batch_size), full * epochs)]
    if rest:
        plan.append((gemm_shapes(case.sizes, rest), epochs))
    timed = gemm_step_runner(plan, dtype, threads, None)
    warm = gemm_step_runner(gemm_shapes(case.sizes, case.batch_size), dtype, threads, min(full or 1, 20))
    return (lambda: {"seconds": timed()}), warm, None


def make_runner(impl, case, data, threads, epochs):
    """``(run, warm, predict)`` for one implementation; ``run()`` returns a dict with ``seconds``."""
    X = data["X"]
    if impl == "floor":
        return _floor_runner(case, X.dtype, threads, X.shape[0], epochs)
    net = peers.cymlp_network(case.sizes, case.activation, case.output, case.loss, X.dtype, "numpy", 1)
    theta = peers.flat_params(net)
    if impl in ("cython", "numpy"):
        return _cymlp_runner(impl, case, data, theta, threads, epochs)
    if impl == "default":
        return _cymlp_runner("cython", case, data, theta, None, epochs)
    weights = [W.copy() for W in net.weights]
    biases = [b.copy() for b in net.biases]
    if impl == "sklearn":
        return _sklearn_runner(case, data, weights, biases, threads, epochs)
    if impl == "torch":
        return _torch_runner(case, data, weights, biases, threads, epochs)
    raise ValueError(f"unknown implementation {impl!r}")


def _say(obj):
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _threadpools():
    try:
        import threadpoolctl
        return threadpoolctl.threadpool_info()
    except ImportError:
        return "threadpoolctl not installed"


def main(spec_json):
    """Serve one implementation of one row (module doc); returns the exit status."""
    spec = json.loads(spec_json)
    try:
        case = FIT_CASES[spec["case"]]
        X, y, Xt, yt, _ = load_case_data(case, spec["dtype"], spec.get("rows"))
        data = {"X": X, "y": y, "Y": one_hot(y, case.sizes[-1], X.dtype), "X_test": Xt, "y_test": yt}
        run, warm, predict = make_runner(spec["impl"], case, data, spec["threads"], spec["epochs"])
        warm()
    except Exception as exc:
        _say({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _say({"ready": True, "pid": os.getpid(), "threadpools": _threadpools()})
    for line in sys.stdin:
        what = line.strip()
        try:
            if what == "run":
                _say(run())
            elif what == "accuracy":
                if predict is None or Xt is None:
                    _say({})
                else:
                    _say({"accuracy": float(np.mean(predict(Xt) == yt))})
            else:
                _say({"error": f"unknown command {what!r}"})
        except Exception as exc:
            _say({"error": f"{type(exc).__name__}: {exc}"})
    return 0
