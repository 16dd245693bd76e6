"""Every code block in README.md and docs/*.md runs, and the tutorial's numbers hold.

A fenced block is found by its info string:

- ``python``: run.  The blocks of one file run in order, in one namespace, in a
  temporary working directory; a block that needs a missing optional package
  (matplotlib, scikit-learn, dask) is skipped and the file's test says so.
  They also run as the user would run them: saved as one script file and run
  with ``python FILE`` in a fresh process (slow), which exercises the
  ``if __name__ == "__main__":`` guard of examples that start processes.
- ``bash``: every ``cymlp ...`` command must parse with the real command-line
  parser, and every ``python FILE ...`` must name a file of the repository
  (running them would take minutes; tutorial_numbers.py is run below instead).
- ``python notest`` / ``bash notest``: not run; the prose says why.
- anything else (``text``, no info string): not code.
"""

import contextlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import HAS_COMPILED, subprocess_env

import cymlp
import cymlp.reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOC_FILES = [ROOT / "README.md"] + sorted(DOCS.glob("*.md"))
OPTIONAL = ("matplotlib", "sklearn", "dask", "distributed", "torch", "onnx", "onnxruntime", "skl2onnx")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n"
                   r"(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL)


def code_blocks(path):
    """``(info_words, body, line_number)`` for every fenced block of ``path``."""
    text = path.read_text(encoding="utf-8")
    for m in FENCE.finditer(text):
        yield m["info"].split(), m["body"], text.count("\n", 0, m.start()) + 1


def _needs_missing_package(body):
    if not HAS_COMPILED and re.search(r"[\"'](hogwild|average)[\"']|backend=[\"']cython|_kernels", body):
        return "the compiled path"
    for name in OPTIONAL:
        uses = re.search(rf"^\s*(import|from)\s+{name}\b", body, re.MULTILINE)
        if name == "matplotlib" and re.search(r"\.plot\(", body):
            uses = True
        if uses and importlib.util.find_spec(name) is None:
            return name
    return None


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["doc-block"])
    namespace = {"__name__": "__doc_block__"}
    ran, skipped = 0, []
    for info, body, line in code_blocks(path):
        if not info or info[0] != "python" or "notest" in info[1:]:
            continue
        missing = _needs_missing_package(body)
        if missing:
            skipped.append(f"line {line} needs {missing}")
            continue
        code = compile(body, f"{path.name}:{line}", "exec")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(code, namespace)
        except NameError:
            if not skipped:
                raise
            skipped.append(f"line {line} uses a skipped block's names")   # blocks build on each other
            continue
        ran += 1
    if skipped:
        pytest.skip(f"ran {ran} block(s); skipped {', '.join(skipped)}")


