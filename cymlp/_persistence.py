"""The model file format: what ``Network.save`` writes and ``Network.load`` reads.

This module never sees a network: :func:`save` takes the configuration,
the flat parameter buffer and the training state; :func:`load` returns the
state dict that ``Network.__setstate__`` rebuilds a network from (see
:mod:`cymlp._network_io`, which also owns pickling and ``copy``).

A model file is an uncompressed ``.npz`` (a zip archive of ``.npy`` members)
holding ``format_version``, ``config`` (the architecture as a JSON string) and
one member per parameter array (``W0``, ``b0``, ``W1``, ...).  The parameter
members a file must hold, and their shapes, follow from the configuration
(:func:`member_table`); a later format adds optional members there.

The training state (``Network.training_state_``, see :mod:`cymlp.training_state`) is
optional: ``training_state`` (a JSON string: the optimizer and its settings,
``step``, ``epoch``, ``seed``, the shuffle generator's state and ``meta``),
``state_m`` and, for Adam, ``state_v`` (flat, like the parameters).  Files
without them (every file written before they existed, or by
``save(path, training_state=False)``) load with no training state and a
shuffle generator seeded from ``seed``.

Loading treats the file as hostile.  Everything that sizes an allocation is
checked before anything large is decompressed or allocated, in this order:

1. the zip directory: every member is a ``NAME.npy``, stored or deflated, not
   encrypted, present at most once, and its sizes fit in the file (a deflated
   member cannot claim more than deflate can expand to);
2. ``format_version`` and ``config`` (small, with capped sizes), then the
   configuration itself, checked as ``Network(...)`` would check it;
3. the member names against the table the configuration implies (missing or
   unknown members are rejected), and each member's ``.npy`` header (at most
   :data:`MAX_NPY_HEADER` bytes, parsed as a literal) against the shape in the
   table and the size in the zip directory.

Only then is the parameter buffer allocated, once, and the parameters read
chunk by chunk straight into it (the network adopts it without a copy):
memory stays near what the model needs, however the file lies.  Values are
cast to the configured dtype and checked finite *after* the cast (1e300 does
not fit in float32).  Every problem with the file's contents raises
``ValueError`` naming the path; ``np.load``/``pickle`` are never used, so
no code from the file runs.
"""

import ast
import contextlib
import itertools
import json
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _validation as v
from . import reference
from ._files import open_regular, write_atomically
from ._spec import layer_views, n_params
from .training_state import MAX_COUNTER, OPTIMIZERS, OptimizerConfig, TrainingState, check_meta

FORMAT_VERSION = 1
MAX_CONFIG_BYTES = 64 * 1024        # the config member, header included (a real one is ~200 bytes)
MAX_SMALL_MEMBER_BYTES = 1024       # format_version
MAX_NPY_HEADER = 10_000             # numpy's own limit on a .npy header
MAX_DEFLATE_RATIO = 1032            # deflate cannot expand more than this (zlib's technical notes)
DEFAULT_MAX_MODEL_BYTES = 4 << 30   # load refuses a model needing more memory (parameters + state)
READ_CHUNK_BYTES = 1 << 20          # parameters are read (and cast) this much at a time

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# deflate level, data descriptor, UTF-8 names; anything else (encryption...) is refused
_ALLOWED_FLAGS = 0x0006 | 0x0008 | 0x0800
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_CONFIG_KEYS = {"sizes", "activation", "output", "loss", "dtype", "seed", "dropout"}
_FLOAT_DESCR = re.compile(r"[<>|=]?f(2|4|8|10|12|16)")
_INT_DESCR = re.compile(r"[<>|=]?[iu][1248]")
_UNICODE_DESCR = re.compile(r"[<>|=]?U([0-9]{1,6})")
# What a damaged file can make zipfile, zlib or the header parser raise.  Turned into ValueError
# naming the path.  (MemoryError is not here: the checks above make it impossible, not caught.)
_DAMAGED = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
            NotImplementedError, RuntimeError, ValueError, struct.error, OverflowError,
            LookupError, SyntaxError, TypeError)


