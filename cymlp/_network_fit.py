"""``Network.fit`` and ``Network.partial_fit``: the arguments, their documentation, the hand-over.

:class:`NetworkFit` is the part of ``Network`` that trains it.  ``fit``
checks the network's parameters and every argument
(:func:`cymlp._fit_checks.check_fit`, which touches nothing), then hands a
:class:`~cymlp._training.NetworkView` of the network, the checked settings
and data to :func:`cymlp._training.train`, the epoch loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy.typing as npt

from . import _fit_checks, _training
from ._progress import FitProgress

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._spec import ModelSpec
    from .history import History
    from .training_state import TrainingState

#: ``fit``'s ``progress``: a bar (True), silence (False or None), or a function of
#: ``(epoch, batches_done, n_batches)``.
Progress: TypeAlias = bool | Callable[[int, int, int], object] | None
#: ``fit``'s ``lr_schedule``: a name, or a function of ``(epoch, horizon, lr)`` returning the rate.
Schedule: TypeAlias = Literal["constant", "step", "cosine"] | Callable[[int, int, float], float]


class NetworkFit:
    """``Network``'s training methods (a mixin: ``Network`` is the only class using it)."""

    if TYPE_CHECKING:       # provided by Network
        training_state_: TrainingState | None

        @property
        def sizes(self) -> tuple[int, ...]: ...
        @property
        def _spec(self) -> ModelSpec: ...
        def _check_params_finite(self) -> None: ...
        def _training_view(self) -> _training.NetworkView: ...

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike, epochs: int = 10, batch_size: int = 64, lr: float = 0.05,
            momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0, shuffle: bool = True,
            validation_data: tuple[npt.ArrayLike, npt.ArrayLike] | None = None, *,
            optimizer: Literal["sgd", "adam"] = "sgd", lr_schedule: Schedule = "constant",
            beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
            validation_fraction: float | None = None, early_stopping: bool = False, patience: int = 5,
            callbacks: Iterable[Callable[[History], object]] | None = None, progress: Progress = None,
            verbose: bool = False, on_divergence: Literal["raise", "warn"] = "raise",
            parallel: Literal["sync", "hogwild", "average"] = "sync",
            average_every: int | Literal["end"] | None = None,
            average_weighting: Literal["uniform", "examples"] = "uniform",
            sample_weight: npt.ArrayLike | None = None,
            class_weight: Literal["balanced"] | Mapping[Any, float] | None = None,
            clip_norm: float | None = None, resume: bool = False,
            lr_schedule_epochs: int | None = None) -> History:
        """Train with mini-batch SGD (or Adam).

        Each epoch shuffles the rows with the network's own random generator
        (unless ``shuffle=False``) and takes consecutive batches of
        ``batch_size`` rows, the last one possibly smaller.  Calling ``fit``
        again continues from the current weights; the optimizer state starts
        afresh unless ``resume=True``.  Every argument is checked before
        anything changes: a rejected call leaves the network as it was.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n, sizes[0])
            Training inputs, one example per row.
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
            The update rule.
        lr_schedule : {"constant", "step", "cosine"} or callable
            ``step`` halves the rate every ``max(1, horizon // 4)`` epochs;
            ``cosine`` anneals it as lr·½(1 + cos(π·epoch/horizon)), where the
            horizon is ``lr_schedule_epochs``; a callable gets ``(epoch,
            horizon, lr)`` (epoch counted from 0) and returns the rate.
        beta1, beta2, eps : float
            Adam's constants.
        validation_fraction : float in (0, 1) or None
            Hold out this fraction of the training rows as validation data,
            drawn from the training seed (the same rows in every fit).
        early_stopping : bool
            Stop when the validation loss (training loss without validation
            data) has not improved for ``patience`` epochs and restore the
            weights of the best epoch.
        patience : int >= 1
            Epochs without improvement that ``early_stopping`` waits.
        callbacks : list of callables
            Each is called after every epoch with the history; returning
            ``False`` stops training.
        progress : bool, callable or None
            ``True``: a progress bar on stderr (tqdm's, notebook-aware, when
            tqdm is installed; otherwise a line per epoch and every few
            seconds within a long epoch).  ``False`` or ``None``: nothing.  A
            callable is called as ``progress(epoch, batches_done, n_batches)``
            a few times per second during an epoch.
        verbose : bool
            Print one line per epoch.
        on_divergence : {"raise", "warn"}
            What to do when the loss or weights stop being finite: both
            restore the last finite weights and stop; ``raise`` then raises
            :class:`~cymlp.TrainingDiverged`, ``warn`` warns and returns the history.
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
        sample_weight : array-like (n,) or None
            Finite weights >= 0 with a positive sum: each batch minimises the
            weighted mean loss Σ w C / Σ w over its rows, and a batch whose
            weights are all 0 is skipped.  Equal weights are the unweighted
            fit, bit for bit.  ``parallel="sync"`` only.
        class_weight : None, "balanced" or dict
            Per-class factors on the sample weights (integer labels only):
            ``{class: weight}`` (absent classes weigh 1), or ``"balanced"``,
            n_rows / (n_classes · count) over the classes present.
        clip_norm : float > 0 or None
            Scale each batch's mean gradient (before weight decay) down to
            this global norm when it is longer.  ``parallel="sync"`` only.
        resume : bool
            Continue ``training_state_`` (optimizer buffers, step and epoch
            counts) instead of starting the optimizer afresh; the optimizer
            settings must be those the state was made with.  ``fit(epochs=a)``
            then ``fit(epochs=b, resume=True)`` equals ``fit(epochs=a + b)``,
            bit for bit (docs/guarantees.md).
        lr_schedule_epochs : int or None
            The horizon of ``lr_schedule``: the total epochs it spans, counted
            across resumed fits (None: up to the end of this fit).

        Returns
        -------
        History
            One entry per epoch (also in ``history_``).

        Raises
        ------
        TrainingDiverged
            The loss or the weights stopped being finite (``on_divergence="raise"``).
        KeyboardInterrupt
            Ctrl-C: after the current step, with the weights of the last
            completed step and ``history_`` holding the epochs so far.
        """
        self._check_params_finite()
        bar = FitProgress(epochs) if progress is True else None
        if progress is False or bar is not None:
            progress = bar
        settings, data = _fit_checks.check_fit(
            self, self._spec, X, y, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
            nesterov=nesterov, weight_decay=weight_decay, shuffle=shuffle,
            validation_data=validation_data, optimizer=optimizer, lr_schedule=lr_schedule,
            beta1=beta1, beta2=beta2, eps=eps, validation_fraction=validation_fraction,
            early_stopping=early_stopping, patience=patience, callbacks=callbacks,
            progress=progress, verbose=verbose, on_divergence=on_divergence, parallel=parallel,
            average_every=average_every, average_weighting=average_weighting,
            sample_weight=sample_weight, class_weight=class_weight, clip_norm=clip_norm,
            resume=resume, lr_schedule_epochs=lr_schedule_epochs)
        if bar is None:
            return _training.train(self._training_view(), settings, data)
        settings = dataclasses.replace(settings, callbacks=(*settings.callbacks, bar.epoch_done))
        try:
            return _training.train(self._training_view(), settings, data)
        finally:
            bar.close()

    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike, *, classes: npt.ArrayLike | None = None,
                    sample_weight: npt.ArrayLike | None = None,
                    class_weight: Literal["balanced"] | Mapping[Any, float] | None = None,
                    **options: Any) -> Self:
        """One pass over the rows of ``X`` as mini-batches, continuing the training state.

        The streaming (out-of-core) building block: each call is one epoch
        of ``fit`` on the rows given, resuming ``training_state_`` (made by
        the first call).  With the same settings, ``partial_fit(X, y)``
        twice equals ``fit(X, y, epochs=2)`` bit for bit, dropout included
        (its masks are keyed by the training state).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix (n, sizes[0])
            The rows of this call.
        y : array-like
            1-D integer class labels, or 2-D targets (n, sizes[-1]).
        classes : array-like of int or None
            The class labels of the whole stream (scikit-learn's convention),
            checked against the network's outputs (labels are
            ``0..sizes[-1]-1``) and against ``y``.
        sample_weight : array-like (n,) or None
            Weights of this call's rows, as in :meth:`fit`.
        class_weight : None, "balanced" or dict
            As in :meth:`fit`; ``"balanced"`` counts the classes of this
            call's rows only, so for a stream pass a dict computed over it.
        **options
            :meth:`fit`'s other keyword arguments (``batch_size``, ``lr``,
            ``optimizer``, ``shuffle``, ``clip_norm``, ...); the optimizer
            settings must be the state's.  ``epochs``, ``resume`` and the
            validation and early-stopping options belong to ``fit``.

        Returns
        -------
        Network
            The network itself.
        """
        _fit_checks.check_partial_fit(options, classes, y, self._spec)
        self.fit(X, y, epochs=1, resume=self.training_state_ is not None,
                 sample_weight=sample_weight, class_weight=class_weight, **options)
        return self
