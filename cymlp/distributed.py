"""Data-parallel training of a :class:`~cymlp.Network` on a Dask cluster.

``pip install "dask[distributed]"``; importing :mod:`cymlp` never imports Dask.

Two strategies, both with the data split into one shard per worker and the
network's weights as the only thing that crosses the network every round:

``strategy="average"`` (model averaging, Zinkevich et al. 2010; local SGD)
    Every worker keeps a replica of the network and trains it on its own
    shard with its own shuffles; every ``average_every`` local steps (or once
    per epoch) the client averages the replicas' weights, uniformly or by the
    examples each processed, and sends the average back.  Each replica keeps
    its optimizer state (momentum, Adam moments) across rounds.

``strategy="sync"`` (synchronous data-parallel SGD)
    Every step, each worker computes the gradient of its part of the global
    mini-batch; the client averages them (weighted by rows) and applies the
    optimizer step.  The result equals single-process SGD with the same
    batches, up to the order of the floating-point sums.  One round trip per
    step: it pays only when a step's compute is much larger than the latency.

Data can be NumPy arrays (split and scattered to the workers once), dask
arrays (each worker trains on the chunks it already holds; nothing is
gathered to the client) or files (a list of ``(X_path, y_path)`` ``.npy``
pairs, each loaded by the worker that trains on it).

A worker that dies mid-fit does not lose the run: the round's surviving
results are averaged, a warning is issued, and the lost shard is sent again
(from the client's copy, or recomputed by Dask) to a surviving worker.
"""

from __future__ import annotations

import math
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from . import _validation as v
from . import reference
from ._dask_tasks import (
    concat_chunks,
    forget,
    load_shard_files,
    local_gradient,
    local_round,
    worker_has_cymlp,
)
from ._fit_checks import make_schedule
from ._spec import spec_of
from ._threads import affinity_cores
from ._typing import PathLike
from .exceptions import TrainingDiverged
from .history import History
from .network import Network
from .training_state import OPTIMIZERS

try:
    import distributed as _dd
    from distributed import Client, LocalCluster
except ImportError as exc:            # pragma: no cover - exercised only without Dask
    raise ImportError("cymlp.distributed needs Dask: pip install \"dask[distributed]\"") from exc

__all__ = ["STRATEGIES", "fit_distributed"]

STRATEGIES = ("average", "sync")
# What a task raises when its worker (or its input's worker) went away, as opposed to an error of
# the task itself, which is the caller's to see.
_WORKER_LOST = (CancelledError, _dd.client.FutureCancelledError, _dd.scheduler.KilledWorker,
                _dd.comm.CommClosedError)
WEIGHTINGS = ("uniform", "examples")

# The training keyword arguments a round passes on to the replica's training call.
_LOCAL_FIT_KEYS = ("momentum", "nesterov", "weight_decay", "optimizer", "beta1", "beta2", "eps")


# ----------------------------------------------------------------------------- client side


