"""The kernel's float64 result against the true real-number result (exact mode).

A first-order error bound, derived from the operations the kernel performs
(u is the unit roundoff 2**-53; every rounding has relative error <= u):

* ``m_t = beta1*m + (1-beta1)*g``: the coefficient ``1 - beta1`` (one rounding),
  two products and a sum give ``|m_k - m*| <= u (2|beta1 m| + 3|(1-beta1) g|)``.
* ``u_t``: only ``beta2*u`` is rounded (spec), or also ``|g| + eps`` (torch):
  ``|u_k - u*| <= u max(|beta2 u|, |g| + eps)``; the denominator adds one
  rounding in the spec convention.
* bias correction ``1 - beta1**t``: ``pow`` is within 1 ulp (<= 2u relative)
  and the subtraction rounds once, so its relative error is at most
  ``u + 2u beta1**t / (1 - beta1**t)``.
* ``c = lr/bc``, ``r = m/d``, ``s = c*r``, ``theta - s``: four more roundings.

So ``|theta_k - theta*| <= (c*/d*) E_m + |Delta*| (E_d/d* + E_bc + 4u) + u|theta*|``
to first order; the test allows a factor 1 + 1e-6 for the second-order terms.
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from contract import assert_contract
from hypothesis import given
from hypothesis import strategies as st

from adamax_cy import adamax_step_inplace
from adamax_cy.reference import adamax as reference_adamax
from adamax_cy.reference import adamax_trace

U = Fraction(1, 2**53)

moderate = st.one_of(
    st.just(0.0),
    st.builds(  # magnitudes 1e-6 .. 1e7: no intermediate under- or overflows
        lambda sign, x, e: sign * x * 10.0**e,
        st.sampled_from([-1.0, 1.0]), st.floats(1, 10), st.integers(-6, 6),
    ),
)


@given(
    values=st.lists(st.tuples(moderate, moderate, moderate, moderate.map(abs)), min_size=1, max_size=8),
    t=st.integers(1, 200),
    lr=st.floats(1e-5, 1.0),
    beta1=st.one_of(st.just(0.0), st.floats(1e-3, 0.999)),  # no underflow in beta1 * m
    beta2=st.one_of(st.just(0.0), st.floats(1e-3, 0.9999)),
    eps=st.sampled_from([1e-8, 1e-3, 0.5]),
    convention=st.sampled_from(["spec", "torch"]),
    maximize=st.booleans(),
)
def test_float64_error_is_within_the_derived_bound(values, t, lr, beta1, beta2, eps, convention, maximize):
    param, grad, m, u = (np.array(col, dtype=np.float64) for col in zip(*values))
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, convention=convention, maximize=maximize)
    kernel = [a.copy() for a in (param, grad, m, u)]
    adamax_step_inplace(*kernel, t, **hyper)
    for i in range(param.size):
        exact = adamax_trace(param[i], grad[i], m[i], u[i], t, arithmetic="exact", **hyper)
        g = -Fraction(grad[i]) if maximize else Fraction(grad[i])
        b1, b2 = Fraction(beta1), Fraction(beta2)
        e_m = U * (2 * abs(b1 * Fraction(m[i])) + 3 * abs((1 - b1) * g))
        assert abs(Fraction(float(kernel[2][i])) - exact.m_t) <= e_m
        e_u = U * max(abs(b2 * Fraction(u[i])), abs(g) + Fraction(eps))
        assert abs(Fraction(float(kernel[3][i])) - exact.u_t) <= e_u
        d = exact.denominator
        e_d = e_u + (U * d if convention == "spec" else 0)
        bc = exact.bias_correction
        e_bc = U + 2 * U * (1 - bc) / bc
        delta = exact.update
        bound = (Fraction(lr) / bc / d) * e_m + abs(delta) * (e_d / d + e_bc + 4 * U)
        bound = (bound + U * abs(exact.param_t)) * (1 + Fraction(1, 10**6))
        error = abs(Fraction(float(kernel[0][i])) - exact.param_t)
        assert error <= bound, (i, float(error), float(bound))


@pytest.mark.parametrize("convention", ["spec", "torch"])
@pytest.mark.parametrize("lr", [1.5 * 2.0**-149, 1e-40, 3e-39, 1e-45])
def test_float32_reference_does_not_round_a_tiny_lr_on_its_own(lr, convention):
    """Float32, lr subnormal in float32, θ = 0, g = 0, m = 1, u = 0, t = 1: every
    intermediate (m̂, lr/d, the update) is normal, so the float32 reference is within a
    few roundings of the real result, and the kernel (which rounds lr/(1 − β1^t)
    computed in double) within the contract of the reference. Rounding lr alone to
    float32 first was 33% off."""
    args = (0.0, 0.0, 1.0, 0.0, 1)
    f32 = adamax_trace(*args, lr=lr, convention=convention, arithmetic="float32")
    exact = adamax_trace(*args, lr=lr, convention=convention, arithmetic="exact")
    assert f32.step_size >= np.finfo(np.float32).tiny  # the case the contract calls normal
    # β1 and 1 − β1 rounded to float32, then m_t, m̂, lr/d, the update and θ: a
    # relative error of at most 7·2**-24 (three ulps at most).
    assert abs(Fraction(f32.param_t) - exact.param_t) <= 3 * Fraction(float(np.spacing(np.float32(abs(f32.param_t)))))
    param, grad, m, u = (np.array([x], np.float32) for x in args[:4])
    before = tuple(a.copy() for a in (param, grad, m, u))
    adamax_step_inplace(param, grad, m, u, 1, lr=lr, convention=convention)
    assert_contract(before, (param, m, u), 1, {"lr": lr, "convention": convention})


BETAS = [0.0, 2.0**-1074, 0.5, 0.9, 0.999999, 1 - 2.0**-30, 1 - 2.0**-53]


@pytest.mark.parametrize("beta1", BETAS)
def test_exact_power_is_within_its_stated_bound(beta1):
    """Beyond EXACT_POWER_STEPS the power is carried to POWER_BITS bits: 1 − β1^t stays
    within a relative 2**-1900 of the true value (checked where the true value is cheap)."""
    for t in (reference_adamax.EXACT_POWER_STEPS, reference_adamax.EXACT_POWER_STEPS + 1, 2999, 4096):
        true = 1 - Fraction(beta1) ** t
        approx = 1 - reference_adamax.exact_power(beta1, t)
        assert abs(approx - true) <= true * Fraction(1, 2**1900), (beta1, t)


BOUNDED = """
import sys
from fractions import Fraction
from adamax_cy.reference import adamax_trace
betas = [0.0, 2.0**-1074, 0.5, 0.9, 0.999999, 1 - 2.0**-30, 1 - 2.0**-53]
worst = 0
for t in (10**6, 2**40, 2**53 + 1, 2**62 + 12345, 2**63 - 1):
    for beta1 in betas:
        for args in ((1.5, -0.25, 0.02, 0.15), (1e-300, 2.0**-1074, -1e300, 1e-320)):
            exact = adamax_trace(*args, t, beta1=beta1, lr=1e-300, eps=1e-320, weight_decay=1e-300,
                                 arithmetic="exact")
            f64 = adamax_trace(*args, t, beta1=beta1, lr=1e-300, eps=1e-320, weight_decay=1e-300)
            # pow within one ulp, the subtraction within half of one: test_exact's E_bc
            bc, power = exact.bias_correction, 1 - exact.bias_correction
            if abs(Fraction(f64.bias_correction) - bc) > bc * Fraction(1, 2**53) + power * Fraction(1, 2**52):
                sys.exit(f"bias correction {float(bc)!r} vs {f64.bias_correction!r} at {t}, {beta1}")
            worst = max([worst] + [max(x.numerator.bit_length(), x.denominator.bit_length())
                                   for x in vars(exact).values()])
