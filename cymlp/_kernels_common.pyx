# cython: language_level=3
"""Shared pieces of the compiled path: the shape plan, the entry-point
checks, the row-wise passes, the optimizer update, and one block's forward
and backward (the training terms it applies: ``_kernels_terms.pyx``).

The flat parameter buffer ``theta`` is laid out per layer as
``[W_0 (n_out·n_in, row-major), b_0, W_1, b_1, ...]`` (see network.py).

Scratch layout for a block of at most ``cap`` rows (one chunk, or the whole
batch)::

    A_0 (cap, sizes[0])  gathered inputs
    A_1 .. A_L           activations of every layer (A_L: the output)
    Z_out (cap, k)       weighted input of the output layer (cross-entropy uses it)
    D_0, D_1 (cap, max width)   errors δ, ping-pong between layers

Every helper here is ``noexcept nogil`` and serial; the trainers in
``_kernels.pyx`` (sync) and ``_kernels_parallel.pyx`` (hogwild, average)
decide what runs on which thread.
"""

from libc.math cimport pow, isfinite, sqrt
from libc.string cimport memcpy

import numpy as np
cimport numpy as cnp

from ._blas cimport floating, gemm
from ._kernels_terms cimport drop_rows, drop_in_place, relu_drop_deriv, weight_rows, mask_ptr, dropped_ptr

cnp.import_array()

ACTIVATION_CODES = {"sigmoid": 0, "tanh": 1, "relu": 2, "leaky_relu": 3, "softmax": 4, "identity": 5}
LOSS_CODES = {"quadratic": 0, "cross_entropy": 1}
OPTIMIZER_CODES = {"sgd": OPT_SGD, "adam": OPT_ADAM}

cdef double LEAKY_SLOPE = 0.01


# --------------------------------------------------------------------------
# The plan, the optimizer settings and the checks at every entry point
# --------------------------------------------------------------------------

def lookup_code(table, str what, value):
    """``table[value]``, or a ValueError that lists the known names."""
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(table)}") from None


cdef class Plan:
    """The network's shape as C arrays (layer offsets in theta, scratch widths).

    ``sizes`` lists the layer widths (at least two, each >= 1); ``hidden`` and
    ``output`` name activations, ``loss`` the loss.
    """

    def __init__(self, sizes, hidden, output, loss):
        sizes = [int(n) for n in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"Plan: sizes must list at least two layer widths >= 1; got {sizes}")
        cdef Py_ssize_t L = len(sizes) - 1, l, off = 0
        self._ints = np.zeros(4 * L + 4, dtype=np.intp)
        cdef Py_ssize_t* base = <Py_ssize_t*>&self._ints[0]
        self.s.n_layers = <int>L
        self.s.hidden = lookup_code(ACTIVATION_CODES, "activation", hidden)
        self.s.output = lookup_code(ACTIVATION_CODES, "output activation", output)
        self.s.loss = lookup_code(LOSS_CODES, "loss", loss)
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
    o.kind = lookup_code(OPTIMIZER_CODES, "optimizer", optimizer)
    o.momentum, o.nesterov, o.weight_decay = momentum, nesterov, weight_decay
    o.beta1, o.beta2, o.eps = beta1, beta2, eps
    o.lr = 0
    o.bc1 = o.bc2 = 1
    return o


