"""Property: random shapes, dtypes, layouts and values at the public API give
either a documented exception or finite results that agree between backends.

Documented exceptions: ValueError and TypeError for bad input (including
outputs that overflow), TrainingDiverged from ``fit``.  Runs derandomized (the
same examples every run, so CI is stable); set ``CYMLP_HYPOTHESIS_EXPLORE=1``
to search afresh.
"""

import os
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from _helpers import BACKENDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cymlp import Network, TrainingDiverged

DOCUMENTED = (ValueError, TypeError, TrainingDiverged)
MODERATE = 1e4          # beyond this, backends may round their way to different overflows

SETTINGS = settings(max_examples=int(os.environ.get("CYMLP_HYPOTHESIS_EXAMPLES", 150)), deadline=None,
                    derandomize=not os.environ.get("CYMLP_HYPOTHESIS_EXPLORE"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ARCHITECTURES = [("relu", "softmax", "cross_entropy"), ("tanh", "sigmoid", "cross_entropy"),
                 ("sigmoid", "identity", "quadratic"), ("leaky_relu", "softmax", "quadratic"),
                 ("relu", "sigmoid", "quadratic")]
X_DTYPES = ["float64", "float32", "float16", ">f8", ">f4", "int32", "uint8", "bool",
            "object", "complex128", "U8", "datetime64[s]"]
LAYOUTS = ["C", "F", "rows[::2]", "cols[::2]", "reversed", "read-only", "list"]
SPECIAL = [np.nan, np.inf, -np.inf, 1e300, -1e300, 1e38, 5e-324, -0.0]


@st.composite
def networks(draw):
    n_in = draw(st.integers(1, 5))
    hidden = draw(st.lists(st.integers(1, 6), min_size=0, max_size=2))
    activation, output, loss = draw(st.sampled_from(ARCHITECTURES))
    n_out = draw(st.integers(1 if output != "softmax" else 2, 4))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return dict(sizes=[n_in, *hidden, n_out], activation=activation, output=output, loss=loss,
                dtype=dtype, seed=draw(st.integers(0, 2**16)))


def _layout(arr, layout):
    if arr.ndim == 0:
        return arr.tolist() if layout == "list" else arr
    if layout == "F":
        return np.asfortranarray(arr)
    if layout == "rows[::2]":
        return np.repeat(arr, 2, axis=0)[::2]
    if layout == "cols[::2]" and arr.ndim == 2:
        return np.repeat(arr, 2, axis=1)[:, ::2]
    if layout == "reversed":
        return np.ascontiguousarray(arr[::-1])[::-1]
    if layout == "read-only":
        arr = arr.copy()
        arr.setflags(write=False)
        return arr
    if layout == "list":
        return arr.tolist()
    return arr


@st.composite
def inputs(draw, n_features):
    n_rows = draw(st.integers(0, 9) | st.integers(1, 9))
    width = draw(st.sampled_from([n_features] * 12 + [0, n_features + 1]))
    shape = draw(st.sampled_from([(n_rows, width)] * 15 + [(width,), (1, n_rows, width), ()]))
    size = int(np.prod(shape))
    values = np.array(draw(st.lists(st.floats(-3, 3, allow_nan=False, width=32), min_size=size,
                                    max_size=size)), dtype=np.float64).reshape(shape)
    if size and draw(st.integers(0, 7)) == 0:          # now and then, one special value
        values.flat[draw(st.integers(0, size - 1))] = draw(st.sampled_from(SPECIAL))
    dtype = draw(st.sampled_from(X_DTYPES + ["float64", "float32"] * 6))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if dtype == "object":
            arr = values.astype(object)
        elif dtype == "U8":
            arr = values.astype("U8")
        elif dtype == "datetime64[s]":
            arr = np.zeros(shape, dtype=dtype)
        elif dtype in ("int32", "uint8", "bool"):
            arr = np.nan_to_num(values, posinf=0, neginf=0).astype(dtype)
        else:
            arr = values.astype(dtype)
    return _layout(arr, draw(st.sampled_from(LAYOUTS)))


@st.composite
def targets(draw, n_rows, n_outputs):
    kind = draw(st.sampled_from(["labels"] * 4 + ["float-labels", "onehot", "onehot", "matrix", "matrix",
                                                  "bad-length", "column", "nan"]))
    n = max(n_rows, 0)
    valid = st.integers(0, n_outputs - 1) | st.integers(-1, n_outputs) if n_outputs > 1 else st.integers(-1, 1)
    labels = np.array(draw(st.lists(valid, min_size=n, max_size=n)), dtype=np.int64)
    if kind == "labels":
        return labels
    if kind == "float-labels":
        return labels.astype(float) + draw(st.sampled_from([0.0, 0.5]))
    if kind == "onehot":
        return np.eye(n_outputs)[np.clip(labels, 0, n_outputs - 1)]
    if kind == "matrix":
        return np.array(draw(st.lists(st.floats(0, 1), min_size=n * n_outputs,
                                      max_size=n * n_outputs))).reshape(n, n_outputs)
    if kind == "bad-length":
        return labels[:-1] if n else np.zeros(1, dtype=int)
    if kind == "column":
        return labels[:, None]
    out = labels.astype(float)
    if n:
        out[0] = np.nan
    return out


def _call(config, backend, method, X, y, theta):
    net = Network(backend=backend, **config)
    if theta is not None:
        net.set_flat_params(theta)
    before = net.get_flat_params()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)      # batch_size clipped
            warnings.simplefilter("error", RuntimeWarning)    # numpy overflow must not leak out
            if method == "fit":
                net.fit(X, y, epochs=2, batch_size=4, lr=0.1)
                result = net.get_flat_params()
            elif method in ("predict", "predict_proba"):
                result = getattr(net, method)(X)
            elif method == "backprop":
                gw, gb = net.backprop(X, y)
                result = np.concatenate([g.ravel() for g in gw + gb])
            else:
                result = getattr(net, method)(X, y)
    except DOCUMENTED as exc:
        after = net.get_flat_params()
        assert np.isfinite(after).all()
        if method != "fit" or not isinstance(exc, TrainingDiverged):
            np.testing.assert_array_equal(after, before)       # rejected input changes nothing
        return type(exc)
    result = np.asarray(result, dtype=np.float64)
    assert np.isfinite(result).all(), f"{method} returned non-finite values"
    return result


@SETTINGS
@given(data=st.data())
def test_public_api_gives_a_documented_error_or_finite_results_equal_across_backends(data):
    config = data.draw(networks())
    X = data.draw(inputs(config["sizes"][0]))
    n_rows = np.shape(X)[0] if np.ndim(X) >= 1 else 0
    y = data.draw(targets(n_rows, config["sizes"][-1]))
    method = data.draw(st.sampled_from(["fit", "predict", "predict_proba", "score", "loss", "backprop"]))
    theta = Network(**config, backend="numpy").get_flat_params()
    results = {backend: _call(config, backend, method, X, y, theta) for backend in BACKENDS}
    kinds = {b: r if isinstance(r, type) else "ok" for b, r in results.items()}
    hypothesis.event(f"{method}: {'finite result' if 'ok' in kinds.values() else 'documented error'}")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            moderate = np.all(np.abs(np.asarray(X, dtype=np.float64)) <= MODERATE)
        except (TypeError, ValueError):
            moderate = True
    if not moderate:
        return      # each backend gave a documented error or finite results; overflow points may differ
    assert len(set(kinds.values())) == 1, f"backends disagree: {kinds}"
    if "ok" in kinds.values():
        reference = results[BACKENDS[-1]]
        tol = 2e-3 if config["dtype"] == "float32" else 1e-8
        for backend in BACKENDS:
            np.testing.assert_allclose(results[backend], reference, rtol=tol, atol=tol,
                                       err_msg=f"{backend} differs from {BACKENDS[-1]} on {method}")
