"""The compiled path against its oracle, the NumPy reference path.

Every pass (forward, loss, backprop) and whole fits must agree with
``backend="numpy"`` for every activation × output × loss × dtype, in both
compiled modes (``chunked``: batch rows split into chunks, per-chunk
gradients summed in a fixed order; ``batch``: whole-batch GEMMs) and for 1,
2 and 3 threads.  Chunked mode promises bitwise-equal weights for any thread
count; batch mode goes through the BLAS's own threading and promises
agreement to rounding (a few ulps).
"""

import functools
import sys
import types

import numpy as np
import pytest
from _helpers import COMBOS, make_trainer, random_data, skip_module_unless_compiled, split_step_threads

from cymlp import Network, TrainingDiverged, available_backends, reference

skip_module_unless_compiled()
from cymlp import _cython_backend, _kernels

# the threaded split step must run on the tests' tiny networks (see the fixture)
pytestmark = pytest.mark.usefixtures("split_on_every_thread")

DTYPES = ["float64", "float32"]
MODES = ["chunked", "batch", "split"]
THREADS = [1, 2, 3]
SIZES = [6, 9, 7, 4]
CHUNK = _kernels.CHUNK_ROWS
BATCH = 2 * CHUNK + 7       # two full chunks and a partial one
N_ROWS = 3 * BATCH + 5      # not a multiple of the batch size


def tolerances(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-4, atol=2e-5)


@functools.cache
def data(output, n_rows=N_ROWS, seed=0):
    """Read-only (cached) data; labels for softmax and sigmoid outputs alike."""
    targets = {"identity": "regression", "exp": "counts"}.get(output, "labels")
    X, y = random_data(n_rows, SIZES[0], SIZES[-1], targets=targets, seed=seed)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def lr_for(output):
    """The learning rate of the parity fits: exp outputs (unbounded, e^z) need a smaller one."""
    return 0.005 if output == "exp" else 0.05


def make_pair(act, out, loss, dtype, sizes=SIZES, seed=1):
    ref = Network(sizes, act, out, loss, dtype=dtype, backend="numpy", seed=seed)
    return ref, ref.copy(backend="cython")


@functools.cache
def numpy_fit(act, out, loss, dtype, batch_size, opt_items, epochs=2):
    """Weights and history of the reference fit (cached: shared by modes and thread counts)."""
    net, _ = make_pair(act, out, loss, dtype)
    X, y = data(out)
    history = net.fit(X, y, epochs=epochs, batch_size=batch_size, lr=lr_for(out), **dict(opt_items))
    return net.get_flat_params(), history["loss"], history["accuracy"]


def compiled_fit(act, out, loss, dtype, batch_size, opt_items, mode, n_threads, epochs=2):
    _, net = make_pair(act, out, loss, dtype)
    net.compiled_mode = mode
    net.n_threads = n_threads
    if mode == "split":              # the parity below covers the threaded split step
        assert split_step_threads(net, batch_size) == n_threads
    X, y = data(out)
    history = net.fit(X, y, epochs=epochs, batch_size=batch_size, lr=lr_for(out), **dict(opt_items))
    return net.get_flat_params(), history["loss"], history["accuracy"]


# --------------------------------------------------------------------------
# Installation
# --------------------------------------------------------------------------

def test_cython_is_the_default_backend_when_built():
    assert available_backends() == ("cython", "numpy")
    assert Network([3, 2]).backend == "cython"


def test_kernels_report_build_configuration():
    assert isinstance(_kernels.OPENMP_ENABLED, bool)
    assert isinstance(_kernels.DEBUG_BUILD, bool)
    assert _kernels.openmp_max_threads() >= 1


def test_simd_clones_exactly_where_gcc_builds_for_x86_64_glibc():
    """cymlp/_simd.pxd: AVX2/AVX-512 clones of the elementwise passes with GCC on x86-64 Linux
    (glibc's ifuncs pick one at load time), never in a sanitizer build, nowhere else."""
    import platform
    import sysconfig
    x86_64_glibc = (sys.platform.startswith("linux") and platform.machine() == "x86_64"
                    and platform.libc_ver()[0] == "glibc")
    if _kernels.SIMD_CLONES:
        assert x86_64_glibc and not _kernels.SANITIZE_BUILD
    compiler = (sysconfig.get_config_var("CC") or "").split()[0:1]
    if x86_64_glibc and not _kernels.SANITIZE_BUILD and compiler and "gcc" in compiler[0]:
        assert _kernels.SIMD_CLONES