print(worst)
"""


def test_exact_mode_is_bounded_in_time_and_memory_for_any_step_number():
    """Exact mode at t up to 2**63 − 1 (β1**t was an unbounded Fraction power: 14 s at
    t = 10**6, no end at 2**40): every number of the trace has a few thousand bits,
    whatever t, and 1 − β1^t rounds to the double the float64 reference computes.
    Run in a subprocess so that a regression fails instead of hanging the suite."""
    result = subprocess.run([sys.executable, "-c", BOUNDED], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout) <= 8 * reference_adamax.POWER_BITS


def test_the_reference_step_takes_arrays_and_refuses_the_step_numbers_the_kernel_refuses():
    """Any flat sequence, ndarray included; t >= 2**63 refused with the kernel's message."""
    from adamax_cy import adamax_step
    from adamax_cy.reference import adamax_step as reference_step

    as_lists = reference_step([1.0, 2.0], [0.1, -0.2], [0.0, 0.0], [0.0, 0.0], 1)
    assert reference_step(np.array([1.0, 2.0]), np.array([0.1, -0.2]), np.zeros(2), np.zeros(2), 1) == as_lists
    for t in (2**63, 2**64):
        with pytest.raises(ValueError) as kernel:
            adamax_step(1.0, 0.1, 0.0, 0.0, t)
        with pytest.raises(ValueError) as ours:
            reference_step(1.0, 0.1, 0.0, 0.0, t)
        assert str(ours.value) == str(kernel.value)
