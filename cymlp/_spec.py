"""What a backend needs to know about a network: its spec and its parameter layout.

Backends never see a :class:`~cymlp.network.Network`.  They get a
:class:`ModelSpec` (immutable: sizes, activations, loss, dtype) and the flat
parameter buffer ``theta``, laid out per layer as
``[W_0 (n_out·n_in, row-major), b_0, W_1, b_1, ...]``.  :func:`layer_views` is
the one place that turns the buffer into per-layer arrays.  :class:`Backend`
and :class:`Trainer` spell out what a backend provides (the full contract is
in :mod:`cymlp._numpy_backend`'s docstring).
"""

import itertools
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ModelSpec:
    """The architecture of a network: everything but its parameters."""
    sizes: tuple
    activation: str
    output: str
    loss: str
    dtype: np.dtype

    def __post_init__(self):
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def n_params(self):
        """Length of the flat parameter buffer."""
        return n_params(self.sizes)

    @property
    def n_outputs(self):
        return self.sizes[-1]


def n_params(sizes):
    """Parameters of a network with these layer sizes (weights and biases)."""
    return sum(n_out * n_in + n_out for n_in, n_out in itertools.pairwise(sizes))


def layer_views(sizes, theta):
    """Per-layer ``(weights, biases)`` views into the flat buffer ``theta``.

    ``weights[l]`` has shape ``(sizes[l+1], sizes[l])`` and ``biases[l]``
    shape ``(sizes[l+1],)``; writing into them writes into ``theta``.  Works
    for any flat array laid out like the parameters (a gradient, a mask).
    """
    if theta.ndim != 1 or theta.shape[0] != n_params(sizes):
        raise ValueError(f"expected a flat buffer of {n_params(sizes)} parameters for sizes "
                         f"{tuple(sizes)}; got shape {theta.shape}")
    weights, biases = [], []
    offset = 0
    for n_in, n_out in itertools.pairwise(sizes):
        weights.append(theta[offset:offset + n_out * n_in].reshape(n_out, n_in))
        offset += n_out * n_in
        biases.append(theta[offset:offset + n_out])
        offset += n_out
    return weights, biases


class Trainer(Protocol):
    """Runs SGD steps on the parameter buffer it was made with; made once per ``fit``.

    The stop flag (a callable, Ctrl-C) is given to the backend's ``trainer``
    at construction; ``run`` returns after fewer steps when it turns true.
    """

    def run(self, order, first, stop, lr):
        """Steps for batches ``first .. stop-1`` of ``order``: ``(loss_sum, n_correct, n_seen, n_steps)``."""

    def close(self):
        """Release what the constructor took (the BLAS pool); runs on every path out of ``fit``."""


class Backend(Protocol):
    """The passes of one backend, on a :class:`ModelSpec` and a flat buffer ``theta``."""

    name: str

    def feedforward(self, spec, theta, X, n_threads):
        """Output activations (n, k) of validated ``X``."""

    def backprop(self, spec, theta, X, Y, n_threads):
        """``(grads_w, grads_b, mean loss)`` over the rows of ``X``."""

    def loss_and_output(self, spec, theta, X, Y, n_threads):
        """``(mean loss, output activations)`` from one forward pass."""

    def trainer(self, spec, theta, X, Y, labels, *, batch_size, optimizer, parallel,
                average_every, average_weighting, n_threads, adaptive, should_stop,
                mode=None, state=None) -> Trainer:
        """A :class:`Trainer` writing into ``theta``; ``adaptive``: ``n_threads`` was the default.

        ``state``: the :class:`~cymlp._state.TrainingState` to continue (its
        ``m``/``v`` used in place as the optimizer's buffers, ``step``
        advanced with every step); None for a fresh one of the trainer's own.
        """
