"""scikit-learn estimators backed by cymlp: :class:`MLPClassifier` and :class:`MLPRegressor`.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` and
``MLPRegressor`` with the stochastic solvers (``"sgd"``, ``"adam"``): the same
parameter names and meanings, the same fitted attributes, the same stopping
rules, trained by a :class:`cymlp.Network` on the compiled path.  scikit-learn
is an optional dependency (``pip install scikit-learn``); ``import cymlp``
never imports it, only ``import cymlp.sklearn`` does.

What matches scikit-learn exactly, and what does not
----------------------------------------------------
- **Initialisation**: the same Glorot-uniform draws from ``random_state`` in
  the same order, so with ``shuffle=False`` and ``solver="sgd"`` the weights
  follow scikit-learn's to rounding (tested).  ``early_stopping`` draws the
  same validation split.  The per-epoch shuffles come from the network's own
  generator (seeded from ``random_state``), so with ``shuffle=True`` the runs
  differ in the order of the batches, not in what they compute.
- **alpha**: scikit-learn adds ``alpha * W / m`` to the gradient of a batch of
  ``m`` rows (and ``alpha/(2 n) * ||W||^2`` per batch to the reported loss);
  cymlp's ``weight_decay`` λ adds ``λ * W`` to the mean gradient.  So
  ``weight_decay = alpha / batch_size``, exact for every full batch; a smaller
  last batch (when ``batch_size`` does not divide the rows) gets
  ``alpha / batch_size`` instead of ``alpha / m``.
- **loss_curve_**: the mean loss over the batches of the epoch (each taken
  before its step, as scikit-learn does), plus the L2 term computed with the
  weights at the end of the epoch (scikit-learn uses each batch's weights);
  for several regression outputs divided by their number, as scikit-learn does.
- **Adam**: cymlp divides by ``sqrt(v_hat) + epsilon``; scikit-learn by
  ``sqrt(v) + epsilon`` after folding the bias corrections into the rate, an
  effective ``epsilon / sqrt(1 - beta_2**t)``: the same update up to epsilon.
- **learning_rate** ``"invscaling"`` and ``"adaptive"`` (``solver="sgd"``
  only, as in scikit-learn) change the rate between epochs like scikit-learn.
  SGD momentum keeps its velocity in gradient units (``v = mu v + g``,
  ``W -= lr v``), scikit-learn in step units; identical while the rate is constant.
- **sample_weight** (``fit``, ``partial_fit``, ``score``): each batch minimises
  the weighted mean loss, as in scikit-learn (tested to rounding).  scikit-learn
  divides ``alpha`` by each batch's weight sum; cymlp uses
  ``weight_decay = alpha / (batch_size * mean weight)``, the same for one batch
  or equal weights, close otherwise.  ``early_stopping`` splits the weights
  with the rows and weighs the validation score.  A zero weight removes a row.
- **cymlp extras**: ``dropout`` (``Network(dropout=)``: inverted dropout on the
  hidden layers while training, one rate or one per hidden layer),
  ``clip_norm`` (the mean gradient is scaled down to this global norm), and
  for the classifier ``class_weight`` (None, a dict ``{label: weight}`` with
  the labels of ``y``, or ``"balanced"``: ``n / (n_classes * count)`` over the
  rows of the call), applied as per-row factors on ``sample_weight``.
- **Not (yet) supported**: ``solver="lbfgs"``, ``activation="identity"``,
  ``MLPRegressor(loss="poisson")`` (clear errors); sparse input (convert with
  ``.toarray()``).
- **ONNX**: ``skl2onnx.to_onnx(estimator, X[:1])`` converts a fitted estimator
  as it converts scikit-learn's (outputs, options, label types), reproducing
  ``predict`` and ``predict_proba``; see :mod:`cymlp._skl2onnx`.
- ``partial_fit`` does one epoch over the given rows like scikit-learn's and,
  like it, keeps the optimizer state (momentum velocity, Adam's moments and
  step count, the learning rate of ``"invscaling"``/``"adaptive"``) from call
  to call, in the network's ``training_state_`` (tested against scikit-learn
  with momentum and Adam).  ``fit`` starts a fresh optimizer, ``warm_start``
  included, as scikit-learn does.  Changing an optimizer setting with
  ``set_params`` between ``partial_fit`` calls starts a fresh state (scikit-learn
  keeps using its first optimizer); so does ``parallel`` other than ``"sync"``
  on several threads, which keeps one state per worker.

Threads: ``n_threads=None`` uses every core the process may use, and follows
``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` like scikit-learn's
own OpenMP estimators, so joblib workers (``GridSearchCV(n_jobs=...)``) do not
oversubscribe the machine.
"""

