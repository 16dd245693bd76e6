"""``Network.objective``: the full-batch loss and gradient that scipy's optimizers drive.

Checked against central finite differences (float64) for every activation x
output x loss on both paths, against ``Network.loss``/``backprop`` plus the
L2 term, the compiled pass against the NumPy pass for every combination x
dtype x thread count (and over several blocks of rows), and driven by
scipy's L-BFGS-B.
"""

import numpy as np
import pytest
from _helpers import BACKENDS, COMBOS, HAS_COMPILED, random_data

from cymlp import Network, objective, reference

scipy_optimize = pytest.importorskip("scipy.optimize")
sp = pytest.importorskip("scipy.sparse")

SIZES = [5, 6, 4, 3]


def data(output, n=12, seed=0, sizes=SIZES):
    return random_data(n, sizes[0], sizes[-1], targets=output, seed=seed)


def make(act, out, loss, backend, dtype="float64", sizes=SIZES, **kw):
    net = Network(sizes, act, out, loss, dtype=dtype, backend=backend, seed=3, **kw)
    for b in net.biases:            # non-zero biases exercise BP3
        b[...] = np.linspace(-0.3, 0.3, b.size)
    return net


def nearest_kink(net, X):
    """The smallest |z| of a hidden unit: finite differences across ReLU's kink at 0 are wrong."""
    a, nearest = X, np.inf
    for W, b in zip(net.weights[:-1], net.biases[:-1]):
        z = a @ W.T + b
        nearest = min(nearest, float(np.abs(z).min()))
        a = reference.activate(net.activation, z)
    return nearest


def central_differences(f, theta, eps=1e-5):
    grad = np.empty_like(theta)
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = eps
        grad[i] = (f(theta + step)[0] - f(theta - step)[0]) / (2 * eps)
    return grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act,out,loss", COMBOS)
def test_gradient_matches_central_differences(act, out, loss, backend):
    net = make(act, out, loss, backend)
    X, y = data(out)
    w = np.random.default_rng(1).uniform(0.2, 3.0, len(X))
    assert nearest_kink(net, X) > 1e-3          # (the data and seed are chosen for this)
    for Xin in (X, sp.csr_matrix(X)):
        f = net.objective(Xin, y, alpha=0.3, sample_weight=w)
        theta = net.get_flat_params()
        loss_value, grad = f(theta)
        numeric = central_differences(f, theta)
        error = np.abs(grad - numeric) / np.maximum(np.abs(grad) + np.abs(numeric), 1e-4)
        assert np.isfinite(loss_value) and error.max() < 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_value_is_the_mean_loss_plus_scikit_learns_l2_term(backend):
    net = make("tanh", "softmax", "cross_entropy", backend)
    X, y = data("softmax")
    alpha = 0.7
    f = net.objective(X, y, alpha=alpha)
    value, grad = f(net.get_flat_params())
    squares = sum(float(np.sum(W ** 2)) for W in net.weights)
    assert value == pytest.approx(net.loss(X, y) + alpha / (2 * len(X)) * squares, rel=1e-13)
    assert f.data_loss == pytest.approx(net.loss(X, y), rel=1e-13)
    gw, gb = net.backprop(X, y)
    want = np.concatenate([np.concatenate([(g + alpha / len(X) * W).ravel(), c])
                           for g, c, W in zip(gw, gb, net.weights)])
    np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-15)
    assert grad.dtype == np.float64 and f.n_evaluations == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_weights_weigh_the_loss_and_their_sum_scales_the_l2_term(backend):
    net = make("relu", "identity", "quadratic", backend)
    X, y = data("identity")
    w = np.random.default_rng(3).uniform(0.5, 2, len(X))
    theta = net.get_flat_params()
    weighted = net.objective(X, y, alpha=0.2, sample_weight=w)(theta)[0]
    squares = sum(float(np.sum(W ** 2)) for W in net.weights)
    assert weighted == pytest.approx(net.loss(X, y, sample_weight=w) + 0.1 / w.sum() * squares,
                                     rel=1e-13)
    # equal weights c: the same mean loss, but an L2 term over c·n (as scikit-learn's)
    twos = net.objective(X, y, alpha=0.2, sample_weight=np.full(len(X), 2.0))
    value, grad = twos(theta)
    assert twos.data_loss == pytest.approx(net.loss(X, y), rel=1e-13)
    assert value == pytest.approx(net.loss(X, y) + 0.1 / (2 * len(X)) * squares, rel=1e-13)
    # a row of weight 0 is a row removed
    w[:5] = 0
    f_zero = net.objective(X, y, sample_weight=w)
    f_cut = net.objective(X[5:], y[5:], sample_weight=w[5:])
    np.testing.assert_allclose(f_zero(theta)[1], f_cut(theta)[1], rtol=1e-12, atol=1e-15)


