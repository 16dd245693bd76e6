# cython: language_level=3
"""Sparse training inputs for the compiled trainers: ``SparseRows`` checks a CSR
matrix's arrays once and hands the kernels a ``CSR`` struct (``_kernels_sparse.pxd``).
Re-exported by :mod:`cymlp._kernels`.
"""

import numpy as np
cimport numpy as cnp

cnp.import_array()

_INDEX_TYPES = (np.dtype(np.int32), np.dtype(np.int64))


cdef class SparseRows:
    """A CSR matrix's arrays, checked so that the kernels can gather its rows unchecked.

    Parameters
    ----------
    data : ndarray of shape (nnz,), float32 or float64
        The stored values (IN), C-contiguous.
    indices : ndarray of shape (nnz,), int32 or int64
        The column of each value, each in 0..n_cols-1 (IN).
    indptr : ndarray of shape (n_rows + 1,), the dtype of ``indices``
        Row offsets: 0 first, non-decreasing, ``nnz`` last (IN).
    n_cols : int
        Columns of the matrix.
    """

    def __init__(self, data, indices, indptr, Py_ssize_t n_cols):
        for name, a in (("data", data), ("indices", indices), ("indptr", indptr)):
            if not isinstance(a, np.ndarray) or a.ndim != 1 or not a.flags.c_contiguous:
                raise ValueError(f"SparseRows: {name} must be a 1-D C-contiguous ndarray; got "
                                 f"{type(a).__name__} {getattr(a, 'shape', '')}")
        if data.dtype not in (np.float32, np.float64):
            raise ValueError(f"SparseRows: data has dtype {data.dtype}, expected float32 or float64")
        if indices.dtype not in _INDEX_TYPES or indptr.dtype != indices.dtype:
            raise ValueError(f"SparseRows: indices and indptr must both be int32 or both int64; "
                             f"got {indices.dtype} and {indptr.dtype}")
        if indices.shape[0] != data.shape[0]:
            raise ValueError(f"SparseRows: {indices.shape[0]} indices for {data.shape[0]} values")
        if indptr.shape[0] < 2:
            raise ValueError("SparseRows: the matrix has no rows")
        if n_cols < 1:
            raise ValueError(f"SparseRows: n_cols must be >= 1; got {n_cols}")
        last = indptr[indptr.shape[0] - 1]
        if indptr[0] != 0 or last != data.shape[0] or np.any(np.diff(indptr) < 0):
            raise ValueError("SparseRows: indptr must start at 0, never decrease and end at nnz "
                             f"({data.shape[0]})")
        if data.shape[0] and (indices.min() < 0 or indices.max() >= n_cols):
            raise ValueError(f"SparseRows: column indices must lie in 0..{n_cols - 1}; found "
                             f"{indices.min()}..{indices.max()}")
        self.data, self.indices, self.indptr = data, indices, indptr
        self.n_rows = indptr.shape[0] - 1
        self.n_cols = n_cols
        self.c.data = cnp.PyArray_DATA(data)
        self.c.indices = cnp.PyArray_DATA(indices)
        self.c.indptr = cnp.PyArray_DATA(indptr)
        self.c.wide = indices.dtype == np.int64

    @property
    def dtype(self):
        """The values' dtype."""
        return self.data.dtype

    @property
    def shape(self):
        """``(n_rows, n_cols)``."""
        return (self.n_rows, self.n_cols)