class _Damaged(Exception):
    """A specific problem with the file; ``load`` words it as a ValueError naming the path."""


@dataclass(frozen=True)
class Member:
    """An array a model file may hold: its shape and the dtype kinds accepted."""
    shape: tuple
    kinds: str
    required: bool = True
    max_bytes: int | None = None   # cap on the member (header included); None: from shape and dtype


HEADER_MEMBERS = {
    "format_version": Member((), "iu", max_bytes=MAX_SMALL_MEMBER_BYTES),
    "config": Member((), "U", max_bytes=MAX_CONFIG_BYTES),
}


STATE_MEMBERS = ("training_state", "state_m", "state_v")
_STATE_KEYS = {"optimizer", "step", "epoch", "seed", "rng", "meta"}
_OPTIMIZER_KEYS = {"name", "momentum", "nesterov", "weight_decay", "beta1", "beta2", "eps"}


def member_table(sizes):
    """The parameter members a file of this architecture holds, in the order of the flat buffer.

    ``W{l}`` is ``(sizes[l+1], sizes[l])`` and ``b{l}`` is ``(sizes[l+1],)``;
    then the optional training state members (``required=False``).  This
    table is the only list of member names ``load`` accepts.
    """
    table = {}
    for l, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        table[f"W{l}"] = Member((n_out, n_in), "f")
        table[f"b{l}"] = Member((n_out,), "f")
    n = int(sum(int(np.prod(m.shape)) for m in table.values()))
    table["training_state"] = Member((), "U", required=False, max_bytes=MAX_CONFIG_BYTES)
    table["state_m"] = Member((n,), "f", required=False)
    table["state_v"] = Member((n,), "f", required=False)
    return table


# ---------------------------------------------------------------- configuration

def config_of(net):
    """The JSON-able configuration of ``net``: what ``Network(...)`` needs to rebuild it."""
    config = {"sizes": list(net.sizes), "activation": net.activation, "output": net.output,
              "loss": net.loss_name, "dtype": net.dtype.name, "seed": net.seed}
    if any(net.dropout):                  # only then: files without dropout stay as they were
        config["dropout"] = list(net.dropout)
    return config


def cast_state(state, dtype):
    """A ``Network.__getstate__`` dict with its parameters and training state cast to ``dtype``.

    The values must be finite after the cast (1e300 does not fit in float32):
    a ValueError says which array does not.
    """
    state = dict(state, dtype=dtype.name)
    state["theta"] = v.check_finite_params(f"copy(dtype={dtype.name!r}): the parameter buffer",
                                           state["theta"], dtype)
    training = state["training_state"]
    if training is not None:
        for name in ("m", "v"):
            if getattr(training, name) is not None:
                setattr(training, name, v.check_finite_params(
                    f"copy(dtype={dtype.name!r}): the training state's {name}",
                    getattr(training, name), dtype))
    return state


# ---------------------------------------------------------------- save

def save(path, config, theta, training_state=None, rng_state=None):
    """Write a model file to ``path`` atomically (see ``Network.save``).

    ``config``: :func:`config_of` the network; ``theta``: its flat parameter
    buffer (written as ``W0``, ``b0``, ... through :func:`~cymlp._spec.layer_views`);
    ``training_state`` (or None) and ``rng_state`` (the shuffle generator's
    ``bit_generator.state``) are written together when a state is given.
    """
    if not np.isfinite(theta).all():
        raise ValueError("refusing to save a network whose parameters contain NaN or infinity")
    arrays: dict[str, Any] = {"format_version": np.array(FORMAT_VERSION), "config": np.array(json.dumps(config))}
    for l, (W, b) in enumerate(zip(*layer_views(config["sizes"], theta))):
        arrays[f"W{l}"] = W
        arrays[f"b{l}"] = b
    if training_state is not None:
        arrays.update(_state_members(training_state, rng_state))
    write_atomically(path, lambda f: np.savez(f, **arrays))


