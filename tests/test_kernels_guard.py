"""The compiled kernels' entry points check every buffer against the plan.

Issue 11, case 1: a parameter vector shorter than the architecture made the
compiled trainer read and write past its end (SIGSEGV, or a false
TrainingDiverged from garbage memory).  Every ``def`` entry point of
``cymlp._kernels`` / ``_kernels_parallel`` now raises ValueError before it
releases the GIL.  A missing check could crash the interpreter, so the calls
run in a child process (this file run as a script) and the parent asserts
that the child exited normally and that each call raised ValueError.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _helpers import subprocess_env

HERE = os.path.abspath(__file__)
SIZES = [8, 16, 3]


def _plan_of(sizes, hidden="sigmoid", loss="cross_entropy"):
    from cymlp import _kernels
    return _kernels.Plan(sizes, hidden, "softmax", loss)


def _plan():
    return _plan_of(SIZES)


def _data(dtype=np.float64, n=64, width=SIZES[0], k=SIZES[-1]):
    rng = np.random.default_rng(0)
    X = rng.random((n, width)).astype(dtype)
    Y = np.eye(k, dtype=dtype)[np.arange(n) % k]
    labels = (np.arange(n) % k).astype(np.int64)
    return X, Y, labels


def _sync(theta=None, X=None, Y=None, labels=None, batch_size=16, mode="batch",
          optimizer="sgd", dtype=np.float64, plan=None):
    from cymlp import _kernels
    plan = plan or _plan()
    X0, Y0, labels0 = _data(dtype)
    theta = np.zeros(plan.n_params, dtype=dtype) if theta is None else theta
    return _kernels.SyncTrainer(plan, theta, X0 if X is None else X, Y0 if Y is None else Y,
                                labels0 if labels is None else labels, batch_size, mode, 2,
                                optimizer, 0.0, False, 0.0, 0.9, 0.999, 1e-8)


def _parallel(theta=None, strategy="hogwild", n_workers=2, dtype=np.float64):
    from cymlp import _kernels_parallel
    plan = _plan()
    X, Y, labels = _data(dtype)
    theta = np.zeros(plan.n_params, dtype=dtype) if theta is None else theta
    return _kernels_parallel.ParallelTrainer(plan, theta, X, Y, labels, 16, strategy, n_workers,
                                             None, "uniform", "sgd", 0.0, False, 0.0, 0.9,
                                             0.999, 1e-8)


def _forward(n_theta=None, n_scratch=None, out_shape=None, Y_shape=None, width=SIZES[0]):
    from cymlp import _kernels
    plan = _plan()
    n = 10
    theta = np.zeros(plan.n_params if n_theta is None else n_theta)
    X = np.zeros((n, width))
    out = np.zeros(out_shape or (n, SIZES[-1]))
    scratch = np.zeros(n * plan.row_width if n_scratch is None else n_scratch)
    Y = None if Y_shape is None else np.zeros(Y_shape)
    return _kernels.forward(plan, theta, X, out, scratch, Y)


def _all_finite(X):
    from cymlp import _kernels
    return _kernels.all_finite(X, 2)


def _loss_grad(n_theta=None, n_grad=None, n_scratch=None, Y_shape=None):
    from cymlp import _kernels
    plan = _plan()
    n = 10
    theta = np.zeros(plan.n_params if n_theta is None else n_theta)
    X = np.zeros((n, SIZES[0]))
    Y = np.zeros(Y_shape or (n, SIZES[-1]))
    grad = np.zeros(plan.n_params if n_grad is None else n_grad)
    scratch = np.zeros(n * plan.row_width if n_scratch is None else n_scratch)
    return _kernels.loss_grad(plan, theta, X, Y, grad, scratch)


def _sparse(indices=None, indptr=None, data=None, n_cols=SIZES[0], index=np.int32):
    """SparseRows of a 4 x n_cols matrix with two values a row, some part replaced."""
    from cymlp import _kernels
    indices = np.array([0, 1, 2, 3, 4, 5, 6, 7], index) if indices is None else indices
    indptr = np.array([0, 2, 4, 6, 8], index) if indptr is None else indptr
    data = np.ones(8) if data is None else data
    return _kernels.SparseRows(data, indices, indptr, n_cols)


def _sync_sparse(rows):
    """A sync trainer on sparse X (64 rows expected by Y) of ``rows`` rows."""
    from cymlp import _kernels
    indptr = np.zeros(rows + 1, np.int32)
    X = _kernels.SparseRows(np.zeros(0), np.zeros(0, np.int32), indptr, SIZES[0])
    return _sync(X=X)


def _full_batch(X=None, Y_shape=None, n_theta=None, n_grad=None, block_rows=5, dtype=np.float64):
    from cymlp import _kernels
    plan = _plan()
    n = 10
    X = np.zeros((n, SIZES[0]), dtype) if X is None else X
    Y = np.zeros(Y_shape or (n, SIZES[-1]), dtype)
    fb = _kernels.FullBatch(plan, X, Y, None, block_rows)
    fb.evaluate(np.zeros(plan.n_params if n_theta is None else n_theta, dtype),
                np.zeros(plan.n_params if n_grad is None else n_grad, dtype))


def _kernels_full_batch_mixed():
    from cymlp import _kernels
    plan = _plan()
    fb = _kernels.FullBatch(plan, np.zeros((4, SIZES[0])), np.zeros((4, SIZES[-1])), None, 2)
    fb.evaluate(np.zeros(plan.n_params, np.float32), np.zeros(plan.n_params))


def _run_sync(order, first=0, stop=4, step=0):
    return _sync().run(order, first, stop, 0.1, step)


def _average(n_rep=3, P=5, n_out=5, n_examples=3, weighting="uniform"):
    from cymlp import _kernels_parallel
    return _kernels_parallel.average_replicas(np.ones((n_rep, P)), np.ones(n_examples), weighting,
                                              np.zeros(n_out))


def _network_short_theta():
    """A Network whose parameter buffer was replaced by a shorter one."""
    from cymlp import Network
    net = Network(SIZES, dtype="float64", seed=0)
    if not hasattr(net, "_theta"):
        raise ValueError("(no private parameter buffer to replace)")
    net._theta = net._theta[:-5].copy()
    X, _, labels = _data()
    net.fit(X, labels, epochs=2, batch_size=16)


def _network_grown_layer():
    """Issue 11's reproducer: a layer width changed after construction."""
    from cymlp import Network
    net = Network(SIZES, dtype="float64", seed=0)
    try:
        net.sizes[1] = 200000
    except (TypeError, AttributeError) as exc:     # an immutable architecture is fine too
        raise ValueError(f"(sizes is read-only: {exc})") from None
    X, _, labels = _data()
    net.fit(X, labels, epochs=3, batch_size=16)