# --------------------------------------------------------------------------
# The passes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act,out,loss", COMBOS)
def test_forward_loss_and_gradients_match_numpy(act, out, loss, dtype):
    ref, net = make_pair(act, out, loss, dtype)
    X, y = data(out)
    tol = tolerances(dtype)
    np.testing.assert_allclose(net.feedforward(X), ref.feedforward(X), **tol)
    np.testing.assert_allclose(net.loss(X, y), ref.loss(X, y), **tol)
    gw, gb = net.backprop(X, y)
    rw, rb = ref.backprop(X, y)
    for got, want in zip(gw + gb, rw + rb):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("n_threads", THREADS)
def test_passes_on_one_row_and_on_many_blocks(n_threads):
    ref, net = make_pair("tanh", "softmax", "cross_entropy", "float64")
    net.n_threads = n_threads
    rng = np.random.default_rng(5)
    for n in (1, 2500):                 # 2500 rows: several forward blocks
        X = rng.standard_normal((n, SIZES[0]))
        y = rng.integers(0, SIZES[-1], n)
        np.testing.assert_allclose(net.feedforward(X), ref.feedforward(X), rtol=1e-12)
        np.testing.assert_allclose(net.loss(X, y), ref.loss(X, y), rtol=1e-12)
        for got, want in zip(sum(net.backprop(X, y), []), sum(ref.backprop(X, y), [])):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_extreme_weighted_inputs_stay_finite_like_numpy():
    ref, net = make_pair("sigmoid", "sigmoid", "cross_entropy", "float64")
    for W in ref.weights:
        W *= 400
    net.set_flat_params(ref.get_flat_params())
    X, y = data("sigmoid")
    # the kernels flush subnormal outputs to zero (cymlp/_fpu.pxd), NumPy keeps them
    np.testing.assert_allclose(net.feedforward(X), ref.feedforward(X), rtol=1e-12,
                               atol=np.finfo(np.float64).smallest_normal)
    assert np.isfinite(net.loss(X, y))
    np.testing.assert_allclose(net.loss(X, y), ref.loss(X, y), rtol=1e-10)


# --------------------------------------------------------------------------
# Training: parity with the NumPy trainer
# --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act,out,loss", COMBOS)
def test_fit_matches_numpy_for_every_combination(act, out, loss, dtype, mode):
    want, want_loss, want_acc = numpy_fit(act, out, loss, dtype, BATCH, (("momentum", 0.9),))
    tol = tolerances(dtype)
    for n_threads in THREADS:
        got, got_loss, got_acc = compiled_fit(act, out, loss, dtype, BATCH, (("momentum", 0.9),),
                                              mode, n_threads)
        np.testing.assert_allclose(got, want, **tol)
        np.testing.assert_allclose(got_loss, want_loss, **tol)
        if out not in ("identity", "exp"):
            np.testing.assert_allclose(got_acc, want_acc, atol=1 / N_ROWS + 1e-12)


