"""The training state a network keeps between fits: what ``fit(..., resume=True)`` continues.

Public: :class:`TrainingState` (``net.training_state_``, also ``cymlp.TrainingState``)
and :class:`OptimizerConfig` (its ``optimizer``).

A :class:`TrainingState` is made by the first ``fit`` (or ``partial_fit``)
and lives in ``net.training_state_`` (``None`` before any training).  It
holds what a trainer needs, beyond the weights, to continue exactly where it
stopped:

``optimizer``
    The :class:`OptimizerConfig` the state was made with
    (name and hyper-parameters); resuming with other settings is refused.
``m``, ``v``
    Flat buffers laid out like the parameters (see
    :func:`cymlp._spec.layer_views`): the momentum velocity or Adam's first
    moment, and Adam's second moment (``None`` for SGD).  The trainers of
    both backends write into these arrays in place: they are the trainers'
    own buffers, never copies.
``step``
    Optimizer steps taken so far (Adam's ``t``): the global index of the
    next step, counted from 0.  A trainer reads it when made and advances it
    with every step; :attr:`step` is current after each ``Trainer.run``.
``epoch``
    Completed epochs: the index of the next epoch, which the learning-rate
    schedule sees, counted across resumed fits.  While an epoch runs it is
    that epoch's index (the loop sets ``epoch + 1`` when the epoch
    completes), so a trainer reads the current epoch as ``state.epoch``.
``seed``
    The training seed: keys the validation split and, with ``epoch`` and
    ``step``, the dropout masks (see :func:`dropout_seed`).  It is
    the network's ``seed``, or the one given to ``Network.reseed``.

The shuffle generator is the network's own (reset by ``Network.reseed``);
it travels with the network (pickle, ``copy``) and is written
with the training state by ``save``.  ``meta`` is a small JSON-able dict
for tools that resume a run (the command line keeps its settings there).
"""

import ctypes
import json
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_COUNTER", "MAX_META_BYTES", "MAX_META_DEPTH", "OPTIMIZERS", "OptimizerConfig",
           "TrainingState"]

OPTIMIZERS = ("sgd", "adam")

#: ``step`` and ``epoch`` stay at or below this on every backend: the largest value of the
#: compiled trainer's step counter, a C ``long`` (2**63 - 1 on 64-bit Linux and macOS).  Checked
#: when a file is loaded and before a resumed fit, so the NumPy path (whose Python ints would go
#: on) refuses exactly what the compiled path cannot represent.
MAX_COUNTER = 2 ** (8 * ctypes.sizeof(ctypes.c_long) - 1) - 1
#: ``meta`` is a JSON object of at most this many bytes (as UTF-8 JSON), checked by save, load,
#: copy, pickling and a resumed fit.
MAX_META_BYTES = 16 * 1024
#: ``meta`` nests at most this deep (the object itself is depth 1).
MAX_META_DEPTH = 16


@dataclass(frozen=True)
class OptimizerConfig:
    """How one step turns a mean gradient into a parameter update (``Network.fit``'s settings).

    Parameters
    ----------
    name : {"sgd", "adam"}
        The optimizer.
    momentum : float
        SGD momentum μ in [0, 1): v ← μ·v + g, W ← W − lr·v.
    nesterov : bool
        Nesterov momentum (SGD).
    weight_decay : float
        L2 penalty λ >= 0 on the weights (not the biases): g ← g + λ·W.
    beta1, beta2, eps : float
        Adam's constants.
    """
    name: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


# Fields of the optimizer that define what the buffers mean, per optimizer:
# resuming with another value of any of them is refused.
STATE_FIELDS = {"sgd": ("momentum", "nesterov", "weight_decay"),
                "adam": ("beta1", "beta2", "eps", "weight_decay")}


