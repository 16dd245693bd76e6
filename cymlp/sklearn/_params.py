"""The estimators' constructor parameters: scikit-learn's names mapped to cymlp's, checked.

:func:`check_params` checks them as scikit-learn does (same ranges, clear
messages) when ``fit`` starts, never in ``__init__`` (scikit-learn's rule).
The solvers, activations and losses cymlp does not implement are refused
here, with what to use instead.
"""

from __future__ import annotations

import numbers
import textwrap
from typing import Any

import numpy as np

from .._fit_checks import PARALLEL_STRATEGIES
from .._typing import Activation, OutputActivation
from .._validation import check_clip_norm, check_dropout

# scikit-learn's activation names -> cymlp's ("leaky_relu" is a cymlp extra)
ACTIVATIONS: dict[str, Activation] = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
                                      "leaky_relu": "leaky_relu"}
OUT_ACTIVATIONS: dict[str, OutputActivation] = {"softmax": "softmax", "logistic": "sigmoid", "identity": "identity",
                                                "exp": "exp"}
SOLVERS = ("lbfgs", "sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_, numbers.Integral)):
        raise TypeError(f"{name} must be a bool; got {value!r}")


def _check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False, integer: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    is_number = isinstance(value, kind) and not isinstance(value, (bool, np.bool_))
    if not is_number:
        what = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {what}; got {value!r}")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high or not np.isfinite(value):
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name} must lie in {bounds}; got {value!r}")


def check_params(est):
    """Validate an estimator's constructor parameters (scikit-learn's ranges); return the hidden sizes."""
    if est.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}; got {est.solver!r}")
    if est.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; "
                         f"got {est.activation!r}")
    if est.learning_rate not in LEARNING_RATES:
        raise ValueError(f"learning_rate must be one of {LEARNING_RATES}; "
                         f"got {est.learning_rate!r}")
    hidden = est.hidden_layer_sizes
    hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
    for size in hidden:
        if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size <= 0:
            raise ValueError("hidden_layer_sizes must be positive integers, e.g. (100,) or "
                             f"(64, 32); got {est.hidden_layer_sizes!r}")
    if est.batch_size != "auto":
        _check_number("batch_size", est.batch_size, low=1, integer=True)
    _check_number("alpha", est.alpha, low=0)
    _check_number("learning_rate_init", est.learning_rate_init, low=0, low_open=True)
    _check_number("power_t", est.power_t, low=0)
    _check_number("max_iter", est.max_iter, low=1, integer=True)
    _check_number("tol", est.tol, low=0)
    _check_number("momentum", est.momentum, low=0, high=1, high_open=True)
    _check_number("validation_fraction", est.validation_fraction, low=0, high=1,
                  low_open=True, high_open=True)
    _check_number("beta_1", est.beta_1, low=0, high=1, high_open=True)
    _check_number("beta_2", est.beta_2, low=0, high=1, high_open=True)
    _check_number("epsilon", est.epsilon, low=0, low_open=True)
    if not (isinstance(est.n_iter_no_change, numbers.Real) and est.n_iter_no_change == np.inf):
        _check_number("n_iter_no_change", est.n_iter_no_change, low=1, integer=True)
    _check_number("max_fun", est.max_fun, low=1, integer=True)
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping", "verbose"):
        _check_bool(name, getattr(est, name))
    if est.dtype is not None:
        try:
            dtype = np.dtype(est.dtype)
        except TypeError:
            dtype = None
        if dtype not in DTYPES:
            raise ValueError("dtype must be None (follow X: float32 stays float32, anything "
                             f"else becomes float64), 'float32' or 'float64'; got {est.dtype!r}")
    if est.parallel not in PARALLEL_STRATEGIES:
        raise ValueError(f"parallel must be one of {PARALLEL_STRATEGIES}; got {est.parallel!r}")
    check_dropout(est.dropout, [0, *hidden, 0], layers=f"hidden_layer_sizes={tuple(hidden)}")
    check_clip_norm(est.clip_norm)
    return hidden


# The constructor parameters, in the order of the signatures
COMMON_PARAMETERS = (
    "hidden_layer_sizes", "activation", "solver", "alpha", "batch_size", "learning_rate",
    "learning_rate_init", "power_t", "max_iter", "shuffle", "random_state", "tol", "verbose",
    "warm_start", "momentum", "nesterovs_momentum", "early_stopping", "validation_fraction", "beta_1",
    "beta_2", "epsilon", "n_iter_no_change", "max_fun", "dtype", "n_threads", "parallel", "dropout",
    "clip_norm")


# ---- the parameters' documentation, shared by both estimators (numpydoc, checked by the API docs)

