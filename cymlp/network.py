"""The :class:`Network`: parameters, training loop, prediction, persistence.

A network owns its parameters in one flat buffer; ``weights[l]`` and
``biases[l]`` are views into it, so writing into them changes the network and
both backends see the same memory (``net.weights[l] = W`` copies ``W`` into
that view).  The architecture (``sizes``, ``activation``, ``output``,
``loss_name``, ``dtype``) is fixed when the network is built.  The backend (``"cython"`` or ``"numpy"``)
supplies only the passes: forward, backward and a trainer that runs SGD steps;
it sees the network's :class:`~cymlp._spec.ModelSpec` and flat buffer only.
``fit`` checks its arguments and hands over to :mod:`cymlp._training` (the
epoch loop, schedules, early stopping, divergence and interrupt handling),
shared by both backends.
"""

import math
import warnings

import numpy as np

from . import _persistence, _threads, _training, reference
from . import _training_terms as terms_
from . import _validation as v
from ._layers import LayerParams, _Fixed
from ._spec import ModelSpec, layer_views
from ._state import resolve_seed
from ._training import (  # noqa: F401  (public names kept here)
    AVERAGE_WEIGHTINGS,
    LR_SCHEDULES,
    OPTIMIZERS,
    PARALLEL_STRATEGIES,
    OptimizerConfig,
    TrainingDiverged,
)

