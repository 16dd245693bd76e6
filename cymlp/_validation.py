"""Checks at the Python boundary: arrays, labels and targets, numbers, choices, training options.

Everything that reaches a backend has passed through here once: a 2-D,
C-contiguous, finite array of the network's dtype with the right number of
columns.  The compiled kernels rely on it (they run without bounds checks).
Messages say what is wrong and what to do about it.

The options of a training step beyond the plain mini-batch step are checked
here too (the maths lives in :mod:`cymlp.reference`: ``backprop(...,
sample_weight=, masks=)``, ``dropout_masks``, ``clip_by_global_norm``):

- ``sample_weight``: a float64 array (n,), non-negative, finite, with a
  positive sum.  Weights that are all equal define the unweighted problem
  (the weighted mean of any batch is then the plain mean), so they become
  ``None`` and run the unweighted code: all-ones weights give the unweighted
  result bit for bit.
- ``class_weight``: ``None``, ``"balanced"`` (n_samples / (n_classes ·
  bincount(y)) over the classes present, as scikit-learn) or a dict
  ``{class: weight}`` (classes not in it weigh 1); it multiplies the sample
  weights of the rows of each class.
- ``dropout``: one rate per hidden layer, each in [0, 1).
- ``clip_norm``: ``None`` or a finite number > 0.

This module imports nothing of cymlp's: every other module may use it.  (The
compiled path's faster finiteness check comes in as an argument of
:func:`check_X`: ``cymlp._backends.finiteness_check``.)
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


class Spec(Protocol):
    """What :func:`check_Xy` reads of an architecture (a :class:`cymlp._spec.ModelSpec`)."""

    @property
    def sizes(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    @property
    def loss(self) -> str: ...
    @property
    def output(self) -> str: ...

_DTYPES = {"float32": np.float32, "float64": np.float64}


def check_dtype(dtype: Any) -> np.dtype[np.floating[Any]]:
    """Return the numpy dtype for ``"float32"``/``"float64"`` (or the types)."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return np.dtype(name)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_sizes(sizes: Any) -> list[int]:
    try:
        sizes = [operator_index(s) for s in sizes]
    except TypeError:
        raise TypeError(f"sizes must be a sequence of positive integers, e.g. [784, 100, 10]; got {sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least 2 layers (inputs and outputs), e.g. [784, 100, 10]; got {sizes}")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"every layer size must be a positive integer; got {sizes}")
    return sizes


