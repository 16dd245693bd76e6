"""The build: OpenMP probe (flags honoured, never runs a binary, loud failure,
opt-out), per-compiler flags, and setup.py's refusal to build a pure-Python cymlp.

These need the source tree (setup.py, _build_helpers/) and a build
environment (Cython, setuptools >= 77); they skip without them, e.g. when the
suite runs against an installed wheel.
"""

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if not (ROOT / "_build_helpers" / "openmp.py").exists() or not (ROOT / "setup.py").exists():
    pytest.skip("needs the source tree (setup.py, _build_helpers/)", allow_module_level=True)
pytest.importorskip("Cython", reason="needs a build environment (Cython)")
setuptools = pytest.importorskip("setuptools", reason="needs a build environment (setuptools)")
if int(setuptools.__version__.split(".")[0]) < 77:
    pytest.skip("needs setuptools >= 77 (pyproject.toml's SPDX license)", allow_module_level=True)

sys.path.insert(0, str(ROOT))
from _build_helpers import openmp

REAL_CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(REAL_CC is None or sys.platform == "win32",
                              reason="needs a Unix C compiler (cc)")

BUILD_ENV = ("CC", "CFLAGS", "CPPFLAGS", "LDFLAGS", "LDSHARED", "CYMLP_NO_OPENMP", "CYMLP_DEBUG_CYTHON",
             "CYMLP_SANITIZE")


@pytest.fixture(autouse=True)
def clean_build_env(monkeypatch):
    for name in BUILD_ENV:
        monkeypatch.delenv(name, raising=False)


