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

from fractions import Fraction

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from adamax_cy import adamax_step_inplace
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
