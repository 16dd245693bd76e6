"""The flags setup.py hands each compiler, checked without that compiler.

The wheels are built with GCC (Linux), Apple clang (macOS) and MSVC
(Windows), but this suite mostly runs on Linux.  So setup.py's own
``build_ext`` command is run here against a stand-in compiler object of each
type (``compiler_type`` is all the flag choice looks at), with the OpenMP
probe and Cython replaced, and the flags it would pass are checked against
what that compiler accepts: ``cl.exe`` takes only ``/`` options (no ``-O3``,
``-fno-trapping-math``, ``-fopenmp``), Apple clang has no ``-fopenmp`` driver
flag (``-Xpreprocessor -fopenmp`` + ``-lomp``) and Apple's linker has no
``--strip-debug``.
"""

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if not (ROOT / "_build_helpers" / "openmp.py").exists() or not (ROOT / "setup.py").exists():
    pytest.skip("needs the source tree (setup.py, _build_helpers/)", allow_module_level=True)
pytest.importorskip("Cython", reason="needs a build environment (Cython)")
setuptools = pytest.importorskip("setuptools", reason="needs a build environment (setuptools)")

sys.path.insert(0, str(ROOT))
from _build_helpers import openmp

GCC_ONLY = ("-O3", "-O0", "-g", "-g0", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-fopenmp",
            "-Wl,--strip-debug", "-lomp")


class FakeCompiler:
    """Just enough of a setuptools compiler object for build_ext and the probe."""

    def __init__(self, compiler_type):
        self.compiler_type = compiler_type
        self.calls = []

    def spawn(self, cmd, **kwargs):
        self.calls.append(("spawn", list(cmd)))

    def compile(self, sources, output_dir=None, extra_postargs=None, **kwargs):
        self.calls.append(("compile", list(extra_postargs or [])))
        return ["probe.obj"]

    def link_executable(self, objects, name, output_dir=None, extra_preargs=None, extra_postargs=None, **kw):
        self.calls.append(("link", list(extra_preargs or []), list(extra_postargs or [])))


def flags_setup_py_passes(monkeypatch, compiler_type, platform, debug, sanitize=False):
    """Run setup.py's build_ext.build_extensions with a stand-in compiler of
    ``compiler_type`` on ``platform``; return {extension name: (compile, link)}."""
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.setenv("CYMLP_DEBUG_CYTHON", "1" if debug else "0")
    monkeypatch.setenv("CYMLP_SANITIZE", "1" if sanitize else "0")
    monkeypatch.delenv("CYMLP_NO_OPENMP", raising=False)
    runpy.run_path(str(ROOT / "setup.py"), run_name="setup_under_test")
    build_ext_class = captured["cmdclass"]["build_ext"]

    # what the probe would find with this compiler on this platform: its first candidate
    # (for Apple clang the second: it rejects plain -fopenmp)
    options = openmp.candidates(compiler_type, platform)
    chosen = options[1] if (platform == "darwin" and compiler_type == "unix") else options[0]
    monkeypatch.setattr(openmp, "probe_openmp",
                        lambda compiler: openmp.ProbeResult(compiler, chosen, []))
    import Cython.Build
    monkeypatch.setattr(Cython.Build, "cythonize", lambda extensions, **kwargs: extensions)
    built = {}
    monkeypatch.setattr(setuptools.command.build_ext.build_ext, "build_extensions",
                        lambda self: built.update({e.name: (e.extra_compile_args, e.extra_link_args)
                                                   for e in self.extensions}))
    monkeypatch.setattr(sys, "platform", platform)

    command = build_ext_class(setuptools.Distribution({"name": "cymlp", "ext_modules": captured["ext_modules"]}))
    command.extensions = captured["ext_modules"]
    command.compiler = FakeCompiler(compiler_type)
    command.build_extensions()
    monkeypatch.undo()
    assert set(built) == {e.name for e in captured["ext_modules"]}
    assert len({tuple(map(tuple, flags)) for flags in built.values()}) == 1, "extensions got different flags"
    return next(iter(built.values()))


@pytest.mark.parametrize("debug", [False, True], ids=["release", "debug"])
def test_msvc_gets_only_msvc_options(monkeypatch, debug):
    compile_args, link_args = flags_setup_py_passes(monkeypatch, "msvc", "win32", debug)
    assert all(flag.startswith("/") for flag in compile_args + link_args), (compile_args, link_args)
    assert not set(GCC_ONLY) & set(compile_args + link_args)
    assert "/openmp" in compile_args                # vcomp is linked by cl.exe itself
    if debug:
        assert "/Od" in compile_args and "/Z7" in compile_args and "/DEBUG" in link_args
        assert "/Zi" not in compile_args            # one shared .pdb for parallel compiles: C1041
    else:
        assert "/O2" in compile_args and "/Od" not in compile_args


