"""``cymlp bench --fit``: end-to-end ``fit`` epochs against the GEMM floor and the peers.

Users time ``fit`` on shuffled real data with Adam or momentum, not one
idealised step.  For each case (network, optimizer, batch size, data), dtype
and thread count (a *row*) this times, on the same rows and from the same
initial weights:

``floor``
    The GEMMs of one epoch alone: every training step's forward,
    weight-gradient and back-propagated-delta products (``numpy.matmul`` on
    operands of the step's shapes, at the row's BLAS threads), times the
    number of steps, the last smaller batch included.  No implementation
    that multiplies the same matrices can beat it by much.
``cython``, ``numpy``
    ``Network(backend=..., n_threads=t).fit(X, y, epochs=E, ...)``, timed
    from the call to its return (input checks and set-up included, as a
    user pays them), divided by ``E``.
``default``
    ``Network(backend="cython").fit`` with the default ``n_threads=None``,
    in the row whose thread count is what ``None`` resolves to; its goal is
    to be within 5% of the faster explicit count of the same case and dtype.
``sklearn``
    ``MLPClassifier`` (``MLPRegressor`` on one-hot targets for the sigmoid +
    quadratic cases) with the same layers, solver, batch size, learning rate
    and momentum, no L2 penalty: ``E`` calls of ``partial_fit`` (each one
    shuffled epoch).
``torch``
    ``nn.Sequential`` with ``torch.optim.SGD``/``Adam``: an idiomatic loop,
    ``randperm`` each epoch, index-slice batches, ``zero_grad``, ``backward``,
    ``optimizer.step()``; ``torch.set_num_threads(t)``.

**Each implementation runs in its own process**, a fresh interpreter per
implementation and row (:mod:`.fit_worker`): a library's idle thread pools
and allocator never slow another's timings.  The workers of a row start
together, load the data and warm up; then the rounds are interleaved: in
each round every worker times one repeat, one at a time, after a pause that
lets the previous worker's threads go idle (``--settle``), the order rotated
from round to round.  The table shows each median with its range (min-max),
the 1-minute load average is recorded before every timing.
"""

import json
import queue
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict
from typing import Any

from .fit_cases import FIT_CASES, FIT_IMPLEMENTATIONS, load_case_data, unavailable
from .fit_report import fit_markdown, plot_fit
from .fit_worker import MARK, command
from .machine import blas_line, default_n_threads, environment_line, load_line, machine_info
from .measure import load_average, settle, summary
from .report import command_line, log, write_json

__all__ = ["FIT_CASES", "FIT_IMPLEMENTATIONS", "run"]

SETTLE_SECONDS = 0.25          # idle time before each timing (--settle)
START_TIMEOUT = 600            # seconds a worker may take to load its data and warm up
RUN_TIMEOUT = 3600             # seconds one timed repeat may take


class WorkerFailed(RuntimeError):
    pass


class _Worker:
    """The orchestrator's handle on one worker process (:mod:`.fit_worker`)."""

    def __init__(self, spec):
        self.spec = spec
        self._stderr = tempfile.TemporaryFile(mode="w+")      # noqa: SIM115 (closed by close())
        self.proc = subprocess.Popen(command(spec), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1)
        self._lines: queue.Queue[Any] = queue.Queue()
        # a reader thread: waiting for an answer with a timeout works on every platform
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:  # type: ignore[union-attr]  # (opened with PIPE)
            if line.startswith(MARK):
                self._lines.put(line[len(MARK):])
        self._lines.put(None)

    def _answer(self, timeout):
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise WorkerFailed(f"no answer within {timeout:.0f} s") from None
        if line is None:
            raise WorkerFailed("the worker exited: " + self._stderr_tail())
        answer = json.loads(line)
        if "error" in answer:
            raise WorkerFailed(answer["error"])
        return answer

    def _stderr_tail(self):
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].strip() or f"exit status {self.proc.poll()}"

    def ready(self):
        return self._answer(START_TIMEOUT)

    def ask(self, what, timeout=RUN_TIMEOUT):
        try:
            stdin: Any = self.proc.stdin          # (opened with PIPE)
            stdin.write(what + "\n")
            stdin.flush()
        except OSError as exc:
            raise WorkerFailed(f"the worker is gone ({exc})") from None
        return self._answer(timeout)

    def close(self):
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]  # (opened with PIPE)
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