def _state_members(state, rng_state):
    """The training state's members: its JSON description and its buffers."""
    buffers = {"state_m": state.m} if state.v is None else {"state_m": state.m, "state_v": state.v}
    for name, buf in buffers.items():
        if not np.isfinite(buf).all():
            raise ValueError(f"refusing to save a training state whose {name} contains NaN or "
                             f"infinity; save(path, training_state=False) saves the network alone")
    opt = state.optimizer
    description = {"optimizer": {name: getattr(opt, name) for name in _OPTIMIZER_KEYS},
                   "step": state.step, "epoch": state.epoch, "seed": state.seed,
                   "rng": rng_state, "meta": state.meta}
    check_meta(state.meta)                       # bounded: the description stays far below its cap
    text = json.dumps(description)
    return {"training_state": np.array(text), **buffers}


# ---------------------------------------------------------------- load

def load(path, max_bytes=DEFAULT_MAX_MODEL_BYTES):
    """Read a model file written by :func:`save` (see the module docstring).

    ``max_bytes`` (None: no bound) caps the memory the model needs (its
    parameters and training-state buffers, as its configuration declares):
    a larger model is refused before anything is allocated.

    Returns the ``Network.__setstate__`` dict it describes (without
    ``backend`` and ``n_threads``, which are the caller's): the
    configuration, ``theta`` (a fresh flat buffer the parameters were read
    into), and the training state, shuffle generator state and training
    seed when the file holds them.
    """
    name = os.fspath(path)
    with open_regular(name, "model file") as f:    # missing: FileNotFoundError; a FIFO: OSError
        with _reworded(name):
            archive, config, infos, headers, training = _check(f)
        dtype = np.dtype(config["dtype"])
        _check_memory(name, config, dtype, training, max_bytes)
        # everything checked: allocate once, then read straight into the buffers
        theta = np.zeros(n_params(config["sizes"]), dtype=dtype)
        views = {}
        for l, (W, b) in enumerate(zip(*layer_views(config["sizes"], theta))):
            views[f"W{l}"], views[f"b{l}"] = W, b
        state = None
        if training is not None:
            state = TrainingState(training["optimizer"], theta.size, dtype, training["seed"],
                                  step=training["step"], epoch=training["epoch"], meta=training["meta"])
            views["state_m"] = state.m
            if state.v is not None:
                views["state_v"] = state.v
        with _reworded(name), archive:
            for member, header in headers.items():
                if member in views:
                    _read_into(archive, infos[member], member, header, views[member])
            if state is not None and state.v is not None and (state.v < 0).any():
                raise _Damaged("member 'state_v' holds negative values (Adam's second moment is >= 0)")
    result = dict(config, theta=theta, rng=None, history=None)
    if state is not None:
        result.update(training_state=state, train_seed=state.seed, rng=training["rng"])
    return result


def _check_memory(name, config, dtype, training, max_bytes):
    """Refuse a model that needs more than ``max_bytes`` of memory, before allocating it."""
    buffers = 1 if training is None else (3 if training["optimizer"].name == "adam" else 2)
    needed = buffers * n_params(config["sizes"]) * dtype.itemsize
    if max_bytes is not None and needed > max_bytes:
        sizes = "-".join(map(str, config["sizes"]))
        raise ValueError(f"{name!r} declares a {sizes} {dtype.name} network that needs {needed:,} bytes "
                         f"of memory ({n_params(config['sizes']):,} parameters x {buffers} buffers), more "
                         f"than max_bytes={max_bytes:,}; if you expect a model that large, raise the "
                         f"bound: Network.load(path, max_bytes=...), or --max-model-bytes on the "
                         f"command line")


@contextlib.contextmanager
def _reworded(name):
    """Turn whatever a damaged file makes the readers raise into a ValueError naming it."""
    try:
        yield
    except _Damaged as exc:
        raise ValueError(f"{name!r} is not a valid cymlp model file: {exc}") from None
    except _DAMAGED as exc:
        raise ValueError(f"{name!r} is not a readable cymlp model file: it is damaged "
                         f"({type(exc).__name__}: {exc}); save the model again") from None