def fit_distributed(net: Network, X: npt.ArrayLike | Sequence[tuple[PathLike, PathLike]],
                    y: npt.ArrayLike | None = None, *, client: Client | None = None,
                    n_workers: int | None = None, threads_per_worker: int | None = None,
                    strategy: Literal["average", "sync"] = "average", average_every: int | None = None,
                    average_weighting: Literal["uniform", "examples"] = "uniform",
                    epochs: int = 10, batch_size: int = 64, lr: float = 0.05, shuffle: bool = True, seed: int = 0,
                    validation_data: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
                    lr_schedule: Literal["constant", "step", "cosine"] | Callable[[int], float] = "constant",
                    callbacks: Iterable[Callable[[History], object]] | None = None, verbose: bool = False,
                    timeout: float = 300, **fit_kwargs: Any) -> History:
    """Train ``net`` on a Dask cluster; returns a :class:`~cymlp.History` (also in ``net.history_``).

    Parameters
    ----------
    net : Network
        Trained in place: after every round it holds the averaged weights,
        so an error or Ctrl-C leaves the last averaged model.
    X, y : arrays, dask arrays, or a list of ``(X_path, y_path)`` with ``y=None``
        NumPy data is split into one random shard per worker and scattered
        once; dask arrays (chunked by rows only) train where their chunks
        live; ``.npy`` file pairs are loaded by the worker that trains on them.
    client : distributed.Client or None
        An existing client (a real cluster).  ``None`` starts a
        ``LocalCluster`` of ``n_workers`` processes (default: one per core,
        one thread each) on the loopback interface and closes it afterwards.
    n_workers : int or None
        Workers to start (``client=None``; default: one per core of the
        affinity mask), or to use of the given client's (default: all).
    threads_per_worker : int or None
        Threads of each started worker (default 1), and the ``n_threads`` of
        each replica (default: the worker's thread count).
    strategy : {"average", "sync"}
        See the module docstring.
    average_every : int or None
        ``"average"``: local steps per worker between averagings
        (None: one averaging per epoch).
    average_weighting : {"uniform", "examples"}
        ``"average"``: weight replicas equally or by the rows each processed.
    epochs, batch_size, lr, shuffle, lr_schedule, validation_data, callbacks, verbose
        As for :meth:`Network.fit`.  ``batch_size`` is per worker for
        ``"average"`` and the global batch for ``"sync"``.
    seed : int
        Seeds the shard split and each worker's shuffles.
    timeout : float
        Seconds to wait for one round before giving up on the cluster.
    **fit_kwargs
        ``optimizer``, ``momentum``, ``nesterov``, ``weight_decay``, ``beta1``,
        ``beta2``, ``eps``: as for :meth:`Network.fit`.

    Returns
    -------
    History
        One entry per epoch; ``history.bytes_per_round`` holds the bytes of
        weights sent and received per round.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a cymlp.Network, got {type(net).__name__}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if average_weighting not in WEIGHTINGS:
        raise ValueError(f"average_weighting must be one of {WEIGHTINGS}, got {average_weighting!r}")
    unknown = set(fit_kwargs) - set(_LOCAL_FIT_KEYS)
    if unknown:
        raise TypeError(f"fit_distributed got unexpected keyword arguments {sorted(unknown)}; "
                        f"it accepts {', '.join(_LOCAL_FIT_KEYS)} besides its own")
    if fit_kwargs.get("optimizer", "sgd") not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {fit_kwargs['optimizer']!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (name != "epochs"):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'epochs' else 'positive'} "
                             f"integer, got {value!r}")
    if average_every is not None and (isinstance(average_every, bool) or not isinstance(
            average_every, (int, np.integer)) or average_every < 1):
        raise ValueError(f"average_every must be a positive integer or None, got {average_every!r}")
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(
            n_workers, (int, np.integer)) or n_workers < 1):
        raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
    if not (isinstance(lr, (int, float, np.floating)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if callable(lr_schedule):
        schedule = lr_schedule
    else:
        schedule = make_schedule(lr_schedule, lr, epochs)
    if validation_data is not None:
        X_val, y_val = validation_data
        X_val = v.check_Xy(spec_of(net), X_val, y_val)[0]
    callbacks = list(callbacks or [])
    if strategy == "sync" and any(net.dropout):
        raise ValueError("strategy='sync' computes plain gradients, without dropout; use "
                         "strategy='average' for a network with dropout, or set net.dropout = 0")

    cluster = None                    # the LocalCluster this call starts (and closes), if any
    if client is None:
        cluster = LocalCluster(n_workers=n_workers or affinity_cores(), threads_per_worker=threads_per_worker or 1,
                               processes=True, host="127.0.0.1", dashboard_address=None,
                               env={"PYTHONPATH": _pythonpath_with_this_cymlp()})
        client = Client(cluster)
    else:
        if getattr(client, "status", "running") != "running":
            raise ValueError(f"the Dask client is {client.status}; pass a running client or client=None")
    try:
        trainer = _Run(net, client, strategy=strategy, average_every=average_every,
                       average_weighting=average_weighting, batch_size=batch_size, shuffle=shuffle,
                       seed=seed, settings=fit_kwargs, threads_per_worker=threads_per_worker,
                       timeout=timeout, n_workers=n_workers if cluster is None else None)
        trainer.place_data(X, y)
        history = History()
        history.bytes_per_round = trainer.bytes_per_round
        net.history_ = history
        try:
            for epoch in range(epochs):
                rate = float(schedule(epoch))
                t0 = time.perf_counter()
                loss_sum, n_seen, n_correct = trainer.epoch(epoch, rate)
                seconds = time.perf_counter() - t0
                row = dict(epoch=epoch + 1, loss=loss_sum / max(n_seen, 1), lr=rate, seconds=seconds,
                           examples_per_second=n_seen / seconds if seconds > 0 else float("inf"),
                           accuracy=n_correct / n_seen if trainer.classifier and n_seen else None)
                if validation_data is not None:
                    row["val_loss"] = net.loss(X_val, y_val)
                    if trainer.classifier and np.ndim(y_val) == 1:
                        row["val_accuracy"] = net.score(X_val, y_val)
                history.append(**row)
                if verbose:
                    print(history.format_epoch(-1, epochs), flush=True)
                if any(cb(history) is False for cb in callbacks):
                    history.stopped_early = True
                    break
        except KeyboardInterrupt:
            history.interrupted = True
            raise
        finally:
            trainer.close()
        return history
    finally:
        if cluster is not None:
            client.close()
            cluster.close()


def _pythonpath_with_this_cymlp() -> str:
    """PYTHONPATH for worker processes we start: this cymlp first, so they run the client's code."""
    import os
    parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.pathsep.join(p for p in (parent, os.environ.get("PYTHONPATH")) if p)


