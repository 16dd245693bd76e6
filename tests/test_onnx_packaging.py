"""The ONNX extra stays optional (issue 22): clear errors without it, and the packaging lists agree.

These tests need none of onnx, onnxruntime or skl2onnx.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

from cymlp import Network, _skl2onnx

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_to_onnx_without_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)          # as if not installed
    with pytest.raises(ImportError, match=r'pip install "cymlp\[onnx\]"'):
        Network([3, 2]).to_onnx(tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_the_import_hook_steps_aside_when_skl2onnx_is_not_installed(monkeypatch):
    hook = _skl2onnx._AfterImport(object, object)
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert hook.find_spec("numpy") is None                  # other modules: not its business
    assert hook.find_spec("skl2onnx") is None               # not installed: the import fails as usual


def test_a_registration_failure_warns_instead_of_breaking_skl2onnx(monkeypatch):
    def broken(classifier, regressor):
        raise AttributeError("update_registered_converter moved")
    monkeypatch.setattr(_skl2onnx, "register", broken)
    with pytest.warns(RuntimeWarning, match="could not register its skl2onnx converters"):
        _skl2onnx._register_or_warn(object, object)


def test_the_extras_agree():
    tomllib = pytest.importorskip("tomllib")                # Python 3.11+
    data = tomllib.loads(PYPROJECT.read_text())
    extras = data["project"]["optional-dependencies"]
    onnx_extra = extras["onnx"]
    assert {r.split(">")[0] for r in onnx_extra} == {"onnx", "onnxruntime", "skl2onnx"}
    assert set(onnx_extra) <= set(extras["test"])           # CI runs the ONNX tests
    (musl,) = [o for o in data["tool"]["cibuildwheel"]["overrides"] if "musllinux" in o["select"]]
    assert musl["test-extras"] == []
    assert musl["test-requires"] == [r for r in extras["test"] if r not in onnx_extra]
