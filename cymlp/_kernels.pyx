# cython: language_level=3
"""Compiled passes of cymlp and the whole-epoch training loop.

Three layers, as in scikit-learn's k-means kernels:

1. :mod:`cymlp._cython_backend` validates nothing more (network.py did), picks
   the mode and the threads, and limits the BLAS thread pool once per fit;
2. typed ``def`` entry points here (:class:`SyncTrainer`, :func:`forward`,
   :func:`loss_grad`) unpack the arrays into pointers and release the GIL;
3. ``cdef ... noexcept nogil`` helpers do the work on a range of rows with
   their own buffers: gather, forward (GEMM + fused bias/activation),
   loss and output error, backward (GEMMs + derivative), update.

The flat parameter buffer ``theta`` is laid out per layer as
``[W_0 (n_out·n_in, row-major), b_0, W_1, b_1, ...]`` (see network.py).

Scratch layout for a block of at most ``cap`` rows (one chunk, or the whole
batch)::

    A_0 (cap, sizes[0])  gathered inputs
    A_1 .. A_L           activations of every layer (A_L: the output)
    Z_out (cap, k)       weighted input of the output layer (cross-entropy uses it)
    D_0, D_1 (cap, max width)   errors δ, ping-pong between layers

Two modes split a mini-batch over threads (``prange``, static schedule):

``chunked``
    The batch rows are cut into ``n_chunks(B)`` balanced chunks (a function
    of the batch size only).  Each chunk runs forward and backward on its rows
    with single-threaded BLAS into its own gradient buffer; the buffers are
    then summed in chunk order, fused with the optimizer update.  The
    arithmetic does not depend on the thread count: weights are bitwise equal
    for any ``n_threads``.
``batch``
    One (BLAS-multithreaded) GEMM per product on the whole batch; the
    elementwise passes (fused bias + activation, loss and δ, derivative)
    stay on the calling thread so the BLAS pool and an OpenMP team never
    compete for the cores.  Plain SGD and momentum fold the update into the
    weight-gradient GEMM (``C = αAB + βC``).  Equal across thread counts to
    rounding only (the BLAS's threaded summation order).
"""

cimport cython
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf, sqrt, sqrtf
from libc.math cimport fabs, fabsf, pow, isfinite
from libc.string cimport memcpy, memset

import numpy as np
cimport numpy as cnp

from ._blas cimport floating, gemm
from ._openmp cimport CYMLP_OPENMP_ENABLED, CYMLP_DEBUG, omp_get_max_threads

cnp.import_array()

OPENMP_ENABLED = bool(CYMLP_OPENMP_ENABLED)
DEBUG_BUILD = bool(CYMLP_DEBUG)

ACTIVATION_CODES = {"sigmoid": 0, "tanh": 1, "relu": 2, "leaky_relu": 3, "softmax": 4, "identity": 5}
LOSS_CODES = {"quadratic": 0, "cross_entropy": 1}
MODES = {"chunked": 0, "batch": 1}

cdef enum:
    ACT_SIGMOID = 0
    ACT_TANH = 1
    ACT_RELU = 2
    ACT_LEAKY = 3
    ACT_SOFTMAX = 4
    ACT_IDENTITY = 5

cdef enum:
    LOSS_QUADRATIC = 0
    LOSS_CE = 1

cdef enum:
    MODE_CHUNKED = 0
    MODE_BATCH = 1

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1

cdef double LEAKY_SLOPE = 0.01

# Rows per chunk in chunked mode (chunks are balanced: B rows make
# ceil(B / CHUNK_ROWS) chunks of nearly equal size), and the cap on chunks.
CHUNK_ROWS = 32
cdef Py_ssize_t _CHUNK_ROWS = 32
cdef Py_ssize_t _MAX_CHUNKS = 64
# Elementwise passes hand each thread blocks of about this many elements.
cdef Py_ssize_t _ELEM_BLOCK = 8192


def openmp_max_threads():
    """``omp_get_max_threads()`` (1 when built without OpenMP)."""
    return omp_get_max_threads()


def n_chunks_for(Py_ssize_t batch_rows):
    """Chunks a batch of ``batch_rows`` rows is cut into in chunked mode."""
    return _n_chunks(batch_rows)


cdef inline Py_ssize_t _n_chunks(Py_ssize_t rows) noexcept nogil:
    cdef Py_ssize_t c = (rows + _CHUNK_ROWS - 1) // _CHUNK_ROWS
    if c > _MAX_CHUNKS:
        c = _MAX_CHUNKS
    return c if c > 0 else 1


# --------------------------------------------------------------------------
# Network shape and optimizer settings as plain C structs
# --------------------------------------------------------------------------

cdef struct Shape:
    int n_layers
    int hidden
    int output
    int loss
    Py_ssize_t* sizes     # (n_layers + 1,)
    Py_ssize_t* w_off     # (n_layers,) offset of W_l in theta
    Py_ssize_t* b_off     # (n_layers,) offset of b_l in theta
    Py_ssize_t* cum       # (n_layers + 2,) cum[l] = sizes[0] + ... + sizes[l-1]
    Py_ssize_t max_width  # max(sizes[1:])
    Py_ssize_t n_params
    Py_ssize_t row_width  # scratch elements per row


cdef struct Opt:
    int kind
    bint nesterov
    double lr
    double momentum
    double weight_decay
    double beta1
    double beta2
    double eps
    double bc1            # 1 - beta1**step
    double bc2            # 1 - beta2**step


cdef Opt _make_opt(str optimizer, double momentum, bint nesterov, double weight_decay,
                   double beta1, double beta2, double eps):
    """The optimizer settings of a fit (lr and Adam's bias corrections are set per step)."""
    cdef Opt o
    o.kind = OPT_ADAM if optimizer == "adam" else OPT_SGD
    o.momentum, o.nesterov, o.weight_decay = momentum, nesterov, weight_decay
    o.beta1, o.beta2, o.eps = beta1, beta2, eps
    o.lr = 0
    o.bc1 = o.bc2 = 1
    return o


cdef inline void _adam_corrections(Opt* o, double step) noexcept nogil:
    """Adam's bias corrections 1 − β^t for step ``t`` (counted from 1)."""
    o.bc1 = 1 - pow(o.beta1, step)
    o.bc2 = 1 - pow(o.beta2, step)


cdef class Plan:
    """The network's shape as C arrays, built once per call or fit."""
    cdef Shape s
    cdef cnp.intp_t[::1] _ints

    def __init__(self, sizes, hidden, output, loss):
        cdef Py_ssize_t L = len(sizes) - 1, l, off = 0
        self._ints = np.zeros(4 * L + 4, dtype=np.intp)
        cdef Py_ssize_t* base = <Py_ssize_t*>&self._ints[0]
        self.s.n_layers = <int>L
        self.s.hidden = ACTIVATION_CODES[hidden]
        self.s.output = ACTIVATION_CODES[output]
        self.s.loss = LOSS_CODES[loss]
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
    def n_params(self):
        return self.s.n_params

    @property
    def row_width(self):
        """Scratch elements per row (activations of all layers, Z_out, two δ)."""
        return self.s.row_width


