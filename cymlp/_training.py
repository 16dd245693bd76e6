"""How ``Network.fit`` trains: checked settings, the epoch loop, early stopping, divergence.

:func:`check_fit` validates every argument of ``fit`` at once, without
touching the network, into a frozen :class:`FitSettings` and the checked
data; :func:`train` then splits off validation rows (the first use of the
network's random generator), builds the backend's trainer and runs the
epochs.  The backend only runs steps (see :class:`cymlp._spec.Trainer`);
schedules, early stopping, divergence rollback, Ctrl-C and the history are
handled here, the same for every backend.
"""

import math
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _training_terms as terms_
from . import _validation as v
from ._state import TrainingState
from .history import History

TARGET_SECONDS_PER_CALL = 0.2      # the trainer returns to Python about this often
EVAL_CHUNK_ROWS = 8192             # evaluation works through the rows in chunks (as feedforward)

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


@dataclass(frozen=True)
class FitSettings:
    """The arguments of one ``fit``, checked (see ``Network.fit`` for their meaning)."""
    epochs: int
    batch_size: int                 # clipped to the training rows
    lr: float
    schedule: Callable[[int], float]   # epoch -> learning rate, its result checked
    optimizer: OptimizerConfig
    shuffle: bool
    early_stopping: bool
    patience: int
    callbacks: tuple
    progress: Callable | None
    verbose: bool
    on_divergence: str
    parallel: str
    average_every: Any
    average_weighting: str
    n_validation: int               # rows to hold out (validation_fraction); 0 for none
    clip_norm: float | None = None  # clip the mean gradient's global norm (before weight decay)
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


# ---- the training terms of issue 14 (sample weights, dropout, clipping) ----------------
# The dropout masks of a step are keyed by the training state's (seed, epoch, step)
# (see cymlp._state.dropout_seed): step is the optimizer step about to be taken (Adam's
# t before the step), so a skipped batch (all weights 0) uses no key, and a resumed fit
# draws the masks the uninterrupted fit would have drawn.

@dataclass(frozen=True)
class StepTerms:
    """What a trainer adds to a plain mini-batch step (see ``Network.fit``).

    ``sample_weight`` (float64, one per training row, or None): each batch
    minimises Σ w C / Σ w over its rows; a batch whose weights are all 0 is
    skipped (no update, no examples counted).  ``dropout``: a drop rate per
    hidden layer.  ``clip_norm``: the mean gradient (of the loss, before weight
    decay is added) is scaled to this global norm when it is longer.
    """
    sample_weight: np.ndarray | None = None
    dropout: tuple = ()
    clip_norm: float | None = None

    @property
    def has_dropout(self):
        return any(p > 0 for p in self.dropout)


