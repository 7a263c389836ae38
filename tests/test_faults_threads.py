"""Other threads may change the caller's sequences while a step runs without the GIL.

Each probe runs in a subprocess with a timeout: a regression crashes or hangs
that process, and the test fails instead of taking the test run down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest


def run(code: str, timeout: float = 240, env: dict[str, str] | None = None):
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=timeout, env=None if env is None else {**os.environ, **env},
    )
    return out


def describe(out) -> str:
    if out.returncode < 0:
        return f"killed by {signal.Signals(-out.returncode).name}\n{out.stderr[-2000:]}"
    return f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"


# Arrays above glibc's largest mmap threshold (32 MiB): freeing one unmaps it,
# so a write to freed memory crashes at once instead of corrupting the heap.
BIG = 6_000_000  # float64: 48 MB


@pytest.mark.parametrize("how", ["item", "clear"])
def test_dropping_arrays_from_the_lists_during_adamax_step_many(how):
    code = f"""
    import threading, time
    import numpy as np
    from adamax_cy import adamax_step, adamax_step_many

    expected = adamax_step(1.0, 1.0, 1.0, 1.0, t=1)[0]
    updated = 0
    for attempt in range(12):
        P, G, M, U = ([np.ones({BIG}), np.ones(1000)] for _ in range(4))
        small = P[1]
        def drop():
            time.sleep(0.001 + 0.002 * (attempt % 4))
            for seq in (P, G, M, U):
                if {how!r} == "item":
                    seq[0] = None
                else:
                    seq.clear()
            np.ones({BIG}).sum()  # reuse the memory
        thread = threading.Thread(target=drop)
        thread.start()
        try:
            adamax_step_many(P, G, M, U, t=1, num_threads=2)
        except (TypeError, ValueError):  # the lists changed before the checks: refused
            thread.join()
            assert (small == 1).all(), small[:3]
            continue
        thread.join()
        # Updated, or untouched when the lists were emptied before the step began.
        assert (small == expected).all() or (small == 1).all(), (small[:3], expected)
        updated += bool(small[0] == expected)
    print("ok" if updated else "never updated")
    """
    out = run(code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", describe(out)


# What another thread may change while adamax_cy.torch.Adamax.step runs: the
# gradient (dropped by the parameter, still held by the caller), the
# parameter's .data, its state or state entries, the group's parameter list.
# The step holds everything it reads and writes until its compiled call ends.
# (A gradient dropped while nobody else holds it is not probed: torch itself
# can free such a gradient under a thread that still holds a view of it.)
MUTATIONS = {
    "grad": "p.grad = None",
    "data": "p.data = torch.zeros({BIG}, dtype=torch.float64)",
    "state": ("opt.state[p] = {{'step': torch.tensor(0.0), "
              "'exp_avg': torch.zeros({BIG}, dtype=torch.float64), "
              "'exp_inf': torch.zeros({BIG}, dtype=torch.float64)}}"),
    "entries": ("opt.state[p]['exp_avg'] = torch.zeros({BIG}, dtype=torch.float64); "
                "opt.state[p]['exp_inf'] = torch.zeros({BIG}, dtype=torch.float64)"),
    "clear": "opt.param_groups[0]['params'].clear()",
}


@pytest.mark.parametrize("how", sorted(MUTATIONS))
def test_changing_the_optimizer_from_another_thread_during_a_torch_step(how):
    pytest.importorskip("torch")
    mutation = MUTATIONS[how].format(BIG=BIG)
    code = f"""
    import threading, time
    import torch
    from adamax_cy.torch import Adamax

    p = torch.nn.Parameter(torch.ones({BIG}, dtype=torch.float64))
    opt = Adamax([p], lr=0.002, num_threads=2)
    p.grad = torch.ones({BIG}, dtype=torch.float64)
    opt.step()  # the table now knows the parameter
    for attempt in range(8):
        p.data = torch.ones({BIG}, dtype=torch.float64)
        g = p.grad = torch.ones({BIG}, dtype=torch.float64)
        def mutate():
            time.sleep(0.001 + 0.002 * (attempt % 4))
            {mutation}
            torch.ones({BIG}, dtype=torch.float64).sum()  # reuse the memory
        thread = threading.Thread(target=mutate)
        thread.start()
        try:
            opt.step()
        except RuntimeError as e:  # the parameters changed before the checks ended
            assert "changed during the step" in str(e) or "removed during" in str(e), e
        thread.join()
        opt.param_groups[0]["params"][:] = [p]
        assert torch.isfinite(p.detach()).all()
        assert (g == 1).all()  # a gradient is never written
    print("ok")
    """
    out = run(code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", describe(out)