cdef void adam_corrections(Opt* o, double step) noexcept nogil:
    """Adam's bias corrections 1 − β^t for step ``t`` (counted from 1)."""
    o.bc1 = 1 - pow(o.beta1, step)
    o.bc2 = 1 - pow(o.beta2, step)


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
    Y (N, sizes[-1]) of theta's dtype, N >= 1; labels None or int64 (N,).
    """
    where = "trainer"
    cdef const Shape* s = &plan.s
    if not isinstance(theta, np.ndarray) or theta.dtype not in (np.float32, np.float64):
        raise ValueError(f"{where}: theta must be a float32 or float64 ndarray; "
                         f"got {getattr(theta, 'dtype', type(theta).__name__)}")
    _check_array(where, "theta", theta, 1, theta.dtype, (s.n_params,), True)
    _check_array(where, "X", X, 2, theta.dtype, (None, s.sizes[0]))
    if X.shape[0] < 1:
        raise ValueError(f"{where}: X has no rows")
    _check_array(where, "Y", Y, 2, theta.dtype, (X.shape[0], s.sizes[s.n_layers]))
    if labels is not None:
        _check_array(where, "labels", labels, 1, np.int64, (X.shape[0],))
    if batch_size < 1:
        raise ValueError(f"{where}: batch_size must be >= 1; got {batch_size}")
    lookup_code(OPTIMIZER_CODES, "optimizer", optimizer)


cdef void check_order(const cnp.intp_t[::1] order, Py_ssize_t n_rows, Py_ssize_t first,
                      Py_ssize_t stop, Py_ssize_t batch_size) except *:
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


# --------------------------------------------------------------------------
# Row-wise passes on a range of rows (serial; callers parallelise)
# --------------------------------------------------------------------------

cdef void gather_rows(const floating* X, const cnp.intp_t* rows, Py_ssize_t r0, Py_ssize_t r1,
                      Py_ssize_t width, floating* out) noexcept nogil:
    """out[r] = X[rows[r]] for r in r0..r1-1."""
    cdef Py_ssize_t r
    for r in range(r0, r1):
        memcpy(out + r * width, X + rows[r] * width, width * sizeof(floating))


cdef void bias_act_rows(floating* Z, floating* A, const floating* b, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t m, int act) noexcept nogil:
    """Z[r] += b; A[r] = σ(Z[r]) for rows r0..r1-1 of (·, m) arrays (A may be Z)."""
    cdef Py_ssize_t r, j
    cdef floating z, e, mx, total
    cdef floating slope = <floating>LEAKY_SLOPE
    cdef floating* zr
    cdef floating* ar
    for r in range(r0, r1):
        zr = Z + r * m
        ar = A + r * m
        if act == ACT_SIGMOID:
            for j in range(m):
                z = zr[j] + b[j]
                zr[j] = z
                e = _exp_nonpos(-_fabs(z))
                # one division after a select: no control flow, so the loop vectorises
                ar[j] = (<floating>1 if z >= 0 else e) / (<floating>1 + e)
        elif act == ACT_TANH:
            for j in range(m):
                z = zr[j] + b[j]
                zr[j] = z
                ar[j] = _tanh(z)
        elif act == ACT_RELU:
            for j in range(m):
                z = zr[j] + b[j]
                zr[j] = z
                ar[j] = z if z > 0 else 0
        elif act == ACT_LEAKY:
            for j in range(m):
                z = zr[j] + b[j]
                zr[j] = z
                ar[j] = z if z > 0 else z * slope
        elif act == ACT_IDENTITY:
            for j in range(m):
                z = zr[j] + b[j]
                zr[j] = z
                ar[j] = z
        else:  # softmax, shifted by the row maximum
            mx = zr[0] + b[0]
            for j in range(m):
                z = zr[j] + b[j]
                zr[j] = z
                if z > mx:
                    mx = z
            total = 0
            for j in range(m):
                e = _exp_nonpos(zr[j] - mx)
                ar[j] = e
                total = total + e
            for j in range(m):
                ar[j] = ar[j] / total


cdef void deriv_range(floating* D, const floating* A, Py_ssize_t i0, Py_ssize_t i1,
                      int act) noexcept nogil:
    """D[i] *= σ'(z) computed from a = A[i], for flat indices i0..i1-1 (BP2)."""
    cdef Py_ssize_t i
    cdef floating a
    cdef floating slope = <floating>LEAKY_SLOPE
    if act == ACT_SIGMOID:
        for i in range(i0, i1):
            a = A[i]
            D[i] = D[i] * (a * (1 - a))
    elif act == ACT_TANH:
        for i in range(i0, i1):
            a = A[i]
            D[i] = D[i] * (1 - a * a)
    elif act == ACT_RELU:
        for i in range(i0, i1):
            D[i] = D[i] if A[i] > 0 else 0
    elif act == ACT_LEAKY:
        for i in range(i0, i1):
            D[i] = D[i] if A[i] > 0 else D[i] * slope


