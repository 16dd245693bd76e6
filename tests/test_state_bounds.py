"""A training state is bounded, and checked the same way on every backend (issue 21, items 4, 6, 15).

- its ``step`` and ``epoch`` counters stay within ``MAX_COUNTER``, what the
  compiled trainer's C ``long`` holds: a file beyond it is refused at load,
  a fit that would pass it is refused before it starts, on both backends;
- its ``meta`` is a JSON object of at most ``MAX_META_BYTES`` and
  ``MAX_META_DEPTH`` levels, checked by save, load, copy, pickling and a
  resumed fit (never a ``RecursionError``);
- a state changed from outside (NaN in ``m``, a buffer of another length or
  dtype, a float counter) is refused by a resumed fit with the same
  ``ValueError`` on both backends, naming what is wrong, and the network is
  left as it was.
"""

import io
import json
import pickle
import zipfile

import numpy as np
import pytest
from _helpers import BACKENDS, HAS_COMPILED, random_data

from cymlp import Network, cli
from cymlp.training_state import MAX_COUNTER, MAX_META_BYTES, MAX_META_DEPTH, check_meta

X, Y = random_data(40, 4, 3)


def trained(backend="numpy", optimizer="adam", **kwargs):
    net = Network([4, 5, 3], backend=backend, n_threads=1, seed=0)
    net.fit(X, Y, epochs=1, batch_size=8, optimizer=optimizer, **kwargs)
    return net


def nested(depth):
    """A dict nested ``depth`` levels deep (itself is level 1), built without recursion."""
    meta = inner = {}
    for _ in range(depth - 1):
        inner["k"] = {}
        inner = inner["k"]
    return meta


def rewrite_state(path, change):
    """Rewrite the training-state description of the model file ``path`` with ``change(dict)``."""
    with zipfile.ZipFile(path) as z:
        content = {info.filename: z.read(info) for info in z.infolist()}
    description = json.loads(str(np.load(io.BytesIO(content["training_state.npy"]))))
    change(description)
    f = io.BytesIO()
    np.save(f, np.array(json.dumps(description)))
    content["training_state.npy"] = f.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in content.items():
            z.writestr(name, data)


def snapshot(net):
    state = net.training_state_
    return (net.get_flat_params().tobytes(), pickle.dumps(net._rng.bit_generator.state),
            state.m.tobytes(), state.step, state.epoch, json.dumps(state.meta, default=repr))


# ---------------------------------------------------------------- item 4: counters


def test_the_bound_is_what_a_c_long_holds():
    import ctypes
    assert 2 ** (8 * ctypes.sizeof(ctypes.c_long) - 1) - 1 == MAX_COUNTER


@pytest.mark.skipif(not HAS_COMPILED, reason="the compiled path is not built")
def test_the_compiled_trainer_holds_exactly_the_bound():
    from _helpers import make_trainer

    from cymlp.training_state import OptimizerConfig, TrainingState
    net = Network([4, 5, 3], backend="cython", n_threads=1, seed=0)
    Xc = np.ascontiguousarray(X, dtype=np.float32)
    Yc = np.eye(3, dtype=np.float32)[Y]
    order = np.arange(len(Y), dtype=np.intp)
    for step, ok in ((MAX_COUNTER, True), (MAX_COUNTER + 1, False)):
        state = TrainingState(OptimizerConfig("adam"), net.n_params, net.dtype, 0, step=step)
        trainer = make_trainer(net, Xc, Yc, Y, 8, OptimizerConfig("adam"), state=state)
        try:                    # each kernel call takes the state's step as a C long
            if ok:
                trainer.run(order, 0, 0, 0.01)
                assert state.step == MAX_COUNTER
            else:
                with pytest.raises(OverflowError):
                    trainer.run(order, 0, 0, 0.01)
        finally:
            trainer.close()


@pytest.mark.parametrize("field", ["step", "epoch"])
@pytest.mark.parametrize("value", [MAX_COUNTER + 1, 2**64, 10**30])
def test_a_file_with_a_counter_beyond_the_bound_is_refused_at_load(tmp_path, field, value):
    trained().save(tmp_path / "m.npz")
    rewrite_state(tmp_path / "m.npz", lambda d: d.update({field: value}))
    with pytest.raises(ValueError, match=f"{field} {value} is beyond {MAX_COUNTER}"):
        Network.load(tmp_path / "m.npz")


@pytest.mark.parametrize("backend", BACKENDS)
def test_counters_up_to_the_bound_train_and_past_it_are_refused_on_every_backend(tmp_path, backend):
    trained().save(tmp_path / "m.npz")
    rewrite_state(tmp_path / "m.npz", lambda d: d.update(step=MAX_COUNTER - 5))
    net = Network.load(tmp_path / "m.npz", backend=backend, n_threads=1)
    net.fit(X, Y, epochs=1, batch_size=8, optimizer="adam", resume=True)        # 5 steps: to the bound
    assert net.training_state_.step == MAX_COUNTER
    assert np.isfinite(net.get_flat_params()).all() and not net.history_.diverged
    before = snapshot(net)
    with pytest.raises(ValueError, match="past .* resume=False"):
        net.fit(X, Y, epochs=1, batch_size=8, optimizer="adam", resume=True)
    assert snapshot(net) == before
    net.training_state_.epoch = MAX_COUNTER
    with pytest.raises(ValueError, match="epoch or step counter past"):
        net.partial_fit(X, Y, batch_size=8, optimizer="adam")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("field, value", [("step", MAX_COUNTER + 1), ("epoch", 2**64), ("step", -1),
                                          ("step", 3.0), ("epoch", True)])