@pytest.mark.parametrize("debug", [False, True], ids=["release", "debug"])
def test_apple_clang_gets_preprocessor_openmp_and_libomp(monkeypatch, debug):
    compile_args, link_args = flags_setup_py_passes(monkeypatch, "unix", "darwin", debug)
    assert not any(flag.startswith("/") for flag in compile_args + link_args)
    i = compile_args.index("-fopenmp")
    assert compile_args[i - 1] == "-Xpreprocessor", compile_args   # never a bare -fopenmp
    assert compile_args.count("-fopenmp") == 1
    assert "-lomp" in link_args and "-fopenmp" not in link_args
    assert "-Wl,--strip-debug" not in link_args       # ld64 has no --strip-debug
    assert ("-O0" in compile_args) == debug and ("-O3" in compile_args) == (not debug)


@pytest.mark.parametrize("debug", [False, True], ids=["release", "debug"])
def test_gcc_on_linux_gets_fopenmp_and_strips_release_debug_info(monkeypatch, debug):
    compile_args, link_args = flags_setup_py_passes(monkeypatch, "unix", "linux", debug)
    assert "-fopenmp" in compile_args and "-fopenmp" in link_args
    assert ("-Wl,--strip-debug" in link_args) == (not debug)
    if not debug:
        assert {"-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-g0"} <= set(compile_args)
    for forbidden in ("-march=native", "-ffast-math", "-Ofast"):
        assert forbidden not in compile_args           # wheels run on any CPU, NaN checks stay


def test_gcc_sanitizer_build_gets_asan_ubsan_debug_info_and_openmp(monkeypatch):
    compile_args, link_args = flags_setup_py_passes(monkeypatch, "unix", "linux", False, sanitize=True)
    assert "-fsanitize=address,undefined" in compile_args and "-fsanitize=address,undefined" in link_args
    assert {"-g", "-fno-omit-frame-pointer", "-fopenmp"} <= set(compile_args)
    assert "-g0" not in compile_args and "-Wl,--strip-debug" not in link_args


def test_msvc_sanitizer_build_is_refused_with_a_message(monkeypatch):
    with pytest.raises(SystemExit, match="CYMLP_SANITIZE=1 needs GCC or clang"):
        flags_setup_py_passes(monkeypatch, "msvc", "win32", False, sanitize=True)


def test_mingw_gcc_on_windows_gets_gcc_options(monkeypatch):
    compile_args, link_args = flags_setup_py_passes(monkeypatch, "mingw32", "win32", False)
    assert "-fopenmp" in compile_args and "-O3" in compile_args
    assert not any(flag.startswith("/") for flag in compile_args + link_args)
    assert "-Wl,--strip-debug" not in link_args


def test_msvc_probe_compiles_with_openmp_and_links_without_ldflags(monkeypatch):
    """The probe with cl.exe: ``/openmp`` at compile time, and LDFLAGS (a Unix
    convention, GCC syntax) never handed to link.exe."""
    monkeypatch.setenv("LDFLAGS", "-L/opt/lib -lomp")
    compiler = FakeCompiler("msvc")
    result = openmp.probe_openmp(compiler, platform="win32")
    assert result.found and result.flags == (["/openmp"], [])
    compile_call = [c for c in compiler.calls if c[0] == "compile"]
    link_call = [c for c in compiler.calls if c[0] == "link"]
    assert compile_call == [("compile", ["/openmp"])]
    assert link_call == [("link", [], [])]


def test_unix_probe_hands_ldflags_to_the_link(monkeypatch):
    monkeypatch.setenv("LDFLAGS", "-L/opt/libomp/lib")
    compiler = FakeCompiler("unix")
    result = openmp.probe_openmp(compiler, platform="linux")
    assert result.flags == (["-fopenmp"], ["-fopenmp"])
    assert ("link", ["-L/opt/libomp/lib"], ["-fopenmp"]) in compiler.calls


def test_extension_flags_put_openmp_after_optimisation():
    compile_args, link_args = openmp.extension_flags("unix", False, (["-fopenmp"], ["-fopenmp"]), "linux")
    assert compile_args[-1] == "-fopenmp" and link_args == ["-Wl,--strip-debug", "-fopenmp"]
    assert openmp.extension_flags("msvc", False, ([], []), "win32") == (["/O2", "/fp:precise"], [])
