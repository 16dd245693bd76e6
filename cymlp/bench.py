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

The registry (:data:`IMPLEMENTATIONS`), :func:`measure` and the writers
(:func:`markdown_table`, :func:`write_json`) are meant to be reused by other
benchmark modes.
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from . import reference

__all__ = ["Case", "CASES", "Implementation", "IMPLEMENTATIONS", "Problem", "make_problem",
           "measure", "gemm_roofline", "markdown_table", "write_json", "machine_info",
           "add_arguments", "add_parser", "main"]

ENV_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS", "OMP_PROC_BIND", "GOMP_CPU_AFFINITY")


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """A network shape and training set-up to time.

    ``data`` is ``"random"`` (uniform inputs, random labels, as in the
    original question), ``"fashion_mnist"`` (falls back to random data of the
    same shape when the files are not installed) or ``"digits"``.
    """
    name: str
    sizes: tuple
    activation: str
    output: str
    loss: str
    batch_size: int
    n_train: int
    data: str = "random"
    lr: float = 0.1
    description: str = ""

    @property
    def macs_per_example(self):
        """Multiply-adds of one example's forward, weight-gradient and delta GEMMs."""
        layer = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        return 2 * sum(layer) + sum(layer[1:])

    @property
    def flops_per_example(self):
        return 2 * self.macs_per_example

    @property
    def steps_per_epoch(self):
        return -(-self.n_train // self.batch_size)

    @property
    def max_block_steps(self):
        """Most full batches that fit in the training set (the longest timed block)."""
        return max(1, self.n_train // self.batch_size)

    def gemm_shapes(self):
        """(name, m, k, n) of every GEMM in one step: an (m, k) by (k, n) product."""
        shapes = []
        B = self.batch_size
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            shapes.append((f"forward{l}", B, n_in, n_out))
            shapes.append((f"weight_grad{l}", n_out, B, n_in))
            if l > 0:
                shapes.append((f"delta{l}", B, n_out, n_in))
        return shapes


CASES = {
    "seed": Case("seed", (1000, 900, 900, 900, 10), "sigmoid", "sigmoid", "quadratic", 100, 1000,
                 "random", 0.1, "the learner's network from the original question, random data"),
    "nielsen": Case("nielsen", (784, 30, 10), "sigmoid", "sigmoid", "quadratic", 10, 10000,
                    "fashion_mnist", 0.5, "Nielsen's book network (chapter 1), 28x28 images"),
    "fmnist": Case("fmnist", (784, 256, 128, 10), "relu", "softmax", "cross_entropy", 64, 10000,
                   "fashion_mnist", 0.05, "a modern Fashion-MNIST classifier"),
    "tiny": Case("tiny", (64, 32, 10), "relu", "softmax", "cross_entropy", 16, 1797,
                 "digits", 0.05, "8x8 digits: small enough that overheads dominate"),
}


# --------------------------------------------------------------------------
# The problem every implementation solves: data + initial parameters
# --------------------------------------------------------------------------

@dataclass
class Problem:
    """One case in one dtype: data and initial parameters shared by every implementation."""
    case: Case
    dtype: np.dtype
    X: np.ndarray            # (n_train, sizes[0])
    labels: np.ndarray       # (n_train,) int64
    Y: np.ndarray            # (n_train, sizes[-1]) one-hot targets
    theta: np.ndarray        # cymlp's flat parameter layout
    weights: list            # W[l]: (sizes[l+1], sizes[l])
    biases: list             # b[l]: (sizes[l+1],)
    data_source: str = ""


def _load_data(case, dtype):
    from . import datasets
    n_in, n_out = case.sizes[0], case.sizes[-1]
    if case.data == "fashion_mnist" and n_in == 784 and n_out == 10:
        try:
            X, y, _, _ = datasets.load_fashion_mnist(dtype=dtype)
            return X[:case.n_train].copy(), y[:case.n_train].copy(), "Fashion-MNIST (first rows)"
        except (FileNotFoundError, ValueError):
            pass
    if case.data == "digits" and n_in == 64 and n_out == 10:
        X, y = datasets.load_digits(dtype=dtype)
        reps = -(-case.n_train // X.shape[0])
        return (np.tile(X, (reps, 1))[:case.n_train].copy(), np.tile(y, reps)[:case.n_train].copy(),
                "UCI digits (bundled)")
    X, y = datasets.make_random_classification(case.n_train, n_in, n_out, seed=0, dtype=dtype)
    return X, y, "random uniform inputs, random labels"


def make_problem(case, dtype):
    """Data and initial weights for ``case`` in ``dtype`` (the same for every implementation)."""
    from .network import Network
    dtype = np.dtype(dtype)
    X, labels, source = _load_data(case, dtype)
    Y = np.zeros((X.shape[0], case.sizes[-1]), dtype=dtype)
    Y[np.arange(X.shape[0]), labels] = 1
    net = Network(list(case.sizes), case.activation, case.output, case.loss, dtype=dtype.name,
                  backend="numpy", seed=0)
    return Problem(case, dtype, np.ascontiguousarray(X), labels, Y, net.get_flat_params(),
                   [W.copy() for W in net.weights], [b.copy() for b in net.biases], source)


# --------------------------------------------------------------------------
# Implementations.  Each ``prepare(problem, threads)`` returns a function
# ``run_blocks(n_steps, n_blocks) -> list of seconds``, one per block of
# n_steps SGD steps over the first n_steps * batch_size rows.
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Implementation:
    """A way of training a case.  ``unavailable()`` returns None or why it cannot run here."""
    name: str
    description: str
    prepare: object
    unavailable: object = staticmethod(lambda: None)
    supports: object = staticmethod(lambda case: True)


def _blas_limits(threads):
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=threads)


# ---- loop: the learner's per-example formulation, written fresh

def _col_activate(name, z):
    if name == "sigmoid":
        return reference.sigmoid(z)
    if name == "softmax":                      # z is a column: normalise over axis 0
        e = np.exp(z - z.max())
        return e / e.sum()
    return reference.activate(name, z)         # elementwise: shape does not matter


def _col_output_error(case, a, y):
    """∂C/∂z of the output layer for one example (column vectors)."""
    if case.loss == "cross_entropy":
        return a - y
    r = a - y
    if case.output == "softmax":
        return a * (r - np.sum(r * a))
    return r * reference.derivative(case.output, a)


class PerExampleLoop:
    """Mini-batch SGD one example at a time, as the learner wrote it (column vectors).

    ``weights[l]`` is (n_out, n_in) and ``biases[l]`` a column (n_out, 1).
    """

    def __init__(self, problem):
        self.case = problem.case
        self.X, self.Y, self.dtype = problem.X, problem.Y, problem.dtype
        self.weights = [W.copy() for W in problem.weights]
        self.biases = [b.reshape(-1, 1).copy() for b in problem.biases]

    def step(self, rows):
        """One SGD step on the examples ``rows``: accumulate every gradient, then update."""
        case, W, b = self.case, self.weights, self.biases
        L = len(W)
        dW = [np.zeros_like(w) for w in W]
        db = [np.zeros_like(v) for v in b]
        for i in rows:
            a = [self.X[i].reshape(-1, 1)]                          # one example as a column
            for l in range(L):
                z = np.dot(W[l], a[l]) + b[l]                       # matrix-vector product
                a.append(_col_activate(case.output if l == L - 1 else case.activation, z))
            delta = _col_output_error(case, a[L], self.Y[i].reshape(-1, 1))
            for l in range(L - 1, -1, -1):
                dW[l] += np.dot(delta, a[l].T)    # added once (the original adds the last layer's twice)
                db[l] += delta
                if l > 0:
                    delta = np.dot(W[l].T, delta) * reference.derivative(case.activation, a[l])
        scale = self.dtype.type(case.lr) / self.dtype.type(len(rows))
        for l in range(L):
            W[l] -= scale * dW[l]
            b[l] -= scale * db[l]


def _prepare_loop(problem, threads):
    loop = PerExampleLoop(problem)
    rng = np.random.default_rng(1)
    B = problem.case.batch_size

    def run_blocks(n_steps, n_blocks):
        times = []
        with _blas_limits(threads):
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
        from .network import Network
        case = problem.case
        net = Network(list(case.sizes), case.activation, case.output, case.loss,
                      dtype=problem.dtype.name, backend=backend, n_threads=threads, seed=0)
        net.set_flat_params(problem.theta)

        def run_blocks(n_steps, n_blocks):
            rows = n_steps * case.batch_size
            with _blas_limits(threads), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                history = net.fit(problem.X[:rows], problem.labels[:rows], epochs=n_blocks,
                                  batch_size=case.batch_size, lr=case.lr, momentum=0.0,
                                  on_divergence="warn")
            if history.diverged or len(history.seconds) != n_blocks:
                raise RuntimeError(f"{backend} diverged on case {case.name}; lower its lr")
            return list(history.seconds)
        return run_blocks
    return prepare


def _cython_unavailable():
    from .network import available_backends
    return None if "cython" in available_backends() else "compiled extension not built"


# ---- torch

def _torch_unavailable():
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch not installed"
    return None


def _prepare_torch(problem, threads):
    import torch
    from torch import nn
    case = problem.case
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tdtype = {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}[problem.dtype]
    hidden = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
              "leaky_relu": lambda: nn.LeakyReLU(reference.LEAKY_RELU_SLOPE)}[case.activation]
    layers = []
    L = len(problem.weights)
    for l, (W, bias) in enumerate(zip(problem.weights, problem.biases)):
        lin = nn.Linear(W.shape[1], W.shape[0]).to(tdtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(bias))
        layers.append(lin)
        if l < L - 1:
            layers.append(hidden())
    logits_loss = case.loss == "cross_entropy"      # softmax/sigmoid folded into the loss
    if not logits_loss and case.output == "sigmoid":
        layers.append(nn.Sigmoid())
    elif not logits_loss and case.output == "softmax":
        layers.append(nn.Softmax(dim=1))
    model = nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=case.lr)
    X = torch.from_numpy(problem.X)
    Y = torch.from_numpy(problem.Y)
    labels = torch.from_numpy(problem.labels)

    def loss_fn(out, rows):
        if case.loss == "quadratic":
            return 0.5 * ((out - Y[rows]) ** 2).sum() / len(rows)
        if case.output == "softmax":
            return nn.functional.cross_entropy(out, labels[rows])
        return nn.functional.binary_cross_entropy_with_logits(out, Y[rows], reduction="sum") / len(rows)

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
                loss = loss_fn(model(X[rows]), rows)
                loss.backward()
                opt.step()
            times.append(time.perf_counter() - t0)
        return times
    return run_blocks


