"""What a backend needs to know about a network: its spec and its parameter layout.

Backends never see a :class:`~cymlp.network.Network`.  They get a
:class:`ModelSpec` (immutable: sizes, activations, loss, dtype) and the flat
parameter buffer ``theta``, laid out per layer as
``[W_0 (n_out·n_in, row-major), b_0, W_1, b_1, ...]``.  :func:`layer_views` is
the one place that turns the buffer into per-layer arrays.  What a backend
provides in return is in :mod:`cymlp._backends`.
"""

import itertools
from dataclasses import dataclass

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
        """Units of the output layer."""
        return self.sizes[-1]


def spec_of(net):
    """The :class:`ModelSpec` of a network (or anything with its public architecture attributes)."""
    return ModelSpec(net.sizes, net.activation, net.output, net.loss_name, net.dtype)


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
