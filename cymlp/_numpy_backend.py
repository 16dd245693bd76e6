"""The ``backend="numpy"`` passes: the reference module driven step by step.

A backend provides the passes only; everything else (parameters, validation,
the epoch loop, schedules, early stopping, saving) lives in :mod:`cymlp.network`
and :mod:`cymlp._training` and is shared by both backends.  A backend gets the
network's :class:`~cymlp._spec.ModelSpec` and flat parameter buffer, never the
network; the interface (:class:`cymlp._spec.Backend`, which the compiled
backend implements too):

``feedforward(spec, theta, X, n_threads) -> (n, k)``
    Output activations for validated ``X``.
``backprop(spec, theta, X, Y, n_threads) -> (grads_w, grads_b, loss)``
    Mean-loss gradient and the mean loss.
``loss_and_output(spec, theta, X, Y, n_threads) -> (float, (n, k))``
    Mean loss and the output activations (one forward pass for both).
``trainer(spec, theta, X, Y, labels, *, batch_size, optimizer, parallel, average_every,
average_weighting, n_threads, adaptive, should_stop, mode=None, state=None)``
    A :class:`~cymlp._spec.Trainer` made once per ``fit`` (the NumPy path
    runs ``parallel="sync"`` only; fit rejects the others first) whose
    ``run(order, first, stop, lr)`` performs the SGD steps for mini-batches
    ``first .. stop-1`` of the epoch ordering ``order`` (batch ``i`` is
    ``order[i*batch_size:(i+1)*batch_size]``) and returns ``(loss_sum,
    n_correct, n_seen, n_steps_done)``: the sum over the examples seen of
    their loss before the step, how many of them were classified correctly
    (0 without labels), how many examples and how many steps were done.  It
    stops early, after fewer steps, when a batch loss is not finite
    (divergence) or when ``should_stop()`` returns True.  ``close()`` runs
    after the fit, on every path out.  ``state`` is the
    :class:`~cymlp._state.TrainingState` to continue: the trainer uses its
    ``m``/``v`` arrays as its optimizer buffers (in place), starts counting
    steps at ``state.step`` and advances it with every step taken (``None``:
    a fresh state of the trainer's own).
"""

import numpy as np

from . import reference
from ._spec import layer_views
from ._state import TrainingState, dropout_seed


class NumpyBackend:
    name = "numpy"

    def feedforward(self, spec, theta, X, n_threads=1):
        weights, biases = layer_views(spec.sizes, theta)
        activations, _ = reference.feedforward(weights, biases, spec.activation, spec.output, X)
        return activations[-1]

    def backprop(self, spec, theta, X, Y, n_threads=1, sample_weight=None, masks=None):
        weights, biases = layer_views(spec.sizes, theta)
        grads_w, grads_b, loss, _ = reference.backprop(
            weights, biases, spec.activation, spec.output, spec.loss, X, Y, sample_weight, masks)
        return grads_w, grads_b, loss

    def loss_and_output(self, spec, theta, X, Y, n_threads=1, sample_weight=None):
        weights, biases = layer_views(spec.sizes, theta)
        activations, z_out = reference.feedforward(weights, biases, spec.activation, spec.output, X)
        loss = reference.loss_value(spec.loss, spec.output, z_out, activations[-1], Y, sample_weight)
        return float(loss), activations[-1]

    def trainer(self, spec, theta, X, Y, labels, *, batch_size, optimizer, should_stop=None,
                terms=None, state=None, **threads_and_strategy):
        return NumpyTrainer(spec, theta, X, Y, labels, batch_size, optimizer, should_stop, terms,
                            state)


class NumpyTrainer:
    """Mini-batch SGD/Adam with the reference passes, one batch per Python iteration."""

    def __init__(self, spec, theta, X, Y, labels, batch_size, optimizer, should_stop=None,
                 terms=None, state=None):
        self.spec, self.X, self.Y, self.labels = spec, X, Y, labels
        self.weights, self.biases = layer_views(spec.sizes, theta)
        self.batch_size = batch_size
        self.opt = optimizer
        self.params = [p for pair in zip(self.weights, self.biases) for p in pair]
        self.decays = [True, False] * len(self.weights)
        if state is None:
            state = TrainingState(optimizer, theta.size, theta.dtype, seed=None)
        self.state = state

        def per_param(flat):     # views into the state's flat buffer, in the order of params
            if flat is None:
                return None
            w, b = layer_views(spec.sizes, flat)
            return [p for pair in zip(w, b) for p in pair]
        self.state_m = per_param(state.m)      # velocity, or Adam's m
        self.state_v = per_param(state.v)
        self.should_stop = should_stop or (lambda: False)
        self.terms = terms

    def close(self):
        """Nothing to release (the compiled trainers release the BLAS pool here)."""

    def run(self, order, first, stop, lr):
        spec, opt = self.spec, self.opt
        loss_sum, n_correct, n_seen, steps = 0.0, 0, 0, 0
        for i in range(first, stop):
            if self.should_stop():
                break
            rows = order[i * self.batch_size:(i + 1) * self.batch_size]
            X, Y = self.X[rows], self.Y[rows]
            w, masks, clip_norm = self._terms(rows)
            if w is not None and not w.sum() > 0:
                steps += 1                 # a batch of weight 0: no update, no examples
                continue
            grads_w, grads_b, loss, out = reference.backprop(
                self.weights, self.biases, spec.activation, spec.output, spec.loss, X, Y, w, masks)
            if not np.isfinite(loss):
                break
            grads = [g for pair in zip(grads_w, grads_b) for g in pair]
            if clip_norm is not None:
                reference.clip_by_global_norm(grads, clip_norm)
            self.state.step += 1
            if opt.name == "adam":
                reference.adam_update(self.params, grads, self.state_m, self.state_v, self.state.step, lr,
                                      opt.beta1, opt.beta2, opt.eps, self.decays, opt.weight_decay)
            else:
                reference.sgd_update(self.params, grads, self.state_m, lr, opt.momentum, opt.nesterov,
                                     self.decays, opt.weight_decay)
            loss_sum += loss * len(rows)
            n_seen += len(rows)
            steps += 1
            if self.labels is not None:   # outputs before this step's update
                n_correct += int(np.sum(out.argmax(axis=1) == self.labels[rows]))
        return loss_sum, n_correct, n_seen, steps

    def _terms(self, rows):
        """The batch's ``(sample weights, dropout masks, clip_norm)``."""
        t = self.terms
        if t is None:
            return None, None, None
        masks = None
        if t.has_dropout:
            st = self.state        # keyed by the optimizer step about to be taken
            masks = reference.dropout_masks(dropout_seed(st.seed), st.epoch, st.step,
                                            self.spec.sizes, len(rows), t.dropout, self.spec.dtype)
        w = None if t.sample_weight is None else t.sample_weight[rows]
        return w, masks, t.clip_norm
