"""skl2onnx converters for :mod:`cymlp.sklearn`'s estimators, registered when skl2onnx is imported.

After ``import cymlp.sklearn``, ``skl2onnx.to_onnx(estimator, X[:1])`` converts
a fitted ``MLPClassifier`` or ``MLPRegressor`` (alone or in a Pipeline) as it
converts scikit-learn's own:

- the classifier's outputs are ``label`` and ``probabilities``, with
  skl2onnx's classifier options ``zipmap`` (True: a list of {class:
  probability} maps; False: a tensor (N, n_classes); "columns": one output
  per class), ``output_class_labels`` and ``nocl``.  Labels are int64
  (integer, boolean or integral float classes) or strings, as skl2onnx makes
  them; multilabel classifiers give int64 indicators (N, n_labels).
- the regressor's output ``variable`` is (N, n_outputs), (N, 1) for one
  output (skl2onnx's shape for every regressor); ``loss="poisson"`` ends in
  an ``Exp`` node, as its ``predict`` does.

The graph reproduces ``predict`` and ``predict_proba``: the input is cast to
the network's dtype, the forward pass (:func:`cymlp.onnx_export.add_forward_pass`)
runs in it, labels come from those activations as ``predict`` takes them
(argmax over ``predict_proba``'s columns; a 0.5 threshold per output for
multilabel), and the probabilities are then cast to skl2onnx's output type
(double for double input, else float).  Where scikit-learn's own converter
falls short cymlp's does not: several regression outputs keep their shape,
multilabel works in float64.  ZipMap (``zipmap=True``) takes float only, in
skl2onnx for every classifier: with float64 input pass ``options={"zipmap":
False}`` (or ``"columns"``); cymlp says so instead of making a model that
onnxruntime rejects.

Registration costs ``import cymlp.sklearn`` nothing: importing skl2onnx takes
over a second, so :func:`register_when_imported` registers at once only when
skl2onnx is already imported, and otherwise puts a finder on
``sys.meta_path`` that registers the converters right after skl2onnx's own
``__init__`` has run (and then removes itself).  Nothing happens when
skl2onnx is not installed.
"""

import importlib.util
import numbers
import sys
import warnings

import numpy as np

from .onnx_export import Graph, add_forward_pass

ALIASES = {"classifier": "CymlpMLPClassifier", "regressor": "CymlpMLPRegressor"}
CLASSIFIER_OPTIONS = {"zipmap": [True, False, "columns"], "output_class_labels": [False, True],
                      "nocl": [True, False]}


def register_when_imported(classifier, regressor):
    """Register the converters of ``classifier`` and ``regressor`` (classes) with skl2onnx.

    Now if skl2onnx is imported, else as soon as it is; never imports it.
    """
    if "skl2onnx" in sys.modules:
        _register_or_warn(classifier, regressor)
    elif not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(classifier, regressor))


class _AfterImport:
    """A ``sys.meta_path`` finder that registers the converters once ``import skl2onnx`` has run.

    It stays until skl2onnx is actually executed: a mere ``importlib.util.find_spec("skl2onnx")``
    (a check whether it is installed) must not use it up.
    """

    def __init__(self, classifier, regressor):
        self.classes = (classifier, regressor)
        self._searching = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "skl2onnx" or self._searching:
            return None
        self._searching = True                   # the lookup below must not find us again
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._searching = False
        loader = spec.loader if spec is not None else None
        if loader is not None and hasattr(loader, "exec_module"):
            run = loader.exec_module

            def exec_module(module):
                run(module)
                if self in sys.meta_path:
                    sys.meta_path.remove(self)
                _register_or_warn(*self.classes)
            loader.exec_module = exec_module  # type: ignore[method-assign]  # wrapped: register after the import
        return spec


def _register_or_warn(classifier, regressor):
    try:
        register(classifier, regressor)
    except Exception as exc:       # an incompatible skl2onnx must not break `import skl2onnx`
        warnings.warn(f"cymlp could not register its skl2onnx converters ({type(exc).__name__}: "
                      f"{exc}); skl2onnx will not convert cymlp.sklearn estimators", RuntimeWarning)


