"""Training state: fit(..., resume=True), partial_fit, reseed, and the state through pickle/copy/save/load.

The promise (docs/guarantees.md, "Resuming training"): on the same backend,
thread count and mode, ``fit(a + b epochs)`` equals ``fit(a)`` then
``fit(b, resume=True)`` bit for bit, weights and training state alike.
"""

import io
import json
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import numpy.lib.format as npformat
import pytest
from _helpers import BACKENDS, HAS_COMPILED, make_trainer, requires_compiled

from cymlp import Network, cli
from cymlp.training_state import OptimizerConfig, TrainingState

SIZES = [5, 7, 3]
N_ROWS = 200

# (backend, n_threads, compiled mode): chunked mode needs batches of two 32-row chunks or more
RUNS = [("numpy", 1, None)]
if HAS_COMPILED:
    RUNS += [("cython", 1, None), ("cython", 2, "chunked"), ("cython", 2, "batch"),
             ("cython", 2, "split")]
RUN_IDS = [f"{b}-{t}thr-{m or 'auto'}" for b, t, m in RUNS]
# the split run resumes the threaded split step, even on these tiny networks (see the fixture)
pytestmark = pytest.mark.usefixtures("split_on_every_thread")

OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", momentum=0.0),
    "momentum": dict(optimizer="sgd", momentum=0.9),
    "nesterov": dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": dict(optimizer="adam", lr=0.01, weight_decay=1e-3),
}


def data(n=N_ROWS, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, SIZES[0]))
    return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)


def network(run=RUNS[0], dtype="float32", seed=1):
    backend, n_threads, mode = run
    net = Network(SIZES, backend=backend, n_threads=n_threads, dtype=dtype, seed=seed)
    net.compiled_mode = mode
    return net


def snapshot(net):
    """Everything a resumed fit depends on: weights, training state, shuffle generator."""
    state = net.training_state_
    return (net.get_flat_params(), None if state is None else state.m.copy(),
            None if state is None or state.v is None else state.v.copy(),
            None if state is None else (state.step, state.epoch, state.seed),
            pickle.dumps(net._rng.bit_generator.state))


def assert_same(a, b):
    for x, y in zip(snapshot(a), snapshot(b)):
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y


# ---------------------------------------------------------------- the promise


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
def test_fit_then_resume_equals_one_fit_bit_for_bit(run, opt, schedule, dtype):
    X, y = data()
    kwargs = dict(batch_size=64, lr_schedule=schedule, validation_fraction=0.2, **OPTIMIZERS[opt])
    whole = network(run, dtype)
    whole.fit(X, y, epochs=4, **kwargs)
    split = network(run, dtype)
    split.fit(X, y, epochs=2, lr_schedule_epochs=4, **kwargs)
    assert split.training_state_.epoch == 2
    history = split.fit(X, y, epochs=2, resume=True, **kwargs)
    assert_same(whole, split)
    assert split.training_state_.epoch == 4
    assert split.training_state_.step == 4 * 3            # 160 training rows, batches of 64
    assert history.epoch == [3, 4]                         # the epochs count across the calls
    np.testing.assert_array_equal(history.lr, whole.history_.lr[2:])
    np.testing.assert_array_equal(history.val_loss, whole.history_.val_loss[2:])


@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
def test_three_resumed_fits_with_a_callable_schedule(run):
    X, y = data()

    def schedule(epoch, epochs, lr):
        return lr / (1 + epoch) * (epochs - epoch) / epochs

    kwargs = dict(batch_size=64, lr_schedule=schedule, **OPTIMIZERS["adam"])
    whole = network(run)
    whole.fit(X, y, epochs=5, **kwargs)
    split = network(run)
    split.fit(X, y, epochs=1, lr_schedule_epochs=5, **kwargs)
    split.fit(X, y, epochs=3, resume=True, lr_schedule_epochs=5, **kwargs)
    split.fit(X, y, epochs=1, resume=True, **kwargs)
    assert_same(whole, split)


@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
def test_fit_without_resume_starts_the_optimizer_afresh(run):
    X, y = data()
    kwargs = dict(batch_size=64, **OPTIMIZERS["momentum"])
    whole, split = network(run), network(run)
    whole.fit(X, y, epochs=2, **kwargs)
    split.fit(X, y, epochs=1, **kwargs)
    split.fit(X, y, epochs=1, **kwargs)
    assert split.training_state_.epoch == 1 and split.training_state_.step == 4
    assert not np.array_equal(whole.get_flat_params(), split.get_flat_params())


