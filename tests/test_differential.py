"""The compiled kernel against the reference, under the arithmetic contract."""

from __future__ import annotations

import numpy as np
import pytest
from contract import arithmetic, assert_contract, bits, check_element, step_coefficient
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import DTYPES, hyperparameters, states, steps, values

from adamax_cy import adamax_step, adamax_step_inplace
from adamax_cy.reference import adamax_trace


@given(state=states(), t=steps, hyper=hyperparameters())
def test_inplace_step_follows_the_reference(state, t, hyper):
    before = tuple(state[k].copy() for k in ("param", "grad", "m", "u"))
    adamax_step_inplace(state["param"], state["grad"], state["m"], state["u"], t, **hyper)
    assert_contract(before, (state["param"], state["m"], state["u"]), t, hyper)
    np.testing.assert_array_equal(state["grad"], before[1])  # read, never written


@given(state=states(), t=steps, hyper=hyperparameters())
def test_functional_step_equals_inplace_and_leaves_inputs_alone(state, t, hyper):
    names = ("param", "grad", "m", "u")
    before = {k: state[k].copy() for k in names}
    new = adamax_step(*(state[k] for k in names), t, **hyper)
    for k in names:
        np.testing.assert_array_equal(state[k], before[k])
    for a in new:
        assert a.dtype == state["dtype"] and a.shape == state["param"].shape
    inplace = {k: np.ascontiguousarray(before[k]) for k in names}
    adamax_step_inplace(*(inplace[k] for k in names), t, **hyper)
    for got, want in zip(new, (inplace["param"], inplace["m"], inplace["u"])):
        assert got.tobytes() == want.tobytes()