def fake_cc(folder, body):
    """An executable "compiler": logs its arguments (one JSON list a line) to
    folder/cc.log, then runs ``body`` (Python, with ``args`` and ``real``)."""
    script = Path(folder) / "fake-cc"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, subprocess, sys
        args = sys.argv[1:]
        real = {REAL_CC!r}
        with open({str(Path(folder) / "cc.log")!r}, "a") as log:
            log.write(json.dumps(args) + "\\n")
        """) + textwrap.dedent(body))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def logged_commands(folder):
    import json
    path = Path(folder) / "cc.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@needs_cc
def test_probe_finds_openmp_with_this_compiler():
    result = openmp.probe_openmp()
    assert result.found, openmp.failure_message(result)
    cflags, lflags = result.flags
    assert any("openmp" in flag for flag in cflags)


@needs_cc
def test_probe_uses_cc_cflags_cppflags_and_ldflags(tmp_path, monkeypatch):
    cc = fake_cc(tmp_path, "sys.exit(subprocess.call([real] + args))\n")
    monkeypatch.setenv("CC", cc)
    monkeypatch.setenv("CFLAGS", "-DCYMLP_FROM_CFLAGS")
    monkeypatch.setenv("CPPFLAGS", "-DCYMLP_FROM_CPPFLAGS")
    monkeypatch.setenv("LDFLAGS", f"-L{tmp_path}/from-ldflags")
    result = openmp.probe_openmp()
    assert result.found, openmp.failure_message(result)
    commands = logged_commands(tmp_path)
    compiles = [c for c in commands if "-c" in c]
    links = [c for c in commands if "-c" not in c]
    assert compiles and links, commands
    assert "-DCYMLP_FROM_CFLAGS" in compiles[0] and "-DCYMLP_FROM_CPPFLAGS" in compiles[0]
    assert f"-L{tmp_path}/from-ldflags" in links[0]


@needs_cc
def test_probe_succeeds_only_with_the_users_flags_and_never_runs_the_program(tmp_path, monkeypatch):
    # like Apple clang + keg-only libomp: the header and the library are only
    # found through CPPFLAGS / LDFLAGS.  The "linked program" is a script that
    # would leave a marker if the probe ran it.
    marker = tmp_path / "probe-was-run"
    cc = fake_cc(tmp_path, f"""\
        if "-c" in args:
            sys.exit(0 if "-DOMP_HEADER_FOUND" in args else 1)
        if "-Lomp-lib-found" not in args:
            sys.exit(1)
        out = args[args.index("-o") + 1]
        with open(out, "w") as f:
            f.write("#!/bin/sh\\ntouch {marker}\\n")
        os.chmod(out, 0o755)
        """)
    monkeypatch.setenv("CC", cc)
    assert not openmp.probe_openmp().found
    monkeypatch.setenv("CPPFLAGS", "-DOMP_HEADER_FOUND")
    assert not openmp.probe_openmp().found
    monkeypatch.setenv("LDFLAGS", "-Lomp-lib-found")
    assert openmp.probe_openmp().found
    assert not marker.exists()


@needs_cc
def test_probe_failure_message_says_what_was_tried_and_how_to_fix(tmp_path, monkeypatch):
    cc = fake_cc(tmp_path, """\
        if any("openmp" in a for a in args):
            print("clang: error: unsupported option '-fopenmp'", file=sys.stderr)
            sys.exit(1)
        sys.exit(subprocess.call([real] + args))
        """)
    monkeypatch.setenv("CC", cc)
    result = openmp.probe_openmp(platform="darwin")
    assert not result.found
    message = openmp.failure_message(result)
    assert "unsupported option '-fopenmp'" in message
    assert "-Xpreprocessor -fopenmp" in message     # tried, and in the macOS recipe
    assert "brew install libomp" in message and "CYMLP_NO_OPENMP=1" in message


def test_msvc_gets_msvc_flags_only():
    for debug in (False, True):
        flags = openmp.compile_flags("msvc", debug) + openmp.link_flags("msvc", debug, "win32")
        assert flags and all(f.startswith("/") for f in flags), flags
    assert "/O2" in openmp.compile_flags("msvc", False)
    assert openmp.candidates("msvc", "win32") == [(["/openmp"], [])]
    assert "-O3" in openmp.compile_flags("unix", False) and "-g0" in openmp.compile_flags("unix", False)


def test_sanitizer_builds_get_asan_and_ubsan_with_debug_info_and_are_not_stripped():
    for debug in (False, True):
        flags = openmp.compile_flags("unix", debug, sanitize=True)
        assert "-fsanitize=address,undefined" in flags and "-g" in flags
        assert "-fno-omit-frame-pointer" in flags and "-g0" not in flags
        assert openmp.link_flags("unix", debug, "linux", sanitize=True) == ["-fsanitize=address,undefined"]
    assert "-fsanitize=address,undefined" not in openmp.compile_flags("msvc", False, sanitize=True)
    compile_args, link_args = openmp.extension_flags("unix", False, (["-fopenmp"], ["-fopenmp"]), "linux",
                                                     sanitize=True)
    assert compile_args[-1] == "-fopenmp" and "-fsanitize=address,undefined" in compile_args
    assert link_args == ["-fsanitize=address,undefined", "-fopenmp"]
    assert "-fsanitize=address,undefined" not in openmp.extension_flags("unix", False, ([], []), "linux")[0]


def test_release_links_strip_debug_info_on_linux_only():
    assert openmp.link_flags("unix", False, "linux") == ["-Wl,--strip-debug"]
    assert openmp.link_flags("unix", True, "linux") == []
    assert openmp.link_flags("unix", False, "darwin") == []


def test_apple_clang_candidates():
    flags = openmp.candidates("unix", "darwin")
    assert (["-Xpreprocessor", "-fopenmp"], ["-lomp"]) in flags
    assert openmp.candidates("unix", "linux") == [(["-fopenmp"], ["-fopenmp"])]


def test_build_rpaths_dropped_user_rpaths_kept():
    linker = ["gcc", "-shared", "-L/py/lib", "-Wl,-rpath,/py/lib", "-Wl,-rpath,/mine"]
    assert openmp.without_build_rpaths(linker, {"LDFLAGS": "-Wl,-rpath,/mine"}) == [
        "gcc", "-shared", "-L/py/lib", "-Wl,-rpath,/mine"]


def test_opt_out_values():
    assert openmp.opted_out({"CYMLP_NO_OPENMP": "1"})
    assert not openmp.opted_out({"CYMLP_NO_OPENMP": "0"})
    assert not openmp.opted_out({})


def run_setup(args, cwd=ROOT, timeout=600, **env):
    return subprocess.run([sys.executable, "setup.py", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **env))


@pytest.mark.slow
@needs_cc
def test_build_without_openmp_fails_loudly(tmp_path):
    cc = fake_cc(tmp_path, """\
        if any("openmp" in a for a in args):
            sys.exit(1)
        sys.exit(subprocess.call([real] + args))
        """)
    proc = run_setup(["build_ext", "--build-lib", str(tmp_path / "lib"), "--build-temp", str(tmp_path / "tmp")],
                     CC=cc)
    assert proc.returncode != 0
    assert "OpenMP was not found" in proc.stderr and "CYMLP_NO_OPENMP=1" in proc.stderr
    assert not list((tmp_path / "lib").rglob("*.so"))


@pytest.mark.slow
def test_build_without_cython_fails_loudly(tmp_path):
    (tmp_path / "Cython.py").write_text("raise ImportError('hidden by the test')\n")
    proc = run_setup(["build_ext", "--build-lib", str(tmp_path / "lib"), "--build-temp", str(tmp_path / "tmp")],
                     PYTHONPATH=str(tmp_path))
    assert proc.returncode != 0
    assert "needs Cython" in proc.stderr


def copy_source_tree(dest, with_pyx=True):
    ignore = shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__", *(() if with_pyx else ("*.pyx",)))
    shutil.copytree(ROOT / "cymlp", dest / "cymlp", ignore=ignore)
    shutil.copytree(ROOT / "_build_helpers", dest / "_build_helpers", ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, dest / name)


@pytest.mark.slow
def test_source_tree_without_pyx_fails_loudly(tmp_path):
    copy_source_tree(tmp_path, with_pyx=False)
    proc = run_setup(["build_ext"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "no cymlp/*.pyx found" in proc.stderr


@pytest.mark.slow
@needs_cc
def test_opt_out_builds_serially_and_show_config_says_so(tmp_path):
    copy_source_tree(tmp_path)
    # the debug build compiles fastest (-O0)
    proc = run_setup(["build_ext", "--inplace"], cwd=tmp_path, CYMLP_NO_OPENMP="1", CYMLP_DEBUG_CYTHON="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "WITHOUT OpenMP" in proc.stdout
    child = subprocess.run(
        [sys.executable, "-c", "import cymlp, cymlp._install_info as c; i = c.config_info(); "
         "print(cymlp.__file__, i['openmp'], 'cython' in i['backends']); cymlp.show_config()"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert child.returncode == 0, child.stderr
    first, rest = child.stdout.split("\n", 1)
    assert first == f"{tmp_path / 'cymlp' / '__init__.py'} False True"
    assert "serial build" in rest and "CYMLP_NO_OPENMP=1" in rest