@requires_compiled
def test_the_compiled_trainer_writes_into_the_state_buffers():
    from cymlp import _validation
    net = network(RUNS[1])
    X, y = data()
    Xc, Y, labels = _validation.check_Xy(net._spec, X, y)
    opt = OptimizerConfig("adam")
    state = TrainingState(opt, net.n_params, net.dtype, seed=0, step=3)
    m, v = state.m, state.v
    trainer = make_trainer(net, Xc, Y, labels, 64, opt, state=state)
    try:
        trainer.run(np.arange(N_ROWS, dtype=np.intp), 0, 2, 0.01)
    finally:
        trainer.close()
    assert state.m is m and state.v is v and state.step == 5
    assert np.abs(m).max() > 0 and np.abs(v).max() > 0


# ---------------------------------------------------------------- the state travels


@pytest.mark.parametrize("opt", ["nesterov", "adam"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_after_pickle_copy_and_save_load(tmp_path, backend, opt):
    X, y = data()
    kwargs = dict(batch_size=64, lr_schedule="cosine", validation_fraction=0.25, **OPTIMIZERS[opt])
    run = next(r for r in RUNS if r[0] == backend)
    whole = network(run)
    whole.fit(X, y, epochs=4, **kwargs)
    half = network(run)
    half.fit(X, y, epochs=2, lr_schedule_epochs=4, **kwargs)
    half.save(tmp_path / "half.npz")
    loaded = Network.load(tmp_path / "half.npz", backend=backend, n_threads=1)
    loaded.compiled_mode = None
    for resumed in (pickle.loads(pickle.dumps(half)), half.copy(), loaded):
        assert_same(resumed, half)
        resumed.fit(X, y, epochs=2, resume=True, **kwargs)
        assert_same(resumed, whole)


CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from cymlp import Network
    path, out, backend, opt = sys.argv[1:5]
    rng = np.random.default_rng(0)
    X = rng.standard_normal(({n}, {k}))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    kwargs = dict(adam=dict(optimizer="adam", lr=0.01), momentum=dict(momentum=0.9))[opt]
    net = Network.load(path, backend=backend, n_threads=1)
    net.fit(X, y, epochs=2, batch_size=64, lr_schedule="step", resume=True, **kwargs)
    np.save(out, net.get_flat_params())
""").format(n=N_ROWS, k=SIZES[0])


@pytest.mark.slow
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("opt", ["momentum", "adam"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_in_a_fresh_process_equals_one_fit(tmp_path, backend, opt, dropout, child_env):
    X, y = data()
    kwargs = dict(batch_size=64, lr_schedule="step", **OPTIMIZERS[opt])
    kwargs.pop("weight_decay", None)              # the child passes none
    # the child sets no dropout: the file carries it
    whole = Network(SIZES, backend=backend, n_threads=1, seed=1, dropout=dropout)
    whole.fit(X, y, epochs=4, **kwargs)
    half = Network(SIZES, backend=backend, n_threads=1, seed=1, dropout=dropout)
    half.fit(X, y, epochs=2, lr_schedule_epochs=4, **kwargs)
    half.save(tmp_path / "half.npz")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    subprocess.run([sys.executable, str(script), str(tmp_path / "half.npz"), str(tmp_path / "out.npy"),
                    backend, opt], check=True, env=child_env, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), whole.get_flat_params())


def test_save_without_training_state_writes_the_old_member_set(tmp_path):
    X, y = data()
    net = network()
    net.fit(X, y, epochs=1, batch_size=64, **OPTIMIZERS["adam"])
    net.save(tmp_path / "with.npz")
    net.save(tmp_path / "without.npz", training_state=False)
    old = {"format_version.npy", "config.npy", "W0.npy", "b0.npy", "W1.npy", "b1.npy"}
    assert set(zipfile.ZipFile(tmp_path / "without.npz").namelist()) == old
    assert set(zipfile.ZipFile(tmp_path / "with.npz").namelist()) == old | {
        "training_state.npy", "state_m.npy", "state_v.npy"}
    assert Network.load(tmp_path / "without.npz").training_state_ is None
    momentum = network()
    momentum.fit(X, y, epochs=1, batch_size=64, **OPTIMIZERS["momentum"])
    momentum.save(tmp_path / "sgd.npz")
    assert "state_v.npy" not in zipfile.ZipFile(tmp_path / "sgd.npz").namelist()
    assert Network.load(tmp_path / "sgd.npz").training_state_.v is None


def test_a_file_in_the_previous_format_loads_without_state(tmp_path):
    net = network(seed=11)
    path = tmp_path / "old.npz"
    config = {"sizes": SIZES, "activation": "relu", "output": "softmax", "loss": "cross_entropy",
              "dtype": "float32", "seed": 11}
    arrays = {"format_version": np.array(1), "config": np.array(json.dumps(config))}
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"W{l}"], arrays[f"b{l}"] = W, b
    np.savez(path, **arrays)                 # the member set written before the training state
    loaded = Network.load(path)
    assert loaded.training_state_ is None
    np.testing.assert_array_equal(loaded.get_flat_params(), net.get_flat_params())
    assert loaded._rng.bit_generator.state == np.random.default_rng(11).bit_generator.state
    X, y = data()
    with pytest.raises(ValueError, match="resume=True needs a training state"):
        loaded.fit(X, y, epochs=1, resume=True)
    loaded.fit(X, y, epochs=1)
    assert loaded.training_state_.epoch == 1


def test_an_old_pickle_without_training_state_unpickles():
    net = network()
    state = net.__getstate__()
    del state["training_state"], state["train_seed"]
    clone = Network.__new__(Network)
    clone.__setstate__(state)
    assert clone.training_state_ is None and clone.training_seed == net.seed


def _edit_member(path, name, array=None):
    """Rewrite the model file with member ``name`` replaced by ``array`` (None: removed)."""
    with zipfile.ZipFile(path) as z:
        content = {info.filename: z.read(info) for info in z.infolist()}
    if array is None:
        del content[name + ".npy"]
    else:
        buf = io.BytesIO()
        np.save(buf, array)
        content[name + ".npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for member, raw in content.items():
            z.writestr(member, raw)


def _state_json(path):
    with zipfile.ZipFile(path) as z, z.open("training_state.npy") as f:
        return json.loads(str(npformat.read_array(f)))


DAMAGE_MESSAGES = {
    "no state_v": "needs a state_v member", "no state_m": "incomplete", "no description": "incomplete",
    "negative v": "negative values", "nan m": "NaN", "bad json": "not valid JSON",
    "negative step": "step must be", "unknown optimizer": "lbfgs", "momentum 1": "momentum",
    "bad rng": "training state is invalid", "wrong shape": "has shape", "extra key": "with the keys",
    "state_v for sgd": "has no state_v",
}


@pytest.mark.parametrize("damage", DAMAGE_MESSAGES)
def test_a_damaged_training_state_is_rejected_naming_the_file(tmp_path, damage):
    X, y = data()
    net = network()
    net.fit(X, y, epochs=1, batch_size=64, **OPTIMIZERS["momentum" if damage == "state_v for sgd" else "adam"])
    path = tmp_path / "m.npz"
    net.save(path)
    desc = _state_json(path)
    P = net.n_params
    if damage == "no state_v":
        _edit_member(path, "state_v")
    elif damage == "no state_m":
        _edit_member(path, "state_m")
    elif damage == "no description":
        _edit_member(path, "training_state")
    elif damage == "negative v":
        _edit_member(path, "state_v", -np.ones(P, dtype=np.float32))
    elif damage == "nan m":
        _edit_member(path, "state_m", np.full(P, np.nan, dtype=np.float32))
    elif damage == "bad json":
        _edit_member(path, "training_state", np.array("{not json"))
    elif damage == "wrong shape":
        _edit_member(path, "state_m", np.zeros(P + 1, dtype=np.float32))
    elif damage == "state_v for sgd":
        _edit_member(path, "state_v", np.zeros(P, dtype=np.float32))
    else:
        if damage == "negative step":
            desc["step"] = -1
        elif damage == "unknown optimizer":
            desc["optimizer"]["name"] = "lbfgs"
        elif damage == "momentum 1":
            desc["optimizer"]["momentum"] = 1.0
        elif damage == "bad rng":
            desc["rng"] = {"bit_generator": "PCG64", "state": "x"}
        elif damage == "extra key":
            desc["evil"] = 1
        _edit_member(path, "training_state", np.array(json.dumps(desc)))
    with pytest.raises(ValueError) as info:
        Network.load(path)
    assert str(path) in str(info.value)
    assert DAMAGE_MESSAGES[damage] in str(info.value)


# ---------------------------------------------------------------- partial_fit


@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
def test_partial_fit_twice_equals_fit_two_epochs(run, opt):
    X, y = data()
    kwargs = dict(batch_size=64, **OPTIMIZERS[opt])
    whole = network(run)
    whole.fit(X, y, epochs=2, **kwargs)
    streamed = network(run)
    assert streamed.partial_fit(X, y, classes=[0, 1, 2], **kwargs) is streamed
    assert streamed.training_state_.epoch == 1
    streamed.partial_fit(X, y, **kwargs)
    assert_same(whole, streamed)
    assert streamed.history_.epoch == [2]


def test_partial_fit_on_chunks_of_a_stream():
    X, y = data(400)
    net = network()
    for start in range(0, 400, 100):
        net.partial_fit(X[start:start + 100], y[start:start + 100], classes=np.arange(3), batch_size=50)
    assert net.training_state_.epoch == 4 and net.training_state_.step == 8
    assert net.score(X, y) > 0.5


@pytest.mark.parametrize("bad, match", [
    (dict(classes=[0, 1, 2, 3]), "3 outputs"),
    (dict(classes=[-1, 0, 1]), "3 outputs"),
    (dict(classes=[0, 1]), "not in classes"),
    (dict(classes=[0, 0, 1, 2]), "repeated"),
    (dict(classes=[0.5, 1.0]), "integer labels"),
    (dict(classes=[]), "integer labels"),
    (dict(optimizer="adam"), "optimizer='sgd'"),
    (dict(momentum=0.5), "momentum=0.9"),
])
def test_partial_fit_rejects_and_changes_nothing(bad, match):
    X, y = data()
    net = network()
    net.partial_fit(X, y, batch_size=64)
    before = snapshot(net)
    history = net.history_
    with pytest.raises(ValueError, match=match):
        net.partial_fit(X, y, batch_size=64, **bad)
    for a, b in zip(before, snapshot(net)):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b
    assert net.history_ is history


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("as_dtype", [np.float64, np.float32, object, np.int8], ids=str)
def test_partial_fit_reads_labels_as_fit_does_before_checking_classes(backend, as_dtype):
    """Issue 21, item 5: a float 2.0 (or object 2) is the label 2, outside classes=[0, 1]."""
    X, y = data()
    net = network((backend, 1, None))
    params = net.get_flat_params()
    with pytest.raises(ValueError, match=r"labels \[2\] that are not in classes \[0, 1\]"):
        net.partial_fit(X, y.astype(as_dtype), classes=[0, 1], batch_size=64)
    np.testing.assert_array_equal(net.get_flat_params(), params)
    assert net.training_state_ is None
    inside = y.astype(as_dtype)[y < 2]
    net.partial_fit(X[y < 2], inside, classes=[0, 1], batch_size=64)          # within classes: trains
    assert net.training_state_.epoch == 1


def test_partial_fit_rejects_labels_beyond_the_outputs_and_fit_only_options():
    X, y = data()
    net = network()
    with pytest.raises(ValueError):
        net.partial_fit(X, np.where(y == 2, 3, y))
    assert net.training_state_ is None
    for option in ("epochs", "resume", "validation_fraction", "early_stopping"):
        with pytest.raises(TypeError, match=option):
            net.partial_fit(X, y, **{option: 1})
    assert net.training_state_ is None and net.history_ is None


# ---------------------------------------------------------------- resume refused


@pytest.mark.parametrize("bad, match", [
    (dict(optimizer="adam"), "optimizer='sgd', not 'adam'"),
    (dict(momentum=0.5), "momentum=0.9"),
    (dict(nesterov=True), "nesterov=False"),
    (dict(weight_decay=0.1), "weight_decay=0.0"),
    (dict(lr_schedule_epochs=3), "lr_schedule_epochs=3 ends before"),
])
def test_resume_with_other_settings_is_refused_and_changes_nothing(bad, match):
    X, y = data()
    net = network()
    net.fit(X, y, epochs=2, batch_size=64)
    before = snapshot(net)
    with pytest.raises(ValueError, match=match):
        net.fit(X, y, epochs=2, batch_size=64, resume=True, **bad)
    for a, b in zip(before, snapshot(net)):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


def test_resume_without_a_state_is_refused():
    X, y = data()
    net = network()
    with pytest.raises(ValueError, match="has none"):
        net.fit(X, y, epochs=1, resume=True)
    assert net.training_state_ is None and net.history_ is None


def test_adam_hyperparameters_must_match_but_sgd_ignores_them():
    X, y = data()
    net = network()
    net.fit(X, y, epochs=1, optimizer="adam")
    with pytest.raises(ValueError, match="beta2"):
        net.fit(X, y, epochs=1, optimizer="adam", beta2=0.99, resume=True)
    sgd = network()
    sgd.fit(X, y, epochs=1)
    sgd.fit(X, y, epochs=1, beta2=0.99, resume=True, lr=0.01)     # lr and Adam's betas may change
    assert sgd.training_state_.epoch == 2


@requires_compiled
@pytest.mark.parametrize("parallel", ["hogwild", "average"])
def test_worker_strategies_keep_no_state_and_refuse_resume(parallel):
    X, y = data()
    net = network(("cython", 2, None))
    net.fit(X, y, epochs=1, batch_size=32)
    with pytest.raises(ValueError, match="one per worker"):
        net.fit(X, y, epochs=1, batch_size=32, parallel=parallel, resume=True)
    assert net.training_state_.epoch == 1
    net.fit(X, y, epochs=1, batch_size=32, parallel=parallel)
    assert net.training_state_ is None
    one = network(("cython", 1, None))
    one.fit(X, y, epochs=1, batch_size=32, parallel=parallel)     # one thread: the sync trainer
    one.fit(X, y, epochs=1, batch_size=32, parallel=parallel, resume=True)
    assert one.training_state_.epoch == 2


def test_divergence_rolls_the_state_back_with_the_weights():
    X, y = data()
    net = network(dtype="float64")
    net.fit(X, y, epochs=1, batch_size=64)
    with pytest.warns(RuntimeWarning, match="diverged"):
        net.fit(X * 1e30, y, epochs=2, batch_size=64, lr=1e30, resume=True, on_divergence="warn")
    state = net.training_state_
    assert np.isfinite(state.m).all() and np.isfinite(net.get_flat_params()).all()
    assert state.epoch == 1


# ---------------------------------------------------------------- seeds


@pytest.mark.parametrize("backend", BACKENDS)
def test_reseed_and_copy_seed_give_independent_shuffles(backend):
    X, y = data()
    base = Network(SIZES, backend=backend, seed=3)
    a, b, c = base.copy(seed=10), base.copy(seed=11), base.copy().reseed(10)
    assert a.seed == b.seed == 3 and a.training_seed == 10
    np.testing.assert_array_equal(a.get_flat_params(), base.get_flat_params())
    for net in (a, b, c):
        net.fit(X, y, epochs=1, batch_size=16)
    np.testing.assert_array_equal(a.get_flat_params(), c.get_flat_params())
    assert not np.array_equal(a.get_flat_params(), b.get_flat_params())
    assert a.training_state_.seed == 10


def test_reseed_rejects_bad_seeds_and_keeps_the_generator():
    net = network()
    before = pickle.dumps(net._rng.bit_generator.state)
    for bad in (-1, 1.5, "x"):
        with pytest.raises((TypeError, ValueError)):
            net.reseed(bad)
        with pytest.raises((TypeError, ValueError)):
            net.copy(seed=bad)
    assert pickle.dumps(net._rng.bit_generator.state) == before


def test_the_validation_split_is_the_same_on_every_fit():
    X, y = data()
    seen = []
    net = network()
    for _ in range(2):
        net.fit(X, y, epochs=1, validation_fraction=0.25, batch_size=64)
        seen.append(net.history_.val_loss[0])
    other = network()
    other.fit(X, y, epochs=1, validation_fraction=0.25, batch_size=64)
    # the same 50 rows are held out: the validation loss of the first fits agree
    assert seen[0] == other.history_.val_loss[0]


# ---------------------------------------------------------------- the command line


def _cli(*args):
    return cli.main(["train", "--no-progress", "-q", "--train-size", "300", *map(str, args)])


def test_cli_resume_continues_a_saved_run_bit_for_bit(tmp_path, capsys):
    common = ("--lr-schedule", "constant", "--no-standardize", "--hidden", "16", "--batch-size", "32")
    assert _cli("--epochs", 2, "--save", tmp_path / "a.npz", *common) == 0
    assert cli.main(["train", "--no-progress", "--resume", str(tmp_path / "a.npz"),
                     "--save", str(tmp_path / "b.npz")]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "epoch 3/4" in out and "epoch 4/4" in out
    assert _cli("--epochs", 4, "--save", tmp_path / "c.npz", *common) == 0
    b, c = Network.load(tmp_path / "b.npz"), Network.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(b.get_flat_params(), c.get_flat_params())
    assert b.training_state_.epoch == 4 and b.training_state_.meta["cli"]["epochs"] == 2


def test_cli_resume_with_standardized_inputs_continues(tmp_path):
    common = ("--lr-schedule", "constant", "--hidden", "16")
    assert _cli("--epochs", 2, "--save", tmp_path / "a.npz", *common) == 0
    assert _cli("--resume", tmp_path / "a.npz", "--epochs", 1, "--save", tmp_path / "b.npz") == 0
    assert _cli("--epochs", 3, "--save", tmp_path / "c.npz", *common) == 0
    b, c = Network.load(tmp_path / "b.npz"), Network.load(tmp_path / "c.npz")
    assert b.training_state_.epoch == 3
    # the fold/unfold of the standardization rounds, so only close to one run
    np.testing.assert_allclose(b.get_flat_params(), c.get_flat_params(), atol=1e-3)


def test_cli_resume_refuses_files_without_state_and_architecture_options(tmp_path, capsys):
    Network([64, 8, 10]).save(tmp_path / "plain.npz")
    assert _cli("--resume", tmp_path / "plain.npz") == 1
    assert "no training state" in capsys.readouterr().err
    assert _cli("--epochs", 1, "--save", tmp_path / "a.npz", "--hidden", "8") == 0
    assert _cli("--resume", tmp_path / "a.npz", "--hidden", "16") == 1
    assert "drop --hidden" in capsys.readouterr().err


def test_copy_to_another_dtype_casts_the_training_state():
    X, y = data()
    net = network(dtype="float32")
    net.fit(X, y, epochs=1, batch_size=64, **OPTIMIZERS["adam"])
    wide = net.copy(dtype="float64")
    state = wide.training_state_
    assert state.m.dtype == state.v.dtype == np.float64
    np.testing.assert_array_equal(state.m, net.training_state_.m.astype(np.float64))
    assert state.m is not net.training_state_.m
    wide.fit(X, y, epochs=1, batch_size=64, resume=True, **OPTIMIZERS["adam"])
    assert wide.training_state_.step == 2 * net.training_state_.step
    assert net.training_state_.epoch == 1                     # the original is untouched


# ---------------------------------------------------------------- with sample weights, dropout, clipping
# Dropout masks are keyed by the training state's (seed, epoch, step), so a resumed fit
# draws the masks the uninterrupted fit would have drawn; sample weights and clipping
# carry no state of their own.

EXTRAS = {
    "dropout": (dict(), 0.3),
    "dropout-weights-clip": (dict(clip_norm=0.5, class_weight={0: 2.0}), (0.25,)),
}


def row_weights(n=N_ROWS):
    return np.random.default_rng(7).uniform(0.0, 2.0, n)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])     # masked copy / masked in place
@pytest.mark.parametrize("extra_name", EXTRAS)
@pytest.mark.parametrize("opt", ["momentum", "adam"])
@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
def test_resume_with_dropout_equals_one_fit_bit_for_bit(run, opt, extra_name, activation):
    X, y = data()
    extra, rate = EXTRAS[extra_name]
    weights = row_weights() if extra else None
    kwargs = dict(batch_size=64, lr_schedule="cosine", validation_fraction=0.2,
                  sample_weight=weights, **extra, **OPTIMIZERS[opt])

    def make(dropout):
        backend, n_threads, mode = run
        net = Network(SIZES, activation=activation, backend=backend, n_threads=n_threads,
                      dtype="float64", seed=3, dropout=dropout)
        net.compiled_mode = mode
        return net

    whole = make(rate)
    whole.fit(X, y, epochs=4, **kwargs)
    split = make(rate)
    split.fit(X, y, epochs=2, lr_schedule_epochs=4, **kwargs)
    split.fit(X, y, epochs=2, resume=True, **kwargs)
    assert_same(whole, split)
    assert split.training_state_.step == 4 * 3
    plain = make(0.0)                    # the masks are really drawn
    plain.fit(X, y, epochs=4, **kwargs)
    assert not np.array_equal(plain.get_flat_params(), whole.get_flat_params())


@requires_compiled
def test_resumed_dropout_fits_agree_across_backends():
    X, y = data()
    kwargs = dict(batch_size=64, **OPTIMIZERS["adam"])
    nets = []
    for backend in ("numpy", "cython"):
        net = Network(SIZES, backend=backend, n_threads=1, dtype="float64", seed=5, dropout=0.4)
        net.fit(X, y, epochs=1, **kwargs)
        net.fit(X, y, epochs=2, resume=True, **kwargs)
        nets.append(net)
    np.testing.assert_allclose(nets[0].get_flat_params(), nets[1].get_flat_params(),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
def test_partial_fit_with_weights_and_dropout_equals_fit(run):
    X, y = data()
    w = row_weights()
    kwargs = dict(batch_size=64, clip_norm=1.0, **OPTIMIZERS["nesterov"])
    whole = network(run, "float64")
    whole.dropout = 0.3
    whole.fit(X, y, epochs=2, sample_weight=w, class_weight="balanced", **kwargs)
    streamed = network(run, "float64")
    streamed.dropout = 0.3
    for _ in range(2):
        streamed.partial_fit(X, y, classes=[0, 1, 2], sample_weight=w, class_weight="balanced",
                             **kwargs)
    assert_same(whole, streamed)
    unweighted = network(run, "float64")
    unweighted.dropout = 0.3
    unweighted.partial_fit(X, y, **kwargs)
    unweighted.partial_fit(X, y, **kwargs)
    assert not np.array_equal(unweighted.get_flat_params(), whole.get_flat_params())


@pytest.mark.parametrize("bad, error, match", [
    (dict(sample_weight=-np.ones(N_ROWS)), ValueError, "negative"),
    (dict(sample_weight=np.ones(N_ROWS - 1)), ValueError, "one weight per row"),
    (dict(sample_weight=np.full(N_ROWS, np.nan)), ValueError, "finite"),
    (dict(class_weight={5: 1.0}), ValueError, "class 5"),
    (dict(class_weight="heaviest"), ValueError, "balanced"),
    (dict(clip_norm=0), ValueError, "clip_norm"),
])
def test_partial_fit_rejects_bad_weights_and_changes_nothing(bad, error, match):
    X, y = data()
    net = network()
    net.dropout = 0.2
    net.partial_fit(X, y, batch_size=64)
    before = snapshot(net)
    with pytest.raises(error, match=match):
        net.partial_fit(X, y, batch_size=64, **bad)
    for a, b in zip(before, snapshot(net)):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_pickle_keep_dropout_and_the_state(tmp_path, backend):
    X, y = data()
    kwargs = dict(batch_size=64, **OPTIMIZERS["adam"])
    whole = Network(SIZES, backend=backend, n_threads=1, seed=2, dropout=0.35)
    whole.fit(X, y, epochs=3, **kwargs)
    half = Network(SIZES, backend=backend, n_threads=1, seed=2, dropout=0.35)
    half.fit(X, y, epochs=1, **kwargs)
    half.save(tmp_path / "half.npz")
    loaded = Network.load(tmp_path / "half.npz", backend=backend, n_threads=1)
    for resumed in (loaded, pickle.loads(pickle.dumps(half)), half.copy()):
        assert resumed.dropout == half.dropout
        assert_same(resumed, half)
        resumed.fit(X, y, epochs=2, resume=True, **kwargs)
        assert_same(resumed, whole)


def test_cli_resume_with_dropout_class_weight_and_clipping_is_bit_for_bit(tmp_path):
    common = ("--lr-schedule", "constant", "--no-standardize", "--hidden", "16", "--batch-size", "32",
              "--dropout", "0.2", "--class-weight", "balanced", "--clip-norm", "1")
    assert _cli("--epochs", 2, "--save", tmp_path / "a.npz", *common) == 0
    assert _cli("--resume", tmp_path / "a.npz", "--save", tmp_path / "b.npz") == 0
    assert _cli("--epochs", 4, "--save", tmp_path / "c.npz", *common) == 0
    b, c = Network.load(tmp_path / "b.npz"), Network.load(tmp_path / "c.npz")
    assert b.dropout == c.dropout == (0.2,)
    assert b.training_state_.meta["cli"]["class_weight"] == "balanced"
    np.testing.assert_array_equal(b.get_flat_params(), c.get_flat_params())
