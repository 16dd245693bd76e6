"""``cymlp predict --input X --output P``: predictions for your own data, and ``cymlp evaluate``.

The output must be what ``Network.predict`` / ``predict_proba`` return on the
whole input (labels exactly; floats exactly, since CSV prints enough digits to
read the same float back), for every input format, whatever the number of rows
read at a time, and for a model trained with standardization (folded into its
first layer).  Every mistake is one line on stderr, exit status 1, and leaves
any existing output file as it was.
"""

import gzip
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

import cymlp
from cymlp import _input_rows, cli
from cymlp.datasets import load_digits, write_idx
from cymlp.network import PREDICT_CHUNK_ROWS


def run(capsys, *args):
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(status, err, *needles):
    assert status == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A model saved by `cymlp train` on the digits, standardized (the transform is in its first layer)."""
    path = tmp_path_factory.mktemp("model") / "digits.npz"
    status = cli.main(["train", "--epochs", "2", "--hidden", "16", "--threads", "1", "-q", "--save",
                       str(path)])
    assert status == 0
    return path


@pytest.fixture(scope="module")
def digits_X():
    return load_digits(return_split=True, dtype="float32")[2]      # the test split, in [0, 1]


def save_npy(path, array):
    with open(path, "wb") as f:          # np.save(name) would append .npy to other names
        np.save(f, array)


def write_input(path, X, fmt):
    """Write X as ``fmt``; returns the path and the X the model should see (uint8 formats are /255)."""
    if fmt == "npy":
        save_npy(path, X)
    elif fmt == "npy-fortran":
        save_npy(path, np.asfortranarray(X))
    elif fmt == "npy-3d":                    # images: each example flattened row by row
        save_npy(path, X.reshape(len(X), 8, -1))
    elif fmt == "npy-uint8":
        X = np.round(X * 255).astype(np.uint8)
        save_npy(path, X)
        X = X.astype(np.float32) / 255
    elif fmt in ("csv", "csv-header", "csv.gz"):
        text = "\n".join(",".join(f"{v:.9g}" for v in row) for row in X) + "\n"
        if fmt == "csv-header":
            text = ",".join(f"x{i}" for i in range(X.shape[1])) + "\n# a comment\n\n" + text
        data = text.encode()
        path.write_bytes(gzip.compress(data) if fmt == "csv.gz" else data)
    elif fmt in ("idx", "idx.gz"):
        X8 = np.round(X * 255).astype(np.uint8)
        images = X8.reshape(len(X8), 8, -1) if X8.shape[1] % 8 == 0 else X8
        write_idx(str(path) + (".gz" if fmt == "idx.gz" else ""), images)
        if fmt == "idx.gz":
            os.replace(str(path) + ".gz", path)      # the name does not matter: the content is sniffed
        X = X8.astype(np.float32) / 255
    return path, X


FORMATS = ["npy", "npy-fortran", "npy-3d", "npy-uint8", "csv", "csv-header", "csv.gz", "idx", "idx.gz"]


def read_output(path, proba, dtype):
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if proba:
        return np.loadtxt(path, delimiter=",", ndmin=2).astype(dtype)
    return np.loadtxt(path, dtype=np.int64, ndmin=1)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("output", ["csv", "npy"])
@pytest.mark.parametrize("proba", [False, True])
def test_predictions_equal_network_predict_for_every_format(tmp_path, capsys, digits_model, digits_X,
                                                            fmt, output, proba):
    path, X = write_input(tmp_path / f"X.{fmt}", digits_X, fmt)
    out = tmp_path / f"P.{output}"
    status, stdout, err = run(capsys, "predict", digits_model, "--input", path, "--output", out,
                              "--chunk-rows", 7, *(["--proba"] if proba else []))   # 359 rows: 52 reads
    assert status == 0, err
    assert f"wrote {len(X)} predictions" in stdout
    net = cymlp.Network.load(digits_model)
    expected = net.predict_proba(X) if proba else net.predict(X)
    got = read_output(out, proba, net.dtype)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if output == "npy":
        assert got.dtype == (net.dtype if proba else np.int64)


def test_standardization_travels_in_the_model(tmp_path, capsys, digits_model, digits_X):
    """Raw inputs in, the accuracy `cymlp evaluate` reports out: the training statistics are in the weights."""
    X_train, y_train, X_test, y_test = load_digits(return_split=True, dtype="float32")
    assert np.abs(X_train.mean(axis=0)).max() > 0.1        # the raw inputs are far from standardized
    path, _ = write_input(tmp_path / "X.csv", X_test, "csv")
    status, _, err = run(capsys, "predict", digits_model, "--input", path, "--output", tmp_path / "P.npy")
    assert status == 0, err
    labels = np.load(tmp_path / "P.npy")
    status, evaluated, _ = run(capsys, "evaluate", digits_model)
    n_correct = int((labels == y_test).sum())
    assert f"({n_correct}/{len(y_test)})" in evaluated


@pytest.mark.parametrize("fmt", ["npy", "csv", "idx"])
@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_blocks_larger_than_the_network_chunk_give_the_bits_of_one_predict_call(
        tmp_path, capsys, fmt, backend):
    """More rows than Network.predict's own chunk, read 1,000 at a time: still equal bit for bit."""
    if backend not in cymlp.available_backends():
        pytest.skip("the compiled extension is not built")
    rng = np.random.default_rng(0)
    net = cymlp.Network([5, 8, 3], dtype="float32", backend=backend, seed=1)
    model = tmp_path / "net.npz"
    net.save(model)
    X = rng.random((2 * PREDICT_CHUNK_ROWS + 5, 5)).astype(np.float32)
    path, X = write_input(tmp_path / f"X.{fmt}", X, fmt)
    out = tmp_path / "P.npy"
    status, _, err = run(capsys, "predict", model, "--input", path, "--output", out, "--proba",
                         "--chunk-rows", 1000, "--backend", backend)
    assert status == 0, err
    np.testing.assert_array_equal(np.load(out), net.predict_proba(X))


