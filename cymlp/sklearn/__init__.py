"""scikit-learn estimators backed by cymlp: :class:`MLPClassifier` and :class:`MLPRegressor`.

The package, by job: ``_params`` (the constructor parameters, checked as
scikit-learn checks them), ``_base`` (what both estimators share: fitting,
the network, the fitted attributes), ``_stochastic`` (the ``"sgd"``/``"adam"``
solvers: the epoch loop on ``Network.fit``, stopping rules, learning-rate
schedules), ``_classifier`` and ``_regressor``.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` and
``MLPRegressor`` with the stochastic solvers (``"sgd"``, ``"adam"``): the same
parameter names and meanings, the same fitted attributes, the same stopping
rules, trained by a :class:`cymlp.Network` on the compiled path.  scikit-learn
is an optional dependency (``pip install scikit-learn``); ``import cymlp``
never imports it, only ``import cymlp.sklearn`` does.

What matches scikit-learn exactly, and what does not
----------------------------------------------------
- **Initialisation**: the same Glorot-uniform draws from ``random_state`` in
  the same order, so with ``shuffle=False`` and ``solver="sgd"`` the weights
  follow scikit-learn's to rounding (tested).  ``early_stopping`` draws the
  same validation split.  The per-epoch shuffles come from the network's own
  generator (seeded from ``random_state``), so with ``shuffle=True`` the runs
  differ in the order of the batches, not in what they compute.
- **alpha**: scikit-learn adds ``alpha * W / m`` to the gradient of a batch of
  ``m`` rows (and ``alpha/(2 n) * ||W||^2`` per batch to the reported loss);
  cymlp's ``weight_decay`` λ adds ``λ * W`` to the mean gradient.  So
  ``weight_decay = alpha / batch_size``, exact for every full batch; a smaller
  last batch (when ``batch_size`` does not divide the rows) gets
  ``alpha / batch_size`` instead of ``alpha / m``.
- **loss_curve_**: the mean loss over the batches of the epoch (each taken
  before its step, as scikit-learn does), plus the L2 term computed with the
  weights at the end of the epoch (scikit-learn uses each batch's weights);
  for several regression outputs divided by their number, as scikit-learn does.
- **Adam**: cymlp divides by ``sqrt(v_hat) + epsilon``; scikit-learn by
  ``sqrt(v) + epsilon`` after folding the bias corrections into the rate, an
  effective ``epsilon / sqrt(1 - beta_2**t)``: the same update up to epsilon.
- **learning_rate** ``"invscaling"`` and ``"adaptive"`` (``solver="sgd"``
  only, as in scikit-learn) change the rate between epochs like scikit-learn.
  SGD momentum keeps its velocity in gradient units (``v = mu v + g``,
  ``W -= lr v``), scikit-learn in step units; identical while the rate is constant.
- **sample_weight** (``fit``, ``partial_fit``, ``score``): each batch minimises
  the weighted mean loss, as in scikit-learn (tested to rounding).  scikit-learn
  divides ``alpha`` by each batch's weight sum; cymlp uses
  ``weight_decay = alpha / (batch_size * mean weight)``, the same for one batch
  or equal weights, close otherwise.  ``early_stopping`` splits the weights
  with the rows and weighs the validation score.  A zero weight removes a row.
- **cymlp extras**: ``dropout`` (``Network(dropout=)``: inverted dropout on the
  hidden layers while training, one rate or one per hidden layer),
  ``clip_norm`` (the mean gradient is scaled down to this global norm), and
  for the classifier ``class_weight`` (None, a dict ``{label: weight}`` with
  the labels of ``y``, or ``"balanced"``: ``n / (n_classes * count)`` over the
  rows of the call), applied as per-row factors on ``sample_weight``.
- **Not (yet) supported**: ``solver="lbfgs"``, ``activation="identity"``,
  ``MLPRegressor(loss="poisson")`` (clear errors); sparse input (convert with
  ``.toarray()``).
- **ONNX**: ``skl2onnx.to_onnx(estimator, X[:1])`` converts a fitted estimator
  as it converts scikit-learn's (outputs, options, label types), reproducing
  ``predict`` and ``predict_proba``; see :mod:`cymlp._skl2onnx`.
- ``partial_fit`` does one epoch over the given rows like scikit-learn's and,
  like it, keeps the optimizer state (momentum velocity, Adam's moments and
  step count, the learning rate of ``"invscaling"``/``"adaptive"``) from call
  to call, in the network's ``training_state_`` (tested against scikit-learn
  with momentum and Adam).  ``fit`` starts a fresh optimizer, ``warm_start``
  included, as scikit-learn does.  Changing an optimizer setting with
  ``set_params`` between ``partial_fit`` calls starts a fresh state (scikit-learn
  keeps using its first optimizer); so does ``parallel`` other than ``"sync"``
  on several threads, which keeps one state per worker.

Threads: ``n_threads=None`` uses every core the process may use, and follows
``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` like scikit-learn's
own OpenMP estimators, so joblib workers (``GridSearchCV(n_jobs=...)``) do not
oversubscribe the machine.
"""

from .. import _skl2onnx
from ._classifier import MLPClassifier
from ._regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]

# skl2onnx converters (cymlp/_skl2onnx.py): registered when skl2onnx is imported, never importing it
_skl2onnx.register_when_imported(MLPClassifier, MLPRegressor)