import dataclasses
import itertools
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from . import _skl2onnx
from ._training import OptimizerConfig
from ._training_terms import check_clip_norm, check_dropout
from .network import PARALLEL_STRATEGIES, Network

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's activation names -> cymlp's ("leaky_relu" is a cymlp extra)
_ACTIVATIONS = {"relu": "relu", "logistic": "sigmoid", "tanh": "tanh", "leaky_relu": "leaky_relu"}
_OUT_ACTIVATIONS = {"softmax": "softmax", "logistic": "sigmoid", "identity": "identity"}
_SOLVERS = ("sgd", "adam")
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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


class _BaseMLP(BaseEstimator):
    """The training loop shared by the classifier and the regressor.

    Every call into the :class:`cymlp.Network` goes through :meth:`_build_network`
    (construction), :meth:`_run_epochs` (training) and :meth:`_forward`
    (prediction), so that the network's options are set in one place.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, n_threads=None, parallel="sync", dropout=0.0, clip_norm=None):
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

    def _check_params(self):
        """Validate the constructor parameters (scikit-learn's ranges); return the hidden sizes."""
        if self.solver == "lbfgs":
            raise ValueError(
                "solver='lbfgs' is not available in cymlp, which trains by mini-batch gradient "
                "descent; use solver='adam' (the default) or solver='sgd', or "
                "sklearn.neural_network for L-BFGS")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be 'adam' or 'sgd'; got {self.solver!r}")
        if self.activation == "identity":
            raise ValueError(
                "activation='identity' (linear hidden layers) is not available in cymlp; use "
                "'relu', 'tanh' or 'logistic', or hidden_layer_sizes=() for a linear model")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; "
                             f"got {self.activation!r}")
        if self.learning_rate not in _LEARNING_RATES:
            raise ValueError(f"learning_rate must be one of {_LEARNING_RATES}; "
                             f"got {self.learning_rate!r}")
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        for size in hidden:
            if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size <= 0:
                raise ValueError("hidden_layer_sizes must be positive integers, e.g. (100,) or "
                                 f"(64, 32); got {self.hidden_layer_sizes!r}")
        if self.batch_size != "auto":
            _check_number("batch_size", self.batch_size, low=1, integer=True)
        _check_number("alpha", self.alpha, low=0)
        _check_number("learning_rate_init", self.learning_rate_init, low=0, low_open=True)
        _check_number("power_t", self.power_t, low=0)
        _check_number("max_iter", self.max_iter, low=1, integer=True)
        _check_number("tol", self.tol, low=0)
        _check_number("momentum", self.momentum, low=0, high=1, high_open=True)
        _check_number("validation_fraction", self.validation_fraction, low=0, high=1,
                      low_open=True, high_open=True)
        _check_number("beta_1", self.beta_1, low=0, high=1, high_open=True)
        _check_number("beta_2", self.beta_2, low=0, high=1, high_open=True)
        _check_number("epsilon", self.epsilon, low=0, low_open=True)
        _check_number("n_iter_no_change", self.n_iter_no_change, low=1, integer=True)
        _check_number("max_fun", self.max_fun, low=1, integer=True)
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping", "verbose"):
            _check_bool(name, getattr(self, name))
        if self.dtype is not None:
            try:
                dtype = np.dtype(self.dtype)
            except TypeError:
                dtype = None
            if dtype not in _DTYPES:
                raise ValueError("dtype must be None (follow X: float32 stays float32, anything "
                                 f"else becomes float64), 'float32' or 'float64'; got {self.dtype!r}")
        if self.parallel not in PARALLEL_STRATEGIES:
            raise ValueError(f"parallel must be one of {PARALLEL_STRATEGIES}; got {self.parallel!r}")
        check_dropout(self.dropout, [0, *hidden, 0])
        check_clip_norm(self.clip_norm)
        return hidden

    def _fit_dtype(self):
        """The dtype X is converted to: the network's once it exists and is reused."""
        if self.dtype is not None:
            return np.dtype(self.dtype)
        return [np.float64, np.float32]       # validate_data keeps float32, else float64

    # -- fit -------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` (n_samples, n_features) and ``y``; returns ``self``.

        ``sample_weight`` (n_samples,), weights >= 0: each mini-batch minimises
        the weighted mean loss, as in scikit-learn (see the module docstring).
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental):
        hidden = self._check_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "_net") or (not self.warm_start and not incremental)
        dtype = self._fit_dtype() if first_pass else self._net.dtype
        X, Y = self._validate_input(X, y, incremental, reset=first_pass, dtype=dtype)
        sample_weight = self._row_weights(sample_weight, X, Y)
        init = None
        if first_pass:
            self._random_state = check_random_state(self.random_state)
            init = self._initialize(X.shape[1], hidden, Y.shape[1], X.dtype)
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} outputs but the model was fitted with "
                             f"{self.n_outputs_}; use warm_start=False to start afresh")
        self._fit_stochastic(X, Y, sample_weight, incremental, init)
        return self

    def _row_weights(self, sample_weight, X, Y):
        """The rows' weights (float64 (n,)) from ``sample_weight``, or None."""
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, copy=True)
        return sample_weight

    def _initialize(self, n_features, hidden, n_outputs, dtype):
        """Reset the fitted state and draw the initial parameters as scikit-learn does."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(hidden) + 2
        self.out_activation_ = self._out_activation()
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self._learning_rate = self.learning_rate_init
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
        if hasattr(self, "_net"):
            del self._net
        # Glorot uniform for coefs and intercepts, layer by layer, as scikit-learn draws them
        sizes = [n_features, *hidden, n_outputs]
        params = []
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = self._random_state.uniform(-bound, bound, fan_out)
            params.append((coef.astype(dtype), intercept.astype(dtype)))
        return sizes, params

    def _build_network(self, sizes, params, dtype, seed):
        """The one place a Network is constructed (its seed drives the epoch shuffles)."""
        net = Network(sizes, activation=_ACTIVATIONS[self.activation],
                      output=_OUT_ACTIVATIONS[self.out_activation_], loss=self._network_loss(),
                      dtype=dtype, n_threads=self.n_threads, seed=seed, dropout=self.dropout)
        for W, b, (coef, intercept) in zip(net.weights, net.biases, params):
            W[...] = coef.T
            b[...] = intercept
        return net

    def _fit_stochastic(self, X, Y, sample_weight, incremental, init):
        early_stopping = self.early_stopping
        w_val = None
        if early_stopping:
            # the same split as scikit-learn's (stratified for binary classification only)
            stratify = Y if self._stratify_split() else None
            arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
            parts = train_test_split(*arrays, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
            X, X_val, Y, Y_val = parts[:4]
            if sample_weight is not None:
                sample_weight, w_val = parts[4:]
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            y_val = self._decode(Y_val)
        else:
            X_val = y_val = None
        if init is not None:
            sizes, params = init
            seed = int(self._random_state.randint(np.iinfo(np.int32).max))
            self._net = self._build_network(sizes, params, X.dtype, seed)
            self._best_params = None
        self._net.n_threads = self.n_threads        # set_params between warm-started fits
        self._net.dropout = self.dropout
        if not incremental:
            self._learning_rate = self.learning_rate_init   # a fresh optimizer, as scikit-learn
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped", UserWarning, stacklevel=3)
            batch_size = min(self.batch_size, n_samples)
        n_batches = -(-n_samples // batch_size)
        # scikit-learn divides alpha by each batch's weight sum (its rows when
        # unweighted): weight_decay uses the mean weight sum of a full batch
        mean_weight = 1.0 if sample_weight is None else float(sample_weight.mean())
        if not mean_weight > 0:
            mean_weight = 1.0           # all weights 0: the network refuses them clearly
        loss_scale = Y.shape[1] if self.out_activation_ == "identity" else 1
        sgd = self.solver == "sgd"
        stopped = False

        def end_of_epoch(history):
            nonlocal stopped
            penalty = sum(float(np.dot(W.ravel(), W.ravel())) for W in self._net.weights)
            loss = (history.loss[-1] / loss_scale
                    + n_batches * 0.5 * self.alpha * penalty / (n_samples * mean_weight))
            self.n_iter_ += 1
            self.t_ += n_samples
            self.loss_ = loss
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            self._update_no_improvement_count(early_stopping, X_val, y_val, w_val)
            if sgd and self.learning_rate == "invscaling":
                self._learning_rate = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            if self._no_improvement_count > self.n_iter_no_change:
                what = ("Validation score did not improve" if early_stopping
                        else "Training loss did not improve")
                msg = (f"{what} more than tol={self.tol:f} for {self.n_iter_no_change} "
                       "consecutive epochs.")
                if sgd and self.learning_rate == "adaptive" and self._learning_rate > 1e-6:
                    self._learning_rate /= 5.0
                    self._no_improvement_count = 0
                    if self.verbose:
                        print(msg + f" Setting learning rate to {self._learning_rate:f}")
                else:
                    if self.verbose:
                        print(msg + " Learning rate too small. Stopping." if sgd and
                              self.learning_rate == "adaptive" else msg + " Stopping.")
                    stopped = True
                    return False
            return True

        self.n_iter_ = 0
        try:
            self._run_epochs(X, Y, sample_weight, 1 if incremental else self.max_iter, batch_size,
                             self.alpha / (batch_size * mean_weight), end_of_epoch, incremental)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if not stopped and not incremental and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning)
        if early_stopping and self._best_params is not None:
            for target, best in zip(self._net.weights + self._net.biases, self._best_params):
                target[...] = best

    def _run_epochs(self, X, Y, sample_weight, epochs, batch_size, weight_decay, end_of_epoch,
                    incremental):
        """The one place the network trains.

        ``fit`` starts a fresh optimizer state (as scikit-learn does, with
        ``warm_start`` too); ``partial_fit`` continues the network's
        ``training_state_`` (momentum, Adam's moments and step count) like
        scikit-learn's, which keeps its ``_optimizer`` between calls.
        """
        momentum = self.momentum if self.solver == "sgd" else 0.0
        resume = incremental and self._can_resume(momentum, weight_decay)
        self._net.fit(X, Y, epochs=epochs, batch_size=batch_size, lr=self.learning_rate_init,
                      momentum=momentum, nesterov=bool(self.nesterovs_momentum),
                      weight_decay=weight_decay, shuffle=bool(self.shuffle), optimizer=self.solver,
                      lr_schedule=lambda epoch, epochs, lr: self._learning_rate,
                      beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon,
                      callbacks=[end_of_epoch], parallel=self.parallel, resume=resume,
                      sample_weight=sample_weight, clip_norm=self.clip_norm)

    def _can_resume(self, momentum, weight_decay):
        """Whether ``partial_fit`` can continue the network's optimizer state.

        scikit-learn keeps the optimizer it made on the first call, whatever
        ``set_params`` changes later; cymlp refuses to resume a state made
        with other optimizer settings, so such a change (of ``solver``,
        ``momentum``, ``nesterovs_momentum``, ``beta_1``, ``beta_2`` or
        ``epsilon``) starts a fresh state instead.  ``weight_decay`` is
        ``alpha / batch_size`` and follows the rows of each call (scikit-learn
        divides ``alpha`` by each batch's rows): it is updated in the state,
        whose buffers do not depend on it.  ``parallel`` other than "sync" on
        several threads keeps one state per worker and cannot resume.
        """
        state = self._net.training_state_
        if state is None or (self.parallel != "sync" and self._net.effective_n_threads > 1):
            return False
        if state.optimizer.weight_decay != weight_decay:
            state.optimizer = dataclasses.replace(state.optimizer, weight_decay=weight_decay)
        wanted = OptimizerConfig(self.solver, momentum, bool(self.nesterovs_momentum), weight_decay,
                                 self.beta_1, self.beta_2, self.epsilon)
        return state.mismatch(wanted) is None

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, w_val):
        if early_stopping:
            score = self._score_function(y_val, self._decode(self._net.feedforward(X_val)),
                                         sample_weight=w_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = [p.copy() for p in self._net.weights + self._net.biases]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    # -- prediction --------------------------------------------------------------------

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_net")

    def _forward(self, X):
        """Output activations (n_samples, n_outputs_) of validated ``X``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self._net.dtype, order="C")
        return self._net.feedforward(X)

    @property
    def coefs_(self):
        """Weight matrices, ``coefs_[i]`` of shape (n_in, n_out): views into the network."""
        check_is_fitted(self)
        return [W.T for W in self._net.weights]

    @property
    def intercepts_(self):
        """Bias vectors, ``intercepts_[i]`` of shape (n_out,): views into the network."""
        check_is_fitted(self)
        return list(self._net.biases)

    @property
    def network_(self):
        """The fitted :class:`cymlp.Network` (save it, or use it without scikit-learn)."""
        check_is_fitted(self)
        return self._net

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by cymlp's compiled path.

    The parameters, fitted attributes and methods of
    ``sklearn.neural_network.MLPClassifier`` for ``solver`` in {"adam", "sgd"}
    (see the module docstring for the exact correspondence), plus:

    Parameters
    ----------
    dtype : {None, "float32", "float64"}, default None
        Precision of the network.  None follows ``X`` as scikit-learn does:
        float32 stays float32, anything else becomes float64.  float32 is
        about twice as fast.
    n_threads : int or None, default None
        Threads for training and prediction; None uses every usable core,
        within ``OMP_NUM_THREADS`` and ``threadpoolctl`` limits.
    parallel : {"sync", "hogwild", "average"}, default "sync"
        Multi-threaded training strategy (docs/parallel-sgd.md); only
        ``"sync"`` is deterministic.
    dropout : float or sequence of float in [0, 1), default 0.0
        Inverted dropout on the hidden layers while training (one rate, or one
        per hidden layer); prediction never drops units.
    clip_norm : float > 0 or None, default None
        Scale each mini-batch's mean gradient down to this global norm.
    class_weight : None, dict or "balanced", default None
        Weights of the classes, keys as in ``y``; "balanced" weighs each class
        by ``n_rows / (n_classes * count)``.  Multiplies ``sample_weight``.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_, coefs_, intercepts_, loss_,
    loss_curve_, validation_scores_, best_validation_score_, best_loss_,
    n_iter_, t_, n_layers_, n_outputs_, out_activation_
        As in scikit-learn.  ``coefs_[i]`` is (n_in, n_out), a view into the network.
    network_ : cymlp.Network
        The trained network.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, n_threads=None, parallel="sync", dropout=0.0, clip_norm=None,
                 class_weight=None):
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

    def _row_weights(self, sample_weight, X, Y):
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

    def _validate_input(self, X, y, incremental, reset, dtype):
        X, y = validate_data(self, X, y, multi_output=True, dtype=dtype, order="C", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
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

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _network_loss(self):
        return "cross_entropy"

    def _stratify_split(self):
        return self.n_outputs_ == 1

    def _decode(self, out):
        """Labels from output activations (or from binarized targets)."""
        if self.n_outputs_ == 1:
            out = out.ravel()
        return self._label_binarizer.inverse_transform(out)

    _score_function = staticmethod(accuracy_score)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch of training over the given rows; returns ``self``.

        ``classes`` (every label that will ever appear) is required on the
        first call and must not change afterwards.  The optimizer state
        (momentum, Adam's moments) carries over from call to call, as in
        scikit-learn.
        """
        first_call = not hasattr(self, "classes_")
        if first_call:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(np.asarray(classes))
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(f"`classes={classes!r}` is not the same as on the first call to "
                             f"partial_fit, which was {self.classes_!r}")
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predicted labels: (n_samples,), or (n_samples, n_classes) indicators for multilabel y."""
        return self._decode(self._forward(X))

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        out = self._forward(X)
        if self.n_outputs_ == 1:
            p = out.ravel()
            return np.vstack([1 - p, p]).T
        return out

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor (squared error) trained by cymlp's compiled path.

    The parameters, fitted attributes and methods of
    ``sklearn.neural_network.MLPRegressor`` for ``solver`` in {"adam", "sgd"}
    and ``loss="squared_error"``, plus ``dtype``, ``n_threads``,
    ``parallel``, ``dropout`` and ``clip_norm`` as in :class:`MLPClassifier`.  Single- and multi-output
    targets; ``coefs_[i]`` is (n_in, n_out), a view into ``network_``.
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, n_threads=None, parallel="sync", dropout=0.0, clip_norm=None):
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

    def _check_params(self):
        if self.loss == "poisson":
            raise ValueError("loss='poisson' is not available in cymlp; use loss='squared_error' "
                             "(e.g. on log-transformed targets)")
        if self.loss != "squared_error":
            raise ValueError(f"loss must be 'squared_error'; got {self.loss!r}")
        return super()._check_params()

    def _validate_input(self, X, y, incremental, reset, dtype):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=dtype,
                             order="C", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        return X, np.ascontiguousarray(Y, dtype=X.dtype)

    def _out_activation(self):
        return "identity"

    def _network_loss(self):
        return "quadratic"

    def _stratify_split(self):
        return False

    def _decode(self, out):
        return out.ravel() if out.shape[1] == 1 else out

    _score_function = staticmethod(r2_score)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch of training over the given rows; returns ``self``.

        The optimizer state (momentum, Adam's moments) carries over from call
        to call, as in scikit-learn.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predictions, (n_samples,) or (n_samples, n_outputs) for 2-D training targets."""
        return self._decode(self._forward(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


# skl2onnx converters (cymlp/_skl2onnx.py): registered when skl2onnx is imported, never importing it
_skl2onnx.register_when_imported(MLPClassifier, MLPRegressor)
