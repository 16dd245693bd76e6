"""The :class:`Network`: parameters, training loop, prediction, persistence.

A network owns its parameters in one flat buffer; ``weights[l]`` and
``biases[l]`` are views into it, so writing into them changes the network and
both backends see the same memory (``net.weights[l] = W`` copies ``W`` into
that view).  The architecture (``sizes``, ``activation``, ``output``,
``loss_name``, ``dtype``) is fixed when the network is built.  The backend (``"cython"`` or ``"numpy"``)
supplies only the passes: forward, backward and a trainer that runs SGD steps.
Validation, the epoch loop, schedules, early stopping, divergence and
interrupt handling, and saving are shared here.
"""

import math
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _persistence, reference
from . import _validation as v
from .history import History

PREDICT_CHUNK_ROWS = 8192          # feedforward works through large inputs in chunks of this many rows
TARGET_SECONDS_PER_CALL = 0.2      # the trainer returns to Python about this often

PARALLEL_STRATEGIES = ("sync", "hogwild", "average")
AVERAGE_WEIGHTINGS = ("uniform", "examples")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "step", "cosine")


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being finite during ``fit``."""


@dataclass(frozen=True)
class OptimizerConfig:
    """How one step turns a mean gradient into a parameter update."""
    name: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


def available_backends():
    """Names of the backends that can run here, the default first."""
    try:
        from . import _cython_backend  # noqa: F401
    except ImportError:
        return ("numpy",)
    return ("cython", "numpy")


def _get_backend(name):
    if name == "cython":
        try:
            from ._cython_backend import CythonBackend
        except ImportError as exc:
            raise ValueError(
                "backend='cython' is not available: the compiled extension was not built "
                f"({exc}). Reinstall with `pip install .` and a C compiler, or use backend='numpy'"
            ) from None
        return CythonBackend()
    from ._numpy_backend import NumpyBackend
    return NumpyBackend()


def _init_scale(activation, n_in, n_out):
    """Glorot/Xavier for sigmoid and tanh, He for the ReLU family."""
    if activation in ("relu", "leaky_relu"):
        return math.sqrt(2.0 / n_in)
    return math.sqrt(2.0 / (n_in + n_out))


class _Fixed:
    """A read-only attribute of the architecture, stored as ``_<name>``.

    The parameter buffer and the compiled plans are sized from the
    architecture, so changing it on a built network would leave them
    inconsistent; assignment raises an AttributeError that says what to do.
    """

    def __init__(self, doc, advice="build a new Network with the architecture you want"):
        self.__doc__ = doc
        self.advice = advice

    def __set_name__(self, owner, name):
        self.name = name
        self.private = "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return getattr(obj, self.private)

    def __set__(self, obj, value):
        raise AttributeError(f"Network.{self.name} is fixed when the network is built "
                             f"(its parameter buffer is sized from it); {self.advice}")

    def __delete__(self, obj):
        self.__set__(obj, None)


class LayerParams(Sequence):
    """The per-layer views ``weights`` or ``biases`` of a network's flat buffer.

    Reads give the views themselves (writing into ``net.weights[l][...]``
    changes the network).  ``net.weights[l] = W`` copies ``W`` into the
    view after checking its shape, that it converts to the network's dtype
    and that it is finite there; the buffer, and so every backend, sees the
    change.  Layers cannot be added, removed or replaced by other arrays.
    """

    __slots__ = ("_dtype", "_kind", "_views")

    def __init__(self, views, kind, dtype):
        self._views = tuple(views)
        self._kind = kind
        self._dtype = dtype

    def __len__(self):
        return len(self._views)

    def __iter__(self):
        return iter(self._views)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(self._views[index])
        return self._views[index]

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            raise TypeError(f"assign {self._kind} one layer at a time: "
                            f"net.{self._kind}[l] = array")
        try:
            view = self._views[index]
        except TypeError:
            raise TypeError(f"{self._kind} indices must be integers; got {index!r}") from None
        except IndexError:
            raise IndexError(f"the network has {len(self)} layers of {self._kind}; "
                             f"got index {index}") from None
        name = f"{self._kind}[{index}]"
        value = v.check_finite_params(name, value, self._dtype)
        if value.shape != view.shape:
            hint = (" (transposed? weights[l] has shape (n_out, n_in))"
                    if value.shape == view.shape[::-1] else "")
            raise ValueError(f"{name} has shape {view.shape}; got an array of shape "
                             f"{value.shape}{hint}")
        view[...] = value

    def __delitem__(self, index):
        raise TypeError("the layers of a network cannot be removed; build a new Network")

    def __add__(self, other):
        return list(self) + list(other)

    def __radd__(self, other):
        return list(other) + list(self)

    def __eq__(self, other):
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return repr(list(self._views))


class Network:
    """A fully connected feed-forward network trained by mini-batch SGD.

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, inputs first: ``[784, 100, 10]`` has 784 inputs, one
        hidden layer of 100 units and 10 outputs.
    activation : {"relu", "sigmoid", "tanh", "leaky_relu"}
        Activation of the hidden layers.
    output : {"softmax", "sigmoid", "identity"}
        Activation of the output layer.
    loss : {"cross_entropy", "quadratic"}
        ``quadratic``: C = (1/n) Σ_x ½‖a(x) − y(x)‖².  ``cross_entropy``:
        −(1/n) Σ_x Σ_k y_k log a_k with softmax, the binary form summed over
        outputs with sigmoid (not defined for identity outputs).
    dtype : {"float32", "float64"}
        Precision of the parameters and of all computation.
    backend : {"cython", "numpy"} or None
        ``None`` picks the compiled path when it is built, else NumPy.
    n_threads : int or None
        Threads for the compiled path; ``None`` uses every usable core.
    seed : int or None
        Seeds weight initialisation and the per-epoch shuffles.

    Attributes
    ----------
    sizes : tuple of int
        Read-only, like ``activation``, ``output``, ``loss_name`` and
        ``dtype``: build a new network (or ``copy(dtype=...)``) to change them.
    weights : sequence of ndarray
        ``weights[l]`` has shape ``(sizes[l+1], sizes[l])``: z = W a + b.  A
        view into the parameter buffer; ``net.weights[l] = W`` copies ``W`` in.
    biases : sequence of ndarray
        ``biases[l]`` has shape ``(sizes[l+1],)``; assigned the same way.
    history_ : History or None
        The history of the last (possibly interrupted) ``fit``.
    """

    sizes = _Fixed("Units per layer, inputs first (a tuple).")
    activation = _Fixed("Activation of the hidden layers.")
    output = _Fixed("Activation of the output layer.")
    loss_name = _Fixed("Name of the loss.")
    dtype = _Fixed("The numpy dtype of the parameters and of all computation.",
                   advice="use net.copy(dtype=...) for a copy in another dtype")

    def __init__(self, sizes, activation="relu", output="softmax", loss="cross_entropy",
                 dtype="float32", backend=None, n_threads=None, seed=0):
        self._set_architecture(sizes, activation, output, loss, dtype)
        self.backend = backend
        self.n_threads = n_threads
        self.seed = v.check_seed(seed)
        self._rng = np.random.default_rng(seed)
        self._allocate()
        for W, b in zip(self.weights, self.biases):
            n_out, n_in = W.shape
            W[...] = self._rng.standard_normal((n_out, n_in)) * _init_scale(self.activation, n_in, n_out)
            b[...] = 0
        self.history_ = None

    # -- parameters ------------------------------------------------------

    def _set_architecture(self, sizes, activation, output, loss, dtype):
        """Validate and store the read-only architecture (before any buffer exists)."""
        self._sizes = tuple(v.check_sizes(sizes))
        self._activation = v.check_choice("activation", activation, reference.HIDDEN_ACTIVATIONS)
        self._output = v.check_choice("output", output, reference.OUTPUT_ACTIVATIONS)
        self._loss_name = v.check_choice("loss", loss, reference.LOSSES)
        if self._loss_name == "cross_entropy" and self._output == "identity":
            raise ValueError("loss='cross_entropy' needs output='softmax' or 'sigmoid'; "
                             "use loss='quadratic' with output='identity' for regression")
        self._dtype = v.check_dtype(dtype)

    def _allocate(self, theta=None):
        """Create the flat parameter buffer and the per-layer views into it."""
        shapes = list(zip(self.sizes[1:], self.sizes[:-1]))
        total = sum(n_out * n_in + n_out for n_out, n_in in shapes)
        self._theta = np.zeros(total, dtype=self.dtype) if theta is None else theta
        weights, biases = [], []
        offset = 0
        for n_out, n_in in shapes:
            weights.append(self._theta[offset:offset + n_out * n_in].reshape(n_out, n_in))
            offset += n_out * n_in
            biases.append(self._theta[offset:offset + n_out])
            offset += n_out
        self._weights = LayerParams(weights, "weights", self.dtype)
        self._biases = LayerParams(biases, "biases", self.dtype)

    @property
    def weights(self):
        """``weights[l]``, shape ``(sizes[l+1], sizes[l])``: views into the parameter buffer."""
        return self._weights

    @weights.setter
    def weights(self, value):
        raise AttributeError("net.weights cannot be replaced; assign layer by layer "
                             "(net.weights[l] = W) or all at once with net.set_flat_params(theta)")

    @property
    def biases(self):
        """``biases[l]``, shape ``(sizes[l+1],)``: views into the parameter buffer."""
        return self._biases

    @biases.setter
    def biases(self, value):
        raise AttributeError("net.biases cannot be replaced; assign layer by layer "
                             "(net.biases[l] = b) or all at once with net.set_flat_params(theta)")

    @property
    def backend(self):
        """Name of the backend in use (``"cython"`` or ``"numpy"``)."""
        return self._backend.name

    @backend.setter
    def backend(self, name):
        self._backend = _get_backend(v.check_backend(name, available_backends()))

    @property
    def n_threads(self):
        return self._n_threads

    @n_threads.setter
    def n_threads(self, n_threads):
        v.effective_n_threads(n_threads)  # validate now, resolve when used
        self._n_threads = n_threads

    @property
    def effective_n_threads(self):
        """Threads the compiled path will use (``n_threads`` resolved)."""
        return v.effective_n_threads(self._n_threads)

    @property
    def n_params(self):
        return self._theta.size

    def get_flat_params(self):
        """A copy of all parameters as one flat array (the internal layout)."""
        return self._theta.copy()

    def set_flat_params(self, theta):
        """Overwrite all parameters from a flat array made by :meth:`get_flat_params`.

        ``theta`` is cast to the network's dtype and must be finite after the
        cast (1e300 does not fit in float32); on error nothing changes.
        """
        if not hasattr(theta, "shape"):
            theta = np.asarray(theta)
        if theta.shape != self._theta.shape:
            raise ValueError(f"expected {self._theta.size} parameters, got shape {theta.shape}")
        self._theta[...] = v.check_finite_params("theta", theta, self.dtype)

    def get_params(self):
        """Deprecated alias of :meth:`get_flat_params` (removed in the next release)."""
        warnings.warn("Network.get_params() is deprecated and will be removed in the next "
                      "release; use get_flat_params() (get_params is scikit-learn's name for "
                      "hyper-parameters)", DeprecationWarning, stacklevel=2)
        return self.get_flat_params()

    def set_params(self, theta):
        """Deprecated alias of :meth:`set_flat_params` (removed in the next release)."""
        warnings.warn("Network.set_params() is deprecated and will be removed in the next "
                      "release; use set_flat_params() (set_params is scikit-learn's name for "
                      "hyper-parameters)", DeprecationWarning, stacklevel=2)
        return self.set_flat_params(theta)

    def _check_params_finite(self):
        """Refuse to train from parameters that are NaN or infinite (written in from outside)."""
        if not np.isfinite(self._theta).all():
            bad = [f"{kind}[{l}]" for kind, params in (("weights", self.weights), ("biases", self.biases))
                   for l, p in enumerate(params) if not np.isfinite(p).all()]
            raise ValueError(
                f"the network's parameters contain NaN or infinity (in {', '.join(bad)}), so "
                f"training cannot start from them; they were written in from outside fit. "
                f"Set finite values (net.set_flat_params(theta), net.weights[l] = W) or build a "
                f"new Network")

    def __repr__(self):
        return (f"Network({list(self.sizes)}, activation={self.activation!r}, output={self.output!r}, "
                f"loss={self.loss_name!r}, dtype={self.dtype.name!r}, backend={self.backend!r})")

    # -- validation helpers -----------------------------------------------

    def _check_X(self, X, name="X"):
        return v.check_X(X, self.sizes[0], self.dtype, name=name)

    def _check_Xy(self, X, y, x_name="X", y_name="y"):
        X = self._check_X(X, name=x_name)
        Y, labels = v.check_targets(y, X.shape[0], self.sizes[-1], self.dtype,
                                    loss=self.loss_name, output=self.output,
                                    name=y_name, x_name=x_name)
        return X, Y, labels

    @property
    def is_classifier(self):
        return self.output in ("softmax", "sigmoid") and self.sizes[-1] >= 2

    # -- the passes ----------------------------------------------------------

    def feedforward(self, X):
        """Output activations for the rows of ``X``: an array (n, sizes[-1]).

        Large inputs are processed in chunks of rows, so memory stays bounded.
        """
        X = self._check_X(X)
        return self._feedforward(X)

    def _feedforward(self, X):
        with np.errstate(over="ignore", invalid="ignore"):   # overflow is reported below
            if X.shape[0] <= PREDICT_CHUNK_ROWS:
                return v.check_finite_result("outputs", self._backend.feedforward(self, X))
            out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
            for start in range(0, X.shape[0], PREDICT_CHUNK_ROWS):
                out[start:start + PREDICT_CHUNK_ROWS] = self._backend.feedforward(
                    self, X[start:start + PREDICT_CHUNK_ROWS])
        return v.check_finite_result("outputs", out)

    def predict_proba(self, X):
        """Class probabilities (softmax or sigmoid outputs), shape (n, sizes[-1])."""
        return self.feedforward(X)

    def predict(self, X):
        """Predicted class labels (argmax of the outputs) for classifiers;
        the output activations for regression networks (identity output)."""
        out = self.feedforward(X)
        return out.argmax(axis=1) if self.is_classifier else out

    def loss(self, X, y):
        """Mean loss over the rows of ``X`` (no weight decay term)."""
        X, Y, _ = self._check_Xy(X, y)
        with np.errstate(over="ignore", invalid="ignore"):
            return v.check_finite_result("loss", self._evaluate(X, Y)[0])

    def score(self, X, y):
        """Accuracy for integer labels; R² (coefficient of determination) for 2-D targets."""
        X, Y, labels = self._check_Xy(X, y)
        out = self._feedforward(X)
        if labels is not None:
            return float(np.mean(out.argmax(axis=1) == labels))
        with np.errstate(over="ignore", invalid="ignore"):   # outputs near 1e300: reported below
            Y = Y.astype(np.float64)          # square in float64: float32 overflows from 1.8e19
            ss_res = np.sum((Y - out) ** 2)
            ss_tot = np.sum((Y - Y.mean(axis=0)) ** 2)
        v.check_finite_result("score", ss_res)
        return float(1 - ss_res / ss_tot) if ss_tot > 0 else float(ss_res == 0)

    def backprop(self, X, y):
        """Gradient of the mean loss over the rows of ``X``.

        Returns ``(grads_w, grads_b)``, lists shaped like ``weights`` and ``biases``.
        """
        X, Y, _ = self._check_Xy(X, y)
        with np.errstate(over="ignore", invalid="ignore"):
            grads_w, grads_b, _ = self._backend.backprop(self, X, Y)
        v.check_finite_result("gradient", grads_w + grads_b)
        return grads_w, grads_b

    # -- training --------------------------------------------------------------

    def fit(self, X, y, epochs=10, batch_size=64, lr=0.05, momentum=0.9, nesterov=False,
            weight_decay=0.0, shuffle=True, validation_data=None, *, optimizer="sgd",
            lr_schedule="constant", beta1=0.9, beta2=0.999, eps=1e-8, validation_fraction=None,
            early_stopping=False, patience=5, callbacks=None, progress=None, verbose=False,
            on_divergence="raise", parallel="sync", average_every=None,
            average_weighting="uniform"):
        """Train with mini-batch SGD (or Adam); returns a :class:`History`.

        Each epoch shuffles the rows with the network's own random generator
        (unless ``shuffle=False``) and takes consecutive batches of
        ``batch_size`` rows, the last one possibly smaller.  Calling ``fit``
        again continues from the current weights (the optimizer state starts
        afresh).

        Parameters
        ----------
        X : array-like (n, sizes[0])
        y : array-like
            1-D integer class labels, or 2-D targets (n, sizes[-1]).
        epochs : int
            Passes over the data (0 trains nothing).
        batch_size : int
            Rows per step; clipped (with a warning) to the number of rows.
        lr : float
            Learning rate (> 0).
        momentum : float in [0, 1)
            SGD momentum μ: v ← μ·v + g, W ← W − lr·v.  Ignored by Adam.
        nesterov : bool
            Nesterov momentum: W ← W − lr·(g + μ·v).
        weight_decay : float >= 0
            L2 penalty λ on the weights (not the biases): g ← g + λ·W.
        shuffle : bool
            Reshuffle the rows every epoch.
        validation_data : (X_val, y_val) or None
            Evaluated after every epoch (``val_loss``, ``val_accuracy``).
        optimizer : {"sgd", "adam"}
        lr_schedule : {"constant", "step", "cosine"} or callable
            ``step`` halves the rate every ``max(1, epochs // 4)`` epochs;
            ``cosine`` anneals it as lr·½(1 + cos(π·epoch/epochs)); a callable
            gets ``(epoch, epochs, lr)`` (epoch counted from 0) and returns the rate.
        beta1, beta2, eps : float
            Adam's constants.
        validation_fraction : float in (0, 1) or None
            Hold out this fraction of the (shuffled) training rows as validation data.
        early_stopping : bool
            Stop when the validation loss (training loss without validation
            data) has not improved for ``patience`` epochs and restore the
            weights of the best epoch.
        callbacks : list of callables
            Each is called after every epoch with the history; returning
            ``False`` stops training.
        progress : callable or None
            Called as ``progress(epoch, batches_done, n_batches)`` a few times
            per second during an epoch.
        verbose : bool
            Print one line per epoch.
        on_divergence : {"raise", "warn"}
            What to do when the loss or weights stop being finite: both
            restore the last finite weights and stop; ``raise`` then raises
            :class:`TrainingDiverged`, ``warn`` warns and returns the history.
        parallel : {"sync", "hogwild", "average"}
            Multi-threaded strategy of the compiled path (see docs/parallel-sgd.md).
            ``sync`` splits every mini-batch across threads and is
            deterministic; the others need ``backend="cython"``.
        average_every : int, None or "end"
            For ``parallel="average"``: average the replicas every this many
            steps of each replica and at the end of every epoch (None: at the
            end of every epoch; "end": one-shot averaging, the replicas never
            meet and the network holds their average after each epoch).
        average_weighting : {"uniform", "examples"}
            For ``parallel="average"``: weight every replica equally
            (Zinkevich et al.) or by the examples it processed since the last
            averaging (after Cheng et al.); they differ when shards are unequal.
        """
        # ---- validate everything before touching the network
        self._check_params_finite()
        X, Y, labels = self._check_Xy(X, y)
        epochs = v.check_positive_int("epochs", epochs, minimum=0)
        lr = v.check_real("lr", lr, low=0, low_open=True)
        momentum = v.check_real("momentum", momentum, low=0, high=1, high_open=True)
        weight_decay = v.check_real("weight_decay", weight_decay, low=0)
        v.check_choice("optimizer", optimizer, OPTIMIZERS)
        v.check_choice("on_divergence", on_divergence, ("raise", "warn"))
        v.check_choice("parallel", parallel, PARALLEL_STRATEGIES)
        if parallel != "sync" and self.backend != "cython":
            raise ValueError(f"parallel={parallel!r} runs in the compiled path only; use backend='cython'")
        if average_every is not None and average_every != "end":
            v.check_positive_int("average_every", average_every)
        v.check_choice("average_weighting", average_weighting, AVERAGE_WEIGHTINGS)
        beta1 = v.check_real("beta1", beta1, low=0, high=1, high_open=True)
        beta2 = v.check_real("beta2", beta2, low=0, high=1, high_open=True)
        eps = v.check_real("eps", eps, low=0, low_open=True)
        patience = v.check_positive_int("patience", patience)
        v.check_positive_int("batch_size", batch_size)   # before validation_fraction draws from the rng
        schedule = _make_schedule(lr_schedule, lr, epochs)
        callbacks = list(callbacks or [])
        for cb in callbacks + ([progress] if progress is not None else []):
            if not callable(cb):
                raise TypeError(f"callbacks and progress must be callables; got {cb!r}")
        if validation_data is not None and validation_fraction is not None:
            raise ValueError("pass validation_data or validation_fraction, not both")
        if validation_data is not None:
            try:
                X_val, y_val = validation_data
            except (TypeError, ValueError):
                raise ValueError("validation_data must be a pair (X_val, y_val)") from None
            X_val, Y_val, labels_val = self._check_Xy(X_val, y_val, "validation X", "validation y")
        elif validation_fraction is not None:
            fraction = v.check_real("validation_fraction", validation_fraction, low=0, high=1,
                                    low_open=True, high_open=True)
            n_val = int(round(fraction * X.shape[0]))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(f"validation_fraction={fraction} leaves no rows for training or "
                                 f"validation out of {X.shape[0]}")
            split = self._rng.permutation(X.shape[0])
            X_val, Y_val = X[split[:n_val]], Y[split[:n_val]]
            labels_val = None if labels is None else labels[split[:n_val]]
            X, Y = X[split[n_val:]], Y[split[n_val:]]
            labels = None if labels is None else labels[split[n_val:]]
        else:
            X_val = None
        if early_stopping and X_val is None:
            warnings.warn("early_stopping without validation data monitors the training loss",
                          UserWarning, stacklevel=2)
        n = X.shape[0]
        batch_size = v.clip_batch_size(batch_size, n)
        opt = OptimizerConfig(optimizer, momentum, bool(nesterov), weight_decay, beta1, beta2, eps)

        # ---- train
        history = History()
        self.history_ = history
        if epochs == 0:
            return history
        trainer = self._backend.trainer(self, X, Y, labels, batch_size, opt, parallel, average_every,
                                        average_weighting)
        n_batches = -(-n // batch_size)
        last_good = self._theta.copy()       # weights at the last check where all were finite
        best = None                          # (monitored loss, epoch, weights)
        interrupt = _InterruptFlag()
        trainer.should_stop = interrupt.is_set
        steps_per_call = 1
        try:
            with interrupt:
                for epoch in range(epochs):
                    rate = schedule(epoch)
                    order = self._rng.permutation(n) if shuffle else np.arange(n)
                    order = order.astype(np.intp, copy=False)
                    loss_sum = correct = seen = 0
                    done = 0
                    t_epoch = time.perf_counter()
                    while done < n_batches and not interrupt.is_set():
                        stop = min(n_batches, done + steps_per_call)
                        t0 = time.perf_counter()
                        try:
                            # overflow is divergence, detected below; no numpy warnings (or
                            # exceptions under -W error) from inside a step
                            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                                l_sum, n_corr, n_seen, steps = trainer.run(order, done, stop, rate)
                        except BaseException:
                            self._theta[...] = last_good    # never leave a half-done step behind
                            raise
                        elapsed = time.perf_counter() - t0
                        cut_short = steps < stop - done and not interrupt.is_set()
                        loss_sum += l_sum
                        correct += n_corr
                        seen += n_seen
                        done += steps
                        if cut_short or not np.isfinite(l_sum) or not np.isfinite(self._theta).all():
                            self._theta[...] = last_good
                            return self._diverged(history, epoch, on_divergence, rate)
                        np.copyto(last_good, self._theta)
                        # aim for one return to Python every TARGET_SECONDS_PER_CALL
                        if steps:
                            per_step = elapsed / steps
                            steps_per_call = max(1, min(n_batches, int(TARGET_SECONDS_PER_CALL / max(per_step, 1e-9))))
                        if progress is not None:
                            progress(epoch, done, n_batches)
                    seconds = time.perf_counter() - t_epoch
                    if seen == 0:
                        break
                    row = dict(epoch=epoch + 1, loss=loss_sum / seen, lr=rate, seconds=seconds,
                               examples_per_second=seen / seconds if seconds > 0 else float("inf"),
                               accuracy=correct / seen if labels is not None else None)
                    if X_val is not None and not interrupt.is_set():
                        row["val_loss"], out = self._evaluate(X_val, Y_val)
                        if labels_val is not None:
                            row["val_accuracy"] = float(np.mean(out.argmax(axis=1) == labels_val))
                    history.append(**row)
                    if verbose:
                        print(history.format_epoch(-1, epochs), flush=True)
                    if interrupt.is_set():
                        break
                    # every callback sees every completed epoch, the last one included
                    answers = [cb(history) for cb in callbacks]
                    stop_requested = any(answer is False for answer in answers)
                    monitored = row["val_loss"] if X_val is not None else row["loss"]
                    if early_stopping:
                        if best is None or monitored < best[0]:
                            best = (monitored, epoch + 1, self._theta.copy())
                        elif epoch + 1 - best[1] >= patience:
                            stop_requested = True
                    if stop_requested:
                        history.stopped_early = True
                        break
        finally:
            if hasattr(trainer, "close"):
                trainer.close()
        if early_stopping and best is not None and not interrupt.is_set():
            self._theta[...] = best[2]
            history.best_epoch = best[1]
        if interrupt.is_set():
            history.interrupted = True
            raise KeyboardInterrupt("fit interrupted; the network keeps the weights of the last "
                                    "completed step and net.history_ the epochs so far")
        return history

    def _evaluate(self, X, Y):
        """Mean loss and output activations of validated ``X``, ``Y``, in chunks of rows."""
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        total = 0.0
        for start in range(0, X.shape[0], PREDICT_CHUNK_ROWS):
            rows = slice(start, start + PREDICT_CHUNK_ROWS)
            loss, out[rows] = self._backend.loss_and_output(self, X[rows], Y[rows])
            total += loss * out[rows].shape[0]
        return total / X.shape[0], out

    def _diverged(self, history, epoch, on_divergence, rate):
        history.diverged = True
        message = (f"training diverged in epoch {epoch + 1}: the loss or the weights became NaN or "
                   f"infinite at learning rate {rate:g}. The last finite weights were restored; "
                   f"try a smaller lr (e.g. {rate / 10:g}), scaled inputs, or gradient-friendlier settings")
        if on_divergence == "raise":
            raise TrainingDiverged(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        return history

    # -- persistence (cymlp/_persistence.py) ---------------------------------------

    def save(self, path):
        """Save architecture, dtype and parameters to a ``.npz`` file, atomically.

        The file is written to ``PATH.cymlp-tmp-XXXXXXXX`` beside ``path``,
        ``fsync``ed and renamed over it, so an interrupted save never leaves a
        broken model where a good one was.  Re-saving keeps the file's mode; a
        symlink ``path`` is followed (its target is replaced).
        """
        _persistence.save(self, path)

    @classmethod
    def load(cls, path, backend=None, n_threads=None):
        """Load a network saved by :meth:`save` (never executes code from the file).

        A damaged, truncated or hostile file raises ``ValueError`` naming the
        path; nothing large is decompressed or allocated before the file is
        checked against its own configuration.
        """
        _check_runtime_args(backend, n_threads)     # blame the arguments, not the file
        return _persistence.load(cls, path, backend=backend, n_threads=n_threads)

    def __getstate__(self):
        return _persistence.get_state(self)

    def __setstate__(self, state):
        _persistence.set_state(self, state)

    def copy(self, dtype=None, backend=None):
        """An independent copy, optionally in another dtype or backend."""
        net = Network.__new__(Network)
        state = self.__getstate__()
        if dtype is not None:
            dtype = v.check_dtype(dtype)
            state["dtype"] = dtype.name
            state["theta"] = v.check_finite_params(f"copy(dtype={dtype.name!r}): the parameter buffer",
                                                   state["theta"], dtype)
        if backend is not None:
            state["backend"] = backend
        net.__setstate__(state)
        return net


def _check_runtime_args(backend, n_threads):
    """Validate ``backend`` and ``n_threads`` as arguments (for ``load`` and friends)."""
    v.check_backend(backend, available_backends())
    v.effective_n_threads(n_threads)


def _make_schedule(lr_schedule, lr, epochs):
    if callable(lr_schedule):
        def schedule(epoch):
            rate = lr_schedule(epoch, epochs, lr)
            return v.check_real("the learning rate from lr_schedule", rate, low=0, low_open=True)
        return schedule
    v.check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    if lr_schedule == "step":
        step = max(1, epochs // 4)
        return lambda epoch: lr * 0.5 ** (epoch // step)
    if lr_schedule == "cosine":
        return lambda epoch: lr * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
    return lambda epoch: lr


class _InterruptFlag:
    """Turn Ctrl-C during ``fit`` into a flag checked between steps.

    The first SIGINT asks training to stop after the current step (or the
    current compiled call, a fraction of a second); a second one interrupts at
    once.  Only installed in the main thread, where Python delivers signals.
    """

    def __init__(self):
        self._set = False
        self._previous = None

    def is_set(self):
        return self._set

    def _handler(self, signum, frame):
        if self._set:
            raise KeyboardInterrupt
        self._set = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handler)
            except ValueError:
                self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
