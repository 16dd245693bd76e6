"""The :class:`Network`: parameters, training loop, prediction, persistence.

A network owns its parameters in one flat buffer; ``weights[l]`` and
``biases[l]`` are views into it, so writing into them changes the network and
both backends see the same memory (``net.weights[l] = W`` copies ``W`` into
that view).  The architecture (``sizes``, ``activation``, ``output``,
``loss_name``, ``dtype``) is fixed when the network is built.  The backend (``"cython"`` or ``"numpy"``)
supplies only the passes: forward, backward and a trainer that runs SGD steps;
it sees the network's :class:`~cymlp._spec.ModelSpec` and flat buffer only.
``fit`` checks its arguments (:mod:`cymlp._fit_checks`) and hands over to
:mod:`cymlp._training` (the epoch loop, schedules, early stopping, divergence
and interrupt handling), shared by both backends, through a
:class:`~cymlp._training.NetworkView`: the one object through which other
modules touch the network's private parts.  Saving and loading
(:mod:`cymlp._persistence`) go through the state dict of
``__getstate__``/``__setstate__``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _build_check, _threads, _training, reference
from . import _validation as v
from ._backends import COMPILED_MODES, available_backends, finiteness_check, get_backend
from ._network_attributes import Fixed, LayerParams
from ._network_fit import NetworkFit
from ._network_io import NetworkIO
from ._sparse import block_rows, dense, is_sparse
from ._spec import ModelSpec, layer_views, spec_of
from ._typing import Activation, BackendName, FloatArray, FloatDType, LabelArray, LossName, OutputActivation, PathLike
from .objective import Objective, make_objective
from .training_state import TrainingState, resolve_seed

if TYPE_CHECKING:
    import onnx

    from .history import History

PREDICT_CHUNK_ROWS = 8192          # feedforward works through large inputs in chunks of this many rows


def _init_scale(activation: str, n_in: int, n_out: int) -> float:
    """Glorot/Xavier for sigmoid and tanh, He for the ReLU family."""
    if activation in ("relu", "leaky_relu"):
        return math.sqrt(2.0 / n_in)
    return math.sqrt(2.0 / (n_in + n_out))


def _pair_message(loss: str, output: str) -> str:
    """Why ``loss`` cannot be paired with ``output``, and what to use instead."""
    wanted = " or ".join(repr(o) for o in reference.OUTPUTS_OF_LOSS[loss])
    advice = {"cross_entropy": "use loss='quadratic' with output='identity' for regression",
              "poisson": "the Poisson deviance needs positive predictions, a = e^z"}[loss]
    return f"loss={loss!r} needs output={wanted}; got output={output!r} ({advice})"


class Network(NetworkFit, NetworkIO):
    """A fully connected feed-forward network trained by mini-batch SGD.

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, inputs first: ``[784, 100, 10]`` has 784 inputs, one
        hidden layer of 100 units and 10 outputs.
    activation : {"relu", "sigmoid", "tanh", "leaky_relu", "identity"}
        Activation of the hidden layers (``identity``: linear layers, a
        bottleneck).
    output : {"softmax", "sigmoid", "identity", "exp"}
        Activation of the output layer (``exp``: a = e^z, positive outputs,
        the log link of the Poisson loss).
    loss : {"cross_entropy", "quadratic", "poisson"}
        ``quadratic``: C = (1/n) Σ_x ½‖a(x) − y(x)‖² (any output).
        ``cross_entropy``: −(1/n) Σ_x Σ_k y_k log a_k with softmax, the
        binary form summed over outputs with sigmoid.  ``poisson``: half the
        Poisson deviance (1/n) Σ_x Σ_k [y_k log(y_k/a_k) − y_k + a_k] with
        ``output="exp"``, for counts y >= 0 (scikit-learn's ``loss="poisson"``).
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
    compiled_mode : {None, "chunked", "split", "batch"}
        How the compiled path's synchronous trainer runs a step (see
        docs/guarantees.md); ``None`` (the default) chooses by network and
        batch size.  For benchmarks and tests; the modes agree to rounding.
    history_ : History or None
        The history of the last (possibly interrupted) ``fit``.
    training_state_ : TrainingState or None
        The optimizer's buffers and counters (``step``, ``epoch``, ``seed``)
        that ``fit(..., resume=True)`` and :meth:`partial_fit` continue;
        None before any training (see :class:`cymlp.TrainingState`).
    """

    sizes: Fixed[tuple[int, ...]] = Fixed("Units per layer, inputs first (a tuple).")
    activation: Fixed[Activation] = Fixed("Activation of the hidden layers.")
    output: Fixed[OutputActivation] = Fixed("Activation of the output layer.")
    loss_name: Fixed[LossName] = Fixed("Name of the loss.")
    dtype: Fixed[np.dtype[np.floating[Any]]] = Fixed(
        "The numpy dtype of the parameters and of all computation.",
        advice="use net.copy(dtype=...) for a copy in another dtype")
    seed: int | None
    history_: History | None
    training_state_: TrainingState | None

    def __init__(self, sizes: Sequence[int], activation: Activation = "relu", output: OutputActivation = "softmax",
                 loss: LossName = "cross_entropy", dtype: FloatDType = "float32",
                 backend: BackendName | None = None, n_threads: int | None = None, seed: int | None = 0,
                 dropout: float | Sequence[float] = 0.0) -> None:
        self._set_architecture(sizes, activation, output, loss, dtype)
        self.dropout = dropout
        self.backend = backend
        self.n_threads = n_threads
        self.compiled_mode = None
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

    def _set_architecture(self, sizes: Sequence[int], activation: str, output: str, loss: str,
                          dtype: npt.DTypeLike) -> None:
        """Validate and store the read-only architecture (before any buffer exists)."""
        self._sizes = tuple(v.check_sizes(sizes))
        self._activation = v.check_choice("activation", activation, reference.HIDDEN_ACTIVATIONS)
        self._output = v.check_choice("output", output, reference.OUTPUT_ACTIVATIONS)
        self._loss_name = v.check_choice("loss", loss, reference.LOSSES)
        if self._output not in reference.OUTPUTS_OF_LOSS[self._loss_name]:
            raise ValueError(_pair_message(self._loss_name, self._output))
        self._dtype = v.check_dtype(dtype)
        self.__dict__.pop("_spec_made", None)

    def _allocate(self, theta: FloatArray | None = None) -> None:
        """Create the flat parameter buffer and the per-layer views into it."""
        spec = self._spec
        self._theta = np.zeros(spec.n_params, dtype=self.dtype) if theta is None else theta
        weights, biases = layer_views(spec.sizes, self._theta)
        self._weights = LayerParams(weights, "weights", self.dtype)
        self._biases = LayerParams(biases, "biases", self.dtype)

    @property
    def _spec(self) -> ModelSpec:
        """The architecture as the backends see it (immutable, so made once)."""
        spec = self.__dict__.get("_spec_made")
        if spec is None:
            spec = self.__dict__["_spec_made"] = spec_of(self)
        return spec

    def _training_view(self) -> _training.NetworkView:
        """The :class:`~cymlp._training.NetworkView` handed to the training loop."""
        return _training.NetworkView(self, self._spec, self._theta, self._backend, self._rng)

    @property
    def weights(self) -> LayerParams:
        """``weights[l]``, shape ``(sizes[l+1], sizes[l])``: views into the parameter buffer."""
        return self._weights

    @weights.setter
    def weights(self, value: object) -> None:
        raise AttributeError("net.weights cannot be replaced; assign layer by layer "
                             "(net.weights[l] = W) or all at once with net.set_flat_params(theta)")

    @property
    def biases(self) -> LayerParams:
        """``biases[l]``, shape ``(sizes[l+1],)``: views into the parameter buffer."""
        return self._biases

    @biases.setter
    def biases(self, value: object) -> None:
        raise AttributeError("net.biases cannot be replaced; assign layer by layer "
                             "(net.biases[l] = b) or all at once with net.set_flat_params(theta)")

    @property
    def dropout(self) -> tuple[float, ...]:
        """Drop probability of each hidden layer during ``fit`` (a tuple)."""
        return self._dropout

    @dropout.setter
    def dropout(self, dropout: float | Sequence[float]) -> None:
        self._dropout = v.check_dropout(dropout, self.sizes)

    @property
    def backend(self) -> str:
        """Name of the backend in use (``"cython"`` or ``"numpy"``)."""
        return self._backend.name

    @backend.setter
    def backend(self, name: BackendName | None) -> None:
        if name != "numpy":             # chosen by default, or the compiled path asked for
            _build_check.warn_if_unbuilt(stacklevel=4)
        self._backend = get_backend(v.check_backend(name, available_backends()))

    @property
    def n_threads(self) -> int | None:
        """Threads for the compiled path as set (``None``: every usable core)."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, n_threads: int | None) -> None:
        _threads.check_n_threads(n_threads)  # validate now, resolve when used
        self._n_threads = n_threads

    @property
    def effective_n_threads(self) -> int:
        """Threads the compiled path will use (``n_threads`` resolved)."""
        return _threads.effective_n_threads(self._n_threads)

    @property
    def compiled_mode(self) -> str | None:
        """The compiled sync trainer's step mode, or None to choose by size (see the class doc)."""
        return self._compiled_mode

    @compiled_mode.setter
    def compiled_mode(self, mode: str | None) -> None:
        if mode is not None:
            v.check_choice("compiled_mode", mode, COMPILED_MODES)
        self._compiled_mode = mode

    @property
    def n_params(self) -> int:
        """Number of parameters (weights and biases): the length of the flat buffer."""
        return self._theta.size

    @property
    def training_seed(self) -> int:
        """The seed of the validation split and of the training state (dropout masks).

        ``seed`` until :meth:`reseed` gives another; drawn from the operating
        system once when ``seed`` is None.
        """
        return self._train_seed

    def reseed(self, seed: int | None) -> Network:
        """Draw the shuffles (and validation split, dropout masks) from ``seed`` from now on.

        Resets the shuffle generator to ``numpy.random.default_rng(seed)`` and
        sets :attr:`training_seed` (also in ``training_state_``), so that
        replicas of one network can draw independent orders.  The weights and
        the ``seed`` attribute (the initialisation's seed) do not change.

        Parameters
        ----------
        seed : int or None
            The new training seed; ``None`` draws a fresh one from the operating system.

        Returns
        -------
        Network
            The network itself.
        """
        seed = v.check_seed(seed)
        self._rng = np.random.default_rng(seed)
        self._train_seed = resolve_seed(seed)
        if self.training_state_ is not None:
            self.training_state_.seed = self._train_seed
        return self

    def get_flat_params(self) -> FloatArray:
        """A copy of all parameters as one flat array (the internal layout).

        Returns
        -------
        ndarray (n_params,)
            ``[W_0 (row-major), b_0, W_1, b_1, ...]`` in the network's dtype.
        """
        return self._theta.copy()

    def set_flat_params(self, theta: npt.ArrayLike) -> None:
        """Overwrite all parameters from a flat array made by :meth:`get_flat_params`.

        Parameters
        ----------
        theta : array-like (n_params,)
            Cast to the network's dtype; it must be finite after the cast
            (1e300 does not fit in float32).  On error nothing changes.
        """
        if not hasattr(theta, "shape"):
            theta = np.asarray(theta)
        if theta.shape != self._theta.shape:
            raise ValueError(f"expected {self._theta.size} parameters, got shape {theta.shape}")
        self._theta[...] = v.check_finite_params("theta", theta, self.dtype)

    def get_params(self) -> FloatArray:
        """Deprecated alias of :meth:`get_flat_params` (removed in the next release)."""
        warnings.warn("Network.get_params() is deprecated and will be removed in the next "
                      "release; use get_flat_params() (get_params is scikit-learn's name for "
                      "hyper-parameters)", DeprecationWarning, stacklevel=2)
        return self.get_flat_params()

    def set_params(self, theta: npt.ArrayLike) -> None:
        """Deprecated alias of :meth:`set_flat_params` (removed in the next release)."""
        warnings.warn("Network.set_params() is deprecated and will be removed in the next "
                      "release; use set_flat_params() (set_params is scikit-learn's name for "
                      "hyper-parameters)", DeprecationWarning, stacklevel=2)
        return self.set_flat_params(theta)

    def _check_params_finite(self) -> None:
        """Refuse to train from parameters that are NaN or infinite (written in from outside)."""
        if not np.isfinite(self._theta).all():
            bad = [f"{kind}[{l}]" for kind, params in (("weights", self.weights), ("biases", self.biases))
                   for l, p in enumerate(params) if not np.isfinite(p).all()]
            raise ValueError(
                f"the network's parameters contain NaN or infinity (in {', '.join(bad)}), so "
                f"training cannot start from them; they were written in from outside fit. "
                f"Set finite values (net.set_flat_params(theta), net.weights[l] = W) or build a "
                f"new Network")

    def __repr__(self) -> str:
        dropout = f", dropout={list(self.dropout)}" if any(self.dropout) else ""
        return (f"Network({list(self.sizes)}, activation={self.activation!r}, output={self.output!r}, "
                f"loss={self.loss_name!r}, dtype={self.dtype.name!r}, backend={self.backend!r}"
                f"{dropout})")

    @property
    def is_classifier(self) -> bool:
        """True for softmax or sigmoid outputs with 2+ units: ``predict`` returns labels."""
        return self.output in ("softmax", "sigmoid") and self.sizes[-1] >= 2

    # -- the passes ----------------------------------------------------------

    def feedforward(self, X: npt.ArrayLike) -> FloatArray:
        """Output activations for the rows of ``X``.

        Large inputs are processed in chunks of rows, so memory stays bounded
        (a sparse ``X`` is densified one chunk at a time, see :mod:`cymlp._sparse`).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n, sizes[0])
            Inputs, one example per row.

        Returns
        -------
        ndarray (n, sizes[-1])
            The output layer's activations, in the network's dtype.
        """
        X = v.check_X(X, self.sizes[0], self.dtype, all_finite=finiteness_check(self.effective_n_threads))
        return self._feedforward(X)

    def _feedforward(self, X: FloatArray) -> FloatArray:
        spec, n_threads = self._spec, self.effective_n_threads
        rows = block_rows(X, PREDICT_CHUNK_ROWS)
        with np.errstate(over="ignore", invalid="ignore"):   # overflow is reported below
            if X.shape[0] <= rows:
                return v.check_finite_result(
                    "outputs", self._backend.feedforward(spec, self._theta, dense(X), n_threads))
            out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
            for start in range(0, X.shape[0], rows):
                out[start:start + rows] = self._backend.feedforward(
                    spec, self._theta, dense(X[start:start + rows]), n_threads)
        return v.check_finite_result("outputs", out)

    def predict_proba(self, X: npt.ArrayLike) -> FloatArray:
        """Class probabilities: the softmax or sigmoid outputs.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n, sizes[0])
            Inputs, one example per row.

        Returns
        -------
        ndarray (n, sizes[-1])
            The output activations (as :meth:`feedforward`).
        """
        return self.feedforward(X)

    def predict(self, X: npt.ArrayLike) -> LabelArray | FloatArray:
        """Predicted class labels for classifiers; the outputs for regression networks.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n, sizes[0])
            Inputs, one example per row.

        Returns
        -------
        ndarray
            (n,) labels (the argmax of the outputs) when :attr:`is_classifier`,
            else the output activations (n, sizes[-1]).
        """
        out = self.feedforward(X)
        return out.argmax(axis=1) if self.is_classifier else out

    def loss(self, X: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None) -> float:
        """Mean loss over the rows of ``X`` (no weight decay term, no dropout).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n, sizes[0])
            Inputs, one example per row.
        y : array-like
            1-D integer class labels, or 2-D targets (n, sizes[-1]).
        sample_weight : array-like (n,) or None
            Finite weights >= 0 with a positive sum: the weighted mean
            Σ w C / Σ w; a row of weight 0 counts as if it were removed.

        Returns
        -------
        float
            The (weighted) mean loss.
        """
        X, Y, _ = v.check_Xy(self._spec, X, y, all_finite=finiteness_check(self.effective_n_threads))
        w = v.check_sample_weight(sample_weight, X.shape[0])
        with np.errstate(over="ignore", invalid="ignore"):
            loss = _training.evaluate(self._backend, self._spec, self._theta, X, Y,
                                      self.effective_n_threads, sample_weight=w)[0]
            return v.check_finite_result("loss", loss)

    def score(self, X: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None) -> float:
        """Accuracy for integer labels; R² (coefficient of determination) for 2-D targets.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n, sizes[0])
            Inputs, one example per row.
        y : array-like
            1-D integer class labels, or 2-D targets (n, sizes[-1]).
        sample_weight : array-like (n,) or None
            The weighted accuracy Σ w·[correct] / Σ w, or the weighted R² (as
            scikit-learn's ``r2_score``).

        Returns
        -------
        float
            Accuracy in [0, 1], or R² (at most 1).
        """
        X, Y, labels = v.check_Xy(self._spec, X, y, all_finite=finiteness_check(self.effective_n_threads))
        w = v.check_sample_weight(sample_weight, X.shape[0])
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

    def backprop(self, X: npt.ArrayLike, y: npt.ArrayLike,
                 sample_weight: npt.ArrayLike | None = None) -> tuple[list[FloatArray], list[FloatArray]]:
        """Gradient of the mean loss over the rows of ``X`` (no dropout).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n, sizes[0])
            Inputs, one example per row.
        y : array-like
            1-D integer class labels, or 2-D targets (n, sizes[-1]).
        sample_weight : array-like (n,) or None
            The gradient of the weighted mean loss Σ w C / Σ w.

        Returns
        -------
        grads_w, grads_b : list of ndarray
            Shaped like ``weights`` and ``biases``.
        """
        X, Y, _ = v.check_Xy(self._spec, X, y, all_finite=finiteness_check(self.effective_n_threads))
        w = v.check_sample_weight(sample_weight, X.shape[0])
        if is_sparse(X):        # through the full-batch pass: one block densified at a time
            grad = self.objective(X, Y, sample_weight=w)(self._theta)[1].astype(self.dtype)
            grads_w, grads_b = layer_views(self.sizes, grad)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                grads_w, grads_b, _ = self._backend.backprop(
                    self._spec, self._theta, X, Y, self.effective_n_threads, sample_weight=w)
        v.check_finite_result("gradient", grads_w + grads_b)
        return grads_w, grads_b

    def objective(self, X: Any, y: npt.ArrayLike, *, alpha: float = 0.0,
                  sample_weight: npt.ArrayLike | None = None) -> Objective:
        """The full-batch loss as a function of the flat parameters, for scipy's optimizers.

        ``f = net.objective(X, y)``; ``f(theta)`` returns ``(loss, grad)``:
        the (weighted) mean loss over every row plus ``alpha / (2 n)`` times
        the squared weights (scikit-learn's L2 term; n is the sum of the
        sample weights), and its gradient.  ``scipy.optimize.minimize(f,
        net.get_flat_params(), jac=True, method="L-BFGS-B")`` then
        ``net.set_flat_params(result.x)`` trains by L-BFGS.  See
        :mod:`cymlp.objective`.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n, sizes[0])
            Inputs, one example per row (checked once, here).
        y : array-like
            1-D integer class labels, or 2-D targets (n, sizes[-1]).
        alpha : float >= 0
            L2 strength.
        sample_weight : array-like (n,) or None
            Row weights >= 0 with a positive sum.

        Returns
        -------
        Objective
            The callable; its buffers are made here, once.
        """
        return make_objective(self._backend, self._spec, X, y, self.effective_n_threads,
                              alpha=alpha, sample_weight=sample_weight)

    # -- export ----------------------------------------------------------------

    def to_onnx(self, path: PathLike | None = None, *, opset: int | None = None) -> onnx.ModelProto:
        """This network as an ONNX model (needs ``pip install "cymlp[onnx]"``).

        Input ``X`` (N, sizes[0]) in the network's dtype; first output
        ``output`` (N, sizes[-1]), what :meth:`feedforward` returns.  See
        :func:`cymlp.onnx_export.network_to_onnx`.

        Parameters
        ----------
        path : str or os.PathLike or None
            Also write the model there (atomically) when given.
        opset : int or None
            The ONNX opset (None: the default of :mod:`cymlp.onnx_export`).

        Returns
        -------
        onnx.ModelProto
            The model.
        """
        from .onnx_export import network_to_onnx
        return network_to_onnx(self, path, opset=opset)
