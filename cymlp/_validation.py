"""Checks at the Python boundary.

Everything that reaches a backend has passed through here once: a 2-D,
C-contiguous, finite array of the network's dtype with the right number of
columns.  The compiled kernels rely on it (they run without bounds checks).
Messages say what is wrong and what to do about it.
"""

import numbers
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


def _as_float_array(name, data, dtype, *, finite=True,
                    too_large_hint="scale the data, or use dtype='float64'",
                    non_finite_hint="clean or impute the data first"):
    """Convert array-likes of numbers to a C-contiguous ``dtype`` array.

    Integers, booleans, float16 and big-endian data are converted; object
    arrays are converted when every element is a number.  Text, dates,
    complex numbers and masked entries are rejected.  With ``finite``, NaN and
    infinity are rejected too, with a separate message when the values were
    finite but do not fit in ``dtype`` (1e300 in float32).
    """
    if isinstance(data, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got a string")
    if hasattr(data, "toarray") and hasattr(data, "nnz"):
        raise TypeError(f"{name} is a sparse matrix; cymlp needs dense data: pass {name}.toarray()")
    if isinstance(data, np.ma.MaskedArray) and np.ma.is_masked(data):
        raise ValueError(f"{name} is a masked array with masked entries; fill them first "
                         f"(e.g. {name}.filled(value)) or drop those rows")
    _check_pandas_missing(name, data)
    try:
        arr = np.asarray(data)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind == "O":
        if arr.ndim == 0:
            raise TypeError(f"{name} must be an array of numbers, got {type(data).__name__}")
        arr = _object_to_float64(name, arr)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {arr.dtype}, which is not a real number type; "
            f"pass integers, booleans or floats (convert text, dates or complex numbers yourself)")
    try:
        with np.errstate(over="ignore", invalid="ignore"):   # overflow is reported below
            out = np.ascontiguousarray(arr, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to {np.dtype(dtype).name}: {exc}") from None
    if finite and not np.isfinite(out).all():
        if arr.dtype.kind == "f" and np.isfinite(arr).all():
            raise ValueError(
                f"{name} holds values too large for {np.dtype(dtype).name} (largest magnitude "
                f"{float(np.max(np.abs(arr))):g}); {too_large_hint}")
        raise ValueError(f"{name} contains NaN or infinity; {non_finite_hint}")
    return out


def _missing_values_message(name, what):
    return (f"{name} has missing values ({what}); fill them or drop those rows first "
            f"(with pandas: .fillna(value) or .dropna())")


def _check_pandas_missing(name, data):
    """Name missing values in a pandas object before NumPy turns them into NaN or objects."""
    if isinstance(data, np.ndarray) or not callable(getattr(data, "isna", None)):
        return
    try:
        missing = bool(np.asarray(data.isna()).any())
    except (TypeError, ValueError, AttributeError):
        return
    if missing:
        raise ValueError(_missing_values_message(name, "NaN, None or pandas.NA"))


def _object_to_float64(name, arr, text_message=None):
    """Convert an object array whose every element is a real number to float64.

    Text (``'0'``, ``'1.5'``), missing values (``None``, ``pandas.NA``,
    ``NaT``) and other non-numbers are rejected with a message naming what
    was found, and integers too large for float64 (``10**400``) with a
    ValueError rather than Python's OverflowError.
    """
    for item in arr.flat:
        if isinstance(item, (bool, np.bool_, numbers.Real)) or (
                isinstance(item, numbers.Number) and not isinstance(item, numbers.Complex)):
            continue                      # Decimal is a Number but not registered as Real
        if item is None or type(item).__name__ in ("NAType", "NaTType"):
            raise ValueError(_missing_values_message(name, repr(item)))
        if isinstance(item, (str, bytes)):
            raise TypeError(text_message or
                            f"{name} holds text ({item!r}); pass numbers only, converting text "
                            f"or categories yourself")
        if isinstance(item, numbers.Complex):
            raise TypeError(f"{name} holds complex numbers ({item!r}); pass real numbers only")
        raise TypeError(f"{name} is an object array holding {type(item).__name__} values "
                        f"such as {item!r}; pass real numbers only")
    try:
        return arr.astype(np.float64)
    except OverflowError:
        raise ValueError(f"{name} holds an integer too large for float64 (larger than about "
                         f"1.8e308); scale the data first") from None
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} could not be converted to numbers: {exc}") from None


