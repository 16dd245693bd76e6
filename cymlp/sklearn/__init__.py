"""scikit-learn estimators backed by cymlp: :class:`MLPClassifier` and :class:`MLPRegressor`.

The package, by job: ``_params`` (the constructor parameters, checked as
scikit-learn checks them), ``_base`` (what both estimators share: fitting,
the network, the fitted attributes), ``_stochastic`` (the ``"sgd"``/``"adam"``
solvers: the epoch loop on ``Network.fit``, stopping rules, learning-rate
schedules), ``_lbfgs`` (the ``"lbfgs"`` solver: scipy's L-BFGS-B on
``Network.objective``), ``_classifier`` and ``_regressor``.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` and
``MLPRegressor``: the same parameter names and meanings, solvers
(``"lbfgs"``, ``"sgd"``, ``"adam"``), activations (``"identity"``,
``"logistic"``, ``"tanh"``, ``"relu"``), losses (``MLPRegressor(loss=
"squared_error" | "poisson")``), inputs (dense arrays, ``scipy.sparse``
CSR/CSC matrices and arrays), fitted attributes and stopping rules, trained
by a :class:`cymlp.Network` on the compiled path.  scikit-learn's own test
file for its MLPs (``sklearn/neural_network/tests/test_mlp.py``) runs against
these estimators with only its import line changed (tests/test_sklearn_suite.py):
every test passes but the three that read scikit-learn's private attributes
(``_loss_grad_lbfgs``, ``_optimizer``).  scikit-learn is an optional
dependency (``pip install scikit-learn``); ``import cymlp`` never imports it,
only ``import cymlp.sklearn`` does.

What matches scikit-learn exactly
---------------------------------
- **Initialisation**: the same Glorot-uniform draws from ``random_state`` in
  the same order; ``early_stopping`` draws the same validation split
  (stratified on the same binarized labels, so its errors name the same classes).
- **solver="lbfgs"**: scipy's L-BFGS-B over the whole training set with
  scikit-learn's objective (mean loss plus ``alpha / (2 n)`` times the
  squared weights; for several squared-error outputs the mean over the
  outputs, as there), options (``max_iter``, ``max_fun``, ``tol`` as
  ``gtol``; ``iprint`` from ``verbose`` on scipy < 1.15), ConvergenceWarning
  text and fitted attributes (``n_iter_``, ``loss_``; no ``loss_curve_``,
  ``best_loss_`` or validation scores).  No shuffles are involved, so the
  L-BFGS path itself is scikit-learn's: the weights agree to about 1e-11
  and ``n_iter_`` exactly (tested for every activation, binary, multiclass,
  multilabel, one and two regression outputs, Poisson, sample weights).
  Each loss-and-gradient evaluation is one call into the compiled path.
- **solver="sgd"** with ``shuffle=False``: the weights follow scikit-learn's
  to rounding (tested for momentum, Nesterov, invscaling, adaptive, identity
  layers, Poisson, sample weights, early stopping, warm starts, partial_fit).
- **The rules around a fit**: ``n_iter_no_change=np.inf`` never stops early;
  weights that became NaN or infinite raise scikit-learn's ``ValueError("Solver
  produced non-finite parameter weights...")``, while with ``early_stopping``
  a diverging fit runs to ``max_iter`` recording NaN losses and scores and
  keeps the best epoch's weights, as there; ``partial_fit`` does not exist
  for ``solver="lbfgs"`` (``hasattr`` is False; scikit-learn 1.9.1's
  regressor shows it by mistake), takes a multilabel indicator ``y`` on the
  first call, and keeps the optimizer state from call to call;
  ``coefs_``/``intercepts_`` can be assigned (scikit-learn's own worked
  example sets them and then calls ``partial_fit``).
- **Sparse input**: ``fit``, ``partial_fit``, ``predict`` and ``score`` take
  CSR and CSC matrices and arrays (CSC is converted to CSR once, a copy).
  Training never densifies the matrix: each mini-batch's rows are gathered
  into the dense batch buffer, so the extra memory is O(batch_size x
  n_features) (one block of at most 2^22 values for prediction and lbfgs)
  and the sparse fit is the dense fit on the same values, bit for bit.

What still differs
------------------
- **Shuffles**: the per-epoch shuffles come from the network's own generator
  (seeded from ``random_state``), so with ``shuffle=True`` the runs differ in
  the order of the batches, not in what they compute.
- **alpha** with the stochastic solvers: scikit-learn adds ``alpha * W / m``
  to the gradient of a batch of ``m`` rows (and ``alpha/(2 n) * ||W||^2`` per
  batch to the reported loss); cymlp's ``weight_decay`` λ adds ``λ * W`` to the
  mean gradient, with ``weight_decay = alpha / batch_size``: exact for every
  full batch; a smaller last batch gets ``alpha / batch_size`` instead of
  ``alpha / m``.  With ``sample_weight`` scikit-learn divides ``alpha`` by each
  batch's weight sum, cymlp by the mean one (the same for one batch or equal
  weights, close otherwise).
- **loss_curve_**: the mean loss over the batches of the epoch (each taken
  before its step, as scikit-learn does), plus the L2 term computed with the
  weights at the end of the epoch (scikit-learn uses each batch's weights);
  for several regression outputs divided by their number, as scikit-learn does.
- **Adam**: cymlp divides by ``sqrt(v_hat) + epsilon``; scikit-learn by
  ``sqrt(v) + epsilon`` after folding the bias corrections into the rate, an
  effective ``epsilon / sqrt(1 - beta_2**t)``: the same update up to epsilon.
  SGD momentum keeps its velocity in gradient units (``v = mu v + g``,
  ``W -= lr v``), scikit-learn in step units; identical while the rate is constant.
- **The log-loss** is computed from the output layer's weighted inputs
  (log-sum-exp, softplus), never from probabilities clipped at machine
  epsilon as scikit-learn does: the values differ only where a probability
  rounds to 0 or 1.
- **Refused instead of NaN**: ``loss="poisson"`` with a negative target
  raises a ValueError (scikit-learn trains to a NaN loss); ``predict`` on
  inputs that overflow the network raises a ValueError naming the overflow
  (scikit-learn returns infinities or NaN); a diverged stochastic fit
  without early stopping raises at once, with the last finite weights kept
  (scikit-learn raises after ``max_iter`` epochs, with NaN weights).
- **dtype**: float32 inputs train a float32 network with every solver
  (scikit-learn's lbfgs turns its float32 weights into float64 after the
  first evaluation); ``dtype=`` chooses explicitly.
- **partial_fit** keeps the optimizer state in the network's
  ``training_state_``; changing an optimizer setting with ``set_params``
  between calls starts a fresh state (scikit-learn keeps using its first
  optimizer); so does ``parallel`` other than ``"sync"`` on several threads,
  which keeps one state per worker.  ``fit`` starts a fresh optimizer,
  ``warm_start`` included, as scikit-learn does.
- **Private attributes**: scikit-learn's ``_optimizer``, ``_loss_grad_lbfgs``,
  ``_coef_indptr`` and the like do not exist; the network is ``network_``
  (a :class:`cymlp.Network`: save it, export it to ONNX, use it without
  scikit-learn), and ``coefs_``/``intercepts_`` are views into it.
- **cymlp extras**: ``dtype``, ``n_threads``, ``parallel``, ``dropout``
  (inverted dropout on the hidden layers while training, one rate or one per
  hidden layer), ``clip_norm`` (the mean gradient is scaled down to this
  global norm), ``activation="leaky_relu"``, and for the classifier
  ``class_weight`` (None, a dict ``{label: weight}`` with the labels of ``y``,
  or ``"balanced"``: ``n / (n_classes * count)`` over the rows of the call),
  applied as per-row factors on ``sample_weight``.
- **ONNX**: ``skl2onnx.to_onnx(estimator, X[:1])`` converts a fitted estimator
  as it converts scikit-learn's (outputs, options, label types), reproducing
  ``predict`` and ``predict_proba``; see :mod:`cymlp._skl2onnx`.

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