def check_fit(net, X, y, *, epochs, batch_size, lr, momentum, nesterov, weight_decay, shuffle,
              validation_data, optimizer, lr_schedule, beta1, beta2, eps, validation_fraction,
              early_stopping, patience, callbacks, progress, verbose, on_divergence, parallel,
              average_every, average_weighting, sample_weight=None, class_weight=None,
              clip_norm=None, resume=False, lr_schedule_epochs=None):
    """Validate every argument of ``fit``; return ``(FitSettings, FitData)``.

    Touches nothing: no random numbers are drawn and no state changes, so a
    rejected call (an exception, or a warning under ``-W error``) leaves the
    network as it was.  The warnings come last, after every check.
    """
    net._check_params_finite()
    X, Y, labels = net._check_Xy(X, y)
    epochs = v.check_positive_int("epochs", epochs, minimum=0)
    lr = v.check_real("lr", lr, low=0, low_open=True)
    momentum = v.check_real("momentum", momentum, low=0, high=1, high_open=True)
    weight_decay = v.check_real("weight_decay", weight_decay, low=0)
    v.check_choice("optimizer", optimizer, OPTIMIZERS)
    v.check_choice("on_divergence", on_divergence, ("raise", "warn"))
    v.check_choice("parallel", parallel, PARALLEL_STRATEGIES)
    if parallel != "sync" and net.backend != "cython":
        raise ValueError(f"parallel={parallel!r} runs in the compiled path only; use backend='cython'")
    if average_every is not None and average_every != "end":
        v.check_positive_int("average_every", average_every)
    v.check_choice("average_weighting", average_weighting, AVERAGE_WEIGHTINGS)
    beta1 = v.check_real("beta1", beta1, low=0, high=1, high_open=True)
    beta2 = v.check_real("beta2", beta2, low=0, high=1, high_open=True)
    eps = v.check_real("eps", eps, low=0, low_open=True)
    patience = v.check_positive_int("patience", patience)
    batch_size = v.check_positive_int("batch_size", batch_size)
    optimizer = OptimizerConfig(optimizer, momentum, bool(nesterov), weight_decay, beta1, beta2, eps)
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
    callbacks = tuple(callbacks or ())
    for cb in callbacks + ((progress,) if progress is not None else ()):
        if not callable(cb):
            raise TypeError(f"callbacks and progress must be callables; got {cb!r}")
    if validation_data is not None and validation_fraction is not None:
        raise ValueError("pass validation_data or validation_fraction, not both")
    weights = terms_.combine_weights(
        sample_weight, terms_.check_class_weight(class_weight, labels, net.sizes[-1]), X.shape[0])
    clip_norm = terms_.check_clip_norm(clip_norm)
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
        data = FitData(X, Y, labels, *net._check_Xy(X_val, y_val, "validation X", "validation y"),
                       sample_weight=weights)
    elif validation_fraction is not None:
        fraction = v.check_real("validation_fraction", validation_fraction, low=0, high=1,
                                low_open=True, high_open=True)
        n_validation = round(fraction * X.shape[0])
        if n_validation < 1 or n_validation >= X.shape[0]:
            raise ValueError(f"validation_fraction={fraction} leaves no rows for training or "
                             f"validation out of {X.shape[0]}")
    if epochs > 0:
        schedule(start_epoch)  # a callable schedule's first rate is checked before anything changes
    # ---- warnings last: under -W error they reject the call, which must change nothing
    if early_stopping and validation_data is None and validation_fraction is None:
        warnings.warn("early_stopping without validation data monitors the training loss",
                      UserWarning, stacklevel=3)
    batch_size = v.clip_batch_size(batch_size, X.shape[0] - n_validation, stacklevel=4)
    settings = FitSettings(
        epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule,
        optimizer=optimizer,
        shuffle=bool(shuffle), early_stopping=bool(early_stopping), patience=patience,
        callbacks=callbacks, progress=progress, verbose=bool(verbose), on_divergence=on_divergence,
        parallel=parallel, average_every=average_every, average_weighting=average_weighting,
        n_validation=n_validation, clip_norm=clip_norm, resume=bool(resume),
        start_epoch=start_epoch, horizon=horizon)
    return settings, data


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


def check_classes(classes, y, n_outputs):
    """``partial_fit``'s ``classes``: distinct integer labels 0..n_outputs-1 that cover ``y``."""
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
        labels = np.asarray(y)
    except (TypeError, ValueError):
        return                      # fit's own checks reject it
    if labels.ndim == 1 and labels.dtype.kind in "iu" and labels.size:
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
        cache = {}

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


VALIDATION_STREAM = 0x76616C    # SeedSequence spawn key of the validation split ("val")


def split_generator(seed):
    """The generator of the validation split: a function of the training seed alone.

    Every fit of a network (a resumed one included) holds out the same rows
    of the same data, and the split draws nothing from the shuffle generator.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(VALIDATION_STREAM,)))


def _split_validation(rng, data, n_validation):
    """Hold out ``n_validation`` shuffled rows, drawn from ``rng``."""
    if n_validation == 0:
        return data
    split = rng.permutation(data.X.shape[0])
    # each part in data order: the copies then read X sequentially (Fashion-MNIST's
    # 54,000 training rows: 0.06 s instead of 0.4 s); fit shuffles every epoch anyway
    val, train = np.sort(split[:n_validation]), np.sort(split[n_validation:])

    def part(a, rows):
        return None if a is None else a[rows]
    return FitData(data.X[train], data.Y[train], part(data.labels, train),
                   data.X[val], data.Y[val], part(data.labels, val),
                   part(data.sample_weight, train), part(data.sample_weight, val))


def make_trainer(net, X, Y, labels, batch_size, optimizer, parallel="sync", average_every=None,
                 average_weighting="uniform", should_stop=None, n_threads=None, terms=None,
                 state=None):
    """The backend's trainer for ``net`` (buffers for one fit); ``close()`` it after use.

    ``terms``: the :class:`StepTerms` of the fit (None: plain steps).
    ``state``: the :class:`~cymlp._state.TrainingState` whose buffers and
    step count the trainer continues and advances (None: a fresh one of its
    own); its seed, epoch and step key the dropout masks.
    """
    extra = {} if terms is None else {"terms": terms}
    return net._backend.trainer(
        net._spec, net._theta, X, Y, labels, batch_size=batch_size, optimizer=optimizer,
        parallel=parallel, average_every=average_every, average_weighting=average_weighting,
        n_threads=net.effective_n_threads if n_threads is None else n_threads,
        adaptive=net.n_threads is None, should_stop=should_stop or (lambda: False),
        mode=getattr(net, "_cython_mode", None), state=state, **extra)


def evaluate(backend, spec, theta, X, Y, n_threads, should_stop=None, sample_weight=None):
    """Mean loss and output activations of validated ``X``, ``Y``, in chunks of rows.

    With ``sample_weight`` (checked, positive sum) the loss is the weighted
    mean Σ w C / Σ w.  Returns None when ``should_stop()`` turns true between
    chunks (Ctrl-C).
    """
    out = np.empty((X.shape[0], spec.n_outputs), dtype=spec.dtype)
    total = 0.0
    for start in range(0, X.shape[0], EVAL_CHUNK_ROWS):
        if should_stop is not None and should_stop():
            return None
        rows = slice(start, start + EVAL_CHUNK_ROWS)
        if sample_weight is None:
            loss, out[rows] = backend.loss_and_output(spec, theta, X[rows], Y[rows], n_threads)
            total += loss * out[rows].shape[0]
            continue
        w = sample_weight[rows]
        weight = float(w.sum())
        loss, out[rows] = backend.loss_and_output(spec, theta, X[rows], Y[rows], n_threads,
                                                  sample_weight=w if weight > 0 else None)
        total += loss * weight if weight > 0 else 0.0
    return total / (X.shape[0] if sample_weight is None else float(sample_weight.sum())), out


class InterruptFlag:
    """Turn Ctrl-C during ``fit`` into a flag checked between steps.

    The first SIGINT asks training to stop after the current step (or the
    current compiled call, a fraction of a second, or the current chunk of
    validation rows); a second one interrupts at once.  Only installed in the
    main thread, where Python delivers signals.
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


