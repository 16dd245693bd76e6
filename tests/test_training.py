"""Training features of Network.fit that the command line relies on.

Optimizers, learning-rate schedules, weight decay, validation (given or held
out), early stopping that restores the best epoch, callbacks that stop
training, and the History they fill (JSON, plot).
"""

import json
import math

import numpy as np
import pytest
from _helpers import BACKENDS

import cymlp
from cymlp import Network
from cymlp.datasets import make_random_classification


def _net(backend, sizes=(64, 32, 10), seed=0, **kw):
    return Network(list(sizes), backend=backend, seed=seed, **kw)


class WeightRecorder:
    """A callback keeping a copy of the parameters after every epoch."""

    def __init__(self, net):
        self.net = net
        self.params = []

    def __call__(self, history):
        assert len(history) == len(self.params) + 1
        self.params.append(self.net.get_flat_params())


# ---------------------------------------------------------------- optimizers and schedules


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.05), ("adam", 0.01)])
@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
def test_every_optimizer_and_schedule_learns_digits(digits_standardized, optimizer, lr, schedule):
    X, y, X_test, y_test = digits_standardized
    net = _net(None)      # the default backend; the backends agree (test_compiled.py)
    history = net.fit(X, y, epochs=8, batch_size=32, lr=lr, optimizer=optimizer, lr_schedule=schedule)
    assert len(history) == 8
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert history.accuracy[-1] > history.accuracy[0]
    assert net.score(X_test, y_test) > 0.9


@pytest.mark.parametrize("backend", BACKENDS)
def test_optimizers_schedules_and_options_change_the_result(digits_standardized, backend):
    X, y, _, _ = digits_standardized
    variants = {
        "sgd": dict(),
        "adam": dict(optimizer="adam", lr=0.01),
        "step": dict(lr_schedule="step"),
        "cosine": dict(lr_schedule="cosine"),
        "nesterov": dict(nesterov=True),
        "no momentum": dict(momentum=0.0),
        "weight decay": dict(weight_decay=1e-2),
    }
    params = {}
    for name, kw in variants.items():
        net = _net(backend)
        net.fit(X, y, **{"epochs": 4, "batch_size": 32, "lr": 0.05, **kw})
        params[name] = net.get_flat_params()
    names = list(params)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.allclose(params[a], params[b]), f"{a} and {b} trained to the same weights"


