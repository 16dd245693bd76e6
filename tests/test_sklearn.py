"""cymlp.sklearn: scikit-learn's own estimator checks, and scikit-learn's MLP as the oracle."""

import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from _helpers import HAS_COMPILED, subprocess_env

sklearn = pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from cymlp.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# shuffle=False and a batch size that divides the rows: the only differences
# left from scikit-learn are rounding (see the module docstring)
EXACT = {"hidden_layer_sizes": (20,), "shuffle": False, "batch_size": 100, "random_state": 1,
         "tol": 0}


def max_param_diff(ours, theirs):
    return max(float(np.abs(p - q).max()) for p, q in
               zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_))


@pytest.mark.parametrize("params", [
    {"solver": "sgd", "max_iter": 5, "learning_rate_init": 0.1},          # Nesterov momentum
    {"solver": "sgd", "max_iter": 5, "nesterovs_momentum": False, "alpha": 0.01},
    {"solver": "sgd", "momentum": 0, "learning_rate": "invscaling", "learning_rate_init": 0.5,
     "max_iter": 8},
    {"solver": "sgd", "momentum": 0, "learning_rate": "adaptive", "learning_rate_init": 0.5,
     "max_iter": 60, "tol": 1e-2, "n_iter_no_change": 2},
], ids=["nesterov", "momentum+alpha", "invscaling", "adaptive"])
def test_classifier_follows_sklearn_step_by_step(digits_400, params):
    X, y = digits_400
    ours = MLPClassifier(**{**EXACT, **params}).fit(X, y)
    theirs = SkMLPClassifier(**{**EXACT, **params}).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert max_param_diff(ours, theirs) < 1e-10
    # the L2 term of the loss uses end-of-epoch weights here, each batch's weights there
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-10)


@pytest.mark.parametrize("kind", ["binary-strings", "multilabel", "regression-2-outputs"])
def test_output_layouts_follow_sklearn(digits_400, kind):
    X, y = digits_400
    if kind == "binary-strings":
        est, ref, y = MLPClassifier, SkMLPClassifier, np.array(["low", "high"])[(y > 4).astype(int)]
    elif kind == "multilabel":
        est, ref, y = MLPClassifier, SkMLPClassifier, np.c_[y > 4, y % 2 == 0, y == 3].astype(int)
    else:
        est, ref, y = MLPRegressor, SkMLPRegressor, np.c_[X[:, :8].sum(1), X[:, 8:12].mean(1)]
    ours = est(**EXACT, solver="sgd", max_iter=5, learning_rate_init=0.05).fit(X, y)
    theirs = ref(**EXACT, solver="sgd", max_iter=5, learning_rate_init=0.05).fit(X, y)
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_outputs_ == theirs.n_outputs_ and ours.n_layers_ == theirs.n_layers_
    assert max_param_diff(ours, theirs) < 1e-10
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    assert ours.predict(X).shape == theirs.predict(X).shape
    if est is MLPClassifier:
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-10)
    else:
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), atol=1e-10)


def test_early_stopping_uses_sklearns_split_and_keeps_the_best_epoch(digits_400):
    X, y = digits_400
    params = dict(EXACT, batch_size=90, solver="sgd", early_stopping=True, max_iter=15,
                  learning_rate_init=0.1, alpha=0)          # 360 training rows: 4 full batches
    ours = MLPClassifier(**params).fit(X, y)
    theirs = SkMLPClassifier(**params).fit(X, y)
    assert ours.validation_scores_ == theirs.validation_scores_
    assert ours.best_validation_score_ == max(ours.validation_scores_)
    assert ours.best_loss_ is None
    assert max_param_diff(ours, theirs) < 1e-10


def test_adam_matches_sklearn_up_to_where_epsilon_enters(digits_400):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 10))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
    ours = MLPClassifier(**EXACT, max_iter=10, alpha=0).fit(X, y)
    theirs = SkMLPClassifier(**EXACT, max_iter=10, alpha=0).fit(X, y)
    moved = max(float(np.abs(c).max()) for c in theirs.coefs_)
    assert max_param_diff(ours, theirs) < 1e-4 * moved
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)


def test_warm_start_and_partial_fit_follow_sklearn(digits_400):
    X, y = digits_400
    # warm_start restarts the optimizer in scikit-learn as well: exact with momentum
    ours = MLPClassifier(**EXACT, solver="sgd", max_iter=3, warm_start=True).fit(X, y).fit(X, y)
    theirs = SkMLPClassifier(**EXACT, solver="sgd", max_iter=3, warm_start=True).fit(X, y).fit(X, y)
    assert max_param_diff(ours, theirs) < 1e-10
    assert ours.t_ == theirs.t_ == 6 * len(X) and len(ours.loss_curve_) == 6 and ours.n_iter_ == 3
    # partial_fit with momentum 0: exact (the optimizer state is checked below)
    ours = MLPClassifier(**EXACT, solver="sgd", momentum=0)
    theirs = SkMLPClassifier(**EXACT, solver="sgd", momentum=0)
    for rows in (slice(0, 200), slice(200, 400), slice(0, 400)):
        ours.partial_fit(X[rows], y[rows], classes=np.arange(10))
        theirs.partial_fit(X[rows], y[rows], classes=np.arange(10))
    assert max_param_diff(ours, theirs) < 1e-10
    assert ours.t_ == theirs.t_ == 800 and ours.n_iter_ == 1


