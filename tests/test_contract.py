"""The backend contract (cymlp/_backends.py) against its implementations and its callers.

Fails when a backend, a trainer or a call site drifts from the one statement of
the contract: ``Backend``, ``Trainer`` and ``TrainerOptions``.
"""

import dataclasses
import inspect
import sys

import numpy as np
import pytest
from _helpers import BACKENDS, HAS_COMPILED, random_data

import cymlp
from cymlp import _backends
from cymlp._backends import Backend, FullBatch, Trainer, TrainerOptions
from cymlp._numpy_backend import NumpyBackend, NumpyFullBatch, NumpyTrainer


def protocol_methods(protocol):
    """The methods a Protocol declares (not those every Protocol has)."""
    return sorted(name for name, value in vars(protocol).items()
                  if callable(value) and not name.startswith("_"))


def shape_of(function):
    """A signature without annotations: names, kinds and defaults, in order."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def implementations():
    backends = [NumpyBackend]
    trainers = [NumpyTrainer]
    passes = [NumpyFullBatch]
    if HAS_COMPILED:
        from cymlp._cython_backend import CythonBackend, CythonFullBatch, CythonTrainer, ParallelTrainer
        backends.append(CythonBackend)
        trainers += [CythonTrainer, ParallelTrainer]
        passes.append(CythonFullBatch)
    return backends, trainers, passes


BACKEND_CLASSES, TRAINER_CLASSES, PASS_CLASSES = implementations()


def test_the_protocols_declare_the_methods_callers_use():
    assert protocol_methods(Backend) == ["backprop", "feedforward", "full_batch", "loss_and_output",
                                         "trainer"]
    assert protocol_methods(Trainer) == ["close", "run"]
    assert protocol_methods(FullBatch) == ["evaluate"]


@pytest.mark.parametrize("cls", BACKEND_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("method", protocol_methods(Backend))
def test_every_backend_method_has_the_protocol_signature(cls, method):
    assert shape_of(getattr(cls, method)) == shape_of(getattr(Backend, method))


@pytest.mark.parametrize("cls", TRAINER_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("method", protocol_methods(Trainer))
def test_every_trainer_method_has_the_protocol_signature(cls, method):
    assert shape_of(getattr(cls, method)) == shape_of(getattr(Trainer, method))


@pytest.mark.parametrize("cls", PASS_CLASSES, ids=lambda c: c.__name__)
def test_every_full_batch_pass_has_the_protocol_signature(cls):
    assert shape_of(cls.evaluate) == shape_of(FullBatch.evaluate)


@pytest.mark.parametrize("cls", BACKEND_CLASSES + TRAINER_CLASSES + PASS_CLASSES,
                         ids=lambda c: c.__name__)
def test_implementations_have_no_public_methods_outside_the_contract(cls):
    protocol = (Backend if cls in BACKEND_CLASSES else Trainer if cls in TRAINER_CLASSES
                else FullBatch)
    public = {name for name, value in vars(cls).items()
              if callable(value) and not name.startswith("_")}
    inherited = {name for base in cls.__mro__[1:-1] for name, value in vars(base).items()
                 if callable(value) and not name.startswith("_")}
    assert (public | inherited) - set(protocol_methods(protocol)) == set()


@pytest.mark.parametrize("name", BACKENDS)
def test_the_registry_names_each_backend_as_it_names_itself(name):
    backend = _backends.get_backend(name)
    assert backend.name == name and name in _backends.BACKEND_NAMES
    assert isinstance(backend, tuple(BACKEND_CLASSES))


def test_trainer_options_are_frozen_and_refuse_unknown_options():
    options = TrainerOptions(batch_size=8, optimizer=cymlp.training_state.OptimizerConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 4
    with pytest.raises(TypeError):
        TrainerOptions(batch_size=8, optimizer=None, terms=None)
    assert options.plain and not options.has_dropout
    assert not dataclasses.replace(options, dropout=(0.0, 0.5)).plain


class ContractSpy:
    """A backend that checks every call against the protocol before passing it on."""

    def __init__(self, real, calls):
        self.real, self.calls, self.name = real, calls, real.name

    def __getattr__(self, method):
        if method not in protocol_methods(Backend):
            raise AttributeError(f"a caller used {method!r}, which the Backend protocol does not declare")
        declared = inspect.signature(getattr(Backend, method))
        real = getattr(self.real, method)

        def call(*args, **kwargs):
            declared.bind(self, *args, **kwargs)      # a TypeError names the drift
            self.calls.add((method, *sorted(kwargs)))
            result = real(*args, **kwargs)
            if method == "trainer":
                assert isinstance(args[5] if len(args) > 5 else kwargs["options"], TrainerOptions)
                for name in protocol_methods(Trainer):
                    assert callable(getattr(result, name))
            if method == "full_batch":
                for name in protocol_methods(FullBatch):
                    assert callable(getattr(result, name))
            return result
        return call


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_caller_passes_what_the_protocol_declares(monkeypatch, backend):
    """fit (weights, dropout, clipping, validation), loss, score, backprop, objective and
    gradcheck (masks)."""
    calls = set()
    real_get = _backends.get_backend
    for module in ("cymlp.network", "cymlp.gradcheck"):     # (cymlp.gradcheck is also a function)
        monkeypatch.setattr(sys.modules[module], "get_backend", lambda name: ContractSpy(real_get(name), calls))
    X, y = random_data(40, 4, 3)
    w = np.linspace(0.5, 2.0, len(X))
    net = cymlp.Network([4, 6, 3], backend=backend, dtype="float64", seed=0, dropout=0.2)
    net.fit(X, y, epochs=2, batch_size=8, sample_weight=w, clip_norm=1.0, validation_fraction=0.25)
    net.fit(X, y, epochs=1, batch_size=8, resume=True, validation_data=(X, y))
    net.loss(X, y, sample_weight=w)
    net.score(X, y)
    net.predict(X)
    net.backprop(X, y, sample_weight=w)
    net.objective(X, y, alpha=0.1, sample_weight=w)(net.get_flat_params())
    masks = [np.full((5, 6), 1.25)]
    assert cymlp.gradcheck(net, X[:5], y[:5], masks=masks, sample_weight=w[:5]) < 1e-6
    used = {c[0] for c in calls}
    assert used == set(protocol_methods(Backend))
    assert ("backprop", "masks", "sample_weight") in calls
    assert ("loss_and_output", "sample_weight") in calls
    assert ("trainer", "should_stop", "state") in calls
    assert ("full_batch", "sample_weight") in calls


@pytest.mark.skipif(not HAS_COMPILED, reason="the compiled path is not built")
def test_the_step_modes_python_accepts_are_the_kernels_own():
    """Network.compiled_mode is checked without the extension; the names must be the kernels'."""
    from cymlp import _kernels
    assert set(_backends.COMPILED_MODES) == set(_kernels.MODES)
