"""Shared fixtures (plain helpers are in ``_helpers.py``)."""

import pytest
from _helpers import subprocess_env


@pytest.fixture
def child_env():
    return subprocess_env()


@pytest.fixture(autouse=True, scope="session")
def split_tiny_networks():
    """Split mode's steps run on as many threads as asked even for the tests' tiny
    networks, whose steps are far below the work per thread a real fit needs
    before it splits (cymlp/_kernels_split.pyx): the threaded code is what we test."""
    try:
        from cymlp import _kernels_split
    except ImportError:          # no compiled path
        yield
        return
    old = _kernels_split._set_split_min_flops(1)
    yield
    _kernels_split._set_split_min_flops(old)
