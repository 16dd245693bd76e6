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
(from the client's copy, or recomputed by Dask) to a surviving worker.  A
scheduler that goes away raises :class:`SchedulerLost` (a ``RuntimeError``)
within seconds, the network keeping the last averaged weights.
"""

import contextlib
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from . import reference
from ._dask_checks import STRATEGIES, check_arguments
from ._dask_tasks import (
    concat_chunks,
    forget,
    load_shard_files,
    local_gradient,
    local_round,
    worker_has_cymlp,
)
from ._threads import affinity_cores
from ._typing import PathLike
from .exceptions import SchedulerLost, TrainingDiverged
from .history import History
from .network import Network

try:
    import dask
    import distributed as _dd
    from distributed import Client, LocalCluster
except ImportError as exc:            # pragma: no cover - exercised only without Dask
    raise ImportError("cymlp.distributed needs Dask: pip install \"dask[distributed]\"") from exc

__all__ = ["STRATEGIES", "SchedulerLost", "connect", "fit_distributed"]

# What a task raises when its worker (or its input's worker) went away, as opposed to an error of
# the task itself, which is the caller's to see.
_WORKER_LOST = (CancelledError, _dd.client.FutureCancelledError, _dd.scheduler.KilledWorker,
                _dd.comm.CommClosedError)
# How long a client that lost its scheduler may take to say so, after a future was cancelled.
SCHEDULER_GRACE_S = 1.0
# The longest a live scheduler may take to list its workers (a dead one is noticed sooner).
SCHEDULER_CALL_S = 5.0
# What a call to a scheduler that went away raises (after its connect time-out).
_SCHEDULER_GONE = (OSError, _dd.comm.CommClosedError, _dd.client.FutureCancelledError)



def fit_distributed(net: Network, X: npt.ArrayLike | Sequence[tuple[PathLike, PathLike]],
                    y: npt.ArrayLike | None = None, *, client: Client | str | None = None,
                    n_workers: int | None = None, threads_per_worker: int | None = None,
                    strategy: Literal["average", "sync"] = "average", average_every: int | None = None,
                    average_weighting: Literal["uniform", "examples"] = "uniform", epochs: int = 10,
                    batch_size: int = 64, lr: float = 0.05, shuffle: bool = True, seed: int = 0,
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
    client : distributed.Client, str or None
        An existing client (a real cluster), or a scheduler address such as
        ``"tcp://host:8786"`` (connected with :func:`connect`).  ``None`` uses
        the current default client when there is one (Dask's ``get_client``
        convention), else starts a ``LocalCluster`` of ``n_workers`` processes
        (default: one per core, one thread each) on the loopback interface
        and closes it afterwards (a script doing that needs the
        ``if __name__ == "__main__":`` guard).
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
        Seconds to wait for one round before giving up on the cluster
        (finite, > 0, at most a week).
    **fit_kwargs
        ``optimizer``, ``momentum``, ``nesterov``, ``weight_decay``, ``beta1``,
        ``beta2``, ``eps``: as for :meth:`Network.fit`.

    Returns
    -------
    History
        One entry per epoch; ``history.bytes_per_round`` holds the bytes of
        weights sent and received per round.

    Raises
    ------
    ValueError, TypeError
        A bad argument, before any cluster is started or touched (the
        training settings get ``Network.fit``'s own checks).
    SchedulerLost
        The scheduler went away mid-fit (within a few seconds of it); ``net``
        keeps the averaged weights of the last completed round.
    """
    run = check_arguments(net, X, y, client=client, n_workers=n_workers,
                          threads_per_worker=threads_per_worker, strategy=strategy,
                          average_every=average_every, average_weighting=average_weighting,
                          epochs=epochs, batch_size=batch_size, lr=lr, shuffle=shuffle, seed=seed,
                          validation_data=validation_data, lr_schedule=lr_schedule,
                          callbacks=callbacks, timeout=timeout, fit_kwargs=fit_kwargs)
    client, cluster = _client_for(client, run)
    try:
        trainer = _Run(net, client, run, use_all=cluster is not None)
        trainer.place_data(run.data)
        history = History()
        history.bytes_per_round = trainer.bytes_per_round
        net.history_ = history
        try:
            for epoch in range(run.epochs):
                rate = float(run.schedule(epoch))
                t0 = time.perf_counter()
                loss_sum, n_seen, n_correct = trainer.epoch(epoch, rate)
                seconds = time.perf_counter() - t0
                row = dict(epoch=epoch + 1, loss=loss_sum / max(n_seen, 1), lr=rate, seconds=seconds,
                           examples_per_second=n_seen / seconds if seconds > 0 else float("inf"),
                           accuracy=n_correct / n_seen if trainer.classifier and n_seen else None)
                if run.validation is not None:
                    row["val_loss"] = net.loss(*run.validation)
                    if trainer.classifier and np.ndim(run.validation[1]) == 1:
                        row["val_accuracy"] = net.score(*run.validation)
                history.append(**row)
                if verbose:
                    print(history.format_epoch(-1, run.epochs), flush=True)
                if any(cb(history) is False for cb in run.callbacks):
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


def _client_for(client: Client | str | None, run: Any) -> tuple[Client, LocalCluster | None]:
    """``(client, cluster)``: the client to use and the LocalCluster started for it (or None).

    A ``Client`` is used as given; an address string is connected to with
    :func:`connect`; None uses the current default client (Dask's
    ``get_client`` convention) when there is one, else starts a LocalCluster.
    """
    if isinstance(client, str):
        client = connect(client)
    elif client is None:
        try:
            client = _dd.get_client()
        except ValueError:            # no default client: start our own cluster
            cluster = LocalCluster(n_workers=run.n_workers or affinity_cores(),
                                   threads_per_worker=run.threads_per_worker or 1, processes=True,
                                   host="127.0.0.1", dashboard_address=None,
                                   env={"PYTHONPATH": _pythonpath_with_this_cymlp()})
            return Client(cluster, set_as_default=False), cluster
    elif not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client, a scheduler address or None; got "
                        f"{type(client).__name__}")
    if getattr(client, "status", "running") != "running":
        raise ValueError(f"the Dask client is {client.status}; pass a running client or client=None")
    return client, None


