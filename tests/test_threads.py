"""Results never depend on the thread count, and the build keeps OpenMP."""

from __future__ import annotations

import os

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
