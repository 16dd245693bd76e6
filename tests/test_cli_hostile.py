"""``cymlp`` never prints a traceback for the hostile inputs tried here (issue 21).

Each case runs the command line in this process (an exception escaping
``cli.main`` fails the test, as a traceback would show one), then asserts exit
status 1, one line on stderr that starts ``cymlp COMMAND: error:``, and the
words that say what went wrong.  A few cases also run as a real process
(``python -m cymlp``, slow) to check what a user sees.

Also here: ``--resume`` treats the settings a model file carries as untrusted
input (issue 21, item 3): they are parsed by the ``train`` parser itself.
"""

import json
import os
import stat
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import pytest
from _helpers import call_within, subprocess_env

from cymlp import Network, cli

LIMIT_S = 20


def run(capsys, *argv):
    """``cymlp ARGV`` in this process: (exit status, stdout, stderr).

    In a daemon thread with a time limit: if a regression blocks on a FIFO named in ``argv``,
    its write end is opened to release the reader and the test fails instead of hanging.
    """
    argv = [str(a) for a in argv]
    fifos = [a for a in argv if os.path.lexists(a) and stat.S_ISFIFO(os.lstat(a).st_mode)]
    outcome = call_within(lambda: cli.main(argv), LIMIT_S, f"cymlp {' '.join(argv)} blocked for {LIMIT_S} s",
                          fifos)
    if "error" in outcome:
        raise outcome["error"]
    out, err = capsys.readouterr()
    return outcome["result"], out, err


def assert_one_line_error(status, err, command, *needles):
    assert status == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cymlp {command}: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A model saved by ``cymlp train --save`` (with its settings in meta["cli"])."""
    path = tmp_path_factory.mktemp("run") / "run.npz"
    assert cli.main(["train", "--epochs", "1", "--hidden", "8", "--train-size", "200", "-q",
                     "--no-progress", "--save", str(path)]) == 0
    return path


def with_saved_settings(saved_run, folder, **changes):
    """A copy of ``saved_run`` whose meta["cli"] has ``changes`` (or is ``changes["cli"]``)."""
    net = Network.load(saved_run)
    if "cli" in changes:
        net.training_state_.meta["cli"] = changes["cli"]
    else:
        net.training_state_.meta["cli"].update(changes)
    path = folder / "changed.npz"
    net.save(path)
    return path


# ---------------------------------------------------------------- --resume: the saved settings

BAD_SETTINGS = {
    "a word for a rate": (dict(lr="abc"), "--lr"),
    "a negative train size": (dict(train_size=-5), "--train-size"),
    "a fractional batch": (dict(batch_size=1.5), "--batch-size"),
    "'no' for a switch": (dict(nesterov="no"), "--nesterov"),
    "'yes' for standardize": (dict(standardize="yes"), "--standardize"),
    "an unknown optimizer": (dict(optimizer="foo"), "--optimizer"),
    "an unknown schedule": (dict(lr_schedule="warp"), "--lr-schedule"),
    "an infinite rate": (dict(lr=float("inf")), "--lr"),
    "a list": (dict(epochs=[1, 2]), "--epochs"),
    "true for a count": (dict(patience=True), "--patience"),
    "a zero patience": (dict(patience=0), "--patience"),
    "momentum 5": (dict(momentum=5.0), "--momentum"),
    "a fraction of 1.5": (dict(validation_fraction=1.5), "--validation-fraction"),
    "an unknown class weight": (dict(class_weight="bogus"), "--class-weight"),
    "a negative clip norm": (dict(clip_norm=-1.0), "--clip-norm"),
    "a negative seed": (dict(seed=-3), "--seed"),
    "settings that are not a mapping": (dict(cli=["lr", 1]), "not a mapping"),
}


@pytest.mark.parametrize("case", BAD_SETTINGS, ids=list(BAD_SETTINGS))
def test_resume_parses_the_saved_settings_as_the_command_line(saved_run, tmp_path, capsys, case):
    changes, needle = BAD_SETTINGS[case]
    path = with_saved_settings(saved_run, tmp_path, **changes)
    status, out, err = run(capsys, "train", "--resume", path, "--no-progress")
    assert_one_line_error(status, err, "train", f"--resume {path}", needle)
    assert "epoch" not in out


def test_a_setting_given_on_the_command_line_replaces_a_bad_saved_one(saved_run, tmp_path, capsys):
    path = with_saved_settings(saved_run, tmp_path, lr="abc", nesterov="no")
    status, out, err = run(capsys, "train", "--resume", path, "--lr", "0.01", "--nesterov",
                           "--epochs", "1", "--no-progress", "-q")
    assert status == 0, err


def test_saved_values_are_converted_as_typed_values_are(saved_run, tmp_path, capsys):
    """A saved "2" for --epochs is the command line's 2; a saved 0.002 rate stays 0.002."""
    path = with_saved_settings(saved_run, tmp_path, epochs="2", lr=0.002, early_stopping=False)
    status, out, err = run(capsys, "train", "--resume", path, "--no-progress")
    assert status == 0, err
    assert "epoch 3/3" in out and "adam lr 0.002," in out


# ---------------------------------------------------------------- the matrix of hostile inputs


def _corrupt_zip(folder):
    path = folder / "corrupt.npz"
    Network([64, 4, 10], backend="numpy").save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    return path


def _not_a_zip(folder):
    path = folder / "text.npz"
    path.write_text("hello")
    return path


