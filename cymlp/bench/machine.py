"""What machine a benchmark ran on: CPU model, BLAS and OpenMP pools, load, thread environment."""

import os
import platform
import shutil
import subprocess

import numpy as np

from .measure import load_average

__all__ = ["ENV_OVERRIDES", "blas_line", "cpu_model", "default_n_threads", "environment_line", "machine_info"]

ENV_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS", "OMP_PROC_BIND", "GOMP_CPU_AFFINITY")


def default_n_threads():
    """The threads ``n_threads=None`` uses: the affinity mask's cores within ``OMP_NUM_THREADS``."""
    from .._threads import effective_n_threads
    return effective_n_threads(None)


def _lscpu_model():
    """``lscpu``'s "Model name", or None."""
    if shutil.which("lscpu") is None:
        return None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False,
                             env=dict(os.environ, LC_ALL="C")).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name" and value.strip():
            return value.strip()
    return None


def cpu_model():
    """(model name, vendor, notable ISA flags): lscpu, /proc/cpuinfo, or what platform knows."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model", "vendor_id", "flags") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break
    except OSError:
        pass
    model = _lscpu_model() or fields.get("model name") or fields.get("hardware") or fields.get("cpu model") \
        or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    notable = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "hypervisor")
               if f in flags]
    return model, fields.get("vendor_id"), notable


def _version(module):
    try:
        mod = __import__(module)
        return getattr(mod, "__version__", "?")
    except ImportError:
        return None


def machine_info():
    """Machine, CPU, library versions, BLAS/OpenMP pools and the thread-related environment."""
    import scipy.linalg  # noqa: F401  (loads the BLAS the compiled path calls)

    from .. import __version__
    from .._install_info import config_info
    from ..network import available_backends
    model, vendor, flags = cpu_model()
    info = {
        "cpu": model, "cpu_vendor": vendor, "cpu_flags": flags, "cpu_count": os.cpu_count(),
        "usable_cores": default_n_threads(),     # the recorded results' name for it
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": {"cymlp": __version__, "numpy": np.__version__, "scipy": _version("scipy"),
                      "torch": _version("torch"), "sklearn": _version("sklearn"),
                      "threadpoolctl": _version("threadpoolctl")},
        "backends": list(available_backends()),
        "environment": {name: os.environ.get(name) for name in ENV_OVERRIDES},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    info["openblas_overrides_set"] = {name: name in os.environ
                                      for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    try:
        config = config_info()
        info["openmp"] = config.get("openmp")
        info["compiled_path"] = config.get("compiled_path", "built")
    except Exception as exc:
        info["compiled_path"] = f"config_info failed: {exc}"
    try:
        import threadpoolctl
        info["threadpools"] = threadpoolctl.threadpool_info()
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def blas_line(info):
    """One line naming every BLAS pool threadpoolctl found."""
    pools = info.get("threadpools")
    if not isinstance(pools, list):
        return str(pools)
    return "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, "
                     f"{p.get('threading_layer')}, {os.path.basename(p.get('filepath', ''))})"
                     for p in pools if p.get("user_api") == "blas") or "none found"


def environment_line(info):
    """"OPENBLAS_CORETYPE unset, OPENBLAS_L2_SIZE=..." as recorded in ``info``."""
    return ", ".join(f"{k}={info['environment'][k]}" if v else f"{k} unset"
                     for k, v in info["openblas_overrides_set"].items())


def load_line(load=None):
    """"Load average at start: 0.42" with a warning when other work is running."""
    load = load_average() if load is None else load
    busy = "  (other work is running: multi-threaded rows will suffer)" if load > 0.5 else ""
    return f"Load average at start: {load:.2f}{busy}"
