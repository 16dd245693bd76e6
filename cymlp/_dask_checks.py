"""Every argument of :func:`cymlp.distributed.fit_distributed`, checked on the client before any
cluster is started or touched.

The training settings go through ``fit``'s own checks (:mod:`cymlp._fit_checks`: the optimizer
and its hyper-parameters, ``lr``, ``epochs``, ``batch_size``, the callbacks, and ``lr_schedule``
with its ``(epoch, epochs, lr)`` signature and its first rate checked); the numbers only
``fit_distributed`` has (``timeout``, ``n_workers``, ``threads_per_worker``, ``average_every``)
get finite, sane ranges; the data is checked where it is (NumPy arrays as ``fit`` checks them,
``.npy`` shard files from their headers, dask arrays from their chunks).  Imports no Dask.
"""

import inspect
from dataclasses import asdict, dataclass

import numpy as np

from . import _fit_checks, _threads
from . import _validation as v
from ._files import open_regular
from ._network_fit import NetworkFit
from ._spec import spec_of
from .training_state import OptimizerConfig

STRATEGIES = ("average", "sync")
# The keyword arguments of Network.fit that fit_distributed passes on (the optimizer's settings).
FIT_KEYS = ("optimizer", "momentum", "nesterov", "weight_decay", "beta1", "beta2", "eps")
MAX_TIMEOUT_S = 7 * 24 * 3600          # a round (or a connection) may take up to a week
MAX_WORKERS = 100_000                  # an existing cluster's workers to use


@dataclass(frozen=True)
class DaskRun:
    """The checked arguments of one ``fit_distributed`` call."""
    strategy: str
    average_every: int | None
    average_weighting: str
    epochs: int
    batch_size: int
    lr: float
    schedule: object                   # epoch -> rate, checked (cymlp._fit_checks.make_schedule)
    optimizer: OptimizerConfig
    shuffle: bool
    seed: int
    callbacks: tuple
    validation: tuple | None           # (X_val, y_val) checked, or None
    data: tuple                        # ("numpy", X, y) | ("files", pairs, rows) | ("dask", X, y)
    n_workers: int | None
    threads_per_worker: int | None
    timeout: float

    @property
    def fit_settings(self):
        """The optimizer's settings as keyword arguments of ``Network.fit``/``partial_fit``."""
        settings = asdict(self.optimizer)
        settings["optimizer"] = settings.pop("name")
        return settings


def fit_defaults():
    """``Network.fit``'s defaults for :data:`FIT_KEYS` (one source: its signature)."""
    parameters = inspect.signature(NetworkFit.fit).parameters
    return {name: parameters[name].default for name in FIT_KEYS}


