"""``cymlp bench --fit``'s tables and chart: each case against its goals."""

import math
from typing import Any

import numpy as np

from .report import IMPL_COLORS, fmt_time, markdown_table

__all__ = ["DEFAULT_TOLERANCE", "PEERS", "fit_markdown", "goal", "plot_fit"]

PEERS = ("numpy", "sklearn", "torch")
DEFAULT_TOLERANCE = 1.05        # the default thread count: within 5% of the faster explicit count


def fmt_range(row):
    """"343 ms (338–360)": the median and, in the median's unit, the fastest and slowest repeat."""
    median, lo, hi = row["epoch_seconds"], row.get("min_seconds"), row.get("max_seconds")
    text = fmt_time(median)
    if lo is None or hi is None or row.get("repeats", 1) < 2:
        return text
    value, unit = text.split(" ")
    scale = float(value) / median
    digits = max(0, 3 - len(str(int(float(value)))))
    return f"{text} ({lo * scale:.{digits}f}–{hi * scale:.{digits}f})" if unit else text


def goal(case, cells, best_explicit=None):
    """"met", or how the row misses the case's goals.

    ``cells``: the row's results by implementation.  The goals: cymlp within
    ``case.target_ratio`` of the GEMM floor (or ``case.target_step`` per
    step), faster than every peer, ``case.target_vs_sklearn`` times faster
    than scikit-learn, and the default thread count within
    :data:`DEFAULT_TOLERANCE` of ``best_explicit`` (the faster explicit
    count's median, over the rows of the same case and dtype).
    """
    c = cells.get("cython")
    misses = []
    if c is not None:
        if case.target_step is not None:
            if c["step_seconds"] > case.target_step:
                misses.append(f"{c['step_seconds'] * 1e6:.3g} µs/step > {case.target_step * 1e6:g}")
        elif "floor" in cells and c["floor_ratio"] > case.target_ratio:
            misses.append(f"{c['floor_ratio']:.2f}× floor > {case.target_ratio:g}")
        slower = [p for p in PEERS if p in cells and cells[p]["epoch_seconds"] <= c["epoch_seconds"]]
        if slower:
            misses.append("not faster than " + ", ".join(slower))
        if case.target_vs_sklearn > 1 and "sklearn" in cells:
            ratio = cells["sklearn"]["epoch_seconds"] / c["epoch_seconds"]
            if ratio < case.target_vs_sklearn:
                misses.append(f"{ratio:.2f}× scikit-learn < {case.target_vs_sklearn:g}×")
    d = cells.get("default")
    if d is not None and best_explicit:
        ratio = d["epoch_seconds"] / best_explicit
        if ratio > DEFAULT_TOLERANCE:
            misses.append(f"default {ratio:.2f}× best explicit")
    if not cells.get("cython") and d is None:
        return "–"
    return "met" if not misses else "; ".join(misses)


def _groups(rows, case):
    groups: dict[Any, dict[str, Any]] = {}
    for r in rows:
        if r["case"] == case.name:
            groups.setdefault((r["dtype"], r["threads"]), {})[r["impl"]] = r
    return groups


def best_explicit(groups, dtype):
    """The fastest explicit-thread cymlp median of ``dtype`` over a case's rows, or None."""
    times = [cells["cython"]["epoch_seconds"] for (d, _), cells in groups.items() if d == dtype and "cython" in cells]
    return min(times) if times else None


