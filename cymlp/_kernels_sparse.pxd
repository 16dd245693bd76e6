# cython: language_level=3
"""Sparse inputs (CSR rows) for the compiled path: the struct a worker reads
them through, and the gather of a batch's rows into its dense input block.

Training on a ``scipy.sparse`` matrix never densifies it: each step copies
the rows of its batch into the block's dense A_0 (``cap`` rows, the same
buffer a dense batch is gathered into), so the extra memory is that of a
batch, O(batch_size · n_features).  From there on the step is the dense
step: a sparse fit does the arithmetic of the dense fit on the same values,
bit for bit.  ``SparseRows`` (``_kernels_sparse.pyx``) checks the arrays and
fills the struct; Python hands it to a trainer in place of ``X``.
"""

cimport numpy as cnp
from libc.string cimport memset

from ._blas cimport floating


cdef struct CSR:
    # The training inputs as compressed sparse rows (scipy's CSR layout), values of
    # theta's dtype; indices and indptr both int32 or both int64 (``wide``).
    const void* data              # (nnz,) the stored values
    const void* indices           # (nnz,) the column of each value, 0..n_cols-1
    const void* indptr            # (n_rows + 1,) row i's values are data[indptr[i]:indptr[i+1]]
    bint wide                     # int64 indices and indptr (else int32)


cdef class SparseRows:
    cdef CSR c
    cdef readonly object data, indices, indptr
    cdef readonly Py_ssize_t n_rows, n_cols


ctypedef fused index_t:
    cnp.int32_t
    cnp.int64_t


cdef inline void _gather_csr(const floating* data,     # IN (nnz,)
                             const index_t* indices,   # IN (nnz,)
                             const index_t* indptr,    # IN (N + 1,)
                             const cnp.intp_t* rows,   # IN (r1,) example of each row, or NULL
                             Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t width,
                             floating* out) noexcept nogil:   # OUT (r1, width), rows r0..r1-1
    cdef Py_ssize_t r, i, k
    cdef floating* o
    for r in range(r0, r1):
        o = out + r * width
        memset(o, 0, width * sizeof(floating))
        i = rows[r] if rows != NULL else r
        for k in range(indptr[i], indptr[i + 1]):
            o[indices[k]] = o[indices[k]] + data[k]     # a repeated column adds, as toarray()


cdef inline void gather_csr_rows(const CSR* X,              # IN the sparse inputs
                                 const cnp.intp_t* rows,    # IN (r1,) example of each row
                                 Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t width,
                                 floating* out) noexcept nogil:   # OUT (r1, width), rows r0..r1-1
    """out[r] = X[rows[r]] densified, for r in r0..r1-1 (the sparse twin of gather_rows)."""
    if X.wide:
        _gather_csr(<const floating*>X.data, <const cnp.int64_t*>X.indices,
                    <const cnp.int64_t*>X.indptr, rows, r0, r1, width, out)
    else:
        _gather_csr(<const floating*>X.data, <const cnp.int32_t*>X.indices,
                    <const cnp.int32_t*>X.indptr, rows, r0, r1, width, out)
