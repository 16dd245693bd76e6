"""Checks at the Python boundary.

Everything that reaches a backend has passed through here once: a 2-D,
C-contiguous, finite array of the network's dtype with the right number of
columns.  The compiled kernels rely on it (they run without bounds checks).
Messages say what is wrong and what to do about it.
"""

import numbers
import os
import warnings

import numpy as np

_DTYPES = {"float32": np.float32, "float64": np.float64}


def check_dtype(dtype):
    """Return the numpy dtype for ``"float32"``/``"float64"`` (or the types)."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return np.dtype(name)


def check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_sizes(sizes):
    try:
        sizes = [operator_index(s) for s in sizes]
    except TypeError:
        raise TypeError(f"sizes must be a sequence of positive integers, e.g. [784, 100, 10]; got {sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least 2 layers (inputs and outputs), e.g. [784, 100, 10]; got {sizes}")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"every layer size must be a positive integer; got {sizes}")
    return sizes


def operator_index(value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"expected an integer, got {value!r}")
    return int(value)


def check_positive_int(name, value, minimum=1):
    try:
        value = operator_index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return value


def check_real(name, value, *, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in the given interval."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    bad = not np.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        interval = f" in {lo}, {hi}" if lo and hi else (f" > {low}" if low_open else f" >= {low}") if lo else ""
        raise ValueError(f"{name} must be a finite number{interval}; got {value}")
    return value


def _as_float_array(name, data, dtype):
    """Convert array-likes of numbers to ``dtype``; reject what is not numeric."""
    if isinstance(data, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got a string")
    try:
        arr = np.asarray(data)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {arr.dtype}, which is not a real number type; "
            f"pass integers, booleans or floats (convert text or dates yourself)")
    try:
        out = np.ascontiguousarray(arr, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to {np.dtype(dtype).name}: {exc}") from None
    return out


def check_X(X, n_features, dtype, name="X"):
    """Validate an input matrix: 2-D, at least one row, finite, right width.

    Returns a C-contiguous array of ``dtype`` (a copy only when needed).
    """
    X = _as_float_array(name, X, dtype)
    if X.ndim != 2:
        hint = " (reshape a single example with x.reshape(1, -1))" if X.ndim == 1 else ""
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features); got shape {X.shape}{hint}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has 0 rows; pass at least one example")
    if X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features per row but the network's input layer has "
            f"{n_features}; pass data with {n_features} columns")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinity; clean or impute the data first")
    return X


def check_targets(y, n_rows, n_outputs, dtype, *, loss, output, name="y"):
    """Validate targets; return ``(Y, labels)``.

    ``y`` as 1-D integer labels means classification: ``Y`` is their one-hot
    encoding and ``labels`` the labels.  ``y`` as a 2-D float array is used
    directly as ``Y`` and ``labels`` is None.
    """
    if isinstance(y, (str, bytes)):
        raise TypeError(f"{name} must be an array of labels or targets, got a string")
    arr = np.asarray(y)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype}; pass integer labels or float targets")
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D labels or a 2-D target matrix; got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows but X has {n_rows}; they must match")
    if arr.ndim == 1:
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
                raise ValueError(
                    f"{name} is 1-D, so it is read as class labels, but it holds non-integer or "
                    f"non-finite values; pass integer labels, or a 2-D array (n, {n_outputs}) of targets")
        if arr.dtype.kind == "b":
            arr = arr.astype(np.int64)
        labels = arr.astype(np.int64)
        if n_outputs < 2:
            raise ValueError(
                f"integer labels need an output layer with one unit per class; the network has "
                f"{n_outputs} output; use sizes[-1] >= 2 or pass 2-D targets of shape (n, 1)")
        if labels.min() < 0 or labels.max() >= n_outputs:
            raise ValueError(
                f"{name} holds labels from {labels.min()} to {labels.max()}, but the network has "
                f"{n_outputs} output units, so labels must lie in 0..{n_outputs - 1}")
        Y = np.zeros((n_rows, n_outputs), dtype=dtype)
        Y[np.arange(n_rows), labels] = 1
        return Y, labels
    if arr.shape[1] != n_outputs:
        hint = " (for class labels pass a 1-D array, e.g. y.ravel())" if arr.shape[1] == 1 and n_outputs > 1 else ""
        raise ValueError(
            f"{name} has {arr.shape[1]} columns but the network has {n_outputs} outputs{hint}")
    Y = _as_float_array(name, arr, dtype)
    if not np.isfinite(Y).all():
        raise ValueError(f"{name} contains NaN or infinity; clean the targets first")
    if loss == "cross_entropy":
        if Y.min() < 0 or Y.max() > 1:
            raise ValueError(f"cross_entropy needs targets in [0, 1]; {name} ranges over "
                             f"[{Y.min()}, {Y.max()}]. Use loss='quadratic' for regression")
        if output == "softmax" and not np.allclose(Y.sum(axis=1), 1, atol=1e-3):
            raise ValueError(f"softmax with cross_entropy needs each row of {name} to sum to 1 "
                             "(a probability distribution); pass 1-D labels or one-hot rows")
    return Y, None


def effective_n_threads(n_threads):
    """Number of threads to use: ``None`` means every usable core.

    Usable cores respect the CPU affinity mask and ``OMP_NUM_THREADS``.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    if n_threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
        if env.isdigit() and int(env) > 0:
            return min(int(env), usable) if usable else int(env)
        return usable
    try:
        n_threads = operator_index(n_threads)
    except TypeError:
        raise TypeError(f"n_threads must be None or a positive integer; got {n_threads!r}") from None
    if n_threads < 1:
        raise ValueError(f"n_threads must be None (all cores) or >= 1; got {n_threads}")
    limit = 4 * max(usable, 64)
    if n_threads > limit:
        raise ValueError(f"n_threads={n_threads} is absurd for this machine ({usable} usable cores); "
                         f"use at most {limit}, or None for all cores")
    return n_threads


def clip_batch_size(batch_size, n_rows):
    batch_size = check_positive_int("batch_size", batch_size)
    if batch_size > n_rows:
        warnings.warn(f"batch_size={batch_size} is larger than the {n_rows} training examples; "
                      f"using batch_size={n_rows}", UserWarning, stacklevel=3)
        batch_size = n_rows
    return batch_size