PARAMETER_DOCS = {
    "loss": ('{"squared_error", "poisson"}, default "squared_error"',
             'Half the squared error (identity outputs), or half the Poisson deviance with exponential '
             'outputs (a log link; targets must be >= 0), as scikit-learn\'s ``MLPRegressor``.'),
    "hidden_layer_sizes": ("tuple of int, default (100,)",
                           "Units of each hidden layer; ``()`` for none (a linear model)."),
    "activation": ('{"identity", "logistic", "tanh", "relu", "leaky_relu"}, default "relu"',
                   'Activation of the hidden layers ("leaky_relu" is a cymlp extra).'),
    "solver": ('{"lbfgs", "sgd", "adam"}, default "adam"',
               'The optimizer: "lbfgs" is scipy\'s L-BFGS-B over the whole training set (each '
               "loss-and-gradient evaluation one pass of the compiled path), the others "
               "mini-batch SGD and Adam."),
    "alpha": ("float >= 0, default 0.0001",
              "L2 penalty: ``alpha / (2 n)`` times the squared weights for lbfgs (as scikit-learn); "
              "for sgd and adam applied as ``weight_decay = alpha / (batch_size * mean sample weight)``."),
    "batch_size": ('int or "auto", default "auto"',
                   'Rows per mini-batch; "auto" is ``min(200, n_samples)``; clipped to the rows, with a warning.'),
    "learning_rate": ('{"constant", "invscaling", "adaptive"}, default "constant"',
                      'The rate schedule between epochs (``solver="sgd"`` only, as in scikit-learn).'),
    "learning_rate_init": ("float > 0, default 0.001", "The initial learning rate."),
    "power_t": ("float >= 0, default 0.5", 'The exponent of "invscaling": ``lr = init / (t + 1) ** power_t``.'),
    "max_iter": ("int >= 1, default 200", 'Epochs at most (``fit``); iterations for "lbfgs".'),
    "shuffle": ("bool, default True", "Reshuffle the rows every epoch."),
    "random_state": ("int, RandomState or None, default None",
                     "Draws the initial weights (as scikit-learn does), the early-stopping split and "
                     "the seed of the epoch shuffles."),
    "tol": ("float >= 0, default 1e-4", "The improvement of the loss (or validation score) that counts; "
            'for "lbfgs" the projected-gradient tolerance (``gtol``).'),
    "verbose": ("bool, default False", "Print the loss of every epoch."),
    "warm_start": ("bool, default False",
                   "``fit`` continues from the fitted weights (with a fresh optimizer, as scikit-learn)."),
    "momentum": ("float in [0, 1), default 0.9", 'SGD momentum (``solver="sgd"``).'),
    "nesterovs_momentum": ("bool, default True", 'Nesterov momentum (``solver="sgd"``).'),
    "early_stopping": ("bool, default False",
                       "Hold out ``validation_fraction`` of the rows and stop when their score stops "
                       "improving; the best epoch's weights are kept."),
    "validation_fraction": ("float in (0, 1), default 0.1", "The held-out share with ``early_stopping``."),
    "beta_1": ("float in [0, 1), default 0.9", "Adam's first-moment decay."),
    "beta_2": ("float in [0, 1), default 0.999", "Adam's second-moment decay."),
    "epsilon": ("float > 0, default 1e-8", "Adam's epsilon."),
    "n_iter_no_change": ("int >= 1 or numpy.inf, default 10",
                         "Epochs without an improvement of ``tol`` before stopping (inf: never)."),
    "max_fun": ("int >= 1, default 15000", 'Most loss-and-gradient evaluations of "lbfgs".'),
    "dtype": ('{None, "float32", "float64"}, default None',
              "Precision of the network.  None follows ``X`` as scikit-learn does: float32 stays "
              "float32, anything else becomes float64.  float32 is about twice as fast."),
    "n_threads": ("int or None, default None",
                  "Threads for training and prediction; None uses every usable core, within "
                  "``OMP_NUM_THREADS`` and ``threadpoolctl`` limits."),
    "parallel": ('{"sync", "hogwild", "average"}, default "sync"',
                 'Multi-threaded training strategy (docs/parallel-sgd.md); only "sync" is deterministic.'),
    "dropout": ("float or sequence of float in [0, 1), default 0.0",
                "Inverted dropout on the hidden layers while training (one rate, or one per hidden "
                "layer); prediction never drops units."),
    "clip_norm": ("float > 0 or None, default None", "Scale each mini-batch's mean gradient down to this global norm."),
    "class_weight": ('None, dict or "balanced", default None',
                     'Weights of the classes, keys as in ``y``; "balanced" weighs each class by '
                     "``n_rows / (n_classes * count)``.  Multiplies ``sample_weight``."),
}


def estimator_doc(summary, names, rest):
    """A class docstring: ``summary``, the Parameters section for ``names``, then ``rest``."""
    lines = ["Parameters", "----------"]
    for name in names:
        kind, text = PARAMETER_DOCS[name]
        lines += [f"{name} : {kind}", *textwrap.wrap(text, 84, initial_indent="    ", subsequent_indent="    ")]
    body = "\n    ".join(lines)
    return f"{summary}\n\n    {body}\n\n    {rest.strip()}\n    "