def _fifo(folder):
    path = folder / "fifo.npz"
    os.mkfifo(path)
    return path


def _huge_model(folder):
    path = folder / "huge.npz"
    Network([64, 300, 10], backend="numpy").save(path)        # 22,510 parameters: 90 kB of float32
    return path


MODEL_CASES = {                   # (make the model argument, words the message must hold)
    "missing file": (lambda d: d / "missing.npz", ["missing.npz"]),
    "folder": (lambda d: d, ["folder"]),
    "FIFO": (_fifo, ["FIFO"]),
    "corrupt zip": (_corrupt_zip, ["not a readable cymlp model file"]),
    "not a zip": (_not_a_zip, ["not a zip"]),
}


def model_command(command, model, tmp_path):
    """The argv of a command that loads ``model`` (one of MODEL_COMMANDS)."""
    if command == "export":
        pytest.importorskip("onnx")
    return {"predict": ["predict", model], "evaluate": ["evaluate", model],
            "predict --input": ["predict", model, "--input", tmp_path / "X.npy", "--output", tmp_path / "P.csv"],
            "export": ["export", model, "--onnx", tmp_path / "o.onnx"],
            "train --resume": ["train", "--resume", model, "--no-progress"]}[command]


MODEL_COMMANDS = ["predict", "predict --input", "evaluate", "export", "train --resume"]


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize("case", MODEL_CASES, ids=list(MODEL_CASES))
def test_a_hostile_model_argument_is_one_line(tmp_path, capsys, command, case):
    make, needles = MODEL_CASES[case]
    status, _, err = run(capsys, *model_command(command, make(tmp_path), tmp_path))
    assert_one_line_error(status, err, command.split()[0], *needles)


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_a_model_larger_than_max_model_bytes_is_refused_naming_the_option(tmp_path, capsys, command):
    model = _huge_model(tmp_path)
    status, _, err = run(capsys, *model_command(command, model, tmp_path), "--max-model-bytes", "50kB")
    assert_one_line_error(status, err, command.split()[0], "90,040 bytes", "max_bytes=50,000",
                          "--max-model-bytes")
    status, _, err = run(capsys, "predict", model, "--max-model-bytes", "lots")
    assert status == 2 and "--max-model-bytes" in err          # argparse's usage error


DATASET_CASES = {
    "missing file": (lambda d: d / "missing.npz", "no such file"),
    "FIFO": (_fifo, "FIFO"),
    "not a zip": (_not_a_zip, "not a readable .npz"),
    "corrupt zip": (_corrupt_zip, "missing arrays"),
    "a folder without IDX files": (lambda d: d, "Fashion-MNIST not found"),
}


@pytest.mark.parametrize("case", DATASET_CASES, ids=list(DATASET_CASES))
def test_a_hostile_dataset_never_prints_a_traceback(tmp_path, capsys, case):
    make, needle = DATASET_CASES[case]
    status, out, err = run(capsys, "train", "--dataset", make(tmp_path), "--epochs", "1", "--no-progress")
    assert status == 1 and err.startswith("cymlp train: error: ") and "Traceback" not in err, err
    assert needle in err


@pytest.mark.slow
def test_a_bad_setting_in_a_resumed_model_in_a_real_process(saved_run, tmp_path):
    path = with_saved_settings(saved_run, tmp_path, lr="abc")
    result = _cymlp_process("train", "--resume", path, "--no-progress")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("cymlp train: error: --resume") and result.stderr.count("\n") == 1


def _cymlp_process(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "cymlp", *map(str, argv)], capture_output=True, text=True,
                          env=subprocess_env(), cwd=tempfile.gettempdir(), timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["FIFO model", "corrupt zip", "huge model"])
def test_what_a_user_sees_in_a_real_process(tmp_path, case):
    model = {"FIFO model": _fifo, "corrupt zip": _corrupt_zip, "huge model": _huge_model}[case](tmp_path)
    extra = ["--max-model-bytes", "50kB"] if case == "huge model" else []
    result = _cymlp_process("predict", model, *extra, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("cymlp predict: error: ") and result.stderr.count("\n") == 1


def test_settings_survive_a_json_round_trip_unchanged(saved_run):
    """What --save keeps is plain JSON: the parser gets back what it gave."""
    saved = Network.load(saved_run).training_state_.meta["cli"]
    assert json.loads(json.dumps(saved)) == saved


def test_a_zip_member_that_is_not_npy_is_one_line(tmp_path, capsys):
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.npy", b"\x93NUMPY")
    status, _, err = run(capsys, "predict", path)
    assert_one_line_error(status, err, "predict", "not a valid cymlp model file")


def test_a_network_that_does_not_fit_the_data_is_one_line(tmp_path, capsys):
    Network([5, 4, 3], backend="numpy").save(tmp_path / "m.npz")
    status, _, err = run(capsys, "predict", tmp_path / "m.npz")
    assert_one_line_error(status, err, "predict", "expects 5 inputs")
    np.testing.assert_equal(Network.load(tmp_path / "m.npz").sizes, (5, 4, 3))


def test_a_warning_is_one_line_without_a_source_path(capsys):
    """Issue 21, item 15: on main the raw UserWarning with cymlp/cli.py:NNN and the source line."""
    status, _, err = run(capsys, "train", "--train-size", "20", "--epochs", "1", "--no-progress", "-q")
    assert status == 0
    assert err == "cymlp train: warning: batch_size=32 is larger than the 18 training examples; using batch_size=18\n"
