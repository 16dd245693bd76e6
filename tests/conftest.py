"""Shared fixtures (plain helpers are in ``_helpers.py``)."""

import warnings

import pytest
from _helpers import HAS_COMPILED, subprocess_env

from cymlp import _build_check
from cymlp.datasets import load_digits, standardize

# An unbuilt source tree warns once, at its first network (cymlp/_build_check.py); the suite knows
# (HAS_COMPILED) and skips what needs the compiled path, so use that warning up here, where it
# cannot land inside a test that checks its own warnings (tests/test_import_setup.py checks it).
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _build_check.warn_if_unbuilt()


def _read_only(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays


@pytest.fixture(scope="session")
def digits():
    """The bundled digits as ``fit`` takes them: float32 ``(X_train, y_train, X_test, y_test)``."""
    return _read_only(*load_digits(return_split=True, dtype="float32"))


@pytest.fixture(scope="session")
def digits_standardized(digits):
    """:func:`digits` standardized with the training statistics, the first 600 training rows."""
    X_train, y_train, X_test, y_test = digits
    X_train, X_test = standardize(X_train, X_test)
    return _read_only(X_train[:600], y_train[:600], X_test, y_test)


@pytest.fixture(scope="session")
def digits_400():
    """The first 400 digits, float64 in [0, 1] (scikit-learn's ``load_digits`` / 16): ``(X, y)``."""
    X, y = load_digits()
    return _read_only(X[:400], y[:400])


@pytest.fixture
def child_env():
    return subprocess_env()


@pytest.fixture(autouse=True, scope="session")
def no_internet_downloads(tmp_path_factory):
    """Tests never reach the internet, nor the user's download cache: a
    Fashion-MNIST download that a test did not point at its own server goes to
    a closed port on this machine (refused at once), and the cache folder is a
    fresh temporary one.  Subprocesses inherit both through the environment."""
    import socket

    with socket.socket() as probe:          # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CYMLP_FASHION_MNIST_URL", f"http://127.0.0.1:{closed_port}/no-downloads-in-tests/")
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture
def split_on_every_thread():
    """Split mode runs its steps on as many threads as asked, even for the tests' tiny networks.

    A real fit splits a step only when each thread gets enough work
    (``SPLIT_MIN_FLOPS`` in cymlp/_kernels_split.pyx), so the tests' networks
    would run it on one thread: the parity tests that must cover the threaded
    split step ask for this fixture (``split_step_threads`` in _helpers checks
    that it takes effect).  Everything else runs the production setting.
    """
    if not HAS_COMPILED:
        yield
        return
    from cymlp import _kernels_split
    old = _kernels_split._set_split_min_flops(1)
    try:
        yield
    finally:
        _kernels_split._set_split_min_flops(old)


@pytest.fixture
def split_units_everywhere(split_on_every_thread):
    """Split mode shares every hidden layer's products by units (each thread its slice of W,
    every row, barriers between) instead of rows: a real fit does so only where W is the bigger
    operand (``SPLIT_UNITS_MARGIN`` in cymlp/_kernels_split.pyx), which the tests' tiny networks
    never are."""
    if not HAS_COMPILED:
        yield
        return
    from cymlp import _kernels_split
    old = _kernels_split._set_split_units_margin(-1)
    try:
        yield
    finally:
        _kernels_split._set_split_units_margin(old)
