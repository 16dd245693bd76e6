# cython: language_level=3
"""What a step does once the errors δ are known: the gradient sums (BP3,
BP4), gradient clipping and the optimizer update, written once for every
trainer.

Parameter ranges are indices into theta: a worker's gradient buffers and
optimizer state ``m``, ``v`` are laid out like it.  Every function is
``noexcept nogil`` and serial, except ``update_layers`` and
``clip_gradient``, which take a team size.
"""

from cython.parallel cimport prange
from libc.math cimport sqrt

from ._blas cimport floating, gemm
from ._fpu cimport flush_subnormals, restore_fpu
from ._kernels_common cimport Shape, Opt, Worker, ADAM, SGD, ELEM_BLOCK, _sqrt
from ._kernels_terms cimport reduce_squares, scale_range


cdef void col_sum_range(const floating* D,    # IN (n, m)
                        Py_ssize_t n, Py_ssize_t m, Py_ssize_t j0, Py_ssize_t j1,
                        floating* out) noexcept nogil:    # OUT (m,), entries j0..j1-1
    """out[j] = Σ_r D[r, j] for the columns j0..j1-1, adding the rows in order
    (as NumPy's sum(axis=0))."""
    cdef Py_ssize_t r, j
    cdef const floating* dr
    for j in range(j0, j1):
        out[j] = D[j]
    for r in range(1, n):
        dr = D + r * m
        for j in range(j0, j1):
            out[j] = out[j] + dr[j]


# --------------------------------------------------------------------------
# The optimizer update on a range of parameters
# --------------------------------------------------------------------------

cdef void update_range(const Worker* w,     # IN its optimizer; INOUT its m, v, gradients
                       floating* theta,     # INOUT (n_params,)
                       Py_ssize_t n_src, Py_ssize_t i0, Py_ssize_t i1, floating n_rows,
                       bint decay) noexcept nogil:
    """Optimizer step on parameters i0..i1-1 from ``w``'s gradient sums.

    The mean gradient is ``g = (G_0[i] + G_1[i] + ...) / n_rows``, the
    ``n_src`` buffers added in order (into ``G_0[i]``, which is scratch); then
    exactly the operations of reference.sgd_update / reference.adam_update
    (weight decay on this range when ``decay``).  One loop per optimizer so
    that the compiler vectorises them (it moves the loop-invariant tests out).
    """
    cdef const Opt* o = &w.opt
    cdef floating* p = theta
    cdef floating* G = <floating*>w.grads
    cdef floating* m = <floating*>w.m
    cdef floating* v = <floating*>w.v
    cdef Py_ssize_t i, c
    cdef floating g, lr = <floating>o.lr, mu = <floating>o.momentum
    cdef floating wd = <floating>o.weight_decay
    cdef floating b1 = <floating>o.beta1, b2 = <floating>o.beta2, eps = <floating>o.eps
    cdef floating one_b1 = <floating>(1 - o.beta1), one_b2 = <floating>(1 - o.beta2)
    cdef floating step_size = <floating>(o.lr / o.bc1), inv_sqrt_bc2 = <floating>(1 / sqrt(o.bc2))
    cdef floating inv_rows = 1 / n_rows
    cdef bint use_wd = decay and o.weight_decay != 0, nesterov = o.nesterov
    cdef floating* Gc
    for c in range(1, n_src):
        Gc = G + c * w.s.n_params
        for i in range(i0, i1):
            G[i] = G[i] + Gc[i]
    if o.kind == ADAM:
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
    else:       # momentum: the velocity m, and Nesterov's look-ahead step g + μ·m
        for i in range(i0, i1):
            g = G[i] / n_rows
            if use_wd:
                g = g + wd * p[i]
            m[i] = m[i] * mu + g
            p[i] = p[i] - lr * ((g + mu * m[i]) if nesterov else m[i])


