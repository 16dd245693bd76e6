"""Hostile input, divergence, files and resources: a clear error and nothing lost.

Every test runs on every backend that is built (``cymlp.available_backends()``).
A rejected call must raise ValueError or TypeError with a message, and must
leave the network exactly as it was: parameters, random state and history.
"""

import gc
import os
import pickle
import threading
import tracemalloc
import warnings

import numpy as np
import pytest
from _helpers import BACKENDS, random_data, requires_compiled

import cymlp
from cymlp import Network, TrainingDiverged

N_FEATURES, N_CLASSES = 4, 3


def make_data(n=24, seed=0):
    """Random data in which every class appears."""
    X, y = random_data(n, N_FEATURES, N_CLASSES, seed=seed)
    y[:N_CLASSES] = np.arange(N_CLASSES)
    return X, y


X_GOOD, Y_GOOD = make_data()


def fitted(backend, dtype="float32", **kw):
    net = Network([N_FEATURES, 5, N_CLASSES], backend=backend, dtype=dtype, seed=1, **kw)
    net.fit(X_GOOD, Y_GOOD, epochs=2, batch_size=8, lr=0.1)
    return net


def snapshot(net):
    return (net.get_flat_params(), pickle.dumps(net._rng.bit_generator.state), net.history_,
            len(net.history_) if net.history_ is not None else None)


def assert_same(net, snap):
    params, rng, history, n_epochs = snap
    np.testing.assert_array_equal(net.get_flat_params(), params)
    assert pickle.dumps(net._rng.bit_generator.state) == rng
    assert net.history_ is history
    assert (len(net.history_) if net.history_ is not None else None) == n_epochs


def gradcheck(net, X, y):
    return cymlp.gradcheck(net, X, y, max_params=5)


CALLS = {   # method name -> call(net, X, y)
    "fit": lambda net, X, y: net.fit(X, y, epochs=1, batch_size=8),
    "predict": lambda net, X, y: net.predict(X),
    "predict_proba": lambda net, X, y: net.predict_proba(X),
    "score": lambda net, X, y: net.score(X, y),
    "loss": lambda net, X, y: net.loss(X, y),
    "backprop": lambda net, X, y: net.backprop(X, y),
    "gradcheck": gradcheck,
}
WITH_Y = ("fit", "score", "loss", "backprop", "gradcheck")


def _with(value, row=3, col=1):
    X = X_GOOD.copy()
    X[row, col] = value
    return X


_OBJECT_TEXT = np.array(X_GOOD.tolist(), dtype=object)
_OBJECT_TEXT[0, 0] = "a"
_OBJECT_HUGE_INT = np.array(X_GOOD.tolist(), dtype=object)
_OBJECT_HUGE_INT[0, 0] = 10**400
_OBJECT_NONE = np.array(X_GOOD.tolist(), dtype=object)
_OBJECT_NONE[0, 0] = None
_OBJECT_DIGIT_TEXT = np.array(X_GOOD.tolist(), dtype=object)
_OBJECT_DIGIT_TEXT[0, 0] = "1.5"                 # converts with astype(float): must still be text

# (id, X) -- each is rejected by every method
BAD_X = [
    ("nan", _with(np.nan)),
    ("+inf", _with(np.inf)),
    ("-inf", _with(-np.inf)),
    ("0-rows", np.empty((0, N_FEATURES))),
    ("0-features", np.empty((len(X_GOOD), 0))),
    ("1-D", X_GOOD[0]),
    ("3-D", X_GOOD[None]),
    ("scalar", 1.5),
    ("None", None),
    ("string", "hello"),
    ("wrong-width", np.hstack([X_GOOD, X_GOOD[:, :1]])),
    ("too-narrow", X_GOOD[:, :2]),
    ("complex", X_GOOD.astype(complex)),
    ("object-text", _OBJECT_TEXT),
    ("object-digit-text", _OBJECT_DIGIT_TEXT),
    ("object-int-10**400", _OBJECT_HUGE_INT),
    ("object-None", _OBJECT_NONE),
    ("datetime", np.zeros(X_GOOD.shape, dtype="datetime64[s]")),
    ("timedelta", np.zeros(X_GOOD.shape, dtype="timedelta64[s]")),
    ("unicode", X_GOOD.astype(str)),
    ("bytes", X_GOOD.astype("S8")),
    ("ragged", [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]] * 12),
    ("1e300-float32", np.full(X_GOOD.shape, 1e300)),
    ("masked", np.ma.masked_array(X_GOOD, mask=X_GOOD > 1.5)),
    ("generator", (row for row in X_GOOD)),
]