@given(
    dtype=st.sampled_from(DTYPES),
    n=st.integers(1, 120_000),
    seed=st.integers(0, 2**32 - 1),
    t=steps,
    hyper=hyperparameters(),
    num_threads=st.sampled_from([None, 1, 2, 3]),
)
@settings(max_examples=25)
def test_large_arrays_follow_the_reference(dtype, n, seed, t, hyper, num_threads):
    """Arrays up to 1.2e5 elements (threads engaged), checked at the thread-block
    edges, both ends and a random sample (the update is element-wise)."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-20, 20, size=(4, n))
    param, grad, m, u = (rng.standard_normal((4, n)) * scale).astype(dtype)
    u = np.abs(u)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, float(np.finfo(dtype).smallest_subnormal)]
    for a in (param, grad, m, u):
        hit = rng.integers(0, n, size=max(1, n // 1000))
        a[hit] = rng.choice(special, size=hit.size)
    before = tuple(a.copy() for a in (param, grad, m, u))
    adamax_step_inplace(param, grad, m, u, t, **hyper, num_threads=num_threads)
    edges = {min(n - 1, max(0, b * n // k + d)) for k in (2, 3, 4) for b in range(k + 1) for d in (-1, 0)}
    sample = set(rng.integers(0, n, size=min(n, 300)).tolist())
    assert_contract(before, (param, m, u), t, hyper, sorted(edges | sample))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), hyper=hyperparameters())
def test_multi_step_trajectory(dtype, data, hyper):
    """Several steps in a row: each step meets the contract from the kernel's own state."""
    n = data.draw(st.integers(1, 8))
    param, m, u = (np.zeros(n, dtype) for _ in range(3))
    param[:] = data.draw(st.lists(values(dtype, specials=False), min_size=n, max_size=n))
    for t in range(1, data.draw(st.integers(2, 12))):
        grad = np.array(data.draw(st.lists(values(dtype), min_size=n, max_size=n)), dtype)
        before = tuple(a.copy() for a in (param, grad, m, u))
        adamax_step_inplace(param, grad, m, u, t, **hyper)
        assert_contract(before, (param, m, u), t, hyper)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_is_never_dropped_by_the_max(dtype):
    param, m = np.ones(3, dtype), np.zeros(3, dtype)
    grad = np.array([np.nan, 1.0, 1.0], dtype)
    u = np.array([0.0, np.nan, 1.0], dtype)
    adamax_step_inplace(param, grad, m, u, 1)
    assert np.isnan(u[:2]).all() and np.isnan(param[:2]).all()
    assert np.isfinite(u[2]) and np.isfinite(param[2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", ["spec", "torch"])
def test_eps_zero_leaves_untouched_elements_unchanged(dtype, convention):
    """The paper has no eps: 0/0 must not turn a parameter with no gradient into NaN."""
    param = np.array([1.5, -2.0, 3.0], dtype)
    grad = np.array([0.0, 0.0, 0.5], dtype)
    m, u = np.zeros(3, dtype), np.zeros(3, dtype)
    adamax_step_inplace(param, grad, m, u, 1, eps=0.0, convention=convention)
    assert param[:2].tolist() == [1.5, -2.0]
    assert param[2] < 3.0 and np.isfinite(param[2])


@pytest.mark.parametrize("eps", [1e-50, 1e-320])
def test_eps_that_rounds_to_zero_in_float32(eps):
    """eps > 0 in double can still be 0 in float32: the 0/0 guard must hold there too."""
    param = np.array([1.5, 2.0], np.float32)
    grad = np.array([0.0, 0.5], np.float32)
    m, u = np.zeros(2, np.float32), np.zeros(2, np.float32)
    adamax_step_inplace(param, grad, m, u, 1, eps=eps)
    assert param[0] == 1.5 and np.isfinite(param[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [{}, {"maximize": True}, {"weight_decay": 0.1}])
def test_eps_zero_guard_holds_when_the_step_size_overflows(dtype, options):
    """lr / (1 - beta1**t) may overflow to inf; an element with nothing to learn
    from must still be left as it is, not become inf * 0 = NaN."""
    lr = 1e308 if dtype == np.float64 else 3e38
    param = np.array([1.5, -0.0], dtype)
    zeros = [np.zeros(2, dtype) for _ in range(3)]
    adamax_step_inplace(param, *zeros, 1, lr=lr, beta1=0.5, eps=0.0, **options)
    expected = [adamax_trace(p, 0.0, 0.0, 0.0, 1, lr=lr, beta1=0.5, eps=0.0,
                             arithmetic=arithmetic(dtype), **options).param_t for p in (1.5, -0.0)]
    assert [bits(x, dtype) for x in param.tolist()] == [bits(x, dtype) for x in expected]


@given(state=states(), t=steps, hyper=hyperparameters())
def test_parameter_follows_the_documented_evaluation_order(state, t, hyper):
    """Beyond the contract's bound: the kernel's parameter is exactly
    ``theta - c * (m_t / d)`` done in the array's dtype, with ``c`` rounded once
    from double, so a computation in wider precision would be caught."""
    dtype = state["dtype"]
    before = [np.ravel(state[k]).tolist() for k in ("param", "grad", "m", "u")]
    adamax_step_inplace(state["param"], state["grad"], state["m"], state["u"], t, **hyper)
    with np.errstate(over="ignore"):
        c = np.asarray(step_coefficient(t, hyper["lr"], hyper["beta1"]), dtype)
    for i, got in enumerate(np.ravel(state["param"]).tolist()):
        tr = adamax_trace(*(column[i] for column in before), t, arithmetic=arithmetic(dtype), **hyper)
        with np.errstate(all="ignore"):
            r = np.asarray(tr.m_t, dtype) / np.asarray(tr.denominator, dtype)
            expected = np.asarray(tr.param_decayed, dtype) - c * r
        if tr.m_t == 0 and tr.denominator == 0:
            expected = np.asarray(tr.param_decayed, dtype)
        assert bits(got, dtype) == bits(float(expected), dtype), (i, got, float(expected))


@pytest.mark.parametrize(("lr", "grad"), [(1e-10, 3e38), (1e-47, 1e-30)])
def test_an_infinite_first_moment_meets_the_contract(lr, grad):
    """m = inf in float32: with lr = 1e-10 the kernel's c·(m_t/d) is -inf where the
    reference's (lr/d)·m̂ is 0·inf = NaN (lr/d underflowed to 0); with lr = 1e-47 it is
    the other way round (c rounds to 0 in float32, lr/d does not). The contract accepts
    NaN or θ − sign(m_t)·∞ there, and nothing else."""
    hyper = {"lr": lr}
    before = (0.0, grad, np.inf, 0.0)
    param, g, m, u = (np.array([x], np.float32) for x in before)
    adamax_step_inplace(param, g, m, u, 1, **hyper)
    trace = adamax_trace(*before, 1, lr=lr, arithmetic="float32")
    assert bits(float(param[0]), np.float32) != bits(trace.param_t, np.float32)  # the two orders differ
    assert_contract(tuple(np.array([x], np.float32) for x in before), (param, m, u), 1, hyper)
    for wrong in (np.inf, 0.0, -1e30):
        assert check_element(before, (wrong, float(m[0]), float(u[0])), 1, hyper, np.float32) is not None


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_step_size_that_overflows_in_double_is_exempt(dtype):
    """lr near the largest double, beta1 = 0.5, t = 3: c = lr/(1 - beta1**3) is inf in
    double, so the kernel gives -inf where the real θ is finite: the overflow exemption,
    and only for θ (m and u are still compared bit for bit)."""
    hyper = {"lr": 1.7e308, "beta1": 0.5}
    before = (1.0, 1e-8, 1e-8, 1.0)
    param, grad, m, u = (np.array([x], dtype) for x in before)
    adamax_step_inplace(param, grad, m, u, 3, **hyper)
    assert np.isinf(param[0])
    assert_contract(tuple(np.array([x], dtype) for x in before), (param, m, u), 3, hyper)
    assert check_element(before, (float(param[0]), float(m[0]) * 2, float(u[0])), 3, hyper, dtype) is not None
