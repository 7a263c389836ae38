"""With ``convention="torch"``, adamax_cy follows ``torch.optim.Adamax``.

The bounds are :data:`adamax_cy.testing.TORCH_TOLERANCES` (its comment says
where each comes from: torch's ``lerp`` for ``m``, a fused multiply-add in
the L2 weight decay for ``u``). Run on the CPU, float32 and float64,
``weight_decay`` and ``maximize``, ``foreach`` off and on.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import adamax_cy
from adamax_cy.testing import TORCH_TOLERANCES, check_conformance, optimizer

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")

STEPS = 150
SIZE = 400
LR, BETA1, BETA2, EPS = (adamax_cy.DEFAULTS[k] for k in ("lr", "beta1", "beta2", "eps"))
CONFIGURATIONS = list(itertools.product(("float32", "float64"), (False, True), (0.0, 0.01), (False, True)))


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The run's hypothesis seed (printed in the header), so a failure replays."""
    return int(request.config.getoption("hypothesis_seed"))


def _ids(configuration):
    dtype, foreach, weight_decay, maximize = configuration
    return f"{dtype}-foreach{foreach}-wd{weight_decay}-{'max' if maximize else 'min'}"


def _ulp(x, dtype):
    return np.spacing(np.abs(np.asarray(x, dtype=np.float64)).astype(dtype)).astype(np.float64)


def _gradients(rng, dtype):
    """Gradients over six orders of magnitude, a different scale per element and step."""
    return (rng.standard_normal(SIZE) * 10.0 ** rng.uniform(-4, 2, SIZE)).astype(dtype)