def _readonly(a):
    a.setflags(write=False)
    return a


P = (SIZES[0] + 1) * SIZES[1] + (SIZES[1] + 1) * SIZES[2]

CASES = {
    "plan: one layer": lambda: _plan_of([8]),
    "plan: zero width": lambda: _plan_of([8, 0, 3]),
    "plan: unknown activation": lambda: _plan_of(SIZES, hidden="swish"),
    "plan: unknown loss": lambda: _plan_of(SIZES, loss="hinge"),
    "sync: theta short": lambda: _sync(theta=np.zeros(P - 1)),
    "sync: theta long": lambda: _sync(theta=np.zeros(P + 1)),
    "sync: theta short float32": lambda: _sync(theta=np.zeros(P - 7, np.float32), dtype=np.float32),
    "sync: theta for a bigger plan": lambda: _sync(theta=np.zeros(P), plan=_plan_of([8, 200000, 3])),
    "sync: theta read-only": lambda: _sync(theta=_readonly(np.zeros(P))),
    "sync: theta 2-D": lambda: _sync(theta=np.zeros((P, 1))),
    "sync: theta dtype differs from X": lambda: _sync(theta=np.zeros(P, np.float32)),
    "sync: X too narrow": lambda: _sync(X=_data(width=7)[0]),
    "sync: X not contiguous": lambda: _sync(X=np.zeros((64, 16))[:, ::2]),
    "sync: Y too few rows": lambda: _sync(Y=_data(n=63)[1]),
    "sync: Y wrong width": lambda: _sync(Y=_data(k=4)[1]),
    "sync: labels too short": lambda: _sync(labels=np.zeros(10, np.int64)),
    "sync: labels int32": lambda: _sync(labels=np.zeros(64, np.int32)),
    "sync: batch_size 0": lambda: _sync(batch_size=0),
    "sync: unknown mode": lambda: _sync(mode="team"),
    "sync: unknown optimizer": lambda: _sync(optimizer="rmsprop"),
    "sync chunked: theta short": lambda: _sync(theta=np.zeros(P - 1), mode="chunked"),
    "run: order too short": lambda: _run_sync(np.arange(63, dtype=np.intp)),
    "run: order index past the end": lambda: _run_sync(np.r_[np.arange(63), 10**9].astype(np.intp),
                                                       stop=10),
    "run: order index negative": lambda: _run_sync(np.r_[-1, np.arange(1, 64)].astype(np.intp)),
    "run: negative first batch": lambda: _run_sync(np.arange(64, dtype=np.intp), first=-1),
    "run: negative step": lambda: _run_sync(np.arange(64, dtype=np.intp), step=-1),
    "parallel: theta short": lambda: _parallel(theta=np.zeros(P - 1)),
    "parallel average: theta short": lambda: _parallel(theta=np.zeros(P - 1), strategy="average"),
    "parallel: one worker": lambda: _parallel(n_workers=1),
    "parallel: unknown strategy": lambda: _parallel(strategy="elastic"),
    "parallel run: order index past the end": lambda: _parallel().run(
        np.r_[np.arange(63), 64].astype(np.intp), 0, 4, 0.1),
    "forward: theta short": lambda: _forward(n_theta=P - 1),
    "forward: scratch short": lambda: _forward(n_scratch=10),
    "forward: out wrong shape": lambda: _forward(out_shape=(10, 4)),
    "forward: out too few rows": lambda: _forward(out_shape=(9, 3)),
    "forward: Y wrong shape": lambda: _forward(Y_shape=(10, 2)),
    "forward: X too wide": lambda: _forward(width=9),
    "loss_grad: theta short": lambda: _loss_grad(n_theta=P - 1),
    "loss_grad: grad short": lambda: _loss_grad(n_grad=P - 1),
    "loss_grad: scratch short": lambda: _loss_grad(n_scratch=1),
    "loss_grad: Y wrong shape": lambda: _loss_grad(Y_shape=(9, 3)),
    "sparse: column index past the end": lambda: _sparse(indices=np.array([0, 1, 2, 3, 4, 5, 6, 8],
                                                                           np.int32)),
    "sparse: negative column index": lambda: _sparse(indices=np.array([0, -1, 2, 3, 4, 5, 6, 7],
                                                                       np.int32)),
    "sparse: indptr decreasing": lambda: _sparse(indptr=np.array([0, 4, 2, 6, 8], np.int32)),
    "sparse: indptr past the values": lambda: _sparse(indptr=np.array([0, 2, 4, 6, 9], np.int32)),
    "sparse: indptr not from 0": lambda: _sparse(indptr=np.array([1, 2, 4, 6, 8], np.int32)),
    "sparse: mixed index types": lambda: _sparse(indptr=np.array([0, 2, 4, 6, 8], np.int64)),
    "sparse: int16 indices": lambda: _sparse(index=np.int16),
    "sparse: values short": lambda: _sparse(data=np.ones(7)),
    "sparse: integer values": lambda: _sparse(data=np.ones(8, np.int64)),
    "sync: sparse X of other rows than Y": lambda: _sync_sparse(63),
    "sync: sparse X float64, theta float32": lambda: _sync(X=_sparse(), theta=np.zeros(P, np.float32)),
    "sync: sparse X too narrow": lambda: _sync(X=_sparse(n_cols=7)),
    "full batch: theta short": lambda: _full_batch(n_theta=P - 1),
    "full batch: grad short": lambda: _full_batch(n_grad=P - 1),
    "full batch: Y wrong shape": lambda: _full_batch(Y_shape=(9, 3)),
    "full batch: X too wide": lambda: _full_batch(X=np.zeros((10, 9))),
    "full batch: sparse X too narrow": lambda: _full_batch(X=_sparse(n_cols=7)),
    "full batch: 0 block rows": lambda: _full_batch(block_rows=0),
    "full batch: theta float32 for float64 data": lambda: _kernels_full_batch_mixed(),
    "average_replicas: out too short": lambda: _average(n_out=4),
    "average_replicas: examples wrong length": lambda: _average(n_examples=2),
    "average_replicas: unknown weighting": lambda: _average(weighting="median"),
    "all_finite: integer array": lambda: _all_finite(np.zeros(10, np.int64)),
    "all_finite: strided array": lambda: _all_finite(np.zeros((10, 8))[:, ::2]),
    "network: parameter buffer replaced by a shorter one": _network_short_theta,
    "network: a layer grown after construction": _network_grown_layer,
}