def connect(address: str, timeout: float | None = None) -> Client:
    """A ``distributed.Client`` connected to the scheduler at ``address``.

    Parameters
    ----------
    address : str
        The scheduler's address, e.g. ``"tcp://host:8786"``.
    timeout : float or None
        Seconds to wait for the connection; None: Dask's configuration
        ``distributed.comm.timeouts.connect`` (30 s unless set otherwise,
        e.g. with ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).

    Returns
    -------
    distributed.Client
        Connected (not made the default client); close it when done.

    Raises
    ------
    ValueError
        ``address`` is not a scheduler address, or ``timeout`` is not a
        positive number of seconds.
    ConnectionError
        Its host name does not resolve ("unknown host ...").
    TimeoutError
        No scheduler answered within ``timeout`` seconds.
    """
    from . import _validation as v
    from ._dask_checks import MAX_TIMEOUT_S
    if timeout is None:
        timeout = dask.utils.parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"),
                                             default="seconds")
        source = "Dask's distributed.comm.timeouts.connect"
    else:
        source = "timeout"
    timeout = v.check_real("timeout", timeout, low=0, low_open=True, high=MAX_TIMEOUT_S)
    if not isinstance(address, str):
        raise ValueError(f"a scheduler address is a string such as 'tcp://host:8786'; got {address!r}")
    try:
        host, _ = _dd.comm.parse_host_port(_dd.comm.parse_address(address)[1])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{address!r} is not a scheduler address such as tcp://host:8786 ({exc})") from None
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        raise ConnectionError(f"unknown host {host!r} in the scheduler address {address!r}: the name "
                              f"does not resolve; check the spelling, or use the scheduler's IP "
                              f"address") from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise TimeoutError(f"no Dask scheduler answered at {address} within {timeout:g} s ({source}; "
                           f"is `dask scheduler` running there, and is the port open?): "
                           f"{type(exc).__name__}") from None


