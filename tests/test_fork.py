"""A forked child can step after its parent ran parallel steps.

The OpenMP runtime's thread pool does not survive ``fork()``: a child that
entered a parallel region would wait forever for threads that no longer
exist. The kernel runs serially in a forked child instead. Each probe runs
in a subprocess with a timeout, so a regression fails instead of hanging.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import adamax_cy

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or not adamax_cy.openmp_enabled(),
    reason="needs fork() and an OpenMP build",
)

PARENT = """
import os, sys
import numpy as np
from adamax_cy import _kernel, adamax_step_inplace, adamax_step_many

n = 8 * _kernel.serial_threshold + 3
def fresh():
    rng = np.random.default_rng(5)
    return [rng.standard_normal(n), rng.standard_normal(n), np.zeros(n), np.zeros(n)]

def serial_result():
    q = fresh()
    adamax_step_inplace(*q, t=1, num_threads=1)
    return q[0]

expected = serial_result()
q = fresh()
adamax_step_inplace(*q, t=1, num_threads=2)  # the parent's pool of threads exists now
assert (q[0] == expected).all()
"""


def run(code: str, timeout: float = 120) -> tuple[int | None, str, str]:
    """Run ``code`` in its own session; kill it and its children (a hung fork
    child too) after ``timeout`` seconds (returncode None then)."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return None, out, err
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # forked children left behind
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("num_threads", ["None", "2"])
def test_a_forked_child_steps(num_threads):
    code = PARENT + f"""
pid = os.fork()
if pid == 0:
    try:
        q = fresh()
        adamax_step_inplace(*q, t=1, num_threads={num_threads})
        q2 = fresh()
        adamax_step_many(*[[a] for a in q2], t=1, num_threads={num_threads})
        ok = (q[0] == expected).all() and (q2[0] == expected).all() and _kernel.max_threads() == 1
        os._exit(0 if ok else 3)
    except BaseException:
        os._exit(4)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""
    returncode, out, err = run(code)
    assert returncode == 0, f"exit {returncode} (None: hung)\n{err[-2000:]}"
    assert out.strip() == "0"


def test_a_multiprocessing_fork_worker_steps():
    code = PARENT + """
import multiprocessing as mp

def work(_):
    q = fresh()
    adamax_step_inplace(*q, t=1)
    return bool((q[0] == expected).all())

if __name__ == "__main__":
    with mp.get_context("fork").Pool(2) as pool:
        print(pool.map(work, range(4)))
"""
    returncode, out, err = run(code)
    assert returncode == 0, f"exit {returncode} (None: hung)\n{err[-2000:]}"
    assert out.strip() == "[True, True, True, True]"
