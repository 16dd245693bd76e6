# cython: language_level=3
"""What every compiled module shares: the Python names of the kernels' codes,
the shape plan, the optimizer settings, and the checks at every entry point.

The flat parameter buffer ``theta`` is laid out per layer as
``[W_0 (n_out·n_in, row-major), b_0, W_1, b_1, ...]`` (see network.py).

Scratch layout for a block of at most ``cap`` rows (one chunk, or the whole
batch)::

    A_0 (cap, sizes[0])  gathered inputs
    A_1 .. A_L           activations of every layer (A_L: the output)
    Z_out (cap, k)       weighted input of the output layer (cross-entropy uses it)
    D_0, D_1 (cap, max width)   errors δ, ping-pong between layers
"""

from libc.math cimport pow, isfinite

import numpy as np
cimport numpy as cnp

from ._kernels_sparse cimport SparseRows

cnp.import_array()


def _names(codes):
    """``{name: code}`` of a ``cpdef enum``: each enumerator's name in lower case."""
    return {member.name.lower(): int(member) for member in codes}


# The Python names of the kernels' codes, from the enums of _kernels_common.pxd
# (the one place that numbers them): Python never restates a code.
ACTIVATIONS = _names(Activation)
LOSSES = _names(Loss)
OPTIMIZERS = _names(Optimizer)
MODES = _names(Mode)
STRATEGIES = _names(Strategy)
WEIGHTINGS = _names(Weighting)

cdef int lookup(dict table, str what, value) except -1:
    """``table[value]``, or a ValueError that lists the known names."""
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(table)}") from None


# --------------------------------------------------------------------------
# The plan and the optimizer settings
# --------------------------------------------------------------------------

cdef class Plan:
    """The network's shape as C arrays (layer offsets in theta, scratch widths).

    Parameters
    ----------
    sizes : sequence of int
        The layer widths, at least two, each >= 1.
    hidden, output : str
        Activations of the hidden layers and of the output layer (names of
        ``ACTIVATIONS``).
    loss : str
        The loss (a name of ``LOSSES``).
    """

    def __init__(self, sizes, hidden, output, loss):
        sizes = [int(n) for n in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"Plan: sizes must list at least two layer widths >= 1; got {sizes}")
        cdef Py_ssize_t L = len(sizes) - 1, l, off = 0
        self._ints = np.zeros(4 * L + 4, dtype=np.intp)
        cdef Py_ssize_t* base = <Py_ssize_t*>&self._ints[0]
        self.s.n_layers = <int>L
        self.s.hidden = <Activation>lookup(ACTIVATIONS, "activation", hidden)
        self.s.output = <Activation>lookup(ACTIVATIONS, "output activation", output)
        self.s.loss = <Loss>lookup(LOSSES, "loss", loss)
        self.s.sizes = base
        self.s.w_off = base + L + 1
        self.s.b_off = base + 2 * L + 1
        self.s.cum = base + 3 * L + 1
        self.s.max_width = 0
        for l in range(L + 1):
            self.s.sizes[l] = sizes[l]
        self.s.cum[0] = 0
        for l in range(L + 1):
            self.s.cum[l + 1] = self.s.cum[l] + sizes[l]
        for l in range(L):
            self.s.w_off[l] = off
            off += sizes[l + 1] * sizes[l]
            self.s.b_off[l] = off
            off += sizes[l + 1]
            if sizes[l + 1] > self.s.max_width:
                self.s.max_width = sizes[l + 1]
        self.s.n_params = off
        self.s.row_width = self.s.cum[L + 1] + sizes[L] + 2 * self.s.max_width

    @property
    def sizes(self):
        return [self.s.sizes[l] for l in range(self.s.n_layers + 1)]

    @property
    def codes(self):
        """``(hidden, output, loss)`` as the kernels hold them (enum members)."""
        return Activation(self.s.hidden), Activation(self.s.output), Loss(self.s.loss)

    @property
    def n_params(self):
        return self.s.n_params

    @property
    def row_width(self):
        """Scratch elements per row (activations of all layers, Z_out, two δ)."""
        return self.s.row_width


cdef Opt make_opt(str optimizer, double momentum, bint nesterov, double weight_decay,
                  double beta1, double beta2, double eps) except *:
    """The optimizer settings of a fit (lr and Adam's bias corrections are set per step)."""
    cdef Opt o
    o.kind = <Optimizer>lookup(OPTIMIZERS, "optimizer", optimizer)
    o.momentum, o.nesterov, o.weight_decay = momentum, nesterov, weight_decay
    o.beta1, o.beta2, o.eps = beta1, beta2, eps
    o.lr = 0
    o.bc1 = o.bc2 = 1
    return o


cdef void adam_corrections(Opt* o,      # INOUT
                           double step) noexcept nogil:
    """Adam's bias corrections 1 − β^t for step ``t`` (counted from 1)."""
    o.bc1 = 1 - pow(o.beta1, step)
    o.bc2 = 1 - pow(o.beta2, step)


cdef StepOut sum_rows(const double* row_loss,            # IN (n,)
                      const unsigned char* row_correct,  # IN (n,)
                      Py_ssize_t n) noexcept nogil:
    """The summed loss and correct count of a step's ``n`` rows, and whether the loss is finite."""
    cdef StepOut out
    cdef Py_ssize_t r
    cdef double total = 0
    out.correct = 0
    for r in range(n):
        total += row_loss[r]
        out.correct += row_correct[r]
    out.loss_sum = total
    out.finite = isfinite(total)
    return out


# --------------------------------------------------------------------------
# The checks at every entry point (ValueError before the GIL is released)
# --------------------------------------------------------------------------

