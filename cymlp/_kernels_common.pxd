# cython: language_level=3
"""The vocabulary of the compiled path, shared by every kernel module: the codes
of each choice the kernels make (one enum each, whose Python names
``_kernels_common.pyx`` builds from it), the C structs a step works with, the
network's shape, scalar maths and the scratch layout of a block of rows.

The modules cimport from here, as scikit-learn's k-means kernels cimport
``_k_means_common.pxd``:

``_kernels_common.pyx``   the plan, the checks at every entry point, the Python names
``_kernels_terms.pyx``    dropout, sample weights, clipping (cimports nothing of the others)
``_kernels_block.pyx``    forward, loss and backward on a block of rows, and a worker's
                          step made of them
``_kernels_update.pyx``   gradient sums, clipping, the optimizer update
``_kernels.pyx``          the sync trainer (chunked and batch mode); ``_kernels_split.pyx``
                          split mode's step; ``_kernels_parallel.pyx`` hogwild and average;
                          ``_kernels_passes.pyx`` forward and loss gradient outside training

Arguments.  Where a kernel function is defined, each pointer or array argument is
tagged ``# IN`` (only read), ``# OUT`` (only written) or ``# INOUT`` (read and
written), as scikit-learn tags its kernels; scalars are passed by value (IN).
"""

cimport numpy as cnp
from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf, sqrt, sqrtf
from libc.math cimport fabs, fabsf

from ._blas cimport floating
from ._vmath cimport exp_nonpos_f32, exp_nonpos_f64
from ._kernels_terms cimport Drop, Terms
from ._kernels_sparse cimport CSR


# --------------------------------------------------------------------------
# The codes of every choice; Python sees them as enums of _kernels_common
# and as {name: code} tables whose names are the enumerators' in lower case
# --------------------------------------------------------------------------

cpdef enum Activation:
    SIGMOID
    TANH
    RELU
    LEAKY_RELU
    SOFTMAX
    IDENTITY
    EXP                     # output only: a = e^z, the log link of the Poisson loss

cpdef enum Loss:
    QUADRATIC
    CROSS_ENTROPY
    POISSON                 # half the Poisson deviance, with EXP outputs

cpdef enum Optimizer:
    SGD
    ADAM

cpdef enum Mode:            # how the sync trainer shares a step among threads
    CHUNKED
    BATCH
    SPLIT

cpdef enum Strategy:        # one SGD worker per thread (_kernels_parallel.pyx)
    HOGWILD
    AVERAGE

cpdef enum Weighting:       # the replicas' weights when they are averaged
    UNIFORM
    EXAMPLES

cdef enum:
    # Rows per chunk in chunked mode (chunks are balanced: B rows make
    # ceil(B / ROWS_PER_CHUNK) chunks of nearly equal size), and the cap on chunks.
    ROWS_PER_CHUNK = 32
    MAX_CHUNKS = 64
    # Threaded elementwise passes hand each thread blocks of this many elements.
    ELEM_BLOCK = 8192


# --------------------------------------------------------------------------
# The C structs of a step
# --------------------------------------------------------------------------

cdef struct Shape:
    int n_layers
    Activation hidden
    Activation output
    Loss loss
    Py_ssize_t* sizes     # (n_layers + 1,)
    Py_ssize_t* w_off     # (n_layers,) offset of W_l in theta
    Py_ssize_t* b_off     # (n_layers,) offset of b_l in theta
    Py_ssize_t* cum       # (n_layers + 2,) cum[l] = sizes[0] + ... + sizes[l-1]
    Py_ssize_t max_width  # max(sizes[1:])
    Py_ssize_t n_params
    Py_ssize_t row_width  # scratch elements per row


cdef struct Opt:
    Optimizer kind
    bint nesterov
    double lr             # set per run call
    double momentum
    double weight_decay
    double beta1
    double beta2
    double eps
    double bc1            # 1 - beta1**step, set per step
    double bc2            # 1 - beta2**step


cdef struct StepOut:
    double loss_sum
    Py_ssize_t correct
    bint finite


cdef struct Block:
    # A block of at most ``cap`` rows and its scratch (layout in _kernels_common.pyx).
    # Block row r is example rows[r] of the data (r itself when rows is NULL) and
    # batch row row0 + r, which keys its dropout masks; its loss and correctness go to
    # row_loss[r] and row_correct[r].  The void pointers are of theta's dtype (a C
    # struct cannot hold a fused type): every function casts them to its ``floating``.
    const void* A0                # (cap, sizes[0]) inputs: the gathered A_0, or the caller's X
    void* scr                     # (cap · row_width,) activations, Z_out, δ
    Py_ssize_t cap
    const Drop* drop              # dropout on the hidden layers, or NULL
    void* dbuf                    # the block's dropout buffer (see Drop), or NULL
    const cnp.intp_t* rows
    Py_ssize_t row0
    double* row_loss
    unsigned char* row_correct


cdef struct Worker:
    # One SGD worker: what its steps read and the buffers they write, all made once
    # per fit (the sync trainer has one worker, hogwild and average one per thread).
    # The void pointers are of theta's dtype, as in Block.
    const Shape* s                # the network
    Opt opt                       # its optimizer settings (Adam's corrections: its own steps)
    Terms terms                   # sample weights, dropout, clipping (all 0/NULL: none)
    const void* X                 # (N, sizes[0]) training inputs (dense), or NULL
    const CSR* Xs                 # the training inputs as sparse rows, or NULL (dense X)
    const void* Y                 # (N, sizes[L]) targets
    const cnp.int64_t* labels     # (N,) class labels for accuracy, or NULL
    Py_ssize_t n_examples         # N
    Py_ssize_t cap                # rows per block: a chunk, or the whole batch
    void* scratch                 # one scratch block per chunk, cap · row_width apart
    void* drop_buf                # one dropout buffer per chunk, drop_stride apart; or NULL
    Py_ssize_t drop_stride
    void* grads                   # gradient sums, one buffer per chunk, n_params apart
    void* m                       # (n_params,) momentum velocity or Adam's m
    void* v                       # (n_params,) Adam's v
    void* deltas                  # split mode: every layer's δ, cap · (sizes[1] + ... + sizes[L])
    double* row_loss              # (batch_size,) each row's loss in the current step
    unsigned char* row_correct    # (batch_size,) whether each row is classified correctly
    int nthreads                  # the OpenMP team a step may use (sync trainer)


