"""The ``backend="numpy"`` passes: the reference module driven step by step.

Implements :class:`cymlp._backends.Backend` (the contract, and what each
method returns, is stated there once) with the readable passes of
:mod:`cymlp.reference`; :class:`NumpyTrainer` runs one mini-batch per Python
iteration and ``parallel="sync"`` only (``fit`` rejects the other strategies
first).  It is the test oracle of the compiled path.
"""

import numpy as np

from . import reference
from ._sparse import block_rows, dense
from ._spec import layer_views
from .training_state import TrainingState, dropout_seed


class NumpyBackend:
    """The reference passes (:class:`cymlp._backends.Backend`); ``n_threads`` is ignored."""

    name = "numpy"

    def feedforward(self, spec, theta, X, n_threads):
        weights, biases = layer_views(spec.sizes, theta)
        activations, _ = reference.feedforward(weights, biases, spec.activation, spec.output, X)
        return activations[-1]

    def backprop(self, spec, theta, X, Y, n_threads, *, sample_weight=None, masks=None):
        weights, biases = layer_views(spec.sizes, theta)
        grads_w, grads_b, loss, _ = reference.backprop(
            weights, biases, spec.activation, spec.output, spec.loss, X, Y, sample_weight, masks)
        return grads_w, grads_b, loss

    def loss_and_output(self, spec, theta, X, Y, n_threads, *, sample_weight=None):
        weights, biases = layer_views(spec.sizes, theta)
        activations, z_out = reference.feedforward(weights, biases, spec.activation, spec.output, X)
        loss = reference.loss_value(spec.loss, spec.output, z_out, activations[-1], Y, sample_weight)
        return float(loss), activations[-1]

    def full_batch(self, spec, X, Y, n_threads, *, sample_weight=None):
        return NumpyFullBatch(spec, X, Y, sample_weight)

    def trainer(self, spec, theta, X, Y, labels, options, *, state=None, should_stop=None):
        return NumpyTrainer(spec, theta, X, Y, labels, options, state=state, should_stop=should_stop)


class NumpyFullBatch:
    """The reference backprop over every row, a block of rows at a time (sums of block means)."""

    BLOCK_ROWS = 8192

    def __init__(self, spec, X, Y, sample_weight):
        self.spec, self.X, self.Y, self.sample_weight = spec, X, Y, sample_weight
        self.block = block_rows(X, self.BLOCK_ROWS)

    def evaluate(self, theta, grad):
        spec, n = self.spec, self.X.shape[0]
        weights, biases = layer_views(spec.sizes, theta)
        sum_w, sum_b = layer_views(spec.sizes, grad)
        grad[...] = 0
        total = 0.0
        for start in range(0, n, self.block):
            rows = slice(start, start + self.block)
            w = None if self.sample_weight is None else self.sample_weight[rows]
            count = self.Y[rows].shape[0] if w is None else float(np.sum(w))
            if not count > 0:
                continue                # a block of weight 0 adds nothing
            grads_w, grads_b, loss, _ = reference.backprop(
                weights, biases, spec.activation, spec.output, spec.loss, dense(self.X[rows]),
                self.Y[rows], w)
            total += float(loss) * count             # the block's mean times its weight
            for target, g in zip([*sum_w, *sum_b], [*grads_w, *grads_b]):
                target += g * g.dtype.type(count)
        return total


class NumpyTrainer:
    """Mini-batch SGD/Adam with the reference passes, one batch per Python iteration."""

    def __init__(self, spec, theta, X, Y, labels, options, *, state=None, should_stop=None):
        self.spec, self.X, self.Y, self.labels = spec, X, Y, labels
        self.weights, self.biases = layer_views(spec.sizes, theta)
        self.batch_size = options.batch_size
        self.opt = optimizer = options.optimizer
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
        self.options = options

    def close(self):
        """Nothing to release (the compiled trainers release the BLAS pool here)."""

    def run(self, order, first, stop, lr):
        spec, opt = self.spec, self.opt
        loss_sum, n_correct, n_seen, steps = 0.0, 0, 0, 0
        for i in range(first, stop):
            if self.should_stop():
                break
            rows = order[i * self.batch_size:(i + 1) * self.batch_size]
            X, Y = dense(self.X[rows]), self.Y[rows]       # a sparse batch densified
            w, masks, clip_norm = self._step_extras(rows)
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

    def _step_extras(self, rows):
        """The batch's ``(sample weights, dropout masks, clip_norm)``, each None when unused."""
        t = self.options
        masks = None
        if t.has_dropout:
            st = self.state        # keyed by the optimizer step about to be taken
            masks = reference.dropout_masks(dropout_seed(st.seed), st.epoch, st.step,
                                            self.spec.sizes, len(rows), t.dropout, self.spec.dtype)
        w = None if t.sample_weight is None else t.sample_weight[rows]
        return w, masks, t.clip_norm
