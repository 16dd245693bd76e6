"""Parallel strategies beyond the batch: ``parallel="hogwild"`` and ``"average"``.

What is promised (docs/parallel-sgd.md, docs/guarantees.md): every strategy
learns; with one thread every strategy is plain SGD, bit for bit equal to
``"sync"``; averaging is a weighted mean that leaves identical replicas
unchanged, weights by examples when asked, and never lets a non-finite
replica into the network; Ctrl-C and divergence behave as for ``"sync"``;
more threads than batches is fine.  Multi-threaded hogwild is not
deterministic and average depends on the thread count (it is repeatable for
a fixed one), so only their quality is compared with sync, never their weights.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _helpers import interrupt_training_child, make_trainer, skip_module_unless_compiled, subprocess_env

from cymlp import Network, TrainingDiverged

skip_module_unless_compiled()
from cymlp import _kernels, _threads

POSIX = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
ENV = subprocess_env(PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")

# (parallel, average_every, average_weighting)
STRATEGIES = [
    ("hogwild", None, "uniform"),
    ("average", None, "uniform"),
    ("average", 4, "uniform"),
    ("average", "end", "uniform"),
    ("average", None, "examples"),
]
IDS = ["hogwild", "average-epoch", "average-every-4", "average-end", "average-examples"]


def fit_kwargs(strategy):
    parallel, every, weighting = strategy
    return dict(parallel=parallel, average_every=every, average_weighting=weighting)


# --------------------------------------------------------------------------
# Learning
# --------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", STRATEGIES, ids=IDS)
def test_every_strategy_learns_digits_on_two_threads(strategy, digits):
    X, y, X_test, y_test = digits
    # measured: hogwild 0.958-0.961 over 20 runs, the averages 0.958-0.961, sync 0.961
    net = Network([64, 64, 10], n_threads=2, seed=0)
    history = net.fit(X, y, epochs=10, batch_size=16, lr=0.05, momentum=0.9, lr_schedule="cosine",
                      **fit_kwargs(strategy))
    assert len(history) == 10 and not history.diverged
    assert net.score(X_test, y_test) >= 0.95


@pytest.mark.parametrize("strategy", STRATEGIES[1:], ids=IDS[1:])
def test_average_is_deterministic_for_a_fixed_thread_count(strategy):
    # each replica sees fixed batches and the averaging points are fixed
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, 10)), rng.integers(0, 3, 300)
    params = []
    for _ in range(2):
        net = Network([10, 16, 3], dtype="float64", n_threads=2, seed=0)
        net.fit(X, y, epochs=3, batch_size=16, lr=0.05, momentum=0.9, **fit_kwargs(strategy))
        params.append(net.get_flat_params())
    np.testing.assert_array_equal(params[0], params[1])


@pytest.mark.parametrize("strategy", STRATEGIES, ids=IDS)
def test_every_strategy_learns_with_adam(strategy, digits):
    # per-worker Adam state; sync itself scores 0.94-0.96 here (seeds 0-2), so the bar is lower
    X, y, X_test, y_test = digits
    net = Network([64, 64, 10], n_threads=2, seed=1)
    net.fit(X, y, epochs=6, batch_size=32, optimizer="adam", lr=0.003, **fit_kwargs(strategy))
    assert net.score(X_test, y_test) >= 0.90


# --------------------------------------------------------------------------
# One thread: exactly plain SGD
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", [dict(momentum=0.9, weight_decay=1e-3),
                                 dict(optimizer="adam", lr=0.003),
                                 dict(momentum=0.0)], ids=["momentum", "adam", "plain"])
@pytest.mark.parametrize("strategy", STRATEGIES, ids=IDS)
def test_one_thread_is_sync_bit_for_bit(strategy, opt, dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((203, 12))
    y = rng.integers(0, 4, 203)
    settings = dict(dict(lr=0.05), **opt)
    nets = []
    for kwargs in (dict(parallel="sync"), fit_kwargs(strategy)):
        net = Network([12, 16, 4], dtype=dtype, n_threads=1, seed=3)
        history = net.fit(X, y, epochs=3, batch_size=20, **settings, **kwargs)
        nets.append((net.get_flat_params(), history["loss"]))
    np.testing.assert_array_equal(nets[0][0], nets[1][0])
    assert nets[0][1] == nets[1][1]


# --------------------------------------------------------------------------
# The averaging helper
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighting", ["uniform", "examples"])
def test_averaging_identical_replicas_is_the_identity(dtype, weighting):
    rng = np.random.default_rng(0)
    P = 3 * 8192 + 17                        # several blocks and a partial one
    row = (rng.standard_normal(P) * 10 ** rng.uniform(-6, 6, P)).astype(dtype)
    replicas = np.tile(row, (3, 1))
    out = np.empty(P, dtype=dtype)
    assert _kernels.average_replicas(replicas, np.array([5.0, 1.0, 7.0]), weighting, out)
    np.testing.assert_array_equal(out, row)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_examples_weighting_equals_uniform_for_equal_shards(dtype):
    replicas = np.random.default_rng(1).standard_normal((3, 1000)).astype(dtype)
    uniform, examples = np.empty(1000, dtype=dtype), np.empty(1000, dtype=dtype)
    assert _kernels.average_replicas(replicas, np.array([64.0, 64.0, 64.0]), "uniform", uniform)
    assert _kernels.average_replicas(replicas, np.array([64.0, 64.0, 64.0]), "examples", examples)
    np.testing.assert_array_equal(uniform, examples)
    np.testing.assert_allclose(uniform, replicas.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_examples_weighting_follows_the_shards_when_they_are_unequal():
    replicas = np.random.default_rng(2).standard_normal((2, 500))
    uniform, examples = np.empty(500), np.empty(500)
    assert _kernels.average_replicas(replicas, np.array([96.0, 32.0]), "uniform", uniform)
    assert _kernels.average_replicas(replicas, np.array([96.0, 32.0]), "examples", examples)
    np.testing.assert_allclose(uniform, replicas.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(examples, 0.75 * replicas[0] + 0.25 * replicas[1], rtol=1e-12)
    assert not np.allclose(uniform, examples)
    # a replica that saw nothing since the last averaging gets no say at all
    assert _kernels.average_replicas(replicas, np.array([96.0, 0.0]), "examples", examples)
    np.testing.assert_array_equal(examples, replicas[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_replica_makes_the_average_fail(bad):
    replicas = np.ones((3, 20000))
    replicas[2, 12345] = bad
    out = np.empty(20000)
    assert not _kernels.average_replicas(replicas, np.ones(3), "uniform", out)


def _trainer(net, X, y, batch_size, parallel, every=None, weighting="uniform"):
    Y = np.eye(net.sizes[-1], dtype=net.dtype)[y]
    return make_trainer(net, X.astype(net.dtype), Y, y, batch_size, parallel=parallel,
                        average_every=every, average_weighting=weighting)


def test_epoch_end_leaves_the_average_in_the_network_and_in_every_replica(digits):
    X, y, _, _ = digits
    net = Network([64, 16, 10], n_threads=2, seed=0)
    trainer = _trainer(net, X[:480], y[:480], 16, "average", weighting="examples")
    order = np.random.default_rng(0).permutation(480).astype(np.intp)
    trainer.run(order, 0, 29, 0.1)                       # 29 of 30 batches: no averaging yet
    kernel = trainer._kernel
    assert trainer.n_averages == 0
    replicas = np.stack([kernel.replica(w) for w in range(2)])
    assert not np.array_equal(replicas[0], replicas[1])
    np.testing.assert_array_equal(kernel.examples_since_sync, [15 * 16, 14 * 16])
    before = net.get_flat_params()
    trainer.run(order, 29, 30, 0.1)                      # the last batch: worker 1's 15th
    replicas = np.stack([kernel.replica(w) for w in range(2)])
    assert trainer.n_averages == 1
    assert not np.array_equal(net._theta, before)
    np.testing.assert_array_equal(replicas[0], net._theta)
    np.testing.assert_array_equal(replicas[1], net._theta)
    assert (kernel.examples_since_sync == 0).all()
    trainer.close()


def test_average_every_k_averages_after_every_k_rounds_and_at_epoch_end(digits):
    X, y, _, _ = digits
    net = Network([64, 16, 10], n_threads=2, seed=0)
    trainer = _trainer(net, X[:200], y[:200], 16, "average", every=2)   # 13 batches, period 4
    order = np.arange(200, dtype=np.intp)
    before = net.get_flat_params()
    trainer.run(order, 0, 3, 0.1)
    np.testing.assert_array_equal(net._theta, before)   # between averagings: the last average
    trainer.run(order, 3, 13, 0.1)
    assert trainer.n_averages == 4                       # after batches 4, 8, 12 and 13 (epoch end)
    assert not np.array_equal(net._theta, before)
    trainer.close()


def test_one_shot_replicas_never_meet_but_the_network_shows_their_average(digits):
    X, y, _, _ = digits
    net = Network([64, 16, 10], n_threads=2, seed=0)
    trainer = _trainer(net, X[:256], y[:256], 16, "average", every="end")
    kernel = trainer._kernel
    for epoch in range(2):
        order = np.random.default_rng(epoch).permutation(256).astype(np.intp)
        trainer.run(order, 0, 16, 0.1)
        replicas = np.stack([kernel.replica(w) for w in range(2)])
        assert not np.array_equal(replicas[0], replicas[1])
        expected = np.empty_like(net._theta)
        assert _kernels.average_replicas(replicas, np.ones(2), "uniform", expected)
        np.testing.assert_array_equal(net._theta, expected)
    np.testing.assert_array_equal(kernel.examples_since_sync, [256, 256])
    trainer.close()


# --------------------------------------------------------------------------
# Divergence, edge cases, validation
# --------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", STRATEGIES, ids=IDS)
def test_divergence_restores_finite_weights_and_raises(strategy):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((640, 20)) * 50
    y = rng.integers(0, 5, 640)
    net = Network([20, 32, 5], activation="relu", n_threads=2, seed=0)
    initial = net.get_flat_params()
    with pytest.raises(TrainingDiverged):
        net.fit(X, y, epochs=5, batch_size=16, lr=1e6, momentum=0.9, **fit_kwargs(strategy))
    params = net.get_flat_params()
    assert np.isfinite(params).all()
    assert net.history_.diverged
    if strategy[0] == "average":
        # diverged before the first averaging point: the network never left its start
        np.testing.assert_array_equal(params, initial)
    net.fit(X[:64] / 50, y[:64], epochs=1, lr=0.01, **fit_kwargs(strategy))   # still usable


def test_divergence_warns_when_asked():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((320, 20)) * 50
    y = rng.integers(0, 5, 320)
    net = Network([20, 32, 5], n_threads=2, seed=0)
    with pytest.warns(RuntimeWarning, match="diverged"):
        history = net.fit(X, y, epochs=5, batch_size=16, lr=1e6, momentum=0.9, parallel="hogwild",
                          on_divergence="warn")
    assert history.diverged and np.isfinite(net.get_flat_params()).all()


@pytest.mark.parametrize("strategy", STRATEGIES, ids=IDS)
@pytest.mark.parametrize("n_rows,batch_size", [(40, 16), (5, 2), (1, 1)])
def test_more_threads_than_batches(strategy, n_rows, batch_size):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_rows, 6))
    y = rng.integers(0, 3, n_rows)
    net = Network([6, 8, 3], n_threads=8, seed=0)      # 8 workers, 1 to 3 batches: empty shards
    history = net.fit(X, y, epochs=3, batch_size=batch_size, lr=0.05, **fit_kwargs(strategy))
    assert len(history) == 3 and np.isfinite(net.get_flat_params()).all()
    assert history["loss"][-1] < history["loss"][0] or n_rows == 1


def test_unequal_shards_make_the_weightings_differ():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))             # 3 batches on 2 workers: 16 + 8 rows and 16 rows
    y = rng.integers(0, 3, 40)
    params = {}
    for weighting in ("uniform", "examples"):
        net = Network([6, 8, 3], n_threads=2, seed=0)
        net.fit(X, y, epochs=1, batch_size=16, lr=0.1, parallel="average", average_weighting=weighting)
        params[weighting] = net.get_flat_params()
    assert not np.array_equal(params["uniform"], params["examples"])


def test_blas_thread_limit_is_restored_after_fit():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((100, 6)), rng.integers(0, 3, 100)
    for parallel in ("hogwild", "average"):
        Network([6, 8, 3], n_threads=2).fit(X, y, epochs=1, batch_size=8, parallel=parallel)
    after = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert after == before


def test_evaluation_during_a_team_fit_keeps_blas_on_one_thread_and_the_hold_is_released():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((2000, 64)), rng.integers(0, 3, 2000)   # big enough to thread BLAS
    seen = []

    def callback(history):
        seen.append((_threads.blas_holders(), [p["num_threads"] for p in threadpoolctl.threadpool_info()
                                                  if p["user_api"] == "blas"]))
    for parallel in ("hogwild", "average"):
        net = Network([64, 64, 3], n_threads=2)
        net.fit(X, y, epochs=1, batch_size=16, parallel=parallel, validation_data=(X, y),
                callbacks=[callback])
        assert _threads.blas_holders() == 0
        with pytest.raises(TrainingDiverged):
            net.fit(X * 1e3, y, epochs=3, batch_size=16, lr=1e6, momentum=0.9, parallel=parallel)
        assert _threads.blas_holders() == 0
    assert seen == [(1, [1] * len(seen[0][1]))] * 2


def test_numpy_backend_rejects_the_parallel_strategies():
    net = Network([3, 4, 2], backend="numpy")
    for parallel in ("hogwild", "average"):
        with pytest.raises(ValueError, match="backend='cython'"):
            net.fit(np.eye(3), [0, 1, 0], parallel=parallel)


def test_bad_average_weighting_is_rejected_before_training():
    net = Network([3, 4, 2])
    before = net.get_flat_params()
    with pytest.raises(ValueError, match="average_weighting"):
        net.fit(np.eye(3), [0, 1, 0], parallel="average", average_weighting="speed")
    np.testing.assert_array_equal(net.get_flat_params(), before)


# --------------------------------------------------------------------------
# Ctrl-C (in a subprocess, as in test_interrupts.py)
# --------------------------------------------------------------------------

@pytest.mark.slow
@POSIX
@pytest.mark.parametrize("parallel,every", [("hogwild", "none"), ("average", "end")])
def test_ctrl_c_stops_quickly_and_keeps_finite_weights(parallel, every, tmp_path):
    report, took = interrupt_training_child(tmp_path, "cython", parallel, every, env=ENV)
    assert took < 1.5
    assert report["finite"] and report["changed"] and report["predicts"]
    assert report["epochs"] >= 1 and report["interrupted"]
    assert report["returncode"] == 0


# --------------------------------------------------------------------------
# cymlp bench --strategies (smoke: runs, reports every row; no timing thresholds)
# --------------------------------------------------------------------------

@pytest.mark.slow
def test_bench_strategies_quick_reports_every_strategy(tmp_path):
    from cymlp.bench import strategies as bench_strategies
    out = tmp_path / "strategies.json"
    proc = subprocess.run([sys.executable, "-m", "cymlp", "bench", "--strategies", "--quick",
                           "--threads", "1,2", "--json", str(out)],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| strategy |" in proc.stdout and "Load average at start" in proc.stdout
    with open(out) as f:
        payload = json.load(f)
    rows = {(r["label"], r["threads"]) for r in payload["results"]}
    assert rows == {("sync", 1)} | {(label, 2) for label, _, _ in bench_strategies.STRATEGIES}
    for r in payload["results"]:
        assert r["examples_per_second"] > 0 and len(r["accuracy_by_epoch"]) >= 2


def test_bench_strategies_skips_fashion_mnist_cleanly_when_absent(monkeypatch, capsys):
    import argparse

    from cymlp import datasets
    from cymlp.bench import strategies as bench_strategies

    def missing(*args, **kwargs):
        raise FileNotFoundError("no Fashion-MNIST here")
    monkeypatch.setattr(datasets, "load_fashion_mnist", missing)
    args = argparse.Namespace(strategy_case="fmnist-small", quick=True, repeats=None, threads=[1, 2],
                              json=None, argv=[])
    payload = bench_strategies.run(args)
    assert payload["results"] == [] and "fmnist-small" in payload["skipped"]
    assert "Not measured: fmnist-small" in capsys.readouterr().out
