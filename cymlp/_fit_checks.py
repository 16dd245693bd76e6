"""``fit``'s arguments, checked at once into frozen objects, before anything changes.

:func:`check_fit` validates every argument of ``Network.fit`` (and so of
``partial_fit``) into a :class:`FitSettings` (what the epoch loop of
:mod:`cymlp._training` does, and the :class:`~cymlp._backends.TrainerOptions`
its trainer is made with) and a :class:`FitData` (the checked arrays).  It
touches nothing: no random numbers are drawn and no state changes, so a
rejected call (an exception, or a warning under ``-W error``) leaves the
network as it was.  The choices ``fit`` accepts (:data:`PARALLEL_STRATEGIES`,
:data:`LR_SCHEDULES`, ...) are defined here.
"""

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _validation as v
from ._backends import TrainerOptions, finiteness_check
from .training_state import MAX_COUNTER, OPTIMIZERS, OptimizerConfig

PARALLEL_STRATEGIES = ("sync", "hogwild", "average")
AVERAGE_WEIGHTINGS = ("uniform", "examples")
LR_SCHEDULES = ("constant", "step", "cosine")
# what partial_fit does not take: it is one epoch that continues the training state
PARTIAL_FIT_EXCLUDED = ("epochs", "resume", "validation_data", "validation_fraction",
                        "early_stopping", "patience")


@dataclass(frozen=True)
class FitSettings:
    """The arguments of one ``fit``, checked (see ``Network.fit`` for their meaning)."""
    epochs: int
    lr: float
    schedule: Callable[[int], float]   # epoch -> learning rate, its result checked
    shuffle: bool
    early_stopping: bool
    patience: int
    callbacks: tuple
    progress: Callable | None
    verbose: bool
    on_divergence: str
    n_validation: int               # rows to hold out (validation_fraction); 0 for none
    trainer: TrainerOptions         # batch size (clipped to the training rows), optimizer, strategy,
    #                                 threads, dropout, clip_norm; the sample weights come with FitData
    resume: bool = False            # continue net.training_state_ (checked compatible)
    start_epoch: int = 0            # index of the first epoch: the state's epoch when resuming
    horizon: int = 0                # the schedule's total epochs (lr_schedule_epochs)


@dataclass(frozen=True)
class FitData:
    """Checked training data, and validation data when passed explicitly."""
    X: np.ndarray
    Y: np.ndarray
    labels: np.ndarray | None
    X_val: np.ndarray | None = None
    Y_val: np.ndarray | None = None
    labels_val: np.ndarray | None = None
    sample_weight: np.ndarray | None = None      # float64 (n,) or None (unweighted)
    sample_weight_val: np.ndarray | None = None