def test_a_regression_model_writes_its_outputs(tmp_path, capsys):
    net = cymlp.Network([3, 4, 2], output="identity", loss="quadratic", dtype="float64", seed=0)
    net.save(tmp_path / "reg.npz")
    X = np.random.default_rng(0).standard_normal((11, 3))
    path, _ = write_input(tmp_path / "X.csv", X, "csv")
    status, out, err = run(capsys, "predict", tmp_path / "reg.npz", "--input", path, "--output",
                           tmp_path / "P.csv")
    assert status == 0 and "(outputs)" in out, err
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "P.csv", delimiter=","),
                                  net.predict(np.loadtxt(path, delimiter=",")))


@pytest.mark.parametrize("fmt", ["npy", "csv", "idx.gz"])
def test_the_input_is_read_in_blocks_of_the_chunk_size(tmp_path, digits_X, fmt):
    path, X = write_input(tmp_path / f"X.{fmt}", digits_X, fmt)
    with _input_rows.open_rows(path) as rows:
        blocks = list(rows.blocks(50, np.dtype(np.float32)))
        assert rows.n_rows == len(X) and rows.n_features == 64
        if fmt == "npy":
            assert isinstance(rows._array, np.memmap)        # read from disk block by block
    assert [len(b) for b in blocks] == [50] * 7 + [9]
    np.testing.assert_array_equal(np.concatenate(blocks), X)


# ---------------------------------------------------------------- mistakes: one line, exit 1


def test_wrong_feature_count(tmp_path, capsys, digits_model):
    np.save(tmp_path / "X.npy", np.zeros((4, 10), np.float32))
    status, _, err = run(capsys, "predict", digits_model, "--input", tmp_path / "X.npy", "--output",
                         tmp_path / "P.csv")
    one_line_error(status, err, "10 features", "takes 64")
    assert not (tmp_path / "P.csv").exists()


