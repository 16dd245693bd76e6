# cython: language_level=3
"""Forward, loss and backward on a block of rows, written once for every trainer.

A block is a chunk of a batch (chunked mode, a hogwild/average worker's
batch) or the whole batch (batch and split mode, the passes outside
training); ``Block`` says where its scratch is and which examples its rows
are (layout in ``_kernels_common.pyx``).  Row-wise passes take a row range
r0..r1 of the block, so that split mode can give each thread its rows of
the same block.  A ``Worker`` holds what a step reads and the buffers it
writes; what happens once the errors δ are known (gradients and the
optimizer step) is in ``_kernels_update.pyx``.

Every function here is ``noexcept nogil`` and serial: the trainers
(``_kernels.pyx``, ``_kernels_split.pyx``, ``_kernels_parallel.pyx``) decide
what runs on which thread.
"""

from libc.string cimport memcpy

cimport numpy as cnp

from ._blas cimport floating, gemm
from ._prefetch cimport prefetch
from ._simd cimport cloned
from ._kernels_common cimport (
    Shape, Block, Worker, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTMAX, IDENTITY, EXP, QUADRATIC,
    POISSON, _exp, _exp_nonpos, _log, _log1p, _tanh, _fabs, act_ptr, zout_ptr, delta_ptr,
    worker_block,
)
from ._kernels_terms cimport (
    Drop, drop_rows, relu_drop_deriv, weight_rows, mask_ptr, dropped_ptr,
)
from ._kernels_update cimport col_sum_range, layer_update
from ._kernels_sparse cimport gather_csr_rows

cnp.import_array()

cdef extern from *:
    """
    #define CYMLP_LEAKY_SLOPE 0.01
    """
    double LEAKY_SLOPE "CYMLP_LEAKY_SLOPE"

LEAKY_RELU_SLOPE = LEAKY_SLOPE      # for the test that the reference uses the same slope


# --------------------------------------------------------------------------
# Row-wise passes on a range of rows
# --------------------------------------------------------------------------

cdef void gather_rows(const floating* X,         # IN (N, width)
                      const cnp.intp_t* rows,    # IN (r1,) example of each row
                      Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t width,
                      floating* out) noexcept nogil:   # OUT (r1, width), rows r0..r1-1
    """out[r] = X[rows[r]] for r in r0..r1-1."""
    cdef Py_ssize_t r
    for r in range(r0, r1):
        memcpy(out + r * width, X + rows[r] * width, width * sizeof(floating))


cdef inline void bias_act_loop(floating* Z,          # INOUT (r1, ld) z, then with the bias (unless Z is A)
                               floating* A,          # OUT (r1, ld) σ(z), rows r0..r1-1, m columns (may be Z)
                               const floating* b,    # IN (m,) the bias
                               Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t m, Py_ssize_t ld, int act,
                               bint keep_z) noexcept nogil:
    # inlined with ``act`` and ``keep_z`` constants: one vectorisable loop per case (with
    # A == Z the hidden layers' z is not kept: σ' is computed from a)
    cdef Py_ssize_t r, j
    cdef floating z, e
    cdef floating slope = <floating>LEAKY_SLOPE
    cdef floating* zr
    cdef floating* ar
    for r in range(r0, r1):
        zr = Z + r * ld
        ar = A + r * ld
        for j in range(m):
            z = zr[j] + b[j]
            if keep_z:
                zr[j] = z
            if act == SIGMOID:
                e = _exp_nonpos(-_fabs(z))
                # one division after a select: no control flow, so the loop vectorises
                ar[j] = (<floating>1 if z >= 0 else e) / (<floating>1 + e)
            elif act == TANH:
                ar[j] = _tanh(z)
            elif act == RELU:
                ar[j] = z if z > 0 else 0
            elif act == LEAKY_RELU:
                ar[j] = z if z > 0 else z * slope
            elif act == EXP:
                ar[j] = _exp(z)
            else:
                ar[j] = z


