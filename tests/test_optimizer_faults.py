"""Adamax under faults: Ctrl-C during a step or a load. Each probe runs in a
subprocess with a timeout, so a regression fails instead of hanging."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from adamax_cy import Adamax, CheckpointError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def run_script(code: str, timeout: float = 120) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


# Script lines that time a step of ``opt`` on ``grads`` as ``duration``
# (median of 5, after 5 steps in which the default thread count settles: it
# adapts to a busy machine); put in place of MEDIAN_MARKER by ``with_median``.
MEDIAN_MARKER = "    # <the median duration of a step>\n"
MEDIAN_STEP = """\
    for _ in range(5):
        opt.step(grads)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        opt.step(grads)
        times.append(time.perf_counter() - start)
    duration = sorted(times)[2]
"""


def with_median(script: str) -> str:
    assert script.count(MEDIAN_MARKER) == 1
    return script.replace(MEDIAN_MARKER, MEDIAN_STEP)


SIGINT_DURING_STEPS = with_median("""
    import os, random, signal, threading, time
    import numpy as np
    from adamax_cy import Adamax

    # Ctrl-C raises KeyboardInterrupt even where this process was started with
    # SIGINT ignored (as a background job of a shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    N = 1_500_000  # each of two groups: a step takes milliseconds
    big = [np.zeros(N), np.zeros(N, np.float32)]
    opt = Adamax([{"params": [big[0]]}, {"params": [big[1]], "lr": 0.01}])
    grads = [[np.full(N, 0.5)], [np.full(N, 0.25, np.float32)]]
    # The same run on one element per group, stepped to any count on demand.
    small = [np.zeros(1), np.zeros(1, np.float32)]
    ref = Adamax([{"params": [small[0]]}, {"params": [small[1]], "lr": 0.01}])
    ref_grads = [[np.full(1, 0.5)], [np.full(1, 0.25, np.float32)]]
    ref_states = [(small[0].copy(), small[1].copy())]

    def expected(count):
        while len(ref_states) <= count:
            ref.step(ref_grads)
            ref_states.append((small[0].copy(), small[1].copy()))
        return ref_states[count]

    # <the median duration of a step>

    go, fired = threading.Event(), threading.Event()
    def sender():
        rng = random.Random(0)
        while True:
            go.wait()
            go.clear()
            time.sleep(rng.uniform(0, duration))
            os.kill(os.getpid(), signal.SIGINT)
            fired.set()
    threading.Thread(target=sender, daemon=True).start()

    inside = bad = 0
    for trial in range(60):
        fired.clear()
        go.set()
        try:
            opt.step(grads)
            fired.wait()
            for _ in range(100_000):  # the pending KeyboardInterrupt is raised here
                pass
            raise AssertionError("no KeyboardInterrupt")
        except KeyboardInterrupt as e:
            tb, in_step = e.__traceback__, False
            while tb is not None:
                in_step |= tb.tb_frame.f_code.co_name == "step"
                tb = tb.tb_next
            inside += in_step
        counts = set(opt.steps.values())
        assert len(counts) == 1, opt.steps
        count = counts.pop()
        want = expected(count)
        got = (big[0][[0, -1]], big[1][[0, -1]])
        ok = all(np.all(g == w) for g, w in zip(got, want))
        bad += not ok
    print(inside, bad)
