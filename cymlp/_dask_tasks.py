"""What runs on a Dask worker for :func:`cymlp.distributed.fit_distributed`.

Module-level functions, so that a task pickles as a reference to this module
(the workers import cymlp; the client starts its own workers with this
cymlp first on ``PYTHONPATH``).  Each worker keeps the replicas of the
shards it trains in :data:`REPLICAS` until the run forgets them.
"""

import numpy as np

REPLICAS = {}        # (run id, shard id) -> Network, on each worker


def worker_has_cymlp():
    import importlib.util
    return importlib.util.find_spec("cymlp") is not None


def load_shard_files(x_path, y_path, offset):
    """A file shard, loaded on the worker that trains on it (regular files only: never blocks)."""
    from ._files import open_regular
    with open_regular(x_path, "shard file") as fx, open_regular(y_path, "shard file") as fy:
        X = np.load(fx, allow_pickle=False)
        y = np.load(fy, allow_pickle=False)
    return X, y, np.arange(offset, offset + len(X))


def concat_chunks(offset, *chunks):
    """A dask-array shard: this worker's X and y chunks, joined where they already live."""
    half = len(chunks) // 2
    X = np.concatenate(chunks[:half]) if half > 1 else chunks[0]
    y = np.concatenate(chunks[half:]) if half > 1 else chunks[half]
    return X, y, offset


def replica(run_id, shard_id, template, n_threads):
    key = (run_id, shard_id)
    if key not in REPLICAS:
        net = template.copy()
        if n_threads is None:
            try:
                from distributed import get_worker
                n_threads = get_worker().state.nthreads
            except (ValueError, AttributeError):
                n_threads = 1
        net.n_threads = n_threads
        REPLICAS[key] = net
    return REPLICAS[key]


def local_round(run_id, shard_id, template, theta, shard, epoch, first, stop, batch_size, lr,
                 seed, shuffle, settings, n_threads):
    """Train the replica of ``shard_id`` on local steps ``first .. stop-1`` of ``epoch``.

    Returns ``(theta, n_rows, loss_sum, n_correct)`` after the steps.
    """
    X, y, _ = shard
    net = replica(run_id, shard_id, template, n_threads)
    net.set_flat_params(theta)
    n = len(X)
    order = (np.random.default_rng([seed, shard_id, epoch]).permutation(n) if shuffle
             else np.arange(n))
    rows = order[first * batch_size:stop * batch_size]
    if len(rows) == 0:
        return theta, 0, 0.0, 0
    Xr, yr = X[rows], y[rows]
    if hasattr(net, "partial_fit"):
        # keeps the replica's optimizer state across rounds
        net.partial_fit(Xr, yr, batch_size=batch_size, lr=lr, shuffle=False, **settings)
        history = net.history_
    else:
        history = net.fit(Xr, yr, epochs=1, batch_size=batch_size, lr=lr, shuffle=False, **settings)
    loss = history.loss[-1] if len(history) else float("nan")
    accuracy = history.accuracy[-1] if len(history) and history.accuracy[-1] is not None else 0.0
    return net.get_flat_params(), len(rows), loss * len(rows), int(round(accuracy * len(rows)))


def local_gradient(run_id, shard_id, template, theta, shard, global_rows):
    """Sum over this shard's rows of ``global_rows`` of the per-row loss gradient."""
    X, y, index = shard
    local = np.flatnonzero(np.isin(index, global_rows))
    if len(local) == 0:
        return None, 0, 0.0, 0
    net = replica(run_id, shard_id, template, 1)
    net.set_flat_params(theta)
    X_part, y_part = X[local], y[local]
    loss = net.loss(X_part, y_part)              # before the step, as fit reports it
    grads_w, grads_b = net.backprop(X_part, y_part)
    flat = np.concatenate([g.ravel() for pair in zip(grads_w, grads_b) for g in pair])
    correct = 0
    if net.is_classifier and np.ndim(y) == 1:
        correct = int(np.sum(net.predict(X_part) == y_part))
    return flat * len(local), len(local), float(loss) * len(local), correct


def forget(run_id):
    for key in [k for k in REPLICAS if k[0] == run_id]:
        del REPLICAS[key]
