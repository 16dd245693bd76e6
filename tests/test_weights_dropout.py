"""Sample and class weights, dropout and gradient clipping (issue 14, part B).

The maths is the reference path's (``reference.backprop(sample_weight=,
masks=)``, ``dropout_masks``, ``clip_by_global_norm``, checked against
finite differences in test_reference_weights_dropout.py).  Here: the API on
both backends, the compiled path against the NumPy path for every
activation × output × loss × dtype, thread-count determinism, the weight
semantics (all ones = unweighted bit for bit, weight 0 = removed), learning
with dropout, no dropout at inference, and hostile arguments.
"""

import itertools
import pickle

import numpy as np
import pytest
from _helpers import BACKENDS, COMBOS, HAS_COMPILED, random_data, requires_compiled, split_step_threads

from cymlp import Network, _training, _validation, cli, datasets, reference
from cymlp._spec import layer_views
from cymlp.gradcheck import gradcheck

SIZES = [6, 9, 7, 4]


def tolerances(dtype):
    return {"rtol": 1e-9, "atol": 1e-11} if dtype == "float64" else {"rtol": 2e-4, "atol": 5e-5}


def data(n=83, output="softmax", seed=0, sizes=SIZES):
    """Labels for softmax and sigmoid outputs alike, targets for identity outputs, counts for exp."""
    targets = {"identity": "regression", "exp": "counts"}.get(output, "labels")
    return random_data(n, sizes[0], sizes[-1], targets=targets, seed=seed)


def weights_for(n, seed=3, zeros=()):
    w = np.random.default_rng(seed).uniform(0.2, 3.0, n)
    w[list(zeros)] = 0
    return w


def state_of(net):
    """What a rejected call must leave alone: parameters, generator, history, dropout."""
    return (net.get_flat_params(), net._rng.bit_generator.state, net.history_, net.dropout)


def assert_unchanged(net, before):
    after = state_of(net)
    assert np.array_equal(before[0], after[0])
    assert before[1] == after[1] and before[2] is after[2] and before[3] == after[3]


