"""The implementations cymlp is compared with, built to train the same network from the same weights.

- :class:`PerExampleLoop`: the learner's original formulation (one example at a
  time as a column vector, matrix-vector products), written afresh;
- the NumPy path and the compiled path: :func:`cymlp_network`;
- PyTorch (:func:`torch_model`) and scikit-learn (:func:`sklearn_estimator`),
  imported only when used: cymlp never installs them.  ``*_unavailable()``
  says why one cannot run here (None when it can).

The step benchmark (:mod:`.step`) and the fit benchmark (:mod:`.fit`) build
their runners from these.
"""


import numpy as np

from .. import reference

__all__ = [
    "SKLEARN_ACTIVATIONS",
    "PerExampleLoop",
    "cymlp_network",
    "cython_unavailable",
    "flat_params",
    "set_flat_params",
    "sklearn_estimator",
    "sklearn_supports",
    "sklearn_unavailable",
    "torch_dtype",
    "torch_loss",
    "torch_model",
    "torch_unavailable",
]


# --------------------------------------------------------------------------
# The learner's per-example loop
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# cymlp itself: the NumPy path and the compiled path
# --------------------------------------------------------------------------

def flat_params(net):
    """A copy of the network's flat parameter vector."""
    return net.get_flat_params()


def set_flat_params(net, theta):
    net.set_flat_params(theta)


def cymlp_network(sizes, activation, output, loss, dtype, backend, threads, theta=None):
    """``Network(..., backend=backend, n_threads=threads)`` starting from the weights ``theta``."""
    from ..network import Network
    net = Network(list(sizes), activation, output, loss, dtype=np.dtype(dtype).name, backend=backend,
                  n_threads=threads, seed=0)
    if theta is not None:
        set_flat_params(net, theta)
    return net


def cython_unavailable():
    from ..network import available_backends
    return None if "cython" in available_backends() else "compiled extension not built"


# --------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------

def torch_unavailable():
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch not installed"
    return None


def torch_dtype(dtype):
    import torch
    return {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}[np.dtype(dtype)]


def torch_model(weights, biases, activation, output, loss, dtype):
    """``nn.Sequential`` of Linear layers holding copies of ``weights``/``biases`` (W as (n_out, n_in)).

    With the cross-entropy loss the output activation is folded into the loss
    (:func:`torch_loss`), as PyTorch users write it.
    """
    import torch
    from torch import nn
    tdtype = torch_dtype(dtype)
    hidden = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
              "leaky_relu": lambda: nn.LeakyReLU(reference.LEAKY_RELU_SLOPE)}[activation]
    layers = []
    L = len(weights)
    for l, (W, bias) in enumerate(zip(weights, biases)):
        lin = nn.Linear(W.shape[1], W.shape[0]).to(tdtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
            lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias)))
        layers.append(lin)
        if l < L - 1:
            layers.append(hidden())
    if loss != "cross_entropy" and output == "sigmoid":
        layers.append(nn.Sigmoid())
    elif loss != "cross_entropy" and output == "softmax":
        layers.append(nn.Softmax(dim=1))
    return nn.Sequential(*layers)


def torch_loss(output, loss):
    """``loss_fn(out, labels, Y)``: cymlp's loss (mean over the batch; quadratic = ½·Σ(a−y)²/n)."""
    from torch import nn

    def loss_fn(out, labels, Y):
        if loss == "quadratic":
            return 0.5 * ((out - Y) ** 2).sum() / out.shape[0]
        if output == "softmax":
            return nn.functional.cross_entropy(out, labels)
        return nn.functional.binary_cross_entropy_with_logits(out, Y, reduction="sum") / out.shape[0]
    return loss_fn


# --------------------------------------------------------------------------
# scikit-learn
# --------------------------------------------------------------------------

SKLEARN_ACTIVATIONS = {"sigmoid": "logistic", "relu": "relu", "tanh": "tanh"}


def sklearn_unavailable():
    try:
        import sklearn.neural_network  # noqa: F401
    except ImportError:
        return "scikit-learn not installed"
    return None


def sklearn_supports(activation, n_outputs=None, output="softmax", loss="quadratic"):
    """Whether scikit-learn has the same network: its activation, and for two classes no
    softmax (its MLPClassifier has one logistic output unit there, not cymlp's two)."""
    two_class = n_outputs == 2 and output == "softmax" and loss == "cross_entropy"
    return activation in SKLEARN_ACTIVATIONS and not two_class


def sklearn_estimator(sizes, activation, output, loss, batch_size, lr, *, solver="sgd", momentum=0.0,
                      beta1=0.9, beta2=0.999, eps=1e-8):
    """(estimator, is_classifier): the nearest scikit-learn MLP to cymlp's network.

    ``MLPClassifier`` for softmax + cross-entropy; otherwise ``MLPRegressor``
    on the one-hot targets (identity output + squared error: the nearest it
    has to sigmoid + quadratic).  No L2 penalty, shuffled every epoch.
    """
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    common = {"hidden_layer_sizes": tuple(sizes[1:-1]), "activation": SKLEARN_ACTIVATIONS[activation],
                  "solver": solver, "alpha": 0.0, "batch_size": batch_size, "learning_rate_init": lr,
                  "momentum": momentum, "nesterovs_momentum": False, "beta_1": beta1, "beta_2": beta2, "epsilon": eps,
                  "shuffle": True, "random_state": 0}
    classifier = output == "softmax" and loss == "cross_entropy"
    return (MLPClassifier(**common) if classifier else MLPRegressor(**common)), classifier


def sklearn_set_weights(est, weights, biases):
    """Copy cymlp's (n_out, n_in) weights into a fitted estimator's (n_in, n_out) ``coefs_``."""
    for coef, intercept, W, bias in zip(est.coefs_, est.intercepts_, weights, biases):
        coef[...] = W.T
        intercept[...] = bias
