"""An in-place step allocates nothing on the heap, whatever the size."""

import tracemalloc

import numpy as np
import pytest

from adamax_cy import adamax_step_inplace


# Keywords written out: unpacking **options would allocate a dict per call.
STEPS = {
    "defaults": lambda p, g, m, u, t: adamax_step_inplace(p, g, m, u, t),
    "one thread": lambda p, g, m, u, t: adamax_step_inplace(p, g, m, u, t, num_threads=1),
    "torch, weight decay": lambda p, g, m, u, t: adamax_step_inplace(
        p, g, m, u, t, convention="torch", weight_decay=0.1),
}


def traced_bytes(n, dtype, steps, step):
    """Peak bytes traced by tracemalloc over ``steps`` in-place steps on ``n`` elements."""
    p, g, m, u = (np.full(n, x, dtype=dtype) for x in (1.0, 0.1, 0.0, 0.0))
    step(p, g, m, u, 1)  # first call: lazy initialisation
    calls = iter(range(2, steps + 2))  # made before tracing starts
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for t in calls:
            step(p, g, m, u, t)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", STEPS)
def test_no_allocation_per_step_at_any_size(dtype, name):
    sizes = (1, 1_000, 100_000, 1_000_000)
    traced = {n: traced_bytes(n, dtype, 20, STEPS[name]) for n in sizes}
    assert traced == {n: 0 for n in sizes}


def test_the_measure_sees_an_allocating_step():
    # The same measure on a step that allocates a temporary must see it.
    p = np.ones(1000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        p -= 0.1 * p
        assert tracemalloc.get_traced_memory()[1] - before >= p.nbytes
    finally:
        tracemalloc.stop()