# ---- scikit-learn

_SKLEARN_ACTIVATIONS = {"sigmoid": "logistic", "relu": "relu", "tanh": "tanh"}


def _sklearn_unavailable():
    try:
        import sklearn.neural_network  # noqa: F401
    except ImportError:
        return "scikit-learn not installed"
    return None


def _sklearn_supports(case):
    return case.activation in _SKLEARN_ACTIVATIONS


def _prepare_sklearn(problem, threads):
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    case = problem.case
    common = dict(hidden_layer_sizes=tuple(case.sizes[1:-1]), activation=_SKLEARN_ACTIVATIONS[case.activation],
                  solver="sgd", alpha=0.0, batch_size=case.batch_size, learning_rate_init=case.lr,
                  momentum=0.0, nesterovs_momentum=False, shuffle=True, random_state=0)
    classifier = case.output == "softmax" and case.loss == "cross_entropy"
    if classifier:
        est, target = MLPClassifier(**common), problem.labels
        first = dict(classes=np.arange(case.sizes[-1]))
    else:
        est, target = MLPRegressor(**common), problem.Y
        first = {}
    B = case.batch_size
    with _blas_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(problem.X[:B], target[:B], **first)      # allocates coefs_ and intercepts_
    for coef, intercept, W, bias in zip(est.coefs_, est.intercepts_, problem.weights, problem.biases):
        coef[...] = W.T                                           # sklearn stores W as (n_in, n_out)
        intercept[...] = bias

    def run_blocks(n_steps, n_blocks):
        rows = n_steps * B
        times = []
        with _blas_limits(threads), warnings.catch_warnings():
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
                             _prepare_cymlp("cython"), _cython_unavailable),
    "torch": Implementation("torch", "PyTorch CPU: nn.Sequential + optim.SGD, set_num_threads(t)",
                            _prepare_torch, _torch_unavailable),
    "sklearn": Implementation("sklearn", "scikit-learn MLPClassifier/MLPRegressor(solver='sgd'), "
                              "one partial_fit per block", _prepare_sklearn, _sklearn_unavailable,
                              _sklearn_supports),
}


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """How long to spend on one row."""
    seconds: float = 1.5          # measured time per row, after calibration
    block_seconds: float = 0.15   # aim for blocks about this long
    min_repeats: int = 5
    max_repeats: int = 25