def _check(f):
    """Check the file's structure and headers; return ``(archive, config, infos, headers)``."""
    head = f.read(6)
    if head == _NPY_MAGIC:
        raise _Damaged("it holds a single .npy array, not a saved model (Network.save writes .npz)")
    if head[:4] not in _ZIP_MAGICS:
        raise _Damaged("it is not a zip (.npz) archive; Network.save writes .npz files")
    f.seek(0)
    file_size = os.fstat(f.fileno()).st_size
    archive = zipfile.ZipFile(f)
    infos = _check_directory(archive, file_size)
    version = _read_small(archive, infos, "format_version")
    if int(version) != FORMAT_VERSION:
        raise _Damaged(f"it has model format version {int(version)}; this cymlp reads version "
                       f"{FORMAT_VERSION}; save it again with a matching cymlp version")
    config = _check_config(_read_small(archive, infos, "config"))
    table = member_table(config["sizes"])
    unknown = sorted(set(infos) - set(table) - set(HEADER_MEMBERS))
    missing = [name for name, m in table.items() if m.required and name not in infos]
    if unknown or missing:
        raise _Damaged(f"it does not match its configuration {config['sizes']}: "
                       + "; ".join(filter(None, [f"unknown members {unknown[:5]}" if unknown else "",
                                                 f"missing members {missing}" if missing else ""])))
    training = _check_training_state(archive, infos, table)
    headers = {name: _check_member(archive, infos[name], name, table[name])
               for name in table if name in infos and name != "training_state"}
    return archive, config, infos, headers, training


