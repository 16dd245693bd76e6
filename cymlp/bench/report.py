"""Writers of ``cymlp bench``: markdown tables, JSON, number formats, the chart, the log."""

import json
import math
import sys

import numpy as np

from .._files import write_text
from .machine import default_n_threads

__all__ = [
    "IMPL_COLORS",
    "command_line",
    "fmt_num",
    "fmt_speedup",
    "fmt_time",
    "log",
    "markdown_table",
    "plot",
    "results_markdown",
    "scaling_markdown",
    "scaling_rows",
    "write_json",
]


def markdown_table(rows, columns):
    """A GitHub markdown table.  ``columns`` is a list of (header, key or callable, align)."""
    def cell(row, getter):
        value = getter(row) if callable(getter) else row.get(getter)
        return "" if value is None else str(value)
    header = "| " + " | ".join(h for h, _, _ in columns) + " |"
    rule = "|" + "|".join("---:" if align == "r" else ":---" for _, _, align in columns) + "|"
    body = ["| " + " | ".join(cell(r, g) for _, g, _ in columns) + " |" for r in rows]
    return "\n".join([header, rule] + body)


def write_json(path, payload):
    """Write ``payload`` as indented JSON (NaN and infinities become null)."""
    def clean(obj):
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        if isinstance(obj, np.generic):
            return clean(obj.item())
        return obj
    write_text(path, json.dumps(clean(payload), indent=2) + "\n")


def fmt_time(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_num(x, digits=3):
    if x is None or not math.isfinite(x):
        return "–"
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_speedup(x):
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:,.0f}×" if x >= 100 else f"{x:.3g}×"


RESULT_COLUMNS = [
    ("impl", lambda r: r["impl"] + (" †" if r.get("contended") else ""), "l"),
    ("dtype", "dtype", "l"),
    ("threads", "threads", "r"),
    ("time/step (median)", lambda r: fmt_time(r["step_seconds"]), "r"),
    ("spread (IQR)", lambda r: f"±{100 * r['spread'] / 2:.0f}%", "r"),
    ("time/epoch", lambda r: fmt_time(r["epoch_seconds"]), "r"),
    ("examples/s", lambda r: fmt_num(r["examples_per_second"]), "r"),
    ("GFLOP/s", lambda r: fmt_num(r["gflops"]), "r"),
    ("% roof", lambda r: f"{100 * r['roofline_fraction']:.0f}%" if math.isfinite(r["roofline_fraction"]) else "–",
     "r"),
    ("vs loop", lambda r: fmt_speedup(r.get("speedup_vs_loop")), "r"),
    ("vs numpy", lambda r: fmt_speedup(r.get("speedup_vs_numpy")), "r"),
]


def results_markdown(rows, cases, rooflines):
    """One table per case, with the case and its GEMM roofline named above it."""
    parts = []
    for case in cases:
        case_rows = [r for r in rows if r["case"] == case.name]
        if not case_rows:
            continue
        roofs = ", ".join(f"{r['dtype']} {r['threads']}t {r['gflops']:.3g}"
                          for r in rooflines if r["case"] == case.name)
        parts.append(f"### {case.name}: {'-'.join(map(str, case.sizes))}, {case.activation}/{case.output}, "
                     f"{case.loss}, batch {case.batch_size}, epoch = {case.n_train} examples\n\n"
                     f"{case_rows[0]['data']}; {case.flops_per_example * case.batch_size / 1e6:.4g} MFLOP/step; "
                     f"GEMM roofline GFLOP/s: {roofs}\n")
        parts.append(markdown_table(case_rows, RESULT_COLUMNS) + "\n")
        if any(r.get("contended") for r in case_rows):
            parts.append("† other processes were busy when this row started (1-minute load average "
                         "above the row's own threads by more than half a core): its time is inflated, "
                         "multi-threaded rows most.\n")
    return "\n".join(parts)


