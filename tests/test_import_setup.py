"""What ``import cymlp`` sets up (issue 21, items 11 and 12), each checked in a fresh process.

- **threadpoolctl works from import**: ``import cymlp`` loads the compiled
  path's OpenMP runtime (a tiny extension, not the kernels), so a
  ``threadpool_limits(1)`` block entered after the import and before the
  first network limits the threads cymlp uses (``Network`` and
  ``cymlp.sklearn``); ``OMP_NUM_THREADS`` keeps working.
- **No silent fallback**: a source tree whose compiled extension is missing or
  older than its sources warns once, with the build command, when a network
  chooses its backend by default; an explicit ``backend="numpy"`` and an
  installed package (no ``setup.py`` beside it) never warn.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers import CYMLP_PARENT, HAS_COMPILED, subprocess_env

import cymlp
from cymlp import _build_check, _threads

pytestmark = pytest.mark.slow          # fresh processes

SPY = """
import json, sys
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
assert not [i for i in threadpool_info() if i["user_api"] == "openmp"], "OpenMP loaded before cymlp"
import cymlp
import cymlp._training as training
used = []                                    # the thread count each fit's trainer was made with
make_trainer = training.make_trainer
def spy(view, X, Y, labels, options, **kwargs):
    used.append(options.n_threads)
    return make_trainer(view, X, Y, labels, options, **kwargs)
training.make_trainer = spy
X = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
y = np.arange(300) % 3
"""


def run_child(code, env=None):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                            env=env or subprocess_env(), cwd=os.path.dirname(CYMLP_PARENT))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _env_without_thread_settings(**extra):
    env = subprocess_env(**extra)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if name not in extra:
            env.pop(name, None)
    return env


needs_two_cores = pytest.mark.skipif(not HAS_COMPILED or _threads.affinity_cores() < 2,
                                     reason="needs the compiled path and 2 usable cores")


@needs_two_cores
def test_a_threadpool_limits_block_after_import_limits_cymlps_openmp():
    report = run_child(SPY + """
with threadpool_limits(1):
    net = cymlp.Network([8, 16, 3], seed=0)          # the usual pattern: the first network in the block
    net.fit(X, y, epochs=1, batch_size=32)
    inside = net.effective_n_threads
    omp = [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "openmp"]
net.fit(X, y, epochs=1, batch_size=32)
print(json.dumps(dict(used=used, inside=inside, omp=omp, after=net.effective_n_threads)))
""", env=_env_without_thread_settings())
    assert report["omp"], "cymlp's OpenMP runtime was not loaded by `import cymlp`"
    assert all(n == 1 for _, n in report["omp"]), report
    assert report["inside"] == 1 and report["used"][0] == 1, report      # on main: 2 (every core)
    assert report["after"] == report["used"][1] == _threads.affinity_cores(), report


@needs_two_cores
def test_cymlp_sklearn_follows_the_limit_too():
    pytest.importorskip("sklearn")
    report = run_child(SPY + """
from cymlp.sklearn import MLPClassifier
with threadpool_limits(1):
    MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0).fit(X, y)
print(json.dumps(dict(used=used)))
""", env=_env_without_thread_settings())
    assert report["used"] and set(report["used"]) == {1}, report


@needs_two_cores
def test_omp_num_threads_keeps_working():
    report = run_child(SPY + """
net = cymlp.Network([8, 16, 3], seed=0)
net.fit(X, y, epochs=1, batch_size=32)
print(json.dumps(dict(used=used)))
""", env=_env_without_thread_settings(OMP_NUM_THREADS="1"))
    assert report["used"] == [1], report


def test_the_runtime_extension_loads_openmp_without_the_kernels():
    if not HAS_COMPILED:
        pytest.skip("the compiled path is not built")
    report = run_child("""
import json, sys
import cymlp
print(json.dumps(dict(runtime="cymlp._openmp_runtime" in sys.modules, kernels="cymlp._kernels" in sys.modules,
                      scipy="scipy.linalg" in sys.modules)))
""")
    assert report == {"runtime": True, "kernels": False, "scipy": False}


# ---------------------------------------------------------------- no silent fallback


WARNINGS_CHILD = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import cymlp
    {make}
print(json.dumps([f"{{w.category.__name__}}: {{w.message}}" for w in caught]))
"""


SOURCES = Path(cymlp.__file__).resolve().parent
if not any(SOURCES.glob("*.pyx")):                     # an installed wheel: the sources beside the tests
    SOURCES = Path(__file__).resolve().parents[1] / "cymlp"