def _measure_row(case, dtype, threads, impls, n_rows, epochs, repeats, settle_seconds, rows_cap, failures):
    """Time ``impls`` (and the floor) on one row, each in its own worker; returns result rows."""
    def failed(name, exc):
        failures.append({"case": case.name, "dtype": dtype, "threads": threads, "impl": name,
                         "error": f"{type(exc).__name__}: {exc}"})
        log(f"bench:   {name} failed: {exc}")

    workers, pools = {}, {}
    for name in ["floor"] + impls:
        spec = {"case": case.name, "dtype": dtype, "impl": name, "epochs": epochs, "rows": rows_cap,
                "threads": None if name == "default" else threads}
        try:
            workers[name] = _Worker(spec)
        except OSError as exc:
            failed(name, exc)
    for name, worker in list(workers.items()):
        try:
            pools[name] = worker.ready()
        except WorkerFailed as exc:
            failed(name, exc)
            worker.close()
            del workers[name]
    samples: dict[str, list[Any]] = {name: [] for name in workers}
    loads: dict[str, list[float]] = {name: [] for name in workers}
    loop_seconds: dict[str, list[float]] = {name: [] for name in workers}
    try:
        for r in range(repeats):
            names = list(workers)
            for name in names[r % len(names):] + names[:r % len(names)] if names else []:
                if name not in workers:
                    continue
                settle(settle_seconds)
                loads[name].append(load_average())
                try:
                    answer = workers[name].ask("run")
                except WorkerFailed as exc:
                    failed(name, exc)
                    workers.pop(name).close()
                    continue
                samples[name].append(answer["seconds"] / epochs)
                loop_seconds[name].extend(answer.get("epoch_loop_seconds", []))
        accuracy = {}
        for name, worker in workers.items():
            try:
                accuracy[name] = worker.ask("accuracy").get("accuracy")
            except WorkerFailed as exc:
                log(f"bench:   {name} predict failed: {exc}")
    finally:
        for worker in workers.values():
            worker.close()
    steps = -(-n_rows // case.batch_size)
    return _result_rows(case, dtype, threads, steps, epochs, samples, loads, loop_seconds, accuracy, pools)


def _result_rows(case, dtype, threads, steps, epochs, samples, loads, loop_seconds, accuracy, pools):
    rows = []
    floor = summary(samples["floor"])[0] if samples.get("floor") else float("nan")
    for name, per_epoch in samples.items():
        if not per_epoch:
            continue
        epoch, spread = summary(per_epoch)
        row = {"case": case.name, "dtype": dtype, "threads": threads, "impl": name, "epoch_seconds": epoch,
               "spread": spread, "min_seconds": min(per_epoch), "max_seconds": max(per_epoch),
               "step_seconds": epoch / steps, "steps_per_epoch": steps, "epochs_per_repeat": epochs,
               "repeats": len(per_epoch), "samples_epoch_seconds": per_epoch, "floor_ratio": epoch / floor,
               "load_average": max(loads[name]), "load_averages": loads[name],
               "pid": pools.get(name, {}).get("pid"), "threadpools": pools.get(name, {}).get("threadpools")}
        if name == "default":
            row["resolved_threads"] = default_n_threads()
        if loop_seconds.get(name):
            row["epoch_loop_seconds"] = summary(loop_seconds[name])[0]
        if accuracy.get(name) is not None:
            row["test_accuracy"] = accuracy[name]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------

def run(args):
    """Run ``cymlp bench --fit`` for parsed arguments; returns the JSON payload."""
    t_start = time.perf_counter()
    names = args.cases or list(FIT_CASES)
    dtypes = args.dtype or (["float32"] if args.quick else ["float32", "float64"])
    most = default_n_threads()
    threads = sorted(set(args.threads or [1, most]))
    epochs = args.epochs or 1
    repeats = args.repeats or (2 if args.quick else 3)
    rows_cap = args.rows or (5000 if args.quick else None)
    settle_seconds = args.settle if args.settle is not None else SETTLE_SECONDS
    wanted = [i for i in (args.impl or list(FIT_IMPLEMENTATIONS)) if i != "loop"]
    impls, skipped = [], {}
    for name in wanted:
        why = unavailable(name)
        if why is None:
            impls.append(name)
        else:
            skipped[name] = why
            log(f"bench: skipping {name}: {why}")
    info = machine_info()
    print("# cymlp bench --fit\n")
    print(f"CPU: {info['cpu']} ({info['cpu_vendor']}, {' '.join(info['cpu_flags'])}; "
          f"{info['usable_cores']} usable cores); BLAS: {blas_line(info)}")
    print(f"Environment: {environment_line(info)}; backends: {', '.join(info['backends'])}")
    load0 = load_average()
    print(load_line(load0))
    print(f"Per epoch: median (min–max) of {repeats} interleaved repeat(s) of {epochs} epoch(s), each "
          "implementation and row in a process of its own, warmed up first; fit called end to end"
          + (f"; at most {rows_cap:,} training rows per case" if rows_cap else "") + ".\n")
    results: list[Any] = []
    failures: list[Any] = []
    measured: list[Any] = []
    for name in names:
        case = FIT_CASES[name]
        for dtype in dtypes:
            try:
                X, _, _, _, what = load_case_data(case, dtype, rows_cap)
            except FileNotFoundError as exc:
                skipped[name] = f"data not installed ({exc})"
                log(f"bench: skipping {name}: {skipped[name]}")
                break
            n_rows = X.shape[0]
            del X
            if not measured or measured[-1][0] is not case:
                measured.append((case, what))
            for t in threads:
                row_impls = [i for i in impls if (i != "sklearn" or _sklearn_supports(case))
                             and (i != "default" or t == most)]
                log(f"bench: {name} {dtype} {t} thread(s): floor, {', '.join(row_impls)} ...")
                results.extend(_measure_row(case, dtype, t, row_impls, n_rows, epochs * case.repeat_epochs, repeats,
                                            settle_seconds, rows_cap, failures))
    elapsed = time.perf_counter() - t_start
    print(fit_markdown(results, measured))
    load1 = load_average()
    if skipped:
        print("Not measured: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    if failures:
        print("Failed: " + "; ".join(f"{f['impl']} on {f['case']} {f['dtype']} {f['threads']}t: {f['error']}"
                                      for f in failures))
    print(f"\nLoad average at the end: {load1:.2f}. Total time {elapsed:.0f} s.")
    payload = {"command": command_line(args), "mode": "fit", "threads": threads, "dtypes": dtypes,
               "epochs": epochs, "repeats": repeats, "rows": rows_cap, "settle_seconds": settle_seconds,
               "elapsed_seconds": elapsed, "machine": info, "isolation": "one process per implementation and row",
               "load_average_start": load0, "load_average_end": load1,
               "cases": {c.name: dict(asdict(c), data_description=w) for c, w in measured},
               "implementations": dict(FIT_IMPLEMENTATIONS, floor="the step's GEMMs alone (numpy.matmul), "
                                       "times the number of steps"),
               "skipped": skipped, "failures": failures, "results": results}
    if args.json:
        write_json(args.json, payload)
        log(f"bench: wrote {args.json}")
    if args.plot and results:
        try:
            plot_fit(results, measured, args.plot)
            log(f"bench: wrote {args.plot}")
        except ImportError:
            log("bench: --plot needs matplotlib: pip install matplotlib")
    return payload


def _sklearn_supports(case):
    from .peers import sklearn_supports
    return sklearn_supports(case.activation)