def _run_cases():
    """Run every case here; one JSON line per case: the exception's type and message."""
    for name, case in CASES.items():
        try:
            case()
            result = {"case": name, "raised": None, "message": ""}
        except Exception as exc:  # any type: the parent checks it
            result = {"case": name, "raised": type(exc).__name__, "message": str(exc)}
        print(json.dumps(result), flush=True)


@pytest.fixture(scope="module")
def child_results():
    pytest.importorskip("cymlp._kernels")
    proc = subprocess.run([sys.executable, HERE], check=False, capture_output=True, text=True,
                          timeout=300, env=subprocess_env())
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, {r["case"]: r for r in lines}


@pytest.mark.slow
def test_bad_buffers_never_crash_the_process(child_results):
    proc, results = child_results
    assert proc.returncode == 0, (
        f"the child died (return code {proc.returncode}) after "
        f"{list(results)[-1:] or 'no case'}; stderr:\n{proc.stderr[-2000:]}")
    assert list(results) == list(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_buffer_raises_value_error(child_results, case):
    _, results = child_results
    assert case in results, "the child stopped before this case (see the crash test)"
    assert results[case]["raised"] == "ValueError", results[case]


@pytest.mark.slow
def test_messages_name_the_buffer_and_the_sizes(child_results):
    _, results = child_results
    assert "theta" in results["sync: theta short"]["message"]
    assert str(P) in results["sync: theta short"]["message"]
    assert "scratch" in results["forward: scratch short"]["message"]
    assert "order" in results["run: order index past the end"]["message"]


def test_good_buffers_still_train():
    """The checks let the buffers a fit really uses through (and train the weights)."""
    pytest.importorskip("cymlp._kernels")
    theta = np.random.default_rng(1).normal(0, 0.1, P)
    start = theta.copy()
    for mode in ("batch", "chunked", "split"):
        trainer = _sync(theta=theta, mode=mode)
        loss_sum, _, n_seen, steps, step = trainer.run(np.arange(64, dtype=np.intp), 0, 4, 0.1, 7)
        assert (n_seen, steps, step) == (64, 4, 11) and np.isfinite(loss_sum)
    assert not np.array_equal(theta, start)


if __name__ == "__main__":
    _run_cases()