needs_sources = pytest.mark.skipif(not any(SOURCES.glob("*.pyx")),
                                   reason="needs the .pyx sources (a source tree next to the tests)")


def copy_tree(folder, *, with_extensions, with_setup_py):
    """A copy of the tested package in ``folder/src`` (a source tree when it has setup.py)."""
    source = Path(cymlp.__file__).resolve().parent
    ignore = ["__pycache__", "*.c"] + ([] if with_extensions else ["*.so", "*.pyd"])
    shutil.copytree(source, folder / "src" / "cymlp", ignore=shutil.ignore_patterns(*ignore))
    if source != SOURCES:                              # an installed wheel: add the sources it lacks
        for pyx in SOURCES.glob("*.p[yx][xd]"):
            shutil.copy(pyx, folder / "src" / "cymlp")
    if with_setup_py:
        (folder / "src" / "setup.py").write_text("# the source tree's setup.py\n")
    return folder / "src"


def warnings_in(tree, make="cymlp.Network([2, 3, 2])"):
    env = dict(subprocess_env(), PYTHONPATH=str(tree))
    return run_child(WARNINGS_CHILD.format(make=make), env=env)


@needs_sources
def test_an_unbuilt_source_tree_warns_with_the_build_command(tmp_path):
    tree = copy_tree(tmp_path, with_extensions=False, with_setup_py=True)
    caught = warnings_in(tree, "cymlp.Network([2, 3, 2]); cymlp.Network([2, 3, 2])")
    assert len(caught) == 1, caught                                   # once per process
    assert caught[0].startswith("UnbuiltExtensionWarning") and "not built" in caught[0]
    assert "python setup.py build_ext --inplace" in caught[0] and str(tree) in caught[0]
    assert warnings_in(tree, "cymlp.Network([2, 3, 2], backend='numpy')") == []
    assert warnings_in(tree, "cymlp.Network.load") == []              # importing alone is silent


def test_an_installed_package_never_warns(tmp_path):
    tree = copy_tree(tmp_path, with_extensions=False, with_setup_py=False)
    assert warnings_in(tree) == []


@needs_sources
@pytest.mark.skipif(not HAS_COMPILED, reason="the compiled path is not built")
def test_a_stale_build_warns_and_a_fresh_one_does_not(tmp_path):
    tree = copy_tree(tmp_path, with_extensions=True, with_setup_py=True)
    now = time.time()
    for so in (tree / "cymlp").glob("*.so"):
        os.utime(so, (now, now))
    for source in (tree / "cymlp").glob("*.p[yx][xd]"):
        os.utime(source, (now - 60, now - 60))
    assert warnings_in(tree) == []
    os.utime(tree / "cymlp" / "_kernels.pyx", (now + 60, now + 60))      # edited after the build
    caught = warnings_in(tree)
    assert len(caught) == 1 and "older than its sources (_kernels.pyx" in caught[0], caught


def test_the_tested_cymlp_is_built_from_its_sources():
    """The suite's own cymlp: an installed wheel (never a problem) or a fresh in-place build."""
    assert _build_check.source_tree_problem() is None or not HAS_COMPILED


def test_a_header_counts_only_for_the_extensions_that_cimport_it(tmp_path):
    """Cython rebuilds what cimports a changed .pxd, and only that: the check reads the same graph."""
    package = tmp_path / "cymlp"
    package.mkdir()
    (tmp_path / "setup.py").write_text("")
    (package / "_a.pyx").write_text("from ._shared cimport f\n")
    (package / "_b.pyx").write_text("from libc.math cimport exp\n")
    (package / "_shared.pxd").write_text("from cymlp._deep cimport g\n")
    (package / "_deep.pxd").write_text("")
    suffix = _build_check._EXTENSION_SUFFIXES[0]
    now = time.time()
    for name in ("_a.pyx", "_b.pyx", "_shared.pxd", "_deep.pxd"):
        os.utime(package / name, (now - 60, now - 60))
    for stem in ("_a", "_b"):
        (package / (stem + suffix)).write_text("")
        os.utime(package / (stem + suffix), (now, now))
    assert _build_check.source_tree_problem(str(package)) is None
    os.utime(package / "_deep.pxd", (now + 60, now + 60))           # two cimports away from _a only
    problem = _build_check.source_tree_problem(str(package))
    assert problem is not None and "(_a.pyx changed" in problem and "_b.pyx" not in problem