cdef inline void bias_act_case(floating* Z,          # INOUT as bias_act_cols
                               floating* A,          # OUT
                               const floating* b,    # IN
                               Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t m, Py_ssize_t ld,
                               int act) noexcept nogil:
    if Z == A:
        bias_act_loop(Z, A, b, r0, r1, m, ld, act, False)
    else:
        bias_act_loop(Z, A, b, r0, r1, m, ld, act, True)


cdef cloned softmax_rows(floating* Z,           # INOUT (r1, m) z without, then with, the bias
                         floating* A,           # OUT (r1, m) softmax(z), rows r0..r1-1 (not Z)
                         const floating* b,     # IN (m,) the bias
                         Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t m) noexcept nogil:
    """Z[r] += b; A[r] = softmax(Z[r]) for rows r0..r1-1, shifted by each row's maximum.

    The exponentials are one pass over the whole block (z - max written first),
    so that it vectorises across rows: a row of 10 outputs is too short for SIMD.
    """
    cdef Py_ssize_t r, j
    cdef floating z, mx, total
    cdef floating* zr
    cdef floating* ar
    for r in range(r0, r1):
        zr = Z + r * m
        ar = A + r * m
        mx = zr[0] + b[0]
        for j in range(m):
            z = zr[j] + b[j]
            zr[j] = z
            if z > mx:
                mx = z
        for j in range(m):
            ar[j] = zr[j] - mx
    ar = A + r0 * m
    for j in range((r1 - r0) * m):
        ar[j] = _exp_nonpos(ar[j])
    for r in range(r0, r1):
        ar = A + r * m
        total = 0
        for j in range(m):
            total = total + ar[j]
        for j in range(m):
            ar[j] = ar[j] / total


cdef cloned bias_act_cols(floating* Z,           # INOUT (r1, ld) z without, then with, the bias
                          floating* A,           # OUT (r1, ld) σ(z), rows r0..r1-1, m columns (may be Z)
                          const floating* b,     # IN (m,) the bias
                          Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t m, Py_ssize_t ld,
                          int act) noexcept nogil:
    """Z[r, :m] += b; A[r, :m] = σ(Z[r, :m]) for rows r0..r1-1 of arrays with row stride ``ld``
    (a block of columns when m < ld: pass Z, A, b at the first column); not for softmax.

    When A is Z (the hidden layers) only σ(z) is kept; the output layer keeps
    its z (the loss needs it)."""
    if act == SIGMOID:
        bias_act_case(Z, A, b, r0, r1, m, ld, SIGMOID)
    elif act == TANH:
        bias_act_case(Z, A, b, r0, r1, m, ld, TANH)
    elif act == RELU:
        bias_act_case(Z, A, b, r0, r1, m, ld, RELU)
    elif act == LEAKY_RELU:
        bias_act_case(Z, A, b, r0, r1, m, ld, LEAKY_RELU)
    elif act == EXP:
        bias_act_case(Z, A, b, r0, r1, m, ld, EXP)
    else:
        bias_act_case(Z, A, b, r0, r1, m, ld, IDENTITY)


cdef inline floating times_deriv(floating d, floating a, floating m, bint masked,
                                 int act) noexcept nogil:
    """d · σ'(z), and · m when ``masked``: BP2 for one element, with σ'(z) computed
    from a = σ(z).  (Cython makes ``1 - a`` a double, so for float32 the sigmoid and
    tanh products round once, when the result is returned.)"""
    if act == SIGMOID:
        return d * (a * (1 - a)) * m if masked else d * (a * (1 - a))
    if act == TANH:
        return d * (1 - a * a) * m if masked else d * (1 - a * a)
    if act == RELU:
        return (d if a > 0 else 0) * m if masked else (d if a > 0 else 0)
    if act == LEAKY_RELU:
        return ((d if a > 0 else d * <floating>LEAKY_SLOPE) * m if masked
                else (d if a > 0 else d * <floating>LEAKY_SLOPE))
    return d * m if masked else d