def check_X(X, n_features, dtype, name="X"):
    """Validate an input matrix: 2-D, at least one row, finite, right width.

    Returns a C-contiguous array of ``dtype`` (a copy only when needed):
    Fortran-ordered, strided, read-only and memory-mapped inputs all come
    out as the same plain array.
    """
    out = _as_float_array(name, X, dtype, finite=False)
    if out.ndim != 2:
        hint = " (reshape a single example with x.reshape(1, -1))" if out.ndim == 1 else ""
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features); got shape {out.shape}{hint}")
    if out.shape[0] == 0:
        raise ValueError(f"{name} has 0 rows; pass at least one example")
    if out.shape[1] != n_features:
        raise ValueError(
            f"{name} has {out.shape[1]} features per row but the network's input layer has "
            f"{n_features}; pass data with {n_features} columns")
    if not np.isfinite(out).all():
        _as_float_array(name, X, dtype)     # raises, telling NaN apart from overflow
        raise ValueError(f"{name} contains NaN or infinity; clean or impute the data first")
    return out


def check_targets(y, n_rows, n_outputs, dtype, *, loss, output, name="y", x_name="X"):
    """Validate targets; return ``(Y, labels)``.

    ``y`` as 1-D integer labels means classification: ``Y`` is their one-hot
    encoding and ``labels`` the labels.  ``y`` as a 2-D float array is used
    directly as ``Y`` and ``labels`` is None.  Text labels are rejected
    (whatever their dtype: ``<U``, object or pandas strings), and so are
    quadratic-loss targets so large that their squared errors could overflow
    ``dtype`` (see :func:`max_quadratic_target`).
    """
    if isinstance(y, (str, bytes)):
        raise TypeError(f"{name} must be an array of labels or targets, got a string")
    if isinstance(y, np.ma.MaskedArray) and np.ma.is_masked(y):
        raise ValueError(f"{name} is a masked array with masked entries; drop those rows first")
    _check_pandas_missing(name, y)
    try:
        arr = np.asarray(y)
    except Exception as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    text_labels = (f"{name} holds text labels; Network needs integer class labels 0..k-1 (or "
                   f"float targets): map them first, e.g. classes, {name} = "
                   f"np.unique({name}, return_inverse=True)")
    if arr.dtype.kind == "O" and arr.ndim > 0:
        arr = _object_to_float64(name, arr, text_message=text_labels)
    if arr.dtype.kind in "US":
        raise TypeError(text_labels)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype}; pass integer labels 0..k-1 or float targets "
                        "(encode text classes as integers yourself)")
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D labels or a 2-D target matrix; got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows but {x_name} has {n_rows}; they must match")
    if arr.ndim == 1:
        if arr.dtype.kind == "f":  # noqa: SIM102 - the float case of the label checks that follow
            if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
                raise ValueError(
                    f"{name} is 1-D, so it is read as class labels, but it holds non-integer or "
                    f"non-finite values; pass integer labels, or a 2-D array (n, {n_outputs}) of targets")
        if arr.dtype.kind == "b":
            arr = arr.astype(np.int64)
        if n_outputs < 2:
            raise ValueError(
                f"integer labels need an output layer with one unit per class; the network has "
                f"{n_outputs} output; use sizes[-1] >= 2 or pass 2-D targets of shape (n, 1)")
        low, high = arr.min(), arr.max()     # compared before any cast, so 1e300 or 2**64-1 cannot wrap
        if low < 0 or high >= n_outputs:
            raise ValueError(
                f"{name} holds labels from {low} to {high}, but the network has "
                f"{n_outputs} output units, so labels must lie in 0..{n_outputs - 1}")
        labels = arr.astype(np.int64)
        Y = np.zeros((n_rows, n_outputs), dtype=dtype)
        Y[np.arange(n_rows), labels] = 1
        return Y, labels
    if arr.shape[1] != n_outputs:
        hint = " (for class labels pass a 1-D array, e.g. y.ravel())" if arr.shape[1] == 1 and n_outputs > 1 else ""
        raise ValueError(
            f"{name} has {arr.shape[1]} columns but the network has {n_outputs} outputs{hint}")
    Y = _as_float_array(name, arr, dtype)
    if loss == "quadratic":
        limit = max_quadratic_target(dtype)
        largest = float(np.max(np.abs(Y)))
        if largest > limit:
            raise ValueError(
                f"{name} holds targets up to {largest:.3g} in magnitude; with loss='quadratic' in "
                f"{np.dtype(dtype).name} the squared errors of targets above {limit:.3g} can "
                f"overflow. Scale the targets (e.g. divide by their standard deviation) or use "
                f"dtype='float64'")
    if loss == "cross_entropy":
        if Y.min() < 0 or Y.max() > 1:
            raise ValueError(f"cross_entropy needs targets in [0, 1]; {name} ranges over "
                             f"[{Y.min()}, {Y.max()}]. Use loss='quadratic' for regression")
        if output == "softmax" and not np.allclose(Y.sum(axis=1), 1, atol=1e-3):
            raise ValueError(f"softmax with cross_entropy needs each row of {name} to sum to 1 "
                             "(a probability distribution); pass 1-D labels or one-hot rows")
    return Y, None


