"""The specification's worked examples, through every entry point."""

from __future__ import annotations

import numpy as np
import pytest

import adamax_cy
from adamax_cy import adamax_step, adamax_step_inplace, reference
from adamax_cy.reference import WORKED_EXAMPLES

EXAMPLES = pytest.mark.parametrize("ex", WORKED_EXAMPLES, ids=lambda ex: f"example{ex.number}")


def assert_matches_spec(ex, got):
    """Each output agrees with the spec's rounded value to the places shown."""
    for name, value, expected in zip(("param", "m", "u"), got, ex.expected):
        np.testing.assert_allclose(
            np.asarray(value, dtype=np.float64), expected, rtol=0, atol=0.5 * 10.0**-ex.places,
            err_msg=f"example {ex.number}: {name}",
        )


@EXAMPLES
def test_functional_step(ex):
    got = adamax_step(ex.param, ex.grad, ex.m, ex.u, ex.t)
    assert_matches_spec(ex, got)
    scalar = not isinstance(ex.param, list)
    assert all(isinstance(x, float) for x in got) == scalar
    assert all(isinstance(x, np.ndarray) and x.dtype == np.float64 for x in got) == (not scalar)


@EXAMPLES
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inplace_step(ex, dtype):
    param, grad, m, u = (np.array(x, dtype=dtype) for x in (ex.param, ex.grad, ex.m, ex.u))
    adamax_step_inplace(param, grad, m, u, ex.t)
    assert_matches_spec(ex, (param, m, u))


@EXAMPLES
@pytest.mark.parametrize("arithmetic", reference.ARITHMETICS)
def test_reference(ex, arithmetic):
    got = reference.adamax_step(ex.param, ex.grad, ex.m, ex.u, ex.t, arithmetic=arithmetic)
    assert_matches_spec(ex, got)


def test_example_one_in_double_precision():
    """The worked example's value: 0.9980000002 in double precision."""
    param, _, _ = adamax_step(1.0, 0.1, 0.0, 0.0, 1)
    assert abs(param - 0.9980000002) <= 2 * np.spacing(0.998)


def test_example_three_in_double_precision():
    """The worked example's value: 0.49925038797630... in double precision."""
    param, _, _ = adamax_step(0.5, 0.05, 0.02, 0.15, 5)
    assert 0.49925038797630 <= param < 0.49925038797631


def test_defaults_agree_with_the_specification():
    """The product's one definition of the defaults is the spec's (held by the reference)."""
    assert dict(adamax_cy.DEFAULTS) == reference.DEFAULTS


def test_float32_arrays_give_float32():
    p = np.array([1.0, 2.0], dtype=np.float32)
    out = adamax_step(p, p * 0.1, np.zeros_like(p), np.zeros_like(p), 1)
    assert all(x.dtype == np.float32 for x in out)
    mixed = adamax_step(p, [0.1, 0.2], np.zeros_like(p), np.zeros_like(p), 1)
    assert all(x.dtype == np.float64 for x in mixed)


def test_numpy_scalars_give_python_floats():
    got = adamax_step(np.float64(1.0), np.float32(0.1), np.float64(0), 0, np.int64(1))
    assert all(type(x) is float for x in got)