OPTIMIZERS = {
    "sgd": (("momentum", 0.0),),
    "sgd+decay": (("momentum", 0.0), ("weight_decay", 1e-2)),
    "momentum+decay": (("momentum", 0.9), ("weight_decay", 1e-2)),
    "nesterov": (("momentum", 0.8), ("nesterov", True)),
    "nesterov+decay": (("momentum", 0.8), ("nesterov", True), ("weight_decay", 1e-2)),
    "adam": (("optimizer", "adam"),),
    "adam+decay": (("optimizer", "adam"), ("weight_decay", 1e-2), ("beta1", 0.8)),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_optimizers_match_numpy(optimizer, dtype, mode):
    opt = OPTIMIZERS[optimizer]
    want, want_loss, _ = numpy_fit("relu", "softmax", "cross_entropy", dtype, BATCH, opt, epochs=3)
    for n_threads in (1, 2):
        got, got_loss, _ = compiled_fit("relu", "softmax", "cross_entropy", dtype, BATCH, opt, mode,
                                        n_threads, epochs=3)
        np.testing.assert_allclose(got, want, **tolerances(dtype))
        np.testing.assert_allclose(got_loss, want_loss, **tolerances(dtype))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_size", [1, 7, CHUNK - 1, CHUNK, CHUNK + 3, 2 * CHUNK + 5, 3 * CHUNK])
def test_batch_sizes_that_do_not_fill_chunks(batch_size, mode):
    # Partial chunks, exactly one chunk, a short last batch, one row per batch.
    n_rows = 3 * CHUNK + 11
    X, y = data("softmax", n_rows=n_rows)
    ref, _ = make_pair("sigmoid", "softmax", "quadratic", "float64")
    want = ref.copy()
    h_want = want.fit(X, y, epochs=2, batch_size=batch_size, lr=0.05, momentum=0.5)
    for n_threads in (1, 2):
        net = ref.copy(backend="cython")
        net.compiled_mode = mode
        net.n_threads = n_threads
        h_got = net.fit(X, y, epochs=2, batch_size=batch_size, lr=0.05, momentum=0.5)
        np.testing.assert_allclose(net.get_flat_params(), want.get_flat_params(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(h_got["loss"], h_want["loss"], rtol=1e-10)
        np.testing.assert_allclose(h_got["accuracy"], h_want["accuracy"], atol=1 / n_rows + 1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_large_batch_caps_the_number_of_chunks(mode):
    # More than 64 chunks of CHUNK rows would be needed, so the chunks grow.
    n = 64 * CHUNK + 100
    assert _kernels.n_chunks_for(n) == 64
    rng = np.random.default_rng(2)
    X = rng.standard_normal((n, SIZES[0]))
    y = rng.integers(0, SIZES[-1], n)
    ref, net = make_pair("leaky_relu", "softmax", "cross_entropy", "float64")
    net.compiled_mode = mode
    net.n_threads = 2
    for m in (ref, net):
        m.fit(X, y, epochs=2, batch_size=n - 30, lr=0.1)
    np.testing.assert_allclose(net.get_flat_params(), ref.get_flat_params(), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------
# Determinism across thread counts
# --------------------------------------------------------------------------

def _weights_after_fit(mode, n_threads, dtype, sizes=(20, 33, 17, 5), batch_size=3 * CHUNK + 5,
                       **optimizer):
    rng = np.random.default_rng(11)
    X = rng.standard_normal((400, sizes[0]))
    y = rng.integers(0, sizes[-1], 400)
    net = Network(list(sizes), "tanh", "softmax", "cross_entropy", dtype=dtype, backend="cython",
                  n_threads=n_threads, seed=4)
    net.compiled_mode = mode
    net.fit(X, y, epochs=3, batch_size=batch_size, lr=0.1, **({"momentum": 0.9} | optimizer))
    return net.get_flat_params()


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunked_mode_is_bitwise_identical_for_any_thread_count(dtype):
    results = [_weights_after_fit("chunked", t, dtype) for t in THREADS]
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.parametrize("mode", ["batch", "split"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_whole_batch_modes_agree_across_thread_counts_to_rounding(dtype, mode):
    # batch: the BLAS's threading may sum in another order for another thread
    # count; split: each element comes from a BLAS call on another block.
    # Equal up to a few ulps, not bitwise.
    results = [_weights_after_fit(mode, t, dtype, sizes=(120, 200, 150, 5)) for t in THREADS]
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act,out,loss", COMBOS)
def test_split_mode_sharing_products_by_units_matches_numpy(split_units_everywhere, act, out, loss, dtype):
    """Every hidden product shared by units (barriers between layers), 2 and 3 threads."""
    from cymlp import _kernels_split
    plan = _kernels.Plan(SIZES, act, out, loss)
    assert _kernels_split.units_for_step(plan, BATCH) == ((True, True, False), (True, True))
    want, want_loss, want_acc = numpy_fit(act, out, loss, dtype, BATCH, (("momentum", 0.9),))
    for n_threads in (2, 3):
        got, got_loss, got_acc = compiled_fit(act, out, loss, dtype, BATCH, (("momentum", 0.9),), "split",
                                              n_threads)
        np.testing.assert_allclose(got, want, **tolerances(dtype))
        np.testing.assert_allclose(got_loss, want_loss, **tolerances(dtype))
        if out not in ("identity", "exp"):        # classifiers: an accuracy to compare
            np.testing.assert_allclose(got_acc, want_acc, atol=1 / N_ROWS + 1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov+decay", "adam+decay"])
@pytest.mark.parametrize("batch_size", [2, 7, BATCH])
def test_split_mode_by_units_for_each_optimizer_and_small_batches(split_units_everywhere, optimizer,
                                                                  batch_size):
    opt = OPTIMIZERS[optimizer]
    want, want_loss, _ = numpy_fit("relu", "softmax", "cross_entropy", "float64", batch_size, opt, epochs=3)
    for n_threads in (2, 3):
        got, got_loss, _ = compiled_fit("relu", "softmax", "cross_entropy", "float64", batch_size, opt,
                                        "split", min(n_threads, batch_size), epochs=3)
        np.testing.assert_allclose(got, want, **tolerances("float64"))
        np.testing.assert_allclose(got_loss, want_loss, **tolerances("float64"))


def test_split_mode_shares_by_units_where_the_weights_are_the_bigger_operand():
    from cymlp import _kernels_split
    units = _kernels_split.units_for_step
    medium = _kernels.Plan([784, 256, 128, 10], "relu", "softmax", "cross_entropy")
    assert units(medium, 64) == ((True, True, False), (True, False))
    paper = _kernels.Plan([784, 100, 10], "relu", "softmax", "cross_entropy")
    assert units(paper, 200) == ((False, False), (False,))      # the batch is the bigger operand
    seed = _kernels.Plan([1000, 900, 900, 900, 10], "sigmoid", "sigmoid", "quadratic")
    assert units(seed, 100) == ((True, True, True, False), (True, True, False))


@pytest.mark.parametrize("dtype", DTYPES)
def test_split_mode_on_one_thread_is_batch_mode_bit_for_bit(dtype):
    for opt in ({"momentum": 0.9}, {"momentum": 0.0}, {"optimizer": "adam"}):
        got = [_weights_after_fit(mode, 1, dtype, sizes=(20, 30, 7), **opt) for mode in ("batch", "split")]
        np.testing.assert_array_equal(got[0], got[1])


def test_split_mode_gives_each_thread_enough_work():
    from cymlp import _kernels_split
    old = _kernels_split._set_split_min_flops(2_500_000)     # the real threshold
    try:
        threads = _kernels_split.threads_for_step
        nielsen = _kernels.Plan([784, 30, 10], "sigmoid", "sigmoid", "quadratic")
        fmnist = _kernels.Plan([784, 100, 10], "relu", "softmax", "cross_entropy")
        assert threads(nielsen, 10, 2) == 1          # 1.4 MFLOP a step: not worth a second thread
        assert threads(nielsen, 40, 2) == 2          # 5.7 MFLOP
        assert threads(fmnist, 200, 2) == 2
        assert threads(fmnist, 200, 16) == 16        # 95 MFLOP
        assert threads(fmnist, 20, 16) == 3          # 9.5 MFLOP: three threads of 2.5 or more
        assert threads(fmnist, 3, 16) == 1
        assert threads(fmnist, 200, 1) == 1
        # below the threshold the step really runs on one thread: bitwise the 1-thread fit
        one, two = (_weights_after_fit("split", t, "float64", batch_size=101) for t in (1, 2))
        np.testing.assert_array_equal(one, two)
    finally:
        _kernels_split._set_split_min_flops(old)


def test_same_seed_same_weights_run_to_run():
    for mode in MODES:
        np.testing.assert_array_equal(_weights_after_fit(mode, 2, "float64"),
                                      _weights_after_fit(mode, 2, "float64"))


def test_automatic_mode_depends_on_size_not_threads():
    choose = _cython_backend.choose_mode
    assert choose([64, 32, 10], 16, 4) == "split"          # one chunk: whole-batch steps
    assert choose([64, 32, 10], 4 * CHUNK, 4) == "chunked"
    assert choose([1000, 900, 900, 900, 10], 100, 8) == "split"
    assert choose([8, 4], 10, 8, requested="batch") == "batch"
    dropout = types.SimpleNamespace(has_dropout=True, clip_norm=None)
    clipped = types.SimpleNamespace(has_dropout=False, clip_norm=1.0)
    weighted = types.SimpleNamespace(has_dropout=False, clip_norm=None)
    for options, mode in ((dropout, "batch"), (clipped, "batch"), (weighted, "split")):
        assert choose([1000, 900, 10], 100, 8, options=options) == mode
    with pytest.raises(ValueError):
        choose([8, 4], 10, 8, requested="hogwild")


# --------------------------------------------------------------------------
# Input layouts
# --------------------------------------------------------------------------

def test_read_only_fortran_and_strided_inputs_give_the_same_results():
    X, y = data("softmax")
    layouts = {
        "read-only": X,                                  # data() returns read-only arrays
        "fortran": np.asfortranarray(X),
        "strided": np.repeat(X, 2, axis=1)[:, ::2],
        "float32 input": X.astype(np.float32).astype(np.float64),
    }
    base = Network(SIZES, "relu", "softmax", "cross_entropy", dtype="float64", backend="cython", seed=1)
    want_out = base.feedforward(np.ascontiguousarray(X))
    want = base.copy()
    want.fit(np.ascontiguousarray(X), np.array(y), epochs=2, batch_size=8, lr=0.1)
    for name, Xl in list(layouts.items())[:3]:
        np.testing.assert_array_equal(base.feedforward(Xl), want_out, err_msg=name)
        net = base.copy()
        net.fit(Xl, y, epochs=2, batch_size=8, lr=0.1)
        np.testing.assert_array_equal(net.get_flat_params(), want.get_flat_params(), err_msg=name)


# --------------------------------------------------------------------------
# The trainer's contract
# --------------------------------------------------------------------------

def _trainers(mode, labels=True, dtype="float64"):
    ref, net = make_pair("sigmoid", "softmax", "cross_entropy", dtype)
    net.compiled_mode = mode
    X, y = data("softmax")
    Y = np.eye(SIZES[-1], dtype=dtype)[y]
    X = X.astype(dtype)
    lab = y.astype(np.int64) if labels else None
    return ref, make_trainer(ref, X, Y, lab, BATCH), net, make_trainer(net, X, Y, lab, BATCH)


@pytest.mark.parametrize("labels", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_run_reports_loss_correct_seen_and_steps_like_numpy(mode, labels):
    ref, rt, net, ct = _trainers(mode, labels)
    order = np.random.default_rng(0).permutation(N_ROWS).astype(np.intp)
    try:
        for first, stop in ((0, 1), (1, 4)):        # 4 batches: the last has 5 rows
            want = rt.run(order, first, stop, 0.3)
            got = ct.run(order, first, stop, 0.3)
            assert got[1:] == want[1:]
            assert got[0] == pytest.approx(want[0], rel=1e-12)
        np.testing.assert_allclose(net.get_flat_params(), ref.get_flat_params(), rtol=1e-12)
    finally:
        ct.close()


@pytest.mark.parametrize("mode", MODES)
def test_run_stops_before_updating_when_the_loss_is_not_finite(mode):
    net = Network([3, 4, 2], "relu", "identity", "quadratic", dtype="float64", backend="cython", seed=0)
    net.compiled_mode = mode
    for W in net.weights:
        W[...] = 1e200                               # z overflows: the loss is infinite
    X = np.ones((12, 3))
    Y = np.zeros((12, 2))
    trainer = make_trainer(net, X, Y, None, 4)
    before = net.get_flat_params()
    try:
        loss_sum, correct, seen, steps = trainer.run(np.arange(12, dtype=np.intp), 0, 3, 0.1)
    finally:
        trainer.close()
    assert (steps, seen, correct) == (0, 0, 0)
    np.testing.assert_array_equal(net.get_flat_params(), before)


def test_divergence_is_reported_like_numpy():
    X, y = data("identity")
    for backend in ("numpy", "cython"):
        net = Network(SIZES, "relu", "identity", "quadratic", dtype="float64", backend=backend, seed=1)
        with pytest.raises(TrainingDiverged):
            net.fit(X * 1e3, y * 1e3, epochs=5, batch_size=8, lr=1e3, momentum=0.9)
        assert net.history_.diverged
        assert np.isfinite(net.get_flat_params()).all()


def test_blas_thread_limit_is_restored_after_fit():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    X, y = data("softmax")
    for mode in MODES:
        net = Network(SIZES, backend="cython", n_threads=1)
        net.compiled_mode = mode
        net.fit(X, y, epochs=1, batch_size=8)
    after = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert after == before


# --------------------------------------------------------------------------
# Subnormal numbers (cymlp/_fpu.pxd): flushed to zero inside the kernels only
# --------------------------------------------------------------------------

needs_flush = pytest.mark.skipif(not _kernels.FLUSHES_SUBNORMALS,
                                 reason="subnormals are flushed on x86-64 builds only")


@needs_flush
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_flush_subnormal_results_to_zero(dtype):
    tiny = np.finfo(dtype).smallest_normal
    ref, net = make_pair("relu", "identity", "quadratic", dtype, sizes=[1, 1])
    ref.weights[0][...] = np.sqrt(tiny) / 4
    ref.biases[0][...] = 0
    net.set_flat_params(ref.get_flat_params())
    X = np.full((3, 1), np.sqrt(tiny) / 4, dtype=dtype)      # X·W = tiny / 16: subnormal
    want = ref.feedforward(X)
    assert 0 < abs(want[0, 0]) < tiny                           # NumPy keeps the subnormal
    assert (net.feedforward(X) == 0).all()                      # the kernels flush it


@needs_flush
def test_the_callers_floating_point_mode_is_restored():
    X, y = data("softmax")
    assert _kernels.fpu_flush_flags() == 0
    for mode, parallel in (("chunked", "sync"), ("batch", "sync"), (None, "average")):
        net = Network(SIZES, backend="cython", n_threads=2, seed=0)
        net.compiled_mode = mode
        net.fit(X, y, epochs=1, batch_size=BATCH, parallel=parallel)
        net.predict(X)
        assert _kernels.fpu_flush_flags() == 0, (mode, parallel)
    assert np.float32(1e-39) != 0                              # NumPy still sees subnormals


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_training_through_subnormals_stays_within_the_tolerances(dtype, mode):
    # Hidden biases deep in the sigmoid's tail put the hidden activations,
    # their derivatives, the first layer's gradients and its momentum velocity
    # in the subnormal range, which NumPy keeps and the kernels flush.
    X, y = data("sigmoid")
    ref, _ = make_pair("sigmoid", "sigmoid", "quadratic", dtype)
    z_subnormal = {"float32": -95.0, "float64": -725.0}[dtype]     # e^z below the smallest normal
    for b in ref.biases[:-1]:
        b[...] = z_subnormal
    for W in ref.weights[:-1]:
        W *= 0.3
    net = ref.copy(backend="cython")
    net.compiled_mode = mode
    hidden = reference.feedforward(ref.weights, ref.biases, "sigmoid", "sigmoid", X.astype(dtype))[0][1]
    tiny = np.finfo(dtype).smallest_normal
    assert ((hidden > 0) & (hidden < tiny)).mean() > 0.5          # the test reaches subnormals
    for model in (ref, net):
        model.fit(X, y, epochs=2, batch_size=BATCH, lr=0.5, momentum=0.9)
    np.testing.assert_allclose(net.get_flat_params(), ref.get_flat_params(), **tolerances(dtype))


def test_compiled_mode_forces_the_mode_is_checked_and_travels_with_the_network():
    net = Network(SIZES, backend="cython", n_threads=2, seed=0)
    assert net.compiled_mode is None
    X, y = data("softmax")
    Y = np.eye(SIZES[-1], dtype=net.dtype)[y]
    for mode in MODES:
        net.compiled_mode = mode
        trainer = make_trainer(net, X.astype(net.dtype), Y, y, BATCH)
        try:
            assert trainer.mode == mode
        finally:
            trainer.close()
        assert net.copy().compiled_mode == mode
    with pytest.raises(ValueError, match="compiled_mode must be one of"):
        net.compiled_mode = "hogwild"
    assert net.compiled_mode == MODES[-1]