def _check_training_state(archive, infos, table):
    """Read and check the training state's description; None when the file has none."""
    present = [name for name in STATE_MEMBERS if name in infos]
    if not present:
        return None
    if "training_state" not in infos or "state_m" not in infos:
        raise _Damaged(f"its training state is incomplete (it has {present}; a training state "
                       f"is training_state and state_m, and state_v for Adam)")
    text = str(_read_small(archive, infos, "training_state", table["training_state"]))
    try:
        state = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _Damaged(f"its training state is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(state, dict) or set(state) != _STATE_KEYS:
        raise _Damaged(f"its training state must be a JSON object with the keys {sorted(_STATE_KEYS)}")
    opt = state["optimizer"]
    try:
        if not isinstance(opt, dict) or set(opt) != _OPTIMIZER_KEYS:
            raise ValueError(f"optimizer must be an object with the keys {sorted(_OPTIMIZER_KEYS)}")
        v.check_choice("optimizer", opt["name"], OPTIMIZERS)
        if not isinstance(opt["nesterov"], bool):
            raise ValueError("nesterov must be true or false")
        optimizer = OptimizerConfig(
            opt["name"], v.check_real("momentum", opt["momentum"], low=0, high=1, high_open=True),
            opt["nesterov"], v.check_real("weight_decay", opt["weight_decay"], low=0),
            v.check_real("beta1", opt["beta1"], low=0, high=1, high_open=True),
            v.check_real("beta2", opt["beta2"], low=0, high=1, high_open=True),
            v.check_real("eps", opt["eps"], low=0, low_open=True))
        for key in ("step", "epoch", "seed"):
            if type(state[key]) is not int or state[key] < 0:
                raise ValueError(f"{key} must be a non-negative integer")
            if key != "seed" and state[key] > MAX_COUNTER:
                raise ValueError(f"{key} {state[key]} is beyond {MAX_COUNTER}, what every backend's "
                                 f"counter holds")
        check_meta(state["meta"])
        rng = np.random.default_rng()
        if not isinstance(state["rng"], dict) or state["rng"].get("bit_generator") != "PCG64":
            raise ValueError("rng must be the state of a PCG64 generator")
        rng.bit_generator.state = state["rng"]
        rng_state = rng.bit_generator.state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise _Damaged(f"its training state is invalid ({exc})") from None
    if ("state_v" in infos) != (optimizer.name == "adam"):
        raise _Damaged(f"its training state is for optimizer {optimizer.name!r}, which "
                       + ("needs a state_v member" if optimizer.name == "adam" else "has no state_v"))
    return dict(state, optimizer=optimizer, rng=rng_state)


def _check_directory(archive, file_size):
    """Check the zip directory entries; return ``{member name without .npy: ZipInfo}``."""
    infos = {}
    for info in archive.infolist():
        name = info.filename
        if not name.endswith(".npy") or len(name) > 100:     # known names: checked after the config
            raise _Damaged(f"unexpected member {name[:100]!r} (a model file holds only .npy "
                           "members: format_version, config, W<l> and b<l>)")
        key = name[:-len(".npy")]
        if key in infos:
            raise _Damaged(f"member {name!r} appears twice")
        if info.flag_bits & ~_ALLOWED_FLAGS:
            raise _Damaged(f"member {name!r} is encrypted or uses unsupported zip features "
                           f"(flags {info.flag_bits:#06x})")
        if info.compress_type not in _METHODS:
            raise _Damaged(f"member {name!r} uses zip compression method {info.compress_type}; "
                           "only stored and deflated members can be read")
        if info.header_offset < 0 or info.header_offset + info.compress_size > file_size:
            raise _Damaged(f"member {name!r} lies beyond the end of the file (truncated?)")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise _Damaged(f"member {name!r} has inconsistent sizes in the zip directory")
        if info.file_size > MAX_DEFLATE_RATIO * info.compress_size + 1024:
            raise _Damaged(f"member {name!r} claims to inflate to {info.file_size:,} bytes from "
                           f"{info.compress_size:,}, more than deflate can (a zip bomb?)")
        infos[key] = info
    return infos


def _read_small(archive, infos, name, member=None):
    """Read and check ``format_version``, ``config`` or another small member; a 0-d array."""
    member = member or HEADER_MEMBERS[name]
    info = infos.get(name)
    if info is None:
        raise _Damaged(f"it has no {name} member (not a cymlp model file)")
    if info.file_size > member.max_bytes:
        raise _Damaged(f"its {name} member has {info.file_size:,} bytes, more than the "
                       f"{member.max_bytes:,} a model file needs")
    with archive.open(info) as f:
        header = _read_header(f, name, info)
        _check_header(name, header, member, info)
        dtype, _, _ = header[:3]
        data = f.read(dtype.itemsize)
        if len(data) != dtype.itemsize or f.read(1):
            raise _Damaged(f"its {name} member is truncated or too long")
    value = np.frombuffer(data, dtype=dtype)[0]
    return np.asarray(value)


def _check_config(value):
    """Parse and check the configuration JSON exactly as ``Network(...)`` checks its arguments."""
    try:
        config = json.loads(str(value))
    except (ValueError, RecursionError) as exc:
        raise _Damaged(f"its configuration is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(config, dict):
        raise _Damaged("its configuration is not a JSON object")
    missing = {"sizes", "activation", "output", "loss", "dtype"} - set(config)
    unknown = set(config) - _CONFIG_KEYS
    if missing or unknown:
        raise _Damaged(f"its configuration has missing keys {sorted(missing)} or unknown keys "
                       f"{sorted(unknown)[:5]}")
    try:
        if not isinstance(config["sizes"], list):
            raise TypeError("sizes is not a list")
        config["sizes"] = v.check_sizes(config["sizes"])
        v.check_choice("activation", config["activation"], reference.HIDDEN_ACTIVATIONS)
        v.check_choice("output", config["output"], reference.OUTPUT_ACTIVATIONS)
        v.check_choice("loss", config["loss"], reference.LOSSES)
        if config["output"] not in reference.OUTPUTS_OF_LOSS[config["loss"]]:
            raise ValueError(f"loss={config['loss']!r} with output={config['output']!r}")
        v.check_choice("dtype", config["dtype"], ("float32", "float64"))
        config["seed"] = v.check_seed(config.get("seed"))
        if "dropout" in config:
            config["dropout"] = list(v.check_dropout(config["dropout"],
                                                                   config["sizes"]))
    except (TypeError, ValueError) as exc:
        raise _Damaged(f"its configuration is invalid ({exc})") from None
    return config


def _read_header(f, name, info):
    """Read a member's ``.npy`` header: ``(dtype, fortran_order, shape, header_bytes)``."""
    magic = f.read(8)
    if len(magic) != 8 or magic[:6] != _NPY_MAGIC or magic[6] not in (1, 2, 3) or magic[7] != 0:
        raise _Damaged(f"member {name!r} is not a .npy array")
    major = magic[6]
    size_bytes = f.read(2 if major == 1 else 4)
    if len(size_bytes) != (2 if major == 1 else 4):
        raise _Damaged(f"member {name!r} is truncated")
    (length,) = struct.unpack("<H" if major == 1 else "<I", size_bytes)
    if length > MAX_NPY_HEADER:
        raise _Damaged(f"member {name!r} has a {length:,}-byte .npy header (at most "
                       f"{MAX_NPY_HEADER:,} allowed)")
    text = f.read(length)
    if len(text) != length:
        raise _Damaged(f"member {name!r} is truncated")
    try:
        header = ast.literal_eval(text.decode("utf8" if major == 3 else "latin1"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, UnicodeDecodeError):
        raise _Damaged(f"member {name!r} has a malformed .npy header") from None
    if (not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}
            or not isinstance(header["descr"], str) or not isinstance(header["fortran_order"], bool)
            or not isinstance(header["shape"], tuple)
            or not all(type(n) is int and n >= 0 for n in header["shape"])):
        raise _Damaged(f"member {name!r} has a malformed .npy header")
    descr = header["descr"]
    if not (_FLOAT_DESCR.fullmatch(descr) or _INT_DESCR.fullmatch(descr)
            or _UNICODE_DESCR.fullmatch(descr)):
        raise _Damaged(f"member {name!r} has dtype {descr[:40]!r}; expected a real number array")
    try:
        dtype = np.dtype(descr)
    except TypeError:        # e.g. '<f16' where long double is not 16 bytes
        raise _Damaged(f"member {name!r} has dtype {descr!r}, which this machine cannot read") from None
    return dtype, header["fortran_order"], header["shape"], 8 + len(size_bytes) + length


def _check_header(name, header, member, info):
    """The dtype kind and shape the table expects; the size the zip directory declares."""
    dtype, _, shape, header_bytes = header
    if dtype.kind not in member.kinds:
        raise _Damaged(f"member {name!r} has dtype {dtype}; expected "
                       + {"f": "a float array", "iu": "an integer", "U": "a string"}[member.kinds])
    if shape != member.shape:
        raise _Damaged(f"member {name!r} has shape {shape}; its configuration implies {member.shape}")
    expected = header_bytes + dtype.itemsize * int(np.prod(shape, dtype=object))
    if info.file_size != expected:
        raise _Damaged(f"member {name!r} has {info.file_size:,} bytes in the zip directory; its "
                       f".npy header implies {expected:,}")


def _check_member(archive, info, name, member):
    """Open a parameter member and check its header; return the header (nothing else is read)."""
    with archive.open(info) as f:
        header = _read_header(f, name, info)
    _check_header(name, header, member, info)
    return header


def _read_into(archive, info, name, header, out):
    """Read a checked member into ``out`` chunk by chunk, casting and checking finiteness."""
    dtype, fortran_order, _, header_bytes = header
    dest = out if not fortran_order or out.ndim < 2 else np.empty(out.shape[::-1], out.dtype)
    flat = dest.reshape(-1)
    step = max(1, READ_CHUNK_BYTES // dtype.itemsize)
    with archive.open(info) as f:
        f.read(header_bytes)
        for start in range(0, flat.size, step):
            count = min(step, flat.size - start)
            data = f.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise _Damaged(f"member {name!r} is truncated")
            values = np.frombuffer(data, dtype=dtype)
            part = flat[start:start + count]
            with np.errstate(over="ignore", invalid="ignore"):
                part[...] = values
            if not np.isfinite(part).all():           # after the cast: 1e300 is inf in float32
                if np.isfinite(values).all():
                    raise _Damaged(f"member {name!r} holds values too large for {out.dtype} "
                                   f"(the dtype in its configuration)")
                raise _Damaged(f"member {name!r} contains NaN or infinity")
        if f.read(1):                  # also makes zipfile check the CRC of the whole member
            raise _Damaged(f"member {name!r} is longer than its header says")
    if dest is not out:
        out[...] = dest.T
