"""``fit(progress=...)``: True shows a bar on stderr (tqdm's, or plain lines without tqdm), False/None nothing."""

import sys

import numpy as np
import pytest

import cymlp
from cymlp import _progress


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((200, 4)), rng.integers(0, 3, 200)


def fit(data, **kw):
    net = cymlp.Network([4, 6, 3], seed=0)
    net.fit(*data, epochs=3, batch_size=20, **kw)
    return net


@pytest.mark.parametrize("progress", [False, None])
def test_no_progress_prints_nothing(capsys, data, progress):
    fit(data, progress=progress)
    assert capsys.readouterr() == ("", "")


def test_progress_true_draws_a_tqdm_bar_on_stderr(capsys, data):
    pytest.importorskip("tqdm")
    fit(data, progress=True, validation_fraction=0.2)
    out, err = capsys.readouterr()
    assert out == ""
    assert "24/24" in err                      # 3 epochs of 8 batches (160 training rows / 20)
    assert "epoch 3/3" in err and "loss=" in err and "val_loss=" in err


def test_without_tqdm_progress_true_prints_plain_lines(capsys, monkeypatch, data):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)        # `from tqdm.auto import tqdm` fails
    monkeypatch.setattr(_progress, "PLAIN_INTERVAL", 0.0)      # every report within an epoch too
    net = fit(data, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    epoch_lines = [line for line in lines if "loss" in line]
    assert len(epoch_lines) == 3 and all(line.startswith("cymlp fit: epoch") for line in epoch_lines)
    assert epoch_lines[-1] == "cymlp fit: " + net.history_.format_epoch(-1, 3)
    assert all(line.startswith("cymlp fit: epoch ") for line in lines)
    assert "\r" not in err and "it/s" not in err                # no bar: a log or notebook reads it


def test_a_resumed_fit_counts_epochs_from_where_it_stopped(capsys, monkeypatch, data):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    net = fit(data)
    net.fit(*data, epochs=2, batch_size=20, resume=True, progress=True)
    err = capsys.readouterr().err
    assert "epoch 4/5" in err and "epoch 5/5" in err


def test_a_progress_callable_keeps_working(data):
    calls = []
    fit(data, progress=lambda epoch, done, n: calls.append((epoch, done, n)))
    assert calls and calls[-1] == (2, 10, 10)


def test_a_rejected_fit_prints_nothing(capsys, data):
    net = cymlp.Network([4, 6, 3], seed=0)
    with pytest.raises(ValueError):
        net.fit(*data, lr=-1, progress=True)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("progress", ["yes", 1.5])
def test_other_values_are_refused(data, progress):
    with pytest.raises(TypeError, match="progress must be True"):
        fit(data, progress=progress)


def test_the_estimators_verbose_is_unaffected(capsys, data):
    pytest.importorskip("sklearn")
    from cymlp.sklearn import MLPClassifier
    MLPClassifier((5,), max_iter=2, random_state=0).fit(*data)
    assert capsys.readouterr() == ("", "")
    MLPClassifier((5,), max_iter=2, random_state=0, verbose=True).fit(*data)
    out, err = capsys.readouterr()
    assert out.count("Iteration") == 2 and "cymlp fit" not in err
