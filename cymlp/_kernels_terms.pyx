# cython: language_level=3
"""The training terms of the compiled path (issue 14): dropout (the ``Dropout``
settings, drawing and applying the masks), sample-weight scaling of a block's
rows, and the clip-norm passes (squared norm of the mean gradient, rescaling).

Every pass here is ``noexcept nogil``, serial and called once per block or
range (never per element); ``_kernels_block.pyx`` calls them from a block's
forward and backward and from a worker's step.  Nothing here cimports the other
kernel modules, so none of them import each other in a cycle.
"""

from libc.math cimport ceil
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

import numpy as np
cimport numpy as cnp

from ._blas cimport floating
from ._random cimport mix64

cnp.import_array()


# --------------------------------------------------------------------------
# Dropout settings of a network
# --------------------------------------------------------------------------

cdef class Dropout:
    """The per-hidden-layer dropout settings of a network as a C struct (see ``Drop``).

    Parameters
    ----------
    sizes : sequence of int
        The layer widths (``Plan.sizes``).
    rates : sequence of float, or None
        One drop rate per hidden layer, each in [0, 1), for training: masks
        are hashed per step from the keys the trainer sets.  None: fixed
        masks supplied in the dropout buffer for every hidden layer (gradcheck).
    relu : bool
        The hidden activation is ReLU: generated masks are applied in place.
    """

    def __init__(self, sizes, rates, bint relu=False):
        cdef int H = len(sizes) - 2, h
        widths = [int(sizes[h + 1]) for h in range(H)]
        if rates is not None and len(rates) != H:
            raise ValueError(f"Dropout: {len(rates)} rates for {H} hidden layers")
        self._offset = np.zeros(max(H, 1), dtype=np.intp)
        self._offset[:H] = np.cumsum([0] + widths[:-1]) if H else []
        self._active = np.ones(max(H, 1), dtype=np.uint8)
        self._threshold = np.zeros(max(H, 1), dtype=np.uint64)
        self._scale = np.ones(max(H, 1), dtype=np.float64)
        self._key = np.zeros(max(H, 1), dtype=np.uint64)
        if rates is not None:
            for h, p in enumerate(rates):
                p = float(p)
                if not 0 <= p < 1:
                    raise ValueError(f"Dropout: rate {p} is outside [0, 1)")
                self._active[h] = p > 0
                # uniform = (bits >> 11)·2⁻⁵³ >= p  ⇔  (bits >> 11) >= ceil(p·2⁵³), exactly
                self._threshold[h] = <uint64_t>ceil(p * 9007199254740992.0)
                self._scale[h] = 1.0 / (1.0 - p)
        cdef cnp.intp_t[::1] offset = self._offset
        cdef unsigned char[::1] active = self._active
        cdef uint64_t[::1] threshold = self._threshold
        cdef double[::1] scale = self._scale
        cdef uint64_t[::1] key = self._key
        self.d.n_hidden = H
        self.d.width = sum(widths)
        self.d.offset = <const Py_ssize_t*>&offset[0]
        self.d.active = &active[0]
        self.d.threshold = &threshold[0]
        self.d.scale = &scale[0]
        self.d.key = &key[0]
        self.keys = &key[0]
        self.d.generate = rates is not None
        self.d.in_place = self.d.generate and relu

    @property
    def width(self):
        """Σ hidden widths: a block of ``cap`` rows needs ``2 · cap · width`` buffer elements."""
        return self.d.width


# --------------------------------------------------------------------------
# Sample weights and dropout on a block of rows
# --------------------------------------------------------------------------

cdef void weight_rows(floating* D,                 # INOUT (n, k) the rows' δ^L
                      double* row_loss,            # INOUT (n,) the rows' losses
                      const double* w,             # IN (N,) sample weights
                      const cnp.intp_t* rows,      # IN (n,) the rows' examples, or NULL
                      Py_ssize_t n, Py_ssize_t k, double scale) noexcept nogil:
    """Weight the rows of a block: row r's δ^L (D, (n, k)) and loss by w_x·scale (BP1).

    ``scale`` is the batch's n / Σ w, so the gradient's division by n gives
    Σ w δ / Σ w; all-ones weights multiply by exactly 1.  Row ``r`` is
    example ``rows[r]`` (``r`` when ``rows`` is NULL).
    """
    cdef Py_ssize_t r, j
    cdef double f
    cdef floating fr
    cdef floating* d
    for r in range(n):
        f = w[rows[r] if rows != NULL else r] * scale
        row_loss[r] = row_loss[r] * f
        fr = <floating>f
        d = D + r * k
        for j in range(k):
            d[j] = d[j] * fr


