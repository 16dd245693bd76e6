"""The ``"lbfgs"`` solver: scipy's L-BFGS-B over the whole training set, as scikit-learn runs it.

The objective is the network's (:meth:`cymlp.Network.objective`: the mean
loss plus ``alpha / (2 n)`` times the squared weights, each evaluation one
pass through the compiled path); the optimizer, its options (``max_iter``
→ ``maxiter``, ``max_fun`` → ``maxfun``, ``tol`` → ``gtol``), its
``ConvergenceWarning`` and the fitted attributes (``n_iter_``, ``loss_``;
no ``loss_curve_``, ``best_loss_`` or validation scores) are
scikit-learn's.  One quirk is kept so that both follow the same path: for
several regression outputs scikit-learn's squared error is the *mean* over
the outputs while its gradient is that of their sum, and L-BFGS sees both.
"""

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from ._stochastic import NON_FINITE_MESSAGE

# scipy 1.15 deprecated L-BFGS-B's iprint (scikit-learn passes it to older versions only)
_minimize: Any = scipy.optimize.minimize      # (scipy's overloads do not cover jac=True's pair)
_PASS_IPRINT = tuple(int(p) for p in scipy.__version__.split(".")[:2]) < (1, 15)


class LbfgsSolver:
    """The ``"lbfgs"`` training of :class:`~cymlp.sklearn._base.BaseMLP` (a mixin)."""

    if TYPE_CHECKING:
        # the estimator's parameters and BaseMLP's methods: Any to the type checker here
        def __getattr__(self, name: str) -> Any: ...

    def _fit_lbfgs(self, X, Y, sample_weight):
        net = self._network()
        net.n_threads = self.n_threads
        objective = net.objective(X, Y, alpha=self.alpha, sample_weight=sample_weight)
        n_outputs = Y.shape[1]
        mean_over_outputs = self._network_loss() == "quadratic" and n_outputs > 1

        def loss_and_grad(theta: Any) -> Any:
            loss, grad = objective(theta)
            if mean_over_outputs:          # scikit-learn's value; its gradient is the sum's
                loss -= objective.data_loss * (1 - 1 / n_outputs)
            return loss, grad

        options: dict[str, Any] = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        if _PASS_IPRINT:
            options["iprint"] = 1 if self.verbose else -1
        with np.errstate(over="ignore", invalid="ignore"):
            result = _minimize(loss_and_grad, net.get_flat_params().astype(np.float64),
                               method="L-BFGS-B", jac=True, options=options)
        self.n_iter_ = min(result.nit, self.max_iter)
        if result.status != 0:
            _warn_not_converged(result, self.n_iter_, self.max_iter)
        self.loss_ = result.fun
        if not np.isfinite(result.x).all():
            raise ValueError(NON_FINITE_MESSAGE)
        net.set_flat_params(result.x)


def _warn_not_converged(result, n_iter, max_iter):
    """scikit-learn's ConvergenceWarning for an L-BFGS run that did not converge (same text)."""
    message = (f"lbfgs failed to converge after {n_iter} iteration(s) (status={result.status}):\n"
               f"{result.message}\n")
    if n_iter == max_iter:
        message += (f"\nIncrease the number of iterations to improve the convergence "
                    f"(max_iter={max_iter}).")
    message += ("\nYou might also want to scale the data as shown in:\n"
                "    https://scikit-learn.org/stable/modules/preprocessing.html")
    warnings.warn(message, ConvergenceWarning, stacklevel=4)