def check_meta(meta):
    """Check ``meta`` against its bounds; returns its JSON text.

    Parameters
    ----------
    meta : dict
        A training state's ``meta``.

    Returns
    -------
    str
        ``meta`` as JSON (what :meth:`TrainingState.copy` and ``save`` use).

    Raises
    ------
    ValueError
        ``meta`` is not a JSON object with string keys, holds something JSON
        cannot (a set, an array, an object), is nested deeper than
        :data:`MAX_META_DEPTH` or longer than :data:`MAX_META_BYTES`.
    """
    if not isinstance(meta, dict):
        raise ValueError(f"a training state's meta must be a dict (a JSON object); got "
                         f"{type(meta).__name__}")
    stack, seen = [(meta, 1)], 0
    while stack:                       # iterative: a deep or cyclic meta cannot exhaust the stack
        item, depth = stack.pop()
        seen += 1
        if depth > MAX_META_DEPTH or seen > MAX_META_BYTES:
            raise ValueError(f"a training state's meta may nest at most {MAX_META_DEPTH} levels "
                             f"deep and hold at most {MAX_META_BYTES:,} bytes of JSON")
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict) and not all(isinstance(key, str) for key in item):
            raise ValueError("a training state's meta must have string keys (JSON objects do)")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a training state's meta must hold JSON values only (dicts, lists, "
                         f"strings, numbers, booleans, None): {exc}") from None
    if len(text.encode("utf-8")) > MAX_META_BYTES:
        raise ValueError(f"a training state's meta is {len(text.encode('utf-8')):,} bytes of JSON, "
                         f"more than the {MAX_META_BYTES:,} allowed; keep large data elsewhere")
    return text


def _check_counter(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"its {name} must be an integer; got {value!r}")
    if not 0 <= value <= MAX_COUNTER:
        raise ValueError(f"its {name} must be in 0..{MAX_COUNTER} (what every backend's counter "
                         f"holds); got {value}")


def resolve_seed(seed):
    """``seed``, or a seed drawn from the operating system when it is None."""
    if seed is not None:
        return seed
    return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])


def dropout_seed(seed):
    """The 64-bit seed of the dropout masks for a training seed (0 when there is none).

    The masks of a step are keyed by ``(dropout_seed(state.seed), state.epoch,
    state.step)`` (see :func:`cymlp.reference.dropout_masks`), so a resumed
    fit draws the masks the uninterrupted fit would have drawn.
    """
    return 0 if seed is None else int(seed) % 2**64


