"""Every path cymlp reads is checked to be a regular file first: a FIFO never blocks (issue 21, item 2).

Each read runs in a daemon thread with a time limit: if the behaviour
regresses and the open blocks on the FIFO, the test opens the FIFO's write end
to release the reader, then fails (it never hangs the suite).
"""

import os

import numpy as np
import pytest
from _helpers import call_within

from cymlp import Network, cli, datasets
from cymlp._dask_tasks import load_shard_files

LIMIT_S = 10


def returns_promptly(call, fifo):
    """Run ``call()``; its exception or result.  Fails (after releasing the reader) if it blocks."""
    return call_within(call, LIMIT_S, f"reading the FIFO {fifo} blocked for {LIMIT_S} s", [fifo])


def _fifo(tmp_path, name="model.npz", link=False):
    path = tmp_path / name
    os.mkfifo(path)
    if link:
        (tmp_path / f"link-{name}").symlink_to(path)
        return path, tmp_path / f"link-{name}"
    return path, path


@pytest.mark.parametrize("link", [False, True], ids=["fifo", "link-to-fifo"])
def test_loading_a_fifo_as_a_model_fails_at_once(tmp_path, link):
    fifo, path = _fifo(tmp_path, link=link)
    outcome = returns_promptly(lambda: Network.load(path), fifo)
    assert isinstance(outcome.get("error"), OSError), outcome
    assert "FIFO" in str(outcome["error"]) and "not a regular file" in str(outcome["error"])


def test_loading_a_folder_or_a_device_fails_at_once(tmp_path):
    with pytest.raises(IsADirectoryError, match="folder"):
        Network.load(tmp_path)
    (tmp_path / "null.npz").symlink_to("/dev/null")          # named, never opened
    with pytest.raises(OSError, match="character device"):
        Network.load(tmp_path / "null.npz")
    with pytest.raises(FileNotFoundError):
        Network.load(tmp_path / "missing.npz")


def test_reading_a_fifo_as_an_idx_file_fails_at_once(tmp_path):
    fifo, path = _fifo(tmp_path, "train-images-idx3-ubyte")
    outcome = returns_promptly(lambda: datasets.read_idx(path), fifo)
    assert isinstance(outcome.get("error"), OSError) and "FIFO" in str(outcome["error"]), outcome


def test_a_fashion_mnist_folder_holding_fifos_fails_at_once(tmp_path):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        os.mkfifo(tmp_path / name)
    outcome = returns_promptly(lambda: datasets.load_fashion_mnist(tmp_path),
                               tmp_path / "train-images-idx3-ubyte")
    assert isinstance(outcome.get("error"), OSError), outcome       # FIFOs are not the data's files


def test_a_shard_file_that_is_a_fifo_fails_at_once(tmp_path):
    fifo, path = _fifo(tmp_path, "X0.npy")
    np.save(tmp_path / "y0.npy", np.zeros(3, np.int64))
    outcome = returns_promptly(lambda: load_shard_files(str(path), str(tmp_path / "y0.npy"), 0), fifo)
    assert isinstance(outcome.get("error"), OSError) and "FIFO" in str(outcome["error"]), outcome


def test_the_client_reads_shard_headers_without_blocking(tmp_path):
    from cymlp._dask_checks import npy_rows as _npy_rows
    fifo, path = _fifo(tmp_path, "X0.npy")
    outcome = returns_promptly(lambda: _npy_rows(path), fifo)
    assert isinstance(outcome.get("error"), ValueError) and "FIFO" in str(outcome["error"]), outcome
    np.save(tmp_path / "X1.npy", np.zeros((7, 2)))
    assert _npy_rows(tmp_path / "X1.npy") == 7


@pytest.mark.parametrize("argv", [
    ["predict", "{fifo}"],
    ["train", "--resume", "{fifo}", "--epochs", "1"],
    ["train", "--dataset", "{fifo}", "--epochs", "1"],
    ["export", "{fifo}", "--onnx", "{tmp}/out.onnx"],
], ids=["predict", "train --resume", "train --dataset", "export"])
def test_the_command_line_reports_a_fifo_in_one_line(tmp_path, capsys, argv):
    if argv[0] == "export":
        pytest.importorskip("onnx")
    fifo, path = _fifo(tmp_path, "data.npz")
    argv = [a.format(fifo=path, tmp=tmp_path) for a in argv]
    outcome = returns_promptly(lambda: cli.main(argv), fifo)
    _, err = capsys.readouterr()
    assert outcome.get("result") == 1, (outcome, err)
    assert len(err.strip().splitlines()) == 1 and "FIFO" in err and "Traceback" not in err, err


def test_train_dataset_a_folder_of_fifos_is_one_line(tmp_path, capsys):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        os.mkfifo(tmp_path / name)
    outcome = returns_promptly(lambda: cli.main(["train", "--dataset", str(tmp_path)]),
                               tmp_path / "train-images-idx3-ubyte")
    _, err = capsys.readouterr()
    assert outcome.get("result") == 1 and err.startswith("cymlp train: error: ") and "Traceback" not in err
