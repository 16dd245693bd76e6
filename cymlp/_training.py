"""How ``Network.fit`` trains: the epoch loop, validation split, early stopping, divergence, Ctrl-C.

``Network.fit`` checks its arguments (:func:`cymlp._fit_checks.check_fit`),
then hands :func:`train` a :class:`NetworkView` (what the loop may touch of
the network), the checked settings and data.  :func:`train` splits off
validation rows (drawn from the training seed), makes the backend's trainer
and runs the epochs.  The backend only runs steps (see
:class:`cymlp._backends.Trainer`); schedules, early stopping, divergence
rollback, Ctrl-C and the history are handled here, the same for every
backend.  The loop is the one owner of the training state's ``epoch``; the
trainer advances its ``step``.
"""

import dataclasses
import signal
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ._backends import Backend
from ._fit_checks import FitData, uses_worker_states
from ._sparse import block_rows, dense
from ._spec import ModelSpec
from .exceptions import TrainingDiverged
from .history import History
from .training_state import TrainingState

TARGET_SECONDS_PER_CALL = 0.2      # the trainer returns to Python about this often
EVAL_CHUNK_ROWS = 8192             # evaluation works through the rows in chunks (as feedforward)


@dataclass(frozen=True)
class NetworkView:
    """What the training loop may read and write of a ``Network``: the one seam between them.

    Made by the network for one ``fit`` call.  ``network`` is the network
    itself, for its public attributes (``dropout``, ``training_seed``,
    ``training_state_``, ``history_``, ...); the other fields are the parts
    it keeps private: ``spec`` (its :class:`~cymlp._spec.ModelSpec`),
    ``theta`` (its flat parameter buffer, live: the trainer writes the steps
    into it), ``backend`` (the object running the passes) and
    ``shuffle_rng`` (the generator of the epoch shuffles).
    """
    network: object
    spec: ModelSpec
    theta: np.ndarray
    backend: Backend
    shuffle_rng: np.random.Generator


VALIDATION_STREAM = 0x76616C    # SeedSequence spawn key of the validation split ("val")


def split_generator(seed):
    """The generator of the validation split: a function of the training seed alone.

    Every fit of a network (a resumed one included) holds out the same rows
    of the same data, and the split draws nothing from the shuffle generator.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(VALIDATION_STREAM,)))


def _split_validation(seed, data, n_validation):
    """Hold out ``n_validation`` shuffled rows, drawn from :func:`split_generator` of ``seed``."""
    if n_validation == 0:
        return data
    split = split_generator(seed).permutation(data.X.shape[0])
    # each part in data order: the copies then read X sequentially (Fashion-MNIST's
    # 54,000 training rows: 0.06 s instead of 0.4 s); fit shuffles every epoch anyway
    val, train = np.sort(split[:n_validation]), np.sort(split[n_validation:])

    def part(a, rows):
        return None if a is None else a[rows]
    return FitData(data.X[train], data.Y[train], part(data.labels, train),
                   data.X[val], data.Y[val], part(data.labels, val),
                   part(data.sample_weight, train), part(data.sample_weight, val))


def make_trainer(view, X, Y, labels, options, *, state=None, should_stop=None):
    """The backend's trainer writing into the network's buffer; ``close()`` it after use.

    ``options``: a :class:`~cymlp._backends.TrainerOptions`; ``state``: the
    :class:`~cymlp.training_state.TrainingState` whose buffers and step count
    the trainer continues and advances (None: a fresh one of its own).
    """
    return view.backend.trainer(view.spec, view.theta, X, Y, labels, options, state=state,
                                should_stop=should_stop)


def evaluate(backend, spec, theta, X, Y, n_threads, should_stop=None, sample_weight=None):
    """Mean loss and output activations of validated ``X``, ``Y``, in chunks of rows
    (a sparse ``X`` densified one chunk at a time).

    With ``sample_weight`` (checked, positive sum) the loss is the weighted
    mean Σ w C / Σ w.  Returns None when ``should_stop()`` turns true between
    chunks (Ctrl-C).
    """
    out = np.empty((X.shape[0], spec.n_outputs), dtype=spec.dtype)
    total = 0.0
    chunk = block_rows(X, EVAL_CHUNK_ROWS)          # fewer rows for a wide sparse X
    for start in range(0, X.shape[0], chunk):
        if should_stop is not None and should_stop():
            return None
        rows = slice(start, start + chunk)
        if sample_weight is None:
            loss, out[rows] = backend.loss_and_output(spec, theta, dense(X[rows]), Y[rows], n_threads)
            total += loss * out[rows].shape[0]
            continue
        w = sample_weight[rows]
        weight = float(w.sum())
        loss, out[rows] = backend.loss_and_output(spec, theta, dense(X[rows]), Y[rows], n_threads,
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
    """One fit's state: the network's view, its trainer, the history, the rollback points."""

    def __init__(self, view, settings, data, trainer, interrupt, state):
        self.view, self.s, self.data = view, settings, data
        self.trainer, self.interrupt = trainer, interrupt
        self.n_threads = settings.trainer.n_threads
        self.state = state
        self.theta = view.theta
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
                self.state.epoch = epoch       # the epoch that runs (dropout keys, see training_state)
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
        n_batches = -(-n // s.trainer.batch_size)
        order = self.view.shuffle_rng.permutation(n) if s.shuffle else np.arange(n)
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
            result = evaluate(self.view.backend, self.view.spec, self.theta, data.X_val, data.Y_val,
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


def train(view, settings, data):
    """Run a checked fit on the network of ``view``; returns the :class:`History` (also ``history_``).

    Continues ``net.training_state_`` when ``settings.resume``; otherwise
    gives the network a fresh state (none for the hogwild/average trainers,
    which keep one state per worker).  A rejected call changes nothing.
    """
    net, options = view.network, settings.trainer
    data = _split_validation(net.training_seed, data, settings.n_validation)
    if data.sample_weight is not None and not data.sample_weight.sum() > 0:
        raise ValueError("every training row left after the validation split has weight 0; "
                         "give some of them a positive sample_weight")
    if data.sample_weight_val is not None and not data.sample_weight_val.sum() > 0:
        data = dataclasses.replace(data, sample_weight_val=None)
    if settings.epochs == 0:
        net.history_ = History()
        return net.history_
    options = dataclasses.replace(options, sample_weight=data.sample_weight)
    if settings.resume:
        state = net.training_state_
    elif uses_worker_states(net, options.parallel):
        state = None
    else:
        state = TrainingState(options.optimizer, view.theta.size, view.spec.dtype, net.training_seed)
    net.training_state_ = state
    interrupt = InterruptFlag()
    trainer = make_trainer(view, data.X, data.Y, data.labels, options, state=state,
                           should_stop=interrupt.is_set)
    try:
        loop = _Loop(view, settings, data, trainer, interrupt, state)
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
