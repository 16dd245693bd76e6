"""``cymlp predict`` (a saved model on your own data) and ``cymlp evaluate`` (on a data set's test split).

::

    cymlp predict model.npz --input X.npy --output labels.csv        # one label per input row
    cymlp predict model.npz --input X.csv --output proba.npy --proba # one row of probabilities each
    cymlp evaluate model.npz --dataset fashion-mnist                  # test accuracy and loss

``predict --input`` reads ``.npy``, CSV or IDX files (plain or gzipped; see
:mod:`cymlp._input_rows`) block by block, so the input may be larger than
memory, and writes one prediction per input row: the class label (an
integer: the model's output unit with the largest activation), or with
``--proba`` the output activations, or for a model without a softmax or
sigmoid classifier output its outputs.  A ``.csv`` output has one line per
input row (floats printed with enough digits to read back the same float32
or float64); a ``.npy`` output holds int64 labels or floats of the model's
dtype.  The output is written atomically (a temporary file renamed over it
at the end; an error half way leaves nothing), and only a regular or new
file is ever replaced.

Preprocessing: ``cymlp train`` folds its standardization into the first
layer of the saved model, so a model takes the inputs as ``cymlp train``
read them from its data set: uint8 values (IDX images, uint8 ``.npy``)
divided by 255, anything else as it is (the bundled digits were divided by
16).  ``predict`` converts its input the same way.

The network computes its predictions on blocks of
:data:`cymlp.network.PREDICT_CHUNK_ROWS` rows, aligned as
``Network.predict`` aligns them on a whole array, so that the output is bit
for bit ``net.predict(X)`` (or ``net.predict_proba(X)``) for any
``--chunk-rows``, which only sets how many rows are read at a time.

``predict`` without ``--input`` evaluates on ``--dataset`` as ``evaluate``
does (what ``cymlp predict`` did before ``--input`` existed).
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ._cli_data import CommandError, _check_output_path, add_max_model_bytes, load_dataset
from ._input_rows import open_rows
from ._persistence import write_atomically
from ._typing import FloatArray
from .network import PREDICT_CHUNK_ROWS, Network

OUTPUT_FORMATS = (".csv", ".npy")
NPY_HEADER_BYTES = 128      # a fixed size, rewritten in place with the final row count


def _common_arguments(p: argparse.ArgumentParser) -> None:
    from .cli import _number
    p.add_argument("model", help="a .npz file written by `cymlp train --save` or Network.save")
    p.add_argument("--backend", choices=("cython", "numpy"), default=None)
    p.add_argument("--threads", type=_number(int, 1), default=None)
    add_max_model_bytes(p)


def _dataset_arguments(p: argparse.ArgumentParser, default: str | None) -> None:
    from .cli import _number
    p.add_argument("--dataset", default=default, metavar="NAME|PATH",
                   help="evaluate on this data set's test split, as for `cymlp train` (default: digits)")
    p.add_argument("--seed", type=_number(int, 0), default=None,
                   help="digits split seed (default: the seed stored in the model)")


def add_predict_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``predict``: predictions for your own data (or, without ``--input``, ``evaluate``)."""
    from .cli import _number
    p = subparsers.add_parser(
        "predict", help="write a saved model's predictions for your data (--input X --output P)",
        description="Load a model saved by `cymlp train --save` or Network.save and write one "
                    "prediction per row of --input (a .npy, CSV or IDX file, gzipped or not) to "
                    "--output (.csv or .npy): the class label, or the output activations with --proba. "
                    "The input is read in blocks, so it may be larger than memory; uint8 values are "
                    "divided by 255 as `cymlp train` does. Without --input: evaluate on --dataset, "
                    "as `cymlp evaluate`.")
    _common_arguments(p)
    p.add_argument("--input", metavar="X.npy|X.csv|X-idx",
                   help="the examples, one per row: .npy, CSV (numbers separated by commas) or IDX")
    p.add_argument("--output", metavar="P.csv|P.npy",
                   help="write the predictions here (atomically; only a regular file is replaced)")
    p.add_argument("--proba", action="store_true",
                   help="write the output activations (class probabilities) instead of labels")
    p.add_argument("--chunk-rows", type=_number(int, 1), default=PREDICT_CHUNK_ROWS, metavar="N",
                   help=f"rows read at a time (default: {PREDICT_CHUNK_ROWS}); the predictions do not "
                        f"depend on it")
    _dataset_arguments(p, default=None)
    p.set_defaults(func=cmd_predict)
    return p


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``evaluate``: accuracy and loss on a data set's test split."""
    p = subparsers.add_parser(
        "evaluate", help="evaluate a saved model on a data set's test split",
        description="Load a model saved by `cymlp train --save` and print its accuracy and loss "
                    "on the test split of --dataset.")
    _common_arguments(p)
    _dataset_arguments(p, default="digits")
    p.set_defaults(func=cmd_evaluate)
    return p