""")


def test_ctrl_c_during_a_step_leaves_it_done_or_not_done():
    """SIGINT at random moments of steps of two groups (two compiled calls):
    after every KeyboardInterrupt, the parameters are those of exactly the
    number of steps the optimizer counts."""
    inside, bad = map(int, run_script(SIGINT_DURING_STEPS, timeout=300).split())
    assert bad == 0, f"{bad} of 60 interrupted steps left a torn state ({inside} inside step)"
    assert inside >= 10, f"only {inside} of 60 interrupts landed inside step()"


def test_a_step_in_another_thread_and_the_sigint_handler_are_left_as_they_were():
    import signal
    import threading

    handler = signal.getsignal(signal.SIGINT)
    w = np.zeros(3)
    opt = Adamax([w])
    worker = threading.Thread(target=opt.step, args=([np.ones(3)],))
    worker.start()
    worker.join(timeout=60)
    assert opt.steps == {"params[0]": 1}
    opt.step([np.ones(3)])
    assert opt.steps == {"params[0]": 2}
    assert signal.getsignal(signal.SIGINT) is handler


HANDLER_RUNS_AFTER_THE_STEP = """
    import os, signal
    import numpy as np
    from adamax_cy import Adamax
    seen = []
    signal.signal(signal.SIGINT, lambda signum, frame: seen.append(opt.steps["params[0]"]))
    w = np.zeros(3)
    opt = Adamax([w])
    copyto = np.copyto  # a SIGINT raised by the process itself in mid-load
    def copy_and_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
        copyto(*args, **kwargs)
    np.copyto = copy_and_signal
    sd = opt.state_dict()
    sd["state"][0]["step"] = 7
    opt.load_state_dict(sd)
    np.copyto = copyto
    print(sorted(set(seen)))
"""


def test_a_sigint_during_a_load_reaches_the_handler_after_the_load():
    assert run_script(HANDLER_RUNS_AFTER_THE_STEP).strip() == "[7]"


SNAPSHOT_FROM_A_SIGNAL_HANDLER = with_median("""
    import os, random, signal, threading, time
    import numpy as np
    from adamax_cy import Adamax

    N = 1_500_000
    big = [np.zeros(N), np.zeros(N, np.float32)]
    opt = Adamax([{"params": [big[0]]}, {"params": [big[1]], "lr": 0.01}])
    grads = [[np.full(N, 0.5)], [np.full(N, 0.25, np.float32)]]
    small = [np.zeros(1), np.zeros(1, np.float32)]
    ref = Adamax([{"params": [small[0]]}, {"params": [small[1]], "lr": 0.01}])
    ref_grads = [[np.full(1, 0.5)], [np.full(1, 0.25, np.float32)]]
    ref_m = [[np.zeros(1), np.zeros(1, np.float32)]]

    snapshots = []
    handled = threading.Event()
    # What a preemption handler does: save the state (here, the step counts and m).
    def on_signal(signum, frame):
        sd = opt.state_dict()
        snapshots.append(([s["step"] for s in sd["state"]], [s["m"][0] for s in sd["state"]]))
        handled.set()
    signal.signal(signal.SIGUSR1, on_signal)

    # <the median duration of a step>
    stop = threading.Event()
    def sender():
        rng = random.Random(1)
        while not stop.is_set():
            time.sleep(rng.uniform(0, duration))
            handled.clear()
            os.kill(os.getpid(), signal.SIGUSR1)
            handled.wait(timeout=60)
    thread = threading.Thread(target=sender)
    thread.start()
    taken = 0
    while taken < 60 or (len(snapshots) < 20 and taken < 2000):  # enough snapshots, however fast
        opt.step(grads)
        taken += 1
    stop.set()
    thread.join()
    bad = 0
    for steps, m in snapshots:
        assert steps[0] == steps[1], steps
        while len(ref_m) <= steps[0]:
            ref.step(ref_grads)
            ref_m.append([ref.state_dict()["state"][i]["m"][0] for i in (0, 1)])
        bad += any(a != b for a, b in zip(m, ref_m[steps[0]]))
    print(len(snapshots), bad)
""")


def test_a_signal_handler_that_saves_sees_whole_steps():
    """A handler of another signal (a cluster's preemption notice, say) that
    saves the state mid-step sees the arrays and step counts of whole steps."""
    count, bad = map(int, run_script(SNAPSHOT_FROM_A_SIGNAL_HANDLER, timeout=300).split())
    assert bad == 0, f"{bad} of {count} snapshots taken by a signal handler were torn"
    assert count >= 20


RAISING_HANDLERS_DURING_STEPS = """
    import os, signal, threading, time
    import numpy as np
    from adamax_cy import Adamax

    class Boom(Exception):
        pass

    armed = [False]
    def raising(signum, frame):
        if armed[0]:
            armed[0] = False
            raise Boom
    def quiet(signum, frame):
        pass
    # Handlers on signals numbered below and above the raising one, so that it
    # can fire while the others are being swapped in either direction.
    handlers = {signal.SIGHUP: quiet, signal.SIGINT: signal.default_int_handler,
                signal.SIGUSR1: raising, signal.SIGUSR2: quiet, signal.SIGTERM: quiet,
                signal.SIGALRM: quiet}
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    stop = threading.Event()
    def pester():
        while not stop.is_set():
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.0001)
    threading.Thread(target=pester, daemon=True).start()
    opt = Adamax([np.ones(10)])
    grads = [np.full(10, 0.1)]
    wrong, booms = {}, 0
    for i in range(60_000):
        try:
            armed[0] = True
            opt.step(grads)
        except Boom:
            booms += 1
        armed[0] = False
        wrong = {signal.Signals(s).name: repr(signal.getsignal(s)) for s, h in handlers.items()
                 if signal.getsignal(s) is not h}
        if wrong:
            break
    stop.set()
    print(i, booms, wrong)