# calls of 200, 200, 400, 50 and 400 rows: with batch_size "auto" the batches
# (and alpha / batch_size) change between calls
PARTIAL_FIT_ROWS = (slice(0, 200), slice(200, 400), slice(0, 400), slice(100, 150), slice(0, 400))


@pytest.mark.parametrize("params", [
    {"solver": "sgd", "learning_rate_init": 0.1},                          # Nesterov momentum
    {"solver": "sgd", "nesterovs_momentum": False, "alpha": 0.01, "batch_size": "auto"},
    {"solver": "adam"},
], ids=["nesterov", "momentum+alpha+auto-batch", "adam"])
def test_partial_fit_keeps_the_optimizer_state_like_sklearn(params):
    # the data of the Adam test above (Adam's epsilon enters differently: see there)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 10))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
    ours = MLPClassifier(**{**EXACT, **params})
    theirs = SkMLPClassifier(**{**EXACT, **params})
    for rows in PARTIAL_FIT_ROWS:
        ours.partial_fit(X[rows], y[rows], classes=[0, 1])
        theirs.partial_fit(X[rows], y[rows], classes=[0, 1])
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    moved = max(float(np.abs(c).max()) for c in theirs.coefs_)
    tolerance = 1e-4 * moved if params["solver"] == "adam" else 1e-10
    assert max_param_diff(ours, theirs) < tolerance
    sizes = [rows.stop - rows.start for rows in PARTIAL_FIT_ROWS]
    assert ours.t_ == theirs.t_ == sum(sizes)
    state = ours.network_.training_state_
    batch = 200 if params.get("batch_size") == "auto" else EXACT["batch_size"]
    steps = sum(-(-n // min(batch, n)) for n in sizes)
    assert state.epoch == len(PARTIAL_FIT_ROWS) and state.step == steps   # one state throughout
    # fit after partial_fit starts a fresh optimizer, in both
    ours.set_params(max_iter=2).fit(X, y)
    theirs.set_params(max_iter=2).fit(X, y)
    assert max_param_diff(ours, theirs) < tolerance


def test_partial_fit_after_a_change_of_optimizer_settings_starts_afresh():
    X = np.random.default_rng(0).standard_normal((100, 4))
    y = (X[:, 0] > 0).astype(int)
    est = MLPClassifier((8,), solver="sgd", random_state=0).partial_fit(X, y, classes=[0, 1])
    assert est.network_.training_state_.step == 1
    est.partial_fit(X, y)
    assert est.network_.training_state_.step == 2
    est.set_params(momentum=0.5).partial_fit(X, y)          # refused by resume: a fresh state
    assert est.network_.training_state_.step == 1
    assert est.network_.training_state_.optimizer.momentum == 0.5
    est.set_params(solver="adam").partial_fit(X, y)
    assert est.network_.training_state_.optimizer.name == "adam"


def test_partial_fit_needs_classes_first_and_rejects_new_ones(digits_400):
    X, y = digits_400
    est = MLPClassifier(hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, y)
    est.partial_fit(X[y < 5], y[y < 5], classes=np.arange(10))   # a batch may miss classes
    assert list(est.classes_) == list(range(10)) and est.predict_proba(X).shape == (len(X), 10)
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        est.partial_fit(X, y + 10)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.arange(10))
    with pytest.raises(ValueError, match="same classes"):
        MLPClassifier(warm_start=True, max_iter=1).fit(X, y).fit(X[y < 5], y[y < 5])


@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "emu"]), np.array([3, 7, 11]),
                                    np.array([True, False])], ids=["str", "int", "bool"])