@pytest.mark.skipif(not HAS_COMPILED, reason="the compiled path is not built")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act,out,loss", COMBOS)
def test_compiled_pass_matches_the_numpy_pass(act, out, loss, dtype, monkeypatch):
    from cymlp import _cython_backend
    ref = make(act, out, loss, "numpy", dtype)
    X, y = data(out, n=150)
    w = np.random.default_rng(4).uniform(0.2, 3.0, len(X))
    theta = ref.get_flat_params()
    want_loss, want_grad = ref.objective(X, y, alpha=0.1, sample_weight=w)(theta)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=2e-4, atol=2e-5)
    for threads in (1, 2, 3):
        for blocks in (None, 7):      # one block of all rows, or blocks of 7 rows (the last short)
            if blocks is not None:
                monkeypatch.setattr(_cython_backend, "FULL_BATCH_ELEMENTS",
                                    blocks * _cython_backend.plan_for(ref._spec).row_width)
            net = ref.copy(backend="cython")
            net.n_threads = threads
            for Xin in (X, sp.csr_array(X)):
                got_loss, got_grad = net.objective(Xin, y, alpha=0.1, sample_weight=w)(theta)
                np.testing.assert_allclose(got_loss, want_loss, **tol)
                np.testing.assert_allclose(got_grad, want_grad, **tol)
            monkeypatch.undo()


@pytest.mark.parametrize("backend", BACKENDS)
def test_lbfgs_drives_it_and_the_network_is_not_changed_by_evaluations(backend):
    X, y = data("softmax", n=200)
    net = make("tanh", "softmax", "cross_entropy", backend, sizes=[5, 16, 3])
    start = net.get_flat_params()
    f = net.objective(X, y, alpha=1e-4)
    result = scipy_optimize.minimize(f, start, jac=True, method="L-BFGS-B",
                                     options={"maxiter": 100})
    assert np.array_equal(net.get_flat_params(), start)       # only theta is a candidate point
    assert result.nit > 10 and result.fun < 0.5 * f(start)[0]
    assert f.n_evaluations == result.nfev + 1
    net.set_flat_params(result.x)
    assert net.score(X, y) > 0.8
    assert f(result.x)[0] == pytest.approx(result.fun, rel=1e-12)


def test_float32_networks_evaluate_in_float32_and_return_float64():
    net = make("relu", "softmax", "cross_entropy", BACKENDS[0], "float32")
    X, y = data("softmax")
    f = net.objective(X, y)
    theta = net.get_flat_params().astype(np.float64)
    value, grad = f(theta)
    assert isinstance(value, float) and grad.dtype == np.float64
    assert value == pytest.approx(net.loss(X, y), rel=1e-6)


def test_objective_checks_its_arguments_once_and_names_them():
    net = make("relu", "softmax", "cross_entropy", BACKENDS[0])
    X, y = data("softmax")
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        net.objective(X, y, alpha=-1)
    with pytest.raises(ValueError, match="features per row"):
        net.objective(X[:, :3], y)
    with pytest.raises(ValueError, match="negative weights"):
        net.objective(X, y, sample_weight=-np.ones(len(X)))
    f = net.objective(X, y)
    with pytest.raises(ValueError, match=r"theta must have shape \(\d+,\)"):
        f(np.zeros(3))
    assert isinstance(f, objective.Objective) and "n_evaluations=0" in repr(f)