cdef inline void deriv_loop(floating* D,          # INOUT
                            const floating* A,    # IN
                            const floating* M,    # IN, or NULL
                            Py_ssize_t i0, Py_ssize_t i1, int act) noexcept nogil:
    # inlined with ``act`` a constant: one vectorisable loop per activation
    cdef Py_ssize_t i
    if M == NULL:
        for i in range(i0, i1):
            D[i] = times_deriv(D[i], A[i], <floating>1, False, act)
    else:
        for i in range(i0, i1):
            D[i] = times_deriv(D[i], A[i], M[i], True, act)


cdef cloned deriv_range_simd(floating* D,          # INOUT δ (flat)
                             const floating* A,    # IN activations a = σ(z), laid out like D
                             const floating* M,    # IN dropout multipliers like D, or NULL
                             Py_ssize_t i0, Py_ssize_t i1, int act) noexcept nogil:
    """D[i] ← D[i] · σ'(z) (· M[i]) from a = A[i], for flat indices i0..i1-1 (BP2)."""
    if act == SIGMOID:
        deriv_loop(D, A, M, i0, i1, SIGMOID)
    elif act == TANH:
        deriv_loop(D, A, M, i0, i1, TANH)
    elif act == RELU:
        deriv_loop(D, A, M, i0, i1, RELU)
    elif act == LEAKY_RELU:
        deriv_loop(D, A, M, i0, i1, LEAKY_RELU)
    elif M != NULL:
        deriv_loop(D, A, M, i0, i1, IDENTITY)


cdef void deriv_range(floating* D,          # INOUT as deriv_range_simd
                      const floating* A,    # IN
                      const floating* M,    # IN, or NULL
                      Py_ssize_t i0, Py_ssize_t i1, int act) noexcept nogil:
    """deriv_range_simd for the other modules (a cloned function is called in its own module)."""
    deriv_range_simd(D, A, M, i0, i1, act)


cdef cloned loss_delta_rows_simd(const Shape* s,  # IN
                                 const Block* b,                # IN; OUT its row_loss, row_correct
                                 const floating* Y,             # IN (N, k) targets
                                 const cnp.int64_t* labels,     # IN (N,) class labels, or NULL
                                 Py_ssize_t r0, Py_ssize_t r1,
                                 floating* D) noexcept nogil:   # OUT (r1, k) δ^L, rows r0..r1-1
    """Loss, output error δ^L (BP1) and correctness for rows r0..r1-1 of a block.

    Row ``r`` of the block is example ``b.rows[r]`` (or ``r`` when ``rows`` is
    NULL) of ``Y``/``labels``.  ``b.row_loss[r]`` gets the row's loss (not yet
    averaged), ``b.row_correct[r]`` whether argmax(a) equals the label.
    """
    cdef Py_ssize_t k = s.sizes[s.n_layers], r, j, idx, best
    cdef const floating* A_out = act_ptr(s, <floating*>b.scr, b.cap, s.n_layers)
    cdef const floating* Z_out = zout_ptr(s, <floating*>b.scr, b.cap)
    cdef const floating* a
    cdef const floating* z
    cdef const floating* y
    cdef floating* d
    cdef floating res, dot, mx, t, top
    cdef bint above
    cdef double acc
    for r in range(r0, r1):
        idx = b.rows[r] if b.rows != NULL else r
        a = A_out + r * k
        z = Z_out + r * k
        y = Y + idx * k
        d = D + r * k
        acc = 0
        best = 0                    # argmax a: the prediction, and the softmax's log pivot
        top = a[0]
        for j in range(1, k):       # selects, not branches: the argmax moves from row to row
            above = a[j] > top
            best = j if above else best
            top = a[j] if above else top
        if s.loss == QUADRATIC:
            for j in range(k):
                res = a[j] - y[j]
                acc += <double>(res * res)
            acc = 0.5 * acc
            if s.output == IDENTITY:
                for j in range(k):
                    d[j] = a[j] - y[j]
            elif s.output == SIGMOID:
                for j in range(k):
                    d[j] = (a[j] - y[j]) * (a[j] * (1 - a[j]))
            elif s.output == EXP:       # (e^z)' = e^z = a
                for j in range(k):
                    d[j] = (a[j] - y[j]) * a[j]
            else:  # softmax: δ_k = a_k (r_k − Σ_j r_j a_j)
                dot = 0
                for j in range(k):
                    dot = dot + (a[j] - y[j]) * a[j]
                for j in range(k):
                    d[j] = a[j] * ((a[j] - y[j]) - dot)
        elif s.loss == POISSON:
            # y log(y/a) − y + a with log a = z (EXP outputs) and 0 log 0 = 0; δ = a − y
            for j in range(k):
                d[j] = a[j] - y[j]
                acc += <double>((y[j] * _log(y[j]) if y[j] > 0 else 0) - y[j] * z[j] + d[j])
        else:
            for j in range(k):
                d[j] = a[j] - y[j]
            if s.output == SOFTMAX:
                # log a_j = (z_j − z_b) + log a_b for any b (a = softmax(z), computed in
                # the forward pass); with b = argmax a, a_b >= 1/k: no second exp pass
                t = _log(a[best])
                mx = z[best]
                for j in range(k):
                    acc -= <double>(y[j] * ((z[j] - mx) + t))
            else:  # sigmoid: max(z, 0) − z·y + log(1 + e^−|z|)
                for j in range(k):
                    acc += <double>((z[j] if z[j] > 0 else 0) - z[j] * y[j]
                                    + _log1p(_exp_nonpos(-_fabs(z[j]))))
        b.row_loss[r] = acc
        if labels != NULL:
            b.row_correct[r] = best == labels[idx]
        else:
            b.row_correct[r] = 0