@pytest.mark.parametrize("configuration", CONFIGURATIONS, ids=_ids)
def test_adamax_cy_follows_torch_step_by_step(configuration, seed):
    """Every step of a 150-step torch run, recomputed by adamax_cy from torch's own state.

    Both are held to the reference: adamax_cy within the contract
    (``m``, ``u`` bitwise; ``θ`` within ``1·ulp(θ) + 4·ulp(update)``) and
    torch within ``TORCH_TOLERANCES``; so they are within the sum of the two.
    """
    dtype, foreach, weight_decay, maximize = configuration
    tol = TORCH_TOLERANCES[dtype]
    rng = np.random.default_rng([seed, CONFIGURATIONS.index(configuration)])
    p = torch.nn.Parameter(torch.from_numpy(rng.standard_normal(SIZE).astype(dtype)))
    opt = torch.optim.Adamax([p], lr=LR, betas=(BETA1, BETA2), eps=EPS,
                             weight_decay=weight_decay, maximize=maximize, foreach=foreach)
    m = np.zeros(SIZE, dtype)
    u = np.zeros(SIZE, dtype)
    worst = {"m": 0.0, "u": 0.0, "θ": 0.0}
    for t in range(1, STEPS + 1):
        theta = p.detach().numpy().copy()
        grad = _gradients(rng, dtype)
        p.grad = torch.from_numpy(grad.copy())
        opt.step()
        state = opt.state[p]
        theta_torch, m_torch, u_torch = (x.detach().numpy().astype(np.float64) for x in
                                         (p, state["exp_avg"], state["exp_inf"]))
        theta_cy, m_cy, u_cy = (x.astype(np.float64) for x in adamax_cy.adamax_step(
            theta, grad, m, u, t, LR, BETA1, BETA2, EPS, weight_decay=weight_decay,
            maximize=maximize, convention="torch"))

        g = (-grad if maximize else grad).astype(np.float64)
        g_terms = np.maximum(np.abs(g), np.abs(weight_decay * theta.astype(np.float64)))
        m_terms = np.maximum.reduce([np.abs(BETA1 * m.astype(np.float64)), (1 - BETA1) * g_terms, np.abs(m_cy)])
        dm = np.abs(m_torch - m_cy)
        du = np.abs(u_torch - u_cy)
        worst["m"] = max(worst["m"], float(np.max(dm / _ulp(m_terms, dtype))))
        worst["u"] = max(worst["u"], float(np.max(du / _ulp(np.maximum(u_cy, g_terms), dtype))))

        clr = LR / (1 - BETA1**t)
        update = clr * m_cy / u_cy
        # Both within 1·ulp(θ) + 4·ulp(update) of the reference, plus the first-order
        # effect on θ of torch's differences in m and u.
        allowed = 2 * _ulp(theta_cy, dtype) + 8 * _ulp(update, dtype) + clr * dm / u_cy + np.abs(update) * du / u_cy
        excess = np.max(np.abs(theta_torch - theta_cy) - allowed)
        worst["θ"] = max(worst["θ"], float(excess))
        m, u = state["exp_avg"].numpy().copy(), state["exp_inf"].numpy().copy()

    assert worst["m"] <= tol.m, worst
    assert worst["u"] <= tol.u, worst
    assert worst["θ"] <= 0, worst
    if weight_decay == 0:
        assert worst["u"] == 0, "without weight decay torch and adamax_cy compute u by the same operations"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_free_running_trajectories_stay_together(dtype, seed):
    """Two 150-step runs from one start, each on its own state (no weight decay).

    ``u`` depends on the gradients alone and is computed by the same
    operations: bitwise equal throughout. ``m`` differs by lerp's rounding
    each step, and formula 1 contracts old errors by β1, so the difference
    stays within ``TORCH_TOLERANCES.m / (1 − β1)`` ulps of the largest term
    seen so far. ``θ`` drifts by at most the sum of the per-step allowances.
    """
    tol = TORCH_TOLERANCES[dtype]
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(SIZE).astype(dtype)
    p = torch.nn.Parameter(torch.from_numpy(start.copy()))
    opt = torch.optim.Adamax([p], lr=LR, betas=(BETA1, BETA2), eps=EPS)
    theta, m, u = start.copy(), np.zeros(SIZE, dtype), np.zeros(SIZE, dtype)
    largest_term = np.zeros(SIZE)
    drift_allowed = np.zeros(SIZE)
    for t in range(1, STEPS + 1):
        grad = _gradients(rng, dtype)
        p.grad = torch.from_numpy(grad.copy())
        opt.step()
        m_before = m.astype(np.float64)
        adamax_cy.adamax_step_inplace(theta, grad, m, u, t, LR, BETA1, BETA2, EPS, convention="torch")
        state = opt.state[p]
        m_torch, u_torch, theta_torch = (x.detach().numpy().astype(np.float64)
                                         for x in (state["exp_avg"], state["exp_inf"], p))
        assert np.array_equal(u_torch, u), f"u differs at t={t}"
        largest_term = np.maximum.reduce([largest_term, np.abs(BETA1 * m_before), np.abs((1 - BETA1) * grad), np.abs(m)])
        dm = np.abs(m_torch - m)
        assert np.all(dm <= tol.m / (1 - BETA1) * _ulp(largest_term, dtype)), f"m drifted at t={t}"
        clr = LR / (1 - BETA1**t)
        update = clr * m / u
        drift_allowed += 2 * _ulp(theta, dtype) + 8 * _ulp(update, dtype) + clr * dm / u
        assert np.all(np.abs(theta_torch - theta) <= drift_allowed), f"θ drifted at t={t}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("beta1", [0.5, 0.9, 0.99])
def test_torch_conforms_to_the_reference_within_its_stated_bounds(dtype, foreach, beta1, seed):
    report = check_conformance(
        optimizer(torch.optim.Adamax, foreach=foreach), convention="torch", dtype=dtype,
        options={"beta1": beta1}, vary=("weight_decay", "maximize"), nonfinite=False,
        tolerance=TORCH_TOLERANCES[dtype], max_examples=40, seed=seed,
    )
    assert report.conforms, str(report)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_fails_the_strict_contract_in_m(dtype):
    """lerp is why the torch tolerances exist: without them, m is the first to differ."""
    report = check_conformance(optimizer(torch.optim.Adamax), convention="torch", dtype=dtype,
                               max_examples=200, seed=0)
    assert report.mismatch.formula == "m", str(report)


@pytest.mark.parametrize("convention", ["torch", "spec"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adamax_cy_torch_optimizer_conforms_strictly(convention, dtype, seed):
    """adamax_cy.torch.Adamax, through the optimizer adapter, meets the contract itself."""
    from adamax_cy.torch import Adamax

    report = check_conformance(
        optimizer(Adamax, convention=convention), convention=convention, dtype=dtype,
        vary=("weight_decay", "maximize"), max_examples=40, seed=seed,
    )
    assert report.conforms and not report.widened, str(report)