def register(classifier, regressor):
    """Register converters, shape calculators and parsers with skl2onnx (imports it)."""
    from skl2onnx import update_registered_converter
    from skl2onnx._parse import _parse_sklearn_classifier, _parse_sklearn_simple_model
    from sklearn.utils.validation import check_is_fitted

    # the parsers run first: an unfitted estimator raises scikit-learn's NotFittedError
    def parse_classifier(scope, model, inputs, custom_parsers=None):
        check_is_fitted(model)
        return _parse_sklearn_classifier(scope, model, inputs, custom_parsers=custom_parsers)

    def parse_regressor(scope, model, inputs, custom_parsers=None):
        check_is_fitted(model)
        return _parse_sklearn_simple_model(scope, model, inputs, custom_parsers=custom_parsers)

    update_registered_converter(classifier, ALIASES["classifier"], classifier_shapes, convert_classifier,
                                parser=parse_classifier, options=CLASSIFIER_OPTIONS)
    update_registered_converter(regressor, ALIASES["regressor"], regressor_shapes, convert_regressor,
                                parser=parse_regressor)


# ---------------------------------------------------------------- shapes and types

def label_array(classes):
    """``classes`` as the label tensor holds them: ``(int64 array, False)`` or ``(str objects, True)``.

    Integer and boolean classes become int64, float classes too when every
    one is an integer (as skl2onnx does); others are strings.
    """
    classes = np.asarray(classes)
    if classes.dtype.kind in "biu":
        return classes.astype(np.int64), False
    if classes.dtype.kind == "f" or (classes.dtype.kind == "O" and all(
            isinstance(c, numbers.Real) for c in classes.tolist())):
        values = classes.astype(np.float64)
        if not (np.isfinite(values).all() and np.array_equal(values, np.round(values))
                and np.abs(values).max() < 2**63):
            raise ValueError(f"cannot convert a classifier with class labels {classes.tolist()[:5]}: ONNX "
                             f"labels are int64 or strings (as in skl2onnx) and these floats are not "
                             f"integers; fit it on integer or string labels")
        return values.astype(np.int64), False
    return np.array([str(c) for c in classes.tolist()], dtype=object), True


def _is_multilabel(estimator):
    # logistic outputs: one for binary y, one per label for multilabel y (multiclass is softmax)
    return estimator.out_activation_ == "logistic" and estimator.n_outputs_ > 1