cdef void momentum_range(const Worker* w,   # IN its optimizer; INOUT its velocity m
                         floating* theta,   # INOUT (n_params,)
                         Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    """Second half of the fused momentum step: v += λ·W (if any); W −= lr·v."""
    cdef Py_ssize_t i
    cdef floating* vel = <floating*>w.m
    cdef floating lr = <floating>w.opt.lr, wd = <floating>w.opt.weight_decay
    if w.opt.weight_decay != 0:
        for i in range(i0, i1):
            vel[i] = vel[i] + wd * theta[i]
            theta[i] = theta[i] - lr * vel[i]
    else:
        for i in range(i0, i1):
            theta[i] = theta[i] - lr * vel[i]


cdef void layer_update(const Worker* w,        # IN its optimizer; INOUT its m, v, gradients
                       floating* theta,        # INOUT (n_params,)
                       int l,
                       const floating* D,      # IN (n, sizes[l+1]) δ^l of the batch
                       const floating* A_in,   # IN (n, sizes[l]) what W^l multiplied
                       Py_ssize_t n, Py_ssize_t u0, Py_ssize_t u1) noexcept nogil:
    """The gradient of units u0..u1-1 of layer l (rows u0..u1-1 of W^l, entries of b^l)
    over the n rows (BP4, BP3), and their optimizer step.

    Plain SGD folds the step into the gradient GEMM: W ← (1 − lr·λ)·W −
    (lr/n)·δᵀA; momentum folds the velocity: v ← μ·v + δᵀA/n, then v += λ·W,
    W −= lr·v.  Nesterov and Adam go through the gradient buffer and
    ``update_range``.  Batch mode calls it for all units, split mode's threads
    each for theirs.
    """
    cdef const Shape* s = w.s
    cdef const Opt* o = &w.opt
    cdef Py_ssize_t n_in = s.sizes[l], n_out = s.sizes[l + 1]
    cdef Py_ssize_t i0 = s.w_off[l] + u0 * n_in, i1 = s.w_off[l] + u1 * n_in
    cdef floating* G = <floating*>w.grads
    if o.kind == SGD and o.momentum == 0:
        gemm(True, False, u1 - u0, n_in, n, <floating>(-o.lr / n), D + u0, n_out, A_in, n_in,
             <floating>(1 - o.lr * o.weight_decay), theta + i0, n_in)
    elif o.kind == SGD and not o.nesterov:
        gemm(True, False, u1 - u0, n_in, n, <floating>(1.0 / n), D + u0, n_out, A_in, n_in,
             <floating>o.momentum, <floating*>w.m + i0, n_in)
        momentum_range(w, theta, i0, i1)
    else:
        gemm(True, False, u1 - u0, n_in, n, <floating>1, D + u0, n_out, A_in, n_in,
             <floating>0, G + i0, n_in)
        update_range(w, theta, 1, i0, i1, <floating>n, True)
    col_sum_range(D, n, n_out, u0, u1, G + s.b_off[l])
    update_range(w, theta, 1, s.b_off[l] + u0, s.b_off[l] + u1, <floating>n, False)


# The threaded sites below skip the OpenMP region when they would run on one
# thread.  ``prange(..., use_threads_if=False)`` still enters a region (libgomp
# sets up a team of one): ~0.6 µs each on the 2-core Xeon we measure on, three
# per step of the 64-32-10 network, whose whole step takes ~4 µs.  Rarer sites
# (one per run segment or averaging point, _kernels_parallel.pyx) use
# ``use_threads_if``.

cdef void update_threaded(const Worker* w,    # IN its optimizer; INOUT its m, v, gradients
                          floating* theta,    # INOUT (n_params,)
                          Py_ssize_t n_src, Py_ssize_t i0, Py_ssize_t i1, floating n_rows,
                          bint decay, int nthreads) noexcept nogil:
    """update_range over i0..i1-1, in blocks of ELEM_BLOCK on ``nthreads`` threads."""
    cdef Py_ssize_t nb = (i1 - i0 + ELEM_BLOCK - 1) // ELEM_BLOCK, i
    cdef unsigned int csr
    if nthreads <= 1 or nb < 2:
        update_range(w, theta, n_src, i0, i1, n_rows, decay)
        return
    for i in prange(nb, schedule='static', num_threads=nthreads):
        csr = flush_subnormals()      # each worker as the calling thread (cymlp/_fpu.pxd)
        update_range(w, theta, n_src, i0 + i * ELEM_BLOCK, min(i0 + (i + 1) * ELEM_BLOCK, i1),
                     n_rows, decay)
        restore_fpu(csr)


cdef void update_layers(const Worker* w,    # IN its optimizer; INOUT its m, v, gradients
                        floating* theta,    # INOUT (n_params,)
                        Py_ssize_t n_src, floating n_rows, int nthreads) noexcept nogil:
    """The optimizer step of every layer from the sum of ``n_src`` gradient buffers over
    ``n_rows`` rows (weight decay on the weights only); weights on ``nthreads`` threads."""
    cdef const Shape* s = w.s
    cdef int l
    for l in range(s.n_layers):
        update_threaded(w, theta, n_src, s.w_off[l], s.w_off[l] + s.sizes[l] * s.sizes[l + 1],
                        n_rows, True, nthreads)
        update_range(w, theta, n_src, s.b_off[l], s.b_off[l] + s.sizes[l + 1], n_rows, False)


cdef floating clip_gradient(const Worker* w,   # IN its clip settings; OUT its partial norms
                            floating* G,       # INOUT n_src gradient buffers, n_params apart
                            Py_ssize_t n_src, floating n_rows, int nthreads) noexcept nogil:
    """Sum the ``n_src`` gradient buffers into G and clip the mean gradient G/n_rows to
    ``clip_norm`` (global L2 norm, before weight decay, as reference.clip_by_global_norm).

    The squared norm is summed per block of ELEM_BLOCK parameters (on ``nthreads``
    threads), then over the blocks in order: the same for any thread count.
    Returns the divisor the update must use: ``n_rows`` when the norm is within the
    bound (G untouched: the step is bit for bit the unclipped one), else 1 with
    G = (G / n_rows) · clip_norm / norm.
    """
    cdef Py_ssize_t P = w.s.n_params, nb = (P + ELEM_BLOCK - 1) // ELEM_BLOCK, i
    cdef double* parts = w.terms.norm_parts
    cdef double total = 0, norm
    cdef unsigned int csr
    if nthreads <= 1 or nb < 2:
        for i in range(nb):
            parts[i] = reduce_squares(G, n_src, P, i * ELEM_BLOCK, min((i + 1) * ELEM_BLOCK, P),
                                      n_rows)
    else:
        for i in prange(nb, schedule='static', num_threads=nthreads):
            csr = flush_subnormals()
            parts[i] = reduce_squares(G, n_src, P, i * ELEM_BLOCK, min((i + 1) * ELEM_BLOCK, P),
                                      n_rows)
            restore_fpu(csr)
    for i in range(nb):
        total += parts[i]
    norm = sqrt(total)
    if not norm > w.terms.clip_norm:
        return n_rows
    scale_range(G, 0, P, n_rows, <floating>(w.terms.clip_norm / norm))
    return 1