def test_any_label_values(digits_400, labels):
    X, y = digits_400
    y = labels[y % len(labels)]
    est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0).fit(X, y)
    assert list(est.classes_) == sorted(set(labels.tolist()))
    pred = est.predict(X)
    assert pred.dtype == y.dtype and set(pred) <= set(labels.tolist())
    assert est.score(X, y) > 0.5
    np.testing.assert_allclose(est.predict_proba(X).sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(np.exp(est.predict_log_proba(X)), est.predict_proba(X), rtol=1e-6)


def test_coefs_are_sklearn_oriented_views_into_the_network(digits_400):
    X, y = digits_400
    est = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=2, random_state=0).fit(X, y)
    assert [c.shape for c in est.coefs_] == [(64, 16), (16, 8), (8, 10)]
    assert [b.shape for b in est.intercepts_] == [(16,), (8,), (10,)]
    before = est.predict_proba(X)
    est.coefs_[-1][...] = 0
    est.intercepts_[-1][...] = 0
    np.testing.assert_allclose(est.predict_proba(X), 0.1, rtol=1e-12)
    assert not np.allclose(before, 0.1)
    assert est.n_layers_ == 4 and est.out_activation_ == "softmax"


def test_dtype_follows_X_unless_given(digits_400):
    X, y = digits_400
    assert MLPClassifier(max_iter=1).fit(X.astype(np.float32), y).coefs_[0].dtype == np.float32
    assert MLPClassifier(max_iter=1).fit(X, y).coefs_[0].dtype == np.float64
    est = MLPClassifier(max_iter=1, dtype="float32").fit(X, y)
    assert est.coefs_[0].dtype == np.float32 and est.network_.dtype == np.float32
    with pytest.raises(ValueError, match="dtype must be"):
        MLPClassifier(dtype="float16").fit(X, y)


def test_pandas_feature_names(digits_400):
    pd = pytest.importorskip("pandas")
    X, y = digits_400
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])])
    est = MLPClassifier(max_iter=2, random_state=0).fit(frame, pd.Series(y))
    assert list(est.feature_names_in_) == list(frame.columns) and est.n_features_in_ == 64
    with pytest.warns(UserWarning, match="valid feature names"):
        np.testing.assert_array_equal(est.predict(frame), est.predict(X))
    with pytest.warns(UserWarning, match="feature names"):
        MLPClassifier(max_iter=1).fit(X, y).predict(frame)


@pytest.mark.parametrize("params, message", [
    ({"solver": "newton"}, "solver must be one of"),
    ({"activation": "swish"}, "activation must be one of"),
    ({"hidden_layer_sizes": (10, 0)}, "positive integers"),
    ({"momentum": 1.5}, "momentum"),
    ({"batch_size": 0}, "batch_size"),
    ({"n_iter_no_change": 0.5}, "n_iter_no_change"),
    ({"parallel": "magic"}, "parallel"),
])
def test_invalid_parameters_say_what_to_use(digits_400, params, message):
    X, y = digits_400
    with pytest.raises((ValueError, TypeError), match=message):
        MLPClassifier(**params).fit(X, y)


def test_regressor_loss_is_checked():
    with pytest.raises(ValueError, match="loss must be one of"):
        MLPRegressor(loss="huber").fit(np.ones((4, 2)), np.ones(4))


# ---------------------------------------------------------------- lbfgs, identity, poisson

LBFGS = {"solver": "lbfgs", "hidden_layer_sizes": (20,), "random_state": 1, "max_iter": 30}


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_lbfgs_classifier_follows_sklearn(digits_400, activation):
    # no shuffles, the same initial draws: the same L-BFGS path, to rounding
    X, y = digits_400
    for target in (y, y % 2, np.c_[y > 4, y % 2 == 0, y == 3].astype(int)):
        ours = MLPClassifier(**LBFGS, activation=activation, alpha=1e-3).fit(X, target)
        theirs = SkMLPClassifier(**LBFGS, activation=activation, alpha=1e-3).fit(X, target)
        assert ours.n_iter_ == theirs.n_iter_
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
        assert max_param_diff(ours, theirs) < 1e-8
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_lbfgs_regressor_follows_sklearn_with_one_and_several_outputs(digits_400, loss):
    X, _ = digits_400
    targets = np.c_[X[:, :8].sum(1), X[:, 8:12].mean(1)] if loss == "squared_error" else \
        np.random.default_rng(0).poisson(np.exp(X[:, 9:11] / 8)).astype(float)
    weights = np.random.default_rng(1).uniform(0.5, 2, len(X))
    for y in (targets[:, 0], targets):     # several outputs: scikit-learn's mean-over-outputs value
        for w in (None, weights):
            ours = MLPRegressor(**LBFGS, loss=loss, alpha=1e-2).fit(X, y, sample_weight=w)
            theirs = SkMLPRegressor(**LBFGS, loss=loss, alpha=1e-2).fit(X, y, sample_weight=w)
            assert ours.n_iter_ == theirs.n_iter_ and ours.out_activation_ == theirs.out_activation_
            assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)
            assert max_param_diff(ours, theirs) < 1e-7
            np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-7, atol=1e-9)


