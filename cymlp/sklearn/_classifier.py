"""scikit-learn's ``MLPClassifier``, trained by cymlp."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from .._typing import FloatArray, FloatDType, SklearnActivation, SklearnLearningRate, SklearnSolver
from ._base import SPARSE_FORMATS, BaseMLP, has_stochastic_solver
from ._params import COMMON_PARAMETERS, estimator_doc

if TYPE_CHECKING:
    from typing_extensions import Self


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = estimator_doc(
        """Multi-layer perceptron classifier trained by cymlp's compiled path.

    The parameters, fitted attributes and methods of
    ``sklearn.neural_network.MLPClassifier`` (see :mod:`cymlp.sklearn` for the
    exact correspondence), plus ``dtype``,
    ``n_threads``, ``parallel``, ``dropout``, ``clip_norm`` and ``class_weight``.""",
        (*COMMON_PARAMETERS, "class_weight"), """
    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_, coefs_, intercepts_, loss_,
    loss_curve_, validation_scores_, best_validation_score_, best_loss_,
    n_iter_, t_, n_layers_, n_outputs_, out_activation_
        As in scikit-learn.  ``coefs_[i]`` is (n_in, n_out), a view into the network.
    network_ : cymlp.Network
        The trained network.""")

    _label_binarizer: LabelBinarizer

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
                 clip_norm: float | None = None,
                 class_weight: Literal["balanced"] | Mapping[Any, float] | None = None) -> None:
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
        self.class_weight = class_weight

    def _row_weights(self, sample_weight: Any, X: FloatArray, Y: FloatArray) -> FloatArray | None:
        """``sample_weight`` times the ``class_weight`` of each row's class, or None.

        ``class_weight`` follows scikit-learn's classifiers: a dict {label:
        weight} (labels as in ``y``; missing ones weigh 1), or "balanced",
        ``n_rows / (n_classes * count(class))`` over the rows of this call
        (for ``partial_fit``, the rows of the call).
        """
        sample_weight = super()._row_weights(sample_weight, X, Y)
        if self.class_weight is None:
            return sample_weight
        if not (self.class_weight == "balanced" or isinstance(self.class_weight, (dict, list))):
            raise ValueError("class_weight must be None, 'balanced' or a dict {label: weight}; "
                             f"got {self.class_weight!r}")
        if isinstance(self.class_weight, dict):
            unknown = [c for c in self.class_weight if c not in set(self.classes_.tolist())]
            if unknown:
                raise ValueError(f"class_weight names labels {unknown} that are not classes of "
                                 f"y; classes_ is {self.classes_!r}")
        labels = self._label_binarizer.inverse_transform(Y.ravel() if Y.shape[1] == 1 else Y)
        factors = compute_sample_weight(self.class_weight, labels)
        return factors if sample_weight is None else sample_weight * factors

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool,
                        dtype: Any) -> tuple[FloatArray, FloatArray]:
        X, y = validate_data(self, X, y, multi_output=True, dtype=dtype, order="C", reset=reset,
                             accept_sparse=SPARSE_FORMATS)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if incremental and hasattr(self, "classes_") and y.ndim == 1 and \
                not self._label_binarizer.y_type_.startswith("multilabel"):
            return X, self._encode_known_labels(y, X.dtype)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes "
                                     f"as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(X.dtype)

    def _encode_known_labels(self, y: Any, dtype: Any) -> FloatArray:
        """``partial_fit``'s 1-D labels after the first call, binarized as the binarizer does.

        The label checks of a first call (``check_classification_targets``,
        ``LabelBinarizer``) cost ~1 ms a call in scikit-learn's utilities;
        here every label must be one of ``classes_`` (checked once, on the
        first call): exactly the labels they accept, so nothing weaker.
        """
        classes = self.classes_
        try:
            seen = np.unique(y)
        except TypeError:           # mixed label types: scikit-learn's own message
            seen = unique_labels(y)
        if len(np.setdiff1d(seen, classes, assume_unique=True)):
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                             f"{classes}. 'y' has {seen}.")
        index = np.searchsorted(classes, y)
        if len(classes) <= 2:                   # one column: the positive (second) class
            return (index == 1).astype(dtype).reshape(-1, 1)
        Y = np.zeros((y.shape[0], len(classes)), dtype=dtype)
        Y[np.arange(y.shape[0]), index] = 1
        return Y

    def _out_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _network_loss(self) -> Literal["cross_entropy"]:
        return "cross_entropy"

    def _stratify_split(self) -> bool:
        return self.n_outputs_ == 1

    def _decode(self, out: FloatArray) -> npt.NDArray[Any]:
        """Labels from output activations (or from binarized targets)."""
        if self.n_outputs_ == 1:
            out = out.ravel()
        return self._label_binarizer.inverse_transform(out)

    _score_function = staticmethod(accuracy_score)

    @available_if(has_stochastic_solver)
    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None,
                    classes: npt.ArrayLike | None = None) -> Self:
        """One epoch of training over the given rows (``solver`` "sgd" or "adam").

        The optimizer state (momentum, Adam's moments) carries over from call
        to call, as in scikit-learn.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n_samples, n_features)
            Inputs, one example per row.
        y : array-like (n_samples,) or (n_samples, n_classes)
            Class labels of these rows (2-D: a multilabel indicator matrix).
        sample_weight : array-like (n_samples,) or None
            Weights >= 0 of these rows.
        classes : array-like or None
            Every label that will ever appear: required on the first call, and
            must not change afterwards.

        Returns
        -------
        self
            The estimator.
        """
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self.classes_ = unique_labels(classes)
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):   # as scikit-learn: y's own columns
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        elif classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                             f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        """Predicted labels.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n_samples, n_features)
            Inputs, one example per row.

        Returns
        -------
        ndarray
            (n_samples,) labels, or (n_samples, n_classes) indicators for multilabel ``y``.
        """
        return self._decode(self._forward(X))

    def predict_proba(self, X: npt.ArrayLike) -> FloatArray:
        """Class probabilities.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n_samples, n_features)
            Inputs, one example per row.

        Returns
        -------
        ndarray (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        out = self._forward(X)
        if self.n_outputs_ == 1:
            p = out.ravel()
            return np.vstack([1 - p, p]).T
        return out

    def predict_log_proba(self, X: npt.ArrayLike) -> FloatArray:
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n_samples, n_features)
            Inputs, one example per row.

        Returns
        -------
        ndarray (n_samples, n_classes)
            Log-probabilities (``-inf`` where a probability is 0).
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