def _pythonpath_with_this_cymlp():
    """PYTHONPATH for worker processes we start: this cymlp first, so they run the client's code."""
    import os
    parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.pathsep.join(p for p in (parent, os.environ.get("PYTHONPATH")) if p)


class _Run:
    """One ``fit_distributed`` call: shards on workers, rounds, averaging, recovery."""

    def __init__(self, net, client, run, use_all):
        self.net, self.client = net, client
        self.strategy, self.average_every = run.strategy, run.average_every
        self.weighting, self.batch_size, self.shuffle, self.seed = (
            run.average_weighting, run.batch_size, run.shuffle, run.seed)
        self.settings, self.threads, self.timeout = run.fit_settings, run.threads_per_worker, run.timeout
        self.optimizer = run.optimizer
        n_workers = None if use_all else run.n_workers
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
        self.opt_state = None
        self.scheduler_lost = False

    def _live_workers(self):
        self._check_scheduler()
        kwargs = {"n_workers": -1} if _accepts_n_workers() else {}
        try:    # bounded: a call to a scheduler that just died retries connecting for its whole time-out
            info = self.client.sync(self.client.scheduler.identity, callback_timeout=SCHEDULER_CALL_S,
                                    **kwargs)
        except (*_SCHEDULER_GONE, TimeoutError) as exc:
            self._check_scheduler(wait=SCHEDULER_GRACE_S)
            raise SchedulerLost(self._lost(f"{type(exc).__name__}: {exc}")) from None
        return sorted(info["workers"])

    def _check_scheduler(self, wait=0.0):
        """Raise :class:`SchedulerLost` when the client has lost the scheduler (after ``wait`` s)."""
        deadline = time.monotonic() + wait
        while self.client.status != "running":
            if time.monotonic() >= deadline:
                raise SchedulerLost(self._lost(f"the client is {self.client.status}"))
            time.sleep(0.05)

    def _lost(self, why):
        self.scheduler_lost = True          # close() must not wait on it (a call retries for its time-out)
        address = getattr(getattr(self.client, "scheduler", None), "address", "?")
        return (f"lost the Dask scheduler at {address} ({why}); the network keeps the averaged weights "
                f"of the last completed round. Start the scheduler again and call fit_distributed "
                f"to continue from them")

    # -- data --------------------------------------------------------------------

    def place_data(self, data):
        """Put the checked data (``DaskRun.data``) on the workers, one shard each."""
        self.local_copy = None       # (X, y, shard rows) when the client holds the data
        kind, *parts = data
        {"files": self._place_files, "dask": self._place_dask, "numpy": self._place_numpy}[kind](*parts)

    def _place_numpy(self, X, y_local):
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

    def _place_files(self, pairs, sizes):
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.n_rows = int(sum(sizes))
        self.owner = [self.workers[i % len(self.workers)] for i in range(len(pairs))]
        self.shards = [self.client.submit(load_shard_files, xp, yp, int(off), workers=[w], pure=False)
                       for (xp, yp), off, w in zip(pairs, offsets, self.owner)]
        self.shard_rows = sizes
        self._file_pairs = (pairs, offsets)

    def _place_dask(self, X, y):
        if X.chunks[0] != y.chunks[0]:
            y = y.rechunk({0: X.chunks[0]})
        X, y = self.client.persist([X, y])
        with self.client.as_current():
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

    def epoch(self, epoch, lr):
        if self.strategy == "sync":
            return self._sync_epoch(epoch, lr)
        steps = max(-(-rows // self.batch_size) for rows in self.shard_rows)
        per_round = self.average_every or steps
        loss_sum = n_seen = n_correct = 0
        for first in range(0, steps, per_round):
            stop = min(steps, first + per_round)
            l_sum, seen, correct = self._average_round(epoch, first, stop, lr)
            loss_sum, n_seen, n_correct = loss_sum + l_sum, n_seen + seen, n_correct + correct
        return loss_sum, n_seen, n_correct

    def _check_owners(self):
        """Reassign the shards of workers that left since the last round."""
        live = set(self._live_workers())
        gone = [i for i, worker in enumerate(self.owner) if worker not in live]
        if gone:
            self._recover(gone)

    def _run_round(self, submit, need_all=False):
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
                self._check_scheduler(wait=0.2)    # ... unless it is the scheduler that did
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

    def _average_round(self, epoch, first, stop, lr):
        theta = self.net.get_flat_params()

        def submit(shard_ids):
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

    def _sync_epoch(self, epoch, lr):
        n, batch = self.n_rows, self.batch_size
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        params = [p for pair in zip(self.net.weights, self.net.biases) for p in pair]
        if self.opt_state is None:
            self.opt_state = ([np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params], [0])
        m, v, step = self.opt_state
        opt = self.optimizer
        loss_sum = n_seen = n_correct = 0
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            theta = self.net.get_flat_params()

            def submit(shard_ids, theta=theta, rows=rows):
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
                if opt.name == "adam":
                    reference.adam_update(params, grads, m, v, step[0], lr, opt.beta1, opt.beta2, opt.eps,
                                          decays, opt.weight_decay)
                else:
                    reference.sgd_update(params, grads, m, lr, opt.momentum, opt.nesterov, decays,
                                         opt.weight_decay)
            loss_sum += sum(r[2] for r in parts)
            n_seen += total_rows
            n_correct += sum(r[3] for r in parts)
            if not np.isfinite(loss_sum) or not all(np.isfinite(p).all() for p in params):
                raise TrainingDiverged(f"training diverged in epoch {epoch + 1} at learning rate {lr:g}; "
                                       f"try a smaller lr")
        return loss_sum, n_seen, n_correct

    def _gather(self, futures):
        """Results by shard index, and the indices of shards whose worker was lost.

        Polls, so that a task pinned to a worker that died (and will never
        run) is noticed instead of waited for until the timeout.
        """
        deadline = time.monotonic() + self.timeout
        pending = dict(enumerate(futures))
        results, lost = {}, []
        while pending:
            self._check_scheduler()           # a lost scheduler cancels every future: not lost workers
            if time.monotonic() > deadline:
                raise RuntimeError(f"a round took longer than timeout={self.timeout} s; the network keeps "
                                   f"the weights of the last completed round")
            try:
                with self.client.as_current():        # distributed.wait uses the current client
                    _dd.wait(list(pending.values()), timeout=0.25, return_when="FIRST_COMPLETED")
            except (TimeoutError, CancelledError):
                pass                        # cancelled futures are sorted out below
            except OSError as exc:
                raise SchedulerLost(self._lost(f"{type(exc).__name__}: {exc}")) from None
            live = None
            for i, future in list(pending.items()):
                if future.status in ("finished", "error"):
                    # a result can still vanish with its worker between the status and the fetch
                    try:
                        results[i] = future.result()
                    except _WORKER_LOST:
                        pass                     # redone elsewhere (see _recover)
                elif future.status in ("cancelled", "lost"):
                    self._check_scheduler(wait=SCHEDULER_GRACE_S)   # cancelled with the scheduler?
                else:
                    if live is None:
                        live = set(self._live_workers())
                    if self.owner[i] in live:
                        continue
                    future.cancel()
                lost += [i] if i not in results else []
                del pending[i]
        return results, lost

    def _recover(self, lost):
        """Give each lost shard to a live worker, from the client's copy or the data's recipe."""
        live = self._live_workers()            # SchedulerLost, not a warning, if it was the scheduler
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

    def close(self):
        if self.scheduler_lost or self.client.status != "running":
            return                  # the scheduler is gone, and the workers' replicas with it
        with contextlib.suppress(Exception):
            self.client.run(forget, self.run_id)


def _accepts_n_workers():
    import inspect
    return "n_workers" in inspect.signature(Client.scheduler_info).parameters