def test_lbfgs_sets_the_attributes_sklearn_sets_and_warns_as_it_does(digits_400):
    X, y = digits_400
    ours = MLPClassifier(**{**LBFGS, "max_iter": 3})
    theirs = SkMLPClassifier(**{**LBFGS, "max_iter": 3})
    with pytest.warns(ConvergenceWarning) as ours_warned:
        ours.fit(X, y)
    with pytest.warns(ConvergenceWarning) as theirs_warned:
        theirs.fit(X, y)
    assert str(ours_warned[0].message) == str(theirs_warned[0].message)
    assert "max_iter=3" in str(ours_warned[0].message)
    for name in ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"):
        assert hasattr(ours, name) == hasattr(theirs, name) is False
    assert ours.t_ == theirs.t_ == 0 and ours.n_iter_ == theirs.n_iter_ == 3
    # max_fun limits the evaluations (the message names the reason, not max_iter)
    with pytest.warns(ConvergenceWarning, match="status=1") as ours_warned:
        MLPClassifier(**{**LBFGS, "max_fun": 5}).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="status=1") as theirs_warned:
        SkMLPClassifier(**{**LBFGS, "max_fun": 5}).fit(X, y)
    assert str(ours_warned[0].message) == str(theirs_warned[0].message)


def test_lbfgs_has_no_partial_fit_as_in_sklearn():
    for est in (MLPClassifier(solver="lbfgs"), MLPRegressor(solver="lbfgs")):
        assert not hasattr(est, "partial_fit")
        with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as info:
            est.partial_fit(np.ones((2, 2)), [0, 1])
        assert "only available for stochastic optimizers" in str(info.value.__cause__)
        assert hasattr(est.set_params(solver="adam"), "partial_fit")
    assert not hasattr(SkMLPClassifier(solver="lbfgs"), "partial_fit")


def test_lbfgs_warm_start_continues_and_uses_every_thread_setting(digits_400):
    X, y = digits_400
    est = MLPClassifier(**{**LBFGS, "max_iter": 5}, warm_start=True)
    est.fit(X, y)
    first = est.loss_
    est.fit(X, y)
    assert est.loss_ < first and est.n_iter_ == 5
    theirs = SkMLPClassifier(**{**LBFGS, "max_iter": 5}, warm_start=True).fit(X, y).fit(X, y)
    assert max_param_diff(est, theirs) < 1e-8


@pytest.mark.parametrize("params", [
    {"solver": "sgd", "max_iter": 5, "learning_rate_init": 0.1, "activation": "identity"},
    {"solver": "sgd", "max_iter": 5, "learning_rate_init": 0.01, "momentum": 0},
], ids=["identity", "poisson"])
def test_identity_and_poisson_follow_sklearn_step_by_step(digits_400, params):
    X, y = digits_400
    if params.get("activation") == "identity":
        est, ref, target = MLPClassifier, SkMLPClassifier, y
    else:
        est, ref = MLPRegressor, SkMLPRegressor
        target = np.random.default_rng(0).poisson(np.exp(X[:, 10] / 8)).astype(float)
        params = {**params, "loss": "poisson"}
    ours = est(**{**EXACT, **params}).fit(X, target)
    theirs = ref(**{**EXACT, **params}).fit(X, target)
    assert ours.out_activation_ == theirs.out_activation_
    assert max_param_diff(ours, theirs) < 1e-10
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-10)


def test_poisson_regressor_refuses_negative_targets_and_predicts_positive_means():
    X = np.random.default_rng(0).uniform(0, 1, (200, 2))
    counts = np.random.default_rng(1).poisson(np.exp(1 + X[:, 0]))
    est = MLPRegressor(loss="poisson", hidden_layer_sizes=(4,), solver="lbfgs", random_state=0)
    with pytest.raises(ValueError, match="loss='poisson' needs targets y >= 0"):
        est.fit(X, counts - 3.0)
    assert not hasattr(est, "coefs_")
    est.fit(X, counts)
    assert est.out_activation_ == "exp" and est.network_.loss_name == "poisson"
    assert (est.predict(X) > 0).all()
    np.testing.assert_allclose(est.predict(X).mean(), counts.mean(), rtol=0.05)


# ---------------------------------------------------------------- scikit-learn's corner cases

def test_n_iter_no_change_inf_never_stops_early(digits_400):
    X, y = digits_400
    est = MLPClassifier((8,), solver="sgd", tol=1e9, max_iter=30, n_iter_no_change=np.inf,
                        random_state=0).fit(X, y)
    assert est.n_iter_ == 30 and est._no_improvement_count == 29


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_non_finite_weights_raise_sklearns_error(solver):
    X = np.finfo(np.float64).max * np.random.default_rng(0).uniform(size=(10, 2))
    y = np.random.default_rng(1).standard_normal(10)
    message = ("Solver produced non-finite parameter weights. The input data may contain large "
               "values and need to be preprocessed.")
    for est in (MLPRegressor(solver=solver, max_iter=5), SkMLPRegressor(solver=solver, max_iter=5)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ValueError, match=message):
                est.fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ValueError, match=message):
                est.partial_fit(X, y)


