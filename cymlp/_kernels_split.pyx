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

The arithmetic is batch mode's, from the same functions on row and unit
ranges (``forward_loss`` and ``backprop_delta`` of ``_kernels_block.pyx`` for
region 1, ``layer_update`` of ``_kernels_update.pyx`` for region 2).  On one
thread it is batch mode, bit for bit; across thread counts each element is computed by another BLAS call on
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

from cython.parallel cimport prange, parallel
cimport numpy as cnp

from ._blas cimport floating
from ._fpu cimport flush_subnormals, restore_fpu
from ._openmp cimport omp_get_thread_num, omp_get_num_threads, barrier
from ._kernels_common cimport Plan, Shape, Block, Worker, StepOut, act_ptr, worker_block, sum_rows
from ._kernels_block cimport (
    forward_loss, backprop_delta, backprop_delta_cols, gather_inputs, layer_forward, rows_loss,
)
from ._kernels_update cimport layer_update

cdef Py_ssize_t SPLIT_MIN_FLOPS = 2500000     # floating-point operations per thread and step
# A layer's product is shared by units (each thread multiplies its slice of W with every row)
# instead of rows (each thread multiplies all of W with its rows) when W is bigger than the
# other operand by more than this many elements: the BLAS packs its operands per call, so a
# thread packs all of W in a row split and all of the other operand in a unit split; the
# unit split costs a barrier (a few microseconds, ~this many elements of packing).  Negative:
# every hidden product by units (tests).
cdef Py_ssize_t SPLIT_UNITS_MARGIN = 8192


def _set_split_units_margin(Py_ssize_t elements):
    """Set the margin by which W must outweigh the other operand for a unit split (negative: always,
    for tests); returns the old value."""
    global SPLIT_UNITS_MARGIN
    old = SPLIT_UNITS_MARGIN
    SPLIT_UNITS_MARGIN = elements
    return old


def _set_split_min_flops(Py_ssize_t flops):
    """Set the minimum work per thread (tests split tiny networks with 1); returns the old value."""
    global SPLIT_MIN_FLOPS
    old = SPLIT_MIN_FLOPS
    SPLIT_MIN_FLOPS = max(1, flops)
    return old


cdef Py_ssize_t split_delta_width(const Shape* s) noexcept nogil:   # IN
    """Elements per batch row of the ``deltas`` buffer: sizes[1] + ... + sizes[L]."""
    return s.cum[s.n_layers + 1] - s.sizes[0]


cdef inline floating* layer_delta(const Shape* s,       # IN
                                  floating* deltas,     # IN (an address)
                                  Py_ssize_t cap, int l) noexcept nogil:
    """δ^l, (cap, sizes[l]), for l = 1..L."""
    return deltas + cap * (s.cum[l] - s.sizes[0])