def fit_markdown(rows, cases):
    """One table per case: epoch times of every implementation, cymlp against the floor, the goals."""
    parts = []

    def cell(name):
        return lambda r: fmt_range(r[name]) if name in r else "–"

    def ratio(r, a, b):
        return f"{r[a]['epoch_seconds'] / r[b]['epoch_seconds']:.2f}×" if a in r and b in r else "–"
    columns = [("dtype", "dtype", "l"), ("threads", "threads", "r"), ("GEMM floor", cell("floor"), "r"),
               ("cymlp", cell("cython"), "r"), ("cymlp / floor", lambda r: ratio(r, "cython", "floor"), "r"),
               ("cymlp / step", lambda r: fmt_time(r["cython"]["step_seconds"]) if "cython" in r else "–", "r"),
               ("default threads", cell("default"), "r"),
               ("default / best", lambda r: f"{r['default']['epoch_seconds'] / r['best']:.2f}×"
                if "default" in r and r.get("best") else "–", "r"),
               ("NumPy path", cell("numpy"), "r"), ("scikit-learn", cell("sklearn"), "r"),
               ("PyTorch", cell("torch"), "r"), ("goal", "goal", "l"),
               ("load", lambda r: f"{r['load']:.1f}", "r")]
    for case, what in cases:
        groups = _groups(rows, case)
        if not groups:
            continue
        steps = next(iter(next(iter(groups.values())).values()))["steps_per_epoch"]
        goals = [f"cymlp within {case.target_ratio:g}× of the GEMM floor" if case.target_step is None
                 else f"cymlp ≤ {case.target_step * 1e6:g} µs a step", "faster than every peer"]
        if case.target_vs_sklearn > 1:
            goals.append(f"≥ {case.target_vs_sklearn:g}× scikit-learn's speed")
        goals.append(f"the default thread count within {100 * (DEFAULT_TOLERANCE - 1):.0f}% of the faster "
                     "explicit count")
        parts.append(f"### {case.name}: {case.settings()}\n\n{case.description}; {what}; {steps:,} steps "
                     f"per epoch. Goals: {', '.join(goals)}.\n")
        table = []
        for (dtype, threads), cells in groups.items():
            best = best_explicit(groups, dtype)
            row = {"dtype": dtype, "threads": threads, "goal": goal(case, cells, best), "best": best,
                   "load": max(c["load_average"] for c in cells.values())}
            row.update(cells)
            table.append(row)
        parts.append(markdown_table(table, columns) + "\n")
        accs: dict[str, list[float]] = {}
        for cells in groups.values():
            for name, c in cells.items():
                if "test_accuracy" in c:
                    accs.setdefault(name, []).append(c["test_accuracy"])
        if accs:
            parts.append("Accuracy after the timed epochs (min–max over the rows): " + ", ".join(
                f"{name} {min(a):.3f}–{max(a):.3f}" for name, a in accs.items()) + ".\n")
    return "\n".join(parts)


def plot_fit(rows, cases, path):
    """One panel per case: epoch time / GEMM floor of every implementation, per dtype and thread count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c, _ in cases if any(r["case"] == c.name for r in rows)]
    ncols = 2 if len(cases) > 1 else 1
    nrows = -(-len(cases) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 0.5 + 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(cases):]:
        ax.set_visible(False)
    impls = [i for i in ("cython", "default", "numpy", "sklearn", "torch") if any(r["impl"] == i for r in rows)]
    for ax, case in zip(axes.flat, cases):
        sel = [r for r in rows if r["case"] == case.name]
        configs = sorted({(r["dtype"], r["threads"]) for r in sel})
        width = 0.8 / max(1, len(impls))
        for j, impl in enumerate(impls):
            vals = [next((r["floor_ratio"] for r in sel if r["impl"] == impl and (r["dtype"], r["threads"]) == c),
                         np.nan) for c in configs]
            if all(math.isnan(v) for v in vals):
                continue
            ax.bar(np.arange(len(configs)) + j * width, vals, width, label=impl,
                   color=IMPL_COLORS.get(impl, "#8172b2"))
        ax.axhline(1.0, color="black", lw=0.8)
        ax.axhline(case.target_ratio, color="black", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(configs)) + 0.4 - width / 2, [f"{d} {t} thr" for d, t in configs], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("epoch time / GEMM floor", fontsize=8)
        ax.set_title(f"{case.name}: {case.settings()}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("cymlp bench --fit (each implementation in its own process): epoch time against the GEMM "
                 "floor (lower is better; dashed = goal)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
