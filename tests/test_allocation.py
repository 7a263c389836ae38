"""An in-place step allocates nothing on the heap, whatever the size."""

import numpy as np
import pytest

from adamax_cy import adamax_step_inplace
from adamax_cy.bench import allocation_per_step


# Keywords written out: unpacking **options would allocate a dict per call.
STEPS = {
    "defaults": lambda p, g, m, u, t: adamax_step_inplace(p, g, m, u, t),
    "one thread": lambda p, g, m, u, t: adamax_step_inplace(p, g, m, u, t, num_threads=1),
    "torch, weight decay": lambda p, g, m, u, t: adamax_step_inplace(
        p, g, m, u, t, convention="torch", weight_decay=0.1),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", STEPS)
def test_no_allocation_per_step_at_any_size(dtype, name):
    sizes = (1, 1_000, 100_000, 1_000_000)
    traced = {n: allocation_per_step(n, np.dtype(dtype).name, 20, STEPS[name]) for n in sizes}
    assert traced == {n: 0 for n in sizes}


def test_the_measure_sees_an_allocating_step():
    # The same measure on a step that allocates a temporary must see it.
    def allocating(p, g, m, u, t):
        p -= 0.1 * p

    assert allocation_per_step(1000, "float64", 20, allocating) >= 1000 * 8