cdef void rows_pass(const Worker* w,        # IN; OUT its δ buffer, row tallies
                    floating* theta,        # IN (n_params,)
                    const Block* b,         # INOUT the batch's block
                    Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """Region 1 for batch rows r0..r1-1: gather, forward, loss and δ^L, then δ^{L-1} .. δ^1."""
    cdef const Shape* s = w.s
    cdef floating* deltas = <floating*>w.deltas
    cdef int l
    if r1 <= r0:
        return
    forward_loss(w, theta, b, r0, r1, layer_delta(s, deltas, w.cap, s.n_layers))
    for l in range(s.n_layers - 1, 0, -1):     # BP2: δ^l = (δ^{l+1} W^{l+1}) ⊙ σ'(a^l)
        backprop_delta(s, theta, b, l, r0, r1, layer_delta(s, deltas, w.cap, l + 1),
                       layer_delta(s, deltas, w.cap, l))


cdef inline bint units_forward(const Shape* s,    # IN
                               Py_ssize_t n, int l) noexcept nogil:
    """Whether a step of n rows shares layer l's forward product by units: a hidden layer
    whose W (n_out × n_in) outweighs its input (n × n_in) by SPLIT_UNITS_MARGIN elements."""
    if l == s.n_layers - 1:
        return False            # the output layer: its loss needs whole rows (softmax)
    if SPLIT_UNITS_MARGIN < 0:
        return True
    return (s.sizes[l + 1] - n) * s.sizes[l] > SPLIT_UNITS_MARGIN


cdef inline bint units_backprop(const Shape* s,    # IN
                                Py_ssize_t n, int l) noexcept nogil:
    """Whether BP2 through layer l (δ^{l-1} from δ^l and W^l) is shared by units of layer
    l-1: W^l (n_out × n_in) outweighs δ^l (n × n_out) by SPLIT_UNITS_MARGIN elements."""
    if SPLIT_UNITS_MARGIN < 0:
        return True
    return (s.sizes[l] - n) * s.sizes[l + 1] > SPLIT_UNITS_MARGIN


cdef bint any_units(const Shape* s,    # IN
                    Py_ssize_t n) noexcept nogil:
    cdef int l
    for l in range(s.n_layers):
        if units_forward(s, n, l) or (l > 0 and units_backprop(s, n, l)):
            return True
    return False


def units_for_step(Plan plan not None, Py_ssize_t n):
    """Which products of a threaded step of ``n`` rows split mode shares by units:
    (forward, per layer), (BP2 through layers 1..L-1)."""
    return (tuple(bool(units_forward(&plan.s, n, l)) for l in range(plan.s.n_layers)),
            tuple(bool(units_backprop(&plan.s, n, l)) for l in range(1, plan.s.n_layers)))


cdef void team_pass(const Worker* w,        # IN; OUT its δ buffer, row tallies
                    floating* theta,        # IN (n_params,)
                    const Block* b,         # INOUT the batch's block
                    Py_ssize_t n, int p, int parts) noexcept nogil:
    """Region 1 for thread p of a team of ``parts``, some products shared by units.

    Like ``rows_pass`` on rows p·n/parts .. (p+1)·n/parts, except that a product
    whose weight matrix is the bigger operand (``units_forward``, ``units_backprop``)
    is shared by units: every thread multiplies its slice of W with every row,
    after a barrier (the product needs every row of its input), and the next
    row-shared product waits at a barrier for every unit of its rows.
    """
    cdef const Shape* s = w.s
    cdef floating* deltas = <floating*>w.deltas
    cdef Py_ssize_t r0 = p * n // parts, r1 = (p + 1) * n // parts, width
    cdef int L = s.n_layers, l
    cdef bint shared = False        # the last product was shared by units
    gather_inputs(w, b, r0, r1, act_ptr(s, <floating*>b.scr, b.cap, 0))     # dense or sparse rows
    for l in range(L):
        width = s.sizes[l + 1]
        if units_forward(s, n, l):
            barrier()                # every row of the layer's input
            layer_forward(s, theta, b, l, 0, n, p * width // parts, (p + 1) * width // parts)
            shared = True
            continue
        if shared:
            barrier()                # every unit of this thread's rows
        layer_forward(s, theta, b, l, r0, r1, 0, width)
        shared = False
    rows_loss(w, b, r0, r1, layer_delta(s, deltas, w.cap, L))      # (the output layer's rows)
    for l in range(L - 1, 0, -1):     # BP2: δ^l = (δ^{l+1} W^{l+1}) ⊙ σ'(a^l)
        width = s.sizes[l]
        if units_backprop(s, n, l):
            barrier()                # every row of δ^{l+1}
            backprop_delta_cols(s, theta, b, l, n, p * width // parts, (p + 1) * width // parts,
                                layer_delta(s, deltas, w.cap, l + 1), layer_delta(s, deltas, w.cap, l))
            shared = True
            continue
        if shared:
            barrier()
        backprop_delta(s, theta, b, l, r0, r1, layer_delta(s, deltas, w.cap, l + 1),
                       layer_delta(s, deltas, w.cap, l))
        shared = False


cdef void units_pass(const Worker* w,       # IN its δ and activations; INOUT its optimizer state
                     floating* theta,       # INOUT (n_params,)
                     Py_ssize_t n, int part, int parts) noexcept nogil:
    """Region 2, share ``part`` of ``parts``: units u0..u1-1 of every layer, their
    gradient over the batch and their update (``layer_update``, as batch mode)."""
    cdef const Shape* s = w.s
    cdef int l
    cdef Py_ssize_t n_out, u0, u1
    for l in range(s.n_layers):
        n_out = s.sizes[l + 1]
        u0 = part * n_out // parts
        u1 = (part + 1) * n_out // parts
        if u1 > u0:
            layer_update(w, theta, l, layer_delta(s, <floating*>w.deltas, w.cap, l + 1),
                         act_ptr(s, <floating*>w.scratch, w.cap, l), n, u0, u1)


cdef Py_ssize_t split_parts(const Shape* s,    # IN
                            Py_ssize_t n, int nthreads) noexcept nogil:
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


cdef StepOut step_split(Worker* w,                 # IN; OUT its buffers
                        floating* theta,           # INOUT (n_params,)
                        const cnp.intp_t* rows,    # IN (n,) the batch's examples
                        Py_ssize_t n) noexcept nogil:
    """One SGD step on ``n`` rows in split mode (module doc) on up to ``w.nthreads``
    threads; no update when the loss is not finite.  ``w`` may carry sample weights,
    not dropout or clipping."""
    cdef Py_ssize_t parts = split_parts(w.s, n, w.nthreads)
    cdef Block b = worker_block(w, <floating*>w.scratch, <floating*>NULL, rows, 0)
    cdef int p
    cdef unsigned int csr
    cdef StepOut out
    if parts <= 1:      # one thread: no OpenMP region at all (batch mode's arithmetic)
        rows_pass(w, theta, &b, 0, n)
    elif any_units(w.s, n):
        with parallel(num_threads=parts):
            csr = flush_subnormals()      # each worker as the calling thread (cymlp/_fpu.pxd)
            team_pass(w, theta, &b, n, omp_get_thread_num(), omp_get_num_threads())
            restore_fpu(csr)
    else:
        for p in prange(parts, schedule='static', chunksize=1, num_threads=parts):
            csr = flush_subnormals()      # each worker as the calling thread (cymlp/_fpu.pxd)
            rows_pass(w, theta, &b, p * n // parts, (p + 1) * n // parts)
            restore_fpu(csr)
    out = sum_rows(w.row_loss, w.row_correct, n)
    if not out.finite:
        return out
    if parts <= 1:
        units_pass(w, theta, n, 0, 1)
    else:
        for p in prange(parts, schedule='static', chunksize=1, num_threads=parts):
            csr = flush_subnormals()
            units_pass(w, theta, n, p, parts)
            restore_fpu(csr)
    return out
