"""ONNX export: a trained network as an ONNX model, to deploy where neither Python nor cymlp runs.

``Network.to_onnx`` (this module's :func:`network_to_onnx`), ``cymlp export
MODEL.npz --onnx OUT.onnx`` and, for the scikit-learn estimators, skl2onnx's
``to_onnx`` (see :mod:`cymlp._skl2onnx`) all build the same forward pass out
of standard ONNX operators::

    X (N, sizes[0]) -> Gemm(W^0, b^0, transB=1) -> hidden activation -> ...
                    -> Gemm(W^L, b^L, transB=1) -> output activation -> output (N, sizes[-1])

``W^l`` is stored as cymlp keeps it, (n_out, n_in), so z = a W^T + b is one
``Gemm`` with ``transB=1``; each activation is the entry of :data:`ACTIVATIONS`
for its name (``identity`` adds no node, ``exp``, the Poisson loss's output,
is ``Exp``).  Everything is computed in the network's dtype (float32 or
float64): onnxruntime's CPU provider runs every operator used here in both.

Choices made on purpose:

- **opset 17** (:data:`DEFAULT_OPSET`; ONNX 1.12, 2022), which onnxruntime
  runs since 1.12: recent enough for every runtime in use, old enough for
  most deployed ones.  Every operator used computes the same on float32 and
  float64 since opset 13 (:data:`MIN_OPSET`; later versions only added
  types), so an older runtime can ask for any opset from 13 on (tested).  The
  IR version is the lowest that opset needs (onnx's table), not the newest
  the installed onnx writes, so older runtimes load the file.
- **leaky ReLU** is ``Where(z > 0, z, z * slope)``, the formula of
  :func:`cymlp.reference.activate`: ONNX's ``LeakyRelu`` holds its slope as a
  float32 attribute (0.01 is not 0.01 in float64) and has no float64 kernel
  in onnxruntime before opset 16.
- the model is checked with ``onnx.checker.check_model(full_check=True)``
  (structure and shape inference) before it is returned or written.

``onnx`` is imported only when a model is built: ``pip install "cymlp[onnx]"``
installs it (with onnxruntime and skl2onnx).
"""

import json

import numpy as np

from . import _files, reference

#: The opset of an exported model unless asked otherwise.
DEFAULT_OPSET = 17
#: The oldest opset an export can ask for (every operator used computes the same since).
MIN_OPSET = 13
INPUT_NAME, OUTPUT_NAME, LABEL_NAME = "X", "output", "label"
MAX_MODEL_BYTES = 2**31 - 2**20         # protobuf cannot serialise a message of 2 GiB or more

# One entry per activation name of cymlp.reference (hidden and output): (graph, z) -> the name
# of sigma(z).  A new activation in cymlp.reference needs its line here (a test checks).
ACTIVATIONS = {
    "sigmoid": lambda g, z: g.node("Sigmoid", [z]),
    "tanh": lambda g, z: g.node("Tanh", [z]),
    "relu": lambda g, z: g.node("Relu", [z]),
    "leaky_relu": lambda g, z: g.node("Where", [g.node("Greater", [z, g.const("zero", 0)]), z,
                                                g.node("Mul", [z, g.const("slope", reference.LEAKY_RELU_SLOPE)])]),
    "softmax": lambda g, z: g.node("Softmax", [z], axis=-1),
    "identity": lambda g, z: z,
    "exp": lambda g, z: g.node("Exp", [z]),
}


def import_onnx():
    """The ``onnx`` package, or an ImportError that says how to install it.

    Returns
    -------
    module
        ``onnx``.
    """
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f'ONNX export needs the onnx package ({exc}); install it with '
                          f'`pip install "cymlp[onnx]"` (onnx, onnxruntime and skl2onnx)') from None
    return onnx