def check_arguments(net, X, y, *, client, n_workers, threads_per_worker, strategy, average_every,
                    average_weighting, epochs, batch_size, lr, shuffle, seed, validation_data,
                    lr_schedule, callbacks, timeout, fit_kwargs):
    """Check every argument of ``fit_distributed``; returns a :class:`DaskRun`."""
    from .network import Network
    if not isinstance(net, Network):
        raise TypeError(f"net must be a cymlp.Network, got {type(net).__name__}")
    unknown = set(fit_kwargs) - set(FIT_KEYS)
    if unknown:
        raise TypeError(f"fit_distributed got unexpected keyword arguments {sorted(unknown)}; "
                        f"it accepts {', '.join(FIT_KEYS)} besides its own")
    v.check_choice("strategy", strategy, STRATEGIES)
    v.check_choice("average_weighting", average_weighting, _fit_checks.AVERAGE_WEIGHTINGS)
    optimizer = _fit_checks.check_optimizer(**{**fit_defaults(), **fit_kwargs})
    epochs = v.check_positive_int("epochs", epochs, minimum=0)
    batch_size = v.check_positive_int("batch_size", batch_size)
    lr = v.check_real("lr", lr, low=0, low_open=True)
    if average_every is not None:
        average_every = v.check_positive_int("average_every", average_every)
    seed = v.check_seed(seed)
    if seed is None:
        raise ValueError("fit_distributed needs an integer seed >= 0 (it seeds the shard split and "
                         "each worker's shuffles)")
    timeout = v.check_real("timeout", timeout, low=0, low_open=True, high=MAX_TIMEOUT_S)
    if n_workers is not None:
        limit = MAX_WORKERS if client is not None else 4 * max(_threads.affinity_cores(), 64)
        n_workers = v.check_positive_int("n_workers", n_workers)
        if n_workers > limit:
            raise ValueError(f"n_workers={n_workers} is absurd here; use at most {limit:,}"
                             + ("" if client is not None else " local worker processes"))
    try:                              # each replica's n_threads: checked as n_threads is
        threads_per_worker = _threads.check_n_threads(threads_per_worker)
    except (TypeError, ValueError) as exc:
        raise type(exc)(str(exc).replace("n_threads", "threads_per_worker")) from None
    schedule = _fit_checks.make_schedule(lr_schedule, lr, epochs)
    callbacks = _fit_checks.check_callbacks(callbacks)
    if strategy == "sync" and any(net.dropout):
        raise ValueError("strategy='sync' computes plain gradients, without dropout; use "
                         "strategy='average' for a network with dropout, or set net.dropout = 0")
    if not np.isfinite(net.get_flat_params()).all():
        raise ValueError("the network's parameters contain NaN or infinity; set finite weights "
                         "(or build a new Network) before training")
    spec = spec_of(net)
    validation = None
    if validation_data is not None:
        try:
            X_val, y_val = validation_data
        except (TypeError, ValueError):
            raise ValueError("validation_data must be a pair (X_val, y_val)") from None
        validation = (v.check_Xy(spec, X_val, y_val, "validation X", "validation y")[0], y_val)
    data = check_data(spec, X, y)
    if epochs > 0:
        schedule(0)                   # a callable schedule's first rate, checked before the cluster
    return DaskRun(strategy, average_every, average_weighting, epochs, batch_size, lr, schedule,
                   optimizer, bool(shuffle), seed, callbacks, validation, data, n_workers,
                   threads_per_worker, timeout)


def check_data(spec, X, y):
    """The training data, checked where it is; see :attr:`DaskRun.data`."""
    if y is None and isinstance(X, (list, tuple)) and X and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in X):
        return ("files", [(str(xp), str(yp)) for xp, yp in X], _file_rows(X))
    if _is_dask_array(X):
        return ("dask", *_check_dask(X, y))
    X, Y, labels = v.check_Xy(spec, X, y)
    return ("numpy", X, labels if labels is not None else Y)


def _file_rows(pairs):
    rows = []
    for x_path, y_path in pairs:
        n_x, n_y = npy_rows(x_path), npy_rows(y_path)
        if n_x != n_y:
            raise ValueError(f"{x_path} has {n_x} rows but {y_path} has {n_y}; each pair holds the "
                             f"inputs and the targets of the same rows")
        rows.append(n_x)
    return rows


def npy_rows(path):
    """The number of rows of the ``.npy`` file ``path``, from its header (regular files only)."""
    try:
        with open_regular(path, "shard file") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape = read_header(f)[0]
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npy file ({exc})") from None
    if len(shape) < 1:
        raise ValueError(f"{path}: holds a 0-d array; a shard needs one row per example")
    return shape[0]


def _check_dask(X, y):
    if y is None or not _is_dask_array(y):
        raise ValueError("with a dask array X, y must be a dask array with the same row chunks")
    if X.ndim != 2 or len(X.chunks[1]) != 1:
        raise ValueError("X must be a 2-D dask array chunked by rows only (X.rechunk({1: -1}))")
    for name, array in (("X", X), ("y", y)):
        if any(np.isnan(n) for n in array.chunks[0]):
            raise ValueError(f"{name} has unknown chunk sizes (after boolean indexing or a "
                             f"dataframe's .values, for example); call {name}.compute_chunk_sizes() "
                             f"first, or use .to_dask_array(lengths=True)")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows but X has {X.shape[0]}; they must match")
    return X, y


def _is_dask_array(x):
    return type(x).__module__.startswith("dask.array")