def check_fit(net, spec, X, y, *, epochs, batch_size, lr, momentum, nesterov, weight_decay, shuffle,
              validation_data, optimizer, lr_schedule, beta1, beta2, eps, validation_fraction,
              early_stopping, patience, callbacks, progress, verbose, on_divergence, parallel,
              average_every, average_weighting, sample_weight=None, class_weight=None,
              clip_norm=None, resume=False, lr_schedule_epochs=None):
    """Validate every argument of ``fit`` for ``net`` (of :class:`~cymlp._spec.ModelSpec` ``spec``).

    Reads only the network's public attributes.  Returns ``(FitSettings,
    FitData)``; the warnings come last, after every check.
    """
    X, Y, labels = v.check_Xy(spec, X, y, all_finite=finiteness_check(net.effective_n_threads))
    epochs = v.check_positive_int("epochs", epochs, minimum=0)
    lr = v.check_real("lr", lr, low=0, low_open=True)
    optimizer = check_optimizer(optimizer, momentum, nesterov, weight_decay, beta1, beta2, eps)
    v.check_choice("on_divergence", on_divergence, ("raise", "warn"))
    v.check_choice("parallel", parallel, PARALLEL_STRATEGIES)
    if parallel != "sync" and net.backend != "cython":
        raise ValueError(f"parallel={parallel!r} runs in the compiled path only; use backend='cython'")
    if average_every is not None and average_every != "end":
        v.check_positive_int("average_every", average_every)
    v.check_choice("average_weighting", average_weighting, AVERAGE_WEIGHTINGS)
    patience = v.check_positive_int("patience", patience)
    batch_size = v.check_positive_int("batch_size", batch_size)
    start_epoch = check_resume(net, resume, optimizer, parallel)
    if lr_schedule_epochs is None:
        horizon = start_epoch + epochs
    else:
        horizon = v.check_positive_int("lr_schedule_epochs", lr_schedule_epochs)
        if horizon < start_epoch + epochs:
            raise ValueError(f"lr_schedule_epochs={horizon} ends before this fit does (epochs "
                             f"{start_epoch + 1}..{start_epoch + epochs}); pass at least "
                             f"{start_epoch + epochs}, the total number of epochs the schedule spans")
    schedule = make_schedule(lr_schedule, lr, horizon)
    callbacks = check_callbacks(callbacks, progress)
    if validation_data is not None and validation_fraction is not None:
        raise ValueError("pass validation_data or validation_fraction, not both")
    weights = v.combine_weights(
        sample_weight, v.check_class_weight(class_weight, labels, net.sizes[-1]), X.shape[0])
    clip_norm = v.check_clip_norm(clip_norm)
    if parallel != "sync" and (weights is not None or clip_norm is not None
                               or any(p > 0 for p in net.dropout)):
        raise ValueError(f"sample weights, class weights, dropout and clip_norm run with "
                         f"parallel='sync' only; got parallel={parallel!r}")
    data = FitData(X, Y, labels, sample_weight=weights)
    n_validation = 0
    if validation_data is not None:
        try:
            X_val, y_val = validation_data
        except (TypeError, ValueError):
            raise ValueError("validation_data must be a pair (X_val, y_val)") from None
        data = FitData(X, Y, labels, *v.check_Xy(spec, X_val, y_val, "validation X", "validation y"),
                       sample_weight=weights)
    elif validation_fraction is not None:
        fraction = v.check_real("validation_fraction", validation_fraction, low=0, high=1,
                                low_open=True, high_open=True)
        n_validation = round(fraction * X.shape[0])
        if n_validation < 1 or n_validation >= X.shape[0]:
            raise ValueError(f"validation_fraction={fraction} leaves no rows for training or "
                             f"validation out of {X.shape[0]}")
    _check_counters(net, resume, start_epoch, epochs, -(-(X.shape[0] - n_validation) // batch_size))
    if epochs > 0:
        schedule(start_epoch)  # a callable schedule's first rate is checked before anything changes
    # ---- warnings last: under -W error they reject the call, which must change nothing
    if early_stopping and validation_data is None and validation_fraction is None:
        warnings.warn("early_stopping without validation data monitors the training loss",
                      UserWarning, stacklevel=3)
    batch_size = v.clip_batch_size(batch_size, X.shape[0] - n_validation, stacklevel=4)
    trainer = TrainerOptions(
        batch_size=batch_size, optimizer=optimizer, parallel=parallel, average_every=average_every,
        average_weighting=average_weighting, n_threads=net.effective_n_threads,
        adaptive=net.n_threads is None, mode=net.compiled_mode, dropout=net.dropout,
        clip_norm=clip_norm)
    settings = FitSettings(
        epochs=epochs, lr=lr, schedule=schedule, shuffle=bool(shuffle),
        early_stopping=bool(early_stopping), patience=patience, callbacks=callbacks,
        progress=progress, verbose=bool(verbose), on_divergence=on_divergence,
        n_validation=n_validation, trainer=trainer, resume=bool(resume), start_epoch=start_epoch,
        horizon=horizon)
    return settings, data


def check_optimizer(optimizer, momentum, nesterov, weight_decay, beta1, beta2, eps):
    """The optimizer settings of ``fit`` (and ``fit_distributed``), checked: an :class:`OptimizerConfig`."""
    v.check_choice("optimizer", optimizer, OPTIMIZERS)
    return OptimizerConfig(
        optimizer, v.check_real("momentum", momentum, low=0, high=1, high_open=True), bool(nesterov),
        v.check_real("weight_decay", weight_decay, low=0),
        v.check_real("beta1", beta1, low=0, high=1, high_open=True),
        v.check_real("beta2", beta2, low=0, high=1, high_open=True),
        v.check_real("eps", eps, low=0, low_open=True))


def check_callbacks(callbacks, progress=None):
    """``callbacks`` (and ``progress``) as ``fit`` takes them: a tuple of callables.

    ``progress=True`` is ``fit``'s (it makes the bar, a callable, before this check).
    """
    callbacks = tuple(callbacks or ())
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables; got {cb!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be True (a progress bar), False, None or a callable; got {progress!r}")
    return callbacks


def _check_counters(net, resume, start_epoch, epochs, steps_per_epoch):
    """The state's epoch and step counters must stay within MAX_COUNTER to the end of this fit."""
    start_step = net.training_state_.step if resume else 0
    if start_epoch + epochs > MAX_COUNTER or start_step + epochs * steps_per_epoch > MAX_COUNTER:
        raise ValueError(f"this fit would take the training state's epoch or step counter past "
                         f"{MAX_COUNTER} (now epoch {start_epoch}, step {start_step}; {epochs} epochs "
                         f"of {steps_per_epoch} steps), more than every backend's counter holds; "
                         f"train fewer epochs, or pass resume=False to start the counters afresh")


def uses_worker_states(net, parallel):
    """True when a fit runs the hogwild/average trainer, which keeps one optimizer state per worker."""
    return parallel != "sync" and net.effective_n_threads > 1


def check_resume(net, resume, optimizer, parallel):
    """Check that ``fit(..., resume=resume)`` can continue; return the index of its first epoch."""
    if not resume:
        return 0
    state = net.training_state_
    if state is None:
        raise ValueError("resume=True needs a training state, and this network has none (it was "
                         "never trained, or was loaded from a file saved without one, or its last "
                         "fit used parallel='hogwild'/'average'); call fit without resume=True to "
                         "start the optimizer afresh")
    state.check(net.n_params, net.dtype)    # a state changed from outside: refused on every backend
    why = state.mismatch(optimizer)
    if why is not None:
        raise ValueError(f"resume=True cannot continue this network's training state: {why}. "
                         f"Pass the same optimizer settings, or resume=False to start the "
                         f"optimizer afresh")
    if uses_worker_states(net, parallel):
        raise ValueError(f"resume=True continues one optimizer state; parallel={parallel!r} on "
                         f"{net.effective_n_threads} threads keeps one per worker. Resume with "
                         f"parallel='sync' (or n_threads=1), or pass resume=False")
    return state.epoch


def check_partial_fit(options, classes, y, spec):
    """``partial_fit``'s own checks: none of ``fit``'s whole-run options, ``classes`` valid."""
    for name in PARTIAL_FIT_EXCLUDED:
        if name in options:
            raise TypeError(f"partial_fit() does not take {name!r}: it is one epoch that "
                            f"continues the training state; use fit() for {name}")
    if classes is not None:
        check_classes(classes, y, spec)


def check_classes(classes, y, spec):
    """``partial_fit``'s ``classes``: distinct integer labels 0..n_outputs-1 that cover ``y``.

    ``y``'s labels are read as ``fit`` reads them (float ``2.0`` and object
    arrays of numbers are the label 2), so a label outside ``classes`` is
    refused whatever the dtype that carries it.
    """
    n_outputs = spec.sizes[-1]
    try:
        arr = np.asarray(classes)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
        raise ValueError(f"classes must be a non-empty 1-D sequence of integer labels; got {classes!r}")
    if arr.min() < 0 or arr.max() >= n_outputs:
        raise ValueError(f"classes holds {int(arr.min() if arr.min() < 0 else arr.max())}, but the "
                         f"network has {n_outputs} outputs, so its labels are 0..{n_outputs - 1}; "
                         f"build the network with an output per class")
    if np.unique(arr).size != arr.size:
        raise ValueError("classes holds repeated labels")
    try:
        labels = v.check_targets(y, len(y), n_outputs, spec.dtype, loss=spec.loss,
                                 output=spec.output)[1]
    except (TypeError, ValueError):
        return                      # fit's own checks reject it (with X's context)
    if labels is not None and labels.size:
        extra = np.setdiff1d(labels, arr)
        if extra.size:
            raise ValueError(f"y holds labels {extra[:5].tolist()} that are not in classes "
                             f"{arr.tolist()[:10]}")


def make_schedule(lr_schedule, lr, epochs):
    """``epoch -> learning rate`` for a schedule name or a callable (its result checked).

    ``epochs`` is the horizon (the total epochs the schedule spans); the
    epoch index counts across resumed fits.
    """
    if callable(lr_schedule):
        cache: dict[int, float] = {}

        def schedule(epoch):
            if epoch not in cache:   # the first epoch's rate is checked early, then reused
                rate = lr_schedule(epoch, epochs, lr)
                cache.clear()
                cache[epoch] = v.check_real("the learning rate from lr_schedule", rate,
                                            low=0, low_open=True)
            return cache[epoch]
        return schedule
    v.check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    if lr_schedule == "step":
        step = max(1, epochs // 4)
        return lambda epoch: lr * 0.5 ** (epoch // step)
    if lr_schedule == "cosine":
        return lambda epoch: lr * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
    return lambda epoch: lr