def test_lbfgs_on_overflowing_inputs_stops_where_sklearn_stops():
    # the loss is NaN at the start: L-BFGS-B stops at once, weights untouched, in both
    X = np.finfo(np.float64).max * np.random.default_rng(0).uniform(size=(10, 2))
    y = np.random.default_rng(1).standard_normal(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = MLPRegressor(solver="lbfgs", max_iter=5, random_state=0).fit(X, y)
        theirs = SkMLPRegressor(solver="lbfgs", max_iter=5, random_state=0).fit(X, y)
    assert np.isnan(ours.loss_) and np.isnan(theirs.loss_) and ours.n_iter_ == theirs.n_iter_ == 0
    assert max_param_diff(ours, theirs) < 1e-15


def test_a_diverging_loss_with_early_stopping_finishes_the_fit_as_sklearn_does():
    from sklearn.datasets import load_iris
    X, y = load_iris(return_X_y=True)
    params = dict(hidden_layer_sizes=100, activation="identity", solver="sgd", learning_rate_init=1,
                  max_iter=20, early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = MLPRegressor(**params).fit(X, y)
        theirs = SkMLPRegressor(**params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 20
    assert len(ours.validation_scores_) == len(theirs.validation_scores_) == 20
    assert np.isnan(ours.validation_scores_[-1]) and isinstance(ours.validation_scores_[-1], float)
    assert np.isnan(ours.loss_curve_[-1])
    # the best epoch's (finite) weights are kept, as there
    assert np.isfinite(ours.network_.get_flat_params()).all()
    assert ours.best_validation_score_ == np.nanmax(ours.validation_scores_)


def test_coefs_and_intercepts_can_be_assigned_as_in_sklearn(digits_400):
    X, y = digits_400
    est = MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    est.coefs_ = [np.full((64, 3), 0.01), np.ones((3, 10))]     # other shapes: a new network
    est.intercepts_ = [np.zeros(3), np.arange(10.0)]
    np.testing.assert_allclose(est.predict_proba(X[:2]), np.tile(_softmax(np.arange(10.0)), (2, 1)))
    assert est.network_.sizes == (64, 3, 10)
    est.coefs_[1] = np.zeros((3, 10))                           # an element replaced
    np.testing.assert_allclose(est.predict_proba(X[:1]), [_softmax(np.arange(10.0))])
    est.intercepts_[1][...] = 0                                 # in place: a view
    np.testing.assert_allclose(est.predict_proba(X[:1]), 0.1)
    est.partial_fit(X, y)                                       # trains from what was assigned
    assert not np.allclose(est.coefs_[1], 0) and est.coefs_[1].shape == (3, 10)
    # pickling keeps the lists live views of the network
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    again.partial_fit(X, y)
    assert np.array_equal(again.coefs_[0], again.network_.weights[0].T)
    assert not np.array_equal(again.coefs_[0], est.coefs_[0])


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_multilabel_partial_fit_from_the_first_call():
    from sklearn.datasets import make_multilabel_classification
    X, Y = make_multilabel_classification(n_samples=50, random_state=0, return_indicator=True)
    ours = MLPClassifier((16,), solver="sgd", random_state=0)
    theirs = SkMLPClassifier((16,), solver="sgd", random_state=0)
    for _ in range(3):
        ours.partial_fit(X, Y, classes=[0, 1, 2, 3, 4])
        theirs.partial_fit(X, Y, classes=[0, 1, 2, 3, 4])
    assert ours.out_activation_ == theirs.out_activation_ == "logistic"
    assert ours.predict(X).shape == Y.shape and list(ours.classes_) == list(theirs.classes_)


def test_stratified_early_stopping_error_names_the_class_as_sklearn_does():
    X, y = [[1, 2], [2, 3], [3, 4], [4, 5]], [0, 0, 0, 1]
    with pytest.raises(ValueError, match=r"too few members are: \['True'\]"):
        MLPClassifier(early_stopping=True).fit(X, y)


# ---------------------------------------------------------------- sparse inputs

@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_sparse_inputs_train_as_dense_ones(digits_400, solver):
    sp = pytest.importorskip("scipy.sparse")
    X, y = digits_400
    params = dict(hidden_layer_sizes=(16,), solver=solver, max_iter=5, random_state=0,
                  early_stopping=solver != "lbfgs")
    dense = MLPClassifier(**params).fit(X, y)
    for matrix in (sp.csr_matrix, sp.csc_array):
        sparse = MLPClassifier(**params).fit(matrix(X), y)
        if solver == "lbfgs":         # the pass's blocks: equal to rounding
            assert max_param_diff(sparse, dense) < 1e-10
        else:                         # the dense fit's arithmetic, bit for bit
            assert max_param_diff(sparse, dense) == 0
        np.testing.assert_allclose(sparse.predict_proba(matrix(X)), dense.predict_proba(X),
                                   rtol=1e-9)
        assert sparse.score(matrix(X), y) == dense.score(X, y)
    assert MLPClassifier().__sklearn_tags__().input_tags.sparse


def test_regressor_learns_one_and_two_outputs():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (500, 3))
    Y = np.c_[np.sin(2 * X[:, 0]) + X[:, 1], X[:, 2] ** 2]
    for y in (Y[:, 0], Y):
        est = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=300,
                           random_state=0).fit(X, y)
        assert est.predict(X).shape == y.shape
        assert est.score(X, y) > 0.9


def test_convergence_warning_and_verbose_output(digits_400, capsys):
    X, y = digits_400
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(max_iter=2, verbose=True).fit(X, y)
    assert "Iteration 2, loss = " in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)       # stops on tol: no warning
        est = MLPClassifier(max_iter=500, tol=0.5, n_iter_no_change=1).fit(X, y)
    assert est.n_iter_ < 500


