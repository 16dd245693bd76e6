"""The ``cymlp`` command line: train, predict, info, exit codes, Ctrl-C."""

import io
import json
import re
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from _helpers import BACKENDS, subprocess_env

import cymlp
from cymlp import _fashion_mnist, cli, datasets
from cymlp.datasets import write_idx

ACCURACY = re.compile(r"test accuracy (\d\.\d+)")


def _fashion_mnist_installed():
    try:
        _fashion_mnist.locate(None, download=False)
    except FileNotFoundError:
        return False
    return True


def run_cymlp(*args, cwd=None, **kw):
    """``python -m cymlp ARGS`` in a subprocess, importing the cymlp under test."""
    return subprocess.run([sys.executable, "-m", "cymlp", *args], cwd=cwd or tempfile.gettempdir(),
                          env=subprocess_env(), capture_output=True, text=True, timeout=120, **kw)


def main(capsys, *args):
    """``cymlp ARGS`` in this process: (exit status, stdout, stderr)."""
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def accuracy(text):
    match = ACCURACY.search(text)
    assert match, text
    return float(match.group(1))


# ---------------------------------------------------------------- train


@pytest.mark.slow
def test_train_one_epoch_end_to_end_in_a_subprocess(tmp_path):
    result = run_cymlp("train", "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 1
    for field in ("loss", "train_acc", "val_acc", "ex/s"):
        assert field in epoch_lines[0]
    assert 0.8 < accuracy(result.stdout) <= 1
    assert "total" in lines[-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_defaults_learn_digits(capsys, backend):
    # one thread: fast even on a busy machine, where waiting threads slow small nets down
    status, out, _ = main(capsys, "train", "--backend", backend, "--threads", "1")
    assert status == 0
    assert len([line for line in out.splitlines() if line.startswith("epoch")]) == 30
    assert accuracy(out) >= 0.95         # about 0.97-0.98; see the measured figures


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_then_predict_gives_the_same_accuracy(tmp_path, capsys, backend):
    model = tmp_path / "model.npz"
    status, out, _ = main(capsys, "train", "--epochs", "3", "--seed", "4", "--backend", backend,
                          "--save", str(model), "-q")
    assert status == 0 and model.exists()
    status, predicted, _ = main(capsys, "predict", str(model), "--backend", backend)
    assert status == 0
    assert "359" in predicted                  # the same digits test split (the model stores the seed)
    assert accuracy(predicted) == accuracy(out)
    loss = re.compile(r"test loss (\d+\.\d+)")
    assert loss.search(predicted).group(1) == loss.search(out).group(1)


def test_standardization_is_folded_into_the_saved_model(tmp_path, capsys):
    model = tmp_path / "model.npz"
    _, out, _ = main(capsys, "train", "--epochs", "3", "--hidden", "16", "--save", str(model), "-q")
    net = cymlp.Network.load(model)
    _, _, X_test, y_test = datasets.load_digits(return_split=True, dtype="float32", seed=0)
    score = net.score(X_test, y_test)          # raw [0, 1] inputs, no preprocessing needed
    assert score > 0.5 and score == pytest.approx(accuracy(out), abs=5e-5)


def test_json_and_plot_are_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    status, out, _ = main(capsys, "train", "--epochs", "2", "--hidden", "32",
                          "--json", str(tmp_path / "h.json"), "--plot", str(tmp_path / "c.png"))
    assert status == 0
    record = json.loads((tmp_path / "h.json").read_text())
    assert record["epoch"] == [1, 2]
    assert len(record["val_accuracy"]) == 2 and record["test_accuracy"] == pytest.approx(accuracy(out), abs=5e-5)
    assert record["sizes"] == [64, 32, 10]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_json_without_matplotlib_and_options_reach_fit(tmp_path, capsys):
    status, out, _ = main(capsys, "train", "--epochs", "4", "--sizes", "64,20,10", "--optimizer", "sgd",
                          "--lr-schedule", "step", "--weight-decay", "1e-4", "--batch-size", "50",
                          "--validation-fraction", "0", "--activation", "tanh", "--dtype", "float64",
                          "--json", str(tmp_path / "h.json"), "--no-standardize")
    assert status == 0
    record = json.loads((tmp_path / "h.json").read_text())
    assert record["lr"] == pytest.approx([0.05, 0.025, 0.0125, 0.00625])   # sgd's default lr, halved
    assert record["val_loss"] == [None] * 4
    assert record["settings"]["batch_size"] == 50 and record["settings"]["standardize"] is False


def test_early_stopping_reports_the_kept_epoch(capsys):
    status, out, _ = main(capsys, "train", "--epochs", "40", "--lr", "0.5", "--lr-schedule", "constant",
                          "--early-stopping", "--patience", "2", "--hidden", "32")
    assert status == 0
    assert "early stopping: kept the weights of epoch" in out


def test_npz_and_idx_folder_datasets(tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(120, 28, 28), dtype=np.uint8)
    labels = (images[:, :14].mean(axis=(1, 2)) > images[:, 14:].mean(axis=(1, 2))).astype(np.uint8)
    np.savez(tmp_path / "data.npz", X_train=images[:100], y_train=labels[:100],
             X_test=images[100:], y_test=labels[100:])
    status, out, err = main(capsys, "train", "--dataset", str(tmp_path / "data.npz"), "--epochs", "2")
    assert status == 0, err
    assert "784-100-2" in out and "(20 test rows)" not in out and "20 test rows" in out

    folder = tmp_path / "idx"
    folder.mkdir()
    for name, array in [("train-images-idx3-ubyte.gz", images[:100]), ("train-labels-idx1-ubyte", labels[:100]),
                        ("t10k-images-idx3-ubyte", images[100:]), ("t10k-labels-idx1-ubyte.gz", labels[100:])]:
        write_idx(folder / name, array)
    status, out, err = main(capsys, "train", "--dataset", str(folder), "--epochs", "2", "--hidden", "8")
    assert status == 0, err
    assert "784-8-2" in out       # classes counted from the labels


@pytest.mark.skipif(not _fashion_mnist_installed(), reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_one_epoch_on_a_subset(capsys):
    status, out, _ = main(capsys, "train", "--dataset", "fashion-mnist", "--train-size", "5000",
                          "--epochs", "1", "--hidden", "64", "--threads", "2")
    assert status == 0
    assert "5,000 training / 10,000 test rows" in out
    assert accuracy(out) > 0.6


# ---------------------------------------------------------------- progress display


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_progress_bar_on_a_terminal_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)            # import tqdm raises ImportError
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    reporter = cli._EpochReporter(epochs=2)
    reporter.progress(0, 5, 10)
    reporter.progress(0, 10, 10)
    reporter.close_bar()
    assert "\repoch 1/2 [###############...............] 5/10" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r")                 # the bar is wiped before the epoch line


def test_tqdm_progress_bar_on_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    reporter = cli._EpochReporter(epochs=3)
    reporter.progress(1, 4, 8)
    assert reporter._bar.n == 4 and "epoch 2/3" in reporter._bar.desc
    reporter.close_bar()
    assert reporter._bar is None


def test_no_progress_bar_when_not_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    reporter = cli._EpochReporter(epochs=2)
    reporter.progress(0, 1, 2)
    assert sys.stderr.getvalue() == ""


# ---------------------------------------------------------------- predict and info


def test_info_prints_the_configuration(capsys):
    status, out, _ = main(capsys, "info")
    assert status == 0
    assert "backends" in out and "numpy" in out


def test_predict_with_a_missing_model_exits_1(tmp_path, capsys):
    status, _, err = main(capsys, "predict", str(tmp_path / "nope.npz"))
    assert status == 1
    assert "nope.npz" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize("args", [
    [],
    ["fly"],
    ["train", "--epochs", "-1"],
    ["train", "--epochs", "many"],
    ["train", "--sizes", "64,x,10"],
    ["train", "--sizes", "64,10", "--hidden", "5"],
    ["train", "--optimizer", "rmsprop"],
    ["train", "--lr", "0"],
    ["train", "--momentum", "1"],
    ["train", "--validation-fraction", "1"],
    ["train", "--backend", "fortran"],
    ["predict"],
])
def test_bad_arguments_exit_2(capsys, args):
    status, _, err = main(capsys, *args)
    assert status == 2
    assert "usage:" in err


def test_help_exits_0(capsys):
    status, out, _ = main(capsys, "train", "--help")
    assert status == 0 and "--dataset" in out and "--early-stopping" in out


def test_missing_dataset_folder_exits_1_saying_how_to_get_it(tmp_path):
    result = run_cymlp("train", "--dataset", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "Fashion-MNIST not found" in result.stderr
    assert "apt-get install dataset-fashion-mnist" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_fashion_mnist_exits_1_saying_how_to_get_it(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("CYMLP_DATA", raising=False)
    monkeypatch.setattr(_fashion_mnist, "SYSTEM_DIR", tmp_path / "absent")
    status, _, err = main(capsys, "train", "--dataset", "fashion-mnist")
    assert status == 1
    assert "dataset-fashion-mnist" in err and "CYMLP_DATA" in err


def test_nonexistent_dataset_path_exits_1(capsys, tmp_path):
    status, _, err = main(capsys, "train", "--dataset", str(tmp_path / "data.npz"))
    assert status == 1 and "data.npz" in err


def test_sizes_that_do_not_fit_the_data_exit_1(capsys):
    status, _, err = main(capsys, "train", "--sizes", "784,10")
    assert status == 1
    assert "64 inputs and 10 classes" in err


def test_divergence_exits_1_with_its_message(capsys):
    status, _, err = main(capsys, "train", "--lr", "1e30", "--momentum", "0", "--epochs", "3",
                          "--lr-schedule", "constant", "--backend", "numpy")
    assert status == 1
    assert "diverged" in err and "smaller lr" in err


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX")
def test_ctrl_c_saves_reports_and_exits_130(tmp_path):
    env = subprocess_env()
    child = subprocess.Popen(
        [sys.executable, "-m", "cymlp", "train", "--epochs", "100000", "--hidden", "16",
         "--save", "m.npz", "--json", "h.json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:                  # wait until training is under way
            if line.startswith("epoch"):
                break
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, err
    assert "interrupted after" in out and "test accuracy" in out
    assert (tmp_path / "m.npz").exists()
    assert json.loads((tmp_path / "h.json").read_text())["interrupted"] is True