@pytest.mark.parametrize("content, needles", [
    ("1,2\n3,abc\n", ["line 2, column 2", "'abc' is not a number"]),
    ("1,2\n\n# note\n3,4,5\n", ["line 4 has 3 values", "the first row 2"]),
    ("1,2\n3,nan\n", ["row 2 holds NaN"]),
    ("1,2\n3,\n", ["line 2, column 2", "'' is not a number"]),
])
def test_bad_csv_names_the_line(tmp_path, capsys, content, needles):
    net = cymlp.Network([2, 3, 2], seed=0)
    net.save(tmp_path / "m.npz")
    (tmp_path / "X.csv").write_text(content)
    status, _, err = run(capsys, "predict", tmp_path / "m.npz", "--input", tmp_path / "X.csv",
                         "--output", tmp_path / "P.csv", "--chunk-rows", 1)
    one_line_error(status, err, "X.csv", *needles)


def test_an_error_half_way_leaves_the_old_output(tmp_path, capsys):
    net = cymlp.Network([2, 3, 2], seed=0)
    net.save(tmp_path / "m.npz")
    lines = [f"{i},{i}" for i in range(100)]
    lines[80] = "1,oops"
    (tmp_path / "X.csv").write_text("\n".join(lines))
    (tmp_path / "P.csv").write_text("old\n")
    status, _, err = run(capsys, "predict", tmp_path / "m.npz", "--input", tmp_path / "X.csv",
                         "--output", tmp_path / "P.csv", "--chunk-rows", 7)
    one_line_error(status, err, "line 81")
    assert (tmp_path / "P.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P.csv", "X.csv", "m.npz"]   # no temp file left


def _npy_bytes(array):
    import io
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize("name, data, needle", [
    ("missing.npy", None, "no such file"),
    ("trunc.npy", _npy_bytes(np.zeros((10, 2)))[:-8], "truncated"),
    ("long.npy", _npy_bytes(np.zeros((10, 2))) + b"\0" * 8, "trailing bytes"),
    ("obj.npy", _npy_bytes(np.array([[1, "a"]], dtype=object)), "object"),
    ("flat.npy", _npy_bytes(np.zeros(2)), "one example per row"),
    ("data.npz", b"PK\x03\x04" + b"\0" * 40, "zip archive"),
    ("binary.csv", b"\xff\xfe\x00junk", "not UTF-8"),
    ("trunc-idx", bytes([0, 0, 8, 2, 0, 0, 0, 5, 0, 0, 0, 2]) + b"\0" * 7, "truncated IDX data"),
    ("broken-idx.gz", gzip.compress(bytes([0, 0, 8, 2, 0, 0, 0, 5, 0, 0, 0, 2]) + b"\0" * 10)[:-12],
     "gzip"),
])
def test_damaged_inputs(tmp_path, capsys, name, data, needle):
    net = cymlp.Network([2, 3, 2], seed=0)
    net.save(tmp_path / "m.npz")
    if data is not None:
        (tmp_path / name).write_bytes(data)
    status, _, err = run(capsys, "predict", tmp_path / "m.npz", "--input", tmp_path / name,
                         "--output", tmp_path / "P.npy")
    one_line_error(status, err, name, needle)
    assert not (tmp_path / "P.npy").exists()