cdef void loss_delta_rows(const Shape* s,                # IN
                          const Block* b,                # IN; OUT its row tallies
                          const floating* Y,             # IN
                          const cnp.int64_t* labels,     # IN, or NULL
                          Py_ssize_t r0, Py_ssize_t r1,
                          floating* D) noexcept nogil:     # OUT
    """loss_delta_rows_simd for the other modules (a cloned function is called in its own module)."""
    loss_delta_rows_simd(s, b, Y, labels, r0, r1, D)


# --------------------------------------------------------------------------
# Forward and backward on a block
# --------------------------------------------------------------------------

cdef inline const floating* layer_input(const Shape* s,   # IN
                                        const Block* b,   # IN
                                        floating* scr,    # IN b's scratch (its address)
                                        int l) noexcept nogil:
    """What layer l's weights multiplied in the forward pass: A_0, or A_l, or with dropout Ã_l."""
    cdef const Drop* d = b.drop
    if l == 0:
        return <const floating*>b.A0
    if d != NULL and d.active[l - 1] and not d.in_place:
        return dropped_ptr(d, <floating*>b.dbuf, b.cap, l - 1)
    return act_ptr(s, scr, b.cap, l)      # (masked in place, it is Ã already)


cdef void layer_forward(const Shape* s,  # IN
                        const floating* theta,    # IN (n_params,)
                        const Block* b,           # INOUT its scratch
                        int l, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t u0, Py_ssize_t u1) noexcept nogil:
    """Layer l's forward pass for rows r0..r1-1 and units u0..u1-1 (BP0): z^l = a^{l-1} W^lᵀ
    (a GEMM on this thread's BLAS), then + b^l and σ in one pass.  A softmax output needs
    every unit of its rows (u0 = 0, u1 = sizes[l+1]); dropout is block_forward's."""
    cdef int L = s.n_layers
    cdef Py_ssize_t n_in = s.sizes[l], n_out = s.sizes[l + 1]
    cdef floating* scr = <floating*>b.scr
    cdef const floating* A_in = layer_input(s, b, scr, l)
    cdef floating* A = act_ptr(s, scr, b.cap, l + 1)
    cdef floating* Z = zout_ptr(s, scr, b.cap) if l == L - 1 else A
    cdef int act = s.output if l == L - 1 else s.hidden
    cdef const floating* bias = theta + s.b_off[l]
    gemm(False, True, r1 - r0, u1 - u0, n_in, <floating>1, A_in + r0 * n_in, n_in,
         theta + s.w_off[l] + u0 * n_in, n_in, <floating>0, Z + r0 * n_out + u0, n_out)
    if act == SOFTMAX:
        softmax_rows(Z, A, bias, r0, r1, n_out)
    else:
        bias_act_cols(Z + u0, A + u0, bias + u0, r0, r1, u1 - u0, n_out, act)


cdef void block_forward(const Shape* s,  # IN
                        const floating* theta,    # IN (n_params,)
                        const Block* b,           # INOUT its scratch and dropout buffer
                        Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """Forward pass for rows r0..r1-1: A_0 → A_1 .. A_L and Z_out in the block's scratch.

    The GEMMs use whatever threads the BLAS pool is limited to; the fused
    bias + activation pass runs on this thread.  With dropout ``b.drop``, a
    hidden layer's masked activations Ã = A ⊙ M go to the dropout buffer and
    feed the next layer; A itself stays unmasked (σ' is computed from it).
    The masks are drawn here (keyed by batch row), or, when ``b.drop`` does not
    generate them, taken from the buffer.
    """
    cdef int L = s.n_layers, l
    cdef Py_ssize_t n = r1 - r0, cap = b.cap, n_out, i
    cdef const Drop* d = b.drop
    cdef floating* scr = <floating*>b.scr
    cdef floating* A
    cdef floating* M
    cdef floating* At
    for l in range(L):
        n_out = s.sizes[l + 1]
        layer_forward(s, theta, b, l, r0, r1, 0, n_out)
        if d == NULL or l == L - 1 or not d.active[l]:
            continue
        A = act_ptr(s, scr, cap, l + 1)
        if d.in_place:          # ReLU: A ← A ⊙ M, M never stored
            drop_rows(d, l, A + r0 * n_out, NULL, A + r0 * n_out, b.row0 + r0, n, n_out)
            continue
        M = mask_ptr(d, <floating*>b.dbuf, cap, l)
        At = dropped_ptr(d, <floating*>b.dbuf, cap, l)
        if d.generate:
            drop_rows(d, l, A + r0 * n_out, M + r0 * n_out, At + r0 * n_out, b.row0 + r0, n, n_out)
        else:
            for i in range(r0 * n_out, r1 * n_out):
                At[i] = A[i] * M[i]


cdef void backprop_delta(const Shape* s,  # IN
                         const floating* theta,   # IN (n_params,)
                         const Block* b,          # IN its activations and dropout masks
                         int l, Py_ssize_t r0, Py_ssize_t r1,
                         const floating* D,       # IN (r1, sizes[l+1]) δ^l, rows r0..r1-1
                         floating* P) noexcept nogil:  # OUT (r1, sizes[l]) δ^{l-1}, those rows
    """BP2 for rows r0..r1-1: δ^{l-1} = (δ^l W^l) ⊙ σ'(a^{l-1}), with dropout ⊙ M^{l-1}."""
    cdef Py_ssize_t n_in = s.sizes[l], n_out = s.sizes[l + 1]
    cdef const floating* A = act_ptr(s, <floating*>b.scr, b.cap, l)
    cdef const Drop* d = b.drop
    gemm(False, False, r1 - r0, n_in, n_out, <floating>1, D + r0 * n_out, n_out,
         theta + s.w_off[l], n_in, <floating>0, P + r0 * n_in, n_in)
    if d != NULL and d.active[l - 1] and d.in_place:
        relu_drop_deriv(P + r0 * n_in, A + r0 * n_in, d.scale[l - 1], (r1 - r0) * n_in)
    elif d != NULL and d.active[l - 1]:
        deriv_range_simd(P, A, mask_ptr(d, <floating*>b.dbuf, b.cap, l - 1), r0 * n_in, r1 * n_in,
                         s.hidden)
    else:
        deriv_range_simd(P, A, <const floating*>NULL, r0 * n_in, r1 * n_in, s.hidden)


cdef void backprop_delta_cols(const Shape* s,  # IN
                              const floating* theta,   # IN (n_params,)
                              const Block* b,          # IN its activations (no dropout)
                              int l, Py_ssize_t n, Py_ssize_t i0, Py_ssize_t i1,
                              const floating* D,       # IN (n, sizes[l+1]) δ^l, every row
                              floating* P) noexcept nogil:  # OUT (n, sizes[l]) δ^{l-1}, columns i0..i1-1
    """BP2 for units i0..i1-1 of layer l-1, every row: δ^{l-1}[:, i0:i1] = (δ^l W^l[:, i0:i1]) ⊙
    σ'(a^{l-1}[:, i0:i1]).  Each thread multiplies its columns of W^l with the whole δ^l,
    instead of the whole W^l with its rows of δ^l (split mode, when W^l is the bigger)."""
    cdef Py_ssize_t n_in = s.sizes[l], n_out = s.sizes[l + 1], r
    cdef const floating* A = act_ptr(s, <floating*>b.scr, b.cap, l)
    gemm(False, False, n, i1 - i0, n_out, <floating>1, D, n_out, theta + s.w_off[l] + i0, n_in,
         <floating>0, P + i0, n_in)
    for r in range(n):
        deriv_range_simd(P + r * n_in, A + r * n_in, <const floating*>NULL, i0, i1, s.hidden)


cdef void block_backward(const Shape* s,  # IN
                         floating* theta,     # IN; INOUT when ``w`` updates it
                         const Block* b,      # INOUT its δ buffers; IN the rest
                         Py_ssize_t n,
                         floating* G,         # OUT (n_params,) gradient sums (w: scratch)
                         const Worker* w) noexcept nogil:   # IN the optimizer, or NULL
    """Backward pass for the block's rows 0..n-1, whose output error δ^L is in D_0.

    Without ``w`` (NULL) it writes the gradient *sums* over the rows (not
    divided by n) into ``G``, laid out like theta: G[W_l] = δ^lᵀ a^{l-1}
    (BP4), G[b_l] = Σ_rows δ^l (BP3); theta is only read.  With a worker
    ``w`` (batch mode) each layer is updated by w's optimizer right after its
    δ^{l-1} has been computed from the old W^l (``layer_update``).  With
    dropout, BP4 uses the masked Ã^{l-1} and BP2 gains the factor M.
    """
    cdef int L = s.n_layers, l
    cdef Py_ssize_t n_in, n_out
    cdef floating* scr = <floating*>b.scr
    cdef floating* delta
    cdef const floating* A_in
    for l in range(L - 1, -1, -1):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        delta = delta_ptr(s, scr, b.cap, (L - 1 - l) % 2)    # δ^l; δ^{l-1} goes to the other
        A_in = layer_input(s, b, scr, l)
        if l > 0:
            backprop_delta(s, theta, b, l, 0, n, delta, delta_ptr(s, scr, b.cap, (L - l) % 2))
        if w != NULL:
            layer_update(w, theta, l, delta, A_in, n, 0, n_out)
            continue
        gemm(True, False, n_out, n_in, n, <floating>1, delta, n_out, A_in, n_in,
             <floating>0, G + s.w_off[l], n_in)
        col_sum_range(delta, n, n_out, 0, n_out, G + s.b_off[l])


# --------------------------------------------------------------------------
# A worker's step, in pieces
# --------------------------------------------------------------------------

cdef void rows_loss(const Worker* w,          # IN its targets and sample weights
                    const Block* b,            # INOUT its row tallies
                    Py_ssize_t r0, Py_ssize_t r1,
                    floating* D) noexcept nogil:   # OUT (r1, k) δ^L, rows r0..r1-1
    """Loss and output error δ^L (BP1) of rows r0..r1-1 of a block whose forward pass is done,
    both weighted by the sample weights if any."""
    cdef const Shape* s = w.s
    cdef Py_ssize_t k = s.sizes[s.n_layers]
    loss_delta_rows_simd(s, b, <const floating*>w.Y, w.labels, r0, r1, D)
    if w.terms.weight != NULL:
        weight_rows(D + r0 * k, b.row_loss + r0, w.terms.weight, b.rows + r0, r1 - r0, k,
                    w.terms.weight_scale)


cdef void gather_inputs(const Worker* w,      # IN its data, dense (X) or sparse (Xs)
                        const Block* b,        # IN which example each row is
                        Py_ssize_t r0, Py_ssize_t r1,
                        floating* A0) noexcept nogil:   # OUT (r1, n_in) the block's a^0
    """The examples of rows r0..r1-1 of a block into its input activations a^0: copied
    from dense data, or densified from CSR rows.  Every step mode reads its inputs here."""
    if b.rows != NULL:
        prefetch_targets(<const floating*>w.Y, w.s.sizes[w.s.n_layers], w.labels, b.rows, r0, r1)
    if w.Xs != NULL:
        gather_csr_rows(w.Xs, b.rows, r0, r1, w.s.sizes[0], A0)
    else:
        gather_rows(<const floating*>w.X, b.rows, r0, r1, w.s.sizes[0], A0)


cdef inline void prefetch_targets(const floating* Y,              # IN (N, k) targets
                                  Py_ssize_t k,
                                  const cnp.int64_t* labels,       # IN (N,) labels, or NULL
                                  const cnp.intp_t* rows,          # IN (r1,) example of each row
                                  Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """Prefetch the targets (first and last element) and labels of rows r0..r1-1: the loss
    reads one random row of each per example after the forward pass, and these misses
    then overlap the gather and the GEMMs (``_prefetch.pxd``)."""
    cdef Py_ssize_t r, idx
    for r in range(r0, r1):
        idx = rows[r]
        prefetch(Y + idx * k)
        prefetch(Y + idx * k + k - 1)
        if labels != NULL:
            prefetch(labels + idx)


cdef void forward_loss(const Worker* w,       # IN its data and sample weights
                       const floating* theta,  # IN (n_params,)
                       const Block* b,         # INOUT its scratch, row tallies
                       Py_ssize_t r0, Py_ssize_t r1,
                       floating* D) noexcept nogil:   # OUT (r1, k) δ^L, rows r0..r1-1
    """Rows r0..r1-1 of a block of w's data: gather their examples (densified when the
    data is sparse), forward, loss and output error δ^L (BP1), both weighted by the
    sample weights if any."""
    gather_inputs(w, b, r0, r1, act_ptr(w.s, <floating*>b.scr, b.cap, 0))
    block_forward(w.s, theta, b, r0, r1)
    rows_loss(w, b, r0, r1, D)


cdef void chunk_loss_grad(const Worker* w,       # IN; OUT chunk c's buffers, row tallies
                          floating* theta,       # IN (n_params,)
                          const cnp.intp_t* rows,  # IN (batch rows,) the batch's examples
                          Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c) noexcept nogil:
    """Chunk ``c`` (batch rows r0..r1-1) on this thread, in w's block ``c``: forward,
    loss, backward into gradient buffer ``c``.

    The per-thread unit of work of chunked mode (and, for the whole batch, of
    a hogwild or average worker's step): the chunk's own scratch, dropout
    buffer (its masks drawn here) and gradient sums; nothing shared is
    written except the chunk's row tallies.
    """
    cdef const Shape* s = w.s
    cdef floating* scr = <floating*>w.scratch + c * w.cap * s.row_width
    cdef floating* dbuf = NULL
    if w.drop_buf != NULL:
        dbuf = <floating*>w.drop_buf + c * w.drop_stride
    cdef Block b = worker_block(w, scr, dbuf, rows + r0, r0)
    forward_loss(w, theta, &b, 0, r1 - r0, delta_ptr(s, scr, w.cap, 0))
    block_backward(s, theta, &b, r1 - r0, <floating*>w.grads + c * s.n_params, NULL)