def max_quadratic_target(dtype):
    """Largest target magnitude accepted with the quadratic loss in ``dtype``.

    ``sqrt(finfo.max) / 10**4``: a squared error of such a target is at most
    ``finfo.max / 10**8``, so sums of up to 10**8 of them (a batch's loss,
    its gradients) cannot overflow on either backend, whatever the order of
    summation.  Below the limit both backends train the same (training is
    equivariant to the scale of the targets, up to rounding); above it,
    whether a sum overflows would depend on the backend.  float32: about
    1.8e15; float64: about 1.3e150.
    """
    return float(np.sqrt(np.finfo(dtype).max)) * 1e-4


def check_backend(name, available):
    """The backend name to use: ``None`` means the first of ``available``.

    Raises a ValueError naming the ``backend`` argument for an unknown name,
    or for ``"cython"`` when the compiled extension is not built.
    """
    if name is None:
        return available[0]
    check_choice("backend", name, ("cython", "numpy"))
    if name not in available:
        raise ValueError(
            f"backend={name!r} is not available: the compiled extension was not built. "
            f"Reinstall with `pip install .` and a C compiler, or use backend='numpy'")
    return name


def check_finite_params(what, theta, dtype):
    """``theta`` cast to ``dtype`` (C-contiguous); finite *after* the cast.

    A float64 value of 1e300 is finite but becomes inf in float32; the check
    runs on the cast values and names the overflow.
    """
    return _as_float_array(
        what, theta, dtype,
        too_large_hint=f"they cannot be stored in a {np.dtype(dtype).name} network; keep "
                       "dtype='float64' or scale the parameters",
        non_finite_hint="parameters must be finite numbers")


def check_seed(seed):
    """``None`` or a non-negative integer."""
    if seed is None:
        return None
    try:
        seed = operator_index(seed)
    except TypeError:
        raise TypeError(f"seed must be None or a non-negative integer; got {seed!r}") from None
    if seed < 0:
        raise ValueError(f"seed must be None or a non-negative integer; got {seed}")
    return seed


def check_finite_result(what, value):
    """Raise when a computed result (outputs, loss, gradient) is not finite.

    Finite inputs can still overflow inside the network (inputs near 1e300,
    or weights that grew huge); returning NaN would be a silent wrong answer.
    """
    if isinstance(value, (list, tuple)):
        finite = all(np.isfinite(part).all() for part in value)
    else:
        finite = bool(np.isfinite(value).all())
    if not finite:
        raise ValueError(
            f"the {what} overflowed to NaN or infinity: the inputs are too large for this "
            "network's weights (or the weights grew huge in training); scale the inputs "
            "(e.g. standardise each column) or retrain with a smaller lr")
    return value


def __getattr__(name):
    """The thread helpers moved to :mod:`cymlp._threads`; these names still work."""
    if name in ("effective_n_threads", "in_forked_child", "usable_cores"):
        from . import _threads
        return getattr(_threads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def clip_batch_size(batch_size, n_rows, stacklevel=3):
    batch_size = check_positive_int("batch_size", batch_size)
    if batch_size > n_rows:
        warnings.warn(f"batch_size={batch_size} is larger than the {n_rows} training examples; "
                      f"using batch_size={n_rows}", UserWarning, stacklevel=stacklevel)
        batch_size = n_rows
    return batch_size