def _check_array(str where, str name, a, int ndim, dtype, tuple shape, bint writable=False):
    """ValueError unless ``a`` is a C-contiguous ndarray of ``dtype`` and ``shape``
    (``None`` in ``shape`` matches any length)."""
    if not isinstance(a, np.ndarray) or a.ndim != ndim:
        raise ValueError(f"{where}: {name} must be a {ndim}-D ndarray; got {type(a).__name__} "
                         f"of shape {getattr(a, 'shape', None)}")
    if a.dtype != dtype:
        raise ValueError(f"{where}: {name} has dtype {a.dtype}, expected {np.dtype(dtype)}")
    for have, want in zip(a.shape, shape):
        if want is not None and have != want:
            want = ", ".join("any" if w is None else str(w) for w in shape)
            raise ValueError(f"{where}: {name} has shape {a.shape}, expected ({want}"
                             f"{',' if len(shape) == 1 else ''}) (the buffers and the "
                             "network's sizes disagree)")
    if not a.flags.c_contiguous or (writable and not a.flags.writeable):
        raise ValueError(f"{where}: {name} must be C-contiguous{' and writable' if writable else ''}")


cdef void check_trainer_arrays(Plan plan, theta, X, Y, labels, Py_ssize_t batch_size,
                               str optimizer) except *:
    """What a trainer's constructor checks before it keeps the arrays for ``run``.

    theta (n_params,) float32 or float64, writable; X (N, sizes[0]) and
    Y (N, sizes[-1]) of theta's dtype, N >= 1 (X dense, or a ``SparseRows``);
    labels None or int64 (N,).
    """
    where = "trainer"
    cdef const Shape* s = &plan.s
    if not isinstance(theta, np.ndarray) or theta.dtype not in (np.float32, np.float64):
        raise ValueError(f"{where}: theta must be a float32 or float64 ndarray; "
                         f"got {getattr(theta, 'dtype', type(theta).__name__)}")
    _check_array(where, "theta", theta, 1, theta.dtype, (s.n_params,), True)
    if isinstance(X, SparseRows):
        if X.dtype != theta.dtype or X.n_cols != s.sizes[0]:
            raise ValueError(f"{where}: sparse X is {X.dtype} with {X.n_cols} columns; expected "
                             f"{theta.dtype} with {s.sizes[0]}")
    else:
        _check_array(where, "X", X, 2, theta.dtype, (None, s.sizes[0]))
    if X.shape[0] < 1:
        raise ValueError(f"{where}: X has no rows")
    _check_array(where, "Y", Y, 2, theta.dtype, (X.shape[0], s.sizes[s.n_layers]))
    if labels is not None:
        _check_array(where, "labels", labels, 1, np.int64, (X.shape[0],))
    if batch_size < 1:
        raise ValueError(f"{where}: batch_size must be >= 1; got {batch_size}")
    lookup(OPTIMIZERS, "optimizer", optimizer)


cdef void set_worker_inputs(Worker* w,    # OUT its X, Xs, n_examples
                            X) except *:
    """Point ``w`` at its training inputs: a dense ndarray or a ``SparseRows``, checked
    by ``check_trainer_arrays`` and kept alive by the trainer."""
    if isinstance(X, SparseRows):
        w.X = NULL
        w.Xs = &(<SparseRows>X).c
    else:
        w.X = cnp.PyArray_DATA(X)
        w.Xs = NULL
    w.n_examples = X.shape[0]


cdef void check_state(str name, buf, theta) except *:
    """An optimizer state buffer given to a trainer: None, or laid out like theta, writable."""
    if buf is None:
        return
    if (not isinstance(buf, np.ndarray) or buf.dtype != theta.dtype or buf.shape != theta.shape
            or not buf.flags.c_contiguous or not buf.flags.writeable):
        raise ValueError(f"trainer: {name} must be a writable C-contiguous {theta.dtype} array of "
                         f"shape {theta.shape}; got {getattr(buf, 'dtype', type(buf).__name__)} "
                         f"{getattr(buf, 'shape', '')}")


cdef void check_order(const cnp.intp_t[::1] order,    # IN
                      Py_ssize_t n_rows, Py_ssize_t first, Py_ssize_t stop,
                      Py_ssize_t batch_size) except *:
    """ValueError unless ``order`` has ``n_rows`` entries and the ones that batches
    first..stop-1 use are row indices in 0..n_rows-1."""
    cdef Py_ssize_t i, lo, hi, bad = -1
    if order.shape[0] != n_rows:
        raise ValueError(f"run: order has {order.shape[0]} entries but the data has {n_rows} rows")
    if first < 0:
        raise ValueError(f"run: first batch must be >= 0; got {first}")
    lo = min(first, (n_rows + batch_size - 1) // batch_size) * batch_size
    hi = max(lo, min(stop, (n_rows + batch_size - 1) // batch_size) * batch_size)
    hi = min(hi, n_rows)
    with nogil:
        for i in range(lo, hi):
            if order[i] < 0 or order[i] >= n_rows:
                bad = i
                break
    if bad >= 0:
        raise ValueError(f"run: order[{bad}] = {order[bad]} is not a row index of the data "
                         f"(0..{n_rows - 1})")


def exp_nonpos(const floating[::1] x):    # IN
    """The kernels' e^x (x <= 0, cymlp/_vmath.pxd) of every element: for the accuracy tests.

    Parameters
    ----------
    x : ndarray of shape (n,), float32 or float64
        Arguments, each <= 0.

    Returns
    -------
    ndarray of shape (n,), of x's dtype
    """
    out = np.empty(x.shape[0], dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] y = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            y[i] = _exp_nonpos(x[i])
    return out
