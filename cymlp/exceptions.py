"""The exceptions cymlp raises besides Python's own (``ValueError``, ``TypeError``, ...).

:class:`TrainingDiverged` is also ``cymlp.TrainingDiverged``; :class:`SchedulerLost`
is also ``cymlp.distributed.SchedulerLost``.
"""

__all__ = ["SchedulerLost", "TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being finite during ``fit``.

    Raised by ``Network.fit(..., on_divergence="raise")`` (the default) after
    the last finite weights (or those of the best epoch, with early stopping)
    were restored; ``net.history_.diverged`` is then True.
    """


class SchedulerLost(RuntimeError):
    """``fit_distributed`` lost its connection to the Dask scheduler mid-fit.

    Raised within a few seconds of the loss; the network keeps the averaged
    weights of the last completed round (``net.history_`` holds the epochs
    completed).  The workers' state died with the scheduler: start the
    scheduler again and call ``fit_distributed`` to continue from those weights.
    """
