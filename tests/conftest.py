"""Shared test helpers."""

import os
from pathlib import Path

import pytest

import cymlp

# A subprocess must import the same cymlp as the tests: the installed package
# in CI (a fresh checkout has no compiled extension), the in-place build during
# development.  Put its parent first on PYTHONPATH and run the child outside
# the checkout, since ``python -m`` puts the working directory first on sys.path.
CYMLP_PARENT = str(Path(cymlp.__file__).resolve().parents[1])


def subprocess_env(**extra):
    """``os.environ`` plus ``extra``, with PYTHONPATH leading to the tested cymlp."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (CYMLP_PARENT, os.environ.get("PYTHONPATH")) if p)
    return env


@pytest.fixture
def child_env():
    return subprocess_env()