def _load_model(args: argparse.Namespace) -> Network:
    try:
        return Network.load(args.model, backend=args.backend, n_threads=args.threads,
                            max_bytes=args.max_model_bytes)
    except (ValueError, OSError) as exc:       # a missing or damaged model file: one line, no traceback
        raise CommandError(" ".join(f"cannot load the model: {exc}".split())) from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    net = _load_model(args)
    seed = args.seed if args.seed is not None else net.seed
    name, _, _, X_test, y_test = load_dataset(args.dataset or "digits", net.dtype.name, seed)
    if X_test.shape[1] != net.sizes[0]:
        raise CommandError(f"{args.model} expects {net.sizes[0]} inputs but {name} has "
                           f"{X_test.shape[1]} features")
    with threadpool_limits(limits=args.threads, user_api="blas"):
        accuracy = net.score(X_test, y_test)
        loss = net.loss(X_test, y_test)
    n_correct = int(round(accuracy * len(X_test)))
    print(f"{args.model}: network {'-'.join(map(str, net.sizes))}, {name} test split "
          f"({len(X_test):,} rows)")
    print(f"test accuracy {accuracy:.4f} ({n_correct:,}/{len(X_test):,}), test loss {loss:.4f}; "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if args.input is None:
        if args.output is not None or args.proba:
            raise CommandError("--output and --proba need --input X (the examples to predict)")
        return cmd_evaluate(args)
    if args.dataset is not None or args.seed is not None:
        raise CommandError("give --input (predictions for your data) or --dataset (evaluation on a "
                           "test split, as `cymlp evaluate`), not both")
    if args.output is None:
        raise CommandError("--input needs --output P.csv or P.npy: where to write the predictions")
    kind = os.path.splitext(args.output)[1].lower()
    if kind not in OUTPUT_FORMATS:
        raise CommandError(f"--output {args.output}: name it .csv or .npy (the format to write)")
    _check_output_path("--output", args.output)
    for option, path in (("--input", args.input), ("the model", args.model)):
        if os.path.exists(path) and os.path.realpath(path) == os.path.realpath(args.output):
            raise CommandError(f"--output {args.output} is {option} itself; give another file name")
    t0 = time.perf_counter()
    net = _load_model(args)
    try:
        rows = open_rows(args.input)
    except FileNotFoundError:
        raise CommandError(f"--input {args.input}: no such file") from None
    except OSError as exc:                     # a folder, FIFO or device: the message names --input
        raise CommandError(str(exc)) from None
    except ValueError as exc:                  # the file's contents: the message starts with its path
        raise CommandError(f"--input {exc}") from None
    with rows:
        if rows.n_features is not None and rows.n_features != net.sizes[0]:
            raise CommandError(f"--input {args.input} has {rows.n_features:,} features per row; the model "
                               f"{args.model} takes {net.sizes[0]:,} (its input layer)")
        labels = net.is_classifier and not args.proba
        writer = _NpyWriter if kind == ".npy" else _CsvWriter
        count = [0]

        def write(f: Any) -> None:
            out = writer(f, np.dtype(np.int64) if labels else net.dtype, net.sizes[-1], labels)
            with threadpool_limits(limits=args.threads, user_api="blas"):
                for block in _aligned(rows.blocks(args.chunk_rows, net.dtype), PREDICT_CHUNK_ROWS):
                    out.write(net.predict(block) if labels else net.predict_proba(block))
            out.close()
            count[0] = out.n_rows

        try:
            write_atomically(args.output, write)
        except ValueError as exc:
            raise CommandError(f"--input {exc}") from None
    what = "labels" if labels else ("probabilities" if net.is_classifier else "outputs")
    print(f"wrote {count[0]:,} predictions ({what}) of {args.model} to {args.output}; "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def _aligned(blocks: Iterator[FloatArray], rows: int) -> Iterator[FloatArray]:
    """The rows of ``blocks`` regrouped into blocks of exactly ``rows`` rows (the last one shorter)."""
    pending: list[FloatArray] = []
    held = 0
    for block in blocks:
        while len(block):
            take = block[:rows - held]
            block = block[len(take):]
            pending.append(take)
            held += len(take)
            if held == rows:
                yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, held = [], 0
    if held:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


class _CsvWriter:
    """One line per row: an integer label, or the outputs separated by commas."""

    def __init__(self, f: Any, dtype: np.dtype[Any], n_outputs: int, labels: bool) -> None:
        self.f = f
        # enough significant digits to read back the same float32 (9) or float64 (17)
        self.fmt = "%d" if labels else ("%.9g" if dtype == np.float32 else "%.17g")
        self.n_rows = 0

    def write(self, values: np.ndarray[Any, Any]) -> None:
        np.savetxt(self.f, values, fmt=self.fmt, delimiter=",")
        self.n_rows += len(values)

    def close(self) -> None:
        pass


class _NpyWriter:
    """A ``.npy`` file written block by block; its header gets the row count at the end."""

    def __init__(self, f: Any, dtype: np.dtype[Any], n_outputs: int, labels: bool) -> None:
        self.f = f
        self.dtype = dtype.newbyteorder("<")
        self.tail: tuple[int, ...] = () if labels else (n_outputs,)
        self.n_rows = 0
        f.write(self._header())

    def _header(self) -> bytes:
        """A version 1.0 header of :data:`NPY_HEADER_BYTES` bytes (numpy pads its headers the same way)."""
        header = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                       "shape": (self.n_rows, *self.tail)})
        body = header.ljust(NPY_HEADER_BYTES - 10 - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")

    def write(self, values: np.ndarray[Any, Any]) -> None:
        self.f.write(np.ascontiguousarray(values, dtype=self.dtype).tobytes())
        self.n_rows += len(values)

    def close(self) -> None:
        self.f.seek(0)
        self.f.write(self._header())
        self.f.seek(0, os.SEEK_END)

