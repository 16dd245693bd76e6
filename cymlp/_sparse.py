"""Sparse inputs outside the kernels: dense blocks of rows, bounded in memory.

``X`` may be a ``scipy.sparse`` CSR matrix (checked by
:func:`cymlp._validation.check_X`) wherever a network reads inputs.  Training
never densifies it (the trainers gather each batch's rows into their dense
batch buffer); prediction, evaluation and ``backprop`` work through it in
dense blocks of :func:`block_rows` rows, so the extra memory is one block:
at most :data:`DENSE_BLOCK_ELEMENTS` values (32 MiB in float64), whatever
the size of the matrix.
"""

from ._validation import is_sparse

DENSE_BLOCK_ELEMENTS = 1 << 22      # values in one densified block of rows


def block_rows(X, rows):
    """Rows per block when working through ``X``: ``rows``, fewer for a wide sparse ``X``.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix (n, n_features)
        The inputs.
    rows : int
        The block size for dense inputs.

    Returns
    -------
    int
        ``rows`` for dense inputs; for sparse ones at most
        ``DENSE_BLOCK_ELEMENTS // n_features`` (and at least 1).
    """
    if not is_sparse(X):
        return rows
    return max(1, min(rows, DENSE_BLOCK_ELEMENTS // max(1, X.shape[1])))


def dense(X):
    """``X`` itself when dense, else its rows densified (C-contiguous, of its dtype).

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix
        A block of rows.

    Returns
    -------
    ndarray
        The dense block.
    """
    return X.toarray() if is_sparse(X) else X