"""


def test_a_raising_signal_handler_never_leaves_other_handlers_replaced():
    """A handler that raises (a SIGTERM handler calling sys.exit, say) fires
    while a step swaps the handlers in or back: every handler is the
    original one after each step, Ctrl-C's included."""
    out = run_script(RAISING_HANDLERS_DURING_STEPS, timeout=600).strip().split(maxsplit=2)
    assert out[2] == "{}", f"after {out[0]} steps, handlers left replaced: {out[2]}"
    assert int(out[1]) > 0, "the raising handler never fired inside a step"


EVERY_RECORDED_SIGNAL_IS_REPLAYED = """
    import os, signal
    from adamax_cy._interrupts import deferred_signals

    seen = []
    def boom(signum, frame):
        seen.append("USR1")
        raise RuntimeError("boom")
    signal.signal(signal.SIGUSR1, boom)
    signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append("USR2"))
    try:
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGUSR2)
            for _ in range(1000):
                pass
    except RuntimeError as e:
        print(e, seen)
"""


def test_every_recorded_signal_is_handled_when_one_handler_raises():
    assert run_script(EVERY_RECORDED_SIGNAL_IS_REPLAYED).strip() == "boom ['USR1', 'USR2']"


STEPS_FROM_TWO_THREADS = """
    import threading
    import numpy as np
    from adamax_cy import Adamax

    # A step held open (its lr schedule waits) while another thread steps.
    started, release = threading.Event(), threading.Event()
    def schedule(t):
        if threading.current_thread() is not threading.main_thread():
            started.set()
            release.wait(60)
        return 0.001
    w = np.ones(4)
    opt = Adamax([w], lr=schedule)
    worker = threading.Thread(target=opt.step, args=([np.full(4, 0.1)],))
    worker.start()
    started.wait(60)
    try:
        opt.step([np.full(4, 0.1)])
        print("both stepped")
    except RuntimeError as e:
        print(e)
    finally:
        release.set()
        worker.join(60)
    print(opt.steps["params[0]"])

    # Racing steps: the state is that of as many whole steps as succeeded.
    N = 1 << 20
    g = np.linspace(-1, 1, N)
    bad = 0
    for trial in range(5):
        w = np.ones(N)
        opt = Adamax([w], lr=0.01, num_threads=1)
        barrier = threading.Barrier(2)
        done = []
        def go():
            barrier.wait()
            try:
                opt.step([g])
                done.append(1)
            except RuntimeError:
                pass
        threads = [threading.Thread(target=go) for _ in range(2)]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
        ref_w = np.ones(N)
        ref = Adamax([ref_w], lr=0.01, num_threads=1)
        for _ in done:
            ref.step([g])
        bad += not (np.array_equal(w, ref_w) and opt.steps == ref.steps)
    print(bad)
"""


def test_a_step_from_a_second_thread_meanwhile_is_refused():
    """Two threads stepping one optimizer at once would both take the same
    step count: the second is refused with a RuntimeError, and the state is
    always that of whole steps."""
    message, steps, bad = run_script(STEPS_FROM_TWO_THREADS, timeout=300).strip().split("\n")
    assert message.startswith("another thread is stepping this optimizer"), message
    assert steps == "1"
    assert bad == "0", f"{bad} of 5 racing pairs of steps left a state of no whole steps"