PREDICT_CHUNK_ROWS = 8192          # feedforward works through large inputs in chunks of this many rows


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
        Seeds weight initialisation and the per-epoch shuffles (see
        :meth:`reseed` for new shuffles without new weights); the training
        seed also keys the dropout masks.
    dropout : float or sequence of float, each in [0, 1)
        Inverted dropout on the hidden layers during ``fit``: each hidden
        unit is dropped with this probability (one number for every hidden
        layer, or one per hidden layer) and the kept ones are scaled by
        1/(1-p).  Prediction, ``loss`` and ``score`` never drop units.  The
        masks are hashed from the training state's (seed, epoch, step) and
        the (layer, row, unit), so both backends draw the same masks for any
        thread count, and a resumed fit draws the masks the uninterrupted
        one would have drawn.  Settable.

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
    training_state_ : TrainingState or None
        The optimizer's buffers and counters (``step``, ``epoch``, ``seed``)
        that ``fit(..., resume=True)`` and :meth:`partial_fit` continue;
        None before any training (see :mod:`cymlp._state`).
    """

    sizes = _Fixed("Units per layer, inputs first (a tuple).")
    activation = _Fixed("Activation of the hidden layers.")
    output = _Fixed("Activation of the output layer.")
    loss_name = _Fixed("Name of the loss.")
    dtype = _Fixed("The numpy dtype of the parameters and of all computation.",
                   advice="use net.copy(dtype=...) for a copy in another dtype")

    def __init__(self, sizes, activation="relu", output="softmax", loss="cross_entropy",
                 dtype="float32", backend=None, n_threads=None, seed=0, dropout=0.0):
        self._set_architecture(sizes, activation, output, loss, dtype)
        self.dropout = dropout
        self.backend = backend
        self.n_threads = n_threads
        self.seed = v.check_seed(seed)
        self._rng = np.random.default_rng(seed)
        self._train_seed = resolve_seed(self.seed)
        self.training_state_ = None
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
        spec = self._spec
        self._theta = np.zeros(spec.n_params, dtype=self.dtype) if theta is None else theta
        weights, biases = layer_views(spec.sizes, self._theta)
        self._weights = LayerParams(weights, "weights", self.dtype)
        self._biases = LayerParams(biases, "biases", self.dtype)

    @property
    def _spec(self):
        """The architecture as the backends see it (immutable)."""
        return ModelSpec(self.sizes, self.activation, self.output, self.loss_name, self.dtype)

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
    def dropout(self):
        """Drop probability of each hidden layer during ``fit`` (a tuple)."""
        return self._dropout

    @dropout.setter
    def dropout(self, dropout):
        self._dropout = terms_.check_dropout(dropout, self.sizes)

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
        _threads.check_n_threads(n_threads)  # validate now, resolve when used
        self._n_threads = n_threads

    @property
    def effective_n_threads(self):
        """Threads the compiled path will use (``n_threads`` resolved)."""
        return _threads.effective_n_threads(self._n_threads)

    @property
    def n_params(self):
        return self._theta.size

    @property
    def training_seed(self):
        """The seed of the validation split and of the training state (dropout masks).

        ``seed`` until :meth:`reseed` gives another; drawn from the operating
        system once when ``seed`` is None.
        """
        return self._train_seed

    def reseed(self, seed):
        """Draw the shuffles (and validation split, dropout masks) from ``seed`` from now on.

        Resets the shuffle generator to ``numpy.random.default_rng(seed)`` and
        sets :attr:`training_seed` (also in ``training_state_``), so that
        replicas of one network can draw independent orders.  The weights and
        the ``seed`` attribute (the initialisation's seed) do not change.
        ``None`` draws a fresh seed from the operating system.
        """
        seed = v.check_seed(seed)
        self._rng = np.random.default_rng(seed)
        self._train_seed = resolve_seed(seed)
        if self.training_state_ is not None:
            self.training_state_.seed = self._train_seed
        return self

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
        dropout = f", dropout={list(self.dropout)}" if any(self.dropout) else ""
        return (f"Network({list(self.sizes)}, activation={self.activation!r}, output={self.output!r}, "
                f"loss={self.loss_name!r}, dtype={self.dtype.name!r}, backend={self.backend!r}"
                f"{dropout})")

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
        spec, n_threads = self._spec, self.effective_n_threads
        with np.errstate(over="ignore", invalid="ignore"):   # overflow is reported below
            if X.shape[0] <= PREDICT_CHUNK_ROWS:
                return v.check_finite_result(
                    "outputs", self._backend.feedforward(spec, self._theta, X, n_threads))
            out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
            for start in range(0, X.shape[0], PREDICT_CHUNK_ROWS):
                out[start:start + PREDICT_CHUNK_ROWS] = self._backend.feedforward(
                    spec, self._theta, X[start:start + PREDICT_CHUNK_ROWS], n_threads)
        return v.check_finite_result("outputs", out)

    def predict_proba(self, X):
        """Class probabilities (softmax or sigmoid outputs), shape (n, sizes[-1])."""
        return self.feedforward(X)

    def predict(self, X):
        """Predicted class labels (argmax of the outputs) for classifiers;
        the output activations for regression networks (identity output)."""
        out = self.feedforward(X)
        return out.argmax(axis=1) if self.is_classifier else out

    def loss(self, X, y, sample_weight=None):
        """Mean loss over the rows of ``X`` (no weight decay term, no dropout).

        With ``sample_weight`` (n,) (finite, >= 0, positive sum) the weighted
        mean Σ w C / Σ w; a row of weight 0 counts as if it were removed.
        """
        X, Y, _ = self._check_Xy(X, y)
        w = terms_.check_sample_weight(sample_weight, X.shape[0])
        with np.errstate(over="ignore", invalid="ignore"):
            loss = _training.evaluate(self._backend, self._spec, self._theta, X, Y,
                                      self.effective_n_threads, sample_weight=w)[0]
            return v.check_finite_result("loss", loss)

    def score(self, X, y, sample_weight=None):
        """Accuracy for integer labels; R² (coefficient of determination) for 2-D targets.

        With ``sample_weight`` the weighted accuracy Σ w·[correct] / Σ w, or
        the weighted R² (as scikit-learn's ``r2_score``).
        """
        X, Y, labels = self._check_Xy(X, y)
        w = terms_.check_sample_weight(sample_weight, X.shape[0])
        out = self._feedforward(X)
        if labels is not None:
            return float(np.average(out.argmax(axis=1) == labels, weights=w))
        with np.errstate(over="ignore", invalid="ignore"):   # outputs near 1e300: reported below
            Y = Y.astype(np.float64)          # square in float64: float32 overflows from 1.8e19
            rows = 1.0 if w is None else w[:, None]
            ss_res = np.sum(rows * (Y - out) ** 2)
            ss_tot = np.sum(rows * (Y - np.average(Y, axis=0, weights=w)) ** 2)
        v.check_finite_result("score", ss_res)
        return float(1 - ss_res / ss_tot) if ss_tot > 0 else float(ss_res == 0)

    def backprop(self, X, y, sample_weight=None):
        """Gradient of the mean loss over the rows of ``X`` (no dropout).

        Returns ``(grads_w, grads_b)``, lists shaped like ``weights`` and
        ``biases``.  With ``sample_weight``, the gradient of the weighted
        mean loss Σ w C / Σ w.
        """
        X, Y, _ = self._check_Xy(X, y)
        w = terms_.check_sample_weight(sample_weight, X.shape[0])
        with np.errstate(over="ignore", invalid="ignore"):
            grads_w, grads_b, _ = self._backend.backprop(self._spec, self._theta, X, Y,
                                                         self.effective_n_threads, sample_weight=w)
        v.check_finite_result("gradient", grads_w + grads_b)
        return grads_w, grads_b

    # -- training --------------------------------------------------------------

    def fit(self, X, y, epochs=10, batch_size=64, lr=0.05, momentum=0.9, nesterov=False,
            weight_decay=0.0, shuffle=True, validation_data=None, *, optimizer="sgd",
            lr_schedule="constant", beta1=0.9, beta2=0.999, eps=1e-8, validation_fraction=None,
            early_stopping=False, patience=5, callbacks=None, progress=None, verbose=False,
            on_divergence="raise", parallel="sync", average_every=None,
            average_weighting="uniform", sample_weight=None, class_weight=None, clip_norm=None,
            resume=False, lr_schedule_epochs=None):
        """Train with mini-batch SGD (or Adam); returns a :class:`History`.

        Each epoch shuffles the rows with the network's own random generator
        (unless ``shuffle=False``) and takes consecutive batches of
        ``batch_size`` rows, the last one possibly smaller.  Calling ``fit``
        again continues from the current weights; the optimizer state starts
        afresh unless ``resume=True``.

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
            average_weighting="uniform", sample_weight=None, class_weight=None, clip_norm=None):
            average_weighting="uniform", resume=False, lr_schedule_epochs=None):
        """
        settings, data = _training.check_fit(
            self, X, y, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
            nesterov=nesterov, weight_decay=weight_decay, shuffle=shuffle,
            validation_data=validation_data, optimizer=optimizer, lr_schedule=lr_schedule,
            beta1=beta1, beta2=beta2, eps=eps, validation_fraction=validation_fraction,
            early_stopping=early_stopping, patience=patience, callbacks=callbacks,
            progress=progress, verbose=verbose, on_divergence=on_divergence, parallel=parallel,
            average_every=average_every, average_weighting=average_weighting,
            sample_weight=sample_weight, class_weight=class_weight, clip_norm=clip_norm,
            resume=resume, lr_schedule_epochs=lr_schedule_epochs)
        return _training.train(self, settings, data)

    def partial_fit(self, X, y, *, classes=None, sample_weight=None, class_weight=None, **options):
        """One pass over the rows of ``X`` as mini-batches, continuing the training state.

        The streaming (out-of-core) building block: each call is one epoch
        of ``fit`` on the rows given, resuming ``training_state_`` (made by
        the first call).  With the same settings, ``partial_fit(X, y)``
        twice equals ``fit(X, y, epochs=2)`` bit for bit, dropout included
        (its masks are keyed by the training state).  ``options`` are
        ``fit``'s (``batch_size``, ``lr``, ``optimizer``, ``shuffle``,
        ``clip_norm``, ...) and must keep the optimizer settings of the
        state; ``epochs``, ``resume`` and the validation and early-stopping
        options belong to ``fit``.

        ``classes``: the class labels of the whole stream (scikit-learn's
        convention), checked against the network's outputs (labels are
        ``0..sizes[-1]-1``) and against ``y``.  ``sample_weight`` and
        ``class_weight`` weight the rows of this call as in ``fit``;
        ``class_weight="balanced"`` counts the classes of this call's rows
        only, so for a stream pass a dict computed over the whole stream.
        Returns the network.
        """
        for name in PARTIAL_FIT_EXCLUDED:
            if name in options:
                raise TypeError(f"partial_fit() does not take {name!r}: it is one epoch that "
                                f"continues the training state; use fit() for {name}")
        if classes is not None:
            _training.check_classes(classes, y, self.sizes[-1])
        self.fit(X, y, epochs=1, resume=self.training_state_ is not None,
                 sample_weight=sample_weight, class_weight=class_weight, **options)
        return self

    # -- persistence (cymlp/_persistence.py) ---------------------------------------

    def save(self, path, training_state=True):
        """Save architecture, dtype and parameters to a ``.npz`` file, atomically.

        With ``training_state`` (the default) the file also holds
        ``training_state_`` and the shuffle generator's state, so that a
        loaded network resumes exactly (``fit(..., resume=True)``); False
        writes the network alone, in the format of earlier versions.

        The file is written to ``PATH.cymlp-tmp-XXXXXXXX`` beside ``path``,
        ``fsync``ed and renamed over it, so an interrupted save never leaves a
        broken model where a good one was.  Re-saving keeps the file's mode; a
        symlink ``path`` is followed (its target is replaced).
        """
        _persistence.save(self, path, training_state=training_state)

    @classmethod
    def load(cls, path, backend=None, n_threads=None):
        """Load a network saved by :meth:`save` (never executes code from the file).

        A damaged, truncated or hostile file raises ``ValueError`` naming the
        path; nothing large is decompressed or allocated before the file is
        checked against its own configuration.
        """
        _check_runtime_args(backend, n_threads)     # blame the arguments, not the file
        return _persistence.load(cls, path, backend=backend, n_threads=n_threads)

    def to_onnx(self, path=None, *, opset=None):
        """This network as an ``onnx.ModelProto``, also written to ``path`` when given.

        Input ``X`` (N, sizes[0]) in the network's dtype; first output ``output`` (N, sizes[-1]),
        what :meth:`feedforward` returns.  See :func:`cymlp.onnx_export.network_to_onnx` (needs
        ``pip install "cymlp[onnx]"``)."""
        from .onnx_export import network_to_onnx
        return network_to_onnx(self, path, opset=opset)

    def __getstate__(self):
        return _persistence.get_state(self)

    def __setstate__(self, state):
        _persistence.set_state(self, state)

    def copy(self, dtype=None, backend=None, seed=None):
        """An independent copy, optionally in another dtype or backend, or reseeded.

        The copy keeps the training state (cast to ``dtype``).  ``seed``:
        the copy draws its shuffles from it (:meth:`reseed`), so replicas of
        one network see independent orders; None keeps this network's
        generator state.
        """
        if seed is not None:
            v.check_seed(seed)
        net = Network.__new__(Network)
        state = self.__getstate__()
        if dtype is not None:
            dtype = v.check_dtype(dtype)
            state["dtype"] = dtype.name
            state["theta"] = v.check_finite_params(f"copy(dtype={dtype.name!r}): the parameter buffer",
                                                   state["theta"], dtype)
            training = state["training_state"]
            if training is not None:
                for name in ("m", "v"):
                    if getattr(training, name) is not None:
                        setattr(training, name, v.check_finite_params(
                            f"copy(dtype={dtype.name!r}): the training state's {name}",
                            getattr(training, name), dtype))
        if backend is not None:
            state["backend"] = backend
        net.__setstate__(state)
        if seed is not None:
            net.reseed(seed)
        return net


PARTIAL_FIT_EXCLUDED = ("epochs", "resume", "validation_data", "validation_fraction",
                        "early_stopping", "patience")


def _check_runtime_args(backend, n_threads):
    """Validate ``backend`` and ``n_threads`` as arguments (for ``load`` and friends)."""
    v.check_backend(backend, available_backends())
    _threads.check_n_threads(n_threads)

