"""The per-step benchmark's cases and the problem every implementation solves (data + weights)."""

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

__all__ = ["CASES", "Case", "Problem", "gemm_shapes", "make_problem"]


def gemm_shapes(sizes, batch_size):
    """(name, m, k, n) of every GEMM in one training step on ``batch_size`` rows.

    Per layer l: the forward product ``A (B, n_in) @ W.T``, the weight
    gradient ``D.T @ A`` and, above the first layer, the back-propagated
    ``D @ W``.
    """
    shapes = []
    B = batch_size
    for l, (n_in, n_out) in enumerate(pairwise(sizes)):
        shapes.append((f"forward{l}", B, n_in, n_out))
        shapes.append((f"weight_grad{l}", n_out, B, n_in))
        if l > 0:
            shapes.append((f"delta{l}", B, n_out, n_in))
    return shapes


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
        return gemm_shapes(self.sizes, self.batch_size)


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
    from .. import datasets
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
    from ..network import Network
    from .peers import flat_params
    dtype = np.dtype(dtype)
    X, labels, source = _load_data(case, dtype)
    Y = np.zeros((X.shape[0], case.sizes[-1]), dtype=dtype)
    Y[np.arange(X.shape[0]), labels] = 1
    net = Network(list(case.sizes), case.activation, case.output, case.loss, dtype=dtype.name,
                  backend="numpy", seed=0)
    return Problem(case, dtype, np.ascontiguousarray(X), labels, Y, flat_params(net),
                   [W.copy() for W in net.weights], [b.copy() for b in net.biases], source)
