"""What :class:`~cymlp.sklearn.MLPClassifier` and :class:`~cymlp.sklearn.MLPRegressor` share.

:class:`BaseMLP` holds the constructor parameters, ``fit``'s preparation
(checks, the initial weights drawn as scikit-learn draws them, the
network), the fitted ``coefs_``/``intercepts_`` (views into the network,
and assignable as in scikit-learn), and prediction.  The training itself is
the solver's: :mod:`._stochastic` (``"sgd"``, ``"adam"``) or :mod:`._lbfgs`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .._typing import FloatArray, FloatDType, SklearnActivation, SklearnLearningRate, SklearnSolver
from ..network import Network
from ._lbfgs import LbfgsSolver
from ._params import ACTIVATIONS, OUT_ACTIVATIONS, check_params
from ._stochastic import NON_FINITE_MESSAGE, StochasticSolver

SPARSE_FORMATS = ["csr", "csc"]     # validate_data converts other sparse formats to CSR

if TYPE_CHECKING:
    from typing_extensions import Self


class BaseMLP(StochasticSolver, LbfgsSolver, BaseEstimator):
    """The fitting shared by the classifier and the regressor.

    Every call into the :class:`cymlp.Network` goes through :meth:`_network`
    (the fitted network, rebuilt from ``coefs_``/``intercepts_`` when they
    were assigned), :meth:`_build_network` (construction) and the solvers.
    """

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,), activation: SklearnActivation = "relu", *,
                 solver: SklearnSolver = "adam", alpha: float = 0.0001, batch_size: int | Literal["auto"] = "auto",
                 learning_rate: SklearnLearningRate = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: int | np.random.RandomState | None = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 max_fun: int = 15000, dtype: FloatDType | None = None, n_threads: int | None = None,
                 parallel: Literal["sync", "hogwild", "average"] = "sync", dropout: float | Sequence[float] = 0.0,
                 clip_norm: float | None = None) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.n_threads = n_threads
        self.parallel = parallel
        self.dropout = dropout
        self.clip_norm = clip_norm

    # -- parameters --------------------------------------------------------------

    def _check_params(self) -> list[int]:
        """Validate the constructor parameters (scikit-learn's ranges); return the hidden sizes."""
        return check_params(self)

    def _fit_dtype(self) -> np.dtype[Any] | list[type[np.floating[Any]]]:
        """The dtype X is converted to on a first fit: ``dtype``, or float32 kept, else float64."""
        if self.dtype is not None:
            return np.dtype(self.dtype)
        return [np.float64, np.float32]       # validate_data keeps float32, else float64

    # -- fit -------------------------------------------------------------------------

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None) -> Self:
        """Fit the model to ``X`` and ``y``, starting a fresh optimizer (``warm_start`` keeps the weights).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n_samples, n_features)
            Inputs, one example per row (sparse: trained without densifying it).
        y : array-like (n_samples,) or (n_samples, n_outputs)
            Class labels (classifier; 2-D for multilabel) or targets (regressor).
        sample_weight : array-like (n_samples,) or None
            Weights >= 0: each mini-batch minimises the weighted mean loss, as
            in scikit-learn (see :mod:`cymlp.sklearn`).

        Returns
        -------
        self
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool) -> Self:
        hidden = self._check_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        dtype = self._fit_dtype() if first_pass else self._network().dtype
        X, Y = self._validate_input(X, y, incremental, reset=first_pass, dtype=dtype)
        sample_weight = self._row_weights(sample_weight, X, Y)
        if first_pass or self.early_stopping:     # made every fit that draws, as scikit-learn does
            self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X.shape[1], hidden, Y.shape[1], X.dtype)
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} outputs but the model was fitted with "
                             f"{self.n_outputs_}; use warm_start=False to start afresh")
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, sample_weight)
        else:
            self._fit_stochastic(X, Y, sample_weight, incremental, first_pass)
        if not np.isfinite(self._net.get_flat_params()).all():
            raise ValueError(NON_FINITE_MESSAGE)
        return self

    def _row_weights(self, sample_weight: Any, X: FloatArray, Y: FloatArray) -> FloatArray | None:
        """The rows' weights (float64 (n,)) from ``sample_weight``, or None."""
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, copy=True)
        return sample_weight

    def _initialize(self, n_features: int, hidden: list[int], n_outputs: int,
                    dtype: np.dtype[Any]) -> None:
        """Reset the fitted state; draw the initial parameters as scikit-learn does; the network."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(hidden) + 2
        self.out_activation_ = self._out_activation()
        self._learning_rate = self.learning_rate_init
        if self.solver != "lbfgs":       # scikit-learn sets these for its stochastic solvers only
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None
        # Glorot uniform for coefs and intercepts, layer by layer, as scikit-learn draws them
        sizes = [n_features, *hidden, n_outputs]
        params = []
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = self._random_state.uniform(-bound, bound, fan_out)
            params.append((coef.astype(dtype), intercept.astype(dtype)))
        self._set_network(self._build_network(sizes, params, dtype))
        # early stopping's best weights: the initial ones until an epoch scores (as scikit-learn)
        self._best_params = self._net.get_flat_params() if self.early_stopping else None

    def _build_network(self, sizes: list[int], params: list[tuple[FloatArray, FloatArray]],
                       dtype: Any) -> Network:
        """The one place a Network is constructed (``params``: scikit-learn's (coef, intercept) pairs).

        The stochastic solvers reseed it from ``random_state`` before its
        first epoch (its generator draws the epoch shuffles).
        """
        net = Network(sizes, activation=ACTIVATIONS[self.activation],
                      output=OUT_ACTIVATIONS[self.out_activation_], loss=self._network_loss(),
                      dtype=dtype, n_threads=self.n_threads, seed=0, dropout=self.dropout)
        for W, b, (coef, intercept) in zip(net.weights, net.biases, params):
            W[...] = coef.T
            b[...] = intercept
        return net

    # -- the fitted parameters: views into the network, assignable ---------------------

    def _set_network(self, net: Network) -> None:
        """Make ``net`` the fitted network; ``coefs_``/``intercepts_`` become views into it."""
        self._net = net
        self._views = ([W.T for W in net.weights], list(net.biases))
        self.coefs_, self.intercepts_ = list(self._views[0]), list(self._views[1])

    def _network(self) -> Network:
        """The fitted network, with whatever was assigned to ``coefs_``/``intercepts_`` in it.

        scikit-learn's estimators keep plain lists that users (and its own
        tests) assign or fill; here they are views into the network, and an
        assigned list or array is copied into it (a new network when the
        shapes changed) the next time the network is used.
        """
        net: Network | None = getattr(self, "_net", None)
        coefs, intercepts = self.coefs_, self.intercepts_
        if net is not None and _same_arrays(coefs, self._views[0]) and \
                _same_arrays(intercepts, self._views[1]):
            return net
        params = [(np.asarray(c), np.asarray(b)) for c, b in zip(coefs, intercepts, strict=True)]
        sizes = [params[0][0].shape[0], *(c.shape[1] for c, _ in params)]
        if net is not None and list(net.sizes) == sizes:
            for W, b, (coef, intercept) in zip(net.weights, net.biases, params):
                W[...] = coef.T
                b[...] = intercept
        else:
            dtype: Any = net.dtype if net is not None else np.result_type(*(p for pair in params
                                                                        for p in pair))
            dtype = np.float32 if dtype == np.float32 else np.float64
            net = self._build_network(sizes, params, dtype)
        # keep the caller's list objects (scikit-learn's tests hold on to them), now views
        coefs[:] = [W.T for W in net.weights]
        intercepts[:] = list(net.biases)
        self._net = net
        self._views = (list(coefs), list(intercepts))
        return net

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "coefs_")

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if "_net" in state:          # views do not survive pickling: rebuilt on loading
            self._network()
            state = dict(state)
            for name in ("coefs_", "intercepts_", "_views"):
                state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "_net" in state:
            self._set_network(self._net)

    def _forward(self, X: Any) -> FloatArray:
        """Output activations (n_samples, n_outputs_) of validated ``X`` (dense or sparse)."""
        check_is_fitted(self)
        net = self._network()
        X = validate_data(self, X, reset=False, dtype=net.dtype, order="C",
                          accept_sparse=SPARSE_FORMATS)
        return net.feedforward(X)

    @property
    def network_(self) -> Network:
        """The fitted :class:`cymlp.Network` (save it, or use it without scikit-learn)."""
        check_is_fitted(self)
        return self._network()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def has_stochastic_solver(estimator: Any) -> bool:
    """``available_if``'s test for ``partial_fit``: the stochastic solvers only (scikit-learn's
    rule and message)."""
    if estimator.solver not in ("sgd", "adam"):
        raise AttributeError("partial_fit is only available for stochastic optimizers. "
                             f"{estimator.solver} is not stochastic.")
    return True


def _same_arrays(given: list[Any], views: list[Any]) -> bool:
    """True when ``given`` is the list of ``views`` themselves (nothing was assigned)."""
    return len(given) == len(views) and all(a is b for a, b in zip(given, views))
