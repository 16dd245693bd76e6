"""Sparse inputs (``scipy.sparse`` matrices and arrays) on both paths.

Training gathers each batch's rows into the dense batch buffer, so a sparse
fit does the dense fit's arithmetic on the same values: the weights are
equal bit for bit, in every mode, dtype and thread count.  Prediction,
evaluation and ``backprop`` densify a bounded block of rows at a time, and
nothing densifies the whole matrix (measured with tracemalloc).
"""

import tracemalloc

import numpy as np
import pytest
from _helpers import BACKENDS, HAS_COMPILED, random_data

from cymlp import Network, _sparse

sp = pytest.importorskip("scipy.sparse")

SIZES = [30, 12, 4]
FORMATS = {
    "csr_matrix": sp.csr_matrix, "csr_array": sp.csr_array, "csc_matrix": sp.csc_matrix,
    "csc_array": sp.csc_array, "coo_matrix": sp.coo_matrix,
}
RUNS = [(backend, mode, threads) for backend in BACKENDS
        for mode, threads in ([(None, 1)] if backend == "numpy" else
                              [(m, t) for m in ("chunked", "batch", "split") for t in (1, 2)])]


def sparse_data(n=230, n_features=SIZES[0], density=0.15, output="softmax", seed=0):
    """Dense X with most entries 0 (and a few explicit negative values), and targets."""
    X, y = random_data(n, n_features, SIZES[-1], targets=output, seed=seed)
    X[np.random.default_rng(seed + 1).random(X.shape) > density] = 0
    return X, y


def pair(backend, dtype, mode=None, threads=1, **kw):
    net = Network(SIZES, dtype=dtype, backend=backend, seed=3, n_threads=threads, **kw)
    net.compiled_mode = mode
    return net, net.copy()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend,mode,threads", RUNS)
def test_a_sparse_fit_is_the_dense_fit_bit_for_bit(backend, mode, threads, dtype):
    X, y = sparse_data()
    dense, sparse = pair(backend, dtype, mode, threads)
    sparse.compiled_mode = mode
    kw = {"epochs": 2, "batch_size": 70, "optimizer": "adam", "lr": 0.01}
    h_dense = dense.fit(X, y, **kw)
    h_sparse = sparse.fit(sp.csr_matrix(X), y, **kw)
    assert np.array_equal(sparse.get_flat_params(), dense.get_flat_params())
    assert h_sparse["loss"] == h_dense["loss"]


@pytest.mark.skipif(not HAS_COMPILED, reason="the compiled path is not built")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_split_mode_sharing_products_by_units_gathers_sparse_rows(split_units_everywhere, dtype):
    """Split mode's unit-shared path reads its inputs like the others (it once read the dense
    X, which a sparse fit does not have: a crash)."""
    X, y = sparse_data()
    dense, sparse = pair("cython", dtype, "split", 2)
    kw = {"epochs": 2, "batch_size": 70, "optimizer": "adam", "lr": 0.01}
    h_dense = dense.fit(X, y, **kw)
    h_sparse = sparse.fit(sp.csr_matrix(X), y, **kw)
    assert np.array_equal(sparse.get_flat_params(), dense.get_flat_params())
    assert h_sparse["loss"] == h_dense["loss"]


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_format_trains_and_predicts_like_dense(fmt, backend):
    X, y = sparse_data(output="sigmoid")
    dense, sparse = pair(backend, "float64", output="sigmoid")
    Xs = FORMATS[fmt](X)
    kw = {"epochs": 2, "batch_size": 64, "sample_weight": np.linspace(0.5, 2, len(X)),
          "validation_fraction": 0.2}
    dense.fit(X, y, **kw)
    sparse.fit(Xs, y, **kw)
    assert np.array_equal(sparse.get_flat_params(), dense.get_flat_params())
    assert sparse.history_["val_loss"] == dense.history_["val_loss"]
    np.testing.assert_array_equal(sparse.predict_proba(Xs), dense.predict_proba(X))
    np.testing.assert_array_equal(sparse.predict(Xs), dense.predict(X))
    assert sparse.score(Xs, y) == dense.score(X, y)
    assert sparse.loss(Xs, y) == pytest.approx(dense.loss(X, y), rel=1e-14)
    for got, want in zip(sum(sparse.backprop(Xs, y), []), sum(dense.backprop(X, y), [])):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_fit_and_regression_on_sparse_rows(backend):
    X, y = sparse_data(output="identity")
    dense, sparse = pair(backend, "float32", output="identity", loss="quadratic")
    for chunk in range(0, len(X), 50):
        rows = slice(chunk, chunk + 50)
        dense.partial_fit(X[rows], y[rows], batch_size=16)
        sparse.partial_fit(sp.csr_array(X[rows]), y[rows], batch_size=16)
    assert np.array_equal(sparse.get_flat_params(), dense.get_flat_params())
    assert sparse.score(sp.csr_array(X), y) == dense.score(X, y)


