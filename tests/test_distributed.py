"""Data-parallel training on a Dask LocalCluster (loopback only, bounded in time)."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

from _helpers import subprocess_env
from distributed import Client, LocalCluster

import cymlp
import cymlp.distributed as cd
from cymlp.distributed import SchedulerLost, connect, fit_distributed

pytestmark = pytest.mark.slow          # worker processes on a local cluster


def _cluster(n_workers=2, **kwargs):
    """A LocalCluster of worker processes on 127.0.0.1 that import the cymlp under test."""
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, env={"PYTHONPATH": subprocess_env()["PYTHONPATH"]},
                        **kwargs)


@pytest.fixture(scope="module")
def client():
    with _cluster() as cluster, Client(cluster) as c:
        yield c


def _net(**kw):
    return cymlp.Network([64, 64, 10], dtype=kw.pop("dtype", "float32"), seed=0, **kw)


# Averaging more often than once per epoch needs each replica to keep its optimizer state
# between rounds (Network.partial_fit, issue 14); without it momentum restarts every round.
needs_partial_fit = pytest.mark.skipif(not hasattr(cymlp.Network, "partial_fit"),
                                       reason="needs Network.partial_fit (resumable optimizer state)")


@pytest.mark.parametrize("average_every, weighting", [
    (None, "uniform"), pytest.param(8, "examples", marks=needs_partial_fit)])
def test_model_averaging_learns_digits(client, digits, average_every, weighting):
    X_train, y_train, X_test, y_test = digits
    net = _net()
    history = fit_distributed(net, X_train, y_train, client=client, strategy="average", epochs=15,
                              batch_size=32, lr=0.1, average_every=average_every,
                              average_weighting=weighting, validation_data=(X_test, y_test))
    assert len(history) == 15
    assert net.score(X_test, y_test) >= 0.95
    assert history.val_accuracy[-1] == net.score(X_test, y_test)
    assert history.bytes_per_round == 2 * 2 * net.n_params * 4     # weights down and up, 2 workers


@needs_partial_fit
def test_model_averaging_with_adam_keeps_learning(client, digits):
    X_train, y_train, X_test, y_test = digits
    net = _net()
    fit_distributed(net, X_train, y_train, client=client, epochs=15, batch_size=32, lr=0.01,
                    optimizer="adam", average_every=10)
    assert net.score(X_test, y_test) >= 0.95


def test_sync_learns_digits(client, digits):
    X_train, y_train, X_test, y_test = digits
    net = _net()
    fit_distributed(net, X_train, y_train, client=client, strategy="sync", epochs=5, batch_size=64,
                    lr=0.2)
    assert net.score(X_test, y_test) >= 0.95


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_sync_equals_single_process_sgd(client, digits, optimizer):
    X_train, y_train, _, _ = digits
    X, y = X_train[:300].astype(np.float64), y_train[:300]
    lr = 0.1 if optimizer == "sgd" else 0.01
    single = _net(dtype="float64", backend="numpy")
    single.fit(X, y, epochs=2, batch_size=64, lr=lr, optimizer=optimizer, momentum=0.9, shuffle=False)
    distributed = _net(dtype="float64", backend="numpy")
    history = fit_distributed(distributed, X, y, client=client, strategy="sync", epochs=2, batch_size=64,
                              lr=lr, optimizer=optimizer, momentum=0.9, shuffle=False)
    np.testing.assert_allclose(distributed.weights[0], single.weights[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(distributed.biases[-1], single.biases[-1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(history.loss, single.history_.loss, rtol=1e-9)


def test_dask_array_input_is_not_gathered_to_the_client(client, digits, monkeypatch):
    import dask
    X_train, y_train, X_test, y_test = digits

    def part(i):
        return X_train[i::4]

    # chunks made on the workers: the client never had them in its task graph
    chunks = [da.from_delayed(dask.delayed(part)(i), shape=(len(X_train[i::4]), 64), dtype=np.float32)
              for i in range(4)]
    labels = [da.from_delayed(dask.delayed(lambda i: y_train[i::4])(i), shape=(len(y_train[i::4]),),
                              dtype=y_train.dtype) for i in range(4)]
    X, y = da.concatenate(chunks), da.concatenate(labels)
    gathered = []
    real_gather = Client.gather

    def spy(self, futures, *args, **kwargs):
        gathered.extend(str(getattr(f, "key", f)) for f in (futures if isinstance(futures, list) else [futures]))
        return real_gather(self, futures, *args, **kwargs)

    monkeypatch.setattr(Client, "gather", spy)
    net = _net()
    fit_distributed(net, X, y, client=client, epochs=10, batch_size=32, lr=0.1)
    monkeypatch.undo()
    assert net.score(X_test, y_test) >= 0.93
    data_keys = {str(k) for k in dask.core.flatten(X.__dask_keys__())} | {"part", "concatenate", "_concat"}
    assert not [k for k in gathered if any(d in k for d in data_keys)], gathered
    # and no worker fetched another worker's chunks to build its shard
    logs = client.run(lambda dask_worker: [list(t.get("keys", {})) for t in
                                           dask_worker.transfer_incoming_log])
    fetched = [key for log in logs.values() for keys in log for key in keys]
    assert not [k for k in fetched if "concatenate" in str(k) or "part" in str(k)], fetched


def test_file_shards_are_loaded_by_the_workers(client, digits, tmp_path):
    X_train, y_train, X_test, y_test = digits
    pairs = []
    for i, rows in enumerate(np.array_split(np.arange(len(X_train)), 3)):
        np.save(tmp_path / f"X{i}.npy", X_train[rows])
        np.save(tmp_path / f"y{i}.npy", y_train[rows])
        pairs.append((tmp_path / f"X{i}.npy", tmp_path / f"y{i}.npy"))
    net = _net()
    fit_distributed(net, pairs, client=client, epochs=15, batch_size=32, lr=0.1)
    assert net.score(X_test, y_test) >= 0.95


def test_a_killed_worker_does_not_lose_the_run(digits):
    X_train, y_train, X_test, y_test = digits
    with _cluster() as cluster, Client(cluster) as c:
        victim = next(iter(cluster.workers.values())).process.process.pid

        def kill_after_epoch_2(history):
            # SIGKILL a worker process a moment into the next round
            if len(history) == 2:
                threading.Timer(0.05, os.kill, (victim, signal.SIGKILL)).start()

        net = _net()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = fit_distributed(net, X_train, y_train, client=c, epochs=15, batch_size=32, lr=0.1,
                                      callbacks=[kill_after_epoch_2])
        assert len(history) == 15
        assert np.isfinite(net.get_flat_params()).all()
        assert net.score(X_test, y_test) >= 0.95
        assert any("lost" in str(w.message) for w in caught if issubclass(w.category, RuntimeWarning))


def test_bad_inputs_give_clear_errors(client, digits, tmp_path):
    X_train, y_train, _, _ = digits
    net = _net()
    theta = net.get_flat_params()
    with pytest.raises(ValueError, match="n_workers"):
        fit_distributed(net, X_train, y_train, n_workers=0)
    with pytest.raises(ValueError, match="strategy"):
        fit_distributed(net, X_train, y_train, client=client, strategy="ring")
    with pytest.raises(TypeError, match="unexpected keyword"):
        fit_distributed(net, X_train, y_train, client=client, dropout_rate=0.5)
    with pytest.raises(ValueError, match="features"):
        fit_distributed(net, X_train[:, :10], y_train, client=client)
    closed = Client(client.scheduler.address)
    closed.close()
    with pytest.raises(ValueError, match="closed"):
        fit_distributed(net, X_train, y_train, client=closed)
    assert np.array_equal(theta, net.get_flat_params())


def test_a_worker_without_cymlp_is_named(digits, tmp_path):
    X_train, y_train, _, _ = digits
    preload = tmp_path / "hide_cymlp.py"
    preload.write_text("import sys\nsys.modules['cymlp'] = None\n")
    with _cluster(n_workers=1, preload=[str(preload)]) as cluster, Client(cluster) as c:
        with pytest.raises(RuntimeError, match="not importable on the Dask worker"):
            fit_distributed(_net(), X_train, y_train, client=c, epochs=1)


def test_importing_cymlp_does_not_import_dask():
    import subprocess

    from _helpers import subprocess_env
    code = "import sys, cymlp; sys.exit('distributed' in sys.modules or 'dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=subprocess_env(), timeout=60).returncode == 0


def test_cli_trains_on_a_local_cluster(tmp_path):
    import re
    import subprocess

    from _helpers import subprocess_env
    result = subprocess.run([sys.executable, "-m", "cymlp", "train", "--workers", "2", "--threads", "1",
                             "--epochs", "8", "--no-progress"], cwd=tmp_path, env=subprocess_env(),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "a local Dask cluster of 2 worker process(es), 1 thread(s) each" in result.stdout
    assert len([line for line in result.stdout.splitlines() if line.startswith("epoch")]) == 8
    assert float(re.search(r"test accuracy (\d\.\d+)", result.stdout).group(1)) >= 0.95


def test_cli_rejects_conflicting_cluster_options(capsys):
    from cymlp import cli
    assert cli.main(["train", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 1
    assert "give one of them" in capsys.readouterr().err
    assert cli.main(["train", "--workers", "2", "--early-stopping"]) == 1


# ---------------------------------------------------------------- faults and conventions (issue 21, items 9, 10)


@contextlib.contextmanager
def _process_cluster(folder, n_workers=2):
    """A scheduler and workers as separate processes (``dask scheduler``/``dask worker``), on loopback.

    Yields ``(client, scheduler process)``: the scheduler can be killed, unlike a LocalCluster's.
    """
    scheduler_file = folder / "scheduler.json"
    env = subprocess_env()
    run = [sys.executable, "-m"]
    procs = [subprocess.Popen(run + ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                     "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        procs += [subprocess.Popen(run + ["distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
                                          "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(n_workers)]
        client = Client(scheduler_file=str(scheduler_file), timeout=60, set_as_default=False)
        try:
            client.wait_for_workers(n_workers, timeout=120)
            yield client, procs[0]
        finally:
            client.close(timeout=5)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)


def test_a_lost_scheduler_raises_scheduler_lost_at_once_and_keeps_the_last_average(digits, tmp_path):
    X_train, y_train, _, _ = digits
    net = _net()
    averages, killed = [], []
    with _process_cluster(tmp_path) as (client, scheduler):
        def kill_the_scheduler_after_epoch_3(history):
            averages.append(net.get_flat_params())
            if len(history) == 3:
                scheduler.kill()
                killed.append(time.monotonic())

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(SchedulerLost, match="lost the Dask scheduler at tcp://127.0.0.1") as info:
                fit_distributed(net, X_train, y_train, client=client, epochs=1000, batch_size=32, lr=0.1,
                                callbacks=[kill_the_scheduler_after_epoch_3])
        noticed_after = time.monotonic() - killed[0]
    assert isinstance(info.value, RuntimeError)                    # the documented type
    # within about 10 s: on main, Dask's 30 s reconnect time-out, then a raw CommClosedError
    assert noticed_after < 15, noticed_after
    np.testing.assert_array_equal(net.get_flat_params(), averages[-1])   # the last completed round's
    assert len(net.history_) == 3
    assert not [w for w in caught if "worker" in str(w.message)], [str(w.message) for w in caught]


def test_connect_names_an_unknown_host(capsys):
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="unknown host 'no-such-host.invalid'"):
        connect("tcp://no-such-host.invalid:8786")
    assert time.monotonic() - t0 < 10                             # never the connect time-out
    from cymlp import cli
    assert cli.main(["train", "--scheduler", "tcp://no-such-host.invalid:8786", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cymlp train: error: --scheduler") and "unknown host" in err
    assert len(err.strip().splitlines()) == 1


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connecting_honours_the_timeout_argument_and_dasks_configuration(capsys):
    import dask
    address = f"tcp://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="within 1 s \\(timeout"):
        connect(address, timeout=1)
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(TimeoutError, match="within 2 s \\(Dask's distributed.comm.timeouts.connect"):
            connect(address)
    assert time.monotonic() - t0 < 20                             # 30 s each before: hard-coded
    from cymlp import cli
    assert cli.main(["train", "--scheduler", address, "--timeout", "1", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "within 1 s" in err and len(err.strip().splitlines()) == 1
    for bad in ("0", "nan", "-1"):
        assert cli.main(["train", "--scheduler", address, "--timeout", bad]) == 2


def test_client_none_uses_the_default_client(digits, monkeypatch):
    X_train, y_train, _, _ = digits

    def no_local_cluster(*args, **kwargs):
        raise AssertionError("started a LocalCluster although a default client exists")
    monkeypatch.setattr(cd, "LocalCluster", no_local_cluster)
    with _cluster() as cluster, Client(cluster) as default:          # Client(...) is the default
        net = _net()
        fit_distributed(net, X_train, y_train, epochs=1, batch_size=32, lr=0.1)
        assert default.status == "running"                         # used, not closed
    assert len(net.history_) == 1