def test_pickle_keeps_predictions(digits_400):
    X, y = digits_400
    est = MLPClassifier(max_iter=3, random_state=0).fit(X, np.array(["a", "b"])[y % 2])
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))


def test_pipeline_and_grid_search_with_string_labels(digits_400):
    X, y = digits_400
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])[y]
    model = make_pipeline(MinMaxScaler(), MLPClassifier((32,), learning_rate_init=0.01, max_iter=30,
                                                        random_state=0))
    grid = GridSearchCV(model, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)
    grid.fit(X, names)
    assert grid.best_score_ > 0.8 and set(grid.predict(X)) <= set(names)


def test_threadpool_limits_make_cymlp_use_one_thread(digits_400):
    X, y = digits_400
    est = MLPClassifier(max_iter=1).fit(X, y)
    with threadpool_limits(1):
        assert est.network_.effective_n_threads == 1
    est.set_params(n_threads=2)          # an explicit count is used as given
    est.fit(X, y)
    assert est.network_.effective_n_threads == 2


def _threads_used(estimator, X, y):
    """A scorer that reports how many threads the fitted network runs with in its worker."""
    return estimator.network_.effective_n_threads


@pytest.mark.slow
def test_joblib_workers_do_not_oversubscribe(digits_400):
    X, y = digits_400
    n_jobs = 2
    threads = cross_val_score(MLPClassifier((8,), max_iter=1), X, y, cv=4, n_jobs=n_jobs,
                              scoring=_threads_used)
    assert max(threads) <= max(1, (os.cpu_count() or 1) // n_jobs)


@pytest.mark.slow
def test_importing_cymlp_does_not_import_sklearn(tmp_path):
    code = ("import sys, cymlp, cymlp.network, cymlp.cli; "
            "assert not [m for m in sys.modules if m == 'sklearn' or m.startswith('sklearn.')]")
    subprocess.run([sys.executable, "-c", code], check=True, env=subprocess_env(), cwd=tmp_path)


@pytest.fixture(scope="module")
def weights():
    w = np.random.default_rng(3).uniform(0, 3, 400)
    w[::7] = 0
    return w


@pytest.mark.parametrize("params", [
    {"solver": "sgd", "max_iter": 5, "learning_rate_init": 0.1, "alpha": 0},
    {"solver": "sgd", "max_iter": 5, "alpha": 0.01, "batch_size": 400},     # one batch: alpha exact
    {"solver": "sgd", "max_iter": 8, "early_stopping": True, "alpha": 0, "batch_size": 90},
], ids=["momentum", "full-batch+alpha", "early-stopping"])
def test_sample_weight_follows_sklearn(digits_400, weights, params):
    X, y = digits_400
    ours = MLPClassifier(**{**EXACT, **params}).fit(X, y, sample_weight=weights)
    theirs = SkMLPClassifier(**{**EXACT, **params}).fit(X, y, sample_weight=weights)
    assert max_param_diff(ours, theirs) < 1e-10
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-6)
    assert ours.validation_scores_ == theirs.validation_scores_
    unweighted = MLPClassifier(**{**EXACT, **params}).fit(X, y)
    assert max_param_diff(ours, unweighted) > 1e-5          # the weights did something
    # mini-batches with alpha: scikit-learn divides alpha by each batch's weight sum, cymlp by
    # the mean one (the module docstring): close, not equal
    ours = MLPClassifier(**EXACT, solver="sgd", max_iter=5, alpha=0.01).fit(X, y, weights)
    theirs = SkMLPClassifier(**EXACT, solver="sgd", max_iter=5, alpha=0.01).fit(X, y, weights)
    assert max_param_diff(ours, theirs) < 1e-6


