"""Data sets and small preprocessing helpers for cymlp (NumPy only).

Data sets
---------
load_digits
    The UCI "Optical Recognition of Handwritten Digits" test set: 1,797 images
    of 8x8 pixels, 10 classes. A copy ships inside cymlp (``cymlp/data``), so
    it always works offline. Creators E. Alpaydin and C. Kaynak (1998),
    https://doi.org/10.24432/C50P49, license CC BY 4.0; the file was copied
    from scikit-learn's distribution (see ``cymlp/data/README-digits.md``).
load_fashion_mnist
    Zalando's Fashion-MNIST: 60,000 + 10,000 images of 28x28 pixels,
    10 classes, MIT license (https://github.com/zalandoresearch/fashion-mnist).
    Not shipped: found on disk (``$CYMLP_DATA``, Debian's
    ``dataset-fashion-mnist``, or ``path=``), else downloaded once (30 MB),
    checked against SHA-256 checksums and cached in ``~/.cache/cymlp``.
make_random_classification
    Uniform random inputs with random labels, for timing benchmarks only.

Deprecated names (they warn and will be removed in the next release):
``make_classification`` (now ``make_random_classification``: nothing like
scikit-learn's function of that name) and ``train_test_split`` (now
``split_train_test``: it returns ``(X_train, y_train, X_test, y_test)``,
not scikit-learn's ``(X_train, X_test, y_train, y_test)``).

Every loader returns ``(X_train, y_train, X_test, y_test)`` (or ``(X, y)``)
with ``X`` a C-contiguous float array of shape (n_samples, n_features) and
``y`` an int64 array of shape (n_samples,).

File format
-----------
``read_idx`` / ``write_idx`` handle the IDX format of MNIST and Fashion-MNIST
(http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code byte, a byte
with the number of dimensions, one big-endian uint32 per dimension, then the
values in big-endian C order. Files may be gzipped.
"""

import gzip
import math
import os
import warnings
import zlib
from importlib import resources

import numpy as np

from . import _fashion_mnist
from ._files import open_regular, write_atomically

__all__ = [
    "read_idx",
    "write_idx",
    "load_digits",
    "load_fashion_mnist",
    "make_random_classification",
    "scale_to_unit",
    "standardize",
    "split_train_test",
    "one_hot",
]

# IDX type code -> big-endian element type, as stored on disk.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}



# ---------------------------------------------------------------- IDX files


def read_idx(path):
    """Read an IDX file (the MNIST format), gzipped or not.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip is recognised by its magic bytes, not by the name.

    Returns
    -------
    array : ndarray
        C-contiguous, writable, in native byte order, with the shape stored in
        the header and dtype uint8, int8, int16, int32, float32 or float64
        (type codes 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E).

    Raises
    ------
    ValueError
        If the file is not valid IDX (bad magic number, unknown type code,
        truncated header or data, trailing bytes, broken gzip stream); the
        message names the file and the problem.
    """
    path = os.fspath(path)
    with open_regular(path, "IDX file") as file:     # a FIFO or device: OSError, never a hang
        raw = file.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({error})") from None

    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for the 4-byte IDX magic number")
    zero_bytes, type_code, ndim = raw[:2], raw[2], raw[3]
    if zero_bytes != b"\x00\x00":
        raise ValueError(
            f"{path}: not an IDX file: magic number 0x{raw[:4].hex()} does not start "
            "with two zero bytes"
        )
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        raise ValueError(
            f"{path}: unknown IDX type code 0x{type_code:02X} (expected one of {known})"
        )
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")

    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_size} bytes, "
            f"file has {len(raw)}"
        )
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(raw) - header_size
    if found < expected:
        raise ValueError(
            f"{path}: truncated IDX data: shape {shape} of {dtype.newbyteorder('=').name} "
            f"needs {expected} bytes, file has {found}"
        )
    if found > expected:
        raise ValueError(
            f"{path}: {found - expected} trailing bytes after the IDX data of shape {shape} "
            f"({expected} bytes expected)"
        )
    values = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header_size)
    # astype copies: the result is writable and in native byte order.
    return values.astype(dtype.newbyteorder("=")).reshape(shape)