class Graph:
    """The nodes and initializers of an ONNX graph under construction.

    Nodes are kept as ``(op_type, inputs, outputs, attributes)`` and
    initializers as ``{name: ndarray}``, so the same code can fill an
    ``onnx.GraphProto`` (:func:`network_to_onnx`) or skl2onnx's container
    (:mod:`cymlp._skl2onnx`).  ``unique_name(base)`` makes fresh names: by
    default ``base``, ``base_1``, ... avoiding ``reserved`` and every name
    given so far.

    Parameters
    ----------
    dtype : numpy dtype
        The float type of the computation (floats given to :meth:`const`).
    unique_name : callable or None
        ``unique_name(base) -> str`` (skl2onnx's scope supplies one); None
        for the graph's own (see above).
    reserved : iterable of str
        Names the graph uses otherwise (its inputs and outputs).
    """

    def __init__(self, dtype, unique_name=None, reserved=()):
        self.dtype = np.dtype(dtype)
        self.nodes = []
        self.initializers = {}
        self._taken = set(reserved)
        self._unique_name = unique_name or self._next_name

    def _next_name(self, base):
        name, i = base, 0
        while name in self._taken:
            i += 1
            name = f"{base}_{i}"
        self._taken.add(name)
        return name

    def const(self, base, value, dtype=None):
        """Add an initializer.

        Parameters
        ----------
        base : str
            The base of its (fresh) name.
        value : array-like
            Its value.
        dtype : numpy dtype or None
            Its dtype (None: the graph's).

        Returns
        -------
        str
            The initializer's name.
        """
        name = self._unique_name(base)
        self.initializers[name] = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        return name

    def node(self, op_type, inputs, out=None, **attributes):
        """Add a node with one output.

        Parameters
        ----------
        op_type : str
            The ONNX operator (``"Gemm"``, ``"Relu"``, ...).
        inputs : sequence of str
            Names of its inputs.
        out : str or None
            Name of its output (None: a fresh name from ``op_type``).
        **attributes
            The operator's attributes.

        Returns
        -------
        str
            The output's name.
        """
        out = out or self._unique_name(op_type.lower())
        self.nodes.append((op_type, list(inputs), [out], attributes))
        return out

    def rename(self, value, name):
        """Make ``value`` appear as ``name``: the last node's output renamed, or an Identity node.

        Parameters
        ----------
        value : str
            The name of a value in the graph.
        name : str
            The name it should have (a graph output's).

        Returns
        -------
        str
            ``name``.
        """
        if self.nodes and self.nodes[-1][2] == [value]:
            self.nodes[-1][2][0] = name
        else:
            self.node("Identity", [value], out=name)
        return name


def add_forward_pass(graph, x, weights, biases, hidden, output):
    """Append the forward pass to ``graph``; return the name of the output activations.

    Parameters
    ----------
    graph : Graph
        The graph to append to.
    x : str
        Name of the input rows, (N, n_in) in ``graph.dtype``.
    weights, biases : sequences of ndarray
        ``weights[l]`` (sizes[l+1], sizes[l]) and ``biases[l]`` (sizes[l+1],),
        as :class:`cymlp.Network` holds them.
    hidden, output : str
        Activation names of the hidden layers and of the output layer.

    Returns
    -------
    str
        The name of the output activations.
    """
    a = x
    for l, (W, b) in enumerate(zip(weights, biases)):
        z = graph.node("Gemm", [a, graph.const(f"W{l}", W), graph.const(f"b{l}", b)], transB=1)
        a = ACTIVATIONS[output if l == len(weights) - 1 else hidden](graph, z)
    return a


def check_opset(opset, onnx):
    """``opset`` (None: :data:`DEFAULT_OPSET`) checked against what cymlp and onnx support."""
    if opset is None:
        return DEFAULT_OPSET
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {newest} (the newest this onnx "
                         f"{onnx.__version__} knows); got {opset!r}")
    return int(opset)


