"""Thread policy (cymlp._threads): BLAS limits that nest, and the default thread
count on a quiet and on a shared machine (issue 11, cases 4 and 5; issue 24),
checked against a deterministic timing stub: no test here times anything."""

import threading

import numpy as np
import pytest
from _helpers import skip_module_unless_compiled

from cymlp import Network, _threads

skip_module_unless_compiled()
threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_threads():
    return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]


@pytest.fixture
def two_blas_threads():
    """Run with the BLAS pool at 2 threads (restored after), so that a limit is visible."""
    import scipy.linalg  # noqa: F401  (loads the BLAS the compiled path calls)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if blas_threads() and min(blas_threads()) < 2:
            pytest.skip("the BLAS here cannot run 2 threads")
        yield


# --------------------------------------------------------------------------
# Case 5: BLAS limits nest across overlapping fits
# --------------------------------------------------------------------------

def test_overlapping_holds_restore_the_original_limit_whatever_the_order(two_blas_threads):
    original = blas_threads()
    a = _threads.BlasHold(1)            # fit A starts (chunked: BLAS at 1)
    b = _threads.BlasHold(2)            # fit B starts (batch mode asks for 2)
    assert set(blas_threads()) == {1}   # B must not raise it while A's team runs
    a.release()                         # A ends first
    assert blas_threads() == original
    b.release()                         # B ends: back to the original, not to "1"
    assert blas_threads() == original
    assert _threads.blas_holders() == 0