def write_idx(path, array):
    """Write an array as an IDX file, gzipped when `path` ends with ``.gz``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create, or a regular file to replace (atomically; a
        folder, FIFO or device raises ``OSError`` and is left alone).
    array : array_like
        At least 1-D, at most 255 dimensions, each under 2**32, of dtype
        uint8, int8, int16, int32, float32 or float64 (no implicit casting).

    Raises
    ------
    ValueError
        If the dtype or shape cannot be stored as IDX.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        supported = ", ".join(dtype.name for dtype in _IDX_CODES)
        raise ValueError(f"IDX cannot store dtype {array.dtype}; cast to one of: {supported}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, got an array with {array.ndim}")
    if any(n >= 2**32 for n in array.shape):
        raise ValueError(f"IDX dimensions must be below 2**32, got shape {array.shape}")

    header = bytes([0, 0, _IDX_CODES[native], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    path = os.fspath(path)
    if path.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)  # mtime=0: same bytes every run
    write_atomically(path, lambda file: file.write(payload))


# ----------------------------------------------------------------- loaders


def load_digits(*, dtype="float64", scale=True, return_split=False, test_fraction=0.2, seed=0):
    """Load the 8x8 handwritten digits bundled with cymlp (works offline).

    Parameters
    ----------
    dtype : {"float64", "float32"}, default "float64"
        Float type of `X`.
    scale : bool, default True
        Divide the pixel counts (integers 0..16) by 16, giving values in [0, 1].
    return_split : bool, default False
        Return a stratified train/test split instead of the whole set.
    test_fraction, seed
        Passed to `split_train_test` when `return_split` is true.

    Returns
    -------
    X : ndarray of shape (1797, 64), dtype `dtype`
        One image per row, pixels row-major.
    y : ndarray of shape (1797,), int64
        Digit labels 0..9.

    or, with ``return_split=True``, ``(X_train, y_train, X_test, y_test)``.
    """
    dtype = _check_float_dtype(dtype)
    resource = resources.files("cymlp") / "data" / "digits.csv.gz"
    with resource.open("rb") as compressed, gzip.open(compressed, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape != (1797, 65):
        raise ValueError(f"bundled digits.csv.gz has shape {table.shape}, expected (1797, 65)")

    X = table[:, :64].astype(dtype)  # astype gives a fresh C-contiguous array
    y = np.ascontiguousarray(table[:, 64])
    if scale:
        X /= 16
    if return_split:
        return split_train_test(X, y, test_fraction, seed=seed, stratify=True)
    return X, y


def load_fashion_mnist(path=None, *, dtype="float32", scale=True, download=True, base_url=None,
                       progress=True):
    """Load Fashion-MNIST, downloading it once if it is not on disk.

    The four files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally
    with ``.gz``) must sit together in one folder, looked for in this order:

    1. `path`, or its ``fashion-mnist`` subfolder, when `path` is given
       (then nothing else is searched and nothing is downloaded);
    2. ``$CYMLP_DATA``, or its ``fashion-mnist`` subfolder;
    3. ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``);
    4. the download folder: ``$CYMLP_DATA/fashion-mnist`` when ``$CYMLP_DATA``
       is set, else ``$XDG_CACHE_HOME/cymlp/fashion-mnist`` or
       ``~/.cache/cymlp/fashion-mnist``.

    When no folder has them, the missing ``.gz`` files (30 MB) are downloaded
    into the download folder from Zalando's repository, or from `base_url` /
    ``$CYMLP_FASHION_MNIST_URL``.  Each file is kept only if the SHA-256 of its
    uncompressed content matches the published data; it is written to a
    temporary file first and renamed into place, so an interrupted or corrupt
    download leaves nothing behind, and nothing else is ever overwritten.
    Later calls read the cached files without a network request.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Folder holding the files.
    dtype : {"float32", "float64"}, default "float32"
        Float type of the images.
    scale : bool, default True
        Divide the pixels (0..255) by 255, giving values in [0, 1].
    download : bool, default True
        Download the files when they are not found (never when `path` is given).
    base_url : str, optional
        Where the four ``.gz`` files are (a mirror, or a ``file://`` folder);
        default ``$CYMLP_FASHION_MNIST_URL``, else Zalando's repository.
    progress : bool, default True
        Show download progress on stderr (tqdm's bar when tqdm is installed,
        a plain line otherwise); False for silence.

    Returns
    -------
    X_train : ndarray of shape (60000, 784), dtype `dtype`
    y_train : ndarray of shape (60000,), int64, labels 0..9
    X_test : ndarray of shape (10000, 784), dtype `dtype`
    y_test : ndarray of shape (10000,), int64, labels 0..9

    Raises
    ------
    FileNotFoundError
        If no searched folder holds all four files and they could not be
        downloaded (offline, server error, checksum mismatch); the message lists
        the folders, the URL tried and what failed, and how to place the files
        by hand.
    ValueError
        If a file is corrupt or does not hold 28x28 uint8 images / uint8 labels.
    """
    dtype = _check_float_dtype(dtype)
    files = _fashion_mnist.locate(path, download=download, url=base_url, progress=progress)
    X_train, y_train = _read_image_split(files["train_images"], files["train_labels"], dtype, scale)
    X_test, y_test = _read_image_split(files["test_images"], files["test_labels"], dtype, scale)
    return X_train, y_train, X_test, y_test


def _read_image_split(images_path, labels_path, dtype, scale):
    """Read one images/labels pair and check they fit together."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (n, 28, 28), "
            f"got {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (n,), "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    if len(labels) != len(images):
        raise ValueError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: label {labels.max()} outside 0..9")

    X = images.reshape(len(images), -1).astype(dtype)
    if scale:
        X /= 255
    return X, labels.astype(np.int64)


def make_random_classification(n_samples, n_features, n_classes=10, *, seed=0, dtype="float64"):
    """Random inputs with random labels, for timing benchmarks.

    Nothing links `X` to `y`, so no model can beat chance on held-out data;
    use it to measure speed, not accuracy. (Unlike scikit-learn's
    ``make_classification``, there are no informative features.)

    Parameters
    ----------
    n_samples, n_features : int
        Shape of `X`, both >= 1.
    n_classes : int, default 10
        Labels are drawn uniformly from 0..n_classes-1; must be >= 2.
    seed : int, default 0
        Seed of `numpy.random.default_rng`; equal seeds give equal data.
    dtype : {"float64", "float32"}, default "float64"

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype `dtype`
        Uniform in [0, 1).
    y : ndarray of shape (n_samples,), int64
    """
    _check_int("n_samples", n_samples, minimum=1)
    _check_int("n_features", n_features, minimum=1)
    _check_int("n_classes", n_classes, minimum=2)
    dtype = _check_float_dtype(dtype)
    rng = np.random.default_rng(seed)
    X = rng.random((n_samples, n_features), dtype=dtype)
    y = rng.integers(0, n_classes, size=n_samples, dtype=np.int64)
    return X, y


# ----------------------------------------------------------------- helpers


def scale_to_unit(X, *, per_feature=False):
    """Min-max scale `X` to [0, 1].

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        The data to scale.
    per_feature : bool, default False
        False: one minimum and maximum over the whole array, which keeps the
        relative brightness of pixels (right for images). True: each column
        scaled on its own. Constant data (max == min) maps to 0.

    Returns
    -------
    X_scaled : ndarray of shape (n_samples, n_features)
        A new array; float32/float64 inputs keep their dtype, others become float64.
    """
    X = _as_float_2d("X", X)
    if X.size == 0:
        raise ValueError(f"X is empty (shape {X.shape}); nothing to scale")
    axis = 0 if per_feature else None
    low = X.min(axis=axis, keepdims=True)
    span = X.max(axis=axis, keepdims=True) - low
    span[span == 0] = 1  # constant data: (X - low) is already 0
    return (X - low) / span


def standardize(X_train, X_other=None):
    """Shift and scale features to zero mean, unit variance, using `X_train` statistics.

    The mean and standard deviation come from `X_train` only, so test data
    never leaks into the transform. Columns with zero standard deviation are
    only centred.

    Parameters
    ----------
    X_train : array_like of shape (n_train, n_features)
        The training data: the source of the mean and standard deviation.
    X_other : array_like of shape (n_other, n_features), optional
        Data (test/validation) to transform with the training statistics.

    Returns
    -------
    X_train_std : ndarray of shape (n_train, n_features)
    X_other_std : ndarray of shape (n_other, n_features)
        Only when `X_other` is given; then a tuple ``(X_train_std, X_other_std)``
        is returned. float32/float64 inputs keep their dtype, others become float64.
    """
    X_train = _as_float_2d("X_train", X_train)
    if len(X_train) == 0:
        raise ValueError("X_train has no rows; cannot compute mean and standard deviation")
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1
    X_train_std = ((X_train - mean) / std).astype(X_train.dtype, copy=False)
    if X_other is None:
        return X_train_std
    X_other = _as_float_2d("X_other", X_other)
    if X_other.shape[1] != X_train.shape[1]:
        raise ValueError(
            f"X_other has {X_other.shape[1]} features, X_train has {X_train.shape[1]}"
        )
    return X_train_std, ((X_other - mean) / std).astype(X_other.dtype, copy=False)


def split_train_test(X, y, test_fraction=0.2, *, seed=0, stratify=True):
    """Split rows of `X` and `y` at random into a training and a test part.

    Note the order of the result, ``(X_train, y_train, X_test, y_test)``,
    the same as the loaders (scikit-learn's ``train_test_split`` returns
    ``(X_train, X_test, y_train, y_test)``, hence the different name).

    Parameters
    ----------
    X : array_like of shape (n_samples, ...)
        The examples, one per row.
    y : array_like of shape (n_samples,)
        Class labels when `stratify` is true.
    test_fraction : float, default 0.2
        In (0, 1); the test part gets ``round(test_fraction * n_samples)``
        rows, kept between 1 and n_samples - 1.
    seed : int, default 0
        Seed of `numpy.random.default_rng`; equal seeds give equal splits.
    stratify : bool, default True
        Give every class the same share of test rows as in `y` (to within one
        row per class), instead of drawing the test rows from all rows at once.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
        New arrays, rows in random order.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 0 or y.ndim != 1:
        raise ValueError(f"expected X with rows and 1-D y, got shapes {X.shape} and {y.shape}")
    n_samples = len(X)
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} rows but y has {len(y)}")
    if n_samples < 2:
        raise ValueError(f"need at least 2 samples to split, got {n_samples}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")

    rng = np.random.default_rng(seed)
    n_test = min(max(round(test_fraction * n_samples), 1), n_samples - 1)
    if stratify:
        _, class_of_row, class_sizes = np.unique(y, return_inverse=True, return_counts=True)
        # Share n_test among classes by largest remainder, so the total is exact.
        exact_share = class_sizes * (n_test / n_samples)
        test_per_class = np.floor(exact_share).astype(np.int64)
        leftover = n_test - test_per_class.sum()
        test_per_class[np.argsort(test_per_class - exact_share, kind="stable")[:leftover]] += 1
        is_test = np.zeros(n_samples, dtype=bool)
        for k, n_test_k in enumerate(test_per_class):
            rows_k = rng.permutation(np.flatnonzero(class_of_row == k))
            is_test[rows_k[:n_test_k]] = True
        test_rows = rng.permutation(np.flatnonzero(is_test))
        train_rows = rng.permutation(np.flatnonzero(~is_test))
    else:
        order = rng.permutation(n_samples)
        test_rows, train_rows = order[:n_test], order[n_test:]
    return X[train_rows], y[train_rows], X[test_rows], y[test_rows]


def make_classification(n_samples, n_features, n_classes=10, *, seed=0, dtype="float64"):
    """Deprecated: use :func:`make_random_classification` (the same function)."""
    warnings.warn("cymlp.datasets.make_classification is deprecated and will be removed in the "
                  "next release; use make_random_classification (random labels, unlike "
                  "scikit-learn's make_classification)", DeprecationWarning, stacklevel=2)
    return make_random_classification(n_samples, n_features, n_classes, seed=seed, dtype=dtype)


def train_test_split(X, y, test_fraction=0.2, *, seed=0, stratify=True):
    """Deprecated: use :func:`split_train_test` (the same function and order)."""
    warnings.warn("cymlp.datasets.train_test_split is deprecated and will be removed in the next "
                  "release; use split_train_test, which returns the same (X_train, y_train, "
                  "X_test, y_test) (scikit-learn's train_test_split returns X_train, X_test, "
                  "y_train, y_test)", DeprecationWarning, stacklevel=2)
    return split_train_test(X, y, test_fraction, seed=seed, stratify=stratify)


def one_hot(y, n_classes=None, dtype="float64"):
    """Encode integer labels as one-hot rows.

    Parameters
    ----------
    y : array_like of shape (n_samples,)
        Integer labels in 0..n_classes-1.
    n_classes : int, optional
        Number of columns; defaults to ``y.max() + 1``.
    dtype : data-type, default "float64"
        The dtype of the result.

    Returns
    -------
    Y : ndarray of shape (n_samples, n_classes), dtype `dtype`
        ``Y[i, y[i]] == 1``, all else 0.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.size == 0):
        raise ValueError(
            f"y must be a 1-D array of integer labels, got {y.dtype} of shape {y.shape}"
        )
    if n_classes is None:
        n_classes = int(y.max()) + 1 if y.size else 0
    _check_int("n_classes", n_classes, minimum=0)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    Y = np.zeros((len(y), n_classes), dtype=dtype)
    Y[np.arange(len(y)), y] = 1
    return Y


# -------------------------------------------------------------- validation


def _check_float_dtype(dtype):
    """Return `dtype` as np.dtype if it is float32 or float64."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _check_int(name, value, *, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _as_float_2d(name, X):
    """`X` as a 2-D float array (float32/float64 kept, anything else float64)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    return X