# ---------------------------------------------------------------- sample weights


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_all_ones_weights_give_the_unweighted_results_bit_for_bit(backend, dtype):
    X, y = data()
    ones = np.ones(len(X))
    a = Network(SIZES, "tanh", dtype=dtype, backend=backend, seed=2)
    b = a.copy()
    ha = a.fit(X, y, epochs=3, batch_size=16, lr=0.1)
    hb = b.fit(X, y, epochs=3, batch_size=16, lr=0.1, sample_weight=ones)
    assert np.array_equal(a.get_flat_params(), b.get_flat_params())
    assert ha.loss == hb.loss
    assert a.loss(X, y) == a.loss(X, y, sample_weight=ones)
    assert a.score(X, y) == a.score(X, y, sample_weight=ones)
    for g, h in zip(itertools.chain(*a.backprop(X, y)), itertools.chain(*a.backprop(X, y, ones))):
        assert np.array_equal(g, h)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_weighted_passes_reproduce_the_unweighted_bits_for_all_ones(backend, dtype):
    """Below the boundary (which runs equal weights unweighted): the weighted code itself."""
    X, y = data()
    net = Network(SIZES, "sigmoid", dtype=dtype, backend=backend, seed=2)
    X, Y, _ = _validation.check_Xy(net._spec, X, y)
    plain = net._backend.backprop(net._spec, net._theta, X, Y, 1)
    ones = net._backend.backprop(net._spec, net._theta, X, Y, 1, sample_weight=np.ones(len(X)))
    for g, h in zip([*plain[0], *plain[1]], [*ones[0], *ones[1]]):
        assert np.array_equal(g, h)
    assert ones[2] == pytest.approx(plain[2], rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act, out, loss", COMBOS)
def test_zero_weights_equal_removing_the_rows_in_loss_score_and_backprop(backend, act, out, loss):
    X, y = data(output=out)
    zeros = [0, 5, 6, 40, 82]
    w = weights_for(len(X), zeros=zeros)
    keep = w > 0
    net = Network(SIZES, act, out, loss, dtype="float64", backend=backend, seed=1)
    assert net.loss(X, y, w) == pytest.approx(net.loss(X[keep], y[keep], w[keep]), rel=1e-12)
    assert net.score(X, y, w) == pytest.approx(net.score(X[keep], y[keep], w[keep]), rel=1e-12)
    for g, h in zip(itertools.chain(*net.backprop(X, y, w)),
                    itertools.chain(*net.backprop(X[keep], y[keep], w[keep]))):
        np.testing.assert_allclose(g, h, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_loss_and_score_are_weighted_means(backend):
    X, y = data()
    w = weights_for(len(X))
    net = Network(SIZES, backend=backend, dtype="float64", seed=1)
    per_row = np.array([net.loss(X[i:i + 1], y[i:i + 1]) for i in range(len(X))])
    assert net.loss(X, y, w) == pytest.approx(np.dot(w, per_row) / w.sum(), rel=1e-10)
    correct = net.predict(X) == y
    assert net.score(X, y, w) == pytest.approx(np.dot(w, correct) / w.sum(), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_batch_fit_with_zero_weights_equals_fit_without_those_rows(backend):
    X, y = data(n=60)
    zeros = [1, 2, 30, 59]
    w = weights_for(len(X), zeros=zeros)
    keep = w > 0
    a = Network(SIZES, "tanh", dtype="float64", backend=backend, seed=4)
    b = a.copy()
    a.fit(X, y, epochs=4, batch_size=len(X), lr=0.2, shuffle=False, sample_weight=w)
    b.fit(X[keep], y[keep], epochs=4, batch_size=int(keep.sum()), lr=0.2, shuffle=False,
          sample_weight=w[keep])
    np.testing.assert_allclose(a.get_flat_params(), b.get_flat_params(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_of_zero_weights_is_skipped_and_counts_no_examples(backend):
    X, y = data(n=40)
    w = np.ones(len(X))
    w[10:20] = 0                       # batch 1 of 4 (no shuffling)
    w[25] = 2.0                        # not all equal, so the weighted path runs
    a = Network(SIZES, dtype="float64", backend=backend, seed=4)
    b = a.copy()
    ha = a.fit(X, y, epochs=2, batch_size=10, lr=0.1, momentum=0.0, shuffle=False, sample_weight=w)
    keep = w > 0
    hb = b.fit(X[keep], y[keep], epochs=2, batch_size=10, lr=0.1, momentum=0.0, shuffle=False,
               sample_weight=w[keep])
    np.testing.assert_allclose(a.get_flat_params(), b.get_flat_params(), rtol=1e-12, atol=1e-14)
    assert ha.loss == pytest.approx(hb.loss, rel=1e-12)
    assert ha.accuracy == hb.accuracy


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_rows_keep_their_weights(backend):
    X, y = data(n=100)
    w = weights_for(len(X))
    net = Network(SIZES, backend=backend, dtype="float64", seed=0)
    h = net.fit(X, y, epochs=1, sample_weight=w, validation_fraction=0.3)
    # the same split, recomputed from the training seed's validation generator
    rows = _training.split_generator(net.training_seed).permutation(len(X))[:30]
    assert h.val_loss[-1] == pytest.approx(net.loss(X[rows], y[rows], w[rows]), rel=1e-12)
    assert h.val_accuracy[-1] == pytest.approx(net.score(X[rows], y[rows], w[rows]), rel=1e-12)


# ---------------------------------------------------------------- class weights


@pytest.mark.parametrize("backend", BACKENDS)
def test_balanced_class_weight_is_sample_weight_n_over_k_count(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, SIZES[0]))
    y = np.repeat([0, 1, 3], [60, 20, 10])            # class 2 absent
    counts = np.bincount(y, minlength=4)
    by_hand = len(y) / (3 * counts[y])
    a = Network(SIZES, backend=backend, seed=0)
    b = a.copy()
    a.fit(X, y, epochs=2, batch_size=16, class_weight="balanced")
    b.fit(X, y, epochs=2, batch_size=16, sample_weight=by_hand)
    assert np.array_equal(a.get_flat_params(), b.get_flat_params())


@pytest.mark.parametrize("backend", BACKENDS)
def test_dict_class_weight_multiplies_the_sample_weights(backend):
    X, y = data()
    w = weights_for(len(X))
    cw = {0: 2.0, 3: 0.5}
    factors = np.array([cw.get(c, 1.0) for c in y])
    a = Network(SIZES, backend=backend, seed=0)
    b = a.copy()
    a.fit(X, y, epochs=2, batch_size=16, sample_weight=w, class_weight=cw)
    b.fit(X, y, epochs=2, batch_size=16, sample_weight=w * factors)
    assert np.array_equal(a.get_flat_params(), b.get_flat_params())


# ---------------------------------------------------------------- dropout


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_is_stored_saved_pickled_and_copied(backend, tmp_path):
    net = Network([5, 8, 6, 3], backend=backend, dropout=[0.25, 0.0], seed=3)
    assert net.dropout == (0.25, 0.0)
    assert "dropout=[0.25, 0.0]" in repr(net)
    net.save(tmp_path / "m.npz")
    for other in (Network.load(tmp_path / "m.npz"), pickle.loads(pickle.dumps(net)), net.copy()):
        assert other.dropout == (0.25, 0.0)
    assert Network([5, 8, 3], dropout=0.5).dropout == (0.5,)
    plain = Network([5, 8, 3], backend=backend)
    plain.save(tmp_path / "plain.npz")
    assert Network.load(tmp_path / "plain.npz").dropout == (0.0,)
    import zipfile
    with zipfile.ZipFile(tmp_path / "plain.npz") as z:      # files without dropout keep their config
        assert b"dropout" not in z.read("config.npy")


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_dropout_at_inference(backend):
    X, y = data()
    net = Network(SIZES, backend=backend, dropout=0.5, seed=0)
    net.fit(X, y, epochs=2, batch_size=16)
    twin = net.copy()
    twin.dropout = 0.0
    assert np.array_equal(net.feedforward(X), net.feedforward(X))
    assert np.array_equal(net.feedforward(X), twin.feedforward(X))
    assert net.loss(X, y) == twin.loss(X, y) and net.score(X, y) == twin.score(X, y)
    for g, h in zip(itertools.chain(*net.backprop(X, y)), itertools.chain(*twin.backprop(X, y))):
        assert np.array_equal(g, h)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_changes_training_and_is_reproducible(backend):
    X, y = data()
    runs = []
    for rate in (0.3, 0.3, 0.0):
        net = Network(SIZES, backend=backend, dropout=rate, seed=5)
        net.fit(X, y, epochs=2, batch_size=16)
        runs.append(net.get_flat_params())
    assert np.array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


def test_numpy_fit_draws_the_reference_masks_keyed_by_seed_epoch_step():
    """One full-batch SGD step per epoch, replayed by hand with reference.dropout_masks."""
    X, y = data(n=20)
    net = Network(SIZES, "tanh", dtype="float64", backend="numpy", dropout=[0.3, 0.6], seed=11)
    by_hand = net.copy()
    net.fit(X, y, epochs=2, batch_size=20, lr=0.1, momentum=0.0, shuffle=False)
    Xc, Y, _ = _validation.check_Xy(by_hand._spec, X, y)
    for epoch in range(2):
        masks = reference.dropout_masks(11, epoch, epoch, SIZES, 20, (0.3, 0.6), np.float64)  # step = epoch here
        gw, gb, _, _ = reference.backprop(list(by_hand.weights), list(by_hand.biases), "tanh",
                                          "softmax", "cross_entropy", Xc, Y, masks=masks)
        for p, g in zip([*by_hand.weights, *by_hand.biases], [*gw, *gb]):
            p -= 0.1 * g
    np.testing.assert_array_equal(net.get_flat_params(), by_hand.get_flat_params())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", reference.HIDDEN_ACTIVATIONS)
def test_gradcheck_with_a_fixed_dropout_mask_and_weights(backend, act):
    X, y = data(n=12)
    net = Network(SIZES, act, backend=backend, dtype="float64", seed=7)
    masks = reference.dropout_masks(3, 0, 0, SIZES, len(X), (0.4, 0.2), np.float64)
    assert gradcheck(net, X, y, masks=masks, sample_weight=weights_for(len(X), zeros=[2])) < 1e-6


def test_dropout_learns_digits():
    X_train, y_train, X_test, y_test = datasets.load_digits(dtype="float32", return_split=True, seed=0)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + 1e-6
    net = Network([64, 256, 10], dropout=0.2, seed=0)
    net.fit((X_train - mean) / std, y_train, epochs=30, batch_size=32, optimizer="adam", lr=0.003,
            lr_schedule="cosine")
    assert net.score((X_test - mean) / std, y_test) >= 0.97


# ---------------------------------------------------------------- clipping


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_clipping_scales_the_loss_gradient_before_weight_decay(backend, weight_decay):
    X, y = data(n=30)
    net = Network(SIZES, dtype="float64", backend=backend, seed=2)
    before = net.get_flat_params()
    gw, gb = net.backprop(X, y)
    grads = [g.copy() for pair in zip(gw, gb) for g in pair]
    norm = reference.clip_by_global_norm(grads, 0.05)
    assert norm > 0.05                          # the clip is active
    net.fit(X, y, epochs=1, batch_size=30, lr=0.5, momentum=0.0, shuffle=False, clip_norm=0.05,
            weight_decay=weight_decay)
    expected = before.copy()
    w_views, b_views = layer_views(net.sizes, expected)
    for l, (W, b) in enumerate(zip(w_views, b_views)):
        W -= 0.5 * (grads[2 * l] + weight_decay * W)
        b -= 0.5 * grads[2 * l + 1]
    np.testing.assert_allclose(net.get_flat_params(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend, mode", [("numpy", None)] + [("cython", m) for m in
                                                                  ("chunked", "batch", "split") if HAS_COMPILED])
def test_a_clip_norm_above_every_gradient_changes_nothing(backend, mode):
    X, y = data()
    a = Network(SIZES, backend=backend, seed=2)
    a.compiled_mode = mode
    b = a.copy()
    b.compiled_mode = mode
    a.fit(X, y, epochs=2, batch_size=40)
    b.fit(X, y, epochs=2, batch_size=40, clip_norm=1e30)
    if mode in ("batch", "split"):   # clipping runs batch mode, whose unclipped update is
        # fused into the GEMM: equal to rounding
        np.testing.assert_allclose(a.get_flat_params(), b.get_flat_params(), rtol=1e-5, atol=1e-6)
    else:
        assert np.array_equal(a.get_flat_params(), b.get_flat_params())


# ---------------------------------------------------------------- compiled vs NumPy


def _pair(act, out, loss, dtype, dropout=0.0, seed=1, sizes=SIZES):
    ref = Network(sizes, act, out, loss, dtype=dtype, backend="numpy", seed=seed, dropout=dropout)
    return ref, ref.copy(backend="cython")


@requires_compiled
@pytest.mark.parametrize("act, out, loss", COMBOS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", ["chunked", "batch", "split"])
def test_compiled_matches_numpy_with_weights_dropout_and_clipping(act, out, loss, dtype, mode):
    X, y = data(output=out)
    w = weights_for(len(X), zeros=[3, 4])
    ref, _ = _pair(act, out, loss, dtype, dropout=[0.3, 0.1])
    kw = {"epochs": 2, "batch_size": 37, "lr": 0.005 if out == "exp" else 0.05, "sample_weight": w,
          "clip_norm": 0.5}
    h_ref = ref.fit(X, y, **kw)
    for threads in (1, 2):
        _, comp = _pair(act, out, loss, dtype, dropout=[0.3, 0.1])
        comp.n_threads = threads
        comp.compiled_mode = mode
        h = comp.fit(X, y, **kw)
        np.testing.assert_allclose(comp.get_flat_params(), ref.get_flat_params(), **tolerances(dtype))
        np.testing.assert_allclose(h.loss, h_ref.loss, **tolerances(dtype))


@requires_compiled
@pytest.mark.parametrize("act, out, loss", COMBOS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("share", ["rows", "units"])
def test_split_mode_weights_rows_on_every_thread_like_numpy(request, split_on_every_thread, act, out, loss, dtype,
                                                            share):
    # sample weights alone keep split mode (dropout and clipping run batch mode):
    # each thread weights the rows it owns (also when the hidden products are shared by units)
    if share == "units":
        request.getfixturevalue("split_units_everywhere")
    X, y = data(output=out)
    w = weights_for(len(X), zeros=[3, 4])
    ref, _ = _pair(act, out, loss, dtype)
    kw = {"epochs": 2, "batch_size": 37, "lr": 0.005 if out == "exp" else 0.05, "sample_weight": w}
    h_ref = ref.fit(X, y, **kw)
    for threads in (1, 2, 3):
        _, comp = _pair(act, out, loss, dtype)
        comp.n_threads = threads
        comp.compiled_mode = "split"
        assert split_step_threads(comp, kw["batch_size"]) == threads
        h = comp.fit(X, y, **kw)
        np.testing.assert_allclose(comp.get_flat_params(), ref.get_flat_params(), **tolerances(dtype))
        np.testing.assert_allclose(h.loss, h_ref.loss, **tolerances(dtype))


@requires_compiled
@pytest.mark.parametrize("optimizer, extra", [("sgd", {"momentum": 0.9, "nesterov": True}),
                                              ("sgd", {"momentum": 0.0}), ("adam", {})])
@pytest.mark.parametrize("mode", ["chunked", "batch", "split"])
def test_compiled_weights_dropout_clipping_match_numpy_for_each_optimizer(optimizer, extra, mode):
    X, y = data()
    w = weights_for(len(X))
    ref, comp = _pair("relu", "softmax", "cross_entropy", "float64", dropout=0.2)
    comp.compiled_mode = mode
    kw = {"epochs": 2, "batch_size": 40, "lr": 0.02, "optimizer": optimizer, "weight_decay": 1e-3,
          "sample_weight": w, "clip_norm": 0.3, **extra}
    ref.fit(X, y, **kw)
    comp.fit(X, y, **kw)
    np.testing.assert_allclose(comp.get_flat_params(), ref.get_flat_params(), rtol=1e-9, atol=1e-11)


@requires_compiled
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["relu", "tanh"])     # masked in place / masked copy
def test_compiled_dropout_is_identical_on_one_and_two_threads(dtype, act):
    X, y = data(n=300)
    results = []
    for threads in (1, 2):
        net = Network([6, 32, 16, 4], act, dtype=dtype, backend="cython", n_threads=threads, seed=3,
                      dropout=0.3)
        net.compiled_mode = "chunked"
        net.fit(X, y, epochs=2, batch_size=100, sample_weight=weights_for(len(X)), clip_norm=1.0)
        results.append(net.get_flat_params())
    assert np.array_equal(results[0], results[1])


@requires_compiled
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_weighted_loss_and_gradient_match_numpy(dtype):
    X, y = data()
    w = weights_for(len(X), zeros=[0, 1])
    ref, comp = _pair("tanh", "sigmoid", "cross_entropy", dtype)
    np.testing.assert_allclose(comp.loss(X, y, w), ref.loss(X, y, w), **tolerances(dtype))
    for g, h in zip(itertools.chain(*comp.backprop(X, y, w)), itertools.chain(*ref.backprop(X, y, w))):
        np.testing.assert_allclose(g, h, **tolerances(dtype))


# ---------------------------------------------------------------- weights at the edges of float64
# (issue 21, item 7) Σ w C / Σ w does not depend on the weights' scale; the boundary scales them
# by a power of two (exact), so huge and tiny weights behave as their scaled copies, on every
# backend, without a warning.


def _fit_weighted(backend, w, **kwargs):
    X, y = data(n=40)
    net = Network(SIZES, backend=backend, dtype="float64", n_threads=1, seed=0)
    net.fit(X, y, epochs=2, batch_size=8, optimizer="adam", sample_weight=w, **kwargs)
    return net


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("power", [1020, -1000, 40])
def test_weights_scaled_by_a_power_of_two_train_bit_for_bit_alike(backend, power):
    """2**1020 makes the sum overflow, 2**-1000 nears underflow: neither changes a bit."""
    w = weights_for(40)
    with np.errstate(all="raise"):
        scaled = _fit_weighted(backend, np.ldexp(w, power))
    assert scaled.get_flat_params().tobytes() == _fit_weighted(backend, w).get_flat_params().tobytes()
    X, y = data(n=40)
    assert scaled.loss(X, y, np.ldexp(w, power)) == scaled.loss(X, y, w)
    assert scaled.score(X, y, np.ldexp(w, power)) == scaled.score(X, y, w)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_whose_sum_overflows_train_without_a_warning(backend):
    w = np.where(np.arange(40) % 2, 1e308, 1.5e308)
    net = _fit_weighted(backend, w, class_weight={0: 1e10})        # the product would overflow too
    assert len(net.history_) == 2 and np.isfinite(net.get_flat_params()).all()


def test_subnormal_weights_train_alike_on_every_backend():
    """On main the compiled path stopped after 0 epochs and the NumPy path diverged."""
    w = np.where(np.arange(40) % 2, 1e-310, 2e-310)                  # float64 subnormals
    nets = [_fit_weighted(backend, w) for backend in BACKENDS]
    for net in nets:
        assert len(net.history_) == 2 and not net.history_.diverged
        assert net.training_state_.step == 10 and net.training_state_.epoch == 2
    for other in nets[1:]:
        np.testing.assert_allclose(other.get_flat_params(), nets[0].get_flat_params(), rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_below_the_smallest_normal_relative_to_the_largest_count_as_zero(backend):
    w = weights_for(40)
    tiny = w.copy()
    tiny[:8] = 1e-320 * w.max()        # the first batch (unshuffled): its weights flush to 0
    zero = w.copy()
    zero[:8] = 0.0
    a = _fit_weighted(backend, tiny, shuffle=False)
    b = _fit_weighted(backend, zero, shuffle=False)
    assert a.get_flat_params().tobytes() == b.get_flat_params().tobytes()


# ---------------------------------------------------------------- hostile arguments


BAD_SAMPLE_WEIGHTS = [
    (lambda n: -np.ones(n), ValueError, "negative"),
    (lambda n: np.r_[np.nan, np.ones(n - 1)], ValueError, "NaN"),
    (lambda n: np.r_[np.inf, np.ones(n - 1)], ValueError, "NaN or infinity"),
    (lambda n: np.ones(n - 1), ValueError, "one weight per row"),
    (lambda n: np.ones((n, 1)), ValueError, "1-D"),
    (lambda n: np.zeros(n), ValueError, "positive"),
    (lambda n: ["a"] * n, TypeError, "real number"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make, error, words", BAD_SAMPLE_WEIGHTS)
def test_bad_sample_weights_are_rejected_everywhere(backend, make, error, words):
    X, y = data(n=20)
    net = Network(SIZES, backend=backend, seed=0)
    before = state_of(net)
    for call in (lambda w: net.fit(X, y, epochs=1, sample_weight=w), lambda w: net.loss(X, y, w),
                 lambda w: net.score(X, y, w), lambda w: net.backprop(X, y, w)):
        with pytest.raises(error, match=words):
            call(make(len(X)))
    assert_unchanged(net, before)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("class_weight, error, words", [
    ({4: 1.0}, ValueError, "classes are 0..3"),
    ({-1: 1.0}, ValueError, "classes are 0..3"),
    ({0: -1.0}, ValueError, "class_weight"),
    ({0: float("nan")}, ValueError, "class_weight"),
    ({"a": 1.0}, TypeError, "integer class labels"),
    ("unbalanced", ValueError, "balanced"),
    ([1, 2], TypeError, "dict"),
    ({0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}, ValueError, "positive"),
])
def test_bad_class_weights_are_rejected(backend, class_weight, error, words):
    X, y = data(n=20)
    net = Network(SIZES, backend=backend, seed=0)
    before = state_of(net)
    with pytest.raises(error, match=words):
        net.fit(X, y, epochs=1, class_weight=class_weight)
    assert_unchanged(net, before)


def test_class_weight_needs_labels():
    X, Y = data(n=20, output="identity")
    net = Network(SIZES, output="identity", loss="quadratic", backend="numpy")
    with pytest.raises(ValueError, match="integer class labels"):
        net.fit(X, Y, epochs=1, class_weight="balanced")


@pytest.mark.parametrize("clip_norm, error", [(0, ValueError), (-1.0, ValueError),
                                              (float("nan"), ValueError), (float("inf"), ValueError),
                                              ("1", TypeError)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_clip_norm_is_rejected(backend, clip_norm, error):
    X, y = data(n=20)
    net = Network(SIZES, backend=backend, seed=0)
    before = state_of(net)
    with pytest.raises(error, match="clip_norm"):
        net.fit(X, y, epochs=1, clip_norm=clip_norm)
    assert_unchanged(net, before)


@pytest.mark.parametrize("dropout, error, words", [
    (1.0, ValueError, r"\[0, 1\)"), (-0.1, ValueError, r"\[0, 1\)"), (float("nan"), ValueError, "finite"),
    ([0.1], ValueError, "one rate per hidden layer"), ([0.1, 1.5], ValueError, r"dropout\[1\]"),
    ("0.5", TypeError, "dropout"), (None, TypeError, "dropout"), (True, TypeError, "dropout"),
])
def test_bad_dropout_is_rejected_and_leaves_the_network_alone(dropout, error, words):
    with pytest.raises(error, match=words):
        Network(SIZES, dropout=dropout)
    net = Network(SIZES, dropout=0.1)
    with pytest.raises(error, match=words):
        net.dropout = dropout
    assert net.dropout == (0.1, 0.1)


def test_dropout_on_a_network_without_hidden_layers_is_refused():
    with pytest.raises(ValueError, match="hidden"):
        Network([4, 3], dropout=0.5)
    assert Network([4, 3], dropout=0.0).dropout == ()


@pytest.mark.parametrize("term", [{"clip_norm": 1.0}, {"sample_weight": "w"}])
def test_parallel_strategies_refuse_weights_dropout_and_clipping(term):
    if not HAS_COMPILED:
        pytest.skip("parallel strategies need the compiled path")
    X, y = data(n=40)
    if term.get("sample_weight") == "w":
        term = {"sample_weight": weights_for(len(X))}
    net = Network(SIZES, backend="cython", n_threads=2)
    with pytest.raises(ValueError, match="parallel='sync'"):
        net.fit(X, y, epochs=1, parallel="hogwild", **term)


def test_a_damaged_dropout_in_a_model_file_is_rejected(tmp_path):
    import json
    import zipfile
    net = Network([5, 8, 3], dropout=0.5)
    net.save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        members = {name: z.read(name) for name in z.namelist()}
    config = json.loads(str(np.load(tmp_path / "m.npz")["config"]))
    config["dropout"] = [1.5]
    path = tmp_path / "bad.npz"
    arrays = {name[:-4]: np.load(tmp_path / "m.npz")[name[:-4]] for name in members}
    arrays["config"] = np.array(json.dumps(config))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="dropout"):
        Network.load(path)


# ---------------------------------------------------------------- command line


def test_cli_trains_with_dropout_class_weights_and_clipping(capsys, tmp_path):
    status = cli.main(["train", "--epochs", "2", "--dropout", "0.2", "--class-weight", "balanced",
                       "--clip-norm", "1.0", "--save", str(tmp_path / "m.npz"), "--no-progress"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "dropout 0.2" in out and "balanced class weights" in out and "clipped to 1" in out
    assert Network.load(tmp_path / "m.npz").dropout == (0.2,)


@pytest.mark.parametrize("args", [["--dropout", "1"], ["--clip-norm", "0"], ["--class-weight", "x"]])
def test_cli_rejects_bad_values(capsys, args):
    assert cli.main(["train", *args]) == 2
    assert args[0] in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--dropout", "0.2"], ["--class-weight", "balanced"],
                                  ["--clip-norm", "1"]])
def test_cli_refuses_weights_dropout_and_clipping_with_workers(capsys, args):
    # refused before Dask is needed, so this runs without the distributed extra
    assert cli.main(["train", "-q", "--no-progress", "--train-size", "100", "--workers", "2",
                     *args]) == 1
    assert f"{args[0]} trains in a single process" in capsys.readouterr().err
