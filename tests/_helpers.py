"""Helpers shared by the tests: import them with ``from _helpers import ...``.

Fixtures live in ``conftest.py``; everything else a test module needs from
another is here: which backends run, the data makers, the trainer maker, and
the subprocess tools (``subprocess_env``, ``read_line_until``, the Ctrl-C child).
"""

import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import cymlp

BACKENDS = cymlp.available_backends()
HAS_COMPILED = "cython" in BACKENDS
# for modules and tests that need the compiled path; an unbuilt tree skips them (importorskip
# on cymlp._cython_backend errors instead: the module exists, its extension does not)
requires_compiled = pytest.mark.skipif(not HAS_COMPILED, reason="the compiled path is not built")


def skip_module_unless_compiled():
    """At the top of a test module that needs the compiled path: skip it all on an unbuilt tree."""
    if not HAS_COMPILED:
        pytest.skip("the compiled path is not built", allow_module_level=True)


def random_data(n, n_features, n_outputs, *, targets="labels", seed=0):
    """``(X, y)``: standard-normal inputs (n, n_features) and targets for them.

    ``targets``: ``"labels"`` (integers 0..n_outputs-1), ``"multilabel"``
    (2-D 0/1 floats), ``"regression"`` (2-D standard normal), ``"counts"``
    (2-D Poisson draws of mean 1.5, zeros included, as floats), or the name
    of an output activation (softmax: labels, sigmoid: multilabel,
    identity: regression, exp: counts).
    """
    targets = {"softmax": "labels", "sigmoid": "multilabel", "identity": "regression",
               "exp": "counts"}.get(targets, targets)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    if targets == "regression":
        y = rng.standard_normal((n, n_outputs))
    elif targets == "multilabel":
        y = (rng.random((n, n_outputs)) > 0.5).astype(float)
    elif targets == "labels":
        y = rng.integers(0, n_outputs, n)
    elif targets == "counts":
        y = rng.poisson(1.5, (n, n_outputs)).astype(float)
    else:
        raise ValueError(targets)
    return X, y


# every (hidden activation, output, loss) the networks accept: the parity and gradient tests' grid
COMBOS = [(act, out, loss) for act in cymlp.reference.HIDDEN_ACTIVATIONS
          for loss, outputs in cymlp.reference.OUTPUTS_OF_LOSS.items() for out in outputs]


def split_step_threads(net, batch_size):
    """How many threads a split-mode step of ``batch_size`` rows of ``net`` runs on, as it fits now."""
    from cymlp import _kernels_split
    from cymlp._cython_backend import plan_for
    return _kernels_split.threads_for_step(plan_for(net._spec), batch_size, net.effective_n_threads)


def make_trainer(net, X, Y, labels, batch_size, optimizer=None, *, state=None, **options):
    """The trainer ``fit`` would make for ``net`` (its buffer, backend and thread settings).

    ``options``: fields of :class:`cymlp._backends.TrainerOptions` to set
    (``parallel``, ``average_every``, ``dropout``, ...).
    """
    from cymlp._backends import TrainerOptions
    from cymlp._training import make_trainer as backend_trainer
    from cymlp.training_state import OptimizerConfig
    base = TrainerOptions(batch_size=batch_size, optimizer=optimizer or OptimizerConfig(),
                          n_threads=net.effective_n_threads, adaptive=net.n_threads is None,
                          mode=net.compiled_mode)
    return backend_trainer(net._training_view(), X, Y, labels, dataclasses.replace(base, **options),
                           state=state)


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


def call_within(call, limit_s, blocked, release_fifos=()):
    """Run ``call()`` in a daemon thread: ``{"result": value}`` or ``{"error": exception}``.

    If it still runs after ``limit_s`` seconds, the write end of each FIFO in
    ``release_fifos`` is opened (a reader blocked on it then sees end of file) and the
    test fails with the message ``blocked``: a regression that blocks on a FIFO fails
    the test instead of hanging the suite (a blocked writer is left behind, a daemon).
    """
    outcome = {}

    def target():
        try:
            outcome["result"] = call()
        except BaseException as exc:             # handed to the test
            outcome["error"] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        for fifo in release_fifos:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))   # a reader waits: opens at once
        if release_fifos:
            thread.join(limit_s)
        pytest.fail(blocked)
    return outcome


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
