"""The arithmetic contract between the compiled kernel and the reference.

For one step on float32 or float64 arrays:

* ``m`` and ``u`` are bitwise equal to the reference computed in the same
  arithmetic (NaN matches NaN; the sign of zero counts).
* ``param`` is within ``4 ulp(update) + 1 ulp(param)`` of the reference,
  where ``update`` is the reference's update (Δ) and the ulp of the parameter
  is taken at the larger of the old and the new value (the final subtraction
  may cross a binade). Where an intermediate falls into the subnormal range
  its rounding error is absolute, at most half the smallest subnormal
  ``tiny``, and is scaled by the factor that multiplies it next:

  - kernel ``r = m_t / d`` (times ``c = lr / (1 - beta1**t)``) and ``s = c * r`` (times 1);
  - reference ``m_hat = m_t / bc`` (times ``step_size``), ``step_size = lr / d``
    (times ``m_hat``) and ``update = step_size * m_hat`` (times 1).

  So where (and only where) an intermediate underflows, the allowance
  ``tiny / 2 * (c + |step_size| + |m_hat| + 2)`` is added.
* Where an intermediate overflows while the inputs are finite, the two
  evaluation orders can legitimately disagree (one may give inf or NaN where
  the other stays finite): such elements are exempt from the parameter
  check (and only from it). Otherwise a non-finite reference parameter must
  be matched exactly (NaN for NaN, the same infinity).
"""

from __future__ import annotations

import math
import struct
from typing import Any, Iterable

import numpy as np

from adamax_cy.reference import adamax_trace

OPTION_NAMES = ("weight_decay", "decoupled_weight_decay", "maximize", "convention")


def arithmetic(dtype: Any) -> str:
    return "float32" if np.dtype(dtype) == np.float32 else "float64"


def bits(x: float, dtype: Any) -> int:
    if math.isnan(x):
        return -1  # every NaN is the same NaN for the contract
    fmt = "<f" if np.dtype(dtype) == np.float32 else "<d"
    return int.from_bytes(struct.pack(fmt, x), "little")


def ulp(x: float, dtype: Any) -> float:
    with np.errstate(over="ignore"):
        return float(np.spacing(np.abs(np.asarray(x, dtype=dtype))))


def kernel_intermediates(trace: Any, coefficient: float, dtype: Any) -> tuple[float, float]:
    """The kernel's ``r = m_t / d`` and ``s = c * r``, in the array's dtype."""
    with np.errstate(all="ignore"):
        r = np.asarray(trace.m_t, dtype) / np.asarray(trace.denominator, dtype)
        s = np.asarray(coefficient, dtype) * r
    return float(r), float(s)


def underflowed(trace: Any, coefficient: float, lr: float, dtype: Any) -> bool:
    """Whether an intermediate of either evaluation order fell below the
    normal range: a subnormal result, or zero from non-zero operands."""
    normal = float(np.finfo(dtype).tiny)
    r, s = kernel_intermediates(trace, coefficient, dtype)
    results_and_operands = (
        (r, (trace.m_t,)),
        (s, (r, coefficient)),
        (trace.m_hat, (trace.m_t,)),
        (trace.step_size, (lr,)),
        (trace.update, (trace.step_size, trace.m_hat)),
    )
    for x, operands in results_and_operands:
        if 0 < abs(x) < normal or (x == 0 and all(o != 0 for o in operands)):
            return True
    return False


def theta_tolerance(trace: Any, coefficient: float, lr: float, dtype: Any) -> float:
    """The allowed |kernel param - reference param| for one element."""
    scale = max(abs(trace.param_decayed), abs(trace.param_t))
    tolerance = 4 * ulp(trace.update, dtype) + ulp(scale, dtype)
    if underflowed(trace, coefficient, lr, dtype):
        tiny = float(np.finfo(dtype).smallest_subnormal)
        factors = coefficient + abs(trace.step_size) + abs(trace.m_hat) + 2
        tolerance += tiny * factors / 2
    return tolerance


def overflowed(trace: Any, coefficient: float, dtype: Any) -> bool:
    """Whether an intermediate of either evaluation order overflowed: became
    non-finite although its operands were finite."""
    fin = math.isfinite
    r, s = kernel_intermediates(trace, coefficient, dtype)
    m_t, d = trace.m_t, trace.denominator
    return (
        (fin(m_t) and fin(trace.bias_correction) and not fin(trace.m_hat))
        or (fin(d) and d != 0 and not fin(trace.step_size))
        or (fin(trace.step_size) and fin(trace.m_hat) and not fin(trace.update))
        or (fin(m_t) and fin(d) and d != 0 and not fin(r))
        or (fin(r) and fin(coefficient) and not fin(s))
    )


def step_coefficient(t: int, lr: float, beta1: float) -> float:
    """The kernel's per-call step size, computed in double as the contract says."""
    return lr / (1.0 - beta1**t)


def check_element(
    before: tuple[float, float, float, float],
    after: tuple[float, float, float],
    t: int,
    hyper: dict[str, Any],
    dtype: Any,
) -> str | None:
    """Check one element against the reference; return a description of a breach."""
    param, grad, m, u = before
    got_param, got_m, got_u = after
    trace = adamax_trace(param, grad, m, u, t, arithmetic=arithmetic(dtype), **hyper)
    if bits(got_m, dtype) != bits(trace.m_t, dtype):
        return f"m: kernel {got_m!r} != reference {trace.m_t!r}"
    if bits(got_u, dtype) != bits(trace.u_t, dtype):
        return f"u: kernel {got_u!r} != reference {trace.u_t!r}"
    expected = trace.param_t
    coefficient = step_coefficient(t, hyper["lr"], hyper["beta1"])
    if overflowed(trace, coefficient, dtype):
        return None
    if math.isnan(expected) or math.isinf(expected):
        if bits(got_param, dtype) != bits(expected, dtype):
            return f"param: kernel {got_param!r} != reference {expected!r}"
        return None
    tolerance = theta_tolerance(trace, coefficient, hyper["lr"], dtype)
    if not abs(got_param - expected) <= tolerance:
        return (
            f"param: kernel {got_param!r} vs reference {expected!r}: "
            f"|diff| {abs(got_param - expected)!r} > tolerance {tolerance!r} "
            f"(update {trace.update!r})"
        )
    return None


def assert_contract(
    before: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    after: tuple[np.ndarray, np.ndarray, np.ndarray],
    t: int,
    hyper: dict[str, Any],
    indices: Iterable[int] | None = None,
) -> None:
    """Assert the contract for the given flat indices (all when None)."""
    dtype = after[0].dtype
    flat_before = [np.ravel(a, order="C") for a in before]
    flat_after = [np.ravel(a, order="C") for a in after]
    n = flat_after[0].size
    for i in range(n) if indices is None else indices:
        element_before = tuple(float(a[i]) for a in flat_before)
        element_after = tuple(float(a[i]) for a in flat_after)
        breach = check_element(element_before, element_after, t, hyper, dtype)  # type: ignore[arg-type]
        assert breach is None, (
            f"element {i} of {n} ({dtype}), inputs (param, grad, m, u) = {element_before}, "
            f"t={t}, {hyper}: {breach}"
        )