def test_a_folder_as_input(tmp_path, capsys, digits_model):
    status, _, err = run(capsys, "predict", digits_model, "--input", tmp_path, "--output", tmp_path / "P.csv")
    one_line_error(status, err, "is a folder")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_input_is_refused_at_once(tmp_path, capsys, digits_model):
    fifo = tmp_path / "X.csv"
    os.mkfifo(fifo)
    result = {}
    thread = threading.Thread(target=lambda: result.update(status=cli.main(
        ["predict", str(digits_model), "--input", str(fifo), "--output", str(tmp_path / "P.csv")])),
        daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():            # unblock the reader so the test process can end
        with open(fifo, "wb"):
            pass
        pytest.fail("cymlp predict blocked on a FIFO input")
    _, err = capsys.readouterr()
    one_line_error(result["status"], err, "not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_output_is_left_alone(tmp_path, capsys, digits_model, digits_X):
    path, _ = write_input(tmp_path / "X.npy", digits_X, "npy")
    fifo = tmp_path / "P.csv"
    os.mkfifo(fifo)
    status, _, err = run(capsys, "predict", digits_model, "--input", path, "--output", fifo)
    one_line_error(status, err, "FIFO")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.parametrize("args, needle", [
    (["--input", "{X}"], "--input needs --output"),
    (["--input", "{X}", "--output", "{dir}/P.txt"], "name it .csv or .npy"),
    (["--input", "{X}", "--output", "{X}"], "is --input itself"),
    (["--input", "{X}", "--output", "{model}"], "name it .csv or .npy"),
    (["--input", "{X}", "--output", "{dir}/P.npy", "--dataset", "digits"], "not both"),
    (["--output", "{dir}/P.npy"], "need --input"),
    (["--proba"], "need --input"),
    (["--input", "{X}", "--output", "{dir}/missing/P.npy"], "does not exist"),
])
def test_option_mistakes(tmp_path, capsys, digits_model, digits_X, args, needle):
    path, _ = write_input(tmp_path / "X.npy", digits_X, "npy")
    names = dict(X=path, dir=tmp_path, model=digits_model)
    status, _, err = run(capsys, "predict", digits_model, *[a.format(**names) for a in args])
    one_line_error(status, err, needle)


def test_the_model_file_is_never_the_output(tmp_path, capsys, digits_X):
    net = cymlp.Network([64, 3, 2], seed=0)
    model = tmp_path / "model.npy"                 # a model file named .npy, given as the output
    net.save(model)
    before = model.read_bytes()
    path, _ = write_input(tmp_path / "X.npy", digits_X, "npy")
    status, _, err = run(capsys, "predict", model, "--input", path, "--output", model)
    one_line_error(status, err, "is the model itself")
    assert model.read_bytes() == before


# ---------------------------------------------------------------- evaluation stays available


def test_predict_without_input_evaluates_as_before(capsys, digits_model):
    status, evaluated, _ = run(capsys, "evaluate", digits_model, "--dataset", "digits")
    assert status == 0 and "test accuracy" in evaluated
    for args in ([], ["--dataset", "digits"]):
        status, predicted, _ = run(capsys, "predict", digits_model, *args)
        assert status == 0
        # the same report, but for the time it took
        assert predicted.rsplit(";", 1)[0] == evaluated.rsplit(";", 1)[0]


# ---------------------------------------------------------------- the README's commands


def _readme_cli_block():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## From the command line"):]
    block = section[section.index("```bash\n") + len("```bash\n"):]
    return [line.split(" #")[0].split() for line in block[:block.index("```")].splitlines() if line.strip()]


def test_the_readme_commands_run(tmp_path, capsys, monkeypatch):
    """README's "From the command line": X is the digits' pixels in [0, 1], as the prose says."""
    monkeypatch.chdir(tmp_path)
    X = load_digits()[0][:25]
    save_npy("X.npy", X)
    np.savetxt("X.csv", X, delimiter=",")
    commands = _readme_cli_block()
    assert [c[:2] for c in commands] == [["cymlp", "train"], ["cymlp", "predict"], ["cymlp", "predict"],
                                         ["cymlp", "evaluate"]]
    for words in commands:
        status, _, err = run(capsys, *words[1:], *(["-q"] if words[1] == "train" else []))
        assert status == 0, (words, err)
    net = cymlp.Network.load("digits.npz")
    np.testing.assert_array_equal(np.loadtxt("labels.csv", dtype=np.int64), net.predict(X))
    np.testing.assert_array_equal(np.load("proba.npy"), net.predict_proba(np.loadtxt("X.csv", delimiter=",")))


def test_rows_are_read_8192_at_a_time_by_default():
    args = cli.build_parser().parse_args(["predict", "m.npz", "--input", "X.npy", "--output", "P.csv"])
    assert args.chunk_rows == PREDICT_CHUNK_ROWS == 8192