def test_schedules_follow_their_formulas(digits_standardized):
    X, y, _, _ = digits_standardized
    lr, epochs = 0.08, 8
    expected = {
        "constant": [lr] * epochs,
        "step": [lr * 0.5 ** (e // 2) for e in range(epochs)],           # halves every epochs // 4
        "cosine": [lr * 0.5 * (1 + math.cos(math.pi * e / epochs)) for e in range(epochs)],
    }
    for schedule, rates in expected.items():
        history = _net("numpy").fit(X, y, epochs=epochs, lr=lr, lr_schedule=schedule)
        np.testing.assert_allclose(history.lr, rates, err_msg=schedule)
    custom = _net("numpy").fit(X, y, epochs=3, lr=lr, lr_schedule=lambda e, n, base: base / (e + 1))
    np.testing.assert_allclose(custom.lr, [lr, lr / 2, lr / 3])


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_decay_shrinks_the_weights_not_the_biases(digits_standardized, backend):
    X, y, _, _ = digits_standardized
    norms = {}
    for decay in (0.0, 0.05):
        net = _net(backend)
        net.fit(X, y, epochs=4, lr=0.05, weight_decay=decay)
        norms[decay] = sum(float(np.sum(W.astype(np.float64) ** 2)) for W in net.weights)
    assert norms[0.05] < 0.8 * norms[0.0]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_data_is_evaluated_after_every_epoch(digits_standardized, backend):
    X, y, X_test, y_test = digits_standardized
    records = []
    net = _net(backend)

    def check(history):
        records.append((history.val_loss[-1], net.loss(X_test, y_test),
                        history.val_accuracy[-1], net.score(X_test, y_test)))

    history = net.fit(X, y, epochs=3, lr=0.05, validation_data=(X_test, y_test), callbacks=[check])
    assert len(records) == 3
    for val_loss, loss, val_acc, acc in records:
        assert val_loss == pytest.approx(loss, rel=1e-5)
        assert val_acc == pytest.approx(acc)
    assert history.val_loss[-1] < history.val_loss[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_fraction_holds_out_rows(backend):
    X, y = make_random_classification(100, 8, 3, seed=1)
    seen = []
    net = _net(backend, sizes=(8, 16, 3))
    history = net.fit(X, y, epochs=2, batch_size=10, validation_fraction=0.2,
                      progress=lambda epoch, done, n_batches: seen.append(n_batches))
    assert set(seen) == {8}                 # 80 training rows in batches of 10
    assert all(v is not None for v in history.val_loss)
    assert all(0 <= a <= 1 for a in history.val_accuracy)


def test_validation_fraction_that_leaves_nothing_is_rejected():
    X, y = make_random_classification(10, 4, 2, seed=0)
    with pytest.raises(ValueError, match="validation_fraction"):
        _net("numpy", sizes=(4, 3, 2)).fit(X, y, validation_fraction=0.01)
    with pytest.raises(ValueError, match="not both"):
        _net("numpy", sizes=(4, 3, 2)).fit(X, y, validation_fraction=0.5, validation_data=(X, y))


# ---------------------------------------------------------------- early stopping and callbacks


@pytest.mark.parametrize("backend", BACKENDS)
def test_early_stopping_restores_the_best_epochs_weights(backend):
    # Random labels: the network memorises the training rows and the
    # validation loss soon rises, so early stopping must trigger.
    X, y = make_random_classification(300, 20, 4, seed=3)
    net = _net(backend, sizes=(20, 64, 4), seed=1)
    recorder = WeightRecorder(net)
    history = net.fit(X, y, epochs=60, batch_size=16, lr=0.1, validation_fraction=0.3,
                      early_stopping=True, patience=3, callbacks=[recorder])
    best = int(np.argmin(history.val_loss)) + 1
    assert history.stopped_early
    assert history.best_epoch == best
    assert len(history) == best + 3 < 60
    np.testing.assert_array_equal(net.get_flat_params(), recorder.params[best - 1])
    assert not np.array_equal(net.get_flat_params(), recorder.params[-1])


def test_early_stopping_without_validation_watches_the_training_loss(digits_standardized):
    X, y, _, _ = digits_standardized
    with pytest.warns(UserWarning, match="training loss"):
        history = _net("numpy").fit(X, y, epochs=5, lr=0.05, early_stopping=True)
    assert history.best_epoch == int(np.argmin(history.loss)) + 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_callback_returning_false_stops_training(digits_standardized, backend):
    X, y, _, _ = digits_standardized
    calls = []

    def stop_after_three(history):
        calls.append(len(history))
        return len(history) < 3

    history = _net(backend).fit(X, y, epochs=20, callbacks=[stop_after_three, lambda h: None])
    assert calls == [1, 2, 3]
    assert len(history) == 3
    assert history.stopped_early and not history.interrupted
    assert history.best_epoch is None


# ---------------------------------------------------------------- history


def test_history_json_round_trips(tmp_path, digits_standardized):
    X, y, X_test, y_test = digits_standardized
    net = _net("numpy")
    history = net.fit(X, y, epochs=3, validation_data=(X_test, y_test))
    assert net.history_ is history
    path = tmp_path / "history.json"
    history.to_json(path)
    data = json.loads(path.read_text())
    assert data["epoch"] == [1, 2, 3]
    assert data["loss"] == pytest.approx(history.loss)
    assert data["val_accuracy"] == pytest.approx(history.val_accuracy)
    assert data["stopped_early"] is False and data["best_epoch"] is None


def test_history_plot_writes_a_png(tmp_path, digits_standardized):
    pytest.importorskip("matplotlib")
    X, y, X_test, y_test = digits_standardized
    history = _net("numpy").fit(X, y, epochs=2, validation_data=(X_test, y_test))
    history.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def svg_backend():
    """pyplot on the "svg" backend (as a notebook sets its own), restored afterwards."""
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    original = matplotlib.get_backend()
    plt.switch_backend("svg")
    try:
        yield plt
    finally:
        plt.switch_backend(original)


def test_every_figure_leaves_pyplot_and_the_backend_alone(tmp_path, svg_backend, digits_standardized, capsys):
    """Issue 21, item 13: on main plot(path) switched the process to Agg and left its figure open."""
    import matplotlib
    from matplotlib.figure import Figure

    from cymlp import cli
    plt = svg_backend
    X, y, X_test, y_test = digits_standardized
    history = _net("numpy").fit(X, y, epochs=2, validation_data=(X_test, y_test))
    open_before = plt.get_fignums()
    for fig in (history.plot(), history.plot(tmp_path / "curves.png")):
        assert isinstance(fig, Figure)
    assert cli.main(["train", "--epochs", "1", "--hidden", "4", "--no-progress", "-q",
                     "--plot", str(tmp_path / "cli.png")]) == 0
    assert cli.main(["bench", "--sizes", "8,4,2", "--impl", "numpy", "--dtype", "float64", "--threads", "1",
                     "--seconds", "0.02", "--no-roofline", "--plot", str(tmp_path / "bench.png")]) == 0
    capsys.readouterr()
    assert matplotlib.get_backend() == "svg"
    assert plt.get_fignums() == open_before
    for name in ("curves.png", "cli.png", "bench.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_callback_sees_every_epoch_even_when_one_stops_training(digits_standardized):
    X, y = digits_standardized[0], digits_standardized[1]
    seen_a, seen_b = [], []
    net = cymlp.Network([64, 16, 10], dtype="float64", backend="numpy", seed=0)
    history = net.fit(X, y, epochs=5, batch_size=32, lr=0.05,
                      callbacks=[lambda h: seen_a.append(len(h)) or len(h) < 2,
                                 lambda h: seen_b.append(len(h))])
    assert seen_a == seen_b == [1, 2]
    assert history.stopped_early and len(history) == 2


# --------------------------------------------------------------------------
# Issue 11, case 7: divergence with early stopping goes back to the best epoch
# --------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("on_divergence", ["warn", "raise"])
def test_divergence_with_early_stopping_restores_the_best_epochs_weights(digits_standardized, backend, on_divergence):
    X, y, X_val, y_val = digits_standardized
    snapshots = {}

    def blow_up(epoch, epochs, lr):                 # a schedule that explodes in epoch 6
        return lr if epoch < 5 else 1e9

    net = _net(backend)
    with np.errstate(all="ignore"):
        try:
            if on_divergence == "warn":
                with pytest.warns(RuntimeWarning, match="best epoch"):
                    history = net.fit(X * 100, y, epochs=10, lr=0.05, lr_schedule=blow_up,
                                      validation_data=(X_val * 100, y_val), early_stopping=True,
                                      patience=10, on_divergence="warn",
                                      callbacks=[lambda h: snapshots.update({len(h): net.get_flat_params()})])
            else:
                with pytest.raises(cymlp.TrainingDiverged, match="best epoch"):
                    net.fit(X * 100, y, epochs=10, lr=0.05, lr_schedule=blow_up,
                            validation_data=(X_val * 100, y_val), early_stopping=True, patience=10,
                            callbacks=[lambda h: snapshots.update({len(h): net.get_flat_params()})])
        finally:
            history = net.history_
    assert history.diverged
    best = min(range(len(history)), key=lambda i: history.val_loss[i]) + 1
    assert history.best_epoch == best
    np.testing.assert_array_equal(net.get_flat_params(), snapshots[best])


# --------------------------------------------------------------------------
# Issue 11, case 13: a rejected call changes nothing
# --------------------------------------------------------------------------

def _schedule_returning(value):
    def schedule(epoch, epochs, lr):
        if isinstance(value, Exception):
            raise value
        return value
    return schedule


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [0, math.nan, "fast", RuntimeError("boom")], ids=repr)
def test_a_bad_lr_schedule_result_is_rejected_before_anything_changes(digits_standardized, backend, bad):
    X, y, _, _ = digits_standardized
    net = _net(backend)
    net.fit(X, y, epochs=1)
    history, params, rng = net.history_, net.get_flat_params(), net._rng.bit_generator.state
    with pytest.raises((ValueError, TypeError, RuntimeError)):
        net.fit(X, y, epochs=3, lr_schedule=_schedule_returning(bad), validation_fraction=0.2)
    assert net.history_ is history
    np.testing.assert_array_equal(net.get_flat_params(), params)
    assert net._rng.bit_generator.state == rng


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_schedule_failing_in_a_later_epoch_keeps_the_epochs_done(digits_standardized, backend):
    X, y, _, _ = digits_standardized
    net = _net(backend)

    def schedule(epoch, epochs, lr):
        return lr if epoch < 2 else float("nan")
    with pytest.raises(ValueError, match="lr_schedule"):
        net.fit(X, y, epochs=4, lr_schedule=schedule)
    assert len(net.history_) == 2 and np.isfinite(net.get_flat_params()).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kwargs", [{"validation_fraction": 0.5, "batch_size": 10**6},
                                    {"early_stopping": True, "batch_size": 10**6}],
                         ids=["clipped batch", "early stopping without validation"])
def test_a_warning_raised_as_an_error_changes_nothing(digits_standardized, backend, kwargs):
    import warnings
    X, y, _, _ = digits_standardized
    net = _net(backend)
    net.fit(X, y, epochs=1)
    history, params, rng = net.history_, net.get_flat_params(), net._rng.bit_generator.state
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning):
            net.fit(X, y, epochs=2, **kwargs)
    assert net.history_ is history
    np.testing.assert_array_equal(net.get_flat_params(), params)
    assert net._rng.bit_generator.state == rng
