"""The data side of ``cymlp train`` and ``cymlp predict``: loading ``--dataset``,
checking labels and output paths, and folding input standardization into a network.

:class:`CommandError` lives here (and is re-exported by :mod:`cymlp.cli`) so that
the CLI's helper modules can raise it without importing :mod:`cymlp.cli`.
The data sets ``--dataset`` accepts are described in :mod:`cymlp.cli`.
"""

import argparse
import os
import re

import numpy as np

from . import datasets
from ._files import check_writable, open_regular


class CommandError(Exception):
    """A problem to report as one message and exit status 1."""


_BYTE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
               "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def byte_size(text):
    """An argparse type: a number of bytes such as ``800000000``, ``8GB`` or ``8GiB``; ``none``: no bound."""
    if text.strip().lower() == "none":
        return None
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgt]i?)?b?\s*", text.lower())
    if m is None:
        raise argparse.ArgumentTypeError(f"expected a size in bytes such as 8000000000, 8GB or 8GiB, "
                                         f"or none; got {text!r}")
    value = int(float(m[1]) * _BYTE_UNITS[m[2] or ""])
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte; got {text!r}")
    return value


def add_max_model_bytes(parser):
    """``--max-model-bytes``: the bound ``Network.load(max_bytes=)`` puts on a model file."""
    from ._persistence import DEFAULT_MAX_MODEL_BYTES
    parser.add_argument("--max-model-bytes", type=byte_size, default=DEFAULT_MAX_MODEL_BYTES,
                        metavar="SIZE",
                        help="refuse a model file whose network (with its training state) needs more "
                             "memory than this, before allocating it, e.g. 16GiB or none "
                             f"(default: {DEFAULT_MAX_MODEL_BYTES >> 30} GiB)")


def load_dataset(spec, dtype, seed):
    """Load ``--dataset``: returns ``(name, X_train, y_train, X_test, y_test)``."""
    if spec == "digits":
        X_train, y_train, X_test, y_test = datasets.load_digits(
            dtype=dtype, return_split=True, seed=0 if seed is None else seed)
        return "digits", X_train, y_train, X_test, y_test
    if spec in ("fashion-mnist", "fashion_mnist", "fmnist"):
        return ("fashion-mnist",) + tuple(datasets.load_fashion_mnist(dtype=dtype))
    if os.path.isdir(spec):
        return (spec,) + tuple(datasets.load_fashion_mnist(spec, dtype=dtype))
    if not os.path.exists(spec):
        raise FileNotFoundError(f"--dataset {spec!r}: no such file or folder; use digits, fashion-mnist, "
                                f"a folder of IDX files or an .npz with X_train, y_train, X_test, y_test")
    if spec.endswith(".npz"):
        return (spec,) + _load_npz(spec, dtype)
    raise CommandError(f"--dataset {spec!r} is neither a folder of IDX files nor an .npz file")


def _load_npz(path, dtype):
    try:
        with open_regular(path, "--dataset") as f, np.load(f, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("X_train", "y_train", "X_test", "y_test") if key in data}
    except OSError:
        raise                     # missing, a folder, a FIFO...: the message says so
    except Exception as exc:  # a damaged archive raises BadZipFile, zlib.error, TokenError, MemoryError...
        raise CommandError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    missing = {"X_train", "y_train", "X_test", "y_test"} - set(arrays)
    if missing:
        raise CommandError(f"{path}: missing arrays {', '.join(sorted(missing))}; the .npz needs "
                           f"X_train, y_train, X_test and y_test")
    out = []
    for part in ("train", "test"):
        X, y = arrays[f"X_{part}"], arrays[f"y_{part}"]
        if X.ndim < 2 or y.ndim != 1 or len(X) != len(y):
            raise CommandError(f"{path}: X_{part} must have one example per row and y_{part} one label "
                               f"per row; got shapes {X.shape} and {y.shape}")
        if y.dtype.kind not in "iu":
            raise CommandError(f"{path}: y_{part} must hold integer class labels, got {y.dtype}")
        if X.dtype.kind not in "biuf":
            raise CommandError(f"{path}: X_{part} must hold real numbers (bool, integer or float), "
                               f"got {X.dtype}")
        if len(X) == 0 or X[0].size == 0:
            raise CommandError(f"{path}: X_{part} is empty (shape {X.shape}); each split needs at least "
                               f"one row and one feature")
        scale = X.dtype == np.uint8
        X = X.reshape(len(X), -1).astype(dtype)
        if scale:
            X /= 255
        out += [X, y.astype(np.int64)]
    if out[0].shape[1] != out[2].shape[1]:
        raise CommandError(f"{path}: X_train has {out[0].shape[1]} features per row, X_test {out[2].shape[1]}")
    return tuple(out)


# More output units than this is almost always a labelling mistake (e.g. ids used as labels).
MAX_CLASSES = 10_000


def _n_classes(y_train, *other_labels):
    """The number of classes k, given labels 0..k-1; CommandError for labels the CLI cannot train on."""
    label_arrays = (y_train, *other_labels)
    low = min(int(y.min()) for y in label_arrays)
    if low < 0:
        raise CommandError(f"class labels must be 0..k-1; found {low}")
    high = max(int(y.max()) for y in label_arrays)
    if high >= MAX_CLASSES:
        raise CommandError(f"class labels must be 0..k-1 with k at most {MAX_CLASSES:,} (one output unit "
                           f"per class); found the label {high:,}. Map your labels to 0..k-1 first, "
                           f"e.g. with numpy.unique(y, return_inverse=True)")
    if len(np.unique(y_train)) < 2:
        raise CommandError(f"the training labels hold a single class ({int(y_train[0])}); a classifier "
                           f"needs examples of at least two classes: check the data set's y_train")
    return high + 1


def _check_output_path(option, path):
    """Fail before training, not after, when ``path`` cannot be written."""
    try:
        target = check_writable(path)        # a folder, FIFO, device (or a link to one): refused
    except OSError as exc:
        raise CommandError(f"{option} {path}: {exc}") from None
    folder = os.path.dirname(target)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"{option} {path}: the folder {folder} is not writable")


def column_mean_std(X, block_rows=2048):
    """Per-column mean and standard deviation of X in float64, without a float64 copy of X.

    Two passes, the second over blocks of rows: ``X.std(axis=0, dtype=np.float64)``
    builds the whole float64 difference array (1.16 s for Fashion-MNIST's training
    split; this takes 0.15 s, equal to 1e-13).
    """
    mean = X.mean(axis=0, dtype=np.float64)
    squares = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], block_rows):
        diff = X[start:start + block_rows] - mean
        squares += np.einsum("ij,ij->j", diff, diff)
    return mean, np.sqrt(squares / X.shape[0])


def _fold_standardization(net, mean, std):
    """Make ``net`` take raw inputs: z = W (x - mean)/std + b = (W/std) x + (b - W mean/std)."""
    W, b = net.weights[0], net.biases[0]
    W64 = W.astype(np.float64) / std
    b[...] = b.astype(np.float64) - W64 @ mean
    W[...] = W64


def _unfold_standardization(net, mean, std):
    """The inverse of :func:`_fold_standardization` (to rounding): back to standardized inputs."""
    W, b = net.weights[0], net.biases[0]
    W64 = W.astype(np.float64) * std
    b[...] = b.astype(np.float64) + W64 @ (mean / std)
    W[...] = W64