class TrainingState:
    """Optimizer buffers and counters of a network's training (see the module docstring).

    Made by ``fit``; continued by ``fit(..., resume=True)`` and ``partial_fit``.

    Parameters
    ----------
    optimizer : OptimizerConfig
        The optimizer whose buffers these are.
    n_params : int
        Length of the flat parameter buffer (``Network.n_params``).
    dtype : numpy dtype
        The network's dtype: the buffers' dtype.
    seed : int or None
        The training seed (keys the validation split and dropout masks).
    m, v : ndarray (n_params,) or None
        Existing buffers to use (not copied); None makes zeros (``v`` only for Adam).
    step, epoch : int
        Optimizer steps taken and epochs completed so far.
    meta : dict or None
        Small JSON-able data for tools that resume a run.
    """

    __slots__ = ("epoch", "m", "meta", "optimizer", "seed", "step", "v")

    def __init__(self, optimizer, n_params, dtype, seed, *, m=None, v=None, step=0, epoch=0,
                 meta=None):
        self.optimizer = optimizer
        self.m = np.zeros(n_params, dtype=dtype) if m is None else m
        if optimizer.name == "adam":
            self.v = np.zeros(n_params, dtype=dtype) if v is None else v
        else:
            self.v = None
        self.step = int(step)
        self.epoch = int(epoch)
        self.seed = seed
        self.meta = {} if meta is None else meta

    def mismatch(self, optimizer):
        """Why this state cannot continue with ``optimizer``.

        Parameters
        ----------
        optimizer : OptimizerConfig
            The settings of the fit that wants to continue this state.

        Returns
        -------
        str or None
            A sentence naming the settings that differ, or None if it can continue.
        """
        mine = self.optimizer
        if optimizer.name != mine.name:
            return f"it was made by optimizer={mine.name!r}, not {optimizer.name!r}"
        changed = [f"{f}={getattr(mine, f)!r} (now {getattr(optimizer, f)!r})"
                   for f in STATE_FIELDS[mine.name] if getattr(optimizer, f) != getattr(mine, f)]
        if changed:
            return f"it was made with {', '.join(changed)}"
        return None

    def copy(self, dtype=None):
        """An independent copy.

        Parameters
        ----------
        dtype : numpy dtype or None
            Cast the buffers to this dtype (None: keep theirs).

        Returns
        -------
        TrainingState
            The copy (its own buffers and ``meta``).
        """
        def buf(a):
            return None if a is None else a.astype(dtype or a.dtype, copy=True)
        meta = json.loads(check_meta(self.meta))       # a bounded deep copy (ValueError past the bounds)
        return TrainingState(self.optimizer, self.m.size, self.m.dtype, self.seed, m=buf(self.m),
                             v=buf(self.v), step=self.step, epoch=self.epoch, meta=meta)

    def check(self, n_params, dtype):
        """Check that this state can be continued by a network of ``n_params`` and ``dtype``.

        Run before a resumed fit on every backend, so both accept and refuse
        the same states: a state changed from outside (NaN written into
        ``m``, a buffer of another length, a counter past :data:`MAX_COUNTER`)
        is refused with a message that names what is wrong.

        Parameters
        ----------
        n_params : int
            The network's parameter count.
        dtype : numpy dtype
            The network's dtype.

        Raises
        ------
        ValueError
            What is wrong, and that ``resume=False`` starts afresh.
        """
        try:
            if not isinstance(self.optimizer, OptimizerConfig):
                raise ValueError("its optimizer must be an OptimizerConfig")
            for name in ("m", "v"):
                buf = getattr(self, name)
                if name == "v" and self.optimizer.name != "adam":
                    if buf is not None:
                        raise ValueError(f"its v must be None for optimizer={self.optimizer.name!r}")
                    continue
                if (not isinstance(buf, np.ndarray) or buf.shape != (n_params,) or buf.dtype != dtype
                        or not buf.flags.c_contiguous or not buf.flags.writeable):
                    raise ValueError(f"its {name} must be a writable C-contiguous {np.dtype(dtype).name} "
                                     f"array of shape ({n_params},), like the parameters")
                if not np.isfinite(buf).all():
                    raise ValueError(f"its {name} holds NaN or infinity")
            if self.v is not None and (self.v < 0).any():
                raise ValueError("its v (Adam's second moment) holds negative values")
            _check_counter("step", self.step)
            _check_counter("epoch", self.epoch)
            if self.seed is not None and (isinstance(self.seed, (bool, np.bool_))
                                          or not isinstance(self.seed, numbers.Integral) or self.seed < 0):
                raise ValueError(f"its seed must be None or a non-negative integer; got {self.seed!r}")
            check_meta(self.meta)
        except ValueError as exc:
            raise ValueError(f"the training state cannot be continued: {exc}; fit without "
                             f"resume=True starts the optimizer afresh") from None

    def snapshot(self):
        """What :meth:`restore` needs to undo the steps taken after this call.

        Returns
        -------
        tuple
            Copies of the buffers, ``step`` and ``epoch``.
        """
        return (self.m.copy(), None if self.v is None else self.v.copy(), self.step, self.epoch)

    def restore(self, snapshot):
        """Put back a :meth:`snapshot` (in place: the buffers stay the same arrays).

        Parameters
        ----------
        snapshot : tuple
            What :meth:`snapshot` returned.
        """
        m, v, self.step, self.epoch = snapshot
        self.m[...] = m
        if v is not None:
            self.v[...] = v

    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state):
        for name in self.__slots__:
            setattr(self, name, state[name])

    def __repr__(self):
        return (f"TrainingState(optimizer={self.optimizer.name!r}, step={self.step}, "
                f"epoch={self.epoch}, seed={self.seed})")
