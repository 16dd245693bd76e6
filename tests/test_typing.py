"""The public API's type annotations: what they say, that they are there, that mypy agrees.

This file is checked by mypy (``[tool.mypy]`` in pyproject.toml; .ci/run runs
it on the sources and again against the installed wheel, through its
``py.typed``), and run by pytest.  ``assert_type`` pins what each public call
returns, so a wrong annotation is a type error in CI; the calls in
``_wrong_calls`` must each be a type error (``warn_unused_ignores`` turns an
``ignore`` that is no longer needed into an error, so loosening a public
annotation fails too).  At run time ``assert_type`` does nothing, and the
tests check what a type checker cannot: every public function is annotated,
and the ``Literal`` types list exactly the values the code accepts.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pytest

import cymlp
import cymlp.datasets
from cymlp import _typing, reference
from cymlp.history import History
from cymlp.training_state import OptimizerConfig, TrainingState

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:
    def assert_type(value: object, _type: object) -> object:
        return value

Floats = npt.NDArray[np.floating[Any]]
Labels = npt.NDArray[np.int64]
ROOT = Path(__file__).resolve().parents[1]


def test_network_annotations(tmp_path: Path) -> None:
    X, y = cymlp.datasets.make_random_classification(40, 4, 3, seed=0)
    assert_type(X, Floats)
    assert_type(y, Labels)
    net = cymlp.Network([4, 5, 3], activation="tanh", dtype="float64", seed=0)
    assert_type(net.sizes, tuple[int, ...])
    assert_type(net.dtype, np.dtype[np.floating[Any]])
    assert_type(net.activation, _typing.Activation)
    assert_type(net.weights[0], Floats)
    assert_type(net.n_params, int)
    history = net.fit(X, y, epochs=2, batch_size=8, progress=False)
    assert_type(history, History)
    assert_type(history.loss, list[float])
    assert_type(net.history_, History | None)
    assert_type(net.training_state_, TrainingState | None)
    assert_type(net.feedforward(X), Floats)
    assert_type(net.predict_proba(X), Floats)
    assert_type(net.predict(X), npt.NDArray[np.intp] | Floats)
    assert_type(net.score(X, y), float)
    assert_type(net.loss(X, y), float)
    grads_w, grads_b = net.backprop(X, y)
    assert_type(grads_w, list[Floats])
    assert_type(net.partial_fit(X, y, batch_size=8), cymlp.Network)
    assert_type(net.copy(dtype="float32"), cymlp.Network)
    assert_type(net.get_flat_params(), Floats)
    assert_type(cymlp.gradcheck(net, X[:3], y[:3], max_params=5), float)
    net.save(tmp_path / "net.npz")
    assert_type(cymlp.Network.load(tmp_path / "net.npz"), cymlp.Network)
    assert isinstance(net.score(X, y), float) and isinstance(net.loss(X, y), float)


def test_dataset_and_state_annotations() -> None:
    X, y = cymlp.datasets.load_digits()
    assert_type(X, Floats)
    X_train, y_train, X_test, y_test = cymlp.datasets.load_digits(return_split=True)
    assert_type(X_test, Floats)
    assert_type(cymlp.datasets.standardize(X_train), Floats)
    assert_type(cymlp.datasets.standardize(X_train, X_test), tuple[Floats, Floats])
    opt = OptimizerConfig("adam")
    assert_type(opt.name, typing.Literal["sgd", "adam"])
    assert_type(cymlp.show_config(), None)
    assert_type(cymlp.show_config(mode="dicts"), dict[str, Any])
    assert_type(cymlp.available_backends(), tuple[str, ...])


def _wrong_calls(net: cymlp.Network, X: Floats) -> None:
    """Never run: each line is a type error, so each `ignore` is needed (warn_unused_ignores)."""
    cymlp.Network([4, 3], activation="sigmod")  # type: ignore[arg-type]
    cymlp.Network([4, 3], dtype="float16")  # type: ignore[arg-type]
    net.fit(X, X, optimizer="rmsprop")  # type: ignore[arg-type]
    net.fit(X, X, progress="yes")  # type: ignore[arg-type]
    net.sizes = (4, 3)  # type: ignore[assignment]
    cymlp.datasets.load_digits(return_split=1.5)  # type: ignore[call-overload]


# ---------------------------------------------------------------- at run time


def _public_callables() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = [(f"cymlp.{name}", getattr(cymlp, name))
                                    for name in cymlp.__all__ if name != "__version__"]
    found += [(f"cymlp.datasets.{name}", getattr(cymlp.datasets, name)) for name in cymlp.datasets.__all__]
    classes = [cymlp.Network, History, TrainingState, OptimizerConfig]
    try:
        from cymlp.sklearn import MLPClassifier, MLPRegressor
        classes += [MLPClassifier, MLPRegressor]
    except ImportError:
        pass
    try:
        from cymlp.distributed import connect, fit_distributed
        found += [("cymlp.distributed.fit_distributed", fit_distributed), ("cymlp.distributed.connect", connect)]
    except ImportError:
        pass
    for cls in classes:
        for name, member in inspect.getmembers(cls):
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, property):
                found.append((f"{cls.__name__}.{name}", member.fget))
            elif (inspect.isfunction(member) or inspect.ismethod(member)) and member.__module__.startswith("cymlp"):
                found.append((f"{cls.__name__}.{name}", member))
    return found


def test_every_public_function_and_method_is_annotated() -> None:
    unannotated = []
    for name, func in _public_callables():
        if inspect.isclass(func):
            func = func.__init__
        if not getattr(func, "__module__", "").startswith("cymlp"):
            continue
        signature = inspect.signature(func)
        missing = [p for p in signature.parameters if p not in ("self", "cls")
                   and signature.parameters[p].annotation is inspect.Parameter.empty]
        if missing or signature.return_annotation is inspect.Signature.empty:
            unannotated.append(f"{name}({', '.join(missing)}){'' if missing else ' -> ?'}")
    assert not unannotated, unannotated
    assert len(_public_callables()) > 60       # the walk found the API, not nothing


def test_the_literal_types_list_the_names_the_code_accepts() -> None:
    assert set(typing.get_args(_typing.Activation)) == set(reference.HIDDEN_ACTIVATIONS)
    assert set(typing.get_args(_typing.OutputActivation)) == set(reference.OUTPUT_ACTIVATIONS)
    assert set(typing.get_args(_typing.LossName)) == set(reference.LOSSES)
    assert set(typing.get_args(_typing.BackendName)) == {"cython", "numpy"}


def test_the_estimators_literal_types_list_scikit_learns_names() -> None:
    pytest.importorskip("sklearn")
    from cymlp.sklearn import _params
    accepted = set(_params.ACTIVATIONS)
    refused = {"identity"}                      # scikit-learn's, refused with a clear message
    assert set(typing.get_args(_typing.SklearnActivation)) == accepted | refused
    assert set(typing.get_args(_typing.SklearnSolver)) == set(_params.SOLVERS) | {"lbfgs"}
    assert set(typing.get_args(_typing.SklearnLearningRate)) == set(_params.LEARNING_RATES)


@pytest.mark.slow
def test_mypy_passes_on_the_package() -> None:
    """What .ci/run's lint section runs (mypy comes with the lint extra)."""
    pytest.importorskip("mypy")
    if not (ROOT / "cymlp" / "network.py").exists():
        pytest.skip("needs the source tree (the tests run against an installed wheel)")
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