def _float_type(input_type):
    """skl2onnx's type for the outputs: double for double input, else float."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    return DoubleTensorType if isinstance(input_type, DoubleTensorType) else FloatTensorType


def _check_io(operator, n_outputs):
    from skl2onnx.common.data_types import BooleanTensorType, DoubleTensorType, FloatTensorType, Int64TensorType
    from skl2onnx.common.utils import check_input_and_output_numbers, check_input_and_output_types
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=n_outputs)
    check_input_and_output_types(operator, good_input_types=[
        BooleanTensorType, DoubleTensorType, FloatTensorType, Int64TensorType])


def classifier_shapes(operator):
    """Outputs: label (N,) or (N, n_labels) int64/string, probabilities (N, n_classes) float/double."""
    from skl2onnx.common.data_types import DoubleTensorType, Int64TensorType, StringTensorType
    from skl2onnx.common.utils_classifier import get_label_classes
    _check_io(operator, 2)
    estimator, scope = operator.raw_operator, operator.scope_inst
    input_type = operator.inputs[0].type
    zipmap = scope.get_options(estimator, dict(zipmap=True))["zipmap"]
    if zipmap is True and isinstance(input_type, DoubleTensorType):
        raise ValueError("option zipmap=True needs float (float32) probabilities: ONNX's ZipMap takes no "
                         "double, for any classifier skl2onnx converts. Pass options={'zipmap': False} "
                         "(probabilities as a tensor) or 'columns', or float32 X to to_onnx")
    n = operator.inputs[0].get_first_dimension()
    classes = get_label_classes(scope, estimator)
    multilabel = _is_multilabel(estimator)
    _, strings = label_array(classes)
    label_type = StringTensorType if strings and not multilabel else Int64TensorType
    operator.outputs[0].type = label_type([n, estimator.n_outputs_] if multilabel else [n])
    n_columns = 2 if estimator.n_outputs_ == 1 else estimator.n_outputs_      # predict_proba's columns
    operator.outputs[1].type = _float_type(input_type)([n, n_columns])


def regressor_shapes(operator):
    """Output: (N, n_outputs) float/double."""
    _check_io(operator, 1)
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = _float_type(operator.inputs[0].type)([n, operator.raw_operator.n_outputs_])


# ---------------------------------------------------------------- converters

def convert_classifier(scope, operator, container):
    """label = what ``predict`` returns, probabilities = ``predict_proba``."""
    from skl2onnx.common.utils_classifier import get_label_classes
    estimator = operator.raw_operator
    label, probabilities = operator.outputs
    graph, out = _forward_pass(scope, operator, estimator.network_)
    proba = out
    if estimator.n_outputs_ == 1:          # binary: predict_proba is [1 - p, p]
        proba = graph.node("Concat", [graph.node("Sub", [graph.const("one", 1), out]), out], axis=1)
    if _is_multilabel(estimator):          # predict: 1 where the output exceeds 0.5
        graph.node("Cast", [graph.node("Greater", [out, graph.const("half", 0.5)])],
                   out=label.full_name, to=_tensor_type(np.int64))
    else:                                  # predict: the class of the largest probability
        classes, _ = label_array(get_label_classes(scope, estimator))
        if len(classes) == 1:              # fitted on one class: predict_proba still has 2 columns
            classes = np.repeat(classes, 2)
        index = graph.node("ArgMax", [proba], axis=1, keepdims=0)
        graph.node("Gather", [graph.const("classes", classes, dtype=classes.dtype), index],
                   out=label.full_name, axis=0)
    _finish(graph, proba, probabilities, scope, container)


def convert_regressor(scope, operator, container):
    """variable = ``predict``'s values, as (N, n_outputs)."""
    graph, out = _forward_pass(scope, operator, operator.raw_operator.network_)
    _finish(graph, out, operator.outputs[0], scope, container)


def _tensor_type(dtype):
    from onnx.helper import np_dtype_to_tensor_dtype
    return np_dtype_to_tensor_dtype(np.dtype(dtype))


def _forward_pass(scope, operator, net):
    """A graph holding the input cast to the network's dtype and the forward pass; (graph, output name)."""
    from skl2onnx.common.data_types import guess_proto_type
    graph = Graph(net.dtype, unique_name=scope.get_unique_variable_name)
    x = operator.inputs[0].full_name
    if guess_proto_type(operator.inputs[0].type) != _tensor_type(net.dtype):
        x = graph.node("Cast", [x], to=_tensor_type(net.dtype))
    return graph, add_forward_pass(graph, x, net.weights, net.biases, net.activation, net.output)


def _finish(graph, value, variable, scope, container):
    """Write ``value`` to the output ``variable`` (cast to its type), then the graph into ``container``."""
    from onnx import TensorProto, numpy_helper
    from skl2onnx.common.data_types import guess_proto_type
    wanted = guess_proto_type(variable.type)
    if wanted != _tensor_type(graph.dtype):
        graph.node("Cast", [value], out=variable.full_name, to=wanted)
    else:
        graph.rename(value, variable.full_name)
    for name, array in graph.initializers.items():
        if array.dtype == object:
            container.add_initializer(name, TensorProto.STRING, list(array.shape),
                                      [s.encode("utf-8") for s in array.tolist()])
        else:
            container.add_initializer(name, _tensor_type(array.dtype), list(array.shape),
                                      numpy_helper.from_array(array))
    for op_type, inputs, outputs, attributes in graph.nodes:
        container.add_node(op_type, inputs, outputs, name=scope.get_unique_operator_name(op_type),
                           **attributes)