class _Loop:
    """One fit's state: the network, its trainer, the history, the rollback points."""

    def __init__(self, net, settings, data, trainer, interrupt, n_threads, state):
        self.net, self.s, self.data = net, settings, data
        self.trainer, self.interrupt, self.n_threads = trainer, interrupt, n_threads
        self.state = state
        self.theta = net._theta
        self.history = History()
        self.last_good = self.theta.copy()   # weights at the last check where all were finite
        self.last_state = state.snapshot() if state is not None else None   # and the optimizer's
        self.best = None                     # (monitored loss, epoch, weights)
        self.steps_per_call = 1

    def run(self):
        s = self.s
        for epoch in range(s.start_epoch, s.start_epoch + s.epochs):
            rate = s.schedule(epoch)
            if self.state is not None:
                self.state.epoch = epoch       # the epoch that runs (dropout keys, see _state)
            if not self.train_epoch(epoch, rate):
                return self.diverged(epoch, rate)
            if self.end_epoch() or self.interrupt.is_set():
                break
        if s.early_stopping and self.best is not None and not self.interrupt.is_set():
            self.theta[...] = self.best[2]
            self.history.best_epoch = self.best[1]
        return self.history

    def train_epoch(self, epoch, rate):
        """Run one epoch's steps; False on divergence (weights already rolled back)."""
        s, data, theta, interrupt = self.s, self.data, self.theta, self.interrupt
        n = data.X.shape[0]
        n_batches = -(-n // s.batch_size)
        order = self.net._rng.permutation(n) if s.shuffle else np.arange(n)
        order = order.astype(np.intp, copy=False)
        loss_sum = correct = seen = done = 0
        t_epoch = time.perf_counter()
        while done < n_batches and not interrupt.is_set():
            stop = min(n_batches, done + self.steps_per_call)
            t0 = time.perf_counter()
            try:
                # overflow is divergence, detected below; no numpy warnings (or
                # exceptions under -W error) from inside a step
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    l_sum, n_corr, n_seen, steps = self.trainer.run(order, done, stop, rate)
            except BaseException:
                self.roll_back()               # never leave a half-done step behind
                raise
            elapsed = time.perf_counter() - t0
            cut_short = steps < stop - done and not interrupt.is_set()
            loss_sum += l_sum
            correct += n_corr
            seen += n_seen
            done += steps
            if cut_short or not np.isfinite(l_sum) or not np.isfinite(theta).all():
                self.roll_back()
                return False
            np.copyto(self.last_good, theta)
            if self.state is not None:
                self.last_state = self.state.snapshot()
            if steps:          # aim for one return to Python every TARGET_SECONDS_PER_CALL
                per_step = max(elapsed / steps, 1e-9)
                self.steps_per_call = max(1, min(n_batches, int(TARGET_SECONDS_PER_CALL / per_step)))
            if s.progress is not None:
                s.progress(epoch, done, n_batches)
        seconds = time.perf_counter() - t_epoch
        if done == n_batches and self.state is not None:
            self.state.epoch = epoch + 1         # completed: a resumed fit starts after it
        self.row = None
        if seen:
            self.row = {"epoch": epoch + 1, "loss": loss_sum / seen, "lr": rate, "seconds": seconds,
                            "examples_per_second": seen / seconds if seconds > 0 else float("inf"),
                            "accuracy": correct / seen if data.labels is not None else None}
        return True

    def roll_back(self):
        """Weights and optimizer state as at the last check where the weights were finite."""
        self.theta[...] = self.last_good
        if self.state is not None:
            self.state.restore(self.last_state)

    def end_epoch(self):
        """Validate, record and judge the epoch just trained; True to stop training."""
        s, data, row, interrupt = self.s, self.data, self.row, self.interrupt
        if row is None:
            return True
        if data.X_val is not None and not interrupt.is_set():
            result = evaluate(self.net._backend, self.net._spec, self.theta, data.X_val, data.Y_val,
                              self.n_threads, interrupt.is_set, data.sample_weight_val)
            if result is not None:
                row["val_loss"], out = result
                if data.labels_val is not None:
                    row["val_accuracy"] = float(np.average(out.argmax(axis=1) == data.labels_val,
                                                           weights=data.sample_weight_val))
        self.history.append(**row)
        if s.verbose:
            print(self.history.format_epoch(-1, s.start_epoch + s.epochs), flush=True)
        if interrupt.is_set():
            return True
        # every callback sees every completed epoch, the last one included
        answers = [cb(self.history) for cb in s.callbacks]
        stop_requested = any(answer is False for answer in answers)
        if s.early_stopping:
            monitored = row["val_loss"] if data.X_val is not None else row["loss"]
            if self.best is None or monitored < self.best[0]:
                self.best = (monitored, row["epoch"], self.theta.copy())
            elif row["epoch"] - self.best[1] >= s.patience:
                stop_requested = True
        if stop_requested:
            self.history.stopped_early = True
        return stop_requested

    def diverged(self, epoch, rate):
        """Roll back (to the best epoch when early stopping has one), then raise or warn."""
        self.history.diverged = True
        restored = "The last finite weights were restored"
        if self.s.early_stopping and self.best is not None:
            self.theta[...] = self.best[2]
            self.history.best_epoch = self.best[1]
            restored = f"The weights of the best epoch ({self.best[1]}) were restored"
        message = (f"training diverged in epoch {epoch + 1}: the loss or the weights became NaN or "
                   f"infinite at learning rate {rate:g}. {restored}; try a smaller lr "
                   f"(e.g. {rate / 10:g}), scaled inputs, or gradient-friendlier settings")
        if self.s.on_divergence == "raise":
            raise TrainingDiverged(message)
        warnings.warn(message, RuntimeWarning, stacklevel=5)   # the caller of fit
        return self.history


def train(net, settings, data):
    """Run a checked fit on ``net``; returns the :class:`History` (also ``net.history_``).

    Continues ``net.training_state_`` when ``settings.resume``; otherwise
    gives the network a fresh state (none for the hogwild/average trainers,
    which keep one state per worker).  A rejected call changes nothing.
    """
    data = _split_validation(split_generator(net._train_seed), data, settings.n_validation)
    if data.sample_weight is not None and not data.sample_weight.sum() > 0:
        raise ValueError("every training row left after the validation split has weight 0; "
                         "give some of them a positive sample_weight")
    if data.sample_weight_val is not None and not data.sample_weight_val.sum() > 0:
        data = FitData(*[getattr(data, f) for f in ("X", "Y", "labels", "X_val", "Y_val",
                                                    "labels_val", "sample_weight")])
    if settings.epochs == 0:
        net.history_ = History()
        return net.history_
    terms = StepTerms(data.sample_weight, net.dropout, settings.clip_norm)
    n_threads = net.effective_n_threads
    if settings.resume:
        state = net.training_state_
    elif uses_worker_states(net, settings.parallel):
        state = None
    else:
        state = TrainingState(settings.optimizer, net._theta.size, net.dtype, net._train_seed)
    net.training_state_ = state
    interrupt = InterruptFlag()
    trainer = make_trainer(net, data.X, data.Y, data.labels, settings.batch_size, settings.optimizer,
                           settings.parallel, settings.average_every, settings.average_weighting,
                           should_stop=interrupt.is_set, n_threads=n_threads, terms=terms,
                           state=state)
    try:
        loop = _Loop(net, settings, data, trainer, interrupt, n_threads, state)
        net.history_ = loop.history        # training starts: the history is this fit's
        with interrupt:
            history = loop.run()
    finally:
        trainer.close()
    if interrupt.is_set() and not history.diverged:
        history.interrupted = True
        raise KeyboardInterrupt("fit interrupted; the network keeps the weights of the last "
                                "completed step and net.history_ the epochs so far")
    return history
