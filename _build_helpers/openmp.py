"""Compiler flags and the OpenMP probe used by setup.py.

The probe compiles and links a tiny OpenMP program with the same compiler
object that builds the extension (so ``CC``, ``CFLAGS``, ``CPPFLAGS`` and,
for the link, ``LDFLAGS`` are honoured); it never runs the result, so it
works when cross-compiling (arm64 wheels on an x86_64 macOS runner).

Candidates, first that compiles and links wins:

- MSVC: ``/openmp`` (links vcomp automatically);
- GCC/clang: ``-fopenmp``;
- macOS (Apple clang has no ``-fopenmp`` driver flag): ``-Xpreprocessor
  -fopenmp`` + ``-lomp``, then the same with Homebrew's keg-only libomp
  include/lib folders added when they exist.

Not found is an error (setup.py stops the build with :func:`failure_message`)
unless ``CYMLP_NO_OPENMP=1`` asks for a serial build.
"""

import contextlib
import os
import shlex
import sys
import tempfile

PROBE_SOURCE = """\
#include <omp.h>
#ifndef _OPENMP
#error "_OPENMP is not defined: OpenMP is not enabled"
#endif
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 && omp_get_max_threads() > 0 ? 0 : 1;
}
"""

HOMEBREW_LIBOMP = ("/opt/homebrew/opt/libomp", "/usr/local/opt/libomp")

MACOS_RECIPE = """\
    brew install libomp
    export CC=/usr/bin/clang
    export CPPFLAGS="$CPPFLAGS -Xpreprocessor -fopenmp"
    export CFLAGS="$CFLAGS -I$(brew --prefix libomp)/include"
    export LDFLAGS="$LDFLAGS -Wl,-rpath,$(brew --prefix libomp)/lib -L$(brew --prefix libomp)/lib -lomp"
"""


def opted_out(environ=None):
    """True when ``CYMLP_NO_OPENMP`` asks for a serial build."""
    environ = os.environ if environ is None else environ
    return environ.get("CYMLP_NO_OPENMP", "0").strip() not in ("", "0")


def new_compiler():
    """A C compiler configured like build_ext's (CC, CFLAGS, CPPFLAGS, LDSHARED from the environment)."""
    from setuptools.command.build_ext import customize_compiler
    from setuptools.command.build_ext import new_compiler as _new

    compiler = _new()
    customize_compiler(compiler)
    return compiler


SANITIZERS = ["-fsanitize=address,undefined"]


