"""Shared test helpers."""

import json
import os
import selectors
import signal
import subprocess
import sys
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


def interrupt_training_child(script, *args, env):
    """Run ``script`` (which prints TRAINING, then INTERRUPTED <json> after Ctrl-C), send it
    SIGINT mid-training; return ``(report, seconds from the signal to the report's 'caught')``,
    the report with the child's exit status added as ``returncode``."""
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=Path(script).parent)
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
