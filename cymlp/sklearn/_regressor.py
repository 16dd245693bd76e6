"""scikit-learn's ``MLPRegressor`` (squared error or Poisson), trained by cymlp."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import column_or_1d, validate_data

from .._typing import (
    FloatArray,
    FloatDType,
    LossName,
    OutputActivation,
    SklearnActivation,
    SklearnLearningRate,
    SklearnRegressionLoss,
    SklearnSolver,
)
from ._base import SPARSE_FORMATS, BaseMLP, has_stochastic_solver
from ._params import COMMON_PARAMETERS, estimator_doc

if TYPE_CHECKING:
    from typing_extensions import Self

LOSSES: dict[str, tuple[LossName, OutputActivation]] = {"squared_error": ("quadratic", "identity"),
                                                      "poisson": ("poisson", "exp")}


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = estimator_doc(
        """Multi-layer perceptron regressor trained by cymlp's compiled path.

    The parameters, fitted attributes and methods of
    ``sklearn.neural_network.MLPRegressor`` (see :mod:`cymlp.sklearn` for the
    exact correspondence), plus ``dtype``, ``n_threads``, ``parallel``,
    ``dropout`` and ``clip_norm``.  Single- and multi-output targets.""",
        ("loss", *COMMON_PARAMETERS), """
    Attributes
    ----------
    n_features_in_, feature_names_in_, coefs_, intercepts_, loss_, loss_curve_,
    validation_scores_, best_validation_score_, best_loss_, n_iter_, t_,
    n_layers_, n_outputs_, out_activation_
        As in scikit-learn.  ``coefs_[i]`` is (n_in, n_out), a view into the network.
    network_ : cymlp.Network
        The trained network.""")

    def __init__(self, loss: SklearnRegressionLoss = "squared_error", hidden_layer_sizes: int | Sequence[int] = (100,),
                 activation: SklearnActivation = "relu", *, solver: SklearnSolver = "adam", alpha: float = 0.0001,
                 batch_size: int | Literal["auto"] = "auto",
                 learning_rate: SklearnLearningRate = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: int | np.random.RandomState | None = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 max_fun: int = 15000, dtype: FloatDType | None = None, n_threads: int | None = None,
                 parallel: Literal["sync", "hogwild", "average"] = "sync", dropout: float | Sequence[float] = 0.0,
                 clip_norm: float | None = None) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dtype=dtype, n_threads=n_threads, parallel=parallel,
            dropout=dropout, clip_norm=clip_norm)
        self.loss = loss

    def _check_params(self) -> list[int]:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {tuple(LOSSES)}; got {self.loss!r}")
        return super()._check_params()

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool,
                        dtype: Any) -> tuple[FloatArray, FloatArray]:
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=dtype,
                             order="C", reset=reset, accept_sparse=SPARSE_FORMATS)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if self.loss == "poisson" and np.min(Y) < 0:
            raise ValueError(f"loss='poisson' needs targets y >= 0 (counts or rates); y holds "
                             f"{np.min(Y):g}. Use loss='squared_error' for targets of either sign")
        return X, np.ascontiguousarray(Y, dtype=X.dtype)

    def _out_activation(self) -> OutputActivation:
        return LOSSES[self.loss][1]

    def _network_loss(self) -> LossName:
        return LOSSES[self.loss][0]

    def _stratify_split(self) -> bool:
        return False

    def _decode(self, out: FloatArray) -> FloatArray:
        return out.ravel() if out.shape[1] == 1 else out

    _score_function = staticmethod(r2_score)

    @available_if(has_stochastic_solver)
    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None) -> Self:
        """One epoch of training over the given rows (``solver`` "sgd" or "adam").

        The optimizer state (momentum, Adam's moments) carries over from call
        to call, as in scikit-learn.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n_samples, n_features)
            Inputs, one example per row.
        y : array-like (n_samples,) or (n_samples, n_outputs)
            Targets of these rows.
        sample_weight : array-like (n_samples,) or None
            Weights >= 0 of these rows.

        Returns
        -------
        self
            The estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: npt.ArrayLike) -> FloatArray:
        """Predicted targets.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n_samples, n_features)
            Inputs, one example per row.

        Returns
        -------
        ndarray
            (n_samples,), or (n_samples, n_outputs) for 2-D training targets.
        """
        return self._decode(self._forward(X))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