QUICK = Budget(seconds=0.25, block_seconds=0.04, min_repeats=3, max_repeats=8)
FULL = Budget()


def measure(run_blocks, case, budget):
    """Warm up, calibrate, then time blocks of SGD steps.

    Returns a dict with the per-step seconds of every timed block and the
    block length.  Two one-step blocks come first: the first warms caches and
    thread pools, the second estimates the step time.  When the chosen block
    is longer than one step, one more block is discarded as its warm-up;
    when it is one step (slow rows such as the loop on ``seed``), the
    calibration step counts as the first sample.
    """
    calibration = run_blocks(1, 2)
    per_step = calibration[1]
    n_steps = int(min(case.max_block_steps, max(1, round(budget.block_seconds / max(per_step, 1e-9)))))
    block = n_steps * per_step
    n_blocks = int(min(budget.max_repeats, max(budget.min_repeats, budget.seconds / max(block, 1e-9))))
    if n_steps == 1:
        times = calibration[1:] + run_blocks(1, n_blocks - 1)
    else:
        times = run_blocks(n_steps, n_blocks + 1)[1:]
    return dict(steps_per_block=n_steps, repeats=len(times), step_seconds=[t / n_steps for t in times])


def _summary(samples):
    median = statistics.median(samples)
    if len(samples) >= 4:
        q = statistics.quantiles(samples, n=4)
        iqr = q[2] - q[0]
    else:
        iqr = max(samples) - min(samples)
    return median, iqr / median if median > 0 else float("nan")


