"""The exceptions cymlp raises besides Python's own (``ValueError``, ``TypeError``, ...).

:class:`TrainingDiverged` is also ``cymlp.TrainingDiverged``.
"""

__all__ = ["TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being finite during ``fit``.

    Raised by ``Network.fit(..., on_divergence="raise")`` (the default) after
    the last finite weights (or those of the best epoch, with early stopping)
    were restored; ``net.history_.diverged`` is then True.
    """