def operator_index(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"expected an integer, got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    try:
        value = operator_index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return value


def check_real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
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


def as_float_array(name: str, data: Any, dtype: npt.DTypeLike, *, finite: bool = True,
                   too_large_hint: str = "scale the data, or use dtype='float64'",
                   non_finite_hint: str = "clean or impute the data first") -> Array:
    """Convert array-likes of numbers to a C-contiguous ``dtype`` array.

    Integers, booleans, float16 and big-endian data are converted; object
    arrays are converted when every element is a number.  Text, dates,
    complex numbers and masked entries are rejected.  With ``finite``, NaN and
    infinity are rejected too, with a separate message when the values were
    finite but do not fit in ``dtype`` (1e300 in float32).
    """
    if isinstance(data, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got a string")
    if is_sparse(data):
        raise TypeError(f"{name} is a sparse matrix, which cymlp takes for inputs X only; "
                        f"pass {name}.toarray()")
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


def _missing_values_message(name: str, what: str) -> str:
    return (f"{name} has missing values ({what}); fill them or drop those rows first "
            f"(with pandas: .fillna(value) or .dropna())")


def _check_pandas_missing(name: str, data: Any) -> None:
    """Name missing values in a pandas object before NumPy turns them into NaN or objects."""
    if isinstance(data, np.ndarray) or not callable(getattr(data, "isna", None)):
        return
    try:
        missing = bool(np.asarray(data.isna()).any())
    except (TypeError, ValueError, AttributeError):
        return
    if missing:
        raise ValueError(_missing_values_message(name, "NaN, None or pandas.NA"))


def _object_to_float64(name: str, arr: Array, text_message: str | None = None) -> Array:
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


def numpy_all_finite(arr: Array) -> bool:
    """``bool(np.isfinite(arr).all())``: :func:`check_X`'s finiteness check by default."""
    return bool(np.isfinite(arr).all())


def check_X(X: Any, n_features: int, dtype: npt.DTypeLike, name: str = "X", *,
            all_finite: Callable[[Array], bool] = numpy_all_finite) -> Array:
    """Validate an input matrix: 2-D, at least one row, finite, right width.

    Returns a C-contiguous array of ``dtype`` (a copy only when needed):
    Fortran-ordered, strided, read-only and memory-mapped inputs all come
    out as the same plain array.  A ``scipy.sparse`` matrix or array comes
    out as a CSR matrix (see :func:`check_sparse_X`).  ``all_finite(array)``
    says whether the C-contiguous result is finite (the compiled path passes its
    own, ``cymlp._backends.finiteness_check``).
    """
    if is_sparse(X):
        return check_sparse_X(X, n_features, dtype, name)
    out = as_float_array(name, X, dtype, finite=False)
    if out.ndim != 2:
        hint = " (reshape a single example with x.reshape(1, -1))" if out.ndim == 1 else ""
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features); got shape {out.shape}{hint}")
    _check_width(name, out.shape, n_features)
    if not all_finite(out):
        as_float_array(name, X, dtype)     # raises, telling NaN apart from overflow
        raise ValueError(f"{name} contains NaN or infinity; clean or impute the data first")
    return out


def _check_width(name: str, shape: tuple[int, ...], n_features: int) -> None:
    if shape[0] == 0:
        raise ValueError(f"{name} has 0 rows; pass at least one example")
    if shape[1] != n_features:
        raise ValueError(
            f"{name} has {shape[1]} features per row but the network's input layer has "
            f"{n_features}; pass data with {n_features} columns")


def is_sparse(X: Any) -> bool:
    """True for a ``scipy.sparse`` matrix or array (checked without importing scipy first)."""
    if not (hasattr(X, "nnz") and hasattr(X, "tocsr")):
        return False
    import scipy.sparse
    return scipy.sparse.issparse(X)


def check_sparse_X(X: Any, n_features: int, dtype: npt.DTypeLike, name: str = "X") -> Any:
    """A ``scipy.sparse`` input as a CSR matrix of ``dtype`` whose arrays the kernels can trust.

    Any format is accepted; all but CSR are converted once (CSC to CSR is a
    copy of the matrix).  The stored values must be finite; the column
    indices in range and the row pointers well formed (a hand-built matrix
    is checked, not trusted).  Returns the matrix itself when nothing needed
    converting, else a new one of the same kind (matrix or array).
    """
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {X.dtype}, which is not a real number type")
    _check_width(name, X.shape, n_features)
    csr = X.tocsr() if X.format != "csr" else X
    data = as_float_array(f"{name}'s stored values", csr.data, dtype)
    indices, indptr = csr.indices, csr.indptr
    if indices.dtype != indptr.dtype or indices.dtype not in (np.int32, np.int64):
        indices, indptr = indices.astype(np.int64), indptr.astype(np.int64)
    indices, indptr = np.ascontiguousarray(indices), np.ascontiguousarray(indptr)
    nnz = data.shape[0]
    if (indptr.shape != (X.shape[0] + 1,) or indptr[0] != 0 or indptr[-1] != nnz
            or indices.shape != (nnz,) or np.any(np.diff(indptr) < 0)):
        raise ValueError(f"{name} is a malformed CSR matrix (its row pointers do not match its "
                         f"{nnz} stored values); rebuild it, e.g. with {name}.tocoo().tocsr()")
    if nnz and (indices.min() < 0 or indices.max() >= n_features):
        raise ValueError(f"{name} has column indices outside 0..{n_features - 1}; rebuild it")
    if data is csr.data and indices is csr.indices and indptr is csr.indptr:
        return csr
    return type(csr)((data, indices, indptr), shape=X.shape)


def check_targets(y: Any, n_rows: int, n_outputs: int, dtype: npt.DTypeLike, *, loss: str, output: str,
                  name: str = "y", x_name: str = "X") -> tuple[Array, Array | None]:
    """Validate targets; return ``(Y, labels)``.

    ``y`` as 1-D integer labels means classification: ``Y`` is their one-hot
    encoding and ``labels`` the labels.  ``y`` as a 2-D float array is used
    directly as ``Y`` and ``labels`` is None (for the Poisson loss, each target
    >= 0).  Text labels are rejected
    (whatever their dtype: ``<U``, object or pandas strings), and so are
    quadratic-loss targets so large that their squared errors could overflow
    ``dtype`` (see :func:`max_quadratic_target`).
    """
    if isinstance(y, (str, bytes)):
        raise TypeError(f"{name} must be an array of labels or targets, got a string")
    if is_sparse(y):
        raise TypeError(f"{name} is a sparse matrix, which cymlp takes for inputs X only; "
                        f"pass {name}.toarray()")
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
    Y = as_float_array(name, arr, dtype)
    if loss == "quadratic":
        limit = max_quadratic_target(dtype)
        largest = float(np.max(np.abs(Y)))
        if largest > limit:
            raise ValueError(
                f"{name} holds targets up to {largest:.3g} in magnitude; with loss='quadratic' in "
                f"{np.dtype(dtype).name} the squared errors of targets above {limit:.3g} can "
                f"overflow. Scale the targets (e.g. divide by their standard deviation) or use "
                f"dtype='float64'")
    if loss == "poisson" and Y.min() < 0:
        raise ValueError(f"loss='poisson' needs targets >= 0 (counts or rates); {name} holds "
                         f"{Y.min():g}. Use loss='quadratic' for targets of either sign")
    if loss == "cross_entropy":
        if Y.min() < 0 or Y.max() > 1:
            raise ValueError(f"cross_entropy needs targets in [0, 1]; {name} ranges over "
                             f"[{Y.min()}, {Y.max()}]. Use loss='quadratic' for regression")
        # (np.allclose's tolerance, |sum - 1| <= 1e-3 + 1e-5, without its machinery: ~50 µs a call)
        if output == "softmax" and not np.abs(Y.sum(axis=1) - 1).max() <= 1.001e-3:
            raise ValueError(f"softmax with cross_entropy needs each row of {name} to sum to 1 "
                             "(a probability distribution); pass 1-D labels or one-hot rows")
    return Y, None


def check_Xy(spec: Spec, X: Any, y: Any, x_name: str = "X",
             y_name: str = "y", *,
             all_finite: Callable[[Array], bool] = numpy_all_finite) -> tuple[Array, Array, Array | None]:
    """``(X, Y, labels)`` checked for a network of this :class:`~cymlp._spec.ModelSpec`.

    See :func:`check_X` and :func:`check_targets`.
    """
    X = check_X(X, spec.sizes[0], spec.dtype, name=x_name, all_finite=all_finite)
    Y, labels = check_targets(y, X.shape[0], spec.sizes[-1], spec.dtype, loss=spec.loss,
                              output=spec.output, name=y_name, x_name=x_name)
    return X, Y, labels


def max_quadratic_target(dtype: npt.DTypeLike) -> float:
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


def check_backend(name: Any, available: Sequence[str]) -> str:
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


def check_finite_params(what: str, theta: Any, dtype: npt.DTypeLike) -> Array:
    """``theta`` cast to ``dtype`` (C-contiguous); finite *after* the cast.

    A float64 value of 1e300 is finite but becomes inf in float32; the check
    runs on the cast values and names the overflow.
    """
    return as_float_array(
        what, theta, dtype,
        too_large_hint=f"they cannot be stored in a {np.dtype(dtype).name} network; keep "
                       "dtype='float64' or scale the parameters",
        non_finite_hint="parameters must be finite numbers")


def check_seed(seed: Any) -> int | None:
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


def check_finite_result(what: str, value: Any) -> Any:
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


def clip_batch_size(batch_size: Any, n_rows: int, stacklevel: int = 3) -> int:
    batch_size = check_positive_int("batch_size", batch_size)
    if batch_size > n_rows:
        warnings.warn(f"batch_size={batch_size} is larger than the {n_rows} training examples; "
                      f"using batch_size={n_rows}", UserWarning, stacklevel=stacklevel)
        batch_size = n_rows
    return batch_size


# ---- sample and class weights, dropout, gradient clipping (see the module docstring)

def check_sample_weight(sample_weight: Any, n_rows: int, name: str = "sample_weight") -> Array | None:
    """A float64 array (n_rows,) of usable weights, or None for unweighted (see module doc)."""
    if sample_weight is None:
        return None
    w = as_float_array(name, sample_weight, np.float64,
                          non_finite_hint="weights must be finite numbers >= 0")
    if w.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array with one weight per row; got shape {w.shape}")
    if w.shape[0] != n_rows:
        raise ValueError(f"{name} has {w.shape[0]} weights but X has {n_rows} rows; pass one "
                         f"weight per row")
    if w.min() < 0:
        raise ValueError(f"{name} holds negative weights (the smallest is {w.min():g}); weights "
                         f"must be >= 0 (0 leaves a row out)")
    top = w.max()
    if not top > 0:
        raise ValueError(f"{name} must have a positive sum (got {w.sum():g}); at least one row "
                         f"needs a positive weight")
    # Σ w C / Σ w does not depend on the weights' scale: scaling by a power of two (exact) so that
    # the largest is in [0.5, 1) keeps every sum finite and every result bit for bit what it was;
    # weights below float64's smallest normal number then count as 0 on every backend (the
    # compiled path flushes subnormals to zero, the NumPy path would divide by them)
    w = np.ldexp(w, -int(np.frexp(top)[1]))
    w[w < np.finfo(np.float64).tiny] = 0.0
    if np.all(w == w[0]):
        return None            # equal weights are the unweighted problem (bit for bit)
    return w


def check_class_weight(class_weight: Any, labels: Array | None, n_outputs: int) -> Array | None:
    """Per-row factors (float64, (n,)) for ``class_weight``, or None.

    ``labels`` are the checked integer labels (None for 2-D targets, which
    ``class_weight`` cannot be used with).
    """
    if class_weight is None:
        return None
    if labels is None:
        raise ValueError("class_weight needs integer class labels (1-D y); it cannot weight "
                         "2-D targets. Pass sample_weight instead")
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be None, 'balanced' or a dict {{class: weight}}; "
                             f"got {class_weight!r}")
        counts = np.bincount(labels, minlength=n_outputs).astype(np.float64)
        present = counts > 0
        per_class = np.zeros(n_outputs)
        per_class[present] = labels.shape[0] / (np.count_nonzero(present) * counts[present])
        return per_class[labels]
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be None, 'balanced' or a dict {{class: weight}}; "
                        f"got {type(class_weight).__name__}")
    per_class = np.ones(n_outputs)
    for cls, weight in class_weight.items():
        if isinstance(cls, (bool, np.bool_)) or not isinstance(cls, numbers.Integral):
            raise TypeError(f"class_weight keys must be integer class labels; got {cls!r}")
        if not 0 <= int(cls) < n_outputs:
            raise ValueError(f"class_weight names class {cls}, but the network has {n_outputs} "
                             f"outputs, so classes are 0..{n_outputs - 1}")
        per_class[int(cls)] = check_real(f"class_weight[{cls}]", weight, low=0)
    return per_class[labels]


