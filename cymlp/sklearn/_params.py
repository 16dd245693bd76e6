"""The estimators' constructor parameters: scikit-learn's names mapped to cymlp's, checked.

:func:`check_params` checks them as scikit-learn does (same ranges, clear
messages) when ``fit`` starts, never in ``__init__`` (scikit-learn's rule).
The solvers, activations and losses cymlp does not implement are refused
here, with what to use instead.
"""

import numbers

import numpy as np

from .._fit_checks import PARALLEL_STRATEGIES
from .._validation import check_clip_norm, check_dropout

# scikit-learn's activation names -> cymlp's ("leaky_relu" is a cymlp extra)
ACTIVATIONS = {"relu": "relu", "logistic": "sigmoid", "tanh": "tanh", "leaky_relu": "leaky_relu"}
OUT_ACTIVATIONS = {"softmax": "softmax", "logistic": "sigmoid", "identity": "identity"}
SOLVERS = ("sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_, numbers.Integral)):
        raise TypeError(f"{name} must be a bool; got {value!r}")


def _check_number(name, value, *, low=None, high=None, low_open=False, high_open=False,
                  integer=False):
    kind = numbers.Integral if integer else numbers.Real
    if not isinstance(value, kind) or isinstance(value, (bool, np.bool_)):
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
    if est.solver == "lbfgs":
        raise ValueError(
            "solver='lbfgs' is not available in cymlp, which trains by mini-batch gradient "
            "descent; use solver='adam' (the default) or solver='sgd', or "
            "sklearn.neural_network for L-BFGS")
    if est.solver not in SOLVERS:
        raise ValueError(f"solver must be 'adam' or 'sgd'; got {est.solver!r}")
    if est.activation == "identity":
        raise ValueError(
            "activation='identity' (linear hidden layers) is not available in cymlp; use "
            "'relu', 'tanh' or 'logistic', or hidden_layer_sizes=() for a linear model")
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
    check_dropout(est.dropout, [0, *hidden, 0])
    check_clip_norm(est.clip_norm)
    return hidden
