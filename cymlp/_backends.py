"""The backend seam: what a backend provides, what its trainer takes, and which backends exist.

A backend supplies the passes only: forward, backward, and a trainer that
runs SGD steps.  Everything else (parameters, validation, the epoch loop,
schedules, early stopping, saving) lives in :mod:`cymlp.network` and
:mod:`cymlp._training` and is shared by both backends.  A backend gets the
network's :class:`~cymlp._spec.ModelSpec` and flat parameter buffer
``theta``, never the network; the arrays it gets are validated
(C-contiguous, finite, of the spec's dtype).  Inputs are dense everywhere
but in ``trainer`` and ``full_batch``, which may get a checked
``scipy.sparse`` CSR matrix (:mod:`cymlp._sparse`).

This module is the one statement of that contract: :class:`Backend`,
:class:`Trainer`, :class:`FullBatch` and :class:`TrainerOptions`.  ``tests/test_contract.py``
compares the signature of every method of both backends and their trainers
with the protocols below, so an implementation cannot drift from them
silently.  The registry (:func:`available_backends`, :func:`get_backend`)
is the only place that imports a backend module.

Implementations: :mod:`cymlp._numpy_backend` (the reference passes of
:mod:`cymlp.reference`, one mini-batch per Python iteration) and
:mod:`cymlp._cython_backend` (the compiled kernels).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from . import _validation
from ._spec import ModelSpec
from .training_state import OptimizerConfig, TrainingState

BACKEND_NAMES = ("cython", "numpy")

# Step modes of the compiled path's sync trainer (see cymlp._cython_backend); None chooses.
COMPILED_MODES = ("chunked", "batch", "split")


@dataclass(frozen=True, eq=False)
class TrainerOptions:
    """Everything a trainer is told about one ``fit``, checked (see ``Network.fit``).

    ``batch_size``
        Rows per step (the last batch of an epoch may be smaller).
    ``optimizer``
        How a step turns the mean gradient into an update.
    ``parallel``, ``average_every``, ``average_weighting``
        The multi-threaded strategy (compiled path only; docs/parallel-sgd.md).
    ``n_threads``, ``adaptive``
        Threads for the compiled path; ``adaptive``: ``n_threads`` was the
        default, so the trainer may run on fewer when the process does not
        get its cores (:class:`cymlp._threads.TeamPolicy`).
    ``mode``
        The compiled sync trainer's step mode (one of :data:`COMPILED_MODES`),
        or None to choose by size (``Network.compiled_mode``).
    ``sample_weight``
        float64 (n,) weights of the training rows, or None: each batch
        minimises Σ w C / Σ w over its rows; a batch whose weights are all 0
        is skipped (no update, no examples counted).
    ``dropout``
        A drop rate per hidden layer (inverted dropout while training).
    ``clip_norm``
        The mean gradient (of the loss, before weight decay is added) is
        scaled to this global norm when it is longer; None: no clipping.
    """

    batch_size: int
    optimizer: OptimizerConfig
    parallel: str = "sync"
    average_every: int | str | None = None
    average_weighting: str = "uniform"
    n_threads: int = 1
    adaptive: bool = False
    mode: str | None = None
    sample_weight: np.ndarray | None = None
    dropout: tuple = ()
    clip_norm: float | None = None

    @property
    def has_dropout(self):
        """True when some hidden layer drops units."""
        return any(p > 0 for p in self.dropout)

    @property
    def plain(self):
        """True when the steps are plain mini-batch steps (no weights, dropout or clipping)."""
        return self.sample_weight is None and not self.has_dropout and self.clip_norm is None


class Trainer(Protocol):
    """Runs SGD steps on the parameter buffer it was made with; made once per ``fit``.

    Every buffer a fit needs is allocated when the trainer is made; the
    stop flag is given then too.
    """

    def run(self, order: np.ndarray, first: int, stop: int, lr: float) -> tuple:
        """Steps for mini-batches ``first .. stop-1`` of the epoch ordering ``order``.

        Batch ``i`` is ``order[i*batch_size:(i+1)*batch_size]``.  Returns
        ``(loss_sum, n_correct, n_seen, n_steps)``: the sum over the examples
        seen of their loss before the step, how many of them were classified
        correctly (0 without labels), how many examples and how many steps
        were done.  Stops early, after fewer steps, when a batch loss is not
        finite (divergence) or when ``should_stop()`` returns True.  Advances
        the training state's ``step`` by the steps taken.
        """

    def close(self) -> None:
        """Release what the constructor took (the BLAS pool); runs on every path out of ``fit``."""


class FullBatch(Protocol):
    """A loss-and-gradient pass over every row of a data set; made once per optimisation.

    Every buffer it needs is allocated when it is made; ``evaluate`` then
    allocates nothing but small tallies.
    """

    def evaluate(self, theta: np.ndarray, grad: np.ndarray) -> float:
        """The summed loss Σ_x w_x C_x at ``theta``; the summed gradient into ``grad``.

        ``theta`` and ``grad`` are (n_params,) arrays of the spec's dtype, laid
        out like the parameters; w_x = 1 without sample weights.  Nothing is
        divided: :class:`cymlp.objective.Objective` makes means of the sums.
        """


class Backend(Protocol):
    """The passes of one backend, on a :class:`~cymlp._spec.ModelSpec` and a flat buffer ``theta``."""

    name: str

    def feedforward(self, spec: ModelSpec, theta: np.ndarray, X: np.ndarray, n_threads: int) -> np.ndarray:
        """Output activations (n, k) of validated ``X``."""

    def backprop(self, spec: ModelSpec, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, n_threads: int, *,
                 sample_weight: np.ndarray | None = None, masks: list | None = None) -> tuple:
        """``(grads_w, grads_b, mean loss)`` over the rows of ``X``.

        ``sample_weight``: the gradient of the weighted mean loss Σ w C / Σ w.
        ``masks``: fixed dropout multipliers, one (n, sizes[l+1]) array per
        hidden layer (for :func:`cymlp.gradcheck`).
        """

    def loss_and_output(self, spec: ModelSpec, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, n_threads: int,
                        *, sample_weight: np.ndarray | None = None) -> tuple:
        """``(mean loss, output activations)`` from one forward pass (weighted mean with ``sample_weight``)."""

    def full_batch(self, spec: ModelSpec, X: np.ndarray, Y: np.ndarray, n_threads: int, *,
                   sample_weight: np.ndarray | None = None) -> FullBatch:
        """A :class:`FullBatch` pass over the rows of ``X`` (dense or a CSR matrix) and ``Y``.

        ``sample_weight``: float64 (n,) row weights, or None.  The pass keeps
        ``X`` and densifies sparse rows a block at a time.
        """

    def trainer(self, spec: ModelSpec, theta: np.ndarray, X: np.ndarray, Y: np.ndarray,
                labels: np.ndarray | None, options: TrainerOptions, *, state: TrainingState | None = None,
                should_stop: Callable[[], bool] | None = None) -> Trainer:
        """A :class:`Trainer` writing into ``theta``, made once per ``fit``.

        ``X`` (dense, or a ``scipy.sparse`` CSR matrix whose batches the
        trainer densifies one at a time), ``Y`` (one-hot or targets) and
        ``labels`` (integer labels or None) are the training rows.  ``state``: the
        :class:`~cymlp.training_state.TrainingState` to continue, whose
        ``m``/``v`` the trainer uses in place as its optimizer buffers and
        whose ``step`` it advances with every step (its seed, epoch and step
        key the dropout masks); None: a fresh one of the trainer's own.
        ``should_stop``: checked between steps (Ctrl-C).  The NumPy backend
        runs ``parallel="sync"`` only (``fit`` rejects the others first).
        """


def available_backends() -> tuple[str, ...]:
    """Names of the backends that can run here, the default first.

    Returns
    -------
    tuple of str
        ``("cython", "numpy")`` when the compiled extension is built, else ``("numpy",)``.
    """
    try:
        from . import _cython_backend  # noqa: F401
    except ImportError:
        return ("numpy",)
    return ("cython", "numpy")


def finiteness_check(n_threads: int) -> Callable[[np.ndarray], bool]:
    """The finiteness check of X for :func:`cymlp._validation.check_X`.

    With the compiled extension built, ``cymlp._kernels.all_finite`` on
    ``n_threads`` threads: one read of the data and no temporary array (13 ms
    instead of 23 ms on one thread for Fashion-MNIST's 60,000 x 784 float32
    training images, 4 ms on two; benchmarks/README.md).  Else NumPy's.
    """
    try:
        from . import _kernels  # type: ignore[attr-defined]  # compiled, no stub: see [tool.mypy]
    except ImportError:
        return _validation.numpy_all_finite
    return lambda arr: bool(_kernels.all_finite(arr, n_threads))


def get_backend(name: str) -> Backend:
    """A fresh backend object for a checked name (``"cython"`` or ``"numpy"``)."""
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
