"""``cymlp export MODEL.npz --onnx OUT.onnx``: a saved model as an ONNX file, for deployment.

Registered by :mod:`cymlp.cli` as a plugin subcommand (``add_parser``).  The
model is loaded as ``cymlp predict`` loads it (a damaged file is one line on
stderr and exit status 1) and converted by :func:`cymlp.onnx_export.network_to_onnx`.
"""

import os

from ._cli_data import CommandError, _check_output_path, add_max_model_bytes
from .onnx_export import DEFAULT_OPSET, MIN_OPSET


def add_parser(subparsers):
    """Register ``export`` as a subcommand of the ``cymlp`` command line."""
    from .cli import _number
    p = subparsers.add_parser(
        "export", help="convert a saved model to ONNX (deploy without Python or cymlp)",
        description="Write a model saved by `cymlp train --save` or Network.save as an ONNX model: "
                    "input X (N, inputs) in the model's dtype, output `output` (N, outputs), the "
                    "output activations, and `label` (N,), their argmax, for classifiers. "
                    "Needs `pip install \"cymlp[onnx]\"`.")
    p.add_argument("model", help="a .npz file written by `cymlp train --save` or Network.save")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx",
                   help="write the ONNX model here (atomically; only a regular file is replaced)")
    p.add_argument("--opset", type=_number(int, MIN_OPSET), default=None, metavar="N",
                   help=f"ONNX opset, {MIN_OPSET} or newer (default: {DEFAULT_OPSET})")
    add_max_model_bytes(p)
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args):
    from .cli import EXIT_OK
    from .network import Network
    from .onnx_export import import_onnx, network_to_onnx

    if os.path.realpath(args.onnx) == os.path.realpath(args.model):
        raise CommandError(f"--onnx {args.onnx} is the model file itself; give another file name")
    _check_output_path("--onnx", args.onnx)     # a folder, FIFO or device: refused before any work
    try:
        import_onnx()
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    try:
        net = Network.load(args.model, max_bytes=args.max_model_bytes)
    except (ValueError, OSError) as exc:       # a missing or damaged model file: one line
        raise CommandError(" ".join(f"cannot load the model: {exc}".split())) from None
    model = network_to_onnx(net, args.onnx, opset=args.opset)
    print(f"wrote {args.onnx}: ONNX opset {model.opset_import[0].version}, network "
          f"{'-'.join(map(str, net.sizes))} {net.activation}/{net.output}, {net.dtype.name}")
    return EXIT_OK