cdef void deriv_mask_range(floating* D, const floating* A, const floating* M, Py_ssize_t i0,
                           Py_ssize_t i1, int act) noexcept nogil:
    """D[i] = D[i] · σ'(a) · M[i]: deriv_range and the dropout mask in one pass (BP2)."""
    cdef Py_ssize_t i
    cdef floating a
    cdef floating slope = <floating>LEAKY_SLOPE
    if act == ACT_SIGMOID:
        for i in range(i0, i1):
            a = A[i]
            D[i] = (D[i] * (a * (1 - a))) * M[i]
    elif act == ACT_TANH:
        for i in range(i0, i1):
            a = A[i]
            D[i] = (D[i] * (1 - a * a)) * M[i]
    elif act == ACT_RELU:
        for i in range(i0, i1):
            D[i] = (D[i] if A[i] > 0 else 0) * M[i]
    elif act == ACT_LEAKY:
        for i in range(i0, i1):
            D[i] = (D[i] if A[i] > 0 else D[i] * slope) * M[i]
    else:
        for i in range(i0, i1):
            D[i] = D[i] * M[i]


cdef void loss_delta_rows(const Shape* s, const floating* A_out, const floating* Z_out,
                          floating* D, const floating* Y, const cnp.intp_t* rows,
                          const cnp.int64_t* labels, Py_ssize_t r0, Py_ssize_t r1,
                          double* row_loss, unsigned char* row_correct) noexcept nogil:
    """Loss, output error δ^L (BP1) and correctness for rows r0..r1-1 of a block.

    Row ``r`` of the block is example ``rows[r]`` (or ``r`` when ``rows`` is
    NULL) of ``Y``/``labels``.  ``row_loss[r]`` gets the row's loss (not yet
    averaged), ``row_correct[r]`` whether argmax(a) equals the label.
    """
    cdef Py_ssize_t k = s.sizes[s.n_layers], r, j, idx, best
    cdef const floating* a
    cdef const floating* z
    cdef const floating* y
    cdef floating* d
    cdef floating res, dot, mx, t
    cdef double acc
    for r in range(r0, r1):
        idx = rows[r] if rows != NULL else r
        a = A_out + r * k
        z = Z_out + r * k
        y = Y + idx * k
        d = D + r * k
        acc = 0
        if s.loss == LOSS_QUADRATIC:
            for j in range(k):
                res = a[j] - y[j]
                acc += <double>(res * res)
            acc = 0.5 * acc
            if s.output == ACT_IDENTITY:
                for j in range(k):
                    d[j] = a[j] - y[j]
            elif s.output == ACT_SIGMOID:
                for j in range(k):
                    d[j] = (a[j] - y[j]) * (a[j] * (1 - a[j]))
            else:  # softmax: δ_k = a_k (r_k − Σ_j r_j a_j)
                dot = 0
                for j in range(k):
                    dot = dot + (a[j] - y[j]) * a[j]
                for j in range(k):
                    d[j] = a[j] * ((a[j] - y[j]) - dot)
        else:
            for j in range(k):
                d[j] = a[j] - y[j]
            if s.output == ACT_SOFTMAX:
                # log a_j = (z_j − z_b) + log a_b for any b (a = softmax(z), computed in
                # the forward pass); with b = argmax a, a_b >= 1/k: no second exp pass
                best = 0
                for j in range(1, k):
                    if a[j] > a[best]:
                        best = j
                t = _log(a[best])
                mx = z[best]
                for j in range(k):
                    acc -= <double>(y[j] * ((z[j] - mx) + t))
            else:  # sigmoid: max(z, 0) − z·y + log(1 + e^−|z|)
                for j in range(k):
                    acc += <double>((z[j] if z[j] > 0 else 0) - z[j] * y[j]
                                    + _log1p(_exp_nonpos(-_fabs(z[j]))))
        row_loss[r] = acc
        if labels != NULL:
            best = 0
            for j in range(1, k):
                if a[j] > a[best]:
                    best = j
            row_correct[r] = best == labels[idx]
        else:
            row_correct[r] = 0