def test_two_fits_in_threads_leave_blas_as_they_found_it(two_blas_threads):
    original = blas_threads()
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((3000, 32)), rng.integers(0, 3, 3000)
    inside, errors = [], []
    barrier = threading.Barrier(2)

    def fit(parallel, n_threads):
        def callback(history):
            inside.append(blas_threads())
        try:
            barrier.wait(timeout=30)
            Network([32, 64, 3], n_threads=n_threads, seed=0).fit(
                X, y, epochs=3, batch_size=32, parallel=parallel, callbacks=[callback])
        except Exception as exc:
            errors.append(exc)
    threads = [threading.Thread(target=fit, args=("hogwild", 2)),
               threading.Thread(target=fit, args=("sync", 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert inside and all(max(n) <= 2 for n in inside)
    assert blas_threads() == original
    assert _threads.blas_holders() == 0


@pytest.mark.parametrize("mode", ["chunked", "batch", "split"])
def test_a_fit_inside_threadpool_limits_1_never_raises_blas(two_blas_threads, mode):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((2000, 64)), rng.integers(0, 3, 2000)
    seen = []
    net = Network([64, 128, 3], n_threads=2, seed=0)
    net.compiled_mode = mode              # batch mode asks the BLAS for n_threads = 2
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        net.fit(X, y, epochs=2, batch_size=256, validation_data=(X, y),
                callbacks=[lambda h: seen.append(blas_threads())])
        assert set(blas_threads()) == {1}
    assert seen and all(set(n) == {1} for n in seen)


def test_evaluation_outside_fit_limits_and_restores(two_blas_threads):
    original = blas_threads()
    net = Network([256, 256, 10], n_threads=1, seed=0)
    net.predict(np.random.default_rng(0).standard_normal((2000, 256)))   # big enough to limit
    assert blas_threads() == original and _threads.blas_holders() == 0


# --------------------------------------------------------------------------
# The default thread count (case 4): TeamPolicy against a deterministic timing stub
# --------------------------------------------------------------------------

class Machine:
    """A deterministic stand-in for a machine: the wall and CPU seconds of kernel calls.

    ``cores`` CPUs; ``busy`` CPU-bound threads of other processes (changeable);
    a step takes ``step`` seconds on one thread and ``step / speedup[t]`` on a
    team of ``t`` that has its cores.  A team gets its fair share of the cores,
    ``cores · t / (t + busy)``; short of ``t`` cores, its threads wait at every
    barrier for a descheduled one: ``collapse`` times slower (70x was measured
    before any back-off).  Waiting threads spin (CPU = wall · cores held), or,
    with ``passive``, sleep through that fraction of a step.
    """

    def __init__(self, cores=2, busy=0, step=1e-3, speedup=None, collapse=30.0, passive=0.0):
        self.cores, self.busy, self.step = cores, busy, step
        self.speedup = speedup or {t: 1 + 0.6 * (t - 1) for t in range(1, 65)}
        self.collapse, self.passive = collapse, passive

    def call(self, threads, steps, others=0):
        got = min(threads, self.cores * threads / (threads + self.busy + others))
        if got >= threads - 1e-9:
            per_step = self.step / self.speedup[threads]
        elif threads == 1:
            per_step = self.step / got
        else:
            per_step = self.step / self.speedup[threads] * self.collapse
        wall = steps * per_step
        return wall, wall * got * (1 - self.passive)


def drive(policy, machine, steps, per_call=200, on_step=None):
    """Run ``steps`` steps in calls of ``per_call`` (as the training loop asks) through the
    policy on ``machine``; returns (threads of every step, total wall seconds)."""
    used, total, done = [], 0.0, 0
    while done < steps:
        want = min(per_call, steps - done)
        while want:
            threads, n = policy.next(want)
            wall, cpu = machine.call(threads, n)
            policy.record(threads, n, wall, cpu)
            used += [threads] * n
            total += wall
            done += n
            want -= n
            if on_step is not None:
                on_step(done)
    return used, total


def explicit(machine, threads, steps):
    return machine.call(threads, steps)[0]


@pytest.mark.parametrize("cores", [2, 4, 16])
@pytest.mark.parametrize("passive", [0.0, 0.15])
def test_default_is_the_explicit_team_on_a_quiet_machine(cores, passive):
    """Never a loss on a quiet machine: every step on the full team, no probe, not one
    second more than the explicit count (the bound is 5%; the rule gives 0%)."""
    machine = Machine(cores=cores, passive=passive)
    policy = _threads.TeamPolicy(cores)
    used, total = drive(policy, machine, 20000)
    assert set(used) == {cores} and policy.shrinks == 0 and policy.probes == 0
    assert total <= 1.05 * min(explicit(machine, t, 20000) for t in (1, cores))
    assert total == pytest.approx(explicit(machine, cores, 20000))


def test_default_backs_off_to_one_thread_when_another_process_holds_a_core():
    machine = Machine(cores=2, busy=1)
    policy = _threads.TeamPolicy(2)
    used, total = drive(policy, machine, 20000)
    assert policy.team == 1 and policy.shrinks == 1 and policy.probes >= 2
    assert used.index(1) <= 200                     # from the second call on
    assert used.count(2) / len(used) < 0.02          # probes of the team cost little
    assert total < 1.5 * explicit(machine, 1, 20000)
    assert explicit(machine, 2, 20000) > 10 * total  # what it avoided


def test_two_default_fits_at_once_each_back_off():
    """Two processes, each with the default on 2 cores: each one's team collapses, each
    backs off, and each then takes about what one thread alone takes (two at once finish
    within 4x of one alone: the figure benchmarks/two_fits.py measures)."""
    machine = Machine(cores=2)
    a, b = _threads.TeamPolicy(2), _threads.TeamPolicy(2)
    wall = {"a": 0.0, "b": 0.0}
    steps = 20000
    for _ in range(steps // 100):                    # the two fits take turns in slices
        for name, policy, other in (("a", a, b), ("b", b, a)):
            threads, n = policy.next(100)
            w, cpu = machine.call(threads, n, others=other.team)
            policy.record(threads, n, w, cpu)
            wall[name] += w
            rest = 100 - n
            if rest:
                threads, n = policy.next(rest)
                w, cpu = machine.call(threads, n, others=other.team)
                policy.record(threads, n, w, cpu)
                wall[name] += w
    alone = explicit(machine, 2, steps)
    assert a.team == b.team == 1
    assert max(wall.values()) < 4 * alone


def test_default_returns_to_the_team_when_the_machine_is_quiet_again():
    machine = Machine(cores=2, busy=1)
    policy = _threads.TeamPolicy(2)
    quiet_from = 5000

    def on_step(done):
        if done >= quiet_from:
            machine.busy = 0
    used, _ = drive(policy, machine, 20000, on_step=on_step)
    assert 1 in used[:quiet_from] and policy.team == 2
    # back within the longest retry interval (4 s = 4000 steps of 1 ms at one thread) and a call
    assert used[quiet_from + 4200:] == [2] * (20000 - quiet_from - 4200)


def test_default_shrinks_to_the_cores_it_gets_on_a_big_machine():
    machine = Machine(cores=16, busy=6)             # 16 threads get 11.6 of the 16 cores
    policy = _threads.TeamPolicy(16)
    drive(policy, machine, 5000)
    assert policy.team == 11


def test_two_default_fits_in_one_process_judge_their_share_together():
    """Process CPU time counts both fits' threads: each judges against the demand of both."""
    policy = _threads.TeamPolicy(2)
    # two teams of 2 in one process on 2 free cores: the process gets 2 cores for 4 threads
    for _ in range(5):
        threads, n = policy.next(100)
        policy.record(threads, n, 0.01, 0.02, demand=4)
    assert policy.team == 1
    quiet = _threads.TeamPolicy(2)
    for _ in range(5):
        threads, n = quiet.next(100)
        quiet.record(threads, n, 0.01, 0.02, demand=2)
    assert quiet.team == 2


def _trainer(n_threads_option):
    from cymlp._backends import TrainerOptions
    from cymlp._cython_backend import CythonTrainer
    from cymlp._spec import ModelSpec
    from cymlp.training_state import OptimizerConfig
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 32))
    y = rng.integers(0, 3, 512)
    Y = np.eye(3)[y]
    spec = ModelSpec((32, 64, 3), "relu", "softmax", "cross_entropy", np.dtype("float64"))
    net = Network([32, 64, 3], dtype="float64", seed=0)
    theta = net.get_flat_params()
    options = TrainerOptions(batch_size=64, optimizer=OptimizerConfig(), n_threads=2, adaptive=True,
                             mode="split")
    return CythonTrainer(spec, theta, X, Y, y, options), np.arange(512, dtype=np.intp)


@pytest.mark.parametrize("share, team", [(1.0, 2), (0.5, 1)])
def test_the_trainer_runs_the_kernel_on_the_policys_team(monkeypatch, share, team):
    """The compiled trainer times each kernel call with process_clock and gives the kernel
    the team the policy chose (a stub clock: 10 ms of wall time, ``share`` of 2 cores)."""
    from cymlp import _cython_backend
    ticks = {"wall": 0.0, "cpu": 0.0}

    def clock():
        ticks["wall"] += 0.005
        ticks["cpu"] += 0.005 * 2 * share
        return ticks["wall"], ticks["cpu"]
    monkeypatch.setattr(_cython_backend, "process_clock", clock)
    trainer, order = _trainer(None)
    try:
        for _ in range(4):
            trainer.run(order, 0, 8, 0.01)
        assert trainer.policy.team == team and trainer._kernel.nthreads == team
    finally:
        trainer.close()


def test_adaptive_default_gives_the_same_weights_as_one_thread():
    from cymlp.datasets import load_digits
    X, y = load_digits(dtype="float32")[:2]
    nets = {}
    for n_threads in (None, 1, 2):
        net = Network([64, 32, 10], n_threads=n_threads, seed=0)
        net.compiled_mode = "chunked"
        net.fit(X, y, epochs=3, batch_size=64)
        nets[n_threads] = net.get_flat_params()
    np.testing.assert_array_equal(nets[None], nets[1])
    np.testing.assert_array_equal(nets[None], nets[2])