def test_zero_weights_remove_rows_and_ones_change_nothing(digits_400):
    X, y = digits_400[0][:150], digits_400[1][:150]
    params = dict(EXACT, batch_size="auto", max_iter=4, alpha=0.01)   # one batch: order-free
    keep = np.arange(len(X)) % 3 != 0
    removed = MLPRegressor(**params).fit(X[keep], y[keep])
    zeroed = MLPRegressor(**params).fit(X, y, sample_weight=keep.astype(float))
    np.testing.assert_allclose(zeroed.predict(X), removed.predict(X), rtol=1e-10, atol=1e-12)
    plain = MLPClassifier(**EXACT, max_iter=3).fit(X, y)
    ones = MLPClassifier(**EXACT, max_iter=3).fit(X, y, sample_weight=np.ones(len(X)))
    np.testing.assert_array_equal(ones.predict_proba(X), plain.predict_proba(X))
    # score takes weights as well (scikit-learn's mixins)
    assert plain.score(X, y, sample_weight=keep) == np.mean(plain.predict(X)[keep] == y[keep])


def test_class_weight_is_sample_weight_per_label(digits_400):
    X, y = digits_400
    names = np.array(["even", "odd"])[y % 2]
    dict_weighted = MLPClassifier(**EXACT, max_iter=3, class_weight={"odd": 3.0}).fit(X, names)
    by_rows = MLPClassifier(**EXACT, max_iter=3).fit(X, names, sample_weight=np.where(
        names == "odd", 3.0, 1.0))
    np.testing.assert_array_equal(dict_weighted.predict_proba(X), by_rows.predict_proba(X))
    few = np.r_[np.flatnonzero(names == "even"), np.flatnonzero(names == "odd")[:20]]
    balanced = MLPClassifier(**EXACT, max_iter=3, class_weight="balanced").fit(X[few], names[few])
    n_odd = 20
    w = np.where(names[few] == "odd", len(few) / (2 * n_odd), len(few) / (2 * (len(few) - n_odd)))
    by_rows = MLPClassifier(**EXACT, max_iter=3).fit(X[few], names[few], sample_weight=w)
    np.testing.assert_allclose(balanced.predict_proba(X), by_rows.predict_proba(X), rtol=1e-12)
    with pytest.raises(ValueError, match="not classes of y"):
        MLPClassifier(class_weight={"cat": 2.0}).fit(X, names)
    with pytest.raises(ValueError, match="class_weight must be"):
        MLPClassifier(class_weight="uniform").fit(X, names)


def test_partial_fit_takes_sample_weight_like_sklearn(digits_400, weights):
    X, y = digits_400
    ours = MLPClassifier(**EXACT, solver="sgd", alpha=0)
    theirs = SkMLPClassifier(**EXACT, solver="sgd", alpha=0)
    for rows in (slice(0, 200), slice(200, 400), slice(0, 400)):
        ours.partial_fit(X[rows], y[rows], weights[rows], classes=np.arange(10))
        theirs.partial_fit(X[rows], y[rows], weights[rows], classes=np.arange(10))
    assert max_param_diff(ours, theirs) < 1e-10


def test_dropout_and_clip_norm_reach_the_network(digits_400):
    X, y = digits_400
    plain = MLPClassifier(**EXACT, max_iter=3).fit(X, y)
    dropped = MLPClassifier(**EXACT, max_iter=3, dropout=0.3).fit(X, y)
    assert dropped.network_.dropout == (0.3,) and plain.network_.dropout == (0.0,)
    assert max_param_diff(dropped, plain) > 1e-3
    np.testing.assert_array_equal(dropped.predict_proba(X), dropped.predict_proba(X))
    again = MLPClassifier(**EXACT, max_iter=3, dropout=0.3).fit(X, y)     # same masks
    np.testing.assert_array_equal(again.predict_proba(X), dropped.predict_proba(X))
    clipped = MLPClassifier(**EXACT, solver="sgd", max_iter=3, clip_norm=1e-3).fit(X, y)
    loose = MLPClassifier(**EXACT, solver="sgd", max_iter=3, clip_norm=1e3).fit(X, y)
    unclipped = MLPClassifier(**EXACT, solver="sgd", max_iter=3).fit(X, y)
    assert max_param_diff(loose, unclipped) == 0
    # 12 steps, each at most lr * clip_norm / (1 - momentum) long (Nesterov): barely moved
    start = MLPClassifier(**EXACT, solver="sgd", max_iter=1, learning_rate_init=1e-300).fit(X, y)
    bound = 12 * 1e-3 * 1e-3 / (1 - 0.9)
    assert max_param_diff(clipped, start) <= bound < 10 * bound < max_param_diff(unclipped, start)


