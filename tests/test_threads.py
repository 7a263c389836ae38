"""Results never depend on the thread count, and the build keeps OpenMP."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

import adamax_cy
from adamax_cy import _kernel, adamax_step_inplace, adamax_step_many

# Large enough that every call runs threaded (the serial threshold is far below).
N = 8 * _kernel.serial_threshold + 12_345


@pytest.fixture(params=[np.float32, np.float64])
def state(request):
    rng = np.random.default_rng(12)
    dtype = request.param
    param, grad, m = (rng.standard_normal(N).astype(dtype) for _ in range(3))
    u = np.abs(rng.standard_normal(N)).astype(dtype)
    grad[::997] = np.nan
    grad[::1009] = 0.0
    return param, grad, m, u


@pytest.mark.parametrize("convention", ["spec", "torch"])
def test_bitwise_identical_for_any_thread_count(state, convention):
    results = []
    for threads in (1, 2, 3, 4, None):
        param, grad, m, u = (a.copy() for a in state)
        for t in (1, 2, 3):
            adamax_step_inplace(param, grad, m, u, t, convention=convention,
                                weight_decay=0.01, num_threads=threads)
        results.append(b"".join(a.tobytes() for a in (param, m, u)))
    assert len(set(results)) == 1


def test_many_bitwise_identical_for_any_thread_count(state):
    sizes = [0, 1, 7, N - 5000, 4999]
    results = []
    for threads in (1, 2, 3, None):
        arrays = [[a[:s].copy() for s in sizes] for a in state]
        adamax_step_many(*arrays, 4, num_threads=threads)
        results.append(b"".join(x.tobytes() for group in arrays for x in group))
    assert len(set(results)) == 1


@pytest.mark.skipif(
    os.environ.get("ADAMAX_CY_ALLOW_SERIAL") == "1",
    reason="ADAMAX_CY_ALLOW_SERIAL=1: a deliberately serial build",
)
def test_build_has_openmp():
    """Fails when a build silently lost OpenMP (set ADAMAX_CY_ALLOW_SERIAL=1 for a
    deliberately serial build)."""
    assert adamax_cy.openmp_enabled()
    assert adamax_cy.show_config(as_dict=True)["openmp"] is True


def test_threads_follow_omp_num_threads(tmp_path):
    """num_threads=None means the OpenMP default, which OMP_NUM_THREADS sets."""
    import subprocess
    import sys

    code = "from adamax_cy import _kernel; print(_kernel.max_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    expected = 3 if adamax_cy.openmp_enabled() else 1
    assert int(out.stdout) == expected


@pytest.mark.parametrize("threads", ["40000", "100000"])
def test_a_huge_omp_num_threads_is_capped(tmp_path, threads):
    """The default thread count has the cap of an explicit num_threads (in a
    subprocess: too many threads abort the process)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
    import numpy as np
    from adamax_cy import _kernel, adamax_step, adamax_step_inplace, adamax_step_many

    assert 1 <= _kernel.max_threads() <= _kernel.thread_limit, _kernel.max_threads()
    n = 4 * _kernel.serial_threshold
    p, g, m, u = np.ones(n), np.ones(n), np.ones(n), np.ones(n)
    adamax_step_inplace(p, g, m, u, t=1)
    adamax_step_many([p], [g], [m], [u], t=2)
    assert _kernel.all_finite(p, 0)
    p1, m1, u1 = adamax_step(1.0, 1.0, 1.0, 1.0, t=1)
    expected = adamax_step(p1, 1.0, m1, u1, t=2)[0]
    assert (p == expected).all(), (p[:3], expected)
    print("ok")
    """)
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-2000:])


# The adaptive default (num_threads=None): decisions are checked on recorded
# durations fed to the policy, never on timings of this machine.

THREADED = pytest.mark.skipif(
    _kernel.max_threads() < 2, reason="one thread to use: the default never adapts")
ITEMSIZE = 4
BIG = 1 << 20  # a size class of its own, above the serial threshold


@pytest.fixture
def fresh_policy():
    _kernel.policy_reset()
    previous = _kernel.set_adaptive(True)
    yield
    _kernel.set_adaptive(previous)
    _kernel.policy_reset()


def big_class(kind="one array"):
    return next(c for c in _kernel.policy_state()
                if c["dtype"] == "float32" and c["kind"] == kind
                and c["elements"][0] <= BIG <= c["elements"][1])


def simulate(calls, cost):
    """Feed the policy ``calls`` default calls of BIG float32 elements, each
    taking ``cost(parallel, history)`` seconds (history: the earlier choices,
    True for threads); returns the choices and the mean seconds per call."""
    history, total = [], 0.0
    for _ in range(calls):
        # The choice comes back from the call itself: ask with a probe value,
        # then record the cost of what was chosen.
        parallel = _kernel._policy_next(ITEMSIZE, BIG)
        seconds = cost(parallel, history)
        assert _kernel._policy_call(ITEMSIZE, BIG, seconds) == (2 if parallel else 1)
        history.append(parallel)
        total += seconds
    return history, total / calls


def every_nth_stalls(serial, parallel, stall, every):
    """A cost for ``simulate``: serial calls take ``serial``, parallel ones
    ``parallel`` but every ``every``-th of them ``stall``."""
    parallel_calls = 0

    def cost(threads, history):
        nonlocal parallel_calls
        if not threads:
            return serial
        parallel_calls += 1
        return stall if parallel_calls % every == 0 else parallel
    return cost


SERIAL, PARALLEL = 1e-3, 0.55e-3  # a quiet machine: threads take 55% of one thread's time


def asleep(history, after=8):
    """Whether the threads have been idle long enough to sleep (or were never started)."""
    return not any(history[-after:])


def test_policy_measures_serial_twice_then_probes_threads(fresh_policy):
    assert _kernel._policy_call(ITEMSIZE, BIG, 50e-3) == 1  # cold memory: not the estimate
    assert _kernel._policy_call(ITEMSIZE, BIG, SERIAL) == 1
    assert big_class()["mode"] == "probing"
    assert big_class()["serial_ns_per_element"] == pytest.approx(1e9 * SERIAL / BIG)
    assert [_kernel._policy_call(ITEMSIZE, BIG, PARALLEL) for _ in range(8)] == [2] * 8
    c = big_class()
    assert (c["serial_calls"], c["parallel_calls"], c["late_threads"]) == (2, 8, 0)
    assert c["mode"] == "threads"


def test_waking_the_threads_does_not_condemn_them(fresh_policy):
    # The first parallel call after serial work creates or wakes the OpenMP
    # threads: 2 ms once. A quiet machine must still end up on threads.
    def cost(parallel, history):
        return (PARALLEL + (2e-3 if asleep(history) else 0.0)) if parallel else SERIAL
    choices, mean = simulate(2000, cost)
    assert mean <= 0.6 * SERIAL
    # Threads, but for the serial refresh every 64th call and a settled
    # serial measurement every 0.5 s of parallel work.
    assert sum(choices[-640:]) >= 600
    assert big_class()["mode"] == "threads"


class Spin:
    """A machine whose idle OpenMP threads spin for SPIN seconds after a
    parallel call: a serial call meanwhile costs ``slowed`` x its price, and
    the first parallel call after they stopped costs ``wake`` more."""

    SPIN = 8e-3

    def __init__(self, serial, parallel, wake=0.0, slowed=1.0):
        self.serial, self.parallel, self.wake, self.slowed = serial, parallel, wake, slowed
        self.since_parallel = float("inf")  # seconds since the last parallel call ended

    def __call__(self, parallel, history):
        if parallel:
            seconds = self.parallel() if callable(self.parallel) else self.parallel
            if self.since_parallel >= self.SPIN:
                seconds += self.wake
            self.since_parallel = 0.0
        else:
            seconds = self.serial * (self.slowed if self.since_parallel < self.SPIN else 1.0)
            self.since_parallel += seconds
        return seconds


def test_waking_the_threads_of_a_small_class_does_not_condemn_them(fresh_policy):
    # 100,000 float32 elements: 25 us on one thread, 14 us on two, and
    # 200 us to wake the threads after they stopped spinning.
    _, mean = simulate(20_000, Spin(25e-6, 14e-6, wake=200e-6))
    assert mean <= 0.65 * 25e-6


def test_serial_calls_next_to_spinning_threads_do_not_raise_the_serial_estimate(fresh_policy):
    # Serial calls cost twice as much while the idle threads spin; then the
    # machine gets busy and threads cost 1.5x a settled serial call.
    spin = Spin(SERIAL, PARALLEL, slowed=2.0)
    simulate(2000, spin)
    spin.parallel = 1.5 * SERIAL
    _, mean = simulate(3000, spin)
    assert mean <= 1.1 * SERIAL


@pytest.mark.parametrize("warm_up", [(SERIAL, 30 * SERIAL), (20 * SERIAL, 20 * SERIAL)])
def test_a_cold_warm_up_does_not_keep_threads_that_cost_more(fresh_policy, warm_up):
    # The class's first calls touched cold memory (a second tensor's first
    # step, say); threads then cost 1.5x a serial call.
    for seconds in warm_up:
        assert _kernel._policy_call(ITEMSIZE, BIG, seconds) == 1
    _, mean = simulate(5000, lambda parallel, history: 1.5 * SERIAL if parallel else SERIAL)
    assert mean <= 1.1 * SERIAL


@pytest.mark.parametrize("n, seconds", [(0, 1e-3), (-1, 1e-3), (BIG, float("nan")),
                                        (BIG, float("inf")), (BIG, -1e-3)])
def test_the_test_hooks_refuse_what_no_call_can_measure(fresh_policy, n, seconds):
    with pytest.raises(ValueError):
        _kernel._policy_call(ITEMSIZE, n, seconds)
    assert _kernel.policy_state() == []
    if n <= 0:
        with pytest.raises(ValueError):
            _kernel._policy_next(ITEMSIZE, n)


def test_a_quiet_machine_keeps_threads_and_refreshes_the_serial_estimate(fresh_policy):
    choices, _ = simulate(256, lambda parallel, history: PARALLEL if parallel else SERIAL)
    serial_calls = [k + 1 for k, c in enumerate(choices) if not c]
    assert serial_calls == [1, 2, 64, 128, 192, 256]  # warm-up, then every 64th call
    assert big_class()["late_threads"] == 0 and big_class()["no_faster"] == 0


def test_an_isolated_late_thread_on_a_quiet_machine_costs_little(fresh_policy):
    # A 10 ms stall (another process ran for a time slice) every 700 calls.
    def cost(parallel, history):
        if not parallel:
            return SERIAL
        return 10e-3 if len(history) % 700 == 699 else PARALLEL
    _, mean = simulate(7000, cost)
    assert mean <= 0.7 * SERIAL


def test_isolated_stalls_cost_what_they_took_and_not_a_back_off(fresh_policy):
    # 200,000 float32 elements: 55 us on one thread, 30 us on two; every
    # 2000th parallel call stalls for 4 ms, as serial calls also do on a
    # virtual machine (its CPU descheduled). Backing off after each stall
    # would run hundreds of serial calls, each 25 us dearer, for nothing.
    serial, parallel, stall, every = 55e-6, 30e-6, 4e-3, 2000
    _, mean = simulate(20_000, every_nth_stalls(serial, parallel, stall, every))
    # What threads and the stalls themselves cost, with the settled serial
    # measurements (SETTLE and 8 calls every 0.5 s of parallel work: under
    # 2% of the calls) on top.
    assert mean <= parallel + stall / every + 0.02 * serial
    assert big_class()["no_faster"] == 0


@pytest.mark.parametrize("stall, every", [(6e-3, 257), (10e-3, 300), (4e-3, 400)])
def test_stalls_spaced_just_past_the_isolation_rule_still_back_off(fresh_policy, stall, every):
    # 100,000 float32 elements: 25 us on one thread, 14 us on two; a busy
    # core holds every every-th parallel call for a scheduler slice. Each
    # stall comes after enough clean calls to look isolated, yet together
    # they cost more than threads gain in between.
    serial, parallel = 25e-6, 14e-6
    _, mean = simulate(200_000, every_nth_stalls(serial, parallel, stall, every))
    assert mean <= 1.25 * serial  # the bound for a busy machine
    assert big_class()["no_faster"] >= 1


@pytest.mark.parametrize("period, busy", [(10e-3, 2e-3), (4e-3, 1e-3)])
def test_a_core_busy_on_a_regular_clock_keeps_threads_that_win_on_average(fresh_policy,
                                                                         period, busy):
    # Another process holds one core for ``busy`` of every ``period`` of
    # wall-clock time (a data loader waking up, say): a parallel call that
    # starts then waits for the end of it. 50 us on one thread, 27.5 us on
    # two: threads still cost about 0.7x one thread on average. Judged over
    # the last 32 calls only, each of those waits would send the class
    # serial again.
    serial, parallel = 50e-6, 27.5e-6
    clock = 0.0

    def cost(threads, history):
        nonlocal clock
        phase = clock % period
        seconds = serial if not threads else parallel + (busy - phase if phase < busy else 0.0)
        clock += seconds
        return seconds
    _, mean = simulate(100_000, cost)
    always_threads = parallel / (1 - busy / period)  # calls wait out each busy stretch
    # Within the settled serial measurements (under 2% of the calls) of what
    # threads cost.
    assert mean <= always_threads + 0.02 * serial
    assert mean <= 0.75 * serial


def test_a_stall_on_waking_after_a_long_quiet_run_does_not_fail_the_probe(fresh_policy):
    # Threads do well for 0.5 s, then the serial cost is measured again and
    # threads are tried anew; waking them then takes 4 ms (their core is
    # held by another runtime's spinning threads, as torch's are after its
    # own work). Counted in full, that one stall fails every such try and
    # doubles the next back-off each time.
    serial, parallel, wake = 55e-6, 30e-6, 4e-3

    def cost(threads, history):
        if not threads:
            return serial
        return wake if len(history) > 8 and not any(history[-8:]) else parallel
    _, mean = simulate(100_000, cost)
    # What threads cost, the settled serial measurements (under 2% of the
    # calls) and a wake-up per 0.5 s of parallel work.
    assert mean <= parallel + 0.02 * serial + wake * parallel / 0.5
    assert big_class()["mode"] == "threads"


@pytest.mark.parametrize("serial, ratio, spread, slow, period",
                         [(30e-6, 0.6, 0.2, 1.4, 5000), (55e-6, 0.65, 0.25, 1.3, 3000)])
def test_slow_periods_keep_threads_that_win_at_every_speed(fresh_policy, serial, ratio, spread,
                                                           slow, period):
    # Other processes slow every call by 30-40% for thousands of calls in
    # turn; threads stay at ``ratio`` x a serial call at either speed, and
    # serial calls vary by +-spread from call to call. Were the serial
    # estimate to sink to the fastest serial calls seen, threads in a slow
    # period would look dearer than serial, back off and pay the slow serial
    # price.
    rng = random.Random(7)

    def cost(threads, history):
        speed = slow if (len(history) // period) % 2 else 1.0
        if threads:
            return speed * ratio * serial * rng.uniform(0.9, 1.1)
        return speed * serial * rng.uniform(1 - spread, 1 + spread)
    _, mean = simulate(100_000, cost)
    # What threads cost, with the settled serial measurements (under 2% of
    # the calls, each at most 1 / ratio as dear) on top.
    assert mean <= 1.03 * ratio * serial * (1 + slow) / 2


@pytest.mark.parametrize("late_every", [2, 5])
def test_threads_that_cost_more_on_average_back_off(fresh_policy, late_every):
    # A busy core: every late_every-th parallel call waits 5 ms for it.
    choices, mean = simulate(5000, every_nth_stalls(SERIAL, PARALLEL, 5e-3, late_every))
    assert mean <= 1.25 * SERIAL  # the bound for a busy machine
    c = big_class()
    assert c["late_threads"] >= 1 and c["no_faster"] >= 1
    assert sum(choices[-1000:]) <= 20  # later probes are rare


def test_a_late_thread_sends_a_probe_back_at_once_and_later_probes_wait_longer(fresh_policy):
    _kernel._policy_call(ITEMSIZE, BIG, SERIAL)
    _kernel._policy_call(ITEMSIZE, BIG, SERIAL)
    assert _kernel._policy_call(ITEMSIZE, BIG, 10 * SERIAL) == 2  # 9 ms lost: more than 4 calls
    c = big_class()
    assert c["mode"] == "serial (backing off)" and c["late_threads"] == 1
    assert c["backoff_s"] == pytest.approx(4 * 9 * SERIAL)  # 4 x what threads lost
    gaps = []
    for _ in range(3):
        serial_run = 0
        while _kernel._policy_call(ITEMSIZE, BIG, SERIAL) == 1:
            serial_run += 1
        gaps.append(serial_run)
        assert _kernel._policy_call(ITEMSIZE, BIG, 10 * SERIAL) == 2  # the probe fails again
    assert gaps[0] == 36 and gaps[1] > 1.9 * gaps[0] and gaps[2] > 1.9 * gaps[1]


def test_a_probe_that_recovers_returns_to_threads(fresh_policy):
    _kernel._policy_call(ITEMSIZE, BIG, SERIAL)
    _kernel._policy_call(ITEMSIZE, BIG, SERIAL)
    _kernel._policy_call(ITEMSIZE, BIG, 10 * SERIAL)
    while _kernel._policy_call(ITEMSIZE, BIG, SERIAL) == 1:
        pass
    choices = [_kernel._policy_call(ITEMSIZE, BIG, PARALLEL) for _ in range(40)]
    assert choices.count(2) == 39  # one serial refresh
    assert big_class()["mode"] == "threads"


def test_kinds_size_classes_and_dtypes_are_separate(fresh_policy):
    for _ in range(2):
        _kernel._policy_call(ITEMSIZE, BIG, SERIAL)
    _kernel._policy_call(ITEMSIZE, BIG, 100 * SERIAL)  # late: float32, one array, around BIG
    assert big_class()["mode"] == "serial (backing off)"
    for itemsize, n, many in ((8, BIG, False), (ITEMSIZE, 4 * BIG, False), (ITEMSIZE, BIG, True)):
        assert _kernel._policy_call(itemsize, n, SERIAL, many) == 1  # measuring
        assert _kernel._policy_call(itemsize, n, SERIAL, many) == 1
        assert _kernel._policy_call(itemsize, n, PARALLEL, many) == 2  # probing
    assert big_class("many arrays")["mode"] == "probing"
    assert _kernel._policy_call(ITEMSIZE, BIG, SERIAL) == 1


@THREADED
def test_only_default_calls_above_the_threshold_reach_the_policy(fresh_policy):
    n = 4 * _kernel.serial_threshold
    small = _kernel.serial_threshold - 1
    for size in (1, small):
        p, g, m, u = (np.ones(size, np.float32) for _ in range(4))
        adamax_step_inplace(p, g, m, u, 1)
        adamax_step_many([p], [g], [m], [u], 2)
    for threads in (1, 2, 3):
        p, g, m, u = (np.ones(n, np.float32) for _ in range(4))
        adamax_step_inplace(p, g, m, u, 1, num_threads=threads)
        adamax_step_many([p], [g], [m], [u], 2, num_threads=threads)
    assert _kernel.policy_state() == []
    adamax_step_inplace(p, g, m, u, 3)
    halves = [(x[: n // 2], x[n // 2:]) for x in (p, g, m, u)]
    adamax_step_many(*halves, 4)
    assert [(c["kind"], c["calls"]) for c in _kernel.policy_state()] == [
        ("one array", 1), ("many arrays", 1)]


@THREADED
def test_a_many_array_call_with_one_quadruple_is_measured_with_one_array_calls(fresh_policy):
    # It runs the same loop on the same memory, so it costs what one array
    # does per element; counted with calls on many small arrays, whose
    # elements cost more, it would make either look slower than it is.
    n = 4 * _kernel.serial_threshold
    p, g, m, u = (np.ones(n, np.float32) for _ in range(4))
    adamax_step_inplace(p, g, m, u, 1)
    adamax_step_many([p], [g], [m], [u], 2)
    assert [(c["kind"], c["calls"]) for c in _kernel.policy_state()] == [("one array", 2)]
    # With an empty quadruple, or one of the other dtype, it still runs one array.
    empty = [np.ones(0, np.float32) for _ in range(4)]
    adamax_step_many(*([x, e] for x, e in zip((p, g, m, u), empty)), 3)
    other = [np.ones(n, np.float64) for _ in range(4)]
    adamax_step_many(*([x, o] for x, o in zip((p, g, m, u), other)), 4)
    assert [(c["kind"], c["dtype"], c["calls"]) for c in _kernel.policy_state()] == [
        ("one array", "float32", 4), ("one array", "float64", 1)]


@THREADED
def test_not_adaptive_leaves_the_policy_alone(fresh_policy):
    _kernel.set_adaptive(False)
    n = 4 * _kernel.serial_threshold
    p, g, m, u = (np.ones(n) for _ in range(4))
    adamax_step_inplace(p, g, m, u, 1)
    assert _kernel.policy_state() == []
    assert "not adaptive" in adamax_cy.show_config(as_dict=True)["thread_policy"]


@THREADED
@pytest.mark.parametrize("backing_off", [False, True])
def test_results_are_identical_whatever_the_policy_picks(state, fresh_policy, backing_off):
    n = state[0].size
    itemsize = state[0].itemsize
    if backing_off:
        _kernel._policy_call(itemsize, n, 1.0)
        _kernel._policy_call(itemsize, n, 1.0)
        _kernel._policy_call(itemsize, n, 10.0)  # a late thread: serial for seconds of work
    results = []
    for threads in (None, 1, 2):
        param, grad, m, u = (a.copy() for a in state)
        for t in (1, 2, 3):
            adamax_step_inplace(param, grad, m, u, t, num_threads=threads)
        arrays = [[a[:s].copy() for s in (n - 4999, 4999)] for a in state]
        adamax_step_many(*arrays, 4, num_threads=threads)
        results.append(b"".join(a.tobytes() for a in (param, m, u))
                       + b"".join(x.tobytes() for group in arrays for x in group))
    assert len(set(results)) == 1
    c = next(c for c in _kernel.policy_state() if c["kind"] == "one array")
    if backing_off:
        assert c["parallel_calls"] == 1 and c["serial_calls"] == 2 + 3
        assert c["mode"] == "serial (backing off)"


@THREADED
def test_backing_off_changes_no_process_wide_setting(fresh_policy):
    before = _kernel.max_threads(), {k: v for k, v in os.environ.items() if k.startswith("OMP_")}
    _kernel._policy_call(4, 1 << 20, 1e-3)
    _kernel._policy_call(4, 1 << 20, 1.0)
    after = _kernel.max_threads(), {k: v for k, v in os.environ.items() if k.startswith("OMP_")}
    assert before == after


@THREADED
def test_show_config_says_what_the_policy_does(fresh_policy):
    text = adamax_cy.show_config(as_dict=True)["thread_policy"]
    assert text.startswith("adaptive") and "0 late threads" in text
    _kernel._policy_call(4, 1 << 20, 1e-3)
    _kernel._policy_call(4, 1 << 20, 1e-3)
    _kernel._policy_call(4, 1 << 20, 1.0)
    text = adamax_cy.show_config(as_dict=True)["thread_policy"]
    assert "1 late threads" in text and "serial now for float32 1048576-2097151" in text
