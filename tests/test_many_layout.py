"""adamax_step_many keeps the tables of its last call, and a call whose arrays
match them skips the overlap test: nothing a later call changes gets past it.

Each call below is judged against the overlap rule checked pair by pair
(``allowed``) and, when it steps, against adamax_step_inplace per quadruple.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from layouts import LAYOUTS, allowed, cut

from adamax_cy import _kernel, adamax_step_inplace, adamax_step_many

T = 3


def bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


# Small arrays take one thread; the threaded ones are enough elements for
# two threads, which then check the quadruples too, split between them.
SIZES = {"small": (6, None), "threaded": (4100, 2)}


def stepped_copies(lists, t=T):
    """params, ms and us after adamax_step_inplace on copies of each quadruple."""
    out = []
    for p, g, m, u in zip(*lists):
        p, m, u = p.copy(), m.copy(), u.copy()
        adamax_step_inplace(p, g.copy(), m, u, t)
        out.append((p, m, u))
    return out


def assert_steps_like_inplace(lists, t=T, threads=None):
    expected = stepped_copies(lists, t)
    adamax_step_many(*lists, t, num_threads=threads)
    for (p, _, m, u), want in zip(zip(*lists), expected):
        for got, w in zip((p, m, u), want):
            np.testing.assert_array_equal(bits(got), bits(w))


def assert_refused(lists, buffer, error=ValueError, threads=None):
    before = buffer.copy()
    with pytest.raises(error):
        adamax_step_many(*lists, T, num_threads=threads)
    np.testing.assert_array_equal(bits(buffer), bits(before))


def overlap_view(buffer, inside, length, offset=1):
    """A view of ``length`` elements that starts ``offset`` elements into ``inside``."""
    start = (inside.__array_interface__["data"][0]
             - buffer.__array_interface__["data"][0]) // buffer.itemsize
    return buffer[start + offset:start + offset + length]


def _m_over_other_param(lists, buffer):
    lists[2][1] = overlap_view(buffer, lists[0][2], len(lists[2][1]))


def _same_starts_longer(lists, buffer):
    for r in range(4):  # each reaches one element into the array after it
        lists[r][3] = overlap_view(buffer, lists[r][3], len(lists[r][3]) + 2, 0)


def _grad_as_other_m(lists, buffer):
    lists[2][2] = lists[1][0]


def _new_quadruple_over_first_param(lists, buffer):
    length = len(lists[0][0])
    for r in range(4):
        lists[r].append(np.zeros(length))
    lists[3][-1] = overlap_view(buffer, lists[0][0], length, 0)


def _m_read_only(lists, buffer):
    lists[2][0].setflags(write=False)


def _param_reshaped_in_place(lists, buffer):
    lists[0][4].shape = (2, len(lists[0][4]) // 2)


def _params_and_ms_swapped(lists, buffer):
    lists[0], lists[2] = lists[2], lists[0]


def _one_quadruple_fewer(lists, buffer):
    for r in range(4):
        lists[r].pop(3)


def _disjoint_copy_in_place_of_one(lists, buffer):
    lists[3][5] = lists[3][5].copy()


CHANGES = {
    "m over another param": (_m_over_other_param, ValueError),
    "same starts, longer": (_same_starts_longer, ValueError),
    "a gradient as another m": (_grad_as_other_m, ValueError),
    "a new quadruple over the first param": (_new_quadruple_over_first_param, ValueError),
    "m read-only": (_m_read_only, ValueError),
    "param reshaped in place": (_param_reshaped_in_place, ValueError),
    "params and ms swapped": (_params_and_ms_swapped, None),
    "one quadruple fewer": (_one_quadruple_fewer, None),
    "a disjoint copy in place of one u": (_disjoint_copy_in_place_of_one, None),
}


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("layout", ["quadruples", "shuffled"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_after_a_call_is_seen_by_the_next(change, layout, size):
    spoil, error = CHANGES[change]
    length, threads = SIZES[size]
    rng = np.random.default_rng(len(change))
    buffer, lists = cut(layout, [length] * 8, rng)
    buffer[:] = rng.random(buffer.size)
    for _ in range(2):  # the second call meets the tables of the first
        assert_steps_like_inplace(lists, threads=threads)
    changed = [list(x) for x in lists]
    spoil(changed, buffer)
    if error is None:
        assert allowed(changed)
        assert_steps_like_inplace(changed, threads=threads)
        assert_steps_like_inplace(changed, threads=threads)
    else:
        assert_refused(changed, buffer, error, threads)
        assert_refused(changed, buffer, error, threads)  # refused again, not remembered
    for array in (a for group in lists for a in group):
        array.setflags(write=True)
        array.shape = (array.size,)
    assert_steps_like_inplace(lists, threads=threads)  # the first call's arrays again


def _spoiled(lists, rng):
    """The lists with one gradient of another dtype (refused by the fast checks)."""
    out = [list(x) for x in lists]
    j = int(rng.integers(len(out[1])))
    out[1][j] = out[1][j].astype(np.float32)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_any_sequence_of_calls_agrees_with_comparing_every_pair(seed):
    # Calls drawn from a few related lists (the same arrays, one array moved
    # onto another, one quadruple spoiled, fewer quadruples) in random order,
    # so that each kind of call follows each other kind.
    rng = np.random.default_rng(seed)
    count = int(rng.choice([5, 40, 300]))
    lengths = rng.integers(1, 9, size=count)
    buffer, base = cut(LAYOUTS[seed % len(LAYOUTS)], lengths, rng)
    pool = [base]
    for _ in range(4):
        moved = [list(x) for x in base]
        j, r = int(rng.integers(count)), int(rng.integers(4))
        same = [(i, q) for i in range(count) for q in range(4) if lengths[i] == lengths[j]]
        i, q = same[int(rng.integers(len(same)))]
        moved[r][j] = base[q][i]
        pool.append(moved)
    pool.append(_spoiled(base, rng))
    pool.append([x[: count // 2] for x in base])
    outcomes = set()
    for _ in range(60):
        lists = pool[int(rng.integers(len(pool)))]
        expected = allowed(lists) and all(g.dtype == p.dtype for p, g in zip(lists[0], lists[1]))
        outcomes.add(expected)
        assert _kernel.check_many_fast(*lists) is expected
        before = buffer.copy()
        done = _kernel.step_many(*lists, T, 0.002, 0.9, 0.999, 1e-8, 0.0, False, False,
                                 "spec", None)
        assert done is expected
        if not done:
            np.testing.assert_array_equal(bits(buffer), bits(before))
    assert outcomes == {True, False}


@pytest.mark.parametrize("extra", [0, 1])
def test_steps_on_either_side_of_the_gil_bound(extra):
    # Up to keep_gil_elements the step keeps the GIL and runs on the kept
    # tables; above it, on its own copy with the GIL released.
    total = _kernel.keep_gil_elements + extra
    rng = np.random.default_rng(extra)
    lists = [[], [], [], []]
    for n, dtype in ((total // 3, np.float32), (total - total // 3, np.float64)):
        for r, values in enumerate(rng.standard_normal((4, n))):
            lists[r].append(np.abs(values).astype(dtype) if r == 3 else values.astype(dtype))
    for t in (1, 2):
        assert_steps_like_inplace(lists, t)


def test_threads_stepping_their_own_arrays_at_once():
    # Concurrent calls share the kept tables: small ones (GIL kept, on one
    # thread or several) and large ones (GIL released, on their own copy)
    # interleave.
    code = """
    import threading
    import numpy as np
    from adamax_cy import _kernel, adamax_step_inplace, adamax_step_many

    def lists(count, n, seed):
        rng = np.random.default_rng(seed)
        out = [[rng.standard_normal(n) for _ in range(count)] for _ in range(4)]
        out[3] = [np.abs(u) for u in out[3]]
        return out

    big = _kernel.keep_gil_elements // 2 + 1
    threaded = _kernel.keep_gil_elements // 4  # on threads, under the GIL bound
    assert 2 * threaded >= _kernel.serial_threshold
    work = [lists(200, 50, 0), lists(3, big, 1), lists(37, 20, 2), lists(2, big, 3),
            lists(2, threaded, 4), lists(3, threaded, 5)]
    expected = [[[a.copy() for a in x] for x in w] for w in work]
    steps = 30
    for w in expected:
        for t in range(1, steps + 1):
            for q in zip(*w):
                adamax_step_inplace(*q, t)
    def run(w):
        for t in range(1, steps + 1):
            adamax_step_many(*w, t, num_threads=2)
    threads = [threading.Thread(target=run, args=(w,)) for w in work]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for w, e in zip(work, expected):
        for got, want in zip(w, e):
            for a, b in zip(got, want):
                assert a.tobytes() == b.tobytes()
    print("ok")
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_optimizer_s_trusted_call_keeps_the_checked_tables():
    # adamax_cy.Adamax checks with check_many_fast, then steps with
    # update_many: on the same arrays the kept tables stay the checked ones,
    # so the next check needs no overlap test; other arrays replace them.
    rng = np.random.default_rng(0)
    buffer, lists = cut("quadruples", [5] * 6, rng)
    other = [list(x) for x in lists]
    other[3][2] = other[3][2].copy()
    options = dict(t=T, lr=0.002, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                   decoupled_weight_decay=False, maximize=False, convention="spec",
                   num_threads=0)
    def kept():
        tables = _kernel.kept_tables()
        return {"count": tables["count"], "disjoint": tables["disjoint"]}
    assert _kernel.check_many_fast(*lists) is True
    assert kept() == {"count": 6, "disjoint": True}
    _kernel.update_many(*lists, **options)
    assert kept() == {"count": 6, "disjoint": True}
    _kernel.update_many(*other, **options)
    assert kept() == {"count": 6, "disjoint": False}
    assert _kernel.check_many_fast(*other) is True
    assert kept() == {"count": 6, "disjoint": True}