cdef inline floating unit_multiplier(uint64_t unit_key, uint64_t thr, floating keep) noexcept nogil:
    """A unit's dropout multiplier: ``keep`` (1/(1-p)) when the top 53 bits of its hash
    reach ``thr``, else 0, branch-free (a random keep/drop branch mispredicts): the
    bit pattern of ``keep`` ANDed with all ones or all zeros."""
    cdef floating mult
    cdef uint32_t bits32
    cdef uint64_t bits64
    if floating is float:
        memcpy(&bits32, &keep, 4)
        bits32 = bits32 & <uint32_t>(-<int64_t>((mix64(unit_key) >> 11) >= thr))
        memcpy(&mult, &bits32, 4)
    else:
        memcpy(&bits64, &keep, 8)
        bits64 = bits64 & <uint64_t>(-<int64_t>((mix64(unit_key) >> 11) >= thr))
        memcpy(&mult, &bits64, 8)
    return mult


cdef void drop_rows(const Drop* d,         # IN the dropout settings and this step's keys
                    int h,
                    const floating* A,     # IN (n, m) hidden layer h's activations
                    floating* M,           # OUT (n, m) its multipliers, or NULL
                    floating* At,          # OUT (n, m) A ⊙ M (may be A itself)
                    Py_ssize_t row0, Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """Draw hidden layer h's dropout multipliers for ``n`` rows (batch rows row0..) and
    apply them: At = A ⊙ M, and M (0 or 1/(1-p)) kept unless it is NULL.

    A unit's multiplier is a hash of (the step's key for the layer, batch row,
    unit): the same bits as reference.dropout_masks, whatever block or thread
    computes them (:func:`unit_multiplier`).  For a ReLU layer masked in place
    (``At`` is ``A``, ``M`` NULL) the masked activation ã says all BP2 needs:
    σ'(a)·M is 1/(1-p) where ã > 0 (kept and active) and 0 elsewhere (see
    relu_drop_deriv), so neither M nor the unmasked A is kept.
    """
    cdef Py_ssize_t r, j, i
    cdef uint64_t key = d.key[h], thr = d.threshold[h], row_bits
    cdef floating keep = <floating>d.scale[h], mult
    for r in range(n):
        row_bits = (<uint64_t>(row0 + r)) << 32
        for j in range(m):
            i = r * m + j
            mult = unit_multiplier(key ^ (row_bits | <uint64_t>j), thr, keep)
            if M != NULL:
                M[i] = mult
            At[i] = A[i] * mult


cdef void relu_drop_deriv(floating* D,          # INOUT (count,) δ of the layer
                          const floating* At,   # IN (count,) its masked activations ã
                          double scale, Py_ssize_t count) noexcept nogil:
    """BP2 for a ReLU layer masked in place: D ← D·(1/(1-p)) where ã > 0, else 0.

    Equals (D · [a > 0]) · M of the reference: ã > 0 exactly when the unit was
    kept and a > 0 (a kept a > 0 times 1/(1-p) > 1 stays positive).
    """
    cdef Py_ssize_t i
    cdef floating s = <floating>scale
    for i in range(count):
        D[i] = (D[i] if At[i] > 0 else 0) * s


# --------------------------------------------------------------------------
# Gradient clipping on a range of parameters
# --------------------------------------------------------------------------

cdef double reduce_squares(floating* G,      # INOUT n_src buffers, stride apart
                           Py_ssize_t n_src, Py_ssize_t stride, Py_ssize_t i0, Py_ssize_t i1,
                           floating n_rows) noexcept nogil:
    """Sum the ``n_src`` gradient buffers into G[i0:i1] (in order, as update_range does) and
    return Σ (G[i] / n_rows)², the squared norm of this range of the mean gradient."""
    cdef Py_ssize_t i, c
    cdef floating* Gc
    cdef floating g
    cdef double acc = 0
    for c in range(1, n_src):
        Gc = G + c * stride
        for i in range(i0, i1):
            G[i] = G[i] + Gc[i]
    for i in range(i0, i1):
        g = G[i] / n_rows
        acc += <double>g * <double>g
    return acc


cdef void scale_range(floating* G,         # INOUT
                      Py_ssize_t i0, Py_ssize_t i1, floating n_rows, floating factor) noexcept nogil:
    """G[i] ← (G[i] / n_rows) · factor: the clipped mean gradient (then updated with n_rows 1)."""
    cdef Py_ssize_t i
    for i in range(i0, i1):
        G[i] = (G[i] / n_rows) * factor
