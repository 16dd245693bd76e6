"""skl2onnx converts cymlp.sklearn's estimators (issue 22), and the result runs in onnxruntime.

``skl2onnx.to_onnx(estimator, X[:1])`` after ``import cymlp.sklearn``: labels
identical to ``predict``, probabilities and regression outputs equal to
``predict_proba``/``predict`` to 1e-5 (float32) or 1e-12 (float64), with
skl2onnx's classifier outputs and options.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")

from _helpers import subprocess_env
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cymlp.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}
ACTIVATIONS = ["relu", "logistic", "tanh", "leaky_relu", "identity"]
HIDDEN = {"no hidden layer": (), "one hidden layer": (8,), "two hidden layers": (8, 6)}

rng = np.random.default_rng(0)
X = rng.standard_normal((80, 5))
TARGETS = {
    "binary": rng.integers(0, 2, 80),
    "multiclass": rng.integers(0, 4, 80),
    "strings": np.array(["cat", "dog", "eel"])[rng.integers(0, 3, 80)],
    "booleans": rng.integers(0, 2, 80).astype(bool),
    "integral floats": rng.integers(0, 3, 80) * 2.0 - 1,
    "multilabel": rng.integers(0, 2, (80, 3)),
}


def run(model, X, names=False):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: X})
    return dict(zip([o.name for o in session.get_outputs()], outputs)) if names else outputs


def close(actual, desired, dtype):
    np.testing.assert_allclose(actual, desired, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def labels_equal(onnx_labels, predicted):
    """ONNX labels are int64 (integer, boolean, integral float classes) or strings, as skl2onnx makes them."""
    onnx_labels = np.asarray(onnx_labels)
    assert onnx_labels.dtype == np.int64 or onnx_labels.dtype == object
    if onnx_labels.dtype == object:
        predicted = predicted.astype(str)
    np.testing.assert_array_equal(onnx_labels, predicted)
    assert onnx_labels.shape == predicted.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", TARGETS)
def test_classifier_labels_and_probabilities(target, dtype):
    Xd, y = X.astype(dtype), TARGETS[target]
    clf = MLPClassifier((8,), max_iter=20, random_state=0).fit(Xd, y)
    label, proba = run(skl2onnx.to_onnx(clf, Xd[:1], options={"zipmap": False}), Xd)
    labels_equal(label, clf.predict(Xd))
    assert proba.dtype == dtype and proba.shape == clf.predict_proba(Xd).shape
    close(proba, clf.predict_proba(Xd), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_and_depth(activation, hidden, dtype):
    Xd = X.astype(dtype)
    for y in (TARGETS["binary"], TARGETS["multiclass"]):
        clf = MLPClassifier(HIDDEN[hidden], activation=activation, max_iter=20, random_state=1).fit(Xd, y)
        label, proba = run(skl2onnx.to_onnx(clf, Xd[:1], options={"zipmap": False}), Xd)
        labels_equal(label, clf.predict(Xd))
        close(proba, clf.predict_proba(Xd), dtype)
    reg = MLPRegressor(hidden_layer_sizes=HIDDEN[hidden], activation=activation, max_iter=20,
                       random_state=1).fit(Xd, Xd[:, 0] * 3 + np.sin(Xd[:, 1]))
    (out,) = run(skl2onnx.to_onnx(reg, Xd[:1]), Xd)
    assert out.dtype == dtype and out.shape == (80, 1)                 # skl2onnx's shape for regressors
    close(out[:, 0], reg.predict(Xd), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multi_output_regressor_keeps_its_outputs(dtype):
    Xd = X.astype(dtype)
    Y = np.column_stack([Xd[:, 0] - Xd[:, 1], Xd[:, 2] ** 2, Xd[:, 3]])
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=30, random_state=0).fit(Xd, Y)
    (out,) = run(skl2onnx.to_onnx(reg, Xd[:1]), Xd)
    assert out.shape == (80, 3)
    close(out, reg.predict(Xd), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_poisson_regressor_exports_its_exponential_outputs(solver, dtype):
    Xd = X.astype(dtype)
    counts = np.random.default_rng(1).poisson(np.exp(0.5 * X[:, :2]))      # one and two outputs
    for y in (counts[:, 0], counts):
        reg = MLPRegressor(hidden_layer_sizes=(8,), loss="poisson", solver=solver, max_iter=30,
                           random_state=0)
        reg.fit(Xd, y)
        (out,) = run(skl2onnx.to_onnx(reg, Xd[:1]), Xd)
        assert (out > 0).all()
        close(out[:, 0] if y.ndim == 1 else out, reg.predict(Xd), dtype)


@pytest.mark.parametrize("target", ["binary", "multiclass", "strings", "multilabel"])
def test_zipmap_gives_one_probability_map_per_row(target):
    Xf, y = X.astype(np.float32), TARGETS[target]
    clf = MLPClassifier((8,), max_iter=20, random_state=0).fit(Xf, y)
    outputs = run(skl2onnx.to_onnx(clf, Xf[:1]), Xf, names=True)            # zipmap=True: the default
    assert list(outputs) == ["output_label", "output_probability"]
    labels_equal(outputs["output_label"], clf.predict(Xf))
    keys = clf.classes_.tolist()
    maps = outputs["output_probability"]
    assert len(maps) == 80 and all(list(m) == keys for m in maps)
    close(np.array([[m[k] for k in keys] for m in maps], dtype=np.float32), clf.predict_proba(Xf), np.float32)


def test_zipmap_columns_gives_one_output_per_class():
    Xf = X.astype(np.float32)
    clf = MLPClassifier((8,), max_iter=20, random_state=0).fit(Xf, TARGETS["strings"])
    outputs = run(skl2onnx.to_onnx(clf, Xf[:1], options={"zipmap": "columns"}), Xf, names=True)
    assert list(outputs) == ["output_label", "scat", "sdog", "seel"]           # skl2onnx's column names
    close(np.column_stack([outputs[c] for c in ("scat", "sdog", "seel")]), clf.predict_proba(Xf), np.float32)


def test_zipmap_with_double_input_says_what_to_do():
    clf = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, TARGETS["multiclass"])
    with pytest.raises(ValueError, match="zipmap"):
        skl2onnx.to_onnx(clf, X[:1])


def test_nocl_and_output_class_labels_options():
    clf = MLPClassifier((8,), max_iter=20, random_state=0).fit(X, TARGETS["strings"])
    label, _ = run(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": False, "nocl": True}), X)
    np.testing.assert_array_equal(label, np.searchsorted(clf.classes_, clf.predict(X)))
    label, _, classes = run(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": False, "output_class_labels": True}), X)
    labels_equal(label, clf.predict(X))
    np.testing.assert_array_equal(classes, clf.classes_.astype(object))


def test_other_input_types_are_cast_to_the_networks_dtype():
    clf = MLPClassifier((8,), max_iter=20, random_state=0, dtype="float32").fit(X, TARGETS["multiclass"])
    label, proba = run(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": False}), X)   # float64 input
    assert proba.dtype == np.float64                                 # skl2onnx: the input's float type
    labels_equal(label, clf.predict(X))
    close(proba, clf.predict_proba(X), np.float32)
    Xi = np.round(X * 3).astype(np.int64)
    label, proba = run(skl2onnx.to_onnx(clf, Xi[:1], options={"zipmap": False}), Xi)
    labels_equal(label, clf.predict(Xi))
    close(proba, clf.predict_proba(Xi), np.float32)


def test_a_classifier_fitted_on_one_class():
    clf = MLPClassifier((4,), max_iter=5, random_state=0).fit(X, np.full(80, "only"))
    label, proba = run(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": False}), X)
    labels_equal(label, clf.predict(X))
    close(proba, clf.predict_proba(X), np.float64)


def test_in_a_pipeline():
    Xf = (X * 10 + 3).astype(np.float32)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=30, random_state=0))
    pipe.fit(Xf, TARGETS["strings"])
    label, proba = run(skl2onnx.to_onnx(pipe, Xf[:1], options={"zipmap": False}), Xf)
    labels_equal(label, pipe.predict(Xf))
    close(proba, pipe.predict_proba(Xf), np.float32)


@pytest.mark.parametrize("estimator", [MLPClassifier(), MLPRegressor()], ids=lambda e: type(e).__name__)
def test_an_unfitted_estimator_raises_not_fitted_error(estimator):
    with pytest.raises(NotFittedError):
        skl2onnx.to_onnx(estimator, X[:1])


def test_label_types_follow_skl2onnx():
    # scikit-learn refuses fractional float labels ("continuous"); the converter refuses them too
    from cymlp._skl2onnx import label_array
    for classes, expected, strings in [(np.array([2, 5]), [2, 5], False), (np.array([False, True]), [0, 1], False),
                                       (np.array([-1.0, 3.0]), [-1, 3], False),
                                       (np.array(["a", "b"]), ["a", "b"], True),
                                       (np.array([1, "b"], dtype=object), ["1", "b"], True)]:
        values, is_string = label_array(classes)
        assert values.tolist() == expected and is_string == strings
        assert values.dtype == (object if strings else np.int64)
    with pytest.raises(ValueError, match="not integers"):
        label_array(np.array([0.5, 1.0]))


# ---------------------------------------------------------------- registration

REGISTRATION = """
import sys, warnings
import numpy as np
warnings.simplefilter("ignore")
{first}
import onnxruntime as ort
X = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
clf = cymlp.sklearn.MLPClassifier((5,), max_iter=5).fit(X, np.arange(30) % 3)
model = skl2onnx.to_onnx(clf, X[:1], options={{"zipmap": False}})
label = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {{"X": X}})[0]
assert (label == clf.predict(X)).all()
print("converted")
"""


IMPORTS = {
    "cymlp first": "import cymlp.sklearn\nassert 'skl2onnx' not in sys.modules\nimport skl2onnx",
    "skl2onnx first": "import skl2onnx\nimport cymlp.sklearn",
    # a check whether skl2onnx is installed (as tests/test_docs.py makes) does not use the hook up
    "looked up, then imported": "import cymlp.sklearn, importlib.util\n"
                                "assert importlib.util.find_spec('skl2onnx') is not None\nimport skl2onnx",
}


@pytest.mark.slow
@pytest.mark.parametrize("order", IMPORTS)
def test_registration_works_whichever_is_imported_first(order, tmp_path):
    code = REGISTRATION.format(first=IMPORTS[order])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env=subprocess_env(), timeout=300)
    assert result.returncode == 0 and "converted" in result.stdout, result.stderr


@pytest.mark.slow
def test_importing_cymlp_sklearn_does_not_import_onnx_or_skl2onnx(tmp_path):
    code = textwrap.dedent("""
        import sys
        import cymlp.sklearn
        print(sorted(m for m in ("skl2onnx", "onnx", "onnxruntime") if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env=subprocess_env(), timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr
