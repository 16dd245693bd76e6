# cython: language_level=3
"""Split mode: one whole-batch step shared by an OpenMP team, the BLAS on one thread.

Batch mode threads only the GEMMs (the BLAS pool) and leaves the
elementwise work (bias and activation, loss and δ, σ', the optimizer
update over every parameter) on the calling thread, while the BLAS threads
spin.  Split mode gives every thread its share of all of it, in two
``prange`` regions per step, each thread calling the BLAS single-threaded
on its own blocks:

1. **rows** r0..r1 of the batch (thread p of T takes rows p·n/T ..
   (p+1)·n/T): gather, forward (BP0: z = a Wᵀ + b, a = σ(z)), loss and
   δ^L (BP1), then δ^l of every hidden layer (BP2), each for its rows only.
   No row needs another's, so there is no barrier inside the region; the
   weights are only read.
2. **units** u0..u1 of every layer (rows of W^l and entries of b^l, split
   the same way): the weight gradient δ^lᵀ a^{l-1} of those rows over the
   whole batch (BP4), the bias sums (BP3) and the optimizer update of those
   parameters, fused into the GEMM for SGD and momentum as in batch mode.
   Every δ is known after region 1, so each thread runs through all the
   layers without waiting.

The arithmetic is batch mode's: the same GEMM formulas and the same
elementwise passes on sub-blocks.  On one thread it is batch mode, bit for
bit; across thread counts each element is computed by another BLAS call on
another block shape, so results agree to rounding (as in batch mode).  The
δ of every layer is kept (``deltas``: cap · (sizes[1] + ... + sizes[L])
elements) because region 2 needs them all.  Dropout and gradient clipping
are not split: the trainer runs those steps in batch mode.

A small step is not worth a team: each thread gets at least
``SPLIT_MIN_FLOPS`` of the step's ~6·n·Σ n_in·n_out floating-point
operations, or the step runs on fewer threads (on one, for 784-30-10 with
batches of 10 or 20, where two threads took 1.2-1.3x as long as one; two
threads won from 5.7 MFLOP a step on the 2-core Xeon we measure on).  The
count depends on the network and the batch size only, so results stay
repeatable for a given ``n_threads``.
"""

from cython.parallel cimport prange
cimport numpy as cnp

from ._blas cimport floating, gemm
from ._fpu cimport flush_subnormals, restore_fpu
from ._kernels_common cimport (
    Plan, Shape, Opt, StepOut, OPT_SGD, act_ptr, zout_ptr, gather_rows, bias_act_rows, loss_delta_rows,
    deriv_range, col_sum_range, sum_rows, update_range, momentum_range,
)
from ._kernels_terms cimport Terms, weight_rows

cdef Py_ssize_t SPLIT_MIN_FLOPS = 2500000     # floating-point operations per thread and step


def _set_split_min_flops(Py_ssize_t flops):
    """Set the minimum work per thread (tests split tiny networks with 1); returns the old value."""
    global SPLIT_MIN_FLOPS
    old = SPLIT_MIN_FLOPS
    SPLIT_MIN_FLOPS = max(1, flops)
    return old


cdef Py_ssize_t split_delta_width(const Shape* s) noexcept nogil:
    """Elements per batch row of the ``deltas`` buffer: sizes[1] + ... + sizes[L]."""
    return s.cum[s.n_layers + 1] - s.sizes[0]


cdef inline floating* layer_delta(const Shape* s, floating* deltas, Py_ssize_t cap,
                                  int l) noexcept nogil:
    """δ^l, (cap, sizes[l]), for l = 1..L."""
    return deltas + cap * (s.cum[l] - s.sizes[0])


cdef void rows_pass(const Shape* s, const floating* theta, const floating* X, const floating* Y,
                    const cnp.intp_t* rows, const cnp.int64_t* labels, Py_ssize_t r0,
                    Py_ssize_t r1, floating* scr, floating* deltas, Py_ssize_t cap,
                    double* row_loss, unsigned char* row_correct, const Terms* t) noexcept nogil:
    """Region 1 for batch rows r0..r1-1: gather, forward, loss, δ^L .. δ^1."""
    cdef int L = s.n_layers, l
    cdef Py_ssize_t n = r1 - r0, n_in, n_out, k = s.sizes[L]
    cdef floating* A
    cdef floating* Z
    cdef floating* D
    cdef floating* P
    if n <= 0:
        return
    gather_rows(X, rows, r0, r1, s.sizes[0], act_ptr(s, scr, cap, 0))
    for l in range(L):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        A = act_ptr(s, scr, cap, l + 1)
        Z = zout_ptr(s, scr, cap) if l == L - 1 else A
        gemm(False, True, n, n_out, n_in, <floating>1, act_ptr(s, scr, cap, l) + r0 * n_in, n_in,
             theta + s.w_off[l], n_in, <floating>0, Z + r0 * n_out, n_out)
        bias_act_rows(Z, A, theta + s.b_off[l], r0, r1, n_out, s.output if l == L - 1 else s.hidden)
    D = layer_delta(s, deltas, cap, L)
    loss_delta_rows(s, act_ptr(s, scr, cap, L), zout_ptr(s, scr, cap), D, Y, rows, labels, r0, r1,
                    row_loss, row_correct)
    if t != NULL and t.weight != NULL:
        weight_rows(D + r0 * k, row_loss + r0, t.weight, rows + r0, n, k, t.weight_scale)
    for l in range(L - 1, 0, -1):     # BP2: δ^l = (δ^{l+1} W^{l+1}) ⊙ σ'(a^l)
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        D = layer_delta(s, deltas, cap, l + 1)
        P = layer_delta(s, deltas, cap, l)
        gemm(False, False, n, n_in, n_out, <floating>1, D + r0 * n_out, n_out, theta + s.w_off[l],
             n_in, <floating>0, P + r0 * n_in, n_in)
        deriv_range(P, act_ptr(s, scr, cap, l), r0 * n_in, r1 * n_in, s.hidden)


cdef void units_pass(const Shape* s, floating* theta, floating* scr, floating* deltas,
                     Py_ssize_t cap, Py_ssize_t n, floating* G, floating* m, floating* v,
                     const Opt* o, int part, int parts) noexcept nogil:
    """Region 2, share ``part`` of ``parts``: units u0..u1-1 of every layer, their
    gradient over the batch and their update (block_backward_update's formulas)."""
    cdef int L = s.n_layers, l
    cdef Py_ssize_t n_in, n_out, u0, u1, i0, i1
    cdef floating rows = <floating>n
    cdef floating* D
    cdef floating* W
    cdef const floating* A_prev
    for l in range(L):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        u0 = part * n_out // parts
        u1 = (part + 1) * n_out // parts
        if u1 <= u0:
            continue
        i0 = u0 * n_in
        i1 = u1 * n_in
        D = layer_delta(s, deltas, cap, l + 1)
        A_prev = act_ptr(s, scr, cap, l)
        W = theta + s.w_off[l]
        if o.kind == OPT_SGD and o.momentum == 0:
            gemm(True, False, u1 - u0, n_in, n, <floating>(-o.lr / n), D + u0, n_out, A_prev, n_in,
                 <floating>(1 - o.lr * o.weight_decay), W + i0, n_in)
        elif o.kind == OPT_SGD and not o.nesterov:
            gemm(True, False, u1 - u0, n_in, n, <floating>(1.0 / n), D + u0, n_out, A_prev, n_in,
                 <floating>o.momentum, m + s.w_off[l] + i0, n_in)
            momentum_range(W, m + s.w_off[l], i0, i1, o)
        else:
            gemm(True, False, u1 - u0, n_in, n, <floating>1, D + u0, n_out, A_prev, n_in,
                 <floating>0, G + s.w_off[l] + i0, n_in)
            update_range(W, G + s.w_off[l], 1, 0, i0, i1, rows, True, o,
                         m + s.w_off[l], v + s.w_off[l])
        col_sum_range(D, n, n_out, u0, u1, G + s.b_off[l])
        update_range(theta + s.b_off[l], G + s.b_off[l], 1, 0, u0, u1, rows, False, o,
                     m + s.b_off[l], v + s.b_off[l])


cdef Py_ssize_t split_parts(const Shape* s, Py_ssize_t n, int nthreads) noexcept nogil:
    """Threads a step of ``n`` rows runs on: at most ``nthreads`` and ``n``, and only as
    many as have SPLIT_MIN_FLOPS of its ~6·n·Σ n_in·n_out operations each."""
    cdef Py_ssize_t work = 0, parts = nthreads if nthreads < n else n
    cdef int l
    for l in range(s.n_layers):
        work += s.sizes[l] * s.sizes[l + 1]
    work = 6 * n * work // SPLIT_MIN_FLOPS
    if parts > work:
        parts = work
    return parts if parts > 1 else 1


def threads_for_step(Plan plan not None, Py_ssize_t n, int nthreads):
    """How many threads split mode runs a step of ``n`` rows on, given ``nthreads``."""
    return split_parts(&plan.s, n, nthreads)


cdef StepOut step_split(const Shape* s, floating* theta, const floating* X, const floating* Y,
                        const cnp.intp_t* rows, const cnp.int64_t* labels, Py_ssize_t n,
                        floating* scratch, floating* deltas, Py_ssize_t cap, floating* grads,
                        floating* m, floating* v, double* row_loss, unsigned char* row_correct,
                        const Opt* o, int nthreads, const Terms* t) noexcept nogil:
    """One SGD step on ``n`` rows in split mode (module doc); no update when the loss
    is not finite.  ``t`` (or NULL) may carry sample weights only."""
    cdef Py_ssize_t parts = split_parts(s, n, nthreads)
    cdef int p
    cdef unsigned int csr
    cdef StepOut out
    if parts <= 1:      # one thread: no OpenMP region at all (batch mode's arithmetic)
        rows_pass(s, theta, X, Y, rows, labels, 0, n, scratch, deltas, cap, row_loss,
                  row_correct, t)
    else:
        for p in prange(parts, schedule='static', chunksize=1, num_threads=parts):
            csr = flush_subnormals()      # each worker as the calling thread (cymlp/_fpu.pxd)
            rows_pass(s, theta, X, Y, rows, labels, p * n // parts, (p + 1) * n // parts,
                      scratch, deltas, cap, row_loss, row_correct, t)
            restore_fpu(csr)
    out = sum_rows(row_loss, row_correct, n)
    if not out.finite:
        return out
    if parts <= 1:
        units_pass(s, theta, scratch, deltas, cap, n, grads, m, v, o, 0, 1)
    else:
        for p in prange(parts, schedule='static', chunksize=1, num_threads=parts):
            csr = flush_subnormals()
            units_pass(s, theta, scratch, deltas, cap, n, grads, m, v, o, p, parts)
            restore_fpu(csr)
    return out
