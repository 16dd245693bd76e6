"""Structure-aware fuzzing of a model file's training state (issue 21): its counters, ``meta``,
optimizer settings, generator state and buffers.

Every mutated file must either be refused with a ``ValueError`` naming the
path, or load; and a network that loaded must then predict, copy, pickle and
resume training for an epoch (on every backend) without any exception but a
``ValueError`` (a resumed fit may refuse, e.g. counters at their bound).
The suite runs a few hundred mutations (``CYMLP_FUZZ_N`` sets how many; the
closing run of issue 21 used 10,000).
"""

import io
import json
import os
import pickle
import warnings

import numpy as np
import pytest
from _helpers import BACKENDS
from test_persistence import _mutations, members, npy, rezip

from cymlp import Network
from cymlp.training_state import MAX_COUNTER, MAX_META_DEPTH

N_MUTATIONS = int(os.environ.get("CYMLP_FUZZ_N", "300"))
X = np.random.default_rng(0).standard_normal((24, 4))
Y = np.arange(24) % 3

WEIRD_NUMBERS = [-1, 0, 1, 2**31, 2**53, MAX_COUNTER - 1, MAX_COUNTER, MAX_COUNTER + 1, 2**64, 10**400 // 10**390,
                 1.5, -0.0, float("nan"), float("inf"), "7", True, None, [], {}]


def nested(depth, leaf=0):
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


def _description(content):
    return json.loads(str(np.load(io.BytesIO(content["training_state.npy"]))))


def _with_description(content, description, raw=None):
    new = dict(content)
    text = raw if raw is not None else json.dumps(description)
    new["training_state.npy"] = npy(np.array(text))
    return rezip(new)


def state_mutations(good, rng):
    """Random training-state mutations of ``good`` (the bytes of a model saved with a state)."""
    content = members(good)
    base = _description(content)
    pick = lambda seq: seq[int(rng.integers(len(seq)))]            # noqa: E731

    def counter():
        d = json.loads(json.dumps(base))
        d[pick(["step", "epoch", "seed"])] = pick(WEIRD_NUMBERS)
        return _with_description(content, d)

    def optimizer():
        d = json.loads(json.dumps(base))
        opt = d["optimizer"]
        edit = int(rng.integers(4))
        if edit == 0:
            opt[pick(list(opt))] = pick(WEIRD_NUMBERS + ["adam", "sgd", "rmsprop", 0.5, 0.999])
        elif edit == 1:
            opt.pop(pick(list(opt)))
        elif edit == 2:
            opt["extra"] = 1
        else:
            d["optimizer"] = pick(WEIRD_NUMBERS + ["adam"])
        return _with_description(content, d)

    def generator():
        d = json.loads(json.dumps(base))
        rng_state = d["rng"]
        edit = int(rng.integers(4))
        if edit == 0:
            rng_state["bit_generator"] = pick(["MT19937", "Philox", "", 3])
        elif edit == 1:
            rng_state["state"][pick(["state", "inc"])] = pick(WEIRD_NUMBERS + [2**128, -2**127])
        elif edit == 2:
            rng_state.pop(pick(list(rng_state)))
        else:
            d["rng"] = pick(WEIRD_NUMBERS)
        return _with_description(content, d)

    def meta():
        d = json.loads(json.dumps(base))
        edit = int(rng.integers(6))
        if edit == 0:
            d["meta"] = nested(int(rng.integers(MAX_META_DEPTH - 3, MAX_META_DEPTH + 30)))
        elif edit == 1:
            d["meta"] = {"x": "y" * int(rng.integers(1, 20_000))}
        elif edit == 2:
            d["meta"] = pick(WEIRD_NUMBERS + ["text"])
        elif edit == 3:
            d["meta"] = {"cli": {pick(["lr", "epochs", "nesterov", "dataset"]): pick(WEIRD_NUMBERS + ["x"])}}
        elif edit == 4:
            d["meta"] = {str(i): [i, {"a": None}] for i in range(int(rng.integers(1, 2000)))}
        else:
            d["meta"] = {"\u00e9\u6f22\U0001f600": float("nan")}
        return _with_description(content, d)

    def description_text():
        text = json.dumps(base)
        edit = int(rng.integers(3))
        if edit == 0:
            text = text[:int(rng.integers(len(text)))]
        elif edit == 1:
            i = int(rng.integers(len(text)))
            text = text[:i] + pick(list("{}[]\",:0123456789e-")) + text[i + 1:]
        else:
            text = "[" * int(rng.integers(1, 5000))
        return _with_description(content, None, raw=text)

    def buffer():
        new = dict(content)
        name = pick([n for n in ("state_m.npy", "state_v.npy") if n in content] or ["state_m.npy"])
        values = np.load(io.BytesIO(content[name])).copy()
        edit = int(rng.integers(7))
        if edit == 0:
            values[int(rng.integers(values.size))] = pick([np.nan, np.inf, -np.inf])
        elif edit == 1:
            values[int(rng.integers(values.size))] = -abs(float(rng.standard_normal())) - 1e-3
        elif edit == 2:
            values = values[:int(rng.integers(values.size))]
        elif edit == 3:
            values = values.astype(pick([np.int32, np.float64, np.float16]))
        elif edit == 4:
            values = values.astype(np.float64)
            values[int(rng.integers(values.size))] = pick([1e300, 1e39, 3e38])
        elif edit == 5:
            new.pop(name)
            return rezip(new)
        else:
            values = values * pick([1e30, 1e-30, 0.0])
        new[name] = npy(values)
        return rezip(new)

    def extra_or_missing_v():
        new = dict(content)
        if "state_v.npy" in new:
            new.pop("state_v.npy")
        else:
            new["state_v.npy"] = content["state_m.npy"]
        return rezip(new)

    kinds = [counter, optimizer, generator, meta, description_text, buffer, extra_or_missing_v]
    generic = _mutations(good, rng)
    while True:
        yield kinds[int(rng.integers(len(kinds)))]() if rng.random() < 0.85 else next(generic)


