"""What this installation of cymlp can do: ``cymlp.show_config()`` and the dict behind it.

Not a configuration API (nothing here changes a setting): it reports the
version, backends, how the compiled path was built (OpenMP, debug), the
default thread count and the BLAS in use.
"""

from __future__ import annotations

import os
import platform
from typing import Any, Literal, overload

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
    """A dict describing the installation (see :func:`show_config`); no value is None."""
    from . import __version__
    from ._backends import available_backends
    info: dict[str, Any] = {
        "cymlp": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),         # None where Python cannot tell: left out below
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
    import scipy.linalg  # noqa: F401  (loads the BLAS the compiled path calls)
    import threadpoolctl
    # what threadpoolctl knows of each pool (it reports None for what a library does not say)
    info["threadpools"] = [
        {k: p[k] for k in ("user_api", "internal_api", "version", "num_threads", "threading_layer",
                           "architecture", "filepath") if p.get(k) is not None}
        for p in threadpoolctl.threadpool_info()]
    return {key: value for key, value in info.items() if value is not None}


@overload
def show_config(mode: Literal["stdout"] = "stdout") -> None: ...
@overload
def show_config(mode: Literal["dicts"]) -> dict[str, Any]: ...
def show_config(mode: Literal["stdout", "dicts"] = "stdout") -> dict[str, Any] | None:
    """Print what this installation can do: version, backends, OpenMP, threads and BLAS.

    Nothing is changed: this only reports (the thread count ``n_threads=None``
    uses, the BLAS libraries loaded and their thread pools, the compiled
    path's build).  Like ``numpy.show_config``, ``mode="dicts"`` returns the
    same information instead of printing it.  A field whose value is not
    known is left out, never shown as None.

    Parameters
    ----------
    mode : {"stdout", "dicts"}
        Print (the default), or return a dict.

    Returns
    -------
    dict or None
        With ``mode="dicts"``: ``cymlp``, ``python``, ``numpy`` (versions),
        ``platform``, ``cpu_count``, ``default_n_threads`` (what
        ``n_threads=None`` uses), ``backends`` (the default first), ``openmp``
        and ``debug_build`` (bools); ``openmp_max_threads`` and ``build`` (in
        words) when the compiled path is built, else ``compiled_path`` (why
        not); ``environment`` (the thread-related variables that are set),
        when any is; ``threadpools``: a list with one dict per BLAS or OpenMP
        library loaded (threadpoolctl's ``user_api``, ``internal_api``,
        ``version``, ``num_threads``, ``threading_layer``, ``architecture``,
        ``filepath``, those it knows).  None with ``mode="stdout"``.
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts'; got {mode!r}")
    info = config_info()
    if mode == "dicts":
        return info
    pools = info.pop("threadpools")
    for key, value in info.items():
        print(f"{key:>20}: {value}")
    print("         threadpools:")
    for p in pools:
        name = " ".join(str(p[k]) for k in ("internal_api", "version") if k in p)
        details = [f"{p['num_threads']} threads" if "num_threads" in p else None,
                   p.get("threading_layer") and f"{p['threading_layer']} threading",
                   p.get("architecture"), p.get("filepath")]
        print(f"    - {name} ({p.get('user_api', 'unknown')}), "
              + ", ".join(str(d) for d in details if d))
    return None
