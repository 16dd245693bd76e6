"""``cymlp bench --fit``'s cases (network, optimizer, batch, data) and their data.

The orchestrator (:mod:`.fit`) and every worker process (:mod:`.fit_worker`)
read the same definitions, so each implementation trains the same rows from
the same initial weights.
"""

import functools
from dataclasses import dataclass

import numpy as np

from . import peers

__all__ = ["FIT_CASES", "FIT_IMPLEMENTATIONS", "FitCase", "load_case_data", "one_hot", "unavailable"]


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
    target_ratio: float = 1.15    # the goal: epoch time within this factor of the GEMM floor
    target_step: float | None = None     # the goal as seconds per step (the tiny case)
    target_vs_sklearn: float = 1.0    # the goal: at least this many times faster than scikit-learn
    repeat_epochs: int = 1        # epochs per timed repeat, times --epochs (short epochs time poorly)
    sklearn_lr: float | None = None      # scikit-learn's rate where cymlp's diverges there (None: lr)
    description: str = ""

    def settings(self):
        opt = "Adam" if self.optimizer == "adam" else (
            f"SGD momentum {self.momentum:g}" if self.momentum else "SGD")
        return (f"{'-'.join(map(str, self.sizes))} {self.activation}/{self.output} {self.loss}, "
                f"{opt} lr {self.lr:g}, batch {self.batch_size}")


FIT_CASES = {
    "fmnist-100-adam": FitCase("fmnist-100-adam", (784, 100, 10), "relu", "softmax", "cross_entropy", "adam",
                               200, 0.001, 0.0, "fashion_mnist", target_vs_sklearn=2.5,
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
                    "random", 10000,
                    description="the learner's network from the original question, random data"),
    "digits": FitCase("digits", (64, 32, 10), "relu", "softmax", "cross_entropy", "sgd", 16, 0.05, 0.9,
                      "digits", target_step=6e-6, repeat_epochs=20, description="8x8 digits: overheads dominate"),
}

# name -> description; "floor" is measured whenever any other is
FIT_IMPLEMENTATIONS = {
    "cython": "Network(backend='cython', n_threads=t).fit",
    "default": "Network(backend='cython').fit with the default n_threads=None (rows at the most threads)",
    "numpy": "Network(backend='numpy').fit under threadpool_limits(t)",
    "sklearn": "scikit-learn MLPClassifier/MLPRegressor, one partial_fit per epoch",
    "torch": "PyTorch nn.Sequential + torch.optim, index-slice batches, optimizer.step()",
}
_UNAVAILABLE = {"cython": peers.cython_unavailable, "default": peers.cython_unavailable,
                "numpy": lambda: None, "sklearn": peers.sklearn_unavailable, "torch": peers.torch_unavailable}


def unavailable(name):
    """None, or why implementation ``name`` cannot run here."""
    return _UNAVAILABLE[name]() if name in _UNAVAILABLE else "not a fit implementation"


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


def one_hot(y, k, dtype):
    """(n, k) one-hot targets of labels ``y``."""
    Y = np.zeros((y.shape[0], k), dtype=dtype)
    Y[np.arange(y.shape[0]), y] = 1
    return Y
