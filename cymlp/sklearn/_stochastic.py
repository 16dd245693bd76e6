"""The stochastic solvers (``solver="sgd"`` and ``"adam"``): the epoch loop on ``Network.fit``.

scikit-learn's stopping rules (``tol``, ``n_iter_no_change``,
``early_stopping`` with its validation split), its learning-rate schedules
(``"invscaling"``, ``"adaptive"``), its ``loss_curve_`` and its
``ConvergenceWarning``, computed from the history of a ``Network.fit`` whose
callback runs after every epoch.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from ..exceptions import TrainingDiverged
from ..training_state import OptimizerConfig

if TYPE_CHECKING:
    from .._typing import FloatArray
    from ..network import Network

NON_FINITE_MESSAGE = ("Solver produced non-finite parameter weights. The input data may contain "
                      "large values and need to be preprocessed.")       # scikit-learn's words


class StochasticSolver:
    """The ``"sgd"``/``"adam"`` training of :class:`~cymlp.sklearn._base.BaseMLP` (a mixin)."""

    if TYPE_CHECKING:
        # what the solver keeps up to date (BaseMLP's _initialize sets the first values)
        _net: Network
        n_iter_: int
        t_: int
        loss_: float
        loss_curve_: list[float]
        validation_scores_: Any        # list of float with early_stopping, else None
        best_validation_score_: Any    # float with early_stopping, else None
        best_loss_: Any                # float without early_stopping, else None
        _no_improvement_count: int
        _learning_rate: float
        _best_params: FloatArray | None

        # the estimator's parameters and BaseMLP's methods: Any to the type checker here
        def __getattr__(self, name: str) -> Any: ...

    def _fit_stochastic(self, X, Y, sample_weight, incremental, first_pass):
        early_stopping = self.early_stopping
        w_val = None
        if early_stopping:
            # the same split as scikit-learn's (stratified for binary classification only, on
            # the binarized labels as booleans: its error names the class 'True')
            stratify = Y.astype(bool) if self._stratify_split() else None
            arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
            parts = train_test_split(*arrays, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
            X, X_val, Y, Y_val = parts[:4]
            if sample_weight is not None:
                sample_weight, w_val = parts[4:]
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            y_val = self._decode(Y_val)
        else:
            X_val = y_val = None
        net = self._network()
        if early_stopping and getattr(self, "_best_params", None) is None:
            self._best_params = net.get_flat_params()     # (a warm start from a fit without it)
        if first_pass:          # the epoch shuffles, from random_state after the weights and split
            net.reseed(int(self._random_state.randint(np.iinfo(np.int32).max)))
        net.n_threads = self.n_threads        # set_params between warm-started fits
        net.dropout = self.dropout
        if not incremental or not hasattr(self, "_learning_rate"):
            self._learning_rate = self.learning_rate_init   # a fresh optimizer, as scikit-learn
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped", UserWarning, stacklevel=3)
            batch_size = min(self.batch_size, n_samples)
        n_batches = -(-n_samples // batch_size)
        # scikit-learn divides alpha by each batch's weight sum (its rows when
        # unweighted): weight_decay uses the mean weight sum of a full batch
        mean_weight = 1.0 if sample_weight is None else float(sample_weight.mean())
        if not mean_weight > 0:
            mean_weight = 1.0           # all weights 0: the network refuses them clearly
        loss_scale = Y.shape[1] if self.out_activation_ == "identity" else 1
        sgd = self.solver == "sgd"
        stopped = False

        def end_of_epoch(history):
            nonlocal stopped
            penalty = sum(float(np.dot(W.ravel(), W.ravel())) for W in net.weights)
            loss = (history.loss[-1] / loss_scale
                    + n_batches * 0.5 * self.alpha * penalty / (n_samples * mean_weight))
            self.n_iter_ += 1
            self.t_ += n_samples
            self.loss_ = loss
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            self._update_no_improvement_count(early_stopping, X_val, y_val, w_val)
            if sgd and self.learning_rate == "invscaling":
                self._learning_rate = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            if self._no_improvement_count > self.n_iter_no_change:
                what = ("Validation score did not improve" if early_stopping
                        else "Training loss did not improve")
                msg = (f"{what} more than tol={self.tol:f} for {self.n_iter_no_change} "
                       "consecutive epochs.")
                if sgd and self.learning_rate == "adaptive" and self._learning_rate > 1e-6:
                    self._learning_rate /= 5.0
                    self._no_improvement_count = 0
                    if self.verbose:
                        print(msg + f" Setting learning rate to {self._learning_rate:f}")
                else:
                    if self.verbose:
                        print(msg + " Learning rate too small. Stopping." if sgd and
                              self.learning_rate == "adaptive" else msg + " Stopping.")
                    stopped = True
                    return False
            return True

        n_iter_before, self.n_iter_ = getattr(self, "n_iter_", 0), 0
        epochs = 1 if incremental else self.max_iter
        try:
            history = self._run_epochs(X, Y, sample_weight, epochs, batch_size,
                                       self.alpha / (batch_size * mean_weight), end_of_epoch,
                                       incremental)
            if history.diverged:        # early stopping only: the others raise
                self._record_diverged_epochs(epochs, n_samples, early_stopping)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        except TrainingDiverged:
            raise ValueError(NON_FINITE_MESSAGE) from None
        except (ValueError, TypeError):
            if self.n_iter_ == 0:           # refused before its first epoch: as it was
                self.n_iter_ = n_iter_before
            raise
        if not stopped and not incremental and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning)
        if early_stopping:
            net.set_flat_params(self._best_params)

    def _record_diverged_epochs(self, epochs, n_samples, early_stopping):
        """The epochs scikit-learn goes on running once its weights are NaN or infinite.

        With early stopping its fit does not fail: every epoch from the one
        that diverged on has a NaN loss and validation score (which never
        counts as "no improvement", so it runs to ``max_iter``), and the best
        epoch's weights are restored at the end.  cymlp stops the network at
        the divergence (restoring its last finite weights, with a
        RuntimeWarning) and records those epochs as scikit-learn would.
        """
        while self.n_iter_ < epochs:
            self.n_iter_ += 1
            self.t_ += n_samples
            self.loss_ = np.nan
            self.loss_curve_.append(np.nan)
            self.validation_scores_.append(np.nan)
            self._no_improvement_count = 0

    def _run_epochs(self, X, Y, sample_weight, epochs, batch_size, weight_decay, end_of_epoch,
                    incremental):
        """The one place the network trains.

        ``fit`` starts a fresh optimizer state (as scikit-learn does, with
        ``warm_start`` too); ``partial_fit`` continues the network's
        ``training_state_`` (momentum, Adam's moments and step count) like
        scikit-learn's, which keeps its ``_optimizer`` between calls.
        """
        momentum = self.momentum if self.solver == "sgd" else 0.0
        state = self._net.training_state_
        kept = None if state is None else (state.optimizer, state.step)
        resume = incremental and self._can_resume(momentum, weight_decay)
        try:
            return self._net.fit(
                X, Y, epochs=epochs, batch_size=batch_size, lr=self.learning_rate_init,
                momentum=momentum, nesterov=bool(self.nesterovs_momentum),
                weight_decay=weight_decay, shuffle=bool(self.shuffle), optimizer=self.solver,
                lr_schedule=lambda epoch, epochs, lr: self._learning_rate,
                beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon,
                callbacks=[end_of_epoch], parallel=self.parallel, resume=resume,
                sample_weight=sample_weight, clip_norm=self.clip_norm,
                on_divergence="warn" if self.early_stopping else "raise")
        except BaseException:
            if kept is not None and state is not None and state.step == kept[1]:   # refused before a step
                state.optimizer = kept[0]
            raise

    def _can_resume(self, momentum, weight_decay):
        """Whether ``partial_fit`` can continue the network's optimizer state.

        scikit-learn keeps the optimizer it made on the first call, whatever
        ``set_params`` changes later; cymlp refuses to resume a state made
        with other optimizer settings, so such a change (of ``solver``,
        ``momentum``, ``nesterovs_momentum``, ``beta_1``, ``beta_2`` or
        ``epsilon``) starts a fresh state instead.  ``weight_decay`` is
        ``alpha / batch_size`` and follows the rows of each call (scikit-learn
        divides ``alpha`` by each batch's rows): it is updated in the state,
        whose buffers do not depend on it.  ``parallel`` other than "sync" on
        several threads keeps one state per worker and cannot resume.
        """
        state = self._net.training_state_
        if state is None or (self.parallel != "sync" and self._net.effective_n_threads > 1):
            return False
        if state.optimizer.weight_decay != weight_decay:
            state.optimizer = dataclasses.replace(state.optimizer, weight_decay=weight_decay)
        wanted = OptimizerConfig(self.solver, momentum, bool(self.nesterovs_momentum), weight_decay,
                                 self.beta_1, self.beta_2, self.epsilon)
        return state.mismatch(wanted) is None

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, w_val):
        if early_stopping:
            try:
                score = self._score_function(y_val, self._decode(self._net.feedforward(X_val)),
                                             sample_weight=w_val)
            except ValueError:          # outputs overflowed: scikit-learn scores them NaN
                score = np.nan
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._net.get_flat_params()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    # -- prediction --------------------------------------------------------------------