def network_to_onnx(net, path=None, *, opset=None):
    """The forward pass of ``net`` as an ONNX model, written to ``path`` when given.

    Parameters
    ----------
    net : cymlp.Network
        Its parameters must be finite.
    path : str, os.PathLike or None
        Where to write the model (``.onnx``), atomically: a temporary file
        beside it, renamed over it; a symlink is followed.  A folder, FIFO,
        device or socket there is refused (``OSError``) and left as it was.
    opset : int or None
        The ONNX opset, from 13 to the newest the installed onnx knows; None
        for :data:`DEFAULT_OPSET` (17).

    Returns
    -------
    onnx.ModelProto
        Input ``"X"``: shape (N, sizes[0]), the network's dtype (float32 or
        float64), N symbolic.  First output ``"output"``: (N, sizes[-1]) in
        that dtype, the output activations (:meth:`cymlp.Network.feedforward`,
        ``predict_proba``).  For a classifier network (softmax or sigmoid
        outputs, two or more of them) a second output ``"label"``: (N,) int64,
        the argmax (:meth:`cymlp.Network.predict`).  ``producer_name`` is
        ``"cymlp"``, ``producer_version`` its version; the doc string and the
        metadata (``cymlp_sizes``, ``cymlp_activation``, ``cymlp_output``,
        ``cymlp_loss``, ``cymlp_dtype``) describe the network.

    Raises
    ------
    ImportError
        onnx is not installed (``pip install "cymlp[onnx]"``).
    ValueError
        Non-finite parameters, a bad ``opset``, or a model of 2 GiB or more.
    OSError
        ``path`` cannot be written, or is not a regular file.
    """
    onnx = import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    opset = check_opset(opset, onnx)
    if not np.isfinite(net.get_flat_params()).all():
        raise ValueError("refusing to export a network whose parameters contain NaN or infinity")
    if net.n_params * net.dtype.itemsize > MAX_MODEL_BYTES:
        raise ValueError(f"the network has {net.n_params:,} parameters ({net.dtype}), too many for one "
                         f"ONNX file (protobuf's limit is 2 GiB)")
    elem = helper.np_dtype_to_tensor_dtype(net.dtype)
    graph = Graph(net.dtype, reserved=(INPUT_NAME, OUTPUT_NAME, LABEL_NAME))
    out = graph.rename(add_forward_pass(graph, INPUT_NAME, net.weights, net.biases, net.activation,
                                        net.output), OUTPUT_NAME)
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, elem, ["N", net.sizes[-1]])]
    if net.is_classifier:
        graph.node("ArgMax", [out], out=LABEL_NAME, axis=1, keepdims=0)
        outputs.append(helper.make_tensor_value_info(LABEL_NAME, TensorProto.INT64, ["N"]))
    nodes = [helper.make_node(op, inputs, outs, name=f"{outs[0]}_{op}", **attributes)
             for op, inputs, outs, attributes in graph.nodes]
    initializers = [numpy_helper.from_array(array, name) for name, array in graph.initializers.items()]
    proto = helper.make_graph(nodes, "cymlp_network",
                              [helper.make_tensor_value_info(INPUT_NAME, elem, ["N", net.sizes[0]])],
                              outputs, initializers)
    opset_imports = [helper.make_opsetid("", opset)]
    model = helper.make_model(proto, opset_imports=opset_imports, producer_name="cymlp",
                              producer_version=_version(), doc_string=describe(net),
                              ir_version=helper.find_min_ir_version_for(opset_imports))
    helper.set_model_props(model, {"cymlp_sizes": json.dumps(list(net.sizes)),
                                   "cymlp_activation": net.activation, "cymlp_output": net.output,
                                   "cymlp_loss": net.loss_name, "cymlp_dtype": net.dtype.name})
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        write_model(model, path)
    return model


def describe(net):
    """One line about ``net`` for the model's doc string."""
    return (f"cymlp {_version()} Network {list(net.sizes)}: {net.activation} hidden layers, "
            f"{net.output} output, {net.loss_name} loss, {net.dtype.name}. Input X (N, {net.sizes[0]}); "
            f"output (N, {net.sizes[-1]}): the output activations"
            + ("; label (N,): their argmax" if net.is_classifier else ""))


def write_model(model, path):
    """Write ``model`` to ``path`` atomically, replacing only a regular file (see :func:`network_to_onnx`)."""
    data = model.SerializeToString()
    _files.write_atomically(path, lambda f: f.write(data))


def _version():
    from . import __version__
    return __version__