@pytest.mark.skipif(not HAS_COMPILED, reason="the compiled path is not built")
def test_average_strategy_on_sparse_rows_is_the_dense_run():
    X, y = sparse_data(n=400)
    dense, sparse = pair("cython", "float64", threads=2)
    kw = {"epochs": 2, "batch_size": 20, "parallel": "average", "average_every": 3}
    dense.fit(X, y, **kw)
    sparse.fit(sp.csr_matrix(X), y, **kw)
    assert np.array_equal(sparse.get_flat_params(), dense.get_flat_params())


def test_duplicate_entries_add_up_as_scipy_does():
    # COO with a repeated (row, column): tocsr() sums them, and so does the gather
    rows, cols = np.array([0, 0, 1, 2, 2]), np.array([3, 3, 0, 5, 5])
    vals = np.array([1.0, 2.5, -1.0, 0.5, 0.25])
    Xs = sp.coo_matrix((vals, (rows, cols)), shape=(3, SIZES[0]))
    net = Network(SIZES, dtype="float64", seed=0)
    np.testing.assert_array_equal(net.feedforward(Xs), net.feedforward(Xs.toarray()))
    y = np.array([0, 1, 2])
    a, b = net.copy(), net.copy()
    a.fit(Xs, y, epochs=3, batch_size=2)
    b.fit(Xs.toarray(), y, epochs=3, batch_size=2)
    assert np.array_equal(a.get_flat_params(), b.get_flat_params())


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_and_prediction_never_densify_the_whole_matrix(backend):
    # 3000 x 40000 at 0.1%: 960 MB dense in float64, 1.4 MB sparse; a batch of 32 rows is
    # 10 MB and a prediction block 32 MB (cymlp._sparse.DENSE_BLOCK_ELEMENTS)
    n, n_features = 3000, 40000
    Xs = sp.random_array((n, n_features), density=0.001, format="csr", rng=0)
    y = np.random.default_rng(0).integers(0, 2, n)
    net = Network([n_features, 4, 2], dtype="float64", backend=backend, seed=0, n_threads=1)
    dense_bytes = n * n_features * 8
    tracemalloc.start()
    try:
        net.fit(Xs, y, epochs=1, batch_size=32)
        fit_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        net.predict(Xs)
        predict_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        net.objective(Xs, y, alpha=1e-4)(net.get_flat_params())      # (lbfgs's evaluations)
        objective_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    block = _sparse.DENSE_BLOCK_ELEMENTS * 8
    assert fit_peak < 0.05 * dense_bytes, fit_peak
    assert predict_peak < 2.5 * block < 0.1 * dense_bytes, predict_peak
    assert objective_peak < 2.5 * block, objective_peak


def test_block_rows_bounds_a_dense_block():
    assert _sparse.block_rows(np.zeros((10, 100000)), 8192) == 8192       # dense: untouched
    wide = sp.csr_matrix((5, 100000))
    assert _sparse.block_rows(wide, 8192) == _sparse.DENSE_BLOCK_ELEMENTS // 100000
    assert _sparse.block_rows(sp.csr_matrix((5, 10**8)), 8192) == 1


BAD = [
    ("non-finite value", lambda X: _with_value(X, np.nan), ValueError, "NaN or infinity"),
    ("too large for float32", lambda X: _with_value(X, 1e300), ValueError, "too large for float32"),
    ("wrong width", lambda X: sp.csr_matrix(X.toarray()[:, :-1]), ValueError, "features per row"),
    ("no rows", lambda X: sp.csr_matrix((0, SIZES[0])), ValueError, "0 rows"),
    ("complex values", lambda X: X.astype(complex), TypeError, "real number"),
    ("index past the end", lambda X: sp.csr_matrix((X.data, X.indices + SIZES[0], X.indptr),
                                                   shape=X.shape), ValueError, "column indices"),
    ("row pointers past the values", lambda X: _bad_indptr(X), ValueError, "malformed CSR"),
]


def _with_value(X, value):
    X = X.copy()
    X.data[len(X.data) // 2] = value
    return X


def _bad_indptr(X):
    X = X.copy()
    X.indptr[-1] += 3         # claims values it does not have
    return X


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("what,spoil,error,message", BAD, ids=[b[0] for b in BAD])
def test_bad_sparse_inputs_are_refused_and_change_nothing(backend, what, spoil, error, message):
    X, y = sparse_data(n=20)
    Xs = spoil(sp.csr_matrix(X))
    net = Network(SIZES, dtype="float32", backend=backend, seed=0)
    before = net.get_flat_params()
    with pytest.raises(error, match=message):
        net.fit(Xs, y[:Xs.shape[0]] if Xs.shape[0] else y, epochs=1)
    with pytest.raises(error, match=message):
        net.predict(Xs)
    assert np.array_equal(net.get_flat_params(), before) and net.history_ is None


def test_sparse_targets_are_refused_with_what_to_do():
    X, y = sparse_data(n=20, output="identity")
    net = Network(SIZES, output="identity", loss="quadratic")
    with pytest.raises(TypeError, match=r"inputs X only; pass y.toarray\(\)"):
        net.fit(X, sp.csr_matrix(y))
