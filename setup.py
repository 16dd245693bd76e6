"""Build the compiled path: one extension per .pyx in cymlp/ (the .pxd files are shared headers).

- OpenMP is probed by compiling and linking (never running) a tiny program with
  the compiler that builds the extension, honouring CC, CFLAGS, CPPFLAGS and
  LDFLAGS (``_build_helpers/openmp.py``).  Not found stops the build with a
  message saying how to get it; ``CYMLP_NO_OPENMP=1`` builds serially on
  purpose, and ``show_config()`` then says "serial build".
- ``CYMLP_DEBUG_CYTHON=1`` builds with bounds checks, wraparound and
  initialized checks on, unoptimised and with debug info (CI runs the test
  suite once in that mode).
- ``CYMLP_SANITIZE=1`` (GCC or clang) builds the extensions with
  AddressSanitizer and UndefinedBehaviorSanitizer (``-fsanitize=address,undefined
  -fno-omit-frame-pointer``, ``-O1 -g``), which check the pointer arithmetic
  the bounds-checked build cannot see.  Python itself is not instrumented, so
  run it with the ASan runtime preloaded and leak checks off, e.g.
  ``LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0
  python -m pytest tests/test_compiled.py`` (CI's memory-safety section);
  build with ``build_ext --inplace --force`` when switching builds.
- Release builds: no debug info (``-g0``; on Linux also ``-Wl,--strip-debug``),
  no run-time search path inherited from Python's build (pyenv adds one),
  no ``-march=native`` and no ``-ffast-math``: wheels must run on any x86-64
  and NaN checks must keep working.  ``-fno-math-errno`` only stops libm calls
  from setting ``errno`` (results are unchanged), which lets GCC vectorise
  ``sqrt`` in the Adam update (0.92 -> 0.55 s per Fashion-MNIST epoch,
  784-256-128-10, float32, batch 128, 2 threads).  ``-fno-trapping-math`` (clang's
  default) says no floating-point exception traps: results are unchanged, but GCC
  may then evaluate both sides of a select, which vectorises the exponentials
  of ``cymlp/_vmath.pxd`` and the sigmoid/softmax loops around them.
  ``-ffp-contract=off`` keeps ``a*b + c`` two roundings even where the CPU has
  fused multiply-adds, so the AVX2/AVX-512 clones of the elementwise passes
  (``cymlp/_simd.pxd``) give the baseline's results.  MSVC gets ``/O2 /fp:precise``.
- The .pyx files are cythonized when the extension is built (not for an sdist);
  the build fails loudly when Cython or the .pyx sources are missing, so a
  broken sdist can never become a pure-Python package.
"""

import os
import sys
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _build_helpers import openmp  # noqa: E402

DEBUG = os.environ.get("CYMLP_DEBUG_CYTHON", "0").strip() not in ("", "0")
SANITIZE = os.environ.get("CYMLP_SANITIZE", "0").strip() not in ("", "0")

DIRECTIVES = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "nonecheck": DEBUG,
}


def fail(message):
    """Stop the build; pip shows this message even without -v."""
    sys.exit("\n" + "=" * 78 + "\n" + message + "\n" + "=" * 78)


def pyx_sources():
    sources = sorted(os.path.relpath(p, HERE).replace(os.sep, "/")
                     for p in glob(os.path.join(HERE, "cymlp", "*.pyx")))
    if not sources:
        fail("cymlp: no cymlp/*.pyx found next to setup.py, so the compiled path cannot be built.\n"
             "This source tree or sdist is incomplete; get a full one (git clone, or the sdist\n"
             "from PyPI) instead of installing a pure-Python cymlp by accident.")
    return sources


def require_build_dependencies():
    missing = []
    for module in ("Cython", "numpy"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        fail(f"cymlp: building the compiled path needs {' and '.join(missing)}, which "
             f"{'is' if len(missing) == 1 else 'are'} not installed.\n"
             "pip installs the build requirements itself (pip install .); with\n"
             "--no-build-isolation or setup.py, first: pip install \"Cython>=3.1\" numpy scipy \"setuptools>=77\"")


class BuildExt(build_ext):
    """Cythonize, probe OpenMP with this build's compiler, pick flags per compiler."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:               # compile the extensions side by side
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        # cheap checks first, so a build that cannot work stops before cythonizing
        require_build_dependencies()
        ctype = self.compiler.compiler_type
        if SANITIZE and ctype == "msvc":
            fail("cymlp: CYMLP_SANITIZE=1 needs GCC or clang (-fsanitize=address,undefined).")
        if openmp.opted_out():
            omp_compile, omp_link = [], []
            print("cymlp: CYMLP_NO_OPENMP is set: building WITHOUT OpenMP (serial build)")
        else:
            result = openmp.probe_openmp(self.compiler)
            if not result.found:
                fail(openmp.failure_message(result))
            omp_compile, omp_link = result.flags
            print(f"cymlp: OpenMP flags: compile {' '.join(omp_compile)}, link {' '.join(omp_link)}")

        import numpy as np
        from Cython.Build import cythonize

        # generated C goes to a folder per mode, so a debug build never reuses release C and vice versa
        cythonized = cythonize(
            self.extensions, compiler_directives=DIRECTIVES, quiet=True,
            nthreads=(os.cpu_count() or 1) if sys.platform.startswith("linux") else 0,
            build_dir=os.path.join("build", "cython-debug" if DEBUG else "cython-release"))
        if SANITIZE:
            print("cymlp: CYMLP_SANITIZE is set: building with AddressSanitizer and UBSan")
        sources = {ext.name: ext.sources for ext in cythonized}
        for ext in self.extensions:
            ext.sources = sources[ext.name]
            ext.include_dirs.append(np.get_include())
            ext.extra_compile_args, ext.extra_link_args = openmp.extension_flags(
                ctype, DEBUG, (omp_compile, omp_link), sanitize=SANITIZE)
        if isinstance(getattr(self.compiler, "linker_so", None), list):
            self.compiler.linker_so = openmp.without_build_rpaths(self.compiler.linker_so)
        super().build_extensions()


extensions = [
    Extension(
        "cymlp." + os.path.splitext(os.path.basename(path))[0],
        [path],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION"),
                       ("CYMLP_DEBUG", "1" if DEBUG else "0"),
                       ("CYMLP_SANITIZE", "1" if SANITIZE else "0")],
    )
    for path in pyx_sources()
]

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt})