cdef class Plan:
    cdef Shape s
    cdef cnp.intp_t[::1] _ints


cdef int lookup(dict table, str what, value) except -1
cdef Opt make_opt(str optimizer, double momentum, bint nesterov, double weight_decay,
                  double beta1, double beta2, double eps) except *
cdef void adam_corrections(Opt* o, double step) noexcept nogil
cdef void check_trainer_arrays(Plan plan, theta, X, Y, labels, Py_ssize_t batch_size,
                               str optimizer) except *
cdef void check_order(const cnp.intp_t[::1] order, Py_ssize_t n_rows, Py_ssize_t first,
                      Py_ssize_t stop, Py_ssize_t batch_size) except *
cdef void check_state(str name, buf, theta) except *
cdef void set_worker_inputs(Worker* w, X) except *


# --------------------------------------------------------------------------
# Scalar maths, one source for float and double
# --------------------------------------------------------------------------

cdef inline floating _exp_nonpos(floating x) noexcept nogil:
    """e^x for x <= 0, vectorisable (cymlp/_vmath.pxd)."""
    return exp_nonpos_f32(x) if floating is float else exp_nonpos_f64(x)


cdef inline floating _exp(floating x) noexcept nogil:
    """e^x for any x (overflows to inf past the dtype's range, which training reports)."""
    return expf(x) if floating is float else exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    return logf(x) if floating is float else log(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    return log1pf(x) if floating is float else log1p(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    return tanhf(x) if floating is float else tanh(x)


cdef inline floating _sqrt(floating x) noexcept nogil:
    return sqrtf(x) if floating is float else sqrt(x)


cdef inline floating _fabs(floating x) noexcept nogil:
    return fabsf(x) if floating is float else fabs(x)


# --------------------------------------------------------------------------
# Scratch layout of a block of at most ``cap`` rows (see _kernels_common.pyx)
# --------------------------------------------------------------------------

# (These return addresses inside the scratch ``scr``: they neither read nor write it.)

cdef inline floating* act_ptr(const Shape* s,    # IN
                              floating* scr,     # IN
                              Py_ssize_t cap, int l) noexcept nogil:
    """Activations A_l of a scratch block (A_0 is the gathered input)."""
    return scr + cap * s.cum[l]


cdef inline floating* zout_ptr(const Shape* s,    # IN
                               floating* scr,     # IN
                               Py_ssize_t cap) noexcept nogil:
    """Z_out, the output layer's weighted input."""
    return scr + cap * s.cum[s.n_layers + 1]


cdef inline floating* delta_ptr(const Shape* s,    # IN
                                floating* scr,     # IN
                                Py_ssize_t cap, int which) noexcept nogil:
    """D_0 or D_1, the two ping-pong buffers of errors δ."""
    return scr + cap * (s.cum[s.n_layers + 1] + s.sizes[s.n_layers] + which * s.max_width)


cdef inline Py_ssize_t n_chunks(Py_ssize_t rows) noexcept nogil:
    """Chunks a batch of ``rows`` rows is cut into in chunked mode."""
    cdef Py_ssize_t c = (rows + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK
    if c > MAX_CHUNKS:
        c = MAX_CHUNKS
    return c if c > 0 else 1


cdef inline Block worker_block(const Worker* w,          # IN
                               floating* scr,            # IN (an address, as below)
                               floating* dbuf,           # IN, or NULL
                               const cnp.intp_t* rows,   # IN
                               Py_ssize_t row0) noexcept nogil:
    """The block of ``w``'s batch rows row0.. (examples rows[0], rows[1], ...) in the
    scratch block ``scr`` and dropout buffer ``dbuf`` (or NULL), its inputs gathered
    into the scratch and its tallies in ``w``'s row slots row0.."""
    cdef Block b
    b.A0 = act_ptr(w.s, scr, w.cap, 0)
    b.scr = scr
    b.cap = w.cap
    b.drop = w.terms.drop
    b.dbuf = dbuf
    b.rows = rows
    b.row0 = row0
    b.row_loss = w.row_loss + row0
    b.row_correct = w.row_correct + row0
    return b


cdef inline Block rows_block(const floating* X,            # IN (n, sizes[0])
                             floating* scratch,            # OUT (n · row_width,)
                             Py_ssize_t n,
                             const Drop* d,                # IN fixed dropout masks, or NULL
                             floating* masks,              # IN the masks' buffer, or NULL
                             double* row_loss,             # OUT (n,)
                             unsigned char* row_correct) noexcept nogil:   # OUT (n,)
    """The block of ``n`` rows read in place from X (row r is example r, nothing gathered;
    X may be NULL when the caller sets ``A0`` itself), its tallies in row_loss/row_correct."""
    cdef Block b
    b.A0 = X
    b.scr = scratch
    b.cap = n
    b.drop = d
    b.dbuf = masks
    b.rows = NULL
    b.row0 = 0
    b.row_loss = row_loss
    b.row_correct = row_correct
    return b


cdef StepOut sum_rows(const double* row_loss, const unsigned char* row_correct,
                      Py_ssize_t n) noexcept nogil
