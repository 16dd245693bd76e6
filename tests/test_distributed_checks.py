"""``fit_distributed`` checks every argument on the client before any cluster is touched (issue 21, item 8).

The checks are ``Network.fit``'s own (the optimizer's settings, ``lr``,
``epochs``, ``batch_size``, the callbacks, ``lr_schedule`` with its
``(epoch, epochs, lr)`` signature), plus finite, sane ranges for
``fit_distributed``'s numbers.  Every case here runs with the cluster side
replaced by a function that fails the test, so a check that came too late
would show; no process is started.
"""

import math

import numpy as np
import pytest

pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import cymlp
import cymlp.distributed as cd
from cymlp.distributed import fit_distributed

X, Y = np.random.default_rng(0).standard_normal((40, 4)), np.arange(40) % 3


class ClusterTouched(Exception):
    pass


@pytest.fixture
def no_cluster(monkeypatch):
    """Any attempt to find, start or connect to a cluster raises ClusterTouched."""
    def touched(*args, **kwargs):
        raise ClusterTouched
    monkeypatch.setattr(cd, "_client_for", touched)


def _net(**kwargs):
    return cymlp.Network([4, 5, 3], seed=0, **kwargs)


BAD = {
    "momentum 5": (dict(momentum=5.0), ValueError, "momentum"),
    "negative weight decay": (dict(weight_decay=-1.0), ValueError, "weight_decay"),
    "adam beta1 = 2": (dict(optimizer="adam", beta1=2.0), ValueError, "beta1"),
    "eps 0": (dict(optimizer="adam", eps=0.0), ValueError, "eps"),
    "unknown optimizer": (dict(optimizer="rmsprop"), ValueError, "optimizer"),
    "lr nan": (dict(lr=float("nan")), ValueError, "lr"),
    "lr 0": (dict(lr=0.0), ValueError, "lr"),
    "epochs -1": (dict(epochs=-1), ValueError, "epochs"),
    "batch_size 0": (dict(batch_size=0), ValueError, "batch_size"),
    "batch_size 2.5": (dict(batch_size=2.5), TypeError, "batch_size"),
    "a schedule returning a negative rate": (dict(lr_schedule=lambda e, n, lr: -1.0), ValueError,
                                             "lr_schedule"),
    "an unknown schedule": (dict(lr_schedule="warp"), ValueError, "lr_schedule"),
    "timeout nan": (dict(timeout=float("nan")), ValueError, "timeout"),
    "timeout inf": (dict(timeout=math.inf), ValueError, "timeout"),
    "timeout 0": (dict(timeout=0), ValueError, "timeout"),
    "timeout a word": (dict(timeout="1m"), TypeError, "timeout"),
    "n_workers 0": (dict(n_workers=0), ValueError, "n_workers"),
    "n_workers 1.5": (dict(n_workers=1.5), TypeError, "n_workers"),
    "n_workers a billion local processes": (dict(n_workers=10**9), ValueError, "n_workers"),
    "threads_per_worker 0": (dict(threads_per_worker=0), ValueError, "threads_per_worker must be"),
    "threads_per_worker a million": (dict(threads_per_worker=10**6), ValueError, "absurd"),
    "average_every 0": (dict(average_every=0), ValueError, "average_every"),
    "seed -1": (dict(seed=-1), ValueError, "seed"),
    "seed None": (dict(seed=None), ValueError, "seed"),
    "unknown strategy": (dict(strategy="gossip"), ValueError, "strategy"),
    "unknown weighting": (dict(average_weighting="loss"), ValueError, "average_weighting"),
    "a callback that is not callable": (dict(callbacks=[1]), TypeError, "callables"),
    "validation data of the wrong width": (dict(validation_data=(np.zeros((3, 5)), [0, 1, 2])),
                                           ValueError, "validation X"),
    "an unknown keyword": (dict(momentun=0.5), TypeError, "momentun"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_arguments_are_refused_before_any_cluster(no_cluster, case):
    kwargs, error, words = BAD[case]
    net = _net()
    before = net.get_flat_params()
    with pytest.raises(error, match=words):
        fit_distributed(net, X, Y, **{"epochs": 2, **kwargs})
    np.testing.assert_array_equal(net.get_flat_params(), before)


def test_valid_arguments_reach_the_cluster(no_cluster):
    with pytest.raises(ClusterTouched):
        fit_distributed(_net(), X, Y, epochs=2, optimizer="adam", beta1=0.5, timeout=10, n_workers=2,
                        threads_per_worker=1, validation_data=(X, Y), callbacks=[print])


def test_the_schedule_gets_fits_arguments(no_cluster):
    calls = []

    def schedule(epoch, epochs, lr):
        calls.append((epoch, epochs, lr))
        return lr
    with pytest.raises(ClusterTouched):
        fit_distributed(_net(), X, Y, epochs=7, lr=0.25, lr_schedule=schedule)
    assert calls == [(0, 7, 0.25)]                 # Network.fit's signature, checked up front


def test_bad_data_is_refused_before_any_cluster(no_cluster, tmp_path):
    with pytest.raises(ValueError, match="labels"):
        fit_distributed(_net(), X, np.arange(40) + 10)
    with pytest.raises(ValueError, match="NaN"):
        fit_distributed(_net(), np.full((40, 4), np.nan), Y)
    np.save(tmp_path / "X0.npy", X)
    np.save(tmp_path / "y0.npy", Y[:30])
    with pytest.raises(ValueError, match="40 rows but .* has 30"):
        fit_distributed(_net(), [(tmp_path / "X0.npy", tmp_path / "y0.npy")])
    with pytest.raises(ValueError, match="not a readable .npy"):
        fit_distributed(_net(), [(tmp_path / "missing.npy", tmp_path / "y0.npy")])


def test_a_dask_array_with_unknown_chunk_sizes_is_refused_with_the_fix(no_cluster):
    """Issue 21, item 15: on main a raw ``arange`` error from the cluster side."""
    Xd = da.from_array(X, chunks=(10, 4))
    yd = da.from_array(Y, chunks=10)
    keep = yd >= 0
    with pytest.raises(ValueError, match="unknown chunk sizes.*compute_chunk_sizes"):
        fit_distributed(_net(), Xd[keep], yd[keep])
    with pytest.raises(ClusterTouched):
        fit_distributed(_net(), Xd[keep].compute_chunk_sizes(), yd[keep].compute_chunk_sizes())


def test_a_client_that_is_not_a_client_is_refused():
    with pytest.raises(TypeError, match="distributed.Client"):
        fit_distributed(_net(), X, Y, client=42)


def test_the_sync_strategy_updates_with_the_checked_optimizer():
    """The sync strategy's update reads the checked OptimizerConfig (fit's defaults included)."""
    from cymlp._dask_checks import check_arguments, fit_defaults
    from cymlp.network import Network
    run = check_arguments(_net(), X, Y, client=None, n_workers=None, threads_per_worker=None,
                          strategy="sync", average_every=None, average_weighting="uniform", epochs=1,
                          batch_size=8, lr=0.1, shuffle=True, seed=0, validation_data=None,
                          lr_schedule="constant", callbacks=None, timeout=300, fit_kwargs={})
    import inspect
    fit = inspect.signature(Network.fit).parameters
    assert fit_defaults() == {name: fit[name].default for name in fit_defaults()}
    assert run.optimizer.momentum == fit["momentum"].default
    assert run.fit_settings == {**fit_defaults()}
