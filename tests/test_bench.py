"""Smoke tests of ``cymlp bench``: it runs, and reports every installed implementation.

No timing thresholds: only that each figure is there, positive and finite.
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from _helpers import subprocess_env

from cymlp import bench


def _installed():
    return [name for name, impl in bench.IMPLEMENTATIONS.items()
            if impl.unavailable() is None and impl.supports(bench.CASES["tiny"])]


@pytest.fixture(scope="module")
def quick_tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    proc = subprocess.run(
        [sys.executable, "-m", "cymlp.bench", "--quick", "--case", "tiny", "--threads", "1",
         "--seconds", "0.05", "--json", str(out)],
        cwd=out.parent, env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        return proc.stdout, json.load(f)


@pytest.mark.slow                  # runs `cymlp bench` in a child process
def test_quick_tiny_table_lists_every_installed_implementation(quick_tiny):
    stdout, _ = quick_tiny
    table = [line for line in stdout.splitlines() if line.startswith("| ")]
    impls = {line.split("|")[1].strip().rstrip(" †") for line in table[1:]}
    assert set(_installed()) <= impls


@pytest.mark.slow                  # runs `cymlp bench` in a child process
def test_quick_tiny_json_has_positive_finite_figures(quick_tiny):
    _, payload = quick_tiny
    rows = payload["results"]
    assert {r["impl"] for r in rows} == set(_installed())
    assert not payload["failures"]
    for r in rows:
        for key in ("step_seconds", "epoch_seconds", "examples_per_second", "gflops",
                    "roofline_fraction", "speedup_vs_loop", "speedup_vs_numpy"):
            assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] > 0, (r["impl"], key)
        assert r["case"] == "tiny" and r["dtype"] == "float32" and r["threads"] == 1
    assert payload["machine"]["threadpools"]
    assert "OPENBLAS_CORETYPE" in payload["machine"]["openblas_overrides_set"]


def test_flop_count_formula():
    case = bench.Case("t", (4, 3, 2), "relu", "softmax", "cross_entropy", 5, 10)
    # forward 12 + 6, weight gradient 12 + 6, delta into the hidden layer 6 (none into the inputs)
    assert case.macs_per_example == 42
    assert case.flops_per_example == 84
    assert sum(2 * m * k * n for _, m, k, n in case.gemm_shapes()) == 84 * 5


@pytest.mark.parametrize("activation,output,loss", [("sigmoid", "sigmoid", "quadratic"),
                                                     ("relu", "softmax", "cross_entropy"),
                                                     ("tanh", "softmax", "quadratic")])
def test_loop_takes_the_reference_sgd_step(activation, output, loss):
    """The per-example loop (the benchmark baseline) computes the same step as the batched path;
    in particular the last layer's gradient is counted once, unlike the original question's code."""
    from cymlp import reference
    case = bench.Case("t", (6, 5, 4, 3), activation, output, loss, 4, 8, lr=0.5)
    problem = bench.make_problem(case, "float64")
    rows = np.array([3, 0, 5, 2])
    gw, gb, _, _ = reference.backprop(problem.weights, problem.biases, activation, output, loss,
                                      problem.X[rows], problem.Y[rows])
    loop = bench.PerExampleLoop(problem)
    loop.step(rows)
    for l in range(len(gw)):
        np.testing.assert_allclose(loop.weights[l], problem.weights[l] - case.lr * gw[l], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(loop.biases[l].ravel(), problem.biases[l] - case.lr * gb[l],
                                   rtol=1e-10, atol=1e-12)


def test_bench_is_a_cymlp_subcommand():
    cli = pytest.importorskip("cymlp.cli")
    args = cli.build_parser().parse_args(["bench", "--quick", "--case", "tiny", "--threads", "1,2"])
    assert args.quick and args.case == ["tiny"] and args.threads == [1, 2]
    assert callable(args.func)


# --------------------------------------------------------------------------
# The timing harness and cymlp bench --fit
# --------------------------------------------------------------------------

def test_harness_warms_up_then_interleaves_and_drops_a_failing_runner():
    from cymlp.bench.measure import interleaved
    calls, errors = [], []

    def runner(name, fail=False):
        def run():
            calls.append(name)
            if fail:
                raise RuntimeError("broken")
            return 1.0 if name == "a" else None       # None: the harness times the call
        return run, (lambda: calls.append(f"warm {name}"))

    times = interleaved({"a": runner("a"), "b": runner("b"), "c": runner("c", fail=True)}, repeats=2,
                        settle_seconds=0, on_error=lambda name, exc: errors.append(name))
    assert calls == ["warm a", "warm b", "warm c", "a", "b", "c", "a", "b"]
    assert times["a"] == [1.0, 1.0] and len(times["b"]) == 2 and "c" not in times
    assert errors == ["c"]


def _fit_installed():
    from cymlp.bench import fit_cases
    return {name for name in fit_cases.FIT_IMPLEMENTATIONS if fit_cases.unavailable(name) is None} - {"default"}


@pytest.fixture(scope="module")
def fit_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "fit.json"
    proc = subprocess.run(
        [sys.executable, "-m", "cymlp", "bench", "--fit", "--cases", "digits,seed", "--rows", "200",
         "--epochs", "1", "--repeats", "1", "--threads", "1", "--dtypes", "float32", "--settle", "0",
         "--json", str(out)],
        cwd=out.parent, env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        return proc.stdout, json.load(f)


@pytest.mark.slow                  # runs `cymlp bench` in a child process
def test_fit_smoke_times_every_installed_implementation_against_the_floor(fit_smoke):
    stdout, payload = fit_smoke
    assert "| dtype | threads | GEMM floor | cymlp |" in stdout
    assert not payload["failures"]
    for case in ("digits", "seed"):
        rows = [r for r in payload["results"] if r["case"] == case]
        assert {r["impl"] for r in rows} == {"floor"} | _fit_installed(), case
        for r in rows:
            for key in ("epoch_seconds", "step_seconds", "floor_ratio"):
                assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] > 0, (case, r["impl"], key)
            assert r["dtype"] == "float32" and r["threads"] == 1 and r["repeats"] == 1
        # each implementation in a process of its own, none of them the orchestrator
        pids = [r["pid"] for r in rows]
        assert len(set(pids)) == len(pids) and payload["machine"] and os.getpid() not in pids
        assert all(isinstance(r["threadpools"], list) for r in rows)
        assert all(r["min_seconds"] <= r["epoch_seconds"] <= r["max_seconds"] for r in rows)
    digits = {r["impl"]: r for r in payload["results"] if r["case"] == "digits"}
    assert 0.0 <= digits["numpy"]["test_accuracy"] <= 1.0
    assert digits["floor"]["steps_per_epoch"] == 13             # 200 rows in batches of 16: 12 full + 1
    assert payload["machine"]["threadpools"] and payload["epochs"] == 1


def test_bench_help_says_each_default_once():
    from cymlp.bench import command
    parser = argparse.ArgumentParser(formatter_class=command.HelpFormatter)
    command.add_arguments(parser)
    help_text = parser.format_help()
    entries = re.split(r"\n  (?=-)", help_text.split("options:", 1)[1])     # one per option
    assert len(entries) > 20
    for entry in entries:
        assert ") (default:" not in " ".join(entry.split()), entry       # was "(default: all) (default: None)"
    assert "(default: None)" not in help_text and "(default: False)" not in help_text
    assert "(default: relu)" in help_text           # added where the help did not say it


def _cell(seconds, floor_ratio=1.0, steps=100):
    return {"epoch_seconds": seconds, "floor_ratio": floor_ratio, "step_seconds": seconds / steps}


def test_fit_goal_names_every_miss_and_met_when_none():
    from cymlp.bench.fit_cases import FIT_CASES
    from cymlp.bench.fit_report import goal
    case = FIT_CASES["fmnist-100-adam"]         # 1.15x the floor, 2.5x scikit-learn
    good = {"floor": _cell(1.0), "cython": _cell(1.1, 1.1), "numpy": _cell(2.0), "sklearn": _cell(3.0),
            "torch": _cell(1.5), "default": _cell(1.12)}
    assert goal(case, good, best_explicit=1.1) == "met"
    bad = dict(good, cython=_cell(1.3, 1.3), torch=_cell(1.2), default=_cell(1.5))
    text = goal(case, bad, best_explicit=1.3)
    assert "1.30× floor > 1.15" in text and "not faster than torch" in text
    assert "2.31× scikit-learn < 2.5×" in text and "default 1.15× best explicit" in text
    digits = FIT_CASES["digits"]                 # a goal per step
    assert goal(digits, {"cython": _cell(7e-4, steps=100)}) == "7 µs/step > 6"


def test_fit_skips_fashion_mnist_cleanly_when_absent(monkeypatch, capsys):
    import argparse

    from cymlp import datasets
    from cymlp.bench import fit, fit_cases

    def missing(*args, **kwargs):
        raise FileNotFoundError("no Fashion-MNIST here")
    monkeypatch.setattr(datasets, "load_fashion_mnist", missing)
    fit_cases._fashion_mnist.cache_clear()
    args = argparse.Namespace(cases=["nielsen"], quick=True, dtype=None, threads=[1], epochs=1, repeats=1,
                              rows=100, impl=["numpy"], settle=0, json=None, plot=None, argv=[])
    payload = fit.run(args)
    assert payload["results"] == [] and "nielsen" in payload["skipped"]
    assert "Not measured: nielsen" in capsys.readouterr().out


@pytest.mark.slow
def test_kernel_ab_times_every_compiled_mode_for_two_builds():
    """benchmarks/kernel_ab.py (A/B timing of two kernel builds) runs and reports each case."""
    import os

    from _helpers import CYMLP_PARENT
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks", "kernel_ab.py")
    proc = subprocess.run([sys.executable, script, CYMLP_PARENT, CYMLP_PARENT, "--turns", "1",
                           "--epochs", "1", "--rows", "256", "--threads", "2"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[2:]}
    assert set(rows) == {"chunked", "batch", "split", "chunked+dropout", "hogwild", "average"}
    for a, b, ratio, *fastest in rows.values():
        assert float(a) > 0 and float(b) > 0 and math.isfinite(float(ratio)) and len(fastest) == 3


def _benchmark_script(name):
    import os
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", name)


@pytest.mark.slow
def test_fit_ab_times_one_row_for_each_tree_and_prefix():
    """benchmarks/fit_ab.py (one bench --fit row for several builds) runs and reports each tree."""
    from _helpers import CYMLP_PARENT
    proc = subprocess.run([sys.executable, _benchmark_script("fit_ab.py"), "digits", "float32", "1",
                           "--rows", "64", "--repeats", "2", CYMLP_PARENT, f"floor:2@{CYMLP_PARENT}",
                           f"default:none@{CYMLP_PARENT}"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()[1:]
    assert [line.split()[:2] for line in lines] == [["cython", "1"], ["floor", "2"], ["default", "default"]]
    assert lines[0].endswith("1.000x the first")
    for line in lines:
        assert float(line.split(": ")[1].split()[0]) > 0


@pytest.mark.slow
def test_step_gemms_by_blas_times_each_library_in_its_own_process():
    proc = subprocess.run([sys.executable, _benchmark_script("step_gemms_by_blas.py"), "digits", "float64", "1",
                           "--libs", "numpy", "--rounds", "2", "--steps", "2", "--samples", "2"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("numpy  digits float64 1 threads") for line in lines)


def test_two_class_softmax_skips_scikit_learn_instead_of_failing(tmp_path, capsys):
    """Issue 21, item 15: scikit-learn's MLPClassifier has one logistic output for two classes."""
    from cymlp import cli
    pytest.importorskip("sklearn")
    out = tmp_path / "b.json"
    assert cli.main(["bench", "--sizes", "4,4,2", "--impl", "numpy,sklearn", "--dtype", "float64",
                     "--threads", "1", "--seconds", "0.02", "--no-roofline", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert not payload["failures"], payload["failures"]
    assert "sklearn:custom (case not supported)" in capsys.readouterr().out
    assert cli.main(["bench", "--sizes", "4,4,3", "--impl", "sklearn", "--dtype", "float64",
                     "--threads", "1", "--seconds", "0.02", "--no-roofline", "--json", str(out)]) == 0
    assert [r["impl"] for r in json.loads(out.read_text())["results"]] == ["sklearn"]


@pytest.mark.parametrize("batch", ["0", "-3", "x"])
def test_a_batch_size_below_one_is_a_usage_error(batch, capsys):
    from cymlp import cli
    assert cli.main(["bench", "--sizes", "4,4,2", "--batch-size", batch]) == 2
    assert "--batch-size" in capsys.readouterr().err


def _benchmark_script(name):
    import os
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", name)


@pytest.mark.slow
def test_partial_fit_overhead_times_both_libraries(tmp_path):
    """benchmarks/partial_fit_overhead.py runs each library in its own process and reports both."""
    pytest.importorskip("sklearn")
    proc = subprocess.run([sys.executable, _benchmark_script("partial_fit_overhead.py"), "--rounds", "1",
                           "--calls", "5"], env=subprocess_env(), capture_output=True, text=True,
                          timeout=300, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| cymlp") or
            line.startswith("| sklearn")]
    assert len(rows) == 2 and all(float(row.split("|")[2]) > 0 for row in rows)
    assert "CPU:" in proc.stdout and "threadpoolctl:" in proc.stdout


@pytest.mark.slow
def test_sparse_benchmark_builds_a_tfidf_and_times_both_libraries(tmp_path):
    """benchmarks/sparse_vs_sklearn.py on a small TF-IDF (20 files a package), one epoch."""
    pytest.importorskip("sklearn")
    proc = subprocess.run([sys.executable, _benchmark_script("sparse_vs_sklearn.py"), "--rounds", "1",
                           "--epochs", "1", "--files-per-package", "20", "--cache",
                           str(tmp_path / "tfidf.npz")], env=subprocess_env(), capture_output=True,
                          text=True, timeout=300, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| cymlp") or
            line.startswith("| sklearn")]
    assert len(rows) == 2 and all(float(row.split("|")[2]) > 0 for row in rows)
    assert "stored values" in proc.stdout and (tmp_path / "tfidf.npz").is_file()