def gemm_roofline(case, dtype, threads, quick=False):
    """Time this machine's BLAS on exactly the GEMMs of one SGD step of ``case``.

    Uses ``numpy.matmul`` on operands laid out as in the reference path
    (transposed views included), best of several runs, at ``threads`` BLAS
    threads.  Returns seconds per step and GFLOP/s.
    """
    rng = np.random.default_rng(0)
    dtype = np.dtype(dtype)
    target = 0.003 if quick else 0.01
    samples = 3 if quick else 5
    per_gemm = []
    with _blas_limits(threads):
        for name, m, k, n in case.gemm_shapes():
            # forward: A (B, n_in) @ W.T; weight_grad: D.T @ A; delta: D @ W
            if name.startswith("forward"):
                a, b = rng.random((m, k), dtype=dtype), rng.random((n, k), dtype=dtype).T
            elif name.startswith("weight_grad"):
                a, b = rng.random((k, m), dtype=dtype).T, rng.random((k, n), dtype=dtype)
            else:
                a, b = rng.random((m, k), dtype=dtype), rng.random((k, n), dtype=dtype)
            out = np.empty((m, n), dtype=dtype)
            np.matmul(a, b, out=out)
            t0 = time.perf_counter()
            np.matmul(a, b, out=out)
            reps = max(1, int(target / max(time.perf_counter() - t0, 1e-7)))
            best = math.inf
            for _ in range(samples):
                t0 = time.perf_counter()
                for _ in range(reps):
                    np.matmul(a, b, out=out)
                best = min(best, (time.perf_counter() - t0) / reps)
            per_gemm.append(dict(name=name, m=m, k=k, n=n, seconds=best, gflops=2 * m * k * n / best / 1e9))
    seconds = sum(g["seconds"] for g in per_gemm)
    flops = case.flops_per_example * case.batch_size
    return dict(case=case.name, dtype=dtype.name, threads=threads, seconds_per_step=seconds,
                gflops=flops / seconds / 1e9, gemms=per_gemm)


def peak_gemm(dtype, threads, n=1024):
    """GFLOP/s of one large square GEMM: the machine's practical peak."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.dtype(dtype))
    b = rng.random((n, n), dtype=np.dtype(dtype))
    out = np.empty_like(a)
    with _blas_limits(threads):
        np.matmul(a, b, out=out)
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
    return dict(dtype=np.dtype(dtype).name, threads=threads, n=n, gflops=2 * n ** 3 / best / 1e9)


# --------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------

def _cpu_model():
    """(model name, vendor, notable ISA flags) from /proc/cpuinfo, or what platform knows."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model", "vendor_id", "flags") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break
    except OSError:
        pass
    model = fields.get("model name") or fields.get("hardware") or fields.get("cpu model") \
        or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    notable = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "hypervisor")
               if f in flags]
    return model, fields.get("vendor_id"), notable


