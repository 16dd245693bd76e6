"""ONNX export of a Network (issue 22): ``Network.to_onnx`` and ``cymlp export``, run in onnxruntime.

Every exported model is run by onnxruntime's CPU provider and compared with
the network's own forward pass: float32 to 1e-5, float64 to 1e-12 (relative,
with the same absolute floor for values near 0), labels identical.
"""

import os
import stat

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import cymlp
from cymlp import Network, cli, onnx_export, reference

TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
SIZES = {"no hidden layer": [7, 3], "one hidden layer": [7, 6, 3], "three hidden layers": [7, 6, 5, 4, 3]}


def run(model, X):
    """The outputs of ``model`` (a ModelProto or a path) on ``X``, by onnxruntime: a dict by name."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X})))


def assert_close(actual, desired, dtype):
    assert actual.dtype == np.dtype(dtype) and actual.shape == desired.shape
    np.testing.assert_allclose(actual, desired, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def network(sizes, activation="tanh", output="softmax", dtype="float32", seed=0):
    """A network whose weights are large enough to reach the saturated parts of every activation."""
    loss = {"identity": "quadratic", "exp": "poisson"}.get(output, "cross_entropy")
    net = Network(sizes, activation=activation, output=output, loss=loss, dtype=dtype, seed=seed,
                  backend="numpy")
    # (e^z of the exp output must stay finite in float32 through linear hidden layers)
    net.set_flat_params(net.get_flat_params() * (1 if output == "exp" else 3))
    for b in net.biases:
        b[...] = np.linspace(-1, 1, b.size)
    return net


def inputs(n_in, dtype, n=64, seed=1):
    return (np.random.default_rng(seed).standard_normal((n, n_in)) * 2).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("depth", SIZES)
@pytest.mark.parametrize("output", reference.OUTPUT_ACTIVATIONS)
@pytest.mark.parametrize("activation", reference.HIDDEN_ACTIVATIONS)
def test_every_activation_and_output_runs_in_onnxruntime_as_in_cymlp(activation, output, depth, dtype):
    net = network(SIZES[depth], activation, output, dtype)
    X = inputs(7, dtype)
    result = run(net.to_onnx(), X)
    assert_close(result["output"], net.feedforward(X), dtype)
    if not net.is_classifier:                   # regression: predict is the output itself
        assert list(result) == ["output"]
    else:                                       # 3 softmax/sigmoid outputs: predict is their argmax
        assert list(result) == ["output", "label"] and result["label"].dtype == np.int64
        np.testing.assert_array_equal(result["label"], net.predict(X))


@pytest.mark.parametrize("output", reference.OUTPUT_ACTIVATIONS)
def test_single_output_networks_have_no_label(output):
    net = network([5, 4, 1], "relu", output, "float64")
    X = inputs(5, "float64")
    result = run(net.to_onnx(), X)
    assert list(result) == ["output"]
    assert_close(result["output"], net.feedforward(X), "float64")


def test_the_table_has_one_entry_per_activation_of_the_reference():
    assert set(onnx_export.ACTIVATIONS) == set(reference.HIDDEN_ACTIVATIONS) | set(reference.OUTPUT_ACTIVATIONS)


def test_a_trained_network_gives_the_same_predictions(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 10))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0.5)
    for dtype in TOLERANCE:
        net = Network([10, 16, 8, 3], activation="relu", dtype=dtype, seed=0)
        net.fit(X, y, epochs=5, batch_size=32)
        result = run(net.to_onnx(), X.astype(dtype))
        assert_close(result["output"], net.predict_proba(X), dtype)
        np.testing.assert_array_equal(result["label"], net.predict(X))


def test_model_inputs_outputs_metadata_and_opset():
    net = network([7, 6, 3], "leaky_relu", "softmax", "float64")
    model = net.to_onnx()
    onnx.checker.check_model(model, full_check=True)
    (x,) = model.graph.input
    assert x.name == "X" and x.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    dims = x.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and not dims[0].HasField("dim_value") and dims[1].dim_value == 7
    out, label = model.graph.output
    assert (out.name, label.name) == ("output", "label")
    assert [d.dim_value for d in out.type.tensor_type.shape.dim][1:] == [3]
    assert label.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert model.producer_name == "cymlp" and model.producer_version == cymlp.__version__
    assert [(o.domain, o.version) for o in model.opset_import] == [("", onnx_export.DEFAULT_OPSET)]
    assert model.ir_version == onnx.helper.find_min_ir_version_for(model.opset_import)
    for text in ("[7, 6, 3]", "leaky_relu", "softmax", "cross_entropy", "float64"):
        assert text in model.doc_string
    props = {p.key: p.value for p in model.metadata_props}
    assert props == {"cymlp_sizes": "[7, 6, 3]", "cymlp_activation": "leaky_relu", "cymlp_output": "softmax",
                     "cymlp_loss": "cross_entropy", "cymlp_dtype": "float64"}
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == 2 and all(a.name == "transB" and a.i == 1 for n in gemms for a in n.attribute)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(weights["W0"], net.weights[0])           # (n_out, n_in), as cymlp keeps it


@pytest.mark.parametrize("opset", [onnx_export.MIN_OPSET, 16, onnx_export.DEFAULT_OPSET])
def test_older_opsets_give_the_same_outputs(opset):
    net = network([7, 5, 3], "leaky_relu", "sigmoid", "float64")
    X = inputs(7, "float64")
    model = net.to_onnx(opset=opset)
    assert model.opset_import[0].version == opset
    assert_close(run(model, X)["output"], net.feedforward(X), "float64")


@pytest.mark.parametrize("opset", [12, 10_000, 17.0, "17", True])
def test_a_bad_opset_is_refused(opset):
    with pytest.raises(ValueError, match="opset must be an integer from 13"):
        network([3, 2]).to_onnx(opset=opset)


def test_writing_to_a_path_round_trips_and_keeps_the_mode(tmp_path):
    net = network([7, 5, 3], "relu", "softmax", "float32")
    path = tmp_path / "model.onnx"
    model = net.to_onnx(path)
    assert path.read_bytes() == model.SerializeToString()
    X = inputs(7, "float32")
    assert_close(run(path, X)["output"], net.feedforward(X), "float32")
    os.chmod(path, 0o600)
    network([7, 5, 3], seed=4).to_onnx(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.listdir(tmp_path) == ["model.onnx"]


def test_non_finite_parameters_are_not_exported(tmp_path):
    net = network([3, 2])
    net.biases[0][0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.to_onnx(tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_a_model_too_large_for_protobuf_is_refused_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(onnx_export, "MAX_MODEL_BYTES", 100)
    with pytest.raises(ValueError, match="2 GiB"):
        network([7, 6, 3]).to_onnx()


# ---------------------------------------------------------------- cymlp export


def main(capsys, *args):
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cli_export_writes_the_saved_model(tmp_path, capsys, dtype):
    net = network([7, 6, 4], "sigmoid", "softmax", dtype)
    net.save(tmp_path / "model.npz")
    status, out, err = main(capsys, "export", tmp_path / "model.npz", "--onnx", tmp_path / "model.onnx")
    assert status == 0 and err == ""
    assert "model.onnx" in out and "opset 17" in out and dtype in out
    X = inputs(7, dtype)
    result = run(tmp_path / "model.onnx", X)
    assert_close(result["output"], Network.load(tmp_path / "model.npz").feedforward(X), dtype)
    np.testing.assert_array_equal(result["label"], net.predict(X))


def test_cli_export_opset(tmp_path, capsys):
    network([7, 3]).save(tmp_path / "model.npz")
    status, out, _ = main(capsys, "export", tmp_path / "model.npz", "--onnx", tmp_path / "m.onnx", "--opset", 13)
    assert status == 0 and "opset 13" in out
    assert onnx.load(tmp_path / "m.onnx").opset_import[0].version == 13


def one_line_error(status, err, *fragments):
    assert status == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    one_line_error(*main(capsys, "export", tmp_path / "nope.npz", "--onnx", out)[::2],
                   "cannot load the model", "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    one_line_error(*main(capsys, "export", tmp_path / "bad.npz", "--onnx", out)[::2],
                   "cannot load the model", "bad.npz")
    network([7, 3]).save(tmp_path / "model.npz")
    (tmp_path / "folder").mkdir()
    one_line_error(*main(capsys, "export", tmp_path / "model.npz", "--onnx", tmp_path / "folder")[::2],
                   "is a folder")
    assert sorted(os.listdir(tmp_path)) == ["bad.npz", "folder", "model.npz"]
    assert os.listdir(tmp_path / "folder") == []
    saved = (tmp_path / "model.npz").read_bytes()
    one_line_error(*main(capsys, "export", tmp_path / "model.npz", "--onnx", tmp_path / "model.npz")[::2],
                   "is the model file itself")
    assert (tmp_path / "model.npz").read_bytes() == saved


def test_cli_export_without_onnx_says_what_to_install(tmp_path, capsys, monkeypatch):
    network([7, 3]).save(tmp_path / "model.npz")
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)      # as if not installed
    one_line_error(*main(capsys, "export", tmp_path / "model.npz", "--onnx", tmp_path / "m.onnx")[::2],
                   'pip install "cymlp[onnx]"')
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("args", [["model.npz"], ["model.npz", "--onnx", "m.onnx", "--opset", "12"],
                                  ["model.npz", "--onnx", "m.onnx", "--opset", "x"]])
def test_cli_export_bad_arguments_exit_2(capsys, args):
    status, _, err = main(capsys, "export", *args)
    assert status == 2 and "usage: cymlp export" in err
