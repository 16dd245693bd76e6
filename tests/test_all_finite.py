"""The boundary's finiteness check of X (``cymlp._validation.all_finite``).

The compiled check reads the float bit patterns (an integer test of the
exponent field) instead of calling ``isfinite``, in blocks on several threads;
it must agree with ``np.isfinite(X).all()`` on every value a float can hold,
wherever in the array it sits, and the error a user sees must not change.
"""

import sys

import numpy as np
import pytest
from _helpers import requires_compiled

from cymlp import Network
from cymlp import _validation as v
from cymlp._backends import finiteness_check

DTYPES = ("float32", "float64")


def _specials(dtype):
    info = np.finfo(dtype)
    bits = np.dtype(dtype).itemsize * 8
    utype = np.dtype(f"uint{bits}")
    exponent_ones = np.array([np.inf], dtype=dtype).view(utype)[0]
    odd_nans = np.array([exponent_ones | 1, exponent_ones | (1 << (info.nmant - 1)) | 5,
                         exponent_ones | (1 << (bits - 1)) | 3], dtype=utype).view(dtype)
    finite = np.array([0.0, -0.0, info.max, -info.max, info.tiny, info.smallest_subnormal,
                       -info.smallest_subnormal, np.nextafter(info.max, 0), 1.0], dtype=dtype)
    not_finite = np.concatenate([np.array([np.nan, -np.nan, np.inf, -np.inf], dtype=dtype), odd_nans])
    return finite, not_finite


@requires_compiled
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_compiled_check_agrees_with_isfinite_on_every_kind_of_value(dtype, n_threads):
    from cymlp import _kernels
    rng = np.random.default_rng(0)
    finite, not_finite = _specials(dtype)
    # 3 blocks and a bit of the threaded check (65,536 elements each), odd shape
    X = rng.standard_normal((1001, 200)).astype(dtype)
    X.flat[rng.integers(0, X.size, 50)] = rng.choice(finite, 50)
    assert np.isfinite(X).all() and _kernels.all_finite(X, n_threads)
    for value in not_finite:
        for where in (0, 65_535, 65_536, 131_072 + 17, X.size - 1):
            Y = X.copy()
            Y.flat[where] = value
            assert not _kernels.all_finite(Y, n_threads), (value, where)
    for shape in [(0, 5), (1, 1), (3,), (2, 3, 4)]:
        Z = np.ones(shape, dtype=dtype)
        assert _kernels.all_finite(Z, n_threads) == bool(np.isfinite(Z).all())


@requires_compiled
def test_compiled_check_refuses_what_it_cannot_read():
    from cymlp import _kernels
    with pytest.raises(ValueError, match="float32 or float64"):
        _kernels.all_finite(np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _kernels.all_finite(np.zeros((4, 4))[:, ::2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_without_the_extension_numpy_checks(monkeypatch, dtype):
    import cymlp
    monkeypatch.setitem(sys.modules, "cymlp._kernels", None)     # import fails: ImportError
    monkeypatch.delattr(cymlp, "_kernels", raising=False)
    check = finiteness_check(2)
    assert check is v.numpy_all_finite
    X = np.ones((3, 4), dtype=dtype)
    assert check(X)
    X[1, 2] = np.nan
    assert not check(X)


@requires_compiled
def test_the_compiled_check_is_what_fit_and_predict_use(monkeypatch):
    from cymlp import _kernels
    calls = []
    real = _kernels.all_finite
    monkeypatch.setattr(_kernels, "all_finite", lambda arr, n: calls.append(n) or real(arr, n))
    net = Network([4, 3, 2], n_threads=2, seed=0)
    X, y = np.ones((6, 4)), np.array([0, 1] * 3)
    net.fit(X, y, epochs=1, batch_size=3)
    net.predict(X)
    assert calls == [2, 2]


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fit_and_predict_still_refuse_non_finite_X_with_the_same_message(backend, n_threads):
    from cymlp._backends import available_backends
    if backend not in available_backends():
        pytest.skip("the compiled path is not built")
    net = Network([4, 3, 2], backend=backend, n_threads=n_threads, seed=0)
    X = np.ones((6, 4))
    y = np.array([0, 1] * 3)
    before = [W.copy() for W in net.weights]
    for bad in (np.nan, np.inf, -np.inf):
        X[4, 1] = bad
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            net.fit(X, y, epochs=1)
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            net.predict(X)
    after = net.weights
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