def compile_flags(compiler_type, debug, sanitize=False):
    """Optimisation flags for the extension; GCC/clang-only flags never reach MSVC.

    MSVC (``cl.exe``, also clang-cl) takes ``/`` options only: no ``-O3``,
    ``-fno-math-errno``, ``-fno-trapping-math`` or ``-g0``.  Its debug build
    writes debug info into each object (``/Z7``): ``/Zi`` would make the
    extensions, compiled side by side (``build_ext --parallel``), write one
    shared ``vc140.pdb`` at once and fail with C1041.

    ``sanitize`` (GCC/clang; setup.py refuses it for MSVC): AddressSanitizer
    and UndefinedBehaviorSanitizer, with frame pointers and debug info for
    their reports; undefined behaviour stops the process as an out-of-bounds
    access does.
    """
    if compiler_type == "msvc":
        return ["/Od", "/Z7"] if debug else ["/O2", "/fp:precise"]
    if sanitize:
        return ["-O0" if debug else "-O1", "-g", "-fno-omit-frame-pointer",
                "-fno-sanitize-recover=undefined"] + SANITIZERS
    # -g0 drops debug info from release builds (2.3 MB of a 2.85 MB .so);
    # -fno-math-errno only stops libm from setting errno, -fno-trapping-math
    # lets selects be computed on both sides (clang's default; see setup.py);
    # -ffp-contract=off keeps a*b+c two roundings in every SIMD clone (cymlp/_simd.pxd).
    return (["-O0", "-g", "-ffp-contract=off"] if debug
            else ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-g0"])


def link_flags(compiler_type, debug, platform=None, sanitize=False):
    """Release builds on Linux are linked with debug sections stripped (GNU ld
    and lld only: Apple's ld64 has no ``--strip-debug``); MSVC's debug build
    keeps the objects' debug info (``/DEBUG``); sanitizer builds link the
    sanitizers' run-time libraries."""
    platform = sys.platform if platform is None else platform
    if compiler_type == "msvc":
        return ["/DEBUG"] if debug else []
    if sanitize:
        return list(SANITIZERS)
    if not debug and compiler_type == "unix" and platform.startswith("linux"):
        return ["-Wl,--strip-debug"]
    return []


def extension_flags(compiler_type, debug, openmp_flags, platform=None, sanitize=False):
    """(extra_compile_args, extra_link_args) of every extension: the
    optimisation (or sanitizer) flags for this compiler, then the OpenMP flags
    the probe found (``openmp_flags`` = (compile, link); empty lists for a
    serial build)."""
    omp_compile, omp_link = openmp_flags
    return (compile_flags(compiler_type, debug, sanitize) + list(omp_compile),
            link_flags(compiler_type, debug, platform, sanitize) + list(omp_link))


def without_build_rpaths(command, environ=None):
    """``command`` (the shared-library linker) minus run-time search paths that
    came from Python's own build (e.g. pyenv's ``-Wl,-rpath,<prefix>/lib`` in
    LDSHARED): an extension needs none, and a wheel must not carry build paths.
    Those the user asked for in ``LDFLAGS`` are kept."""
    environ = os.environ if environ is None else environ
    wanted = set(shlex.split(environ.get("LDFLAGS", "")))
    kept = []
    for part in command:
        if part.startswith(("-Wl,-rpath", "-Wl,-R", "-Wl,--enable-new-dtags")) and part not in wanted:
            continue
        kept.append(part)
    return kept


def candidates(compiler_type, platform=None):
    """(compile flags, link flags) pairs to try, in order."""
    platform = sys.platform if platform is None else platform
    if compiler_type == "msvc":
        return [(["/openmp"], [])]
    found = [(["-fopenmp"], ["-fopenmp"])]
    if platform == "darwin":
        found.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
        for prefix in HOMEBREW_LIBOMP:
            if os.path.isdir(os.path.join(prefix, "include")):
                found.append((["-Xpreprocessor", "-fopenmp", f"-I{prefix}/include"],
                              [f"-L{prefix}/lib", "-lomp"]))
    return found


class ProbeResult:
    """What the probe found: ``flags`` is (compile, link) or None; ``attempts`` is
    a list of (compile flags, link flags, commands run, compiler output, ok)."""

    def __init__(self, compiler, flags, attempts):
        self.compiler = compiler
        self.flags = flags
        self.attempts = attempts

    @property
    def found(self):
        return self.flags is not None


@contextlib.contextmanager
def _captured_output(path):
    """Send file descriptors 1 and 2 (the compiler's output) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "wb") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _try(compiler, cflags, lflags, ldflags_env, folder):
    """Compile and link the probe with one candidate; return (commands, output, ok)."""
    commands = []
    # recent setuptools runs commands through ``call``, older ones through ``spawn``
    runner = "call" if hasattr(compiler, "call") else "spawn"
    original = getattr(compiler, runner)

    def run(cmd, **kwargs):
        commands.append([str(part) for part in cmd])
        return original(cmd, **kwargs)

    log = os.path.join(folder, "probe.log")
    ok = False
    setattr(compiler, runner, run)
    cwd = os.getcwd()
    try:
        os.chdir(folder)
        with _captured_output(log):
            try:
                objects = compiler.compile(["probe.c"], output_dir="obj", extra_postargs=cflags)
                compiler.link_executable(objects, "probe", output_dir="bin",
                                         extra_preargs=ldflags_env, extra_postargs=lflags)
                ok = True
            except Exception:  # CompileError, LinkError, a missing compiler
                ok = False
    finally:
        os.chdir(cwd)
        delattr(compiler, runner)
    with open(log, "rb") as f:
        output = f.read().decode(errors="replace")
    return commands, output, ok


def probe_openmp(compiler=None, environ=None, platform=None):
    """Find the flags that compile and link an OpenMP program (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if compiler is None:
        compiler = new_compiler()
    # customize_compiler gives LDFLAGS to the shared-library linker only; the
    # probe links an executable, so it passes them itself (as build_ext would).
    ldflags_env = shlex.split(environ.get("LDFLAGS", "")) if compiler.compiler_type != "msvc" else []
    attempts = []
    with tempfile.TemporaryDirectory(prefix="cymlp-openmp-") as folder:
        with open(os.path.join(folder, "probe.c"), "w") as f:
            f.write(PROBE_SOURCE)
        for cflags, lflags in candidates(compiler.compiler_type, platform):
            commands, output, ok = _try(compiler, cflags, lflags, ldflags_env, folder)
            attempts.append((cflags, lflags, commands, output, ok))
            if ok:
                return ProbeResult(compiler, (cflags, lflags), attempts)
    return ProbeResult(compiler, None, attempts)


def describe_compiler(compiler):
    exe = getattr(compiler, "compiler_so", None) or getattr(compiler, "cc", None) or "?"
    if isinstance(exe, (list, tuple)):
        exe = exe[0] if exe else "?"
    return f"{exe} ({compiler.compiler_type})"


def failure_message(result):
    """The error that stops a build without OpenMP: what was tried and how to fix it."""
    lines = [
        "cymlp: OpenMP was not found, so the compiled path could only train on one thread.",
        f"Compiler: {describe_compiler(result.compiler)}",
        "Tried (compile + link a small OpenMP program; CC, CFLAGS, CPPFLAGS and LDFLAGS are used):",
    ]
    for cflags, lflags, _commands, output, _ok in result.attempts:
        lines.append(f"  compile {' '.join(cflags)} / link {' '.join(lflags)}:")
        tail = [line for line in output.strip().splitlines() if line.strip()][-4:]
        lines.extend("      " + line for line in (tail or ["(no compiler output; is the compiler installed?)"]))
    lines += [
        "How to fix:",
        "  Linux:   install GCC (libgomp comes with it), e.g. apt install gcc, or clang with",
        "           libomp (apt install libomp-dev).",
        "  macOS:   Apple clang needs Homebrew's libomp:",
        *("  " + line for line in MACOS_RECIPE.rstrip().splitlines()),
        "  Windows: build with MSVC (Visual Studio Build Tools), which has /openmp.",
        "Or build without threads on purpose: CYMLP_NO_OPENMP=1 pip install ...",
        "(show_config() then says 'serial build').",
    ]
    return "\n".join(lines)