# --------------------------------------------------------------------------
# Scalar helpers, one source for float and double
# --------------------------------------------------------------------------

cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _fabs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating* _act_ptr(const Shape* s, floating* scr, Py_ssize_t cap, int l) noexcept nogil:
    """Activations A_l of a scratch block (A_0 is the gathered input)."""
    return scr + cap * s.cum[l]


cdef inline floating* _zout_ptr(const Shape* s, floating* scr, Py_ssize_t cap) noexcept nogil:
    return scr + cap * s.cum[s.n_layers + 1]


cdef inline floating* _delta_ptr(const Shape* s, floating* scr, Py_ssize_t cap, int which) noexcept nogil:
    return scr + cap * (s.cum[s.n_layers + 1] + s.sizes[s.n_layers] + which * s.max_width)


# --------------------------------------------------------------------------
# Elementwise passes on a range of rows (serial; callers parallelise)
# --------------------------------------------------------------------------

cdef void _bias_act_rows(floating* Z, floating* A, const floating* b, Py_ssize_t r0, Py_ssize_t r1,
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
                e = _exp(-_fabs(z))
                ar[j] = 1 / (1 + e) if z >= 0 else e / (1 + e)
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
                e = _exp(zr[j] - mx)
                ar[j] = e
                total = total + e
            for j in range(m):
                ar[j] = ar[j] / total


cdef void _deriv_range(floating* D, const floating* A, Py_ssize_t i0, Py_ssize_t i1,
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


cdef void _loss_delta_rows(const Shape* s, const floating* A_out, const floating* Z_out,
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
    cdef double acc, total
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
                mx = z[0]
                for j in range(k):
                    if z[j] > mx:
                        mx = z[j]
                t = 0
                for j in range(k):
                    t = t + _exp(z[j] - mx)
                t = _log(t)
                for j in range(k):
                    acc -= <double>(y[j] * ((z[j] - mx) - t))
            else:  # sigmoid: max(z, 0) − z·y + log(1 + e^−|z|)
                for j in range(k):
                    acc += <double>((z[j] if z[j] > 0 else 0) - z[j] * y[j]
                                    + _log1p(_exp(-_fabs(z[j]))))
        row_loss[r] = acc
        if labels != NULL:
            best = 0
            for j in range(1, k):
                if a[j] > a[best]:
                    best = j
            row_correct[r] = best == labels[idx]
        else:
            row_correct[r] = 0


cdef void _col_sum(const floating* D, Py_ssize_t n, Py_ssize_t m, floating* out) noexcept nogil:
    """out[j] = Σ_r D[r, j], adding the rows in order (as NumPy's sum(axis=0))."""
    cdef Py_ssize_t r, j
    cdef const floating* dr
    for j in range(m):
        out[j] = D[j]
    for r in range(1, n):
        dr = D + r * m
        for j in range(m):
            out[j] = out[j] + dr[j]


cdef void _gather_rows(const floating* X, const cnp.intp_t* rows, Py_ssize_t r0, Py_ssize_t r1,
                       Py_ssize_t width, floating* out) noexcept nogil:
    """out[r] = X[rows[r]] for r in r0..r1-1."""
    cdef Py_ssize_t r
    for r in range(r0, r1):
        memcpy(out + r * width, X + rows[r] * width, width * sizeof(floating))


cdef void _update_range(floating* p, floating* G, Py_ssize_t n_src, Py_ssize_t stride,
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
    cdef floating bc1 = <floating>o.bc1, bc2 = <floating>o.bc2
    cdef bint use_wd = decay and o.weight_decay != 0
    cdef floating* Gc
    for c in range(1, n_src):
        Gc = G + c * stride
        for i in range(i0, i1):
            G[i] = G[i] + Gc[i]
    if o.kind == OPT_ADAM:
        for i in range(i0, i1):
            g = G[i] / n_rows
            if use_wd:
                g = g + wd * p[i]
            m[i] = m[i] * b1 + one_b1 * g
            v[i] = v[i] * b2 + one_b2 * g * g
            p[i] = p[i] - lr * (m[i] / bc1) / (_sqrt(v[i] / bc2) + eps)
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


cdef void _momentum_range(floating* p, floating* vel, Py_ssize_t i0, Py_ssize_t i1,
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
# Parallel drivers of the elementwise passes (serial when nthreads == 1)
# --------------------------------------------------------------------------

cdef inline Py_ssize_t _row_block(Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t rb = _ELEM_BLOCK // (m if m > 0 else 1)
    return rb if rb > 0 else 1


cdef void _bias_act(floating* Z, floating* A, const floating* b, Py_ssize_t n, Py_ssize_t m,
                    int act, int nthreads) noexcept nogil:
    cdef Py_ssize_t rb = _row_block(m), nb = (n + rb - 1) // rb, i
    if nthreads <= 1 or nb < 2:
        _bias_act_rows(Z, A, b, 0, n, m, act)
        return
    for i in prange(nb, schedule='static', num_threads=nthreads):
        _bias_act_rows(Z, A, b, i * rb, min((i + 1) * rb, n), m, act)


cdef void _deriv(floating* D, const floating* A, Py_ssize_t count, int act, int nthreads) noexcept nogil:
    cdef Py_ssize_t nb = (count + _ELEM_BLOCK - 1) // _ELEM_BLOCK, i
    if nthreads <= 1 or nb < 2:
        _deriv_range(D, A, 0, count, act)
        return
    for i in prange(nb, schedule='static', num_threads=nthreads):
        _deriv_range(D, A, i * _ELEM_BLOCK, min((i + 1) * _ELEM_BLOCK, count), act)


cdef void _loss_delta(const Shape* s, const floating* A_out, const floating* Z_out, floating* D,
                      const floating* Y, const cnp.intp_t* rows, const cnp.int64_t* labels,
                      Py_ssize_t n, double* row_loss, unsigned char* row_correct,
                      int nthreads) noexcept nogil:
    cdef Py_ssize_t rb = _row_block(s.sizes[s.n_layers]), nb = (n + rb - 1) // rb, i
    if nthreads <= 1 or nb < 2:
        _loss_delta_rows(s, A_out, Z_out, D, Y, rows, labels, 0, n, row_loss, row_correct)
        return
    for i in prange(nb, schedule='static', num_threads=nthreads):
        _loss_delta_rows(s, A_out, Z_out, D, Y, rows, labels, i * rb, min((i + 1) * rb, n),
                         row_loss, row_correct)


cdef void _update(floating* p, floating* G, Py_ssize_t n_src, Py_ssize_t stride,
                  Py_ssize_t count, floating n_rows, bint decay, const Opt* o,
                  floating* m, floating* v, int nthreads) noexcept nogil:
    """_update_range over ``count`` parameters starting at the given pointers."""
    cdef Py_ssize_t nb = (count + _ELEM_BLOCK - 1) // _ELEM_BLOCK, i
    if nthreads <= 1 or nb < 2:
        _update_range(p, G, n_src, stride, 0, count, n_rows, decay, o, m, v)
        return
    for i in prange(nb, schedule='static', num_threads=nthreads):
        _update_range(p, G, n_src, stride, i * _ELEM_BLOCK, min((i + 1) * _ELEM_BLOCK, count),
                      n_rows, decay, o, m, v)


cdef void _momentum(floating* p, floating* vel, Py_ssize_t count, const Opt* o,
                    int nthreads) noexcept nogil:
    cdef Py_ssize_t nb = (count + _ELEM_BLOCK - 1) // _ELEM_BLOCK, i
    if nthreads <= 1 or nb < 2:
        _momentum_range(p, vel, 0, count, o)
        return
    for i in prange(nb, schedule='static', num_threads=nthreads):
        _momentum_range(p, vel, i * _ELEM_BLOCK, min((i + 1) * _ELEM_BLOCK, count), o)


# --------------------------------------------------------------------------
# Forward and backward on a block of rows (reusable per chunk or per thread)
# --------------------------------------------------------------------------

cdef void block_forward(const Shape* s, const floating* theta, const floating* A0,
                        floating* scr, Py_ssize_t cap, Py_ssize_t n,
                        int nthreads) noexcept nogil:
    """Forward pass for ``n`` rows: A0 (n, sizes[0]) → A_1 .. A_L and Z_out in ``scr``.

    ``nthreads`` only parallelises the elementwise passes; BLAS threads are
    whatever the pool is limited to.
    """
    cdef int L = s.n_layers, l, act
    cdef Py_ssize_t n_in, n_out
    cdef const floating* A_prev = A0
    cdef floating* Z
    cdef floating* A
    for l in range(L):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        A = _act_ptr(s, scr, cap, l + 1)
        Z = _zout_ptr(s, scr, cap) if l == L - 1 else A
        act = s.output if l == L - 1 else s.hidden
        # z^l = a^{l-1} W^lᵀ (+ b^l and σ in one pass below)
        gemm(False, True, n, n_out, n_in, <floating>1, A_prev, n_in, theta + s.w_off[l], n_in,
             <floating>0, Z, n_out)
        _bias_act(Z, A, theta + s.b_off[l], n, n_out, act, nthreads)
        A_prev = A


cdef void block_backward_grad(const Shape* s, const floating* theta, const floating* A0,
                              floating* scr, Py_ssize_t cap, Py_ssize_t n, floating* G,
                              int nthreads) noexcept nogil:
    """Backward pass for ``n`` rows whose output error δ^L is in D_0.

    Writes the gradient *sums* over the rows (not divided by n) into ``G``,
    laid out like theta: G[W_l] = δ^lᵀ a^{l-1} (BP4), G[b_l] = Σ_rows δ^l (BP3).
    """
    cdef int L = s.n_layers, l, which = 0
    cdef Py_ssize_t n_in, n_out
    cdef floating* delta = _delta_ptr(s, scr, cap, 0)
    cdef floating* prev
    cdef const floating* A_prev
    for l in range(L - 1, -1, -1):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        A_prev = A0 if l == 0 else _act_ptr(s, scr, cap, l)
        if l > 0:   # BP2: δ^{l-1} = (δ^l W^l) ⊙ σ'(a^{l-1})
            prev = _delta_ptr(s, scr, cap, 1 - which)
            gemm(False, False, n, n_in, n_out, <floating>1, delta, n_out, theta + s.w_off[l], n_in,
                 <floating>0, prev, n_in)
            _deriv(prev, A_prev, n * n_in, s.hidden, nthreads)
        gemm(True, False, n_out, n_in, n, <floating>1, delta, n_out, A_prev, n_in,
             <floating>0, G + s.w_off[l], n_in)
        _col_sum(delta, n, n_out, G + s.b_off[l])
        if l > 0:
            which = 1 - which
            delta = prev


cdef void block_backward_update(const Shape* s, floating* theta, const floating* A0,
                                floating* scr, Py_ssize_t cap, Py_ssize_t n, floating* G,
                                floating* m, floating* v, const Opt* o,
                                int nthreads) noexcept nogil:
    """Backward pass and optimizer step for ``n`` rows (the whole batch), δ^L in D_0.

    Each layer's update happens right after its δ^{l-1} has been computed
    from the old W^l.  Plain SGD folds the update into the gradient GEMM:
    W ← (1 − lr·λ)·W − (lr/n)·δᵀA; momentum folds the velocity:
    v ← μ·v + δᵀA/n, then v += λ·W, W −= lr·v.  Nesterov and Adam go through
    the gradient buffer G and an elementwise pass.
    """
    cdef int L = s.n_layers, l, which = 0
    cdef Py_ssize_t n_in, n_out, nw
    cdef floating* delta = _delta_ptr(s, scr, cap, 0)
    cdef floating* prev
    cdef floating* W
    cdef const floating* A_prev
    cdef floating rows = <floating>n
    for l in range(L - 1, -1, -1):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        nw = n_in * n_out
        W = theta + s.w_off[l]
        A_prev = A0 if l == 0 else _act_ptr(s, scr, cap, l)
        if l > 0:
            prev = _delta_ptr(s, scr, cap, 1 - which)
            gemm(False, False, n, n_in, n_out, <floating>1, delta, n_out, W, n_in,
                 <floating>0, prev, n_in)
            _deriv(prev, A_prev, n * n_in, s.hidden, nthreads)
        if o.kind == OPT_SGD and o.momentum == 0:
            gemm(True, False, n_out, n_in, n, <floating>(-o.lr / n), delta, n_out, A_prev, n_in,
                 <floating>(1 - o.lr * o.weight_decay), W, n_in)
        elif o.kind == OPT_SGD and not o.nesterov:
            gemm(True, False, n_out, n_in, n, <floating>(1.0 / n), delta, n_out, A_prev, n_in,
                 <floating>o.momentum, m + s.w_off[l], n_in)
            _momentum(W, m + s.w_off[l], nw, o, nthreads)
        else:
            gemm(True, False, n_out, n_in, n, <floating>1, delta, n_out, A_prev, n_in,
                 <floating>0, G + s.w_off[l], n_in)
            _update(W, G + s.w_off[l], 1, 0, nw, rows, True, o, m + s.w_off[l], v + s.w_off[l],
                    nthreads)
        _col_sum(delta, n, n_out, G + s.b_off[l])
        _update(theta + s.b_off[l], G + s.b_off[l], 1, 0, n_out, rows, False, o,
                m + s.b_off[l], v + s.b_off[l], 1)
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
    cdef floating* A0 = _act_ptr(s, scr, cap, 0)
    cdef int L = s.n_layers
    _gather_rows(X, rows, 0, n, s.sizes[0], A0)
    block_forward(s, theta, A0, scr, cap, n, 1)
    _loss_delta_rows(s, _act_ptr(s, scr, cap, L), _zout_ptr(s, scr, cap),
                     _delta_ptr(s, scr, cap, 0), Y, rows, labels, 0, n, row_loss, row_correct)
    block_backward_grad(s, theta, A0, scr, cap, n, G, 1)


# --------------------------------------------------------------------------
# One synchronous step and the epoch loop
# --------------------------------------------------------------------------

cdef struct StepOut:
    double loss_sum
    Py_ssize_t correct
    bint finite


cdef StepOut _sum_rows(const double* row_loss, const unsigned char* row_correct,
                       Py_ssize_t n) noexcept nogil:
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


cdef StepOut step_chunked(const Shape* s, floating* theta, const floating* X, const floating* Y,
                          const cnp.intp_t* rows, const cnp.int64_t* labels, Py_ssize_t n,
                          floating* scratch, Py_ssize_t chunk_cap, floating* grads,
                          floating* m, floating* v, double* row_loss,
                          unsigned char* row_correct, Opt* o, int nthreads) noexcept nogil:
    """One SGD step on ``n`` rows split into balanced chunks (see module doc)."""
    cdef Py_ssize_t n_chunks = _n_chunks(n), c, r0, r1, l, P = s.n_params
    cdef Py_ssize_t scr_stride = chunk_cap * s.row_width
    cdef int threads = nthreads if nthreads < n_chunks else <int>n_chunks
    cdef StepOut out
    if threads <= 1:
        for c in range(n_chunks):
            r0 = c * n // n_chunks
            r1 = (c + 1) * n // n_chunks
            chunk_loss_grad(s, theta, X, Y, rows + r0, labels, r1 - r0,
                            scratch + c * scr_stride, chunk_cap, grads + c * P,
                            row_loss + r0, row_correct + r0)
    else:
        for c in prange(n_chunks, schedule='static', num_threads=threads):
            r0 = c * n // n_chunks
            r1 = (c + 1) * n // n_chunks
            chunk_loss_grad(s, theta, X, Y, rows + r0, labels, r1 - r0,
                            scratch + c * scr_stride, chunk_cap, grads + c * P,
                            row_loss + r0, row_correct + r0)
    out = _sum_rows(row_loss, row_correct, n)
    if not out.finite:
        return out
    # Fixed-order reduction over the chunk buffers, fused with the update.
    for l in range(s.n_layers):
        _update(theta + s.w_off[l], grads + s.w_off[l], n_chunks, P,
                s.sizes[l] * s.sizes[l + 1], <floating>n, True, o,
                m + s.w_off[l], v + s.w_off[l], nthreads)
        _update(theta + s.b_off[l], grads + s.b_off[l], n_chunks, P, s.sizes[l + 1],
                <floating>n, False, o, m + s.b_off[l], v + s.b_off[l], 1)
    return out


cdef StepOut step_batch(const Shape* s, floating* theta, const floating* X, const floating* Y,
                        const cnp.intp_t* rows, const cnp.int64_t* labels, Py_ssize_t n,
                        floating* scratch, Py_ssize_t cap, floating* grads,
                        floating* m, floating* v, double* row_loss,
                        unsigned char* row_correct, Opt* o, int nthreads) noexcept nogil:
    """One SGD step on ``n`` rows with whole-batch GEMMs (BLAS threads).

    The elementwise passes stay on this thread: the BLAS pool owns the cores
    in this mode, and alternating it with an OpenMP team (both spin while
    waiting) oversubscribes them; measured 100x slower on a busy machine.
    ``nthreads`` is kept for the signature and ignored.
    """
    cdef floating* A0 = _act_ptr(s, scratch, cap, 0)
    cdef int L = s.n_layers
    cdef Py_ssize_t width = s.sizes[0]
    cdef StepOut out
    _gather_rows(X, rows, 0, n, width, A0)
    block_forward(s, theta, A0, scratch, cap, n, 1)
    _loss_delta(s, _act_ptr(s, scratch, cap, L), _zout_ptr(s, scratch, cap),
                _delta_ptr(s, scratch, cap, 0), Y, rows, labels, n, row_loss, row_correct, 1)
    out = _sum_rows(row_loss, row_correct, n)
    if not out.finite:
        return out
    block_backward_update(s, theta, A0, scratch, cap, n, grads, m, v, o, 1)
    return out


cdef class SyncTrainer:
    """Buffers and state for one ``fit`` with ``parallel="sync"``.

    Everything is allocated here, once: scratch for every chunk (or the
    whole batch), the gradient buffers, optimizer state, per-row loss slots.
    ``run`` then performs many steps without touching Python objects.
    """
    cdef Plan plan
    cdef object theta, X, Y, labels, scratch, grads, state_m, state_v, row_loss, row_correct
    cdef readonly Py_ssize_t batch_size, cap, n_chunks
    cdef readonly int mode
    cdef public int nthreads      # settable between runs: chunked results do not depend on it
    cdef readonly long step
    cdef Opt opt
    cdef bint is_float, has_labels

    def __init__(self, Plan plan, theta, X, Y, labels, Py_ssize_t batch_size, str mode,
                 int nthreads, str optimizer, double momentum, bint nesterov,
                 double weight_decay, double beta1, double beta2, double eps):
        self.plan = plan
        self.theta, self.X, self.Y = theta, X, Y
        self.has_labels = labels is not None
        self.labels = labels if labels is not None else np.zeros(1, dtype=np.int64)
        self.batch_size = batch_size
        self.mode = MODES[mode]
        self.nthreads = max(1, nthreads)
        self.is_float = theta.dtype == np.float32
        dtype = theta.dtype
        P = plan.s.n_params
        if self.mode == MODE_CHUNKED:
            self.n_chunks = _n_chunks(batch_size)
            # the largest chunk of any batch of <= batch_size rows (the last one may be smaller)
            self.cap = max(min(batch_size, _CHUNK_ROWS), (batch_size + _MAX_CHUNKS - 1) // _MAX_CHUNKS)
            self.scratch = np.zeros(self.n_chunks * self.cap * plan.s.row_width, dtype=dtype)
            self.grads = np.zeros(self.n_chunks * P, dtype=dtype)
        else:
            self.n_chunks = 1
            self.cap = batch_size
            self.scratch = np.zeros(self.cap * plan.s.row_width, dtype=dtype)
            self.grads = np.zeros(P, dtype=dtype)
        self.state_m = np.zeros(P, dtype=dtype)
        self.state_v = np.zeros(P if optimizer == "adam" else 1, dtype=dtype)
        self.row_loss = np.zeros(batch_size, dtype=np.float64)
        self.row_correct = np.zeros(batch_size, dtype=np.uint8)
        self.opt = _make_opt(optimizer, momentum, nesterov, weight_decay, beta1, beta2, eps)
        self.step = 0
        if labels is not None and labels.shape[0] != X.shape[0]:
            raise ValueError("labels and X differ in length")

    def run(self, order, Py_ssize_t first, Py_ssize_t stop, double lr):
        """Steps for batches first..stop-1 of ``order``; see the backend docstring."""
        if self.is_float:
            return _run[float](self, self.theta, self.X, self.Y, self.scratch, self.grads,
                               self.state_m, self.state_v, order, first, stop, lr)
        return _run[double](self, self.theta, self.X, self.Y, self.scratch, self.grads,
                            self.state_m, self.state_v, order, first, stop, lr)


cdef tuple _run(SyncTrainer t, floating[::1] theta, const floating[:, ::1] X,
                const floating[:, ::1] Y, floating[::1] scratch, floating[::1] grads,
                floating[::1] m, floating[::1] v, const cnp.intp_t[::1] order,
                Py_ssize_t first, Py_ssize_t stop, double lr):
    cdef const cnp.int64_t[::1] labels_mv = t.labels
    cdef double[::1] row_loss = t.row_loss
    cdef unsigned char[::1] row_correct = t.row_correct
    cdef const Shape* s = &t.plan.s
    cdef const cnp.int64_t* labels = &labels_mv[0] if t.has_labels else NULL
    cdef Py_ssize_t N = order.shape[0], B = t.batch_size, i, start, n
    cdef double loss_sum = 0
    cdef Py_ssize_t n_correct = 0, n_seen = 0, steps = 0
    cdef StepOut out
    cdef Opt* o = &t.opt
    cdef long step = t.step
    cdef int mode = t.mode, nthreads = t.nthreads
    cdef Py_ssize_t cap = t.cap
    if first < 0 or order.shape[0] != X.shape[0] or Y.shape[0] != X.shape[0]:
        raise ValueError("run: batch range or order does not match the data")
    o.lr = lr
    with nogil:
        for i in range(first, stop):
            start = i * B
            n = min(B, N - start)
            if n <= 0:
                break
            if o.kind == OPT_ADAM:
                _adam_corrections(o, <double>(step + 1))
            if mode == MODE_CHUNKED:
                out = step_chunked(s, &theta[0], &X[0, 0], &Y[0, 0], &order[start], labels, n,
                                   &scratch[0], cap, &grads[0], &m[0], &v[0],
                                   &row_loss[0], &row_correct[0], o, nthreads)
            else:
                out = step_batch(s, &theta[0], &X[0, 0], &Y[0, 0], &order[start], labels, n,
                                 &scratch[0], cap, &grads[0], &m[0], &v[0],
                                 &row_loss[0], &row_correct[0], o, nthreads)
            if not out.finite:
                break
            step += 1
            loss_sum += out.loss_sum / n * n
            n_correct += out.correct
            n_seen += n
            steps += 1
    t.step = step
    return loss_sum, n_correct, n_seen, steps


# --------------------------------------------------------------------------
# Passes outside training: forward, loss, gradient
# --------------------------------------------------------------------------

def forward(Plan plan, const floating[::1] theta, const floating[:, ::1] X, floating[:, ::1] out,
            floating[::1] scratch, Y=None):
    """Output activations of the rows of X into ``out`` (n, k).

    Whole-block GEMMs (threaded by the BLAS pool as limited by the caller);
    the elementwise passes run on this thread, as in batch mode.

    ``scratch`` holds ``n · plan.row_width`` elements.  With targets ``Y``
    (n, k) returns the summed loss over the rows (else None).
    """
    cdef const Shape* s = &plan.s
    cdef Py_ssize_t n = X.shape[0], cap = n, k = s.sizes[s.n_layers]
    cdef int L = s.n_layers
    cdef const floating[:, ::1] Yv
    cdef double[::1] row_loss
    cdef unsigned char[::1] row_correct
    cdef StepOut res
    cdef int nthreads = 1
    if X.shape[1] != s.sizes[0] or out.shape[0] != n or out.shape[1] != k \
            or theta.shape[0] != s.n_params or scratch.shape[0] < n * s.row_width:
        raise ValueError("forward: shapes do not match the network")
    with nogil:
        block_forward(s, &theta[0], &X[0, 0], &scratch[0], cap, n, nthreads)
        memcpy(&out[0, 0], _act_ptr(s, &scratch[0], cap, L), n * k * sizeof(floating))
    if Y is None:
        return None
    Yv = Y
    if Yv.shape[0] != n or Yv.shape[1] != k:
        raise ValueError("forward: Y has the wrong shape")
    row_loss = np.zeros(n, dtype=np.float64)
    row_correct = np.zeros(n, dtype=np.uint8)
    with nogil:
        _loss_delta(s, _act_ptr(s, &scratch[0], cap, L), _zout_ptr(s, &scratch[0], cap),
                    _delta_ptr(s, &scratch[0], cap, 0), &Yv[0, 0], NULL, NULL, n,
                    &row_loss[0], &row_correct[0], nthreads)
        res = _sum_rows(&row_loss[0], &row_correct[0], n)
    return res.loss_sum


def loss_grad(Plan plan, const floating[::1] theta, const floating[:, ::1] X,
              const floating[:, ::1] Y, floating[::1] grad, floating[::1] scratch):
    """Gradient sums over the rows (laid out like theta) into ``grad``; returns the summed loss."""
    cdef const Shape* s = &plan.s
    cdef Py_ssize_t n = X.shape[0], cap = n
    cdef int L = s.n_layers
    cdef double[::1] row_loss = np.zeros(n, dtype=np.float64)
    cdef unsigned char[::1] row_correct = np.zeros(n, dtype=np.uint8)
    cdef StepOut res
    cdef int nthreads = 1
    if X.shape[1] != s.sizes[0] or Y.shape[0] != n or Y.shape[1] != s.sizes[L] \
            or theta.shape[0] != s.n_params or grad.shape[0] != s.n_params \
            or scratch.shape[0] < n * s.row_width:
        raise ValueError("loss_grad: shapes do not match the network")
    with nogil:
        block_forward(s, &theta[0], &X[0, 0], &scratch[0], cap, n, nthreads)
        _loss_delta(s, _act_ptr(s, &scratch[0], cap, L), _zout_ptr(s, &scratch[0], cap),
                    _delta_ptr(s, &scratch[0], cap, 0), &Y[0, 0], NULL, NULL, n,
                    &row_loss[0], &row_correct[0], nthreads)
        res = _sum_rows(&row_loss[0], &row_correct[0], n)
        block_backward_grad(s, &theta[0], &X[0, 0], &scratch[0], cap, n, &grad[0], nthreads)
    return res.loss_sum


# --------------------------------------------------------------------------
# parallel="hogwild" and parallel="average": one worker per thread
# --------------------------------------------------------------------------
#
# The epoch's global batches 0..n_batches-1 (consecutive slices of the
# permutation ``order``, as for sync) are dealt round-robin: worker w takes
# every batch i with i % n_workers == w, in increasing order.  A ``run`` call
# for batches first..stop-1 therefore hands each worker its share of that
# range, so network.py's calls of ~0.2 s, progress and Ctrl-C work unchanged.
# Each worker does whole-batch steps on one thread (``chunk_loss_grad`` on the
# whole batch, BLAS limited to one thread by the caller) with its own scratch,
# gradient buffer and optimizer state (momentum/Adam m, v, step count).
#
# hogwild: every worker reads and writes the one shared ``theta`` with plain,
#     unsynchronised loads and stores (no locks, no atomics): a worker's
#     gradient may be computed from weights that other workers are changing,
#     and two updates of one weight can overwrite each other.
# average: worker w trains replica w (started from theta); at an averaging
#     point the replicas' weighted mean is checked for finiteness, copied into
#     theta and (unless one-shot) back into every replica.  Between averaging
#     points theta holds the last averaged model.

STRATEGIES = {"hogwild": 0, "average": 1}
WEIGHTINGS = {"uniform": 0, "examples": 1}

cdef enum:
    STRATEGY_HOGWILD = 0
    STRATEGY_AVERAGE = 1

# Per-worker tallies, padded to one 64-byte cache line each (no false sharing).
cdef enum:
    TALLY_WIDTH = 8
    T_OPT_STEPS = 0       # optimizer steps of this worker (Adam's t), for the whole fit
    T_SINCE_SYNC = 1      # examples since this replica was last overwritten by the average
    T_CORRECT = 2         # this run call: correctly classified examples
    T_SEEN = 3            # this run call: examples
    T_STEPS = 4           # this run call: steps

cdef extern from *:
    """
    /* The stop flag is written by one worker and polled by the others between
       batches; volatile keeps the compiler from caching it in a register. */
    static inline int cymlp_flag_get(int* p) { return *(volatile int*)p; }
    static inline void cymlp_flag_set(int* p) { *(volatile int*)p = 1; }
    """
    int cymlp_flag_get(int* p) noexcept nogil
    void cymlp_flag_set(int* p) noexcept nogil


cdef void worker_steps(const Shape* s, floating* theta, const floating* X, const floating* Y,
                       const cnp.intp_t* order, const cnp.int64_t* labels, Py_ssize_t N,
                       Py_ssize_t B, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t stride,
                       floating* scr, floating* G, floating* m, floating* v,
                       double* row_loss, unsigned char* row_correct, const Opt* shared_opt,
                       cnp.int64_t* tally, double* loss_sum, int* failed) noexcept nogil:
    """One worker's SGD steps on global batches i0, i0 + stride, ... < i1.

    theta     IN/OUT  the weights this worker trains: the shared weights
                      (hogwild, updated without locks) or its replica (average)
    scr, G    scratch for ``B`` rows, gradient sums (n_params): this worker's own
    m, v      IN/OUT  this worker's optimizer state
    tally     IN/OUT  this worker's counters (T_* slots)
    loss_sum  IN/OUT  this call's summed loss of the worker's examples
    failed    IN/OUT  shared flag: set on a non-finite loss; every worker stops
                      before its next batch once it is set
    """
    cdef Opt o = shared_opt[0]          # own copy: Adam's bias corrections are per worker
    cdef Py_ssize_t i = i0, n, start, l
    cdef StepOut res
    while i < i1:
        if cymlp_flag_get(failed):
            break
        start = i * B
        n = min(B, N - start)
        if n <= 0:
            break
        if o.kind == OPT_ADAM:
            _adam_corrections(&o, <double>(tally[T_OPT_STEPS] + 1))
        chunk_loss_grad(s, theta, X, Y, order + start, labels, n, scr, B, G, row_loss, row_correct)
        res = _sum_rows(row_loss, row_correct, n)
        if not res.finite:
            cymlp_flag_set(failed)
            break
        for l in range(s.n_layers):
            _update_range(theta + s.w_off[l], G + s.w_off[l], 1, 0, 0, s.sizes[l] * s.sizes[l + 1],
                          <floating>n, True, &o, m + s.w_off[l], v + s.w_off[l])
            _update_range(theta + s.b_off[l], G + s.b_off[l], 1, 0, 0, s.sizes[l + 1],
                          <floating>n, False, &o, m + s.b_off[l], v + s.b_off[l])
        tally[T_OPT_STEPS] += 1
        tally[T_SINCE_SYNC] += n
        tally[T_CORRECT] += res.correct
        tally[T_SEEN] += n
        tally[T_STEPS] += 1
        loss_sum[0] += res.loss_sum
        i += stride


cdef bint _average_range(floating* out, const floating* replicas, Py_ssize_t n_rep, Py_ssize_t P,
                         const floating* weights, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    """out[i] = r_0[i] + Σ_{t≥1} w_t (r_t[i] − r_0[i]) for i in i0..i1-1; True if all finite.

    Written as a correction of replica 0 so that identical replicas average to
    exactly themselves (every difference is 0).  With Σ w = 1 this is the
    weighted mean Σ w_t r_t.  A non-finite replica makes the result
    non-finite (inf − x, inf − inf, 0·inf), so it is caught here.
    """
    cdef Py_ssize_t i, t
    cdef const floating* r0 = replicas
    cdef const floating* rt
    cdef floating w
    for i in range(i0, i1):
        out[i] = 0
    for t in range(1, n_rep):
        rt = replicas + t * P
        w = weights[t]
        for i in range(i0, i1):
            out[i] = out[i] + w * (rt[i] - r0[i])
    for i in range(i0, i1):
        out[i] = r0[i] + out[i]
    for i in range(i0, i1):
        if not isfinite(out[i]):
            return False
    return True


cdef bint average_replicas_into(floating* out, const floating* replicas, Py_ssize_t n_rep,
                                Py_ssize_t P, const floating* weights, unsigned char* block_ok,
                                int nthreads) noexcept nogil:
    """Weighted mean of ``n_rep`` replicas (n_rep, P) into ``out`` (P,); True if finite.

    ``weights`` (n_rep,) must sum to 1.  ``block_ok`` holds one flag per
    block of _ELEM_BLOCK parameters (blocks run on ``nthreads`` threads).
    """
    cdef Py_ssize_t nb = (P + _ELEM_BLOCK - 1) // _ELEM_BLOCK, i
    if nthreads <= 1 or nb < 2:
        for i in range(nb):
            block_ok[i] = _average_range(out, replicas, n_rep, P, weights,
                                         i * _ELEM_BLOCK, min((i + 1) * _ELEM_BLOCK, P))
    else:
        for i in prange(nb, schedule='static', num_threads=nthreads):
            block_ok[i] = _average_range(out, replicas, n_rep, P, weights,
                                         i * _ELEM_BLOCK, min((i + 1) * _ELEM_BLOCK, P))
    for i in range(nb):
        if not block_ok[i]:
            return False
    return True


def average_replicas(const floating[:, ::1] replicas, const double[::1] examples, str weighting,
                     floating[::1] out):
    """Average the rows of ``replicas`` (n_rep, P) into ``out`` (P,), as ``average`` does.

    ``weighting="uniform"``: every replica counts 1/n_rep (Zinkevich et al.);
    ``"examples"``: replica t counts examples[t] / Σ examples (examples
    processed since the last averaging, a simplified reading of Cheng et al.'s
    weighted averaging).  Returns False, leaving ``out`` unspecified, when the
    mean is not finite.  For tests and teaching; the trainer calls the same
    nogil helper.
    """
    cdef Py_ssize_t n_rep = replicas.shape[0], P = replicas.shape[1], t
    if n_rep < 1 or P < 1 or out.shape[0] != P or examples.shape[0] != n_rep:
        raise ValueError("average_replicas: shapes do not match")
    weights = np.asarray(_weights(np.asarray(examples), WEIGHTINGS[weighting]),
                         dtype=np.asarray(out).dtype)
    cdef floating[::1] w = weights
    cdef unsigned char[::1] block_ok = np.zeros((P + _ELEM_BLOCK - 1) // _ELEM_BLOCK, dtype=np.uint8)
    cdef bint ok
    with nogil:
        ok = average_replicas_into(&out[0], &replicas[0, 0], n_rep, P, &w[0], &block_ok[0], 1)
    return ok


def _weights(examples, int weighting):
    """Averaging weights summing to 1 (None when no replica has processed anything)."""
    examples = np.asarray(examples, dtype=np.float64)
    total = examples.sum()
    if weighting == 1:
        if total <= 0:
            raise ValueError("examples-weighted averaging needs at least one example")
        return examples / total
    return np.full(examples.shape[0], 1.0 / examples.shape[0])


cdef class ParallelTrainer:
    """Buffers and state for one ``fit`` with ``parallel="hogwild"`` or ``"average"``.

    Everything is allocated here, once: per worker scratch for one batch, a
    gradient buffer, optimizer state, per-row loss slots and tallies; for
    ``average`` the replicas and the averaging buffer.  ``n_workers`` >= 2
    (n_threads == 1 goes through :class:`SyncTrainer`, which is exact SGD).
    """
    cdef Plan plan
    cdef object theta, X, Y, labels, replicas, scratch, grads, state_m, state_v
    cdef object row_loss, row_correct, tally, losses, avg, weights, block_ok
    cdef readonly Py_ssize_t batch_size, n_workers, average_every, n_averages
    cdef readonly int strategy, weighting
    cdef readonly bint one_shot
    cdef Opt opt
    cdef bint is_float, has_labels
    cdef int failed

    def __init__(self, Plan plan, theta, X, Y, labels, Py_ssize_t batch_size, str strategy,
                 int n_workers, average_every, str weighting, str optimizer, double momentum,
                 bint nesterov, double weight_decay, double beta1, double beta2, double eps):
        if n_workers < 2:
            raise ValueError("ParallelTrainer needs at least two workers; use SyncTrainer")
        if labels is not None and labels.shape[0] != X.shape[0]:
            raise ValueError("labels and X differ in length")
        self.plan = plan
        self.theta, self.X, self.Y = theta, X, Y
        self.has_labels = labels is not None
        self.labels = labels if labels is not None else np.zeros(1, dtype=np.int64)
        self.batch_size = batch_size
        self.n_workers = n_workers
        self.strategy = STRATEGIES[strategy]
        self.weighting = WEIGHTINGS[weighting]
        self.one_shot = average_every == "end"
        self.average_every = 0 if average_every is None or self.one_shot else int(average_every)
        self.is_float = theta.dtype == np.float32
        dtype = theta.dtype
        P = plan.s.n_params
        W = n_workers
        self.scratch = np.zeros(W * batch_size * plan.s.row_width, dtype=dtype)
        self.grads = np.zeros(W * P, dtype=dtype)
        self.state_m = np.zeros(W * P, dtype=dtype)
        self.state_v = np.zeros(W * P if optimizer == "adam" else 1, dtype=dtype)
        self.row_loss = np.zeros(W * batch_size, dtype=np.float64)
        self.row_correct = np.zeros(W * batch_size, dtype=np.uint8)
        self.tally = np.zeros(W * TALLY_WIDTH, dtype=np.int64)
        self.losses = np.zeros(W * TALLY_WIDTH, dtype=np.float64)
        if self.strategy == STRATEGY_AVERAGE:
            self.replicas = np.tile(theta, W)
            self.avg = np.zeros(P, dtype=dtype)
            self.weights = np.zeros(W, dtype=dtype)
            self.block_ok = np.zeros((P + _ELEM_BLOCK - 1) // _ELEM_BLOCK, dtype=np.uint8)
        else:
            self.replicas = self.avg = self.weights = np.zeros(1, dtype=dtype)
            self.block_ok = np.zeros(1, dtype=np.uint8)
        self.opt = _make_opt(optimizer, momentum, nesterov, weight_decay, beta1, beta2, eps)
        self.n_averages = 0

    @property
    def examples_since_sync(self):
        """Examples each replica has processed since it was last reset to the average."""
        return np.asarray(self.tally)[T_SINCE_SYNC::TALLY_WIDTH].copy()

    def replica(self, Py_ssize_t w):
        """A copy of replica ``w`` (average only; for tests)."""
        P = self.plan.s.n_params
        return np.asarray(self.replicas)[w * P:(w + 1) * P].copy()

    def run(self, order, Py_ssize_t first, Py_ssize_t stop, double lr):
        """Steps for global batches first..stop-1 of ``order``, dealt round-robin to the workers.

        Returns ``(loss_sum, n_correct, n_seen, steps)`` as SyncTrainer.run;
        ``loss_sum`` is NaN when an averaging point found a non-finite replica
        (theta is then left at the last good average).
        """
        if self.is_float:
            return _run_parallel[float](self, self.theta, self.replicas, self.X, self.Y,
                                        self.scratch, self.grads, self.state_m, self.state_v,
                                        self.avg, self.weights, order, first, stop, lr)
        return _run_parallel[double](self, self.theta, self.replicas, self.X, self.Y,
                                     self.scratch, self.grads, self.state_m, self.state_v,
                                     self.avg, self.weights, order, first, stop, lr)


cdef int _average_point(floating* theta, floating* replicas, floating* avg, floating* weights,
                        cnp.int64_t* tally, unsigned char* block_ok, Py_ssize_t W, Py_ssize_t P,
                        int weighting, bint one_shot) noexcept nogil:
    """Average the replicas into theta, and back into them unless ``one_shot``.

    Returns 1 when it averaged, 0 when no replica had trained since the last
    averaging (nothing to do), -1 when the mean is not finite (theta and the
    replicas are left untouched).
    """
    cdef Py_ssize_t w, total = 0
    for w in range(W):
        total += tally[w * TALLY_WIDTH + T_SINCE_SYNC]
    if total == 0:
        return 0
    for w in range(W):
        if weighting == 1:
            weights[w] = <floating>(<double>tally[w * TALLY_WIDTH + T_SINCE_SYNC] / <double>total)
        else:
            weights[w] = <floating>(1.0 / <double>W)
    if not average_replicas_into(avg, replicas, W, P, weights, block_ok, <int>W):
        return -1
    memcpy(theta, avg, P * sizeof(floating))
    if not one_shot:
        for w in range(W):
            memcpy(replicas + w * P, avg, P * sizeof(floating))
            tally[w * TALLY_WIDTH + T_SINCE_SYNC] = 0
    return 1


cdef tuple _run_parallel(ParallelTrainer t, floating[::1] theta, floating[::1] replicas,
                         const floating[:, ::1] X, const floating[:, ::1] Y,
                         floating[::1] scratch, floating[::1] grads, floating[::1] m,
                         floating[::1] v, floating[::1] avg, floating[::1] weights,
                         const cnp.intp_t[::1] order, Py_ssize_t first, Py_ssize_t stop,
                         double lr):
    cdef const cnp.int64_t[::1] labels_mv = t.labels
    cdef double[::1] row_loss = t.row_loss
    cdef unsigned char[::1] row_correct = t.row_correct
    cdef cnp.int64_t[::1] tally_mv = t.tally
    cdef double[::1] losses_mv = t.losses
    cdef unsigned char[::1] block_ok_mv = t.block_ok
    cdef const Shape* s = &t.plan.s
    cdef const cnp.int64_t* labels = &labels_mv[0] if t.has_labels else NULL
    cdef Py_ssize_t N = order.shape[0], B = t.batch_size, W = t.n_workers, P = s.n_params
    cdef Py_ssize_t n_batches = (N + B - 1) // B
    cdef Py_ssize_t period = t.average_every * W
    cdef Py_ssize_t seg_begin, seg_end, w, active
    cdef Py_ssize_t scr_stride = B * s.row_width
    cdef Py_ssize_t v_stride = P if t.opt.kind == OPT_ADAM else 0
    cdef bint average = t.strategy == STRATEGY_AVERAGE, one_shot = t.one_shot
    cdef int weighting = t.weighting, averaged = 0, n_averages = 0
    cdef Py_ssize_t rep_stride = P if average else 0
    cdef floating* base = &replicas[0] if average else &theta[0]
    cdef cnp.int64_t* tally = &tally_mv[0]
    cdef double* losses = &losses_mv[0]
    cdef Opt* o = &t.opt
    cdef int* failed = &t.failed
    cdef double loss_sum = 0
    cdef Py_ssize_t n_correct = 0, n_seen = 0, steps = 0
    if first < 0 or order.shape[0] != X.shape[0] or Y.shape[0] != X.shape[0]:
        raise ValueError("run: batch range or order does not match the data")
    if theta.shape[0] != P or (average and replicas.shape[0] != W * P):
        raise ValueError("run: parameter buffers do not match the network")
    if stop > n_batches:
        stop = n_batches
    o.lr = lr
    t.failed = 0
    with nogil:
        for w in range(W):
            tally[w * TALLY_WIDTH + T_CORRECT] = 0
            tally[w * TALLY_WIDTH + T_SEEN] = 0
            tally[w * TALLY_WIDTH + T_STEPS] = 0
            losses[w * TALLY_WIDTH] = 0
        seg_begin = first
        while seg_begin < stop:
            # a segment ends at the next averaging point (every average_every rounds of W batches)
            seg_end = stop
            if average and period > 0:
                seg_end = min(stop, (seg_begin // period + 1) * period)
            active = min(W, seg_end - seg_begin)
            if active <= 1:             # one batch: no OpenMP team for it
                for w in range(W):
                    worker_steps(s, base + w * rep_stride, &X[0, 0], &Y[0, 0], &order[0], labels,
                                 N, B, seg_begin + (w - seg_begin % W + W) % W, seg_end, W,
                                 &scratch[0] + w * scr_stride, &grads[0] + w * P,
                                 &m[0] + w * P, &v[0] + w * v_stride,
                                 &row_loss[0] + w * B, &row_correct[0] + w * B, o,
                                 tally + w * TALLY_WIDTH, losses + w * TALLY_WIDTH, failed)
            else:
                for w in prange(W, schedule='static', chunksize=1, num_threads=active):
                    worker_steps(s, base + w * rep_stride, &X[0, 0], &Y[0, 0], &order[0], labels,
                                 N, B, seg_begin + (w - seg_begin % W + W) % W, seg_end, W,
                                 &scratch[0] + w * scr_stride, &grads[0] + w * P,
                                 &m[0] + w * P, &v[0] + w * v_stride,
                                 &row_loss[0] + w * B, &row_correct[0] + w * B, o,
                                 tally + w * TALLY_WIDTH, losses + w * TALLY_WIDTH, failed)
            if failed[0]:
                break
            if average and (seg_end == n_batches or (period > 0 and seg_end % period == 0)):
                averaged = _average_point(&theta[0], &replicas[0], &avg[0], &weights[0], tally,
                                          &block_ok_mv[0], W, P, weighting, one_shot)
                if averaged < 0:
                    break
                n_averages += averaged
            seg_begin = seg_end
        for w in range(W):
            loss_sum += losses[w * TALLY_WIDTH]
            n_correct += tally[w * TALLY_WIDTH + T_CORRECT]
            n_seen += tally[w * TALLY_WIDTH + T_SEEN]
            steps += tally[w * TALLY_WIDTH + T_STEPS]
    t.n_averages += n_averages
    if averaged < 0:
        loss_sum = float("nan")       # network.py restores the last good weights and reports it
    return loss_sum, n_correct, n_seen, steps
