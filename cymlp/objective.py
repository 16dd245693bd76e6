"""The full-batch training objective of a network, for optimizers that want ``f(θ)`` and ``∇f(θ)``.

:meth:`cymlp.Network.objective` returns an :class:`Objective`: a callable
that takes a flat parameter vector (laid out as
:meth:`~cymlp.Network.get_flat_params`) and returns the loss over *every*
training row and its gradient, the pair ``scipy.optimize.minimize(...,
jac=True)`` expects.  That is how scikit-learn's ``solver="lbfgs"`` trains
(and :mod:`cymlp.sklearn` with it)::

    import scipy.optimize
    f = net.objective(X, y, alpha=1e-4)
    result = scipy.optimize.minimize(f, net.get_flat_params(), jac=True, method="L-BFGS-B",
                                     options={"maxiter": 200})
    net.set_flat_params(result.x)

The loss is scikit-learn's (``MLPClassifier``/``MLPRegressor`` with
``solver="lbfgs"``, for cymlp's losses)::

    f(θ) = Σ_x w_x C_x / Σ_x w_x  +  α / (2 Σ_x w_x) · Σ_l ‖W^l‖²

with ``w_x = 1`` without sample weights (the denominators are then the
number of rows ``n``); biases are not penalised.  The data is checked once,
when the objective is made, and so are its buffers; each evaluation is one
pass over all rows (on the compiled path, one call into the kernels, in
blocks of rows, the GEMMs on the network's threads; a sparse ``X`` is
densified a block at a time).  The network itself is never changed: θ is a
candidate point.

Why not ``Network.fit(optimizer="lbfgs")``: ``fit`` is mini-batch training
by epochs (learning rate, batch size, schedules, callbacks, early stopping,
resumable optimizer state), none of which a quasi-Newton method has; its
stopping rules (gradient tolerance, iteration and evaluation budgets) are
the optimizer's own.  The objective leaves those to the optimizer.
"""

import numpy as np

from . import _validation as v
from ._spec import layer_views


class Objective:
    """``f(theta) -> (loss, grad)``: a network's full-batch loss with its L2 term, and its gradient.

    Made by :meth:`cymlp.Network.objective` (see this module's doc for the
    formula); not meant to be built directly.

    Parameters
    ----------
    full_batch : cymlp._backends.FullBatch
        The backend's pass over every row (summed loss and gradient).
    sizes : sequence of int
        The network's layer sizes.
    dtype : numpy dtype
        The network's dtype: each θ is cast to it for the pass.
    weight_sum : float
        Σ_x w_x, the L2 term's denominator.
    alpha : float
        The L2 strength α >= 0.
    pass_weight_sum : float or None
        What the pass's sums are divided by when it differs from
        ``weight_sum``: the sum of the weights the pass runs on (checked
        weights are scaled by a power of two; equal ones run unweighted: n).

    Attributes
    ----------
    n_params : int
        Length of the parameter vector.
    weight_sum : float
        Σ_x w_x: the number of rows without sample weights.
    alpha : float
        The L2 strength α.
    n_evaluations : int
        Calls so far.
    data_loss : float or None
        The first term of the last evaluation (the mean loss without the L2
        term); None before the first.
    """

    def __init__(self, full_batch, sizes, dtype, weight_sum, alpha, pass_weight_sum=None):
        self._pass = full_batch
        self.n_params = int(sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])))
        self.weight_sum = float(weight_sum)
        # what the pass's sums are divided by: Σw, or n where equal weights ran unweighted
        self._pass_sum = self.weight_sum if pass_weight_sum is None else float(pass_weight_sum)
        self.alpha = float(alpha)
        self.n_evaluations = 0
        self.data_loss = None
        self._theta = np.zeros(self.n_params, dtype=dtype)       # theta in the network's dtype
        self._grad = np.zeros(self.n_params, dtype=dtype)        # the pass's gradient sums
        decay = np.zeros(self.n_params)                          # α/Σw on the weights, 0 on the biases
        for W in layer_views(tuple(sizes), decay)[0]:
            W[...] = self.alpha / self.weight_sum
        self._decay = decay

    def __call__(self, theta):
        """The loss and gradient at ``theta``.

        Parameters
        ----------
        theta : array-like (n_params,)
            Parameters laid out as :meth:`~cymlp.Network.get_flat_params`
            (cast to the network's dtype for the pass).

        Returns
        -------
        loss : float
            f(θ).
        grad : ndarray (n_params,), float64
            ∇f(θ), a new array.
        """
        theta = np.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},), laid out as "
                             f"get_flat_params(); got {theta.shape}")
        self._theta[...] = theta
        with np.errstate(over="ignore", invalid="ignore"):
            total = self._pass.evaluate(self._theta, self._grad)
            self.n_evaluations += 1
            self.data_loss = total / self._pass_sum
            grad = np.multiply(self._grad, 1.0 / self._pass_sum, dtype=np.float64)
            theta64 = self._theta.astype(np.float64, copy=False)
            penalty = self._decay * theta64
            grad += penalty
            loss = self.data_loss + 0.5 * float(np.dot(penalty, theta64))
        return float(loss), grad

    def __repr__(self):
        return (f"Objective(n_params={self.n_params}, weight_sum={self.weight_sum:g}, "
                f"alpha={self.alpha:g}, n_evaluations={self.n_evaluations})")


def make_objective(backend, spec, X, y, n_threads, alpha=0.0, sample_weight=None):
    """The :class:`Objective` of a network's spec and backend on ``X``, ``y`` (checked here).

    Parameters
    ----------
    backend : Backend
        The network's backend (its ``full_batch`` pass).
    spec : ModelSpec
        The network's architecture.
    X : array-like or scipy.sparse matrix (n, sizes[0])
        Inputs.
    y : array-like
        Labels or targets, as for ``fit``.
    n_threads : int
        Threads of the pass (the compiled path's BLAS pool).
    alpha : float
        L2 strength α >= 0.
    sample_weight : array-like (n,) or None
        Row weights >= 0 with a positive sum.

    Returns
    -------
    Objective
        The callable.
    """
    X, Y, _ = v.check_Xy(spec, X, y)
    alpha = v.check_real("alpha", alpha, low=0)
    w = v.check_sample_weight(sample_weight, X.shape[0])
    weight_sum = pass_sum = X.shape[0]
    if sample_weight is not None:
        # the L2 term's denominator is the weights' own sum; the pass runs on the checked weights
        # (scaled by a power of two, or None when equal), so its sums are divided by theirs
        weight_sum = float(np.sum(np.asarray(sample_weight, dtype=np.float64)))
        pass_sum = float(np.sum(w)) if w is not None else X.shape[0]
    full_batch = backend.full_batch(spec, X, Y, n_threads, sample_weight=w)
    return Objective(full_batch, spec.sizes, spec.dtype, weight_sum, alpha, pass_sum)
