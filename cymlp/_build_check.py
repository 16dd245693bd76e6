"""Is this cymlp's compiled path built, and built from its current sources?  No silent fallback.

In a source tree (a checkout or an unpacked sdist: ``setup.py`` beside the
package) whose compiled extension is missing, or older than the ``.pyx``/
``.pxd`` sources it was built from, a network would silently run on the NumPy
path (several times slower) or on stale kernels.  The first network that
chooses its backend by default (``backend=None``, also through ``load``,
unpickling and ``cymlp.sklearn``) or asks for ``"cython"`` gets a
:class:`UnbuiltExtensionWarning` with the build command, once per process.
An explicit ``backend="numpy"`` never warns, and neither does an installed
package (no ``setup.py`` beside it: its build is the one that was installed).

:func:`load_openmp_runtime` is here too: ``import cymlp`` calls it (see
:mod:`cymlp._openmp_runtime`).
"""

import glob
import os
import re
import warnings

PACKAGE = os.path.dirname(os.path.realpath(__file__))
BUILD_COMMAND = "python setup.py build_ext --inplace"
_EXTENSION_SUFFIXES = (".so", ".pyd")
_warned = False


class UnbuiltExtensionWarning(UserWarning):
    """This source tree's compiled extension is missing or older than its sources."""


def load_openmp_runtime():
    """Import the compiled path's OpenMP runtime (a tiny extension) when it is built."""
    try:
        from . import _openmp_runtime  # type: ignore[attr-defined]  # noqa: F401  (compiled, no stub)
    except ImportError:
        pass


def source_tree_problem(package=PACKAGE):
    """Why this source tree's compiled extension cannot be trusted, or None.

    Returns None for an installed package (no ``setup.py`` beside it) and
    for a source tree whose every ``.pyx`` has a built extension newer than
    it and than the package's ``.pxd`` headers it cimports (directly or
    through another header), as Cython's own rebuild check reads them.
    """
    root = os.path.dirname(package)
    if not os.path.isfile(os.path.join(root, "setup.py")):
        return None
    sources = sorted(glob.glob(os.path.join(package, "*.pyx")))
    missing, stale = [], []
    for pyx in sources:
        stem = os.path.splitext(pyx)[0]
        built = [p for p in glob.glob(glob.escape(stem) + ".*") if p.endswith(_EXTENSION_SUFFIXES)]
        if not built:
            missing.append(os.path.basename(pyx))
        elif max(os.stat(p).st_mtime for p in built) < max(os.stat(p).st_mtime for p in _with_headers(pyx)):
            stale.append(os.path.basename(pyx))
    if missing:
        return f"its compiled extension is not built ({len(missing)} of {len(sources)} .pyx files have none)"
    if stale:
        return f"its compiled extension is older than its sources ({', '.join(stale[:4])}" \
               + (", ..." if len(stale) > 4 else "") + " changed since the build)"
    return None


_CIMPORT = re.compile(r"^\s*(?:from\s+(?:cymlp)?\.(\w+)\s+cimport|cimport\s+cymlp\.(\w+))", re.M)


def _with_headers(pyx):
    """``pyx`` and the package's ``.pxd`` files it depends on (its own and what it cimports, transitively)."""
    folder = os.path.dirname(pyx)
    found, todo = set(), [pyx, os.path.splitext(pyx)[0] + ".pxd"]
    while todo:
        path = todo.pop()
        if path in found or not os.path.isfile(path):
            continue
        found.add(path)
        with open(path, encoding="utf-8", errors="replace") as source:
            names = [a or b for a, b in _CIMPORT.findall(source.read())]
        todo += [os.path.join(folder, name + ".pxd") for name in names]
    return found


def warn_if_unbuilt(stacklevel=3):
    """Warn once per process when :func:`source_tree_problem` finds one."""
    global _warned
    if _warned:
        return
    _warned = True
    problem = source_tree_problem()
    if problem is not None:
        warnings.warn(f"cymlp is running from the source tree {os.path.dirname(PACKAGE)}, and {problem}: "
                      f"networks fall back to the NumPy path (several times slower) or run stale "
                      f"kernels. Build it: `{BUILD_COMMAND}` in {os.path.dirname(PACKAGE)} (or `pip install "
                      f"-e .`); pass backend='numpy' to use the NumPy path on purpose",
                      UnbuiltExtensionWarning, stacklevel=stacklevel)
