"""Shared test helpers."""

import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import cymlp

# A subprocess must import the same cymlp as the tests: the installed package
# in CI (a fresh checkout has no compiled extension), the in-place build during
# development.  Put its parent first on PYTHONPATH and run the child outside
# the checkout, since ``python -m`` puts the working directory first on sys.path.
CYMLP_PARENT = str(Path(cymlp.__file__).resolve().parents[1])


def subprocess_env(**extra):
    """``os.environ`` plus ``extra``, with PYTHONPATH leading to the tested cymlp."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (CYMLP_PARENT, os.environ.get("PYTHONPATH")) if p)
    return env


@pytest.fixture
def child_env():
    return subprocess_env()


@pytest.fixture(autouse=True, scope="session")
def no_internet_downloads(tmp_path_factory):
    """Tests never reach the internet, nor the user's download cache: a
    Fashion-MNIST download that a test did not point at its own server goes to
    a closed port on this machine (refused at once), and the cache folder is a
    fresh temporary one.  Subprocesses inherit both through the environment."""
    import socket

    with socket.socket() as probe:          # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CYMLP_FASHION_MNIST_URL", f"http://127.0.0.1:{closed_port}/no-downloads-in-tests/")
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(autouse=True, scope="session")
def split_tiny_networks():
    """Split mode's steps run on as many threads as asked even for the tests' tiny
    networks, whose steps are far below the work per thread a real fit needs
    before it splits (cymlp/_kernels_split.pyx): the threaded code is what we test."""
    try:
        from cymlp import _kernels_split
    except ImportError:          # no compiled path
        yield
        return
    old = _kernels_split._set_split_min_flops(1)
    yield
    _kernels_split._set_split_min_flops(old)


def read_line_until(proc, marker, timeout):
    """Lines from proc.stdout until one starting with ``marker``; fail after ``timeout`` s."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith(marker):
                return line
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"no line starting with {marker!r} within {timeout} s; "
                f"stdout={''.join(seen) + out!r} stderr={err!r}")


SIGINT_CHILD = textwrap.dedent("""
    import json, signal, sys, time
    import numpy as np
    import cymlp

    backend, parallel = sys.argv[1], sys.argv[2]
    every = None if sys.argv[3] == "none" else sys.argv[3]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 32)).astype(np.float32)
    y = rng.integers(0, 10, 4000)
    net = cymlp.Network([32, 128, 10], backend=backend, n_threads=2, seed=0)
    initial = net.get_flat_params()
    announced = False

    def progress(epoch, done, n_batches):
        global announced
        if epoch >= 1 and not announced:      # one full epoch is in the history
            announced = True
            print("TRAINING", flush=True)

    try:
        net.fit(X, y, epochs=10**6, batch_size=16, lr=0.01, progress=progress, parallel=parallel,
                average_every=every)
        print("FINISHED", flush=True)
    except KeyboardInterrupt:
        caught = time.time()
        params = net.get_flat_params()
        print("INTERRUPTED " + json.dumps(dict(
            caught=caught,
            finite=bool(np.isfinite(params).all()),
            changed=bool((params != initial).any()),
            epochs=len(net.history_),
            interrupted=net.history_.interrupted,
            handler_restored=signal.getsignal(signal.SIGINT) is signal.default_int_handler,
            predicts=bool(np.isfinite(net.predict_proba(X[:5])).all()),
        )), flush=True)
""")


def interrupt_training_child(folder, backend, parallel="sync", average_every="none", *, env):
    """Train in a child process (see SIGINT_CHILD), send it SIGINT mid-training; return
    ``(report, seconds from the signal to the report's 'caught')``, the report with the
    child's exit status added as ``returncode``."""
    script = Path(folder) / "sigint_child.py"
    script.write_text(SIGINT_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), backend, parallel, str(average_every)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=folder)
    try:
        read_line_until(proc, "TRAINING", timeout=60)
        time.sleep(0.3)                       # land in the middle of an epoch
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        line = read_line_until(proc, "INTERRUPTED", timeout=15)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    report = json.loads(line.split(" ", 1)[1])
    report["returncode"] = proc.returncode
    return report, report["caught"] - sent
