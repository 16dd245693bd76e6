"""The kernels' codes have one source: the enums of cymlp/_kernels_common.pxd.

Python gets every name from the compiled module (``_kernels.ACTIVATIONS`` and
the other tables are built from the enums), never a number restated by hand;
these tests check that the names a user can choose on either path are the
ones the compiled kernels know, and that each name selects the C branch that
does what the reference path does under that name.
"""

import numpy as np
import pytest
from _helpers import skip_module_unless_compiled

from cymlp import _backends, _fit_checks, reference, training_state

skip_module_unless_compiled()
from cymlp import _cython_backend, _kernels, _kernels_block, _kernels_common

TABLES = ["ACTIVATIONS", "LOSSES", "OPTIMIZERS", "MODES", "STRATEGIES", "WEIGHTINGS"]
ENUMS = {"ACTIVATIONS": "Activation", "LOSSES": "Loss", "OPTIMIZERS": "Optimizer", "MODES": "Mode",
         "STRATEGIES": "Strategy", "WEIGHTINGS": "Weighting"}


@pytest.mark.parametrize("table", TABLES)
def test_each_table_is_its_enum_named_in_lower_case(table):
    names = getattr(_kernels, table)
    enum = getattr(_kernels_common, ENUMS[table])
    assert names == {member.name.lower(): member.value for member in enum}
    assert sorted(names.values()) == list(range(len(names)))     # distinct codes, from 0


def test_the_numpy_path_supports_exactly_the_compiled_activations_and_losses():
    assert set(_kernels.ACTIVATIONS) == set(reference.HIDDEN_ACTIVATIONS) | set(reference.OUTPUT_ACTIVATIONS)
    assert set(_kernels.LOSSES) == set(reference.LOSSES)
    assert _kernels_block.LEAKY_RELU_SLOPE == reference.LEAKY_RELU_SLOPE


def test_the_fit_options_are_the_kernels_names():
    assert set(_kernels.OPTIMIZERS) == set(training_state.OPTIMIZERS)
    assert set(_kernels.STRATEGIES) | {"sync"} == set(_fit_checks.PARALLEL_STRATEGIES)
    assert set(_kernels.WEIGHTINGS) == set(_fit_checks.AVERAGE_WEIGHTINGS)
    assert tuple(_kernels.MODES) == _cython_backend.MODES
    assert set(_kernels.MODES) == set(_backends.COMPILED_MODES)


@pytest.mark.parametrize("name", list(_kernels.ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_each_activation_name_selects_the_c_branch_of_that_activation(name, dtype):
    """A one-layer network whose output activation is ``name``: the compiled
    forward pass equals reference.activate(name) on the same weighted inputs."""
    rng = np.random.default_rng(0)
    plan = _kernels.Plan([5, 4], "sigmoid", name, "quadratic")
    assert plan.codes[1] == _kernels_common.Activation(_kernels.ACTIVATIONS[name])
    theta = rng.standard_normal(plan.n_params).astype(dtype)
    X = rng.standard_normal((7, 5)).astype(dtype)
    out = np.empty((7, 4), dtype=dtype)
    _kernels.forward(plan, theta, X, out, np.empty(7 * plan.row_width, dtype=dtype))
    W, b = theta[:20].reshape(4, 5), theta[20:]
    tol = dict(rtol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, reference.activate(name, X @ W.T + b), **tol)


@pytest.mark.parametrize("name", reference.HIDDEN_ACTIVATIONS)
def test_each_hidden_activation_name_selects_the_c_derivative_of_that_activation(name):
    """The compiled gradient of a two-layer network equals the reference backprop's."""
    rng = np.random.default_rng(1)
    sizes = [5, 6, 3]
    plan = _kernels.Plan(sizes, name, "identity", "quadratic")
    theta = rng.standard_normal(plan.n_params)
    X, Y = rng.standard_normal((8, 5)), rng.standard_normal((8, 3))
    grad = np.empty(plan.n_params)
    _kernels.loss_grad(plan, theta, X, Y, grad, np.empty(8 * plan.row_width))
    W0, b0 = theta[:30].reshape(6, 5), theta[30:36]
    W1, b1 = theta[36:54].reshape(3, 6), theta[54:]
    gw, gb, _ = reference.backprop([W0, W1], [b0, b1], name, "identity", "quadratic", X, Y)[:3]
    want = np.concatenate([gw[0].ravel(), gb[0], gw[1].ravel(), gb[1]]) * 8     # sums, not means
    np.testing.assert_allclose(grad, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("table, make", [
    ("ACTIVATIONS", lambda v: _kernels.Plan([2, 2], v, "softmax", "quadratic")),
    ("LOSSES", lambda v: _kernels.Plan([2, 2], "relu", "softmax", v)),
])
def test_an_unknown_name_lists_the_known_ones(table, make):
    with pytest.raises(ValueError, match="expected one of") as info:
        make("nope")
    for name in getattr(_kernels, table):
        assert repr(name) in str(info.value)