def scaling_rows(rows):
    """Examples/s per thread count for each (case, dtype, impl), speed-up against its fewest threads."""
    groups = {}
    for r in rows:
        groups.setdefault((r["case"], r["dtype"], r["impl"]), {})[r["threads"]] = r["examples_per_second"]
    out = []
    for (case, dtype, impl), by_threads in groups.items():
        base_threads = min(by_threads)
        base = by_threads[base_threads]
        for t in sorted(by_threads):
            out.append({"case": case, "dtype": dtype, "impl": impl, "threads": t,
                            "examples_per_second": by_threads[t], "speedup": by_threads[t] / base,
                            "efficiency": by_threads[t] / base / (t / base_threads)})
    return out


def scaling_markdown(scaling):
    threads = sorted({s["threads"] for s in scaling})
    table = {}
    for s in scaling:
        table.setdefault((s["case"], s["dtype"], s["impl"]), {})[s["threads"]] = s
    columns = [("case", "case", "l"), ("dtype", "dtype", "l"), ("impl", "impl", "l")]
    for t in threads:
        columns.append((f"{t} thr ex/s (×)", lambda r, t=t: (
            f"{fmt_num(r[t]['examples_per_second'])} ({r[t]['speedup']:.2f}×)" if t in r else ""), "r"))
    rows = []
    for (case, dtype, impl), by_t in table.items():
        row = dict(by_t)
        row.update(case=case, dtype=dtype, impl=impl)
        rows.append(row)
    return markdown_table(rows, columns)


# --------------------------------------------------------------------------
# The chart
# --------------------------------------------------------------------------

IMPL_COLORS = {"loop": "#b0b0b0", "numpy": "#4c72b0", "cython": "#dd8452", "torch": "#c44e52",
               "sklearn": "#55a868"}


def plot(rows, cases, path, dtype=None):
    """Horizontal bars of examples/s on a log scale, one panel per case."""
    from matplotlib.figure import Figure  # the object API: pyplot's state and backend untouched

    from .._files import save_figure
    dtype = dtype or rows[0]["dtype"]
    cases = [c for c in cases if any(r["case"] == c.name and r["dtype"] == dtype for r in rows)]
    ncols = 2 if len(cases) > 1 else 1
    nrows = -(-len(cases) // ncols)
    fig = Figure(figsize=(6.5 * ncols, 0.3 + 3.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(cases):]:
        ax.set_visible(False)
    for ax, case in zip(axes.flat, cases):
        sel = [r for r in rows if r["case"] == case.name and r["dtype"] == dtype]
        labels = [f"{r['impl']} · {r['threads']} thr" for r in sel]
        values = [r["examples_per_second"] for r in sel]
        y = np.arange(len(sel))[::-1]
        ax.barh(y, values, color=[IMPL_COLORS.get(r["impl"], "#8172b2") for r in sel])
        ax.set_yticks(y, labels, fontsize=9)
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 2, max(values) * 12)
        for yi, r in zip(y, sel):
            note = fmt_num(r["examples_per_second"])
            if r.get("speedup_vs_loop") is not None and r["impl"] != "loop":
                note += f"  ({fmt_speedup(r['speedup_vs_loop'])} loop)"
            ax.text(r["examples_per_second"] * 1.1, yi, note, va="center", fontsize=8)
        ax.set_title(f"{case.name}: {'-'.join(map(str, case.sizes))}, batch {case.batch_size}", fontsize=10)
        ax.set_xlabel("training examples per second (log scale, higher is better)", fontsize=8)
        ax.grid(axis="x", which="major", alpha=0.3)
    title = f"cymlp bench ({dtype}): one SGD step, same data, weights and threads per panel"
    loads = [r["load_average"] for r in rows if math.isfinite(r.get("load_average", float("nan")))]
    if loads:
        title += f"\nload average during the run {min(loads):.1f} to {max(loads):.1f} on {default_n_threads()} cores"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def command_line(args):
    """The command as typed, whether it came through ``cymlp bench`` or ``python -m cymlp.bench``."""
    argv = list(getattr(args, "argv", None) or [])
    if argv[:1] == ["bench"]:
        argv = argv[1:]
    return " ".join(["cymlp bench"] + argv)


def log(message):
    print(message, file=sys.stderr, flush=True)
