"""``cymlp train --dataset F.npz`` with hostile or mistaken data: one clear line, exit 1, no traceback.

Each case is checked before any training starts (issue 11, case 10).
"""

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cymlp import _cli_data, cli


def _train(capsys, *args):
    status = cli.main(["train", "--epochs", "1", "--hidden", "4", "--no-progress", *args])
    out, err = capsys.readouterr()
    return status, out, err


def _write_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = dict(X_train=rng.random((40, 5)), y_train=np.arange(40) % 3,
                  X_test=rng.random((10, 5)), y_test=np.arange(10) % 3)
    arrays.update(overrides)
    np.savez(path, **arrays)
    return str(path)


def _assert_one_line_error(status, err, *needles):
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_a_sane_npz_trains(tmp_path, capsys):
    status, out, err = _train(capsys, "--dataset", _write_npz(tmp_path / "ok.npz"))
    assert status == 0, err
    assert "test accuracy" in out


def test_a_huge_label_is_refused_before_allocating(tmp_path, capsys):
    y = np.arange(40) % 3
    y[7] = 10**12
    status, _, err = _train(capsys, "--dataset", _write_npz(tmp_path / "d.npz", y_train=y))
    _assert_one_line_error(status, err, "0..k-1", "1,000,000,000,000", "numpy.unique")


def test_a_million_classes_is_refused_not_built(tmp_path, capsys):
    y = np.arange(40) % 3
    y[0] = 10**6
    status, _, err = _train(capsys, "--dataset", _write_npz(tmp_path / "d.npz", y_train=y))
    _assert_one_line_error(status, err, f"at most {_cli_data.MAX_CLASSES:,}")


@pytest.mark.parametrize("damage", ["truncated", "not_a_zip", "corrupt_member", "bad_header"])
def test_a_damaged_npz_gives_one_line(tmp_path, capsys, damage):
    path = _write_npz(tmp_path / "d.npz")
    data = bytearray(Path(path).read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "not_a_zip":
        data = bytearray(b"this is not a zip file" * 10)
    elif damage == "corrupt_member":
        compressed = tmp_path / "c.npz"
        rng = np.random.default_rng(0)
        np.savez_compressed(compressed, X_train=rng.random((40, 5)), y_train=np.arange(40) % 3,
                            X_test=rng.random((10, 5)), y_test=np.arange(10) % 3)
        data = bytearray(compressed.read_bytes())
        for offset in range(200, 260):        # inside the first member's deflated bytes
            data[offset] ^= 0xFF
    elif damage == "bad_header":
        start = data.index(b"{'descr'")
        end = data.index(b"}", start)
        data[end] = ord(" ")                   # the .npy header dict loses its closing brace
    Path(path).write_bytes(bytes(data))
    status, _, err = _train(capsys, "--dataset", path)
    _assert_one_line_error(status, err, "d.npz")


@pytest.mark.parametrize("X", [np.ones((40, 5), complex), np.zeros((40, 5), "datetime64[s]"),
                               np.zeros((40, 5), "timedelta64[s]")])
def test_non_real_inputs_are_refused(tmp_path, capsys, X):
    status, _, err = _train(capsys, "--dataset", _write_npz(tmp_path / "d.npz", X_train=X))
    _assert_one_line_error(status, err, "X_train", "real numbers")


@pytest.mark.parametrize("part", ["train", "test"])
def test_an_empty_split_is_refused(tmp_path, capsys, part):
    empty = {f"X_{part}": np.zeros((0, 5)), f"y_{part}": np.zeros(0, int)}
    status, _, err = _train(capsys, "--dataset", _write_npz(tmp_path / "d.npz", **empty))
    _assert_one_line_error(status, err, f"X_{part} is empty")


def test_single_class_training_data_is_explained(tmp_path, capsys):
    status, _, err = _train(capsys, "--dataset", _write_npz(tmp_path / "d.npz", y_train=np.zeros(40, int)))
    _assert_one_line_error(status, err, "single class", "at least two", "y_train")


@pytest.mark.parametrize("option", ["--save", "--json", "--plot"])
def test_an_unwritable_output_path_fails_before_training(tmp_path, capsys, option):
    target = str(tmp_path / "missing" / "out.file")
    status, out, err = _train(capsys, "--dataset", _write_npz(tmp_path / "d.npz"), option, target)
    _assert_one_line_error(status, err, option, "does not exist")
    assert "epoch" not in out                  # nothing was trained


def test_an_output_path_that_is_a_folder_fails_before_training(tmp_path, capsys):
    status, out, err = _train(capsys, "--save", str(tmp_path))
    _assert_one_line_error(status, err, "is a folder")
    assert "epoch" not in out


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root can write anywhere; needs POSIX permissions")
def test_a_read_only_folder_fails_before_training(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        status, _, err = _train(capsys, "--save", str(folder / "m.npz"))
    finally:
        folder.chmod(0o700)
    _assert_one_line_error(status, err, "not writable")


def test_zip_without_the_arrays_names_them(tmp_path, capsys):
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    status, _, err = _train(capsys, "--dataset", str(path))
    _assert_one_line_error(status, err, "X_train")
