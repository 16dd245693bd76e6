# cython: language_level=3
"""Fused-type BLAS wrappers over ``scipy.linalg.cython_blas``.

The one place where BLAS integer types live: callers pass ``Py_ssize_t``
sizes and row-major ("C order") matrices; the wrappers call the column-major
Fortran BLAS by swapping operands (a row-major matrix is the transpose of a
column-major one, and (AB)ᵀ = BᵀAᵀ).
"""

from scipy.linalg.cython_blas cimport sgemm, dgemm

ctypedef fused floating:
    float
    double


cdef inline void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      floating alpha,
                      const floating* A, Py_ssize_t lda,     # IN
                      const floating* B, Py_ssize_t ldb,     # IN
                      floating beta,
                      floating* C, Py_ssize_t ldc) noexcept nogil:   # INOUT (OUT if beta is 0)
    """Row-major ``C (m, n) = alpha · op(A) · op(B) + beta · C``.

    ``op(A)`` is ``A`` (m, k) or, with ``trans_a``, ``Aᵀ`` for ``A`` (k, m);
    likewise ``op(B)`` is (k, n).  ``lda``, ``ldb``, ``ldc`` are row strides
    in elements.  Column-major BLAS computes ``Cᵀ = op(B)ᵀ · op(A)ᵀ``.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int mi = <int>m, ni = <int>n, ki = <int>k
    cdef int la = <int>lda, lb = <int>ldb, lc = <int>ldc
    if floating is float:
        sgemm(&tb, &ta, &ni, &mi, &ki, &alpha, <float*>B, &lb, <float*>A, &la, &beta, C, &lc)
    else:
        dgemm(&tb, &ta, &ni, &mi, &ki, &alpha, <double*>B, &lb, <double*>A, &la, &beta, C, &lc)