@pytest.mark.slow
@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run_as_a_script(path, tmp_path):
    """The page's python blocks, saved as one script file and run with ``python FILE``.

    As a user would run them: in a fresh process, with ``__name__ == "__main__"``, from a
    file that worker processes (Dask's, multiprocessing's) import again, so an example
    that starts processes without the ``if __name__ == "__main__":`` guard fails here.
    """
    blocks = [(line, body) for info, body, line in code_blocks(path)
              if info and info[0] == "python" and "notest" not in info[1:]]
    if not blocks:
        pytest.skip("no python blocks")
    missing = [f"line {line} needs {need}" for line, body in blocks if (need := _needs_missing_package(body))]
    if missing:
        pytest.skip(f"cannot run the page as one script: {', '.join(missing)}")
    script = tmp_path / f"{path.stem.replace('-', '_')}_blocks.py"
    script.write_text("".join(f"# ---- {path.name}, line {line}\n{body}\n" for line, body in blocks),
                      encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=subprocess_env(MPLBACKEND="Agg"),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{script.name} failed:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def _commands(body):
    """The command lines of a bash block, continuation lines joined, comments dropped."""
    joined = body.replace("\\\n", " ")
    for raw in joined.splitlines():
        line = raw.split(" #")[0].strip()
        if line and not line.startswith("#"):
            for part in re.split(r"\s*(?:&&|;|\|\|)\s*", line):
                yield part.strip()


def _strip_env(words):
    """``env -u NAME VAR=value cmd ...`` -> ``cmd ...``."""
    if words[:1] == ["env"]:
        words = words[1:]
        while words and (words[0] == "-u" or "=" in words[0]):
            words = words[2:] if words[0] == "-u" else words[1:]
    return words


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_bash_commands_are_valid(path):
    from cymlp.cli import build_parser

    for info, body, line in code_blocks(path):
        if not info or info[0] not in ("bash", "sh", "console") or "notest" in info[1:]:
            continue
        for command in _commands(body):
            words = shlex.split(command)
            words = _strip_env(words)
            if words[:3] == ["python", "-m", "cymlp"]:
                words = ["cymlp"] + words[3:]
            if words and words[0] == "cymlp":
                try:
                    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                        build_parser().parse_args(words[1:])
                except SystemExit as exc:
                    pytest.fail(f"{path.name}:{line}: `{command}` does not parse (exit {exc.code})")
            elif words and words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
                assert (ROOT / words[1]).is_file(), f"{path.name}:{line}: {words[1]} does not exist"
                if words[1] == "docs/tutorial_numbers.py":
                    steps = _tutorial_numbers().STEPS
                    assert all(w in steps or w == "all" for w in words[2:]), command


def test_doc_blocks_are_found():
    """The collector sees the blocks it should (a broken regex would pass every test above)."""
    infos = [info[0] for info, _, _ in code_blocks(DOCS / "tutorial.md") if info]
    assert infos.count("python") >= 8 and "bash" in infos and "text" in infos


def test_tutorial_learner_block_is_the_file():
    """The loop printed in the tutorial is docs/learner_loop.py, word for word."""
    bodies = [body for info, body, _ in code_blocks(DOCS / "tutorial.md")
              if info[:1] == ["python"] and body.startswith("# docs/learner_loop.py")]
    assert bodies == [(DOCS / "learner_loop.py").read_text(encoding="utf-8")]


def test_tutorial_quotes_reference_lines_verbatim():
    """Step 2's ``text`` block quotes cymlp/reference.py line by line."""
    reference_lines = {line.strip() for line in Path(cymlp.reference.__file__).read_text().splitlines()}
    quoted = [body for info, body, _ in code_blocks(DOCS / "tutorial.md") if info[:1] == ["text"]]
    lines = [line.strip() for line in quoted[0].splitlines() if line.strip()]
    assert {"BP1", "BP2", "BP3", "BP4"} <= {w for line in lines for w in line.split()}
    missing = [line for line in lines if line not in reference_lines]
    assert not missing, f"tutorial step 2 quotes lines that are not in reference.py: {missing}"


def _tutorial_numbers():
    spec = importlib.util.spec_from_file_location("tutorial_numbers", DOCS / "tutorial_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step1_catches_both_bugs():
    numbers = _tutorial_numbers().step1(verbose=False)
    *hidden, last = numbers["buggy"]
    assert last == pytest.approx(1.0, abs=1e-9)          # the doubled gradient, exactly 2×
    assert max(hidden) < 1e-12                            # only the last layer is wrong
    assert max(numbers["fixed"]) < 1e-12 and numbers["fixed_bias"] < 1e-12
    assert numbers["gradcheck"] < 1e-5
    assert numbers["rows_used"] == (64, 200)              # the loop silently used 64 rows
    assert "y has 64 rows but X has 200" in numbers["label_error"]


def test_step2_counts():
    numbers = _tutorial_numbers().step2(verbose=False)
    # 1000-900-900-900-10, batch 100: 2·100·(forward + weight gradients + deltas)
    products = 1000 * 900 + 900 * 900 + 900 * 900 + 900 * 10
    assert numbers["flops"] == 2 * 100 * (2 * products + products - 1000 * 900)
    assert 80 < numbers["intensity_ratio"] < 150
    assert numbers["gemm_gflops"] > 0 and numbers["gemv_gflops"] > 0   # timings: not asserted


def test_step6_early_stopping_and_divergence():
    numbers = _tutorial_numbers().step6(verbose=False)
    assert numbers["best_epoch"] is not None and numbers["epochs_run"] < 60
    assert numbers["test_accuracy"] > 0.9
    runs = numbers["by_lr"]
    assert not runs[0.5]["diverged"] and runs[0.5]["loss"][-1] < runs[0.5]["loss"][0]
    assert runs[5.0]["diverged"] and "training diverged" in runs[5.0]["message"]


@pytest.mark.slow
def test_make_figures_writes_pngs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.learning_curves(tmp_path / "curves.png")
    monkeypatch.setattr(module, "load_fashion_mnist", _no_fashion_mnist)   # digits: seconds
    module.confusion(tmp_path / "confusion.png", epochs=1)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def _no_fashion_mnist(*args, **kwargs):
    raise FileNotFoundError("not in this test")


def test_docs_cite_nothing_users_cannot_see():
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8").lower()
        for phrase in ("project's notes", "project notes", "our notes", "/work/"):
            assert phrase not in text, f"{path.name} mentions {phrase!r}"
        for target in re.findall(r"\]\(([^)#\s]+)", path.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            # a link into cymlp/ may be checked against the installed package (CI tests the wheel)
            in_package = target[target.index("cymlp/"):] if "cymlp/" in target else target
            installed = Path(cymlp.__file__).parent.parent / in_package
            assert (path.parent / target).exists() or installed.exists(), \
                f"{path.name} links to missing {target}"