@pytest.mark.parametrize("params, message", [
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": [0.1, 0.2]}, "one rate per hidden layer"),
    ({"clip_norm": 0}, "clip_norm"),
])
def test_invalid_dropout_or_clip_norm_say_what_to_use(digits_400, params, message):
    X, y = digits_400
    est = MLPClassifier(hidden_layer_sizes=(8,), **params)
    with pytest.raises(ValueError, match=message):
        est.fit(X, y)
    assert not hasattr(est, "classes_")


@pytest.mark.parametrize("labels", [np.array([3, 7]), np.array([3, 7, 11]), np.array(["b", "a", "c"]),
                                    np.array([True, False]), np.array([0.0, 2.0, 5.0])],
                         ids=["binary", "multiclass", "strings", "bools", "integral floats"])
def test_partial_fit_after_the_first_call_trains_on_the_same_targets(labels):
    # later calls encode their labels without scikit-learn's binarizer: the same targets
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = labels[rng.integers(0, len(labels), 60)]
    fast = MLPClassifier((6,), solver="sgd", shuffle=False, random_state=0)
    slow = MLPClassifier((6,), solver="sgd", shuffle=False, random_state=0)
    fast.partial_fit(X, y, classes=labels)
    slow.partial_fit(X, y, classes=labels)
    Y = slow._label_binarizer.transform(y[:30]).astype(X.dtype)
    np.testing.assert_array_equal(fast._encode_known_labels(y[:30], X.dtype), Y)
    for _ in range(3):
        fast.partial_fit(X, y)
        slow._fit(X, y, None, incremental=True)      # through the binarizer as before
    assert max_param_diff(fast, slow) == 0
    for known in (np.full(60, labels[0]).astype(object), y.astype(object)):
        fast.partial_fit(X, known)                   # object arrays of known labels are fine
    unseen = np.concatenate([y[:-1].astype(object),
                             np.array(["zz" if labels.dtype.kind == "U" else 99], dtype=object)])
    for bad, message in ((unseen, "not in `self.classes_`"),
                         (np.full(60, 0.5), "not in `self.classes_`"),
                         (np.full(60, np.nan), "contains NaN")):
        if labels.dtype.kind == "U" and bad.dtype.kind == "f":
            continue                                 # (floats against text classes: a TypeError)
        with pytest.raises(ValueError, match=message):
            fast.partial_fit(X, bad)


def test_what_still_differs_is_as_the_module_docstring_says(digits_400):
    X, y = digits_400
    # float32 stays float32 with lbfgs too
    est = MLPClassifier(**LBFGS).fit(X.astype(np.float32), y)
    assert est.coefs_[0].dtype == np.float32 and est.network_.dtype == np.float32
    # predict on inputs that overflow the network: a ValueError, not infinities
    with pytest.raises(ValueError, match="overflowed"):
        est.predict(np.full((2, 64), 1e38, dtype=np.float32))
    # a diverged fit without early stopping raises at once and keeps finite weights
    big = np.finfo(np.float64).max * np.random.default_rng(0).uniform(size=(10, 2))
    reg = MLPRegressor(max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="non-finite parameter weights"):
            reg.fit(big, np.arange(10.0))
    assert np.isfinite(reg.network_.get_flat_params()).all()


# ---------------------------------------------------------------- issue 21, item 15


def test_a_refused_partial_fit_leaves_the_estimator_and_its_optimizer_state_alone():
    """On main the refused call had reset n_iter_ and rewritten the state's weight decay."""
    if not HAS_COMPILED:
        pytest.skip("parallel='hogwild' needs the compiled path")
    X, y = np.random.default_rng(0).standard_normal((60, 4)), np.arange(60) % 3
    clf = MLPClassifier(hidden_layer_sizes=(5,), random_state=0, batch_size=10, parallel="hogwild",
                        n_threads=1)                   # on one thread hogwild is sync: its state resumes
    clf.partial_fit(X, y, classes=[0, 1, 2])
    clf.partial_fit(X, y)
    state = clf.network_.training_state_
    before = (clf.n_iter_, clf.t_, list(clf.loss_curve_), state.optimizer, state.step)
    with pytest.raises(ValueError, match="parallel='sync' only"):     # weights need sync; their
        clf.partial_fit(X[:10], y[:10], sample_weight=np.ones(10) + np.arange(10))   # mean: another decay
    assert (clf.n_iter_, clf.t_, list(clf.loss_curve_), state.optimizer, state.step) == before
    assert clf.network_.training_state_ is state


def test_dropout_without_hidden_layers_names_hidden_layer_sizes():
    X, y = np.random.default_rng(0).standard_normal((20, 4)), np.arange(20) % 2
    with pytest.raises(ValueError, match=r"hidden_layer_sizes=\(\) has none") as info:
        MLPClassifier(hidden_layer_sizes=(), dropout=0.5).fit(X, y)
    assert "[0, 0]" not in str(info.value)
