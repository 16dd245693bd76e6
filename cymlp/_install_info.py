"""What this installation of cymlp can do: ``cymlp.show_config()`` and the dict behind it.

Not a configuration API (nothing here changes a setting): it reports the
version, backends, how the compiled path was built (OpenMP, debug), the
default thread count and the BLAS in use.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

from . import _threads


def build_description(openmp: bool, debug: bool) -> str:
    """How the compiled path was built, in words (setup.py stops a build that
    cannot find OpenMP, so a serial build is always the CYMLP_NO_OPENMP opt-out)."""
    kind = "debug (bounds checks on)" if debug else "release"
    threads = ("OpenMP" if openmp else
               "serial build: no OpenMP (built with CYMLP_NO_OPENMP=1), the compiled path uses one thread")
    return f"{kind}, {threads}"


def config_info() -> dict[str, Any]:
    """A dict describing the installation: version, backends, OpenMP, threads, BLAS."""
    from . import __version__
    from ._backends import available_backends
    info: dict[str, Any] = {
        "cymlp": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "default_n_threads": _threads.effective_n_threads(None),
        "backends": list(available_backends()),
        "openmp": False,
        "debug_build": False,
    }
    try:
        from . import _kernels  # type: ignore[attr-defined]  # compiled, no stub: see [tool.mypy]
        info["openmp"] = bool(_kernels.OPENMP_ENABLED)
        info["openmp_max_threads"] = int(_kernels.openmp_max_threads())
        info["debug_build"] = bool(_kernels.DEBUG_BUILD)
        info["build"] = build_description(info["openmp"], info["debug_build"])
    except ImportError as exc:
        info["compiled_path"] = f"not built ({exc})"
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if name in os.environ:
            info.setdefault("environment", {})[name] = os.environ[name]
    try:
        import scipy.linalg  # noqa: F401  (loads the BLAS the compiled path calls)
        import threadpoolctl
        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                   "threading_layer", "architecture", "filepath")}
            for p in threadpoolctl.threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def show_config() -> None:
    """Print what this installation can do: version, backends, OpenMP, threads and BLAS.

    Nothing is changed: this only reports (the thread count ``n_threads=None``
    uses, the BLAS libraries loaded and their thread pools, the compiled
    path's build).
    """
    info = config_info()
    pools = info.pop("threadpools")
    for key, value in info.items():
        print(f"{key:>20}: {value}")
    print("         threadpools:")
    if isinstance(pools, str):
        print(f"    {pools}")
    else:
        for p in pools:
            print(f"    - {p['internal_api']} {p['version']} ({p['user_api']}), "
                  f"{p['num_threads']} threads, {p.get('architecture')}, {p['filepath']}")
