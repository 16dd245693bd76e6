"""The foundation: maths of both paths, the SGD step, learning, persistence."""


import numpy as np
import pytest
from _helpers import BACKENDS, random_data

import cymlp
from cymlp import reference
from cymlp.datasets import load_digits

COMBOS = [(out, loss) for loss, outputs in reference.OUTPUTS_OF_LOSS.items() for out in outputs]


def _data(sizes, n=7, output="softmax", seed=0):
    return random_data(n, sizes[0], sizes[-1], targets=output, seed=seed)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("hidden_layers", [1, 2, 3])
@pytest.mark.parametrize("activation", reference.HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("output,loss", COMBOS)
def test_gradcheck_every_combination(backend, hidden_layers, activation, output, loss):
    sizes = [4] + [5] * hidden_layers + [3]
    net = cymlp.Network(sizes, activation, output, loss, dtype="float64", backend=backend, seed=3)
    for b in net.biases:           # non-zero biases exercise BP3 properly
        b[...] = np.linspace(-0.3, 0.3, b.size)
    X, y = _data(sizes, output=output)
    assert cymlp.gradcheck(net, X, y) < 1e-6
    assert cymlp.gradcheck(net, X, y, weight_decay=0.3) < 1e-6


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    net = cymlp.Network([3, 4, 2], "sigmoid", "softmax", "cross_entropy", dtype="float64", backend="numpy")
    X, y = _data([3, 4, 2])
    real = reference.backprop

    def off_by_factor(*args):
        gw, gb, cost, out = real(*args)
        gw[0] = gw[0] * 1.01
        return gw, gb, cost, out
    monkeypatch.setattr(reference, "backprop", off_by_factor)
    assert cymlp.gradcheck(net, X, y) > 1e-3


def test_gradcheck_float32_network_is_checked_in_float64():
    net = cymlp.Network([3, 4, 2], "tanh", "softmax", "cross_entropy", dtype="float32", backend="numpy")
    X, y = _data([3, 4, 2])
    assert cymlp.gradcheck(net, X, y) < 1e-6
    assert net.dtype == np.float32


# ---------------------------------------------------------------- losses

def test_loss_definitions_match_the_formulas():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 3))
    Y = np.eye(3)[[0, 1, 2, 1, 0]]
    a = reference.softmax(z)
    assert np.isclose(reference.loss_value("cross_entropy", "softmax", z, a, Y),
                      -np.sum(Y * np.log(a)) / 5)
    a = 1 / (1 + np.exp(-z))
    assert np.isclose(reference.loss_value("cross_entropy", "sigmoid", z, a, Y),
                      -np.sum(Y * np.log(a) + (1 - Y) * np.log(1 - a)) / 5)
    assert np.isclose(reference.loss_value("quadratic", "sigmoid", z, a, Y),
                      np.sum(0.5 * np.sum((a - Y) ** 2, axis=1)) / 5)