def _version(module):
    try:
        mod = __import__(module)
        return getattr(mod, "__version__", "?")
    except ImportError:
        return None


def machine_info():
    """Machine, CPU, library versions, BLAS/OpenMP pools and the thread-related environment."""
    import scipy.linalg  # noqa: F401  (loads the BLAS the compiled path calls)
    from . import __version__
    from ._config import config_info
    from .network import available_backends
    model, vendor, flags = _cpu_model()
    info = dict(
        cpu=model, cpu_vendor=vendor, cpu_flags=flags, cpu_count=os.cpu_count(),
        usable_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        platform=platform.platform(), python=platform.python_version(),
        versions=dict(cymlp=__version__, numpy=np.__version__, scipy=_version("scipy"),
                      torch=_version("torch"), sklearn=_version("sklearn"),
                      threadpoolctl=_version("threadpoolctl")),
        backends=list(available_backends()),
        environment={name: os.environ.get(name) for name in ENV_OVERRIDES},
        load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    )
    info["openblas_overrides_set"] = {name: name in os.environ
                                      for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    try:
        config = config_info()
        info["openmp"] = config.get("openmp")
        info["compiled_path"] = config.get("compiled_path", "built")
    except Exception as exc:       # the compiled path may be half-built while being written
        info["compiled_path"] = f"config_info failed: {exc}"
    try:
        import threadpoolctl
        info["threadpools"] = threadpoolctl.threadpool_info()
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def _blas_line(info):
    pools = info.get("threadpools")
    if not isinstance(pools, list):
        return str(pools)
    return "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, "
                     f"{p.get('threading_layer')}, {os.path.basename(p.get('filepath', ''))})"
                     for p in pools if p.get("user_api") == "blas") or "none found"


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------

def markdown_table(rows, columns):
    """A GitHub markdown table.  ``columns`` is a list of (header, key or callable, align)."""
    def cell(row, getter):
        value = getter(row) if callable(getter) else row.get(getter)
        return "" if value is None else str(value)
    header = "| " + " | ".join(h for h, _, _ in columns) + " |"
    rule = "|" + "|".join("---:" if align == "r" else ":---" for _, _, align in columns) + "|"
    body = ["| " + " | ".join(cell(r, g) for _, g, _ in columns) + " |" for r in rows]
    return "\n".join([header, rule] + body)


def write_json(path, payload):
    """Write ``payload`` as indented JSON (NaN and infinities become null)."""
    def clean(obj):
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        if isinstance(obj, np.generic):
            return clean(obj.item())
        return obj
    with open(path, "w") as f:
        json.dump(clean(payload), f, indent=2)
        f.write("\n")


def _fmt_time(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def _fmt_num(x, digits=3):
    if x is None or not math.isfinite(x):
        return "–"
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _fmt_speedup(x):
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:,.0f}×" if x >= 100 else f"{x:.3g}×"


RESULT_COLUMNS = [
    ("impl", lambda r: r["impl"] + (" †" if r.get("contended") else ""), "l"),
    ("dtype", "dtype", "l"),
    ("threads", "threads", "r"),
    ("time/step (median)", lambda r: _fmt_time(r["step_seconds"]), "r"),
    ("spread (IQR)", lambda r: f"±{100 * r['spread'] / 2:.0f}%", "r"),
    ("time/epoch", lambda r: _fmt_time(r["epoch_seconds"]), "r"),
    ("examples/s", lambda r: _fmt_num(r["examples_per_second"]), "r"),
    ("GFLOP/s", lambda r: _fmt_num(r["gflops"]), "r"),
    ("% roof", lambda r: f"{100 * r['roofline_fraction']:.0f}%" if math.isfinite(r["roofline_fraction"]) else "–",
     "r"),
    ("vs loop", lambda r: _fmt_speedup(r.get("speedup_vs_loop")), "r"),
    ("vs numpy", lambda r: _fmt_speedup(r.get("speedup_vs_numpy")), "r"),
]