def combine_weights(sample_weight: Any, class_factors: Array | None, n_rows: int) -> Array | None:
    """The rows' weights from ``sample_weight`` (checked or raw) and ``class_factors``; None if uniform."""
    w = check_sample_weight(sample_weight, n_rows)
    if class_factors is None:
        return w
    combined = class_factors if w is None else w * class_factors
    return check_sample_weight(combined, n_rows, name="sample_weight × class_weight")


def check_dropout(dropout: Any, sizes: Sequence[int], layers: str | None = None) -> tuple[float, ...]:
    """A tuple with one drop probability per hidden layer, each in [0, 1).

    ``layers`` names the hidden layers in messages as the caller's user knows
    them (default: ``sizes [...]``; the estimators say ``hidden_layer_sizes=()``).
    """
    n_hidden = len(sizes) - 2
    if isinstance(dropout, numbers.Real) and not isinstance(dropout, (bool, np.bool_)):
        rate = check_real("dropout", dropout, low=0, high=1, high_open=True)
        if rate > 0 and n_hidden == 0:
            raise ValueError(f"dropout applies to hidden layers, and {layers or f'sizes {list(sizes)}'} "
                             f"has none; use dropout=0 or add a hidden layer")
        return (rate,) * n_hidden
    try:
        if isinstance(dropout, (str, bytes)):
            raise TypeError
        rates = list(dropout)
    except TypeError:
        raise TypeError(f"dropout must be a number in [0, 1) or a sequence with one per hidden "
                        f"layer; got {dropout!r}") from None
    if len(rates) != n_hidden:
        raise ValueError(f"dropout has {len(rates)} rates but the network has {n_hidden} hidden "
                         f"layers; pass one rate per hidden layer (or a single number)")
    return tuple(check_real(f"dropout[{i}]", p, low=0, high=1, high_open=True)
                 for i, p in enumerate(rates))


def check_clip_norm(clip_norm: Any) -> float | None:
    """``None`` or a finite float > 0."""
    if clip_norm is None:
        return None
    return check_real("clip_norm", clip_norm, low=0, low_open=True)
