"""scikit-learn's own MLP tests, run against cymlp.sklearn.

The installed scikit-learn's ``sklearn/neural_network/tests/test_mlp.py`` is
read from where ``sklearn`` lives, its one import line of the estimators is
changed to ``from cymlp.sklearn import MLPClassifier, MLPRegressor`` (nothing
else), and the result runs with pytest in a subprocess from a temporary
folder, with scikit-learn's ``conftest`` as a plugin for its fixtures
(``global_random_seed``).  No scikit-learn test code is kept in this
repository.  Every test must pass (or skip, e.g. without pandas) except
those in :data:`PRIVATE`, which read scikit-learn's private attributes.
"""

import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _helpers import subprocess_env

sklearn = pytest.importorskip("sklearn")

IMPORT_LINE = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
OURS = "from cymlp.sklearn import MLPClassifier, MLPRegressor"

# the tests that cannot pass against any other implementation, and why
PRIVATE = {
    "test_gradient": "calls MLPClassifier._loss_grad_lbfgs(theta, X, Y, None, activations, "
                     "deltas, coef_grads, intercept_grads), scikit-learn's private objective "
                     "with its per-layer buffers (cymlp's is Network.objective, checked against "
                     "finite differences in tests/test_objective.py)",
    "test_learning_rate_warmstart": "reads _optimizer.learning_rate, the private optimizer "
                                    "object of scikit-learn's stochastic solvers",
    "test_adaptive_learning_rate": "reads _optimizer.learning_rate (as above)",
}


def outcomes(junit_xml):
    """``{test id: "passed" | "failed" | "skipped"}`` from a pytest JUnit XML report."""
    results = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        results[case.get("name")] = ("failed" if kinds & {"failure", "error"} else
                                     "skipped" if "skipped" in kinds else "passed")
    return results


@pytest.mark.slow
def test_sklearns_mlp_tests_pass_except_those_reading_private_attributes(tmp_path):
    source = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
    if not source.is_file():
        pytest.skip(f"this scikit-learn ({sklearn.__version__}) was installed without its "
                    f"tests: no {source}")
    text = source.read_text(encoding="utf8")
    if text.count(IMPORT_LINE) != 1:
        pytest.skip(f"scikit-learn {sklearn.__version__}'s test_mlp.py does not import the "
                    f"estimators with the one line {IMPORT_LINE!r}")
    target = tmp_path / "test_mlp_cymlp.py"
    target.write_text(text.replace(IMPORT_LINE, OURS), encoding="utf8")
    report = tmp_path / "report.xml"
    command = [sys.executable, "-m", "pytest", str(target), "-q", "-p", "no:cacheprovider",
               f"--junitxml={report}", "--rootdir", str(tmp_path)]
    if importlib.util.find_spec("sklearn.conftest") is not None:
        command[4:4] = ["-p", "sklearn.conftest"]        # its fixtures (global_random_seed)
    proc = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=900)
    assert report.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = outcomes(report)
    failed = {name for name, outcome in results.items() if outcome == "failed"}
    assert {name.partition("[")[0] for name in failed} == set(PRIVATE), proc.stdout[-6000:]
    # the others passed, or skipped for an optional package (pandas: 2 tests of 1.9.1's 59)
    passed = sum(outcome == "passed" for outcome in results.values())
    skipped = sum(outcome == "skipped" for outcome in results.values())
    assert passed + skipped + len(failed) == len(results) and skipped <= 2
    assert passed >= 50, proc.stdout[-3000:]