def use_after_load(path, backend):
    """Load ``path``; then predict, copy, pickle and resume 1 epoch.  Returns the outcome.

    Only ValueError may come out (at load: naming the path); anything else
    fails the test with the file kept for a reproduction.
    """
    try:
        net = Network.load(path, backend=backend, n_threads=1)
    except ValueError as exc:
        assert str(path) in str(exc), str(exc)
        return "rejected"
    assert np.isfinite(net.predict_proba(X)).all()
    for other in (net.copy(), pickle.loads(pickle.dumps(net))):
        np.testing.assert_array_equal(other.get_flat_params(), net.get_flat_params())
    state = net.training_state_
    if state is None:
        return "loaded without a state"
    opt = state.optimizer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # overflow, divergence: warned, not raised
        try:
            net.fit(X, Y, epochs=1, batch_size=8, resume=True, on_divergence="warn", optimizer=opt.name,
                    momentum=opt.momentum, nesterov=opt.nesterov, weight_decay=opt.weight_decay,
                    beta1=opt.beta1, beta2=opt.beta2, eps=opt.eps)
        except ValueError:
            return "loaded, resume refused"
    return "loaded and resumed"


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fuzzed_training_states_load_or_raise_value_error_and_loaded_ones_work(tmp_path, optimizer):
    net = Network([4, 6, 3], backend="numpy", seed=1)
    net.fit(X, Y, epochs=2, batch_size=8, optimizer=optimizer, momentum=0.9)
    net.training_state_.meta["cli"] = {"lr": 0.01, "epochs": 2}
    good = tmp_path / "good.npz"
    net.save(good)
    rng = np.random.default_rng(20261205 + (optimizer == "sgd"))
    outcomes = {}
    path = tmp_path / "fuzzed.npz"
    for i, data in zip(range(N_MUTATIONS), state_mutations(good.read_bytes(), rng)):
        path.write_bytes(data)
        try:
            outcome = use_after_load(path, BACKENDS[i % len(BACKENDS)])
        except BaseException:
            (tmp_path / "escape.npz").write_bytes(data)          # keep it for a reproduction
            raise
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"{N_MUTATIONS} training-state mutations ({optimizer}): {outcomes}")
    assert outcomes.get("rejected", 0) > N_MUTATIONS // 3 and outcomes.get("loaded and resumed", 0) > 0, outcomes