cdef void col_sum(const floating* D, Py_ssize_t n, Py_ssize_t m, floating* out) noexcept nogil:
    """out[j] = Σ_r D[r, j], adding the rows in order (as NumPy's sum(axis=0))."""
    col_sum_range(D, n, m, 0, m, out)


cdef void col_sum_range(const floating* D, Py_ssize_t n, Py_ssize_t m, Py_ssize_t j0,
                        Py_ssize_t j1, floating* out) noexcept nogil:
    """col_sum for the columns j0..j1-1 of D (n, m) only: out[j] for j in j0..j1-1."""
    cdef Py_ssize_t r, j
    cdef const floating* dr
    for j in range(j0, j1):
        out[j] = D[j]
    for r in range(1, n):
        dr = D + r * m
        for j in range(j0, j1):
            out[j] = out[j] + dr[j]


cdef StepOut sum_rows(const double* row_loss, const unsigned char* row_correct,
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
# The optimizer update on a range of parameters
# --------------------------------------------------------------------------

cdef void update_range(floating* p, floating* G, Py_ssize_t n_src, Py_ssize_t stride,
                       Py_ssize_t i0, Py_ssize_t i1, floating n_rows, bint decay,
                       const Opt* o, floating* m, floating* v) noexcept nogil:
    """Optimizer step on parameters i0..i1-1 from gradient sums.

    The mean gradient is ``g = (G[i] + G[stride + i] + ...) / n_rows``, the
    ``n_src`` buffers added in order (into ``G[i]``, which is scratch); then
    exactly the operations of reference.sgd_update / reference.adam_update
    (weight decay on this range when ``decay``).  One loop per optimizer so
    that the compiler vectorises them.
    """
    cdef Py_ssize_t i, c
    cdef floating g, lr = <floating>o.lr, mu = <floating>o.momentum
    cdef floating wd = <floating>o.weight_decay
    cdef floating b1 = <floating>o.beta1, b2 = <floating>o.beta2, eps = <floating>o.eps
    cdef floating one_b1 = <floating>(1 - o.beta1), one_b2 = <floating>(1 - o.beta2)
    cdef floating step_size = <floating>(o.lr / o.bc1), inv_sqrt_bc2 = <floating>(1 / sqrt(o.bc2))
    cdef floating inv_rows = 1 / n_rows
    cdef bint use_wd = decay and o.weight_decay != 0
    cdef floating* Gc
    for c in range(1, n_src):
        Gc = G + c * stride
        for i in range(i0, i1):
            G[i] = G[i] + Gc[i]
    if o.kind == OPT_ADAM:
        # reference.adam_update's lr·(m/bc1)/(√(v/bc2) + ε) with the constant
        # divisions taken out of the loop: one division and one square root per
        # parameter instead of three and one (equal to rounding; the loop is
        # bound by the divider: a 784-100-10 float32 epoch went 300 → 255 ms)
        for i in range(i0, i1):
            g = G[i] * inv_rows
            if use_wd:
                g = g + wd * p[i]
            m[i] = m[i] * b1 + one_b1 * g
            v[i] = v[i] * b2 + one_b2 * g * g
            p[i] = p[i] - step_size * m[i] / (_sqrt(v[i]) * inv_sqrt_bc2 + eps)
    elif o.momentum == 0:
        if use_wd:
            for i in range(i0, i1):
                g = G[i] / n_rows + wd * p[i]
                p[i] = p[i] - lr * g
        else:
            for i in range(i0, i1):
                p[i] = p[i] - lr * (G[i] / n_rows)
    elif o.nesterov:
        for i in range(i0, i1):
            g = G[i] / n_rows
            if use_wd:
                g = g + wd * p[i]
            m[i] = m[i] * mu + g
            p[i] = p[i] - lr * (g + mu * m[i])
    else:
        for i in range(i0, i1):
            g = G[i] / n_rows
            if use_wd:
                g = g + wd * p[i]
            m[i] = m[i] * mu + g
            p[i] = p[i] - lr * m[i]


cdef void momentum_range(floating* p, floating* vel, Py_ssize_t i0, Py_ssize_t i1,
                         const Opt* o) noexcept nogil:
    """Second half of the fused momentum step: v += λ·W (if any); W −= lr·v."""
    cdef Py_ssize_t i
    cdef floating lr = <floating>o.lr, wd = <floating>o.weight_decay
    if o.weight_decay != 0:
        for i in range(i0, i1):
            vel[i] = vel[i] + wd * p[i]
            p[i] = p[i] - lr * vel[i]
    else:
        for i in range(i0, i1):
            p[i] = p[i] - lr * vel[i]


# --------------------------------------------------------------------------
# Forward and backward on a block of rows (one chunk, one batch, or one worker's batch)
# --------------------------------------------------------------------------

cdef void block_forward(const Shape* s, const floating* theta, const floating* A0,
                        floating* scr, Py_ssize_t cap, Py_ssize_t n,
                        const Drop* d, floating* dbuf, Py_ssize_t row0) noexcept nogil:
    """Forward pass for ``n`` rows: A0 (n, sizes[0]) → A_1 .. A_L and Z_out in ``scr``.

    The GEMMs use whatever threads the BLAS pool is limited to; the fused
    bias + activation pass runs on this thread.  With dropout ``d`` (else
    NULL) a hidden layer's masked activations Ã = A ⊙ M go to ``dbuf`` and
    feed the next layer; A itself stays unmasked (σ' is computed from it).
    The masks M are drawn here for batch rows row0.. (or, when ``d`` does not
    generate them, taken from ``dbuf``).
    """
    cdef int L = s.n_layers, l, act
    cdef Py_ssize_t n_in, n_out, i
    cdef const floating* A_prev = A0
    cdef floating* Z
    cdef floating* A
    cdef floating* M
    cdef floating* At
    for l in range(L):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        A = act_ptr(s, scr, cap, l + 1)
        Z = zout_ptr(s, scr, cap) if l == L - 1 else A
        act = s.output if l == L - 1 else s.hidden
        # z^l = a^{l-1} W^lᵀ (+ b^l and σ in one pass below)
        gemm(False, True, n, n_out, n_in, <floating>1, A_prev, n_in, theta + s.w_off[l], n_in,
             <floating>0, Z, n_out)
        bias_act_rows(Z, A, theta + s.b_off[l], 0, n, n_out, act)
        A_prev = A
        if d != NULL and l < L - 1 and d.active[l]:
            if d.in_place:
                drop_in_place(d, l, A, row0, n, n_out)
                continue
            M = mask_ptr(d, dbuf, cap, l)
            At = dropped_ptr(d, dbuf, cap, l)
            if d.generate:
                drop_rows(d, l, A, M, At, row0, n, n_out)
            else:
                for i in range(n * n_out):
                    At[i] = A[i] * M[i]
            A_prev = At


cdef void block_backward_grad(const Shape* s, const floating* theta, const floating* A0,
                              floating* scr, Py_ssize_t cap, Py_ssize_t n,
                              floating* G, const Drop* d, floating* dbuf) noexcept nogil:
    """Backward pass for ``n`` rows whose output error δ^L is in D_0.

    Writes the gradient *sums* over the rows (not divided by n) into ``G``,
    laid out like theta: G[W_l] = δ^lᵀ a^{l-1} (BP4), G[b_l] = Σ_rows δ^l (BP3).
    With dropout ``d``: BP4 uses the masked Ã^{l-1}, and BP2 gains the factor M.
    """
    cdef int L = s.n_layers, l, which = 0
    cdef Py_ssize_t n_in, n_out
    cdef floating* delta = delta_ptr(s, scr, cap, 0)
    cdef floating* prev
    cdef const floating* A_prev
    cdef const floating* A_in
    cdef bint masked
    for l in range(L - 1, -1, -1):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        A_prev = A0 if l == 0 else act_ptr(s, scr, cap, l)
        masked = d != NULL and l > 0 and d.active[l - 1]
        A_in = dropped_ptr(d, dbuf, cap, l - 1) if masked and not d.in_place else A_prev
        if l > 0:   # BP2: δ^{l-1} = (δ^l W^l) ⊙ σ'(a^{l-1}) (⊙ M^{l-1})
            prev = delta_ptr(s, scr, cap, 1 - which)
            gemm(False, False, n, n_in, n_out, <floating>1, delta, n_out, theta + s.w_off[l], n_in,
                 <floating>0, prev, n_in)
            if masked and d.in_place:
                relu_drop_deriv(prev, A_prev, d.scale[l - 1], n * n_in)
            elif masked:
                deriv_mask_range(prev, A_prev, mask_ptr(d, dbuf, cap, l - 1), 0, n * n_in, s.hidden)
            else:
                deriv_range(prev, A_prev, 0, n * n_in, s.hidden)
        gemm(True, False, n_out, n_in, n, <floating>1, delta, n_out, A_in, n_in,
             <floating>0, G + s.w_off[l], n_in)
        col_sum(delta, n, n_out, G + s.b_off[l])
        if l > 0:
            which = 1 - which
            delta = prev


cdef void chunk_loss_grad(const Shape* s, const floating* theta, const floating* X,
                          const floating* Y, const cnp.intp_t* rows, const cnp.int64_t* labels,
                          Py_ssize_t n, floating* scr, Py_ssize_t cap, floating* G,
                          double* row_loss, unsigned char* row_correct) noexcept nogil:
    """One chunk, single-threaded: gather its ``n`` rows, forward, loss, backward into G.

    This is the per-thread unit of work: its own scratch ``scr`` (cap rows)
    and its own gradient buffer ``G`` (n_params); nothing shared is written
    except this chunk's ``row_loss``/``row_correct`` slots.
    """
    chunk_loss_grad_terms(s, theta, X, Y, rows, labels, n, scr, cap, G, row_loss, row_correct,
                          NULL, 0, NULL)


cdef void chunk_loss_grad_terms(const Shape* s, const floating* theta, const floating* X,
                                const floating* Y, const cnp.intp_t* rows,
                                const cnp.int64_t* labels, Py_ssize_t n, floating* scr,
                                Py_ssize_t cap, floating* G, double* row_loss,
                                unsigned char* row_correct, const Terms* t, Py_ssize_t row0,
                                floating* dbuf) noexcept nogil:
    """:func:`chunk_loss_grad` with the training terms ``t`` (or NULL): sample weights
    scale δ^L and the row losses; dropout masks (for batch rows row0.., in ``dbuf``)
    are drawn here, in the chunk's thread."""
    cdef floating* A0 = act_ptr(s, scr, cap, 0)
    cdef int L = s.n_layers
    cdef const Drop* d = t.drop if t != NULL else NULL
    gather_rows(X, rows, 0, n, s.sizes[0], A0)
    block_forward(s, theta, A0, scr, cap, n, d, dbuf, row0)
    loss_delta_rows(s, act_ptr(s, scr, cap, L), zout_ptr(s, scr, cap),
                    delta_ptr(s, scr, cap, 0), Y, rows, labels, 0, n, row_loss, row_correct)
    if t != NULL and t.weight != NULL:
        weight_rows(delta_ptr(s, scr, cap, 0), row_loss, t.weight, rows, n, s.sizes[L],
                    t.weight_scale)
    block_backward_grad(s, theta, A0, scr, cap, n, G, d, dbuf)


def exp_nonpos(const floating[::1] x):
    """The kernels' e^x (x <= 0, cymlp/_vmath.pxd) of every element: for the accuracy tests."""
    out = np.empty(x.shape[0], dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] y = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            y[i] = _exp_nonpos(x[i])
    return out
