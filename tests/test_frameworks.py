"""Named allowances for the frameworks' known departures, and the frameworks report."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from adamax_cy import _frameworks, testing  # noqa: E402


def numpy_step(*, lerp: bool = False, flush: bool = False, float32_bias_correction: bool = False,
               no_bias_correction: bool = False):
    """A functional float32/float64 Adamax (torch convention) with chosen departures."""

    def step(param, grad, m, u, t, lr, beta1, beta2, eps):
        dtype = np.asarray(param).dtype
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)

        def r(x):
            x = np.asarray(x, dtype=dtype)
            if flush:
                x = np.where(np.abs(x) < np.finfo(dtype).tiny, np.zeros_like(x) * np.sign(x), x)
            return x

        with np.errstate(all="ignore"):
            p, g, m, u = (r(a) for a in (param, grad, m, u))
            b1, b2, e = r(beta1), r(beta2), r(eps)
            w = r(1.0 - beta1)
            m_t = r(m + r(r(g - m) * w)) if lerp else r(r(b1 * m) + r(w * g))
            u_t = np.maximum(r(b2 * u), r(np.abs(g) + e))
            if no_bias_correction:
                bc = r(1.0)
            elif float32_bias_correction:
                bc = r(np.float32(1) - np.power(np.float32(beta1), np.float32(t)))
            else:
                bc = r(1.0 - beta1**t)
            m_hat = r(m_t / bc)
            theta = r(p - r(r(r(lr) / u_t) * m_hat))
        if np.ndim(param) == 0 and not isinstance(param, np.ndarray):
            return float(theta), float(m_t), float(u_t)
        return theta, m_t, u_t

    return step


def conforms(step, allowances, dtype="float32", **kwargs) -> tuple[bool, object]:
    report, _ = _frameworks.check(testing.functional(step), allowances, "torch", dtype,
                                  max_examples=kwargs.pop("max_examples", 60), seed=3, **kwargs)
    return report.conforms, report


def test_the_reference_order_needs_no_allowance() -> None:
    ok, report = conforms(numpy_step(), [])
    assert ok, report


def test_lerp_is_rejected_strictly_and_accepted_by_its_allowance() -> None:
    ok, report = conforms(numpy_step(lerp=True), [])
    assert not ok and report.mismatch.formula == "m"
    ok, report = conforms(numpy_step(lerp=True), ["lerp"])
    assert ok, report


def test_flushing_subnormals_is_rejected_strictly_and_accepted_by_its_allowance() -> None:
    ok, report = conforms(numpy_step(flush=True), [])
    assert not ok
    ok, report = conforms(numpy_step(flush=True), ["flush-subnormals"])
    assert ok, report


def test_a_float32_bias_correction_needs_its_allowance_where_beta1_is_near_one() -> None:
    ok, report = conforms(numpy_step(float32_bias_correction=True), [], options={"beta1": 0.9999})
    assert not ok and report.mismatch.formula == "θ"
    ok, report = conforms(numpy_step(float32_bias_correction=True), ["float32-bias-correction"],
                          options={"beta1": 0.9999})
    assert ok, report


def test_no_allowance_hides_a_wrong_bias_correction() -> None:
    everything = list(_frameworks.ALLOWANCES)
    for beta1 in (0.9, 0.9999):
        ok, report = conforms(numpy_step(no_bias_correction=True), everything, options={"beta1": beta1})
        assert not ok and report.mismatch.formula == "θ", report


def test_the_bias_correction_bound_holds_where_it_is_tight() -> None:
    """ρ bounds float32's 1 − β1^t against the contract's, and is not loose by orders of magnitude."""
    worst_ratio = 0.0
    for beta1 in (0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999):
        b32 = float(np.float32(beta1))
        for t in list(range(1, 200)) + [1000, 10_000, 100_000]:
            ours = float(np.float32(1) - np.power(np.float32(b32), np.float32(t)))
            contract = float(np.float32(1.0 - b32**t))
            if ours == contract:
                continue
            rho = _frameworks.bias_correction_bound(b32, t)
            observed = abs(ours - contract) / contract
            assert observed <= rho, (beta1, t, observed, rho)
            worst_ratio = max(worst_ratio, observed / rho)
    assert worst_ratio > 0.05  # the bound is within a factor 20 of what float32 really does
    assert _frameworks.bias_correction_bound(0.9999, 1) < 1e-2
    assert math.isinf(_frameworks.bias_correction_bound(1.0, 3))


INSTALLED = _frameworks.installed()


@pytest.mark.parametrize("framework", list(_frameworks.FRAMEWORKS))
def test_report_runs_each_installed_framework(framework: str) -> None:
    reason = INSTALLED[framework]
    if reason is not None:
        pytest.skip(reason)
    rows = _frameworks._subprocess_run(framework, "float32", max_examples=5, seed=0, timeout=600, quick=True)
    assert all("error" not in r for r in rows), rows
    assert [(r["convention"], r["options"]) for r in rows] == [("spec", {}), ("torch", {})]
    native = "spec" if framework.startswith("keras") else "torch"
    for r in rows:
        assert set(r["allowances"]) <= set(_frameworks.ALLOWANCES)
        if r["convention"] == native:
            assert r["verdict"] == "conforms", r
        else:  # where eps goes is not an allowance: the other convention is rejected at u
            assert r["verdict"] == "does not conform" and r["first_wrong"]["formula"] == "u", r
    doc = {"date": "d", "platform": "p", "python": "3", "adamax_cy": "v", "max_examples": 5, "seed": 0,
           "skipped": {}, "results": rows}
    table = _frameworks.markdown(doc)
    assert sum(line.startswith(f"| {framework} |") for line in table.splitlines()) == len(rows)
