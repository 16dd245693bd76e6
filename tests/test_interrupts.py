"""Ctrl-C, fork and spawn, each in a subprocess with a timeout so a hang fails.

Every test runs on every backend that is built (``cymlp.available_backends()``).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _helpers import BACKENDS, interrupt_training_child, subprocess_env

import cymlp

POSIX = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals and fork")

ENV = subprocess_env(PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")


@pytest.mark.slow
@POSIX
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_stops_fit_quickly_and_keeps_weights_and_history(backend, tmp_path):
    report, took = interrupt_training_child(tmp_path, backend, env=ENV)
    assert took < 1.5, f"took {took:.2f} s to return"
    assert report["finite"] and report["changed"] and report["predicts"]
    assert report["epochs"] >= 1 and report["interrupted"]
    assert report["handler_restored"]
    assert report["returncode"] == 0


def test_fit_restores_the_sigint_handler():
    import signal as sig
    before = sig.getsignal(sig.SIGINT)
    net = cymlp.Network([3, 4, 2], backend=BACKENDS[-1])
    net.fit(np.eye(3), [0, 1, 0], epochs=2)
    with pytest.raises(ValueError):
        net.fit(np.eye(3), [0, 1, 5])
    assert sig.getsignal(sig.SIGINT) is before


FORK_CHILD = textwrap.dedent("""
    import json, multiprocessing as mp, sys
    import numpy as np
    import cymlp
    from cymlp import _threads

    def data():
        rng = np.random.default_rng(0)
        X = rng.standard_normal((3000, 32)).astype(np.float32)
        return X, (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)

    def work(queue, backend, theta):
        X, y = data()
        net = cymlp.Network([32, 64, 4], backend=backend, n_threads=4, seed=0)
        net.set_flat_params(theta)
        net.fit(X, y, epochs=2, batch_size=32)
        queue.put(dict(forked=_threads.in_forked_child(), threads_none=_threads.effective_n_threads(None),
                       threads_4=net.effective_n_threads, score=float(net.score(X, y)),
                       params=net.get_flat_params().tolist()))

    if __name__ == "__main__":
        method, backend = sys.argv[1], sys.argv[2]
        X, y = data()
        parent = cymlp.Network([32, 64, 4], backend=backend, n_threads=4, seed=0)
        parent.fit(X, y, epochs=2, batch_size=32)      # the parent has run OpenMP regions
        theta = parent.get_flat_params()
        ctx = mp.get_context(method)
        queue = ctx.Queue()
        procs = [ctx.Process(target=work, args=(queue, backend, theta)) for _ in range(2)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        # the parent keeps its threads and still works after forking
        here = cymlp.Network([32, 64, 4], backend=backend, n_threads=4, seed=0)
        here.set_flat_params(theta)
        here.fit(X, y, epochs=2, batch_size=32)
        print("RESULT " + json.dumps(dict(
            children=[{k: r[k] for k in ("forked", "threads_none", "threads_4", "score")} for r in results],
            exitcodes=[p.exitcode for p in procs],
            parent_threads=here.effective_n_threads,
            same_as_parent=[bool(np.allclose(r["params"], here.get_flat_params(), rtol=1e-4, atol=1e-5))
                            for r in results])), flush=True)
""")


def _run_multiprocessing_child(tmp_path, method, backend):
    script = tmp_path / "mp_child.py"
    script.write_text(FORK_CHILD)
    try:
        proc = subprocess.run([sys.executable, str(script), method, backend], capture_output=True,
                              text=True, timeout=120, env=ENV)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{method} child hung (killed after 120 s); stderr={exc.stderr!r}")
    assert proc.returncode == 0, proc.stderr
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert line, proc.stdout + proc.stderr
    return json.loads(line[0].split(" ", 1)[1])


@pytest.mark.slow
@POSIX
@pytest.mark.parametrize("backend", BACKENDS)
def test_fork_after_training_does_not_hang_and_runs_children_serially(backend, tmp_path):
    result = _run_multiprocessing_child(tmp_path, "fork", backend)
    assert result["exitcodes"] == [0, 0]
    for child in result["children"]:
        assert child["forked"]
        assert child["threads_none"] == 1 and child["threads_4"] == 1
        assert child["score"] > 0.5
    assert result["parent_threads"] == 4
    assert all(result["same_as_parent"])            # serial child == parallel parent (sync is deterministic)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_spawn_children_keep_their_threads(backend, tmp_path):
    result = _run_multiprocessing_child(tmp_path, "spawn", backend)
    assert result["exitcodes"] == [0, 0]
    for child in result["children"]:
        assert not child["forked"] and child["threads_4"] == 4
        assert child["score"] > 0.5
    assert all(result["same_as_parent"])


# Issue 11, case 9: Ctrl-C during validation stops between chunks of rows, not
# after the whole validation pass.  The signal is sent from inside the
# evaluation of the first chunk (in-process, so the test needs no timing).
@pytest.mark.slow
@POSIX
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_during_validation_stops_after_the_current_chunk(backend, monkeypatch):
    import signal as _signal

    from cymlp import _training
    monkeypatch.setattr(_training, "EVAL_CHUNK_ROWS", 50)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((200, 4)), rng.integers(0, 3, 200)
    X_val, y_val = rng.standard_normal((1000, 4)), rng.integers(0, 3, 1000)   # 20 chunks
    net = cymlp.Network([4, 8, 3], backend=backend, seed=0)
    real = net._backend.loss_and_output
    chunks = []

    class Spy:
        def __getattr__(self, name):
            return getattr(net._backend_real, name)

        def loss_and_output(self, *args):
            chunks.append(args[2].shape[0])
            os.kill(os.getpid(), _signal.SIGINT)     # Ctrl-C while validating
            return real(*args)
    net._backend_real = net._backend
    net._backend = Spy()
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=5, validation_data=(X_val, y_val))
    assert len(chunks) == 1
    assert net.history_.interrupted and len(net.history_) == 1
    assert net.history_.val_loss[0] is None       # the pass was cut short: no partial loss
