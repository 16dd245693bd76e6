"""The reference path's sample weights, dropout masks and gradient clipping.

These define the maths both backends implement (issue 14); each is checked
against an independent oracle: central finite differences in float64, row
removal, or a plain loop over the mask's coordinates.
"""

import numpy as np
import pytest
from _helpers import random_data

from cymlp import reference

SIZES = [5, 7, 6, 3]


def _params(seed=0, sizes=SIZES):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0, 0.6, (n_out, n_in)) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(0, 0.1, n_out) for n_out in sizes[1:]]
    return weights, biases


def _batch(n=9, seed=1, sizes=SIZES):
    X, y = random_data(n, sizes[0], sizes[-1], seed=seed)
    return X, np.eye(sizes[-1])[y]


def _finite_difference(weights, biases, cost, eps=1e-6):
    grads = []
    for p in [*weights, *biases]:
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up = cost()
            p[i] = old - eps
            down = cost()
            p[i] = old
            g[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


CASES = [("sigmoid", "softmax", "cross_entropy"), ("tanh", "sigmoid", "quadratic"),
         ("relu", "identity", "quadratic"), ("leaky_relu", "softmax", "quadratic")]


@pytest.mark.parametrize("hidden, output, loss", CASES)
def test_weighted_gradient_matches_finite_differences(hidden, output, loss):
    weights, biases = _params()
    X, Y = _batch()
    w = np.random.default_rng(2).uniform(0, 3, len(X))
    gw, gb, cost, _ = reference.backprop(weights, biases, hidden, output, loss, X, Y, sample_weight=w)

    def weighted_cost():
        acts, z = reference.feedforward(weights, biases, hidden, output, X)
        return reference.loss_value(loss, output, z, acts[-1], Y, w)

    assert np.isclose(cost, weighted_cost())
    for analytic, numeric in zip([*gw, *gb], _finite_difference(weights, biases, weighted_cost)):
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_all_ones_weights_reproduce_the_unweighted_gradient_bit_for_bit(dtype):
    weights, biases = ([a.astype(dtype) for a in part] for part in _params())
    X, Y = (a.astype(dtype) for a in _batch(n=49))
    plain = reference.backprop(weights, biases, "tanh", "softmax", "cross_entropy", X, Y)
    ones = reference.backprop(weights, biases, "tanh", "softmax", "cross_entropy", X, Y,
                              sample_weight=np.ones(len(X), dtype))
    for a, b in zip([*plain[0], *plain[1]], [*ones[0], *ones[1]]):
        assert np.array_equal(a, b)


def test_zero_weights_equal_removing_the_rows():
    weights, biases = _params()
    X, Y = _batch(n=10)
    w = np.ones(len(X))
    w[[2, 5, 6]] = 0
    keep = w > 0
    weighted = reference.backprop(weights, biases, "sigmoid", "softmax", "cross_entropy", X, Y, sample_weight=w)
    removed = reference.backprop(weights, biases, "sigmoid", "softmax", "cross_entropy", X[keep], Y[keep])
    assert np.isclose(weighted[2], removed[2], rtol=1e-13)
    for a, b in zip([*weighted[0], *weighted[1]], [*removed[0], *removed[1]]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_dropout_masks_follow_their_definition():
    sizes, rates = [4, 50, 30, 2], [0.3, 0.5]
    masks = reference.dropout_masks(seed=7, epoch=2, step=11, sizes=sizes, n_rows=20, rates=rates,
                                    dtype=np.float32)
    assert [m.shape for m in masks] == [(20, 50), (20, 30)]
    for l, (mask, p) in enumerate(zip(masks, rates)):
        assert set(np.unique(mask)) <= {0.0, np.float32(1 / (1 - p))}
        # one coordinate, recomputed from the definition with Python integers
        r, j = 13, 29
        key = int(reference.dropout_key(7, 2, 11, l))
        bits = int(reference.mix64(np.uint64(key ^ ((r << 32) | j))))
        assert (mask[r, j] > 0) == ((bits >> 11) * 2.0 ** -53 >= p)
        # about a fraction p dropped, masks differ across layers, steps and seeds
        assert abs((mask == 0).mean() - p) < 0.1
    again = reference.dropout_masks(7, 2, 11, sizes, 20, rates, np.float32)
    other_step = reference.dropout_masks(7, 2, 12, sizes, 20, rates, np.float32)
    other_seed = reference.dropout_masks(8, 2, 11, sizes, 20, rates, np.float32)
    assert all(np.array_equal(a, b) for a, b in zip(masks, again))
    assert not np.array_equal(masks[0], other_step[0]) and not np.array_equal(masks[0], other_seed[0])
    assert np.all(reference.dropout_masks(7, 2, 11, sizes, 20, [0.0, 0.0], np.float64)[0] == 1)


@pytest.mark.parametrize("hidden, output, loss", CASES)
def test_gradient_with_a_fixed_dropout_mask_matches_finite_differences(hidden, output, loss):
    weights, biases = _params()
    X, Y = _batch()
    masks = reference.dropout_masks(3, 0, 0, SIZES, len(X), [0.4, 0.25], np.float64)
    gw, gb, _, _ = reference.backprop(weights, biases, hidden, output, loss, X, Y, masks=masks)

    def masked_cost():
        acts, z = reference.feedforward(weights, biases, hidden, output, X, masks)
        return reference.loss_value(loss, output, z, acts[-1], Y)

    for analytic, numeric in zip([*gw, *gb], _finite_difference(weights, biases, masked_cost)):
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_clip_by_global_norm():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(3, 4)), rng.normal(size=4)]
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
    small = [g.copy() for g in grads]
    assert np.isclose(reference.clip_by_global_norm(small, norm * 2), norm)
    assert all(np.array_equal(a, b) for a, b in zip(small, grads))      # under the limit: untouched
    clipped = [g.copy() for g in grads]
    reference.clip_by_global_norm(clipped, 0.5)
    assert np.isclose(np.sqrt(sum(np.sum(g ** 2) for g in clipped)), 0.5)
    np.testing.assert_allclose(clipped[0] / grads[0], 0.5 / norm)        # direction kept