class _Run:
    """One ``fit_distributed`` call: shards on workers, rounds, averaging, recovery."""

    def __init__(self, net: Network, client: Client, *, strategy: str, average_every: int | None,
                 average_weighting: str, batch_size: int, shuffle: bool, seed: int, settings: dict[str, Any],
                 threads_per_worker: int | None, timeout: float, n_workers: int | None) -> None:
        self.net, self.client = net, client
        self.strategy, self.average_every = strategy, average_every
        self.weighting, self.batch_size, self.shuffle, self.seed = average_weighting, batch_size, shuffle, seed
        self.settings, self.threads, self.timeout = settings, threads_per_worker, timeout
        self.run_id = uuid.uuid4().hex
        self.classifier = net.is_classifier
        workers = self._live_workers()
        if not workers:
            raise ValueError("the Dask cluster has no workers")
        if n_workers is not None:
            workers = workers[:n_workers]
        # a worker without cymlp cannot even unpickle this check: its error counts as a "no"
        answers = client.run(worker_has_cymlp, workers=workers, on_error="return")
        missing = [w for w, ok in answers.items() if ok is not True]
        if missing:
            raise RuntimeError(f"cymlp is not importable on the Dask worker(s) {', '.join(missing)}; "
                               f"install cymlp (the same version as the client) in the workers' environment")
        self.workers = workers
        self.template = client.scatter(net.copy(), broadcast=True, hash=False)
        theta_bytes = net.get_flat_params().nbytes
        self.bytes_per_round = 2 * theta_bytes * len(workers)
        self.opt_state: tuple[list[Any], list[Any], list[int]] | None = None
        self.local_copy: tuple[Any, Any, list[Any]] | None = None   # (X, y, shard rows) when the client has them
        self.shards: list[Any] = []          # one future per shard
        self.shard_rows: list[int] = []
        self.owner: list[str] = []           # the worker of each shard
        self.n_rows = 0

    def _live_workers(self) -> list[str]:
        return sorted(self.client.scheduler_info(n_workers=-1)["workers"]) if _accepts_n_workers() else \
            sorted(self.client.scheduler_info()["workers"])

    # -- data --------------------------------------------------------------------

    def place_data(self, X: Any, y: Any) -> None:
        if y is None and isinstance(X, (list, tuple)) and X and all(
                isinstance(p, (list, tuple)) and len(p) == 2 for p in X):
            self._place_files(X)
        elif _is_dask_array(X):
            self._place_dask(X, y)
        else:
            self._place_numpy(X, y)

    def _place_numpy(self, X: Any, y: Any) -> None:
        X, Y, labels = v.check_Xy(spec_of(self.net), X, y)
        y_local = labels if labels is not None else Y
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(X)) if self.shuffle else np.arange(len(X))
        parts = [np.sort(p) for p in np.array_split(order, len(self.workers))]
        if any(len(p) == 0 for p in parts):
            raise ValueError(f"{len(X)} rows cannot be split over {len(self.workers)} workers; "
                             f"use fewer workers (n_workers=)")
        self.local_copy = (X, y_local, parts)
        self.n_rows = len(X)
        self.shards = [self.client.scatter((X[p], y_local[p], p), workers=[w], hash=False)
                       for p, w in zip(parts, self.workers)]
        self.shard_rows = [len(p) for p in parts]
        self.owner = list(self.workers)

    def _place_files(self, pairs: Sequence[tuple[PathLike, PathLike]]) -> None:
        sizes = []
        for x_path, _ in pairs:
            try:
                shape = np.load(x_path, mmap_mode="r", allow_pickle=False).shape   # reads the header only
            except (OSError, ValueError) as exc:
                raise ValueError(f"{x_path}: not a readable .npy file ({exc})") from None
            sizes.append(shape[0])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.n_rows = int(sum(sizes))
        self.owner = [self.workers[i % len(self.workers)] for i in range(len(pairs))]
        self.shards = [self.client.submit(load_shard_files, str(xp), str(yp), int(off), workers=[w],
                                          pure=False)
                       for (xp, yp), off, w in zip(pairs, offsets, self.owner)]
        self.shard_rows = sizes
        self._file_pairs = (pairs, offsets)

    def _place_dask(self, X: Any, y: Any) -> None:
        import dask
        if y is None or not _is_dask_array(y):
            raise ValueError("with a dask array X, y must be a dask array with the same row chunks")
        if len(X.chunks) != 2 or len(X.chunks[1]) != 1:
            raise ValueError("X must be a 2-D dask array chunked by rows only (X.rechunk({1: -1}))")
        if X.chunks[0] != y.chunks[0]:
            y = y.rechunk({0: X.chunks[0]})
        X, y = self.client.persist([X, y])
        _dd.wait([X, y], timeout=self.timeout)
        by_key = {f.key: f for f in _dd.futures_of([X, y])}
        futures_x = [by_key[k] for k in dask.core.flatten(X.__dask_keys__())]
        futures_y = [by_key[k] for k in dask.core.flatten(y.__dask_keys__())]
        who = self.client.who_has(futures_x)
        offsets = np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]])
        by_worker: dict[str, list[int]] = {}
        for i, future in enumerate(futures_x):
            holders = sorted(who.get(future.key, ()))
            worker = holders[0] if holders else self.workers[i % len(self.workers)]
            by_worker.setdefault(worker, []).append(i)
        self._dask_keep = (X, y)
        self.shards, self.shard_rows, self.owner = [], [], []
        for worker, chunk_ids in sorted(by_worker.items()):
            index = np.concatenate([np.arange(offsets[i], offsets[i] + X.chunks[0][i]) for i in chunk_ids])
            parts = [futures_x[i] for i in chunk_ids] + [futures_y[i] for i in chunk_ids]
            self.shards.append(self.client.submit(concat_chunks, index, *parts, workers=[worker], pure=False))
            self.shard_rows.append(len(index))
            self.owner.append(worker)
        self.n_rows = int(sum(self.shard_rows))

    # -- rounds ------------------------------------------------------------------

    def epoch(self, epoch: int, lr: float) -> tuple[float, int, int]:
        if self.strategy == "sync":
            return self._sync_epoch(epoch, lr)
        steps = max(-(-rows // self.batch_size) for rows in self.shard_rows)
        per_round = self.average_every or steps
        loss_sum, n_seen, n_correct = 0.0, 0, 0
        for first in range(0, steps, per_round):
            stop = min(steps, first + per_round)
            l_sum, seen, correct = self._average_round(epoch, first, stop, lr)
            loss_sum, n_seen, n_correct = loss_sum + l_sum, n_seen + seen, n_correct + correct
        return loss_sum, n_seen, n_correct

    def _check_owners(self) -> None:
        """Reassign the shards of workers that left since the last round."""
        live = set(self._live_workers())
        gone = [i for i, worker in enumerate(self.owner) if worker not in live]
        if gone:
            self._recover(gone)

    def _run_round(self, submit: Callable[[list[int]], list[Any]],
                   need_all: bool = False) -> dict[int, Any]:
        """Run one round: ``submit(shard_ids)`` returns one future per shard id; results by shard id.

        Survives workers that die before or during the round: their shards
        move to live workers (:meth:`_recover`).  Averaging accepts the
        shards that finished (``need_all=False``); a synchronous step
        (``need_all=True``) sends the lost shards' part again.  Three
        attempts at most.
        """
        results = {}
        todo = list(range(len(self.shards)))
        for _ in range(3):
            self._check_owners()
            try:
                futures = submit(todo)
            except (*_WORKER_LOST, OSError):       # a worker died while we sent it the round
                time.sleep(0.2)
                continue
            done, lost = self._gather(futures)
            results.update({todo[j]: result for j, result in done.items()})
            if lost:
                self._recover([todo[j] for j in lost])
            todo = [i for i in todo if i not in results]
            if not todo or (results and not need_all):
                return results
        raise RuntimeError("the cluster lost workers in three attempts at the same round; the network keeps "
                           "the weights of the last completed round")

    def _average_round(self, epoch: int, first: int, stop: int, lr: float) -> tuple[float, int, int]:
        theta = self.net.get_flat_params()

        def submit(shard_ids: list[int]) -> list[Any]:
            # the weights travel inside each task message: a scatter to a worker that has just
            # died can block indefinitely, a task message to it just fails and is redone
            theta_future = theta
            return [self.client.submit(local_round, self.run_id, i, self.template, theta_future, self.shards[i],
                                       epoch, first, stop, self.batch_size, lr, self.seed, self.shuffle,
                                       self.settings, self.threads, workers=[self.owner[i]],
                                       allow_other_workers=False, pure=False)
                    for i in shard_ids]

        results = self._run_round(submit)
        thetas = [r[0] for r in results.values()]
        rows = np.array([r[1] for r in results.values()], dtype=float)
        if rows.sum() == 0:
            return 0.0, 0, 0
        # uniform: every replica that trained counts once (Zinkevich); examples: by rows processed
        weights = rows if self.weighting == "examples" else (rows > 0).astype(float)
        weights = weights / weights.sum()
        average = np.zeros_like(theta, dtype=np.float64)
        for w, t in zip(weights, thetas):
            average += w * t
        if not np.isfinite(average).all():
            raise TrainingDiverged(f"training diverged in epoch {epoch + 1}: the averaged weights are not "
                                   f"finite at learning rate {lr:g}; the network keeps the last finite "
                                   f"average; try a smaller lr")
        self.net.set_flat_params(average.astype(theta.dtype))
        return (sum(r[2] for r in results.values()), int(rows.sum()), sum(r[3] for r in results.values()))

    def _sync_epoch(self, epoch: int, lr: float) -> tuple[float, int, int]:
        n, batch = self.n_rows, self.batch_size
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        params = [p for pair in zip(self.net.weights, self.net.biases) for p in pair]
        if self.opt_state is None:
            self.opt_state = ([np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params], [0])
        m, v, step = self.opt_state
        settings = dict(self.settings)
        loss_sum = n_seen = n_correct = 0
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            theta = self.net.get_flat_params()

            def submit(shard_ids: list[int], theta: Any = theta, rows: Any = rows) -> list[Any]:
                # small arrays travel inside the task message: no extra round trip per step
                return [self.client.submit(local_gradient, self.run_id, i, self.template, theta, self.shards[i],
                                           rows, workers=[self.owner[i]], allow_other_workers=False, pure=False)
                        for i in shard_ids]

            results = self._run_round(submit, need_all=True)
            parts = [r for r in results.values() if r[1]]
            total_rows = sum(r[1] for r in parts)
            if total_rows != len(rows):
                raise RuntimeError(f"step lost rows ({total_rows} of {len(rows)}) after a worker failure")
            flat = sum(r[0] for r in parts) / total_rows
            grads, offset = [], 0
            for p in params:
                grads.append(flat[offset:offset + p.size].reshape(p.shape).astype(p.dtype))
                offset += p.size
            decays = [True, False] * len(self.net.weights)
            step[0] += 1
            with np.errstate(over="ignore", invalid="ignore"):
                if settings.get("optimizer", "sgd") == "adam":
                    reference.adam_update(params, grads, m, v, step[0], lr, settings.get("beta1", 0.9),
                                          settings.get("beta2", 0.999), settings.get("eps", 1e-8), decays,
                                          settings.get("weight_decay", 0.0))
                else:
                    reference.sgd_update(params, grads, m, lr, settings.get("momentum", 0.9),
                                         settings.get("nesterov", False), decays,
                                         settings.get("weight_decay", 0.0))
            loss_sum += sum(r[2] for r in parts)
            n_seen += total_rows
            n_correct += sum(r[3] for r in parts)
            if not np.isfinite(loss_sum) or not all(np.isfinite(p).all() for p in params):
                raise TrainingDiverged(f"training diverged in epoch {epoch + 1} at learning rate {lr:g}; "
                                       f"try a smaller lr")
        return loss_sum, n_seen, n_correct

    def _gather(self, futures: list[Any]) -> tuple[dict[int, Any], list[int]]:
        """Results by shard index, and the indices of shards whose worker was lost.

        Polls, so that a task pinned to a worker that died (and will never
        run) is noticed instead of waited for until the timeout.
        """
        deadline = time.monotonic() + self.timeout
        pending = dict(enumerate(futures))
        results, lost = {}, []
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"a round took longer than timeout={self.timeout} s; the network keeps "
                                   f"the weights of the last completed round")
            try:
                _dd.wait(list(pending.values()), timeout=0.25, return_when="FIRST_COMPLETED")
            except (TimeoutError, CancelledError):
                pass                        # cancelled futures are sorted out below
            except OSError as exc:
                raise RuntimeError(f"lost the Dask scheduler ({exc}); the network keeps the weights of "
                                   f"the last completed round") from None
            live = None
            for i, future in list(pending.items()):
                if future.status in ("finished", "error"):
                    # a result can still vanish with its worker between the status and the fetch
                    try:
                        results[i] = future.result()
                    except _WORKER_LOST:
                        pass                     # redone elsewhere (see _recover)
                elif future.status in ("cancelled", "lost"):
                    pass
                else:
                    if live is None:
                        live = set(self._live_workers())
                    if self.owner[i] in live:
                        continue
                    future.cancel()
                lost += [i] if i not in results else []
                del pending[i]
        return results, lost

    def _recover(self, lost: list[int]) -> None:
        """Give each lost shard to a live worker, from the client's copy or the data's recipe."""
        live = self._live_workers()
        live = [w for w in live if w in set(self.workers) | set(live)]
        if not live:
            raise RuntimeError("every Dask worker is gone; the network keeps the weights of the last "
                               "completed round")
        warnings.warn(f"{len(lost)} shard(s) lost with their worker; continuing on {len(live)} live worker(s) "
                      f"from the last averaged weights", RuntimeWarning, stacklevel=4)
        for j, i in enumerate(lost):
            target = live[j % len(live)]
            self.owner[i] = target
            if self.local_copy is not None:
                X, y, parts = self.local_copy
                p = parts[i]
                self.shards[i] = self.client.scatter((X[p], y[p], p), workers=[target], hash=False, timeout=60)
            elif hasattr(self, "_file_pairs"):
                pairs, offsets = self._file_pairs
                xp, yp = pairs[i]
                self.shards[i] = self.client.submit(load_shard_files, str(xp), str(yp), int(offsets[i]),
                                                    workers=[target], pure=False)
            else:
                self.shards[i] = self.client.submit(lambda shard: shard, self.shards[i], workers=[target],
                                                    pure=False)

    def close(self) -> None:
        try:
            self.client.run(forget, self.run_id)
        except Exception:
            pass


def _is_dask_array(x: object) -> bool:
    return type(x).__module__.startswith("dask.array")


def _accepts_n_workers() -> bool:
    import inspect
    return "n_workers" in inspect.signature(Client.scheduler_info).parameters