_n = len(Y_GOOD)
# (id, y) -- each is rejected by every method that takes y
BAD_Y = [
    ("nan-label", np.where(np.arange(_n) == 2, np.nan, Y_GOOD)),
    ("inf-label", np.where(np.arange(_n) == 2, np.inf, Y_GOOD)),
    ("nan-target", np.where(np.arange(_n)[:, None] == 2, np.nan, np.eye(N_CLASSES)[Y_GOOD])),
    ("inf-target", np.where(np.arange(_n)[:, None] == 2, -np.inf, np.eye(N_CLASSES)[Y_GOOD])),
    ("too-short", Y_GOOD[:-1]),
    ("too-long", np.append(Y_GOOD, 0)),
    ("label-too-big", np.where(np.arange(_n) == 0, N_CLASSES, Y_GOOD)),
    ("negative-label", np.where(np.arange(_n) == 0, -1, Y_GOOD)),
    ("fractional-label", Y_GOOD + 0.5),
    ("huge-float-label", np.full(_n, 1e300)),
    ("huge-uint64-label", np.full(_n, 2**64 - 1, dtype=np.uint64)),
    ("column-of-labels", Y_GOOD[:, None]),
    ("wrong-columns", np.eye(N_CLASSES + 1)[Y_GOOD]),
    ("3-D", np.eye(N_CLASSES)[Y_GOOD][None]),
    ("scalar", 1),
    ("None", None),
    ("text-labels", np.array(["a", "b", "c"])[Y_GOOD]),
    ("object-text", np.array(["a", 1] * (_n // 2), dtype=object)),
    ("object-digit-text-labels", np.array(["0", "1", "2"], dtype=object)[Y_GOOD]),
    ("unicode-digit-labels", np.array(["0", "1", "2"])[Y_GOOD]),
    ("object-int-10**400", np.array([10**400] + [0] * (_n - 1), dtype=object)),
    ("object-None-label", np.array([None] + [0] * (_n - 1), dtype=object)),
    ("complex", Y_GOOD.astype(complex)),
    ("datetime", np.zeros(_n, dtype="datetime64[D]")),
    ("targets-outside-0-1", 2.0 * np.eye(N_CLASSES)[Y_GOOD]),
    ("rows-not-summing-to-1", 0.5 * np.eye(N_CLASSES)[Y_GOOD]),
]

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", list(CALLS))
@pytest.mark.parametrize("case", BAD_X, ids=[c[0] for c in BAD_X])
def test_bad_X_is_rejected_and_the_network_is_unchanged(backend, method, case):
    name, X = case
    net = fitted(backend)
    snap = snapshot(net)
    if name == "1e300-float32" and method == "gradcheck":
        # gradcheck works in float64, where 1e300 is a legal input: a finite answer is fine
        assert np.isfinite(CALLS[method](net, X, Y_GOOD))
        assert_same(net, snap)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no stray warnings on the way to the error
        with pytest.raises((ValueError, TypeError)) as info:
            CALLS[method](net, X, Y_GOOD)
    assert len(str(info.value)) > 20
    assert_same(net, snap)


def test_gradcheck_does_not_report_nan_gradients_as_perfect():
    net = Network([N_FEATURES, 5, N_CLASSES], backend="numpy", dtype="float64")
    X = np.full((4, N_FEATURES), 1e308)        # finite, but the passes overflow
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            error = cymlp.gradcheck(net, X, Y_GOOD[:4])
        except ValueError:
            return
    assert error != 0.0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", WITH_Y)
@pytest.mark.parametrize("case", BAD_Y, ids=[c[0] for c in BAD_Y])
def test_bad_y_is_rejected_and_the_network_is_unchanged(backend, method, case):
    name, y = case
    net = fitted(backend)
    snap = snapshot(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises((ValueError, TypeError)) as info:
            CALLS[method](net, X_GOOD, y)
    assert len(str(info.value)) > 20
    assert_same(net, snap)


def test_messages_say_what_to_do():
    net = Network([N_FEATURES, 5, N_CLASSES], backend="numpy")
    with pytest.raises(ValueError, match="reshape"):
        net.predict(X_GOOD[0])
    with pytest.raises(ValueError, match="4 columns"):
        net.predict(X_GOOD[:, :2])
    with pytest.raises(ValueError, match="y.ravel"):
        net.fit(X_GOOD, Y_GOOD[:, None])
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        net.fit(X_GOOD, np.full(len(Y_GOOD), 1e300))
    with pytest.raises(ValueError, match="too large for float32"):
        net.predict(np.full((2, N_FEATURES), 1e300))
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.predict(_with(np.nan))
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="inputs X only; pass y.toarray()"):
        net.fit(X_GOOD, scipy_sparse.csr_matrix(np.eye(3)[Y_GOOD]))


# ---- what is accepted: conversions and layouts give the same answer --------------------

def _layouts():
    base = np.random.default_rng(5).standard_normal((2 * len(X_GOOD), 2 * N_FEATURES))
    X = np.ascontiguousarray(base[::2, ::2])
    readonly = X.copy()
    readonly.setflags(write=False)
    big_endian = X.astype(">f8")
    return X, [
        ("fortran", np.asfortranarray(X)),
        ("row-strided", base[::2, ::2]),
        ("col-strided", np.ascontiguousarray(base[::2])[:, ::2]),
        ("negative-strides", np.ascontiguousarray(X[::-1, ::-1])[::-1, ::-1]),
        ("read-only", readonly),
        ("big-endian", big_endian),
        ("big-endian-fortran", np.asfortranarray(big_endian)),
        ("list", X.tolist()),
        ("tuple", tuple(map(tuple, X.tolist()))),
        ("object-numbers", X.astype(object)),
        ("masked-no-mask", np.ma.masked_array(X)),
    ]


LAYOUT_BASE, LAYOUTS = _layouts()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", LAYOUTS, ids=[c[0] for c in LAYOUTS])
def test_layouts_and_array_likes_match_the_c_contiguous_copy(backend, dtype, case):
    name, X = case
    ref = fitted(backend, dtype)
    expected = (ref.predict_proba(LAYOUT_BASE), ref.loss(LAYOUT_BASE, Y_GOOD),
                ref.score(LAYOUT_BASE, Y_GOOD), ref.backprop(LAYOUT_BASE, Y_GOOD))
    got = (ref.predict_proba(X), ref.loss(X, Y_GOOD), ref.score(X, Y_GOOD), ref.backprop(X, Y_GOOD))
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[1] == expected[1] and got[2] == expected[2]
    for g, e in zip(got[3][0] + got[3][1], expected[3][0] + expected[3][1]):
        np.testing.assert_array_equal(g, e)
    a, b = Network(ref.sizes, backend=backend, dtype=dtype), Network(ref.sizes, backend=backend, dtype=dtype)
    a.fit(LAYOUT_BASE, Y_GOOD, epochs=2, batch_size=8)
    b.fit(X, Y_GOOD, epochs=2, batch_size=8)
    np.testing.assert_array_equal(a.get_flat_params(), b.get_flat_params())


@pytest.mark.parametrize("backend", BACKENDS)
def test_memmap_read_only_matches_in_memory(backend, tmp_path):
    X = np.ascontiguousarray(LAYOUT_BASE, dtype=np.float32)
    path = tmp_path / "x.dat"
    X.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
    net = fitted(backend)
    np.testing.assert_array_equal(net.predict_proba(mm), net.predict_proba(X))
    a, b = Network(net.sizes, backend=backend), Network(net.sizes, backend=backend)
    a.fit(X, Y_GOOD, epochs=2, batch_size=8)
    b.fit(mm, Y_GOOD, epochs=2, batch_size=8)
    np.testing.assert_array_equal(a.get_flat_params(), b.get_flat_params())
    del mm


@pytest.mark.parametrize("backend", BACKENDS)
def test_int_bool_float16_inputs_are_converted(backend):
    net = fitted(backend)
    Xi = np.round(LAYOUT_BASE * 3).astype(np.int16)
    np.testing.assert_array_equal(net.predict_proba(Xi), net.predict_proba(Xi.astype(np.float32)))
    Xb = LAYOUT_BASE > 0
    np.testing.assert_array_equal(net.predict_proba(Xb), net.predict_proba(Xb.astype(np.float32)))
    Xh = LAYOUT_BASE.astype(np.float16)
    np.testing.assert_array_equal(net.predict_proba(Xh), net.predict_proba(Xh.astype(np.float32)))
    # labels: bool, unsigned, integral floats, big-endian, lists
    for y in (Y_GOOD.astype(np.uint8), Y_GOOD.astype(float), Y_GOOD.astype(">i8"), Y_GOOD.tolist()):
        assert net.loss(LAYOUT_BASE, y) == net.loss(LAYOUT_BASE, Y_GOOD)
    assert np.isfinite(net.loss(LAYOUT_BASE, Y_GOOD % 2 == 1))
    onehot = np.eye(N_CLASSES, dtype=bool)[Y_GOOD]
    assert net.loss(LAYOUT_BASE, onehot) == pytest.approx(net.loss(LAYOUT_BASE, Y_GOOD))


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_problems_work(backend):
    """One sample, one feature, a single class present: legal, finite."""
    net = Network([N_FEATURES, 3, N_CLASSES], backend=backend)
    with pytest.warns(UserWarning, match="larger than"):
        net.fit(X_GOOD[:1], Y_GOOD[:1], epochs=2)
    assert net.predict(X_GOOD[:1]).shape == (1,)
    one = Network([1, 3, 2], backend=backend)
    X1 = X_GOOD[:, :1]
    y1 = (X1[:, 0] > 0).astype(int)
    one.fit(X1, y1, epochs=2, batch_size=8)
    assert np.isfinite(one.predict_proba(X1)).all()
    single = Network([N_FEATURES, 3, N_CLASSES], backend=backend)
    only_zeros = np.zeros(len(X_GOOD), dtype=int)
    single.fit(X_GOOD, only_zeros, epochs=2, batch_size=8)
    score = single.score(X_GOOD, only_zeros)
    assert score == np.mean(single.predict(X_GOOD) == 0)
    assert score == 1.0                   # two epochs learn to answer the only class seen
    reg = Network([N_FEATURES, 3, 1], output="identity", loss="quadratic", backend=backend)
    reg.fit(X_GOOD, np.ones((len(X_GOOD), 1)), epochs=2, batch_size=8)
    assert np.isfinite(reg.score(X_GOOD, np.ones((len(X_GOOD), 1))))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["load", "unpickle", "copy"])
def test_wrong_width_after_load_or_unpickle(backend, how, tmp_path):
    net = fitted(backend)
    if how == "load":
        net.save(tmp_path / "m.npz")
        net = Network.load(tmp_path / "m.npz", backend=backend)
    elif how == "unpickle":
        net = pickle.loads(pickle.dumps(net))
    else:
        net = net.copy()
    with pytest.raises(ValueError, match="features"):
        net.predict(np.ones((2, N_FEATURES + 1)))


# ---- hyperparameters: rejected before any backend code runs ---------------------------

BAD_CONSTRUCTOR = [
    dict(sizes=[4]), dict(sizes=[]), dict(sizes=[4, 0, 3]), dict(sizes=[4, -2, 3]),
    dict(sizes=[4.0, 3]), dict(sizes=[4, True]), dict(sizes=5), dict(sizes="43"), dict(sizes=None),
    dict(activation="softplus"), dict(activation=None), dict(output="relu"), dict(loss="hinge"),
    dict(output="identity", loss="cross_entropy"), dict(dtype="float16"), dict(dtype="int32"),
    dict(dtype="complex128"), dict(backend="torch"), dict(backend=1), dict(n_threads=0),
    dict(n_threads=-1), dict(n_threads=10**7), dict(n_threads=2.5), dict(n_threads="4"),
    dict(seed=-1), dict(seed=1.5), dict(seed="x"),
]


@pytest.mark.parametrize("kwargs", BAD_CONSTRUCTOR, ids=[repr(k) for k in BAD_CONSTRUCTOR])
def test_bad_constructor_arguments(kwargs):
    kw = dict(sizes=[4, 5, 3], backend=BACKENDS[-1])
    kw.update(kwargs)
    with pytest.raises((ValueError, TypeError)) as info:
        Network(**kw)
    assert len(str(info.value)) > 20


BAD_FIT = [
    dict(lr=0), dict(lr=-0.1), dict(lr=float("nan")), dict(lr=float("inf")), dict(lr="0.1"),
    dict(batch_size=0), dict(batch_size=-5), dict(batch_size=2.5), dict(batch_size=None),
    dict(epochs=-1), dict(epochs=1.5), dict(momentum=1.0), dict(momentum=-0.1),
    dict(momentum=float("nan")), dict(weight_decay=-1), dict(optimizer="rmsprop"),
    dict(lr_schedule="exp"), dict(on_divergence="ignore"), dict(parallel="magic"),
    dict(beta1=1.0), dict(beta2=-0.5), dict(eps=0), dict(patience=0),
    dict(validation_fraction=0.0), dict(validation_fraction=1.0), dict(validation_fraction=0.001),
    dict(validation_fraction=0.2, batch_size=0), dict(validation_fraction=0.2, lr=-1),
    dict(validation_data=5), dict(validation_data=(X_GOOD, Y_GOOD[:-1])),
    dict(validation_data=(X_GOOD[:, :2], Y_GOOD)), dict(validation_data=(X_GOOD, Y_GOOD), validation_fraction=0.2),
    dict(callbacks=[1]), dict(progress="yes"), dict(average_every=0),
]


class _ExplodingBackend:
    """Stands in for the compiled path: any call means validation came too late."""
    name = "exploding"

    def __getattr__(self, attr):
        raise AssertionError(f"backend.{attr} reached before validation finished")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kwargs", BAD_FIT, ids=[repr(k)[:60] for k in BAD_FIT])
def test_bad_fit_arguments_are_rejected_before_the_backend_runs(backend, kwargs):
    net = fitted(backend)
    snap = snapshot(net)
    real = net._backend
    net._backend = _ExplodingBackend()
    try:
        with pytest.raises((ValueError, TypeError)) as info:
            net.fit(X_GOOD, Y_GOOD, **kwargs)
    finally:
        net._backend = real
    assert len(str(info.value)) > 15
    assert_same(net, snap)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_larger_than_data_is_clipped_with_a_warning(backend):
    net = Network([N_FEATURES, 5, N_CLASSES], backend=backend)
    with pytest.warns(UserWarning, match="batch_size=1000"):
        net.fit(X_GOOD, Y_GOOD, epochs=1, batch_size=1000)
    ref = Network([N_FEATURES, 5, N_CLASSES], backend=backend)
    ref.fit(X_GOOD, Y_GOOD, epochs=1, batch_size=len(X_GOOD))
    np.testing.assert_array_equal(net.get_flat_params(), ref.get_flat_params())


def test_parallel_strategies_need_the_compiled_path():
    net = Network([N_FEATURES, 5, N_CLASSES], backend="numpy")
    with pytest.raises(ValueError, match="backend='cython'"):
        net.fit(X_GOOD, Y_GOOD, parallel="hogwild")


def test_absurd_n_threads_message():
    with pytest.raises(ValueError, match="absurd"):
        Network([4, 3], n_threads=10**7)


# ---- divergence --------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_huge_learning_rate_raises_and_restores_finite_weights(backend, optimizer, tmp_path):
    X, y = make_data(200)
    net = Network([N_FEATURES, 16, N_CLASSES], backend=backend, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # numpy overflow inside a step must not leak out
        with pytest.raises(TrainingDiverged, match="smaller lr"):
            net.fit(X, y, epochs=20, batch_size=16, lr=1e30, optimizer=optimizer, momentum=0.9)
    assert np.isfinite(net.get_flat_params()).all()
    assert net.history_.diverged
    net.save(tmp_path / "after.npz")          # restored weights save and load
    assert np.isfinite(Network.load(tmp_path / "after.npz").get_flat_params()).all()
    try:                                      # the last finite weights may be huge
        assert np.isfinite(net.predict_proba(X)).all()
    except ValueError as exc:
        assert "overflowed" in str(exc)


@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_can_warn_instead(backend):
    X, y = make_data(200)
    net = Network([N_FEATURES, 16, 1], output="identity", loss="quadratic", backend=backend,
                  dtype="float64")
    with pytest.warns(RuntimeWarning, match="smaller lr"):
        history = net.fit(X, 1e150 * np.ones((200, 1)), epochs=5, batch_size=10, lr=1.0,
                          on_divergence="warn")
    assert history.diverged and history is net.history_
    assert np.isfinite(net.get_flat_params()).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_near_1e300_diverge_or_stay_finite(backend):
    X = np.full((32, N_FEATURES), 1e300)
    y = np.arange(32) % N_CLASSES
    net = Network([N_FEATURES, 8, N_CLASSES], backend=backend, dtype="float64")
    try:
        net.fit(X, y, epochs=3, batch_size=8)
    except TrainingDiverged:
        pass
    assert np.isfinite(net.get_flat_params()).all()
    for method in ("predict_proba", "loss", "backprop", "score"):
        try:
            out = CALLS[method](net, np.full((4, N_FEATURES), 1e308), y[:4])
        except ValueError as exc:
            assert "overflowed" in str(exc) or "scale" in str(exc)
        else:
            flat = out if method != "backprop" else np.concatenate([g.ravel() for g in out[0] + out[1]])
            assert np.isfinite(flat).all()


def test_nothing_nan_is_ever_saved(tmp_path):
    net = Network([N_FEATURES, 5, N_CLASSES], backend="numpy")
    path = tmp_path / "good.npz"
    net.save(path)
    before = path.read_bytes()
    net.weights[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.save(path)
    assert path.read_bytes() == before
    with pytest.raises(ValueError):
        net.set_flat_params(np.full(net.n_params, np.inf))
    assert sorted(os.listdir(tmp_path)) == ["good.npz"]


# ---- files --------------------------------------------------------------------------------

def _corrupt_files(tmp_path, good_bytes):
    import json
    cfg = dict(sizes=[4, 5, 3], activation="relu", output="softmax", loss="cross_entropy",
               dtype="float32", seed=0)
    arrays = dict(W0=np.zeros((5, 4)), b0=np.zeros(5), W1=np.zeros((3, 5)), b1=np.zeros(3))

    def npz(name, **content):
        path = tmp_path / name
        with open(path, "wb") as f:
            np.savez(f, **content)
        return path

    def raw(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        return path

    flipped = bytearray(good_bytes)
    for i in range(len(flipped) // 3, len(flipped) // 3 + 64):
        flipped[i] ^= 0xFF
    version = np.array(1)
    return [
        raw("truncated.npz", good_bytes[: len(good_bytes) // 2]),
        raw("truncated-tail.npz", good_bytes[:-10]),
        raw("flipped.npz", bytes(flipped)),
        raw("empty.npz", b""),
        raw("text.npz", b"hello, I am not a model\n"),
        npz("no-config.npz", **arrays),
        npz("version-2.npz", format_version=np.array(2), config=np.array(json.dumps(cfg)), **arrays),
        npz("version-text.npz", format_version=np.array("one"), config=np.array(json.dumps(cfg)), **arrays),
        npz("version-array.npz", format_version=np.array([1, 1]), config=np.array(json.dumps(cfg)), **arrays),
        npz("config-not-json.npz", format_version=version, config=np.array("{sizes"), **arrays),
        npz("config-list.npz", format_version=version, config=np.array("[1, 2]"), **arrays),
        npz("config-bad-sizes.npz", format_version=version,
            config=np.array(json.dumps(dict(cfg, sizes=[4, -5, 3]))), **arrays),
        npz("config-bad-activation.npz", format_version=version,
            config=np.array(json.dumps(dict(cfg, activation="gelu"))), **arrays),
        npz("huge-sizes.npz", format_version=version,
            config=np.array(json.dumps(dict(cfg, sizes=[10**7, 10**7, 3]))), **arrays),
        npz("missing-W1.npz", format_version=version, config=np.array(json.dumps(cfg)),
            W0=arrays["W0"], b0=arrays["b0"], b1=arrays["b1"]),
        npz("wrong-shape.npz", format_version=version, config=np.array(json.dumps(cfg)),
            **dict(arrays, W1=np.zeros((5, 3)))),
        npz("nan-weights.npz", format_version=version, config=np.array(json.dumps(cfg)),
            **dict(arrays, W0=np.full((5, 4), np.nan))),
        npz("text-weights.npz", format_version=version, config=np.array(json.dumps(cfg)),
            **dict(arrays, W0=np.full((5, 4), "x"))),
        npz("complex-weights.npz", format_version=version, config=np.array(json.dumps(cfg)),
            **dict(arrays, W0=np.ones((5, 4)) * 1j)),
        raw("single-array.npy", open(npz_to_npy(tmp_path), "rb").read()),
        raw("pickle.npz", pickle.dumps(Network([4, 5, 3], backend="numpy"))),
        raw("pickled-object-array.npy", npy_object(tmp_path)),
    ]


def npz_to_npy(tmp_path):
    path = tmp_path / "_plain.npy"
    np.save(path, np.zeros((5, 4)))
    return path


def npy_object(tmp_path):
    """A .npy member holding a pickled object array."""
    path = tmp_path / "_obj.npy"
    np.save(path, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    return path.read_bytes()


def test_loading_broken_files_raises_a_clear_error(tmp_path):
    good = fitted("numpy")
    good.save(tmp_path / "good.npz")
    cases = _corrupt_files(tmp_path, (tmp_path / "good.npz").read_bytes())
    for path in cases:
        with pytest.raises(ValueError, match=r"cymlp|corrupted|version") as info:
            Network.load(path)
        assert str(path.name) in str(info.value), path
    with pytest.raises(FileNotFoundError):
        Network.load(tmp_path / "missing.npz")


# ---- determinism, threads ----------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_weights(backend):
    a, b = fitted(backend), fitted(backend)
    np.testing.assert_array_equal(a.get_flat_params(), b.get_flat_params())


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_predict_is_thread_safe(backend):
    net = fitted(backend)
    X = np.random.default_rng(2).standard_normal((500, N_FEATURES))
    expected = net.predict_proba(X)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(net.predict_proba(X))
        except Exception as exc:      # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 80
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_omp_num_threads_and_explicit_counts(monkeypatch):
    from cymlp import _threads as v
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert v.effective_n_threads(None) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "garbage")
    assert v.effective_n_threads(None) >= 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= v.effective_n_threads(None) <= (os.cpu_count() or 1)
    assert v.effective_n_threads(3) == 3
    assert Network([4, 3], n_threads=2).effective_n_threads == 2


@requires_compiled
def test_threadpool_limits_are_respected():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from cymlp import _kernels
    if not getattr(_kernels, "OPENMP_ENABLED", False):
        pytest.skip("built without OpenMP")
    net = Network([4, 3], backend="cython")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert net.effective_n_threads == 1
    with threadpoolctl.threadpool_limits(limits=1):
        net.fit(X_GOOD, Y_GOOD, epochs=1, batch_size=8)


# ---- resources ----------------------------------------------------------------------------

def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_fit_predict_and_failures_do_not_grow_memory(backend):
    X, y = make_data(64)
    # a leaked per-fit activation buffer (64 x 256 doubles, 128 kB) would add 7.5 MiB of RSS
    net = Network([N_FEATURES, 256, N_CLASSES], backend=backend, dtype="float64")

    def cycle(i):
        net.fit(X, y, epochs=1, batch_size=16)
        net.predict(X)
        net.loss(X, y)
        for bad in (_with(np.nan), X_GOOD[:, :2]):     # exception paths
            with pytest.raises(ValueError):
                net.predict(bad)
        if i % 20 == 0:                                # the divergence path
            probe = Network([N_FEATURES, 16, N_CLASSES], backend=backend)
            with pytest.raises(TrainingDiverged):
                probe.fit(X, y, epochs=3, batch_size=16, lr=1e12)

    for i in range(20):
        cycle(i)
    gc.collect()
    tracemalloc.start()
    rss0 = _rss_bytes()
    base, _ = tracemalloc.get_traced_memory()
    for i in range(60):        # a leak of one small array per call would show as > 256 kB
        cycle(i)
    gc.collect()
    grown, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = _rss_bytes()
    assert grown - base < 256 * 1024, f"Python allocations grew by {grown - base} bytes"
    if rss0 is not None:
        assert rss1 - rss0 < 4 * 2**20, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB"



# ---- issue 11: the architecture, layer assignment, casts, messages ----------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_the_architecture_is_read_only(backend):
    """Case 1: net.sizes[1] = 200000 used to reach the compiled trainer (SIGSEGV)."""
    net = Network([8, 16, 3], dtype="float64", backend=backend)
    before = net.get_flat_params()
    assert net.sizes == (8, 16, 3)
    with pytest.raises(TypeError):
        net.sizes[1] = 200000                       # a tuple: no item assignment
    for name, value in (("sizes", [8, 200000, 3]), ("activation", "tanh"), ("output", "sigmoid"),
                        ("loss_name", "quadratic")):
        with pytest.raises(AttributeError, match="build a new Network"):
            setattr(net, name, value)
    with pytest.raises(AttributeError, match=r"copy\(dtype="):
        net.dtype = np.float32
    with pytest.raises(AttributeError, match="fixed"):
        del net.sizes
    with pytest.raises(AttributeError, match=r"weights\[l\] = W"):
        net.weights = [np.zeros((16, 8)), np.zeros((3, 16))]
    with pytest.raises(AttributeError, match=r"biases\[l\] = b"):
        net.biases = [np.zeros(16), np.zeros(3)]
    assert (net.sizes, net.activation, net.output, net.loss_name, net.dtype) == (
        (8, 16, 3), "relu", "softmax", "cross_entropy", np.float64)
    np.testing.assert_array_equal(net.get_flat_params(), before)
    X = np.random.default_rng(0).random((64, 8))
    net.fit(X, np.arange(64) % 3, epochs=3)         # trains the network it was built as
    assert np.isfinite(net.get_flat_params()).all()


@pytest.mark.parametrize("how", ["unpickle", "copy", "copy-float32", "load"])
def test_the_architecture_stays_read_only_after_copy_pickle_and_load(how, tmp_path):
    net = Network([N_FEATURES, 5, N_CLASSES], backend=BACKENDS[0])
    if how == "unpickle":
        net = pickle.loads(pickle.dumps(net))
    elif how == "load":
        net.save(tmp_path / "m.npz")
        net = Network.load(tmp_path / "m.npz")
    else:
        net = net.copy(dtype="float32" if how == "copy-float32" else None)
    assert net.sizes == (N_FEATURES, 5, N_CLASSES)
    with pytest.raises(AttributeError):
        net.sizes = (N_FEATURES, 50, N_CLASSES)
    with pytest.raises(TypeError):
        net.sizes[1] = 50


@pytest.mark.parametrize("backend", BACKENDS)
def test_assigning_a_layer_copies_it_into_the_parameter_buffer(backend, tmp_path):
    """Case 6: net.weights[l] = W used to reach the NumPy path and save() only."""
    net = Network([N_FEATURES, 5, N_CLASSES], backend=backend, dtype="float64", seed=1)
    rng = np.random.default_rng(7)
    W0, b1 = rng.standard_normal((5, N_FEATURES)), rng.standard_normal(N_CLASSES)
    net.weights[0] = W0
    net.biases[1] = b1.tolist()                                  # any array-like
    net.weights[-1] = np.arange(5 * N_CLASSES, dtype=np.int32).reshape(N_CLASSES, 5) / 10
    flat = net.get_flat_params()
    np.testing.assert_array_equal(flat[:W0.size], W0.ravel())     # in the buffer...
    np.testing.assert_array_equal(net.weights[0], W0)
    np.testing.assert_array_equal(flat[-N_CLASSES:], b1)
    assert np.shares_memory(net.weights[0], net.get_flat_params()) is False   # a copy out
    # ...so every backend, save/load and a copy see the same model
    other = Network([N_FEATURES, 5, N_CLASSES], backend="numpy", dtype="float64")
    other.set_flat_params(flat)
    np.testing.assert_allclose(net.predict_proba(X_GOOD), other.predict_proba(X_GOOD), rtol=1e-12)
    net.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(Network.load(tmp_path / "m.npz").get_flat_params(), flat)
    np.testing.assert_array_equal(net.copy().get_flat_params(), flat)
    net.fit(X_GOOD, Y_GOOD, epochs=2, batch_size=8, shuffle=False)
    other.fit(X_GOOD, Y_GOOD, epochs=2, batch_size=8, shuffle=False)
    np.testing.assert_allclose(net.get_flat_params(), other.get_flat_params(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bad_layer_assignments_are_rejected_and_the_network_is_unchanged(backend, dtype):
    net = fitted(backend, dtype=dtype)
    snap = snapshot(net)
    W = np.ones((5, N_FEATURES))
    cases = [
        (lambda: net.weights.__setitem__(0, W.T), ValueError, "transposed"),
        (lambda: net.weights.__setitem__(0, W[:, :2]), ValueError, "has shape"),
        (lambda: net.biases.__setitem__(1, 0.0), ValueError, "has shape"),
        (lambda: net.weights.__setitem__(0, np.where(W > 0, np.nan, W)), ValueError, "NaN"),
        (lambda: net.biases.__setitem__(0, np.full(5, np.inf)), ValueError, "NaN or infinity"),
        (lambda: net.weights.__setitem__(0, W.astype(str)), TypeError, "dtype"),
        (lambda: net.weights.__setitem__(0, W.astype(complex)), TypeError, "dtype"),
        (lambda: net.weights.__setitem__(2, W), IndexError, "2 layers"),
        (lambda: net.weights.__setitem__("0", W), TypeError, "integers"),
        (lambda: net.weights.__setitem__(slice(0, 1), [W]), TypeError, "one layer at a time"),
        (lambda: net.weights.__delitem__(0), TypeError, "cannot be removed"),
    ]
    if dtype == "float32":
        cases.append((lambda: net.weights.__setitem__(0, np.full(W.shape, 1e300)), ValueError,
                      "too large for float32"))
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
        assert_same(net, snap)
    assert len(net.weights) == 2 and len(net.biases) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameters_are_checked_for_finiteness_after_the_cast(backend):
    """Case 8: 1e300 is finite in float64 and inf in float32."""
    net = fitted(backend, dtype="float32")
    snap = snapshot(net)
    with pytest.raises(ValueError, match="too large for float32"):
        net.set_flat_params(np.full(net.n_params, 1e300))
    assert_same(net, snap)
    if np.finfo(np.longdouble).max > 1e4000:
        with pytest.raises(ValueError, match="too large for float32"):
            net.set_flat_params(np.full(net.n_params, np.longdouble("1e4000")))
        assert_same(net, snap)
    with pytest.raises(ValueError, match="expected"):
        net.set_flat_params(np.zeros(net.n_params + 1))
    net64 = fitted(backend, dtype="float64")
    net64.weights[0][0, 0] = 1e300
    before = net64.get_flat_params()
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # no overflow RuntimeWarning on the way
        with pytest.raises(ValueError, match=r"copy\(dtype='float32'\).*too large for float32"):
            net64.copy(dtype="float32")
    np.testing.assert_array_equal(net64.get_flat_params(), before)
    assert net64.copy(dtype="float64").weights[0][0, 0] == 1e300


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_validation_data_is_named_as_such(backend):
    """Case 11: the messages said "X has 3 features" / "y has 9 rows" for the validation set."""
    net = fitted(backend)
    snap = snapshot(net)
    with pytest.raises(ValueError, match="^validation X has 3 features"):
        net.fit(X_GOOD, Y_GOOD, epochs=1, validation_data=(X_GOOD[:, :3], Y_GOOD))
    with pytest.raises(ValueError, match="^validation y has 9 rows but validation X has 24"):
        net.fit(X_GOOD, Y_GOOD, epochs=1, validation_data=(X_GOOD, Y_GOOD[:9]))
    with pytest.raises(ValueError, match="^validation X contains NaN"):
        net.fit(X_GOOD, Y_GOOD, epochs=1, validation_data=(_with(np.nan), Y_GOOD))
    with pytest.raises(ValueError, match="^validation y holds labels"):
        net.fit(X_GOOD, Y_GOOD, epochs=1, validation_data=(X_GOOD, Y_GOOD + N_CLASSES))
    assert_same(net, snap)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_threads": 0}, "n_threads"), ({"n_threads": "4"}, "n_threads"),
    ({"backend": "gpu"}, "backend"), ({"backend": 1}, "backend")])
def test_load_blames_bad_arguments_not_the_file(kwargs, message, tmp_path):
    """Case 11: Network.load(path, n_threads=0) said the file had an invalid configuration."""
    path = tmp_path / "m.npz"
    fitted(BACKENDS[0]).save(path)
    with pytest.raises((ValueError, TypeError), match=message) as info:
        Network.load(path, **kwargs)
    assert str(path) not in str(info.value) and "configuration" not in str(info.value)
    with pytest.raises((ValueError, TypeError), match=message):
        Network.load(tmp_path / "missing.npz", **kwargs)      # before the file is even opened


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where", ["weights", "biases"])
def test_fit_refuses_parameters_that_are_already_nan(backend, where):
    """Case 11: NaN written into the weights gave TrainingDiverged "last finite weights restored"."""
    net = fitted(backend)
    getattr(net, where)[1][0, ...] = np.nan             # written into the view, bypassing checks
    snap = snapshot(net)
    with pytest.raises(ValueError, match=rf"parameters contain NaN or infinity \(in {where}\[1\]\)"):
        net.fit(X_GOOD, Y_GOOD, epochs=1)
    assert_same(net, snap)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pandas_missing_values_are_named(backend):
    """Case 11: pd.NA was reported as "object array holding non-numbers (text?)"."""
    pd = pytest.importorskip("pandas")
    net = fitted(backend)
    snap = snapshot(net)
    X = pd.DataFrame(X_GOOD).astype("Float64")
    X.iloc[2, 1] = pd.NA
    with pytest.raises(ValueError, match="X has missing values"):
        net.fit(X, Y_GOOD, epochs=1)
    with pytest.raises(ValueError, match="X has missing values"):
        net.predict(X)
    y = pd.Series(Y_GOOD).astype("Int64")
    y.iloc[0] = pd.NA
    with pytest.raises(ValueError, match="y has missing values"):
        net.fit(X_GOOD, y, epochs=1)
    assert_same(net, snap)
    net.fit(pd.DataFrame(X_GOOD), pd.Series(Y_GOOD), epochs=1, batch_size=8)   # complete data trains


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_python_ints_are_a_value_error(backend):
    """Case 14: an int 10**400 in X or y gave OverflowError."""
    net = fitted(backend)
    with pytest.raises(ValueError, match="too large for float64"):
        net.fit(_OBJECT_HUGE_INT, Y_GOOD, epochs=1)
    with pytest.raises(ValueError, match="too large for float64"):
        net.predict([[10**400] * N_FEATURES])
    with pytest.raises(ValueError, match="too large for float64"):
        net.fit(X_GOOD, [10**400] + [0] * (len(Y_GOOD) - 1), epochs=1)


def _text_labels():
    labels = [("unicode", np.array(["0", "1", "2"])[Y_GOOD]),
              ("object", np.array(["0", "1", "2"], dtype=object)[Y_GOOD]),
              ("list", [str(k) for k in Y_GOOD]),
              ("bytes", np.array([b"0", b"1", b"2"])[Y_GOOD])]
    try:
        import pandas as pd
    except ImportError:
        return labels
    return labels + [("pandas-object", pd.Series([str(k) for k in Y_GOOD])),
                     ("pandas-string", pd.Series([str(k) for k in Y_GOOD], dtype="string"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", _text_labels(), ids=lambda case: case[0])
def test_text_labels_are_rejected_whatever_their_dtype(backend, case):
    """Case 14: object/pandas labels '0','1' were accepted while <U labels were rejected."""
    net = fitted(backend)
    snap = snapshot(net)
    for call in (lambda: net.fit(X_GOOD, case[1], epochs=1), lambda: net.score(X_GOOD, case[1])):
        with pytest.raises(TypeError, match=r"text labels.*integer class labels 0..k-1.*np.unique"):
            call()
    assert_same(net, snap)


@pytest.mark.parametrize("scale", [1e18, 1e19, 1e30])
def test_quadratic_targets_that_could_overflow_are_rejected_on_every_backend(scale):
    """Case 14: float32 targets of 1e18-1e19 raised on one backend and trained on the other."""
    Y = scale * np.sin(X_GOOD[:, :1])
    for backend in BACKENDS:
        net = Network([N_FEATURES, 5, 1], output="identity", loss="quadratic", dtype="float32",
                      backend=backend)
        snap = snapshot(net)
        for method in ("fit", "loss", "score", "backprop"):
            with pytest.raises(ValueError, match="squared errors.*can overflow.*Scale the targets"):
                getattr(net, method)(X_GOOD, Y)
        assert_same(net, snap)
        wide = Network([N_FEATURES, 5, 1], output="identity", loss="quadratic", dtype="float64",
                       backend=backend)
        assert np.isfinite(wide.loss(X_GOOD, Y))           # float64 has room for them


def test_quadratic_targets_below_the_limit_train_alike_on_every_backend():
    limit = 1.8e15                                       # just below sqrt(float32 max) / 1e4
    Y = limit * np.sin(3 * X_GOOD[:, :2])
    losses = []
    for backend in BACKENDS:
        net = Network([N_FEATURES, 6, 2], "tanh", output="identity", loss="quadratic",
                      dtype="float32", backend=backend, seed=3)
        losses.append(net.fit(X_GOOD, Y, epochs=3, batch_size=8, lr=1e-3).loss)
    for other in losses[1:]:
        np.testing.assert_allclose(other, losses[0], rtol=1e-3)
    assert np.isfinite(losses[0]).all()