def results_markdown(rows, cases, rooflines):
    """One table per case, with the case and its GEMM roofline named above it."""
    parts = []
    for case in cases:
        case_rows = [r for r in rows if r["case"] == case.name]
        if not case_rows:
            continue
        roofs = ", ".join(f"{r['dtype']} {r['threads']}t {r['gflops']:.3g}"
                          for r in rooflines if r["case"] == case.name)
        parts.append(f"### {case.name}: {'-'.join(map(str, case.sizes))}, {case.activation}/{case.output}, "
                     f"{case.loss}, batch {case.batch_size}, epoch = {case.n_train} examples\n\n"
                     f"{case_rows[0]['data']}; {case.flops_per_example * case.batch_size / 1e6:.4g} MFLOP/step; "
                     f"GEMM roofline GFLOP/s: {roofs}\n")
        parts.append(markdown_table(case_rows, RESULT_COLUMNS) + "\n")
        if any(r.get("contended") for r in case_rows):
            parts.append("† other processes were busy when this row started (1-minute load average "
                         "above the row's own threads by more than half a core): its time is inflated, "
                         "multi-threaded rows most.\n")
    return "\n".join(parts)


def scaling_rows(rows):
    """Examples/s per thread count for each (case, dtype, impl), speed-up against its fewest threads."""
    groups = {}
    for r in rows:
        groups.setdefault((r["case"], r["dtype"], r["impl"]), {})[r["threads"]] = r["examples_per_second"]
    out = []
    for (case, dtype, impl), by_threads in groups.items():
        base_threads = min(by_threads)
        base = by_threads[base_threads]
        for t in sorted(by_threads):
            out.append(dict(case=case, dtype=dtype, impl=impl, threads=t,
                            examples_per_second=by_threads[t], speedup=by_threads[t] / base,
                            efficiency=by_threads[t] / base / (t / base_threads)))
    return out


def scaling_markdown(scaling):
    threads = sorted({s["threads"] for s in scaling})
    table = {}
    for s in scaling:
        table.setdefault((s["case"], s["dtype"], s["impl"]), {})[s["threads"]] = s
    columns = [("case", "case", "l"), ("dtype", "dtype", "l"), ("impl", "impl", "l")]
    for t in threads:
        columns.append((f"{t} thr ex/s (×)", lambda r, t=t: (
            f"{_fmt_num(r[t]['examples_per_second'])} ({r[t]['speedup']:.2f}×)" if t in r else ""), "r"))
    rows = []
    for (case, dtype, impl), by_t in table.items():
        row = dict(by_t)
        row.update(case=case, dtype=dtype, impl=impl)
        rows.append(row)
    return markdown_table(rows, columns)


# --------------------------------------------------------------------------
# The chart
# --------------------------------------------------------------------------

IMPL_COLORS = {"loop": "#b0b0b0", "numpy": "#4c72b0", "cython": "#dd8452", "torch": "#c44e52",
               "sklearn": "#55a868"}