def test_a_counter_set_from_outside_is_refused_alike(backend, field, value):
    net = trained(backend)
    setattr(net.training_state_, field, value)
    before = snapshot(net)
    with pytest.raises(ValueError, match=f"its {field} must be"):
        net.fit(X, Y, epochs=1, batch_size=8, optimizer="adam", resume=True)
    assert snapshot(net) == before


def test_the_command_line_reports_a_counter_beyond_the_bound_in_one_line(tmp_path, capsys):
    assert cli.main(["train", "--epochs", "1", "--hidden", "8", "--train-size", "200", "-q",
                     "--no-progress", "--save", str(tmp_path / "m.npz")]) == 0
    rewrite_state(tmp_path / "m.npz", lambda d: d.update(step=MAX_COUNTER - 1))
    status = cli.main(["train", "--resume", str(tmp_path / "m.npz"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1 and "counter past" in err, err


# ---------------------------------------------------------------- item 6: meta


def test_meta_at_the_depth_bound_round_trips_everywhere(tmp_path):
    net = trained()
    net.training_state_.meta = nested(MAX_META_DEPTH)
    net.save(tmp_path / "m.npz")
    loaded = Network.load(tmp_path / "m.npz")
    assert loaded.training_state_.meta == net.training_state_.meta
    for copy in (loaded.copy(), pickle.loads(pickle.dumps(loaded))):
        assert copy.training_state_.meta == net.training_state_.meta
    loaded.fit(X, Y, epochs=1, batch_size=8, optimizer="adam", resume=True)


@pytest.mark.parametrize("depth", [MAX_META_DEPTH + 1, 100, 900])
def test_a_file_with_a_deeper_meta_is_refused_at_load(tmp_path, depth):
    trained().save(tmp_path / "m.npz")
    rewrite_state(tmp_path / "m.npz", lambda d: d.update(meta=nested(depth)))
    with pytest.raises(ValueError, match=f"nest at most {MAX_META_DEPTH} levels"):
        Network.load(tmp_path / "m.npz")


DEEP = nested(5000)       # deeper than Python's recursion limit
BAD_META = {
    "deep": (lambda: DEEP, "nest at most"),
    "cyclic": (lambda: (lambda d: (d.update(self=d), d)[1])({}), "nest at most"),
    "large": (lambda: {"x": "y" * MAX_META_BYTES}, "more than the"),
    "a set": (lambda: {"x": {1, 2}}, "JSON values only"),
    "an array": (lambda: {"x": np.zeros(3)}, "JSON values only"),
    "int keys": (lambda: {1: "x"}, "string keys"),
    "not a dict": (lambda: ["x"], "must be a dict"),
}


@pytest.mark.parametrize("case", BAD_META)
def test_a_meta_past_its_bounds_is_a_value_error_never_a_recursion_error(tmp_path, case):
    make, match = BAD_META[case]
    net = trained()
    net.training_state_.meta = make()
    with pytest.raises(ValueError, match=match):
        check_meta(net.training_state_.meta)
    for action in (lambda: net.save(tmp_path / "m.npz"), net.copy, lambda: pickle.dumps(net),
                   lambda: net.fit(X, Y, epochs=1, batch_size=8, optimizer="adam", resume=True)):
        with pytest.raises(ValueError, match=match):
            action()
    assert not (tmp_path / "m.npz").exists()
    net.save(tmp_path / "m.npz", training_state=False)            # the network alone still saves


# ---------------------------------------------------------------- item 15: a state changed from outside


def _nan_in_m(state):
    state.m[0] = np.nan


def _short_m(state):
    state.m = state.m[:-1].copy()


def _float64_m(state):                 # the network is float32
    state.m = state.m.astype(np.float64)


def _strided_m(state):
    state.m = np.repeat(state.m, 2)[::2]


def _no_v(state):
    state.v = None


def _negative_v(state):
    state.v[1] = -1.0


def _list_m(state):
    state.m = state.m.tolist()


def _bad_optimizer(state):
    state.optimizer = "adam"


MALFORMED = {"NaN in m": (_nan_in_m, "its m holds NaN"), "m one short": (_short_m, "its m must be"),
             "m in float64": (_float64_m, "its m must be"), "strided m": (_strided_m, "its m must be"),
             "m a list": (_list_m, "its m must be"), "adam without v": (_no_v, "its v must be"),
             "negative v": (_negative_v, "negative"), "optimizer a string": (_bad_optimizer, "OptimizerConfig")}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_state_is_refused_alike_on_every_backend(backend, case):
    change, match = MALFORMED[case]
    net = trained(backend)
    change(net.training_state_)
    params = net.get_flat_params().tobytes()
    with pytest.raises(ValueError, match=f"training state cannot be continued: .*{match}") as info:
        net.fit(X, Y, epochs=1, batch_size=8, optimizer="adam", resume=True)
    assert "learning rate" not in str(info.value)                  # it does not blame the rate
    assert net.get_flat_params().tobytes() == params
