"""Check backpropagation against central finite differences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _validation as v
from . import reference
from ._backends import get_backend
from ._spec import layer_views, spec_of

if TYPE_CHECKING:
    from .network import Network

_Float64 = np.ndarray[Any, np.dtype[np.float64]]


def gradcheck(net: Network, X: npt.ArrayLike, y: npt.ArrayLike, *, eps: float = 1e-5,
              weight_decay: float = 0.0, max_params: int | None = None, seed: int = 0,
              sample_weight: npt.ArrayLike | None = None,
              masks: Sequence[npt.ArrayLike] | None = None) -> float:
    """Largest relative error between ``net.backprop`` and finite differences.

    The check runs in float64 on a copy of ``net`` (same backend), so it also
    checks the compiled path.  For every parameter θ_i the numerical gradient is

        (C(θ + ε e_i) − C(θ − ε e_i)) / 2ε,

    where C is the mean loss (plus ``weight_decay``/2 · Σ‖W‖², whose gradient
    λ·W is added to the analytic one), computed by the NumPy reference path
    as an independent oracle.
    The relative error of one entry is ``|g − ĝ| / max(|g| + |ĝ|, 1e-4)``: entries
    smaller than about 1e-4 are compared absolutely, since the round-off of a
    finite difference is about 1e-11 there (ε = 1e-5 balances round-off
    against the O(ε²) truncation error).

    Parameters
    ----------
    net : Network
        The network to check (not changed).
    X : array-like (n, sizes[0])
        A small batch (each parameter costs two forward passes).
    y : array-like
        Its labels or targets, as for ``fit``.
    eps : float
        Finite-difference step.
    weight_decay : float
        Include the L2 penalty used by ``fit``.
    max_params : int or None
        Check a random subset of this many parameters (all when None).
    seed : int
        Seeds the subset.
    sample_weight : array-like (n,) or None
        Check the gradient of the weighted mean loss Σ w C / Σ w.
    masks : list of arrays or None
        Fixed dropout multipliers, one (n, sizes[l+1]) array per hidden layer
        (0 for a dropped unit, 1/(1-p) for a kept one, as
        :func:`cymlp.reference.dropout_masks` makes them): checks the
        gradient of the network with those units dropped.

    Returns
    -------
    float
        The maximum relative error over the parameters checked.
    """
    eps = v.check_real("eps", eps, low=0, low_open=True)
    weight_decay = v.check_real("weight_decay", weight_decay, low=0)
    if max_params is not None:
        max_params = v.check_positive_int("max_params", max_params)
    net64 = net.copy(dtype="float64")      # checks that the parameters fit in float64
    spec = spec_of(net64)
    X, Y, _ = v.check_Xy(spec, X, y)
    w = v.check_sample_weight(sample_weight, X.shape[0])
    masks = _check_masks(masks, spec.sizes, X.shape[0])
    theta = net64.get_flat_params()        # perturbed entry by entry below
    weights, biases = layer_views(spec.sizes, theta)
    grads_w, grads_b = get_backend(net64.backend).backprop(
        spec, theta, X, Y, net64.effective_n_threads, sample_weight=w, masks=masks)[:2]
    analytic = _flat_grads(weights, grads_w, grads_b, weight_decay)

    def cost() -> float:
        acts, z_out = reference.feedforward(weights, biases, spec.activation, spec.output, X, masks)
        return reference.loss_value(spec.loss, spec.output, z_out, acts[-1], Y, w)

    # The penalty λ/2·Σ‖W‖² changes only in the perturbed entry w, by
    # λ/2·((w+ε)² − (w−ε)²); differencing just that term avoids the round-off
    # of subtracting two large sums.
    is_weight = np.zeros(theta.size, dtype=bool)
    for W in layer_views(spec.sizes, is_weight)[0]:
        W[...] = True

    indices = np.arange(theta.size)
    if max_params is not None and max_params < theta.size:
        indices = np.random.default_rng(seed).choice(theta.size, size=max_params, replace=False)
    worst = 0.0
    for i in indices:
        saved = theta[i]
        theta[i] = saved + eps
        c_plus = cost()
        theta[i] = saved - eps
        c_minus = cost()
        theta[i] = saved
        numeric = (c_plus - c_minus) / (2 * eps)
        if is_weight[i]:
            numeric += 0.5 * weight_decay * ((saved + eps) ** 2 - (saved - eps) ** 2) / (2 * eps)
        if not (np.isfinite(analytic[i]) and np.isfinite(numeric)):
            raise ValueError("gradcheck: the loss or its gradient is not finite for this network "
                             "and data (overflow?); scale the inputs or use smaller weights")
        error = abs(analytic[i] - numeric) / max(abs(analytic[i]) + abs(numeric), 1e-4)
        worst = max(worst, error)
    return float(worst)


def _check_masks(masks: Sequence[npt.ArrayLike] | None, sizes: Sequence[int],
                 n_rows: int) -> list[_Float64] | None:
    """Float64 C-contiguous copies of fixed dropout masks, checked against the network."""
    if masks is None:
        return None
    masks = list(masks)
    if len(masks) != len(sizes) - 2:
        raise ValueError(f"masks needs one array per hidden layer ({len(sizes) - 2}); "
                         f"got {len(masks)}")
    out = []
    for l, m in enumerate(masks):
        m = v.as_float_array(f"masks[{l}]", m, np.float64)
        if m.shape != (n_rows, sizes[l + 1]):
            raise ValueError(f"masks[{l}] must have shape {(n_rows, sizes[l + 1])}; got {m.shape}")
        if m.min() < 0:
            raise ValueError(f"masks[{l}] holds negative multipliers")
        out.append(m)
    return out


def _flat_grads(weights: Sequence[_Float64], grads_w: Sequence[_Float64], grads_b: Sequence[_Float64],
                weight_decay: float) -> _Float64:
    parts = []
    for W, gw, gb in zip(weights, grads_w, grads_b):
        parts.append((gw + weight_decay * W).ravel())
        parts.append(gb.ravel())
    return np.concatenate(parts)