def plot(rows, cases, path, dtype=None):
    """Horizontal bars of examples/s on a log scale, one panel per case."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    dtype = dtype or rows[0]["dtype"]
    cases = [c for c in cases if any(r["case"] == c.name and r["dtype"] == dtype for r in rows)]
    ncols = 2 if len(cases) > 1 else 1
    nrows = -(-len(cases) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 0.3 + 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(cases):]:
        ax.set_visible(False)
    for ax, case in zip(axes.flat, cases):
        sel = [r for r in rows if r["case"] == case.name and r["dtype"] == dtype]
        labels = [f"{r['impl']} · {r['threads']} thr" for r in sel]
        values = [r["examples_per_second"] for r in sel]
        y = np.arange(len(sel))[::-1]
        ax.barh(y, values, color=[IMPL_COLORS.get(r["impl"], "#8172b2") for r in sel])
        ax.set_yticks(y, labels, fontsize=9)
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 2, max(values) * 12)
        for yi, r in zip(y, sel):
            note = _fmt_num(r["examples_per_second"])
            if r.get("speedup_vs_loop") is not None and r["impl"] != "loop":
                note += f"  ({_fmt_speedup(r['speedup_vs_loop'])} loop)"
            ax.text(r["examples_per_second"] * 1.1, yi, note, va="center", fontsize=8)
        ax.set_title(f"{case.name}: {'-'.join(map(str, case.sizes))}, batch {case.batch_size}", fontsize=10)
        ax.set_xlabel("training examples per second (log scale, higher is better)", fontsize=8)
        ax.grid(axis="x", which="major", alpha=0.3)
    title = f"cymlp bench ({dtype}): one SGD step, same data, weights and threads per panel"
    loads = [r["load_average"] for r in rows if math.isfinite(r.get("load_average", float("nan")))]
    if loads:
        title += f"\nload average during the run {min(loads):.1f} to {max(loads):.1f} on {_usable_cores()} cores"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------

def _int_list(text):
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _name_list(choices):
    def parse(text):
        names = [x.strip() for x in text.split(",") if x.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown {bad or text!r}; choose from {', '.join(choices)}")
        return names
    return parse


def _thread_list(text):
    if text == "all":
        return None
    return _int_list(text.replace("all", str(_usable_cores())))


def _usable_cores():
    from . import _validation as v
    return v.effective_n_threads(None)


def add_arguments(parser):
    """Add the ``bench`` options to ``parser`` (used by ``cymlp bench`` and ``python -m cymlp.bench``)."""
    parser.add_argument("--quick", action="store_true",
                        help="short timings, float32 only (under a minute)")
    parser.add_argument("--case", type=_name_list(list(CASES)), default=None,
                        help=f"comma-separated cases: {', '.join(CASES)} (default: all)")
    parser.add_argument("--impl", type=_name_list(list(IMPLEMENTATIONS)), default=None,
                        help=f"comma-separated implementations: {', '.join(IMPLEMENTATIONS)} "
                             "(default: all that are installed)")
    parser.add_argument("--dtype", type=_name_list(["float32", "float64"]), default=None,
                        help="float32, float64 or both (default: both; float32 with --quick)")
    parser.add_argument("--threads", type=_thread_list, default=None,
                        help="comma-separated thread counts, e.g. 1,2,4 ('all' = every usable core; "
                             "default: 1,all)")
    parser.add_argument("--sizes", type=_int_list, default=None,
                        help="your own network, e.g. 784,100,10 (replaces the built-in cases)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size for --sizes (default 32)")
    parser.add_argument("--activation", default="relu", choices=reference.HIDDEN_ACTIVATIONS,
                        help="hidden activation for --sizes")
    parser.add_argument("--output", default="softmax", choices=reference.OUTPUT_ACTIVATIONS,
                        help="output activation for --sizes")
    parser.add_argument("--loss", default="cross_entropy", choices=reference.LOSSES, help="loss for --sizes")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate for --sizes")
    parser.add_argument("--seconds", type=float, default=None,
                        help="measuring time per row after warm-up (default 1.5, 0.3 with --quick)")
    parser.add_argument("--json", metavar="FILE", default=None, help="write every figure and the machine here")
    parser.add_argument("--plot", metavar="FILE.png", default=None, help="bar chart (needs matplotlib)")
    parser.add_argument("--no-roofline", action="store_true", help="skip the GEMM roofline measurement")
    from . import bench_strategies
    bench_strategies.add_arguments(parser)        # --strategies: time to accuracy, parallel SGD
    return parser


def add_parser(subparsers):
    """Register ``bench`` as a subcommand of the ``cymlp`` command line."""
    parser = subparsers.add_parser("bench", help="time one SGD step: loop, NumPy, compiled, threads, peers",
                                   description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=_run_command)
    return parser


def _run_command(args):
    run(args)
    return 0


def _select_cases(args):
    if args.sizes is not None:
        if len(args.sizes) < 2:
            raise SystemExit("cymlp bench: --sizes needs at least an input and an output size")
        batch = args.batch_size or 32
        if batch < 1:
            raise SystemExit("cymlp bench: --batch-size must be >= 1")
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


def _command_line(args):
    """The command as typed, whether it came through ``cymlp bench`` or ``python -m cymlp.bench``."""
    argv = list(getattr(args, "argv", None) or [])
    if argv[:1] == ["bench"]:
        argv = argv[1:]
    return " ".join(["cymlp bench"] + argv)


def _log(message):
    print(message, file=sys.stderr, flush=True)


def run(args):
    """Run the benchmark described by parsed ``args``; returns the JSON payload."""
    if getattr(args, "strategies", False):
        from . import bench_strategies
        return bench_strategies.run(args)
    t_start = time.perf_counter()
    cases = _select_cases(args)
    dtypes = args.dtype or (["float32"] if args.quick else ["float32", "float64"])
    usable = _usable_cores()
    threads = args.threads or sorted({1, usable})
    budget = QUICK if args.quick else FULL
    if args.seconds is not None:
        budget = Budget(args.seconds, min(budget.block_seconds, args.seconds / 3),
                        budget.min_repeats, budget.max_repeats)
    wanted = args.impl or list(IMPLEMENTATIONS)
    impls, skipped = [], {}
    for name in wanted:
        why = IMPLEMENTATIONS[name].unavailable()
        if why is None:
            impls.append(IMPLEMENTATIONS[name])
        else:
            skipped[name] = why
    for name, why in skipped.items():
        _log(f"bench: skipping {name}: {why}")

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
                    _log(f"bench: {case.name} {dtype} {t} thread(s) {impl.name} ...")
                    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
                    try:
                        runner = impl.prepare(problem, t)
                        m = measure(runner, case, budget)
                    except Exception as exc:          # one broken implementation must not end the run
                        failures.append(dict(case=case.name, dtype=dtype, threads=t, impl=impl.name,
                                             error=f"{type(exc).__name__}: {exc}"))
                        _log(f"bench:   failed: {type(exc).__name__}: {exc}")
                        continue
                    step, spread = _summary(m["step_seconds"])
                    flops = case.flops_per_example * case.batch_size
                    row = dict(case=case.name, dtype=dtype, threads=t, impl=impl.name, data=problem.data_source,
                               step_seconds=step, spread=spread, epoch_seconds=step * case.steps_per_epoch,
                               examples_per_second=case.batch_size / step, gflops=flops / step / 1e9,
                               roofline_fraction=(roof["seconds_per_step"] / step) if roof else float("nan"),
                               steps_per_block=m["steps_per_block"], repeats=m["repeats"],
                               samples_step_seconds=m["step_seconds"],
                               step_seconds_min=min(m["step_seconds"]), step_seconds_max=max(m["step_seconds"]),
                               load_average=load, contended=_contended(load, t))
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
          f"{info['usable_cores']} usable cores); BLAS: {_blas_line(info)}")
    overrides = ", ".join(f"{k}={info['environment'][k]}" if v else f"{k} unset"
                          for k, v in info["openblas_overrides_set"].items())
    print(f"Environment: {overrides}; backends: {', '.join(info['backends'])}")
    if info.get("load_average"):
        load = info["load_average"][0]
        busy = "  (other work is running: multi-threaded rows will suffer)" if load > 0.5 else ""
        print(f"Load average at start: {load:.2f}{busy}")
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

    payload = dict(
        command=_command_line(args),
        quick=bool(args.quick), threads=threads, dtypes=dtypes, elapsed_seconds=elapsed,
        budget=asdict(budget), machine=info,
        flops_formula="FLOPs/example = 2*(sum_l n_{l-1} n_l [forward] + sum_l n_{l-1} n_l [weight gradient] "
                      "+ sum_{l>=2} n_{l-1} n_l [back-propagated delta]); FLOPs/step = FLOPs/example * batch",
        roofline_method="numpy.matmul on the step's GEMM shapes (transposed views as in the reference path), "
                        "best of several runs, at the row's thread count; fraction = roofline seconds / step seconds",
        cases={c.name: dict(asdict(c), flops_per_example=c.flops_per_example,
                            steps_per_epoch=c.steps_per_epoch) for c in cases},
        implementations={i.name: i.description for i in impls},
        skipped=skipped, failures=failures, peak_gemm=peaks, rooflines=rooflines, results=rows,
        scaling=scaling)
    if args.json:
        write_json(args.json, payload)
        _log(f"bench: wrote {args.json}")
    if args.plot:
        try:
            plot(rows, cases, args.plot)
            _log(f"bench: wrote {args.plot}")
        except ImportError:
            _log("bench: --plot needs matplotlib: pip install 'cymlp[plot]'")
    return payload


def main(argv=None):
    """``python -m cymlp.bench [options]``."""
    parser = argparse.ArgumentParser(prog="cymlp bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