def test_poisson_loss_is_half_the_deviance_as_scikit_learn_defines_it():
    # scikit-learn's MLPRegressor(loss="poisson"): mean over rows, summed over outputs, of
    # xlogy(y, y / a) - y + a with a = e^z; a zero count costs a alone (0 log 0 = 0)
    xlogy = pytest.importorskip("scipy.special").xlogy
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 2))
    Y = np.array([[0, 3], [1, 0], [2, 2], [0, 0], [5, 1], [0.5, 7]])
    a = reference.activate("exp", z)
    want = np.mean(np.sum(xlogy(Y, Y / a) - Y + a, axis=1))
    assert np.isclose(reference.loss_value("poisson", "exp", z, a, Y), want, rtol=1e-14)
    assert np.isclose(reference.loss_value("poisson", "exp", z[3:4], a[3:4], Y[3:4]), a[3].sum())
    w = rng.uniform(0.5, 2, 6)
    assert np.isclose(reference.loss_value("poisson", "exp", z, a, Y, w),
                      np.average(np.sum(xlogy(Y, Y / a) - Y + a, axis=1), weights=w))
    # its gradient with respect to z is a - y (the log link cancels, like softmax's)
    np.testing.assert_array_equal(reference.output_error("poisson", "exp", a, Y), a - Y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_poisson_loss_needs_exp_outputs_and_targets_of_zero_or_more(backend):
    for output in ("identity", "softmax", "sigmoid"):
        with pytest.raises(ValueError, match="loss='poisson' needs output='exp'"):
            cymlp.Network([3, 2], output=output, loss="poisson")
    with pytest.raises(ValueError, match="loss='cross_entropy' needs output='sigmoid' or 'softmax'"):
        cymlp.Network([3, 2], output="exp", loss="cross_entropy")
    net = cymlp.Network([3, 2], output="exp", loss="poisson", dtype="float64", backend=backend)
    before = net.get_flat_params()
    with pytest.raises(ValueError, match="loss='poisson' needs targets >= 0.*holds -1"):
        net.fit(np.ones((2, 3)), np.array([[1.0, 2.0], [-1.0, 0.0]]))
    assert np.array_equal(net.get_flat_params(), before)
    assert net.loss(np.ones((2, 3)), np.array([[0.0, 2.0], [1.0, 0.0]])) > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_identity_hidden_layers_make_a_linear_model(backend):
    # every hidden layer linear: the network is z = X A + c, whatever its depth
    X, _ = _data([4, 1], n=30, seed=3)
    y = X @ np.array([[1.0], [-2.0], [0.5], [3.0]]) + 0.25
    net = cymlp.Network([4, 5, 3, 1], "identity", "identity", "quadratic", dtype="float64",
                        backend=backend, seed=0)
    W0, W1, W2 = net.weights
    b0, b1, b2 = net.biases
    A = W0.T @ W1.T @ W2.T
    c = (b0 @ W1.T + b1) @ W2.T + b2
    np.testing.assert_allclose(net.feedforward(X), X @ A + c, rtol=1e-12)
    net.fit(X, y, epochs=300, batch_size=30, lr=0.02, momentum=0.9)
    assert net.score(X, y) > 0.999


def test_stable_forms_stay_finite_at_extreme_inputs():
    z = np.array([[1000.0, -1000.0, 0.0], [-800.0, 800.0, 5.0]])
    Y = np.eye(3)[[1, 0]]
    for out in ("softmax", "sigmoid"):
        a = reference.activate(out, z)
        assert np.all(np.isfinite(a))
        value = reference.loss_value("cross_entropy", out, z, a, Y)
        assert np.isfinite(value) and value > 1000


# ---------------------------------------------------------------- the SGD step

GOLDEN = dict(
    # 2-3-2, sigmoid hidden, identity output, quadratic loss; worked by hand:
    # a1 = σ(0) = 0.5 everywhere, a2 = [0.5, 1.0], δ2 = a2 − y = [−0.5, 1.0],
    # δ1 = (W2ᵀ δ2) ⊙ a1(1 − a1) = [−0.5, 1, 1] · 0.25, each gradient an outer product.
    W1=np.zeros((3, 2)), b1=np.zeros(3), W2=np.array([[1.0, 0, 0], [0, 1, 1]]), b2=np.zeros(2),
    x=np.array([[1.0, 2.0]]), y=np.array([[1.0, 0.0]]), lr=0.1,
    W1_new=[[0.0125, 0.025], [-0.025, -0.05], [-0.025, -0.05]], b1_new=[0.0125, -0.025, -0.025],
    W2_new=[[1.025, 0.025, 0.025], [-0.05, 0.95, 0.95]], b2_new=[0.05, -0.1], loss=0.625,
)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_hand_worked_golden_step(backend, dtype):
    g = GOLDEN
    net = cymlp.Network([2, 3, 2], "sigmoid", "identity", "quadratic", dtype=dtype, backend=backend)
    net.weights[0][...], net.biases[0][...] = g["W1"], g["b1"]
    net.weights[1][...], net.biases[1][...] = g["W2"], g["b2"]
    assert net.loss(g["x"], g["y"]) == pytest.approx(g["loss"])
    history = net.fit(g["x"], g["y"], epochs=1, batch_size=1, lr=g["lr"], momentum=0.0, shuffle=False)
    assert history.loss[0] == pytest.approx(g["loss"])
    tol = 1e-15 if dtype == "float64" else 1e-7
    np.testing.assert_allclose(net.weights[0], g["W1_new"], atol=tol)
    np.testing.assert_allclose(net.biases[0], g["b1_new"], atol=tol)
    np.testing.assert_allclose(net.weights[1], g["W2_new"], atol=tol)
    np.testing.assert_allclose(net.biases[1], g["b2_new"], atol=tol)


def _one_step(backend, **kwargs):
    net = cymlp.Network([3, 4, 2], "tanh", "softmax", "cross_entropy", dtype="float64", backend=backend, seed=1)
    X, y = _data([3, 4, 2], n=6)
    before = [p.copy() for pair in zip(net.weights, net.biases) for p in pair]
    grads_w, grads_b = net.backprop(X, y)
    net.fit(X, y, epochs=1, batch_size=6, shuffle=False, **kwargs)
    after = [p for pair in zip(net.weights, net.biases) for p in pair]
    grads = [g for pair in zip(grads_w, grads_b) for g in pair]
    return before, grads, after


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_step_formulas(backend):
    lr, mu, lam = 0.1, 0.9, 0.01
    # plain SGD with weight decay on the weights only: W ← W − lr·(g + λW); b ← b − lr·g
    before, grads, after = _one_step(backend, lr=lr, momentum=0.0, weight_decay=lam)
    for i, (p0, g, p1) in enumerate(zip(before, grads, after)):
        expected = p0 - lr * (g + (lam * p0 if i % 2 == 0 else 0))
        np.testing.assert_allclose(p1, expected, rtol=1e-12, atol=1e-15)
    # first momentum step: v = g, W ← W − lr·v
    before, grads, after = _one_step(backend, lr=lr, momentum=mu)
    for p0, g, p1 in zip(before, grads, after):
        np.testing.assert_allclose(p1, p0 - lr * g, rtol=1e-12, atol=1e-15)
    # first Nesterov step: W ← W − lr·(g + μ·g)
    before, grads, after = _one_step(backend, lr=lr, momentum=mu, nesterov=True)
    for p0, g, p1 in zip(before, grads, after):
        np.testing.assert_allclose(p1, p0 - lr * (1 + mu) * g, rtol=1e-12, atol=1e-15)
    # first Adam step moves every parameter with a non-zero gradient by about lr·sign(g)
    before, grads, after = _one_step(backend, lr=0.01, optimizer="adam")
    for p0, g, p1 in zip(before, grads, after):
        m_hat, v_hat = g, g * g
        np.testing.assert_allclose(p1, p0 - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-10, atol=1e-15)


def test_momentum_velocity_accumulates_across_steps():
    net = cymlp.Network([3, 4, 2], "sigmoid", "softmax", "cross_entropy", dtype="float64", backend="numpy", seed=1)
    X, y = _data([3, 4, 2], n=4)
    start = [p.copy() for p in (net.weights + net.biases)]
    v = None
    ref = cymlp.Network([3, 4, 2], "sigmoid", "softmax", "cross_entropy", dtype="float64", backend="numpy", seed=1)
    for _ in range(3):       # replay three full-batch momentum steps by hand
        gw, gb = ref.backprop(X, y)
        g = gw + gb
        v = g if v is None else [0.5 * vi + gi for vi, gi in zip(v, g)]
        for p, vi in zip(ref.weights + ref.biases, v):
            p -= 0.2 * vi
    net.fit(X, y, epochs=3, batch_size=4, lr=0.2, momentum=0.5, shuffle=False)
    for p, q, p0 in zip(net.weights + net.biases, ref.weights + ref.biases, start):
        np.testing.assert_allclose(p, q, rtol=1e-12)
        assert not np.allclose(p, p0)


# ---------------------------------------------------------------- learning

@pytest.mark.parametrize("backend", BACKENDS)
def test_learns_xor(backend):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0])
    net = cymlp.Network([2, 8, 2], "tanh", "softmax", "cross_entropy", dtype="float64", backend=backend, seed=0)
    net.fit(X, y, epochs=300, batch_size=4, lr=0.5, momentum=0.9)
    assert net.score(X, y) == 1.0
    np.testing.assert_array_equal(net.predict(X), y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_learns_digits(backend):
    X_train, y_train, X_test, y_test = load_digits(return_split=True, dtype="float32")
    net = cymlp.Network([64, 64, 10], "relu", "softmax", "cross_entropy", dtype="float32", backend=backend, seed=0)
    history = net.fit(X_train, y_train, epochs=20, batch_size=32, lr=0.1, momentum=0.9)
    assert history.loss[-1] < history.loss[0]
    assert net.score(X_test, y_test) >= 0.95


# ---------------------------------------------------------------- hyperparameters and seeds

def _train(**kwargs):
    X, y = _data([6, 5, 3], n=40, seed=4)
    net = cymlp.Network([6, 5, 3], "sigmoid", "softmax", "cross_entropy", dtype="float64",
                        backend=kwargs.pop("backend", "numpy"), seed=kwargs.pop("seed", 0))
    net.fit(X, y, epochs=3, batch_size=8, lr=0.1, **kwargs)
    return net.get_flat_params()


def test_hyperparameters_act_and_seeds_reproduce():
    base = _train(momentum=0.0)
    assert np.array_equal(base, _train(momentum=0.0))                     # bit for bit
    assert not np.allclose(base, _train(momentum=0.0, seed=1))            # another seed differs
    assert not np.allclose(base, _train(momentum=0.9))                    # momentum acts
    assert not np.allclose(base, _train(momentum=0.0, weight_decay=0.1))  # weight decay acts
    assert not np.allclose(base, _train(momentum=0.9, nesterov=True) - _train(momentum=0.9) + base)
    assert not np.allclose(base, _train(momentum=0.0, shuffle=False))


def test_init_scales_follow_glorot_and_he():
    relu = cymlp.Network([400, 300, 10], "relu", dtype="float64", seed=0)
    sig = cymlp.Network([400, 300, 10], "sigmoid", dtype="float64", seed=0)
    assert relu.weights[0].std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert sig.weights[0].std() == pytest.approx(np.sqrt(2 / 700), rel=0.02)
    assert all(np.all(b == 0) for b in relu.biases)


def test_fit_continues_from_current_weights():
    X, y = _data([6, 5, 3], n=40, seed=4)
    net = cymlp.Network([6, 5, 3], "sigmoid", dtype="float64", backend="numpy")
    net.fit(X, y, epochs=1, batch_size=8, lr=0.1)
    middle = net.get_flat_params()
    net.fit(X, y, epochs=1, batch_size=8, lr=0.1)
    assert not np.allclose(middle, net.get_flat_params())


# ---------------------------------------------------------------- the parameters are live

@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_are_live_views(backend):
    net = cymlp.Network([3, 4, 2], "relu", "identity", "quadratic", dtype="float64", backend=backend)
    X = np.ones((2, 3))
    net.weights[1][...] = 0
    net.biases[1][...] = [1.5, -2.0]
    np.testing.assert_array_equal(net.feedforward(X), [[1.5, -2.0], [1.5, -2.0]])


# ---------------------------------------------------------------- persistence

# ---------------------------------------------------------------- shapes and dtypes

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_in_dtype_out(backend, dtype):
    net = cymlp.Network([3, 4, 2], dtype=dtype, backend=backend)
    X = np.random.default_rng(0).random((5, 3))            # float64 in
    assert net.feedforward(X).dtype == dtype
    assert net.predict_proba(X.astype(np.float32)).dtype == dtype
    assert all(g.dtype == dtype for g in net.backprop(X, [0, 1, 0, 1, 1])[0])
    assert net.predict(X).shape == (5,)


def test_wrong_shapes_raise_helpful_errors():
    net = cymlp.Network([3, 4, 2], backend="numpy")
    with pytest.raises(ValueError, match="3 columns|has 4 features"):
        net.predict(np.ones((2, 4)))
    with pytest.raises(ValueError, match="2-D"):
        net.predict(np.ones(3))
    with pytest.raises(ValueError, match="rows but X has"):
        net.fit(np.ones((4, 3)), [0, 1, 0])
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        net.fit(np.ones((3, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match="columns but the network has 2 outputs"):
        net.fit(np.ones((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="at least 2 layers"):
        cymlp.Network([3])
    with pytest.raises(ValueError, match="cross_entropy' needs output"):
        cymlp.Network([3, 2], output="identity", loss="cross_entropy")


# ---------------------------------------------------------------- the public API

def test_weights_and_biases_are_sequences_of_views_into_the_flat_buffer():
    net = cymlp.Network([3, 4, 2], dtype="float64", backend="numpy")
    assert len(net.weights) == len(net.biases) == 2
    assert [W.shape for W in net.weights] == [(4, 3), (2, 4)]
    assert [b.shape for b in net.biases] == [(4,), (2,)]
    assert net.weights[-1] is net.weights[1] and net.weights[:1][0] is net.weights[0]
    for p in list(net.weights) + list(net.biases):
        assert np.shares_memory(p, net._theta)
    assert len(net.weights + net.biases) == 4 and isinstance(net.weights + net.biases, list)
    assert len([] + net.biases) == 2
    net.weights[0][0, 0] = 7.0                       # writing into a view changes the network
    assert net.get_flat_params()[0] == 7.0
    net.biases[0] = [1, 2, 3, 4]                     # assigning a layer copies into the buffer
    np.testing.assert_array_equal(net.get_flat_params()[12:16], [1, 2, 3, 4])
    assert repr(net).startswith("Network([3, 4, 2], ")


def test_get_and_set_params_are_deprecated_aliases():
    net = cymlp.Network([3, 4, 2], dtype="float64", backend="numpy")
    with pytest.warns(DeprecationWarning, match="get_flat_params"):
        theta = net.get_params()
    np.testing.assert_array_equal(theta, net.get_flat_params())
    with pytest.warns(DeprecationWarning, match="set_flat_params"):
        net.set_params(np.zeros_like(theta))
    assert not net.get_flat_params().any()
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="expected 26 parameters"):
        net.set_params(np.zeros(3))


def test_set_flat_params_round_trips_and_casts():
    net = cymlp.Network([3, 4, 2], dtype="float32", backend="numpy")
    theta = np.arange(net.n_params, dtype=np.float64) / 10
    net.set_flat_params(theta)
    out = net.get_flat_params()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, theta, rtol=1e-7)
    out[0] = 99                                      # a copy: the network is unchanged
    assert net.get_flat_params()[0] == 0


def test_history_is_indexed_by_column_name_only():
    history = cymlp.History()
    history.append(epoch=1, loss=0.5)
    assert history["loss"] == [0.5]
    for key in (0, "stopped_early", "append", "nonsense"):
        with pytest.raises(KeyError, match="indexed by column name"):
            history[key]
