"""The arithmetic contract: how close a step's ``(θ, m, u)`` must be to the reference's.

This module is the one definition of the contract that the conformance
harness (:mod:`adamax_cy.testing`), the command line's ``examples`` and the
test suite apply; ``docs/contract.rst`` states it in words. It needs NumPy
only, and judges results against reference traces handed to it (objects with
the fields of :class:`adamax_cy.reference.Trace`), so that it never imports
the reference itself.

For one element, with the reference computed in the dtype's arithmetic:

- ``m_t`` and ``u_t`` equal the reference's bit for bit (NaN matches NaN,
  the sign of zero counts), or, with a widened :class:`Tolerance`, are within
  that many ulps of the formula's largest term.
- ``θ_t`` is within ``1 ulp(θ) + 4 ulp(Δ)`` of the reference's, with ``Δ``
  the reference's update and ``ulp(θ)`` taken at the larger of the old and
  the new parameter, plus:

  * the subnormal allowance: for each intermediate ``X`` of the listed
    evaluation orders (:func:`intermediates`) whose value lies below the
    normal range, ``tiny * |Δ / X|`` (``tiny`` the smallest subnormal), the
    most that ``X``'s absolute rounding error can become in ``Δ``;
  * with a widened tolerance, the first-order effect of the tolerated
    differences in ``m_t`` and ``u_t``.
- The overflow exemption: an element where one of those intermediates, or
  the reference's ``θ_t``, overflows from finite operands has no ``θ``
  bound (the two orders may give inf or NaN where the other stays finite).
- Non-finite results: where the reference's ``θ_t`` is NaN or infinite, the
  step's must be the same (NaN for NaN, the same infinity), except that an
  infinite ``m_t`` times a step size that underflowed to zero (``lr > 0``)
  is NaN in one order and an infinity in the other: there NaN and
  ``θ − sign(m_t)·∞`` are both accepted.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Optional

import numpy as np

from ._defaults import BETA1, LR

__all__ = [
    "Breach",
    "TOLERANCES",
    "Tolerance",
    "check_element",
    "first_breach",
    "intermediates",
    "overflowed",
    "step_size",
    "theta_allowance",
    "ulp",
]

#: The outputs in the specification's order: the first wrong one is reported.
OUTPUTS = ("m", "u", "θ")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far an output may be from the reference, in ulps of the dtype.

    Parameters
    ----------
    m : float
        Ulps of the larger term of formula 1 (``|β1·m|``, ``|(1 − β1)·g|``
        or ``|m_t|``): an implementation that sums the terms in another order
        (``torch.lerp``) is off by a few of these, not of ``ulp(m_t)``, which
        cancellation can make arbitrarily small. With L2 weight decay,
        ``g = grad + λ·θ`` is itself a sum, and ``|g|`` counts as
        ``max(|grad|, |λ·θ|)`` (so a fused multiply-add there costs ulps of
        its terms, not of a cancelled ``g``). 0 means bit for bit.
    u : float
        Ulps of ``max(u_t, |g|)``, ``|g|`` counted as for ``m``; without
        weight decay this is ``ulp(u_t)``. 0 means bit for bit.
    param, update : float
        ``θ_t`` may differ by ``param·ulp(θ) + update·ulp(Δ)``, where ``Δ``
        is the reference's update ``(α / denominator)·m̂`` and ``θ`` the
        larger of the old and the new parameter, plus the subnormal
        allowance of the contract. When ``m_t`` or ``u_t`` differ (within
        their tolerance), the difference they make to ``θ_t`` to first order
        is allowed on top, so that ``θ`` is judged on formula 3 alone.

    Examples
    --------
    >>> TOLERANCES["float32"]
    Tolerance(m=0, u=0, param=1, update=4)
    >>> TOLERANCES["float32"].widen(m=2)
    Tolerance(m=2, u=0, param=1, update=4)
    """

    m: float = 0
    u: float = 0
    param: float = 1
    update: float = 4

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"tolerance {field.name} must be a number of ulps >= 0, got {value!r}")

    def widen(self, **ulps: float) -> "Tolerance":
        """A copy with some fields widened; narrowing raises ``ValueError``."""
        for name, value in ulps.items():
            if not hasattr(self, name):
                raise TypeError(f"unknown tolerance field {name!r}; fields are m, u, param, update")
            if value < getattr(self, name):
                raise ValueError(
                    f"widen() cannot narrow {name} from {getattr(self, name)} to {value} ulps; "
                    "pass a Tolerance to use a tighter one"
                )
        return dataclasses.replace(self, **ulps)

    def describe(self) -> str:
        return (
            f"m {self.m:g} ulp, u {self.u:g} ulp, "
            f"θ {self.param:g}·ulp(θ) + {self.update:g}·ulp(update)"
        )


#: The arithmetic contract of adamax_cy, per dtype: the default tolerance.
TOLERANCES: Mapping[str, Tolerance] = MappingProxyType(
    {"float32": Tolerance(), "float64": Tolerance()}
)


@dataclasses.dataclass(frozen=True)
class Breach:
    """An output outside the contract: which (``"m"``, ``"u"``, ``"θ"``), where, and why."""

    output: str
    element: int
    detail: str


def step_size(t: int, lr: float, beta1: float) -> float:
    """``c = lr / (1 − beta1**t)`` in double: the step size the contract rounds once per call."""
    with np.errstate(all="ignore"):
        return float(lr) / (1.0 - float(beta1) ** t) if lr else 0.0


def ulp(x: float, dtype: Any) -> float:
    """The spacing of ``dtype`` numbers at ``|x|`` (the largest finite one's above it)."""
    finfo = np.finfo(dtype)
    magnitude = min(abs(x), float(finfo.max)) if math.isfinite(x) else float(finfo.max)
    return float(np.spacing(np.dtype(dtype).type(magnitude)))


def _bits(x: float, dtype: Any) -> int:
    if math.isnan(x):
        return -1  # every NaN is the same NaN for the contract
    fmt = "<f" if np.dtype(dtype) == np.float32 else "<d"
    return int.from_bytes(struct.pack(fmt, x), "little")


def _identical(a: float, b: float, dtype: Any) -> bool:
    return _bits(a, dtype) == _bits(b, dtype)


def _rounded(x: float, dtype: Any) -> float:
    with np.errstate(all="ignore"):
        return float(np.asarray(x, dtype=dtype))


def _quotient(a: float, b: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def _product(a: float, b: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float64(a) * np.float64(b))


def intermediates(trace: Any, t: int, hyper: Mapping[str, Any]) -> list[tuple[str, float, tuple[float, ...], float]]:
    """The intermediates of formula 3 in the evaluation orders the contract allows.

    Each is ``(name, value, operands, weight)``: its value computed in double
    from the reference's ``m_t``, denominator ``d`` and bias correction, the
    operands it is computed from, and ``|Δ / value|``, the factor by which an
    absolute error in it reaches the update. The orders are the reference's
    ``(α/d)·(m_t/(1 − β1^t))``, the kernel's ``c·(m_t/d)`` with
    ``c = α/(1 − β1^t)``, and ``(c·m_t)/d``.
    """
    lr = float(hyper.get("lr", LR))
    c = step_size(t, lr, float(hyper.get("beta1", BETA1)))
    m_t, d, bc = float(trace.m_t), float(trace.denominator), float(trace.bias_correction)
    r = _quotient(m_t, d)
    m_hat = _quotient(m_t, bc)
    alpha_d = _quotient(lr, d)
    c_m = _product(c, m_t)
    update = float(trace.update)
    return [
        ("c = α/(1 − β1^t)", c, (lr, bc), abs(r)),
        ("m_t/d", r, (m_t, d), abs(c)),
        ("m̂ = m_t/(1 − β1^t)", m_hat, (m_t, bc), abs(alpha_d)),
        ("α/d", alpha_d, (lr, d), abs(m_hat)),
        ("c·m_t", c_m, (c, m_t), abs(_quotient(1.0, d))),
        ("Δ", update, (alpha_d, m_hat), 1.0),
    ]


def overflowed(trace: Any, t: int, hyper: Mapping[str, Any], dtype: Any, _inter: Optional[list[Any]] = None) -> bool:
    """Whether an intermediate of an allowed order, or ``θ_t``, overflowed from finite operands."""
    for _, value, operands, _ in _inter or intermediates(trace, t, hyper):
        if all(math.isfinite(o) for o in operands) and not math.isfinite(_rounded(value, dtype)):
            return True
    theta, update = float(trace.param_decayed), float(trace.update)
    return math.isfinite(theta) and math.isfinite(update) and not math.isfinite(float(trace.param_t))


def _subnormal_allowance(trace: Any, t: int, hyper: Mapping[str, Any], dtype: Any,
                         inter: Optional[list[Any]] = None) -> float:
    normal = float(np.finfo(dtype).tiny)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    allowance = 0.0
    for _, value, operands, weight in inter or intermediates(trace, t, hyper):
        below = 0 < abs(value) < normal or (value == 0 and all(o != 0 for o in operands))
        if below and all(math.isfinite(o) for o in operands):
            allowance += tiny * weight
    return allowance


def theta_allowance(
    trace: Any,
    t: int,
    hyper: Mapping[str, Any],
    dtype: Any,
    tolerance: Optional[Tolerance] = None,
    dm: float = 0.0,
    du: float = 0.0,
    _inter: Optional[list[Any]] = None,
) -> float:
    """The allowed ``|θ_t − reference θ_t|`` for one element with a finite reference ``θ_t``.

    ``dm`` and ``du`` are the (tolerated) differences of the step's ``m_t``
    and ``u_t`` from the reference's, whose first-order effect is added.
    """
    tol = tolerance or TOLERANCES[str(np.dtype(dtype))]
    theta = max(abs(float(trace.param_decayed)), abs(float(trace.param_t)))
    allowed = tol.param * ulp(theta, dtype) + tol.update * ulp(float(trace.update), dtype)
    allowed += _subnormal_allowance(trace, t, hyper, dtype, _inter)
    with np.errstate(all="ignore"):
        if dm:
            allowed += abs(float(trace.step_size) * dm / float(trace.bias_correction))
        if du:
            allowed += abs(float(trace.update) * du / float(trace.denominator))
    return allowed if allowed == allowed else math.inf


def _zero_times_infinity(trace: Any, t: int, hyper: Mapping[str, Any], dtype: Any) -> bool:
    """An infinite ``m_t`` met a step size that underflowed to zero in one of the orders."""
    lr = float(hyper.get("lr", LR))
    d = float(trace.denominator)
    if not (math.isinf(float(trace.m_t)) and lr > 0 and math.isfinite(d) and d != 0):
        return False
    c = _rounded(step_size(t, lr, float(hyper.get("beta1", BETA1))), dtype)
    return c == 0 or float(trace.step_size) == 0


def _term_scale(trace: Any, before: Sequence[float], hyper: Mapping[str, Any]) -> float:
    """``|g|`` counted as its terms: grad and, with L2 weight decay, ``λ·θ``."""
    param, grad = before[0], before[1]
    l2 = 0.0 if hyper.get("decoupled_weight_decay") else float(hyper.get("weight_decay", 0.0))
    with np.errstate(all="ignore"):
        return max(abs(grad), abs(_product(l2, param)), abs(float(trace.g)))


def _check_moment(
    name: str, got: float, want: float, scale: float, ulps: float, dtype: Any
) -> tuple[Optional[str], float]:
    """``(detail of a breach or None, the tolerated difference)`` for ``m_t`` or ``u_t``."""
    if _identical(got, want, dtype):
        return None, 0.0
    if ulps == 0:
        return f"{name} is {got!r}, the reference gives {want!r} (bit for bit equality required)", 0.0
    diff = abs(got - want)
    unit = ulp(scale, dtype)
    if math.isfinite(got) and math.isfinite(want) and diff <= ulps * unit:
        return None, diff
    n = diff / unit if math.isfinite(diff) else math.inf
    terms = " of the formula's terms" if name == "m" else ""
    return f"{name} is {got!r}, the reference gives {want!r} ({n:.3g} ulp{terms}; tolerance {ulps:g})", 0.0


def check_element(
    trace: Any,
    before: Sequence[float],
    after: Sequence[float],
    t: int,
    hyper: Mapping[str, Any],
    dtype: Any,
    tolerance: Optional[Tolerance] = None,
) -> Optional[tuple[str, str]]:
    """Check one element; ``(output, detail)`` of the first breach, or ``None``.

    Parameters
    ----------
    trace : adamax_cy.reference.Trace
        The reference's step for this element, in the dtype's arithmetic.
    before : (param, grad, m, u)
        The element's inputs.
    after : (param, m, u)
        The step's results for it.
    t : int
        The step number.
    hyper : mapping
        The step's keywords (``lr`` and ``beta1`` when not the defaults;
        ``weight_decay`` and ``decoupled_weight_decay`` when used).
    dtype : numpy dtype
    tolerance : Tolerance, optional
        ``TOLERANCES[dtype]`` (the contract) when ``None``.
    """
    tol = tolerance or TOLERANCES[str(np.dtype(dtype))]
    got_theta, got_m, got_u = (float(x) for x in after)
    beta1 = float(hyper.get("beta1", BETA1))
    g_scale = _term_scale(trace, before, hyper)
    with np.errstate(all="ignore"):
        m_scale = max(abs(beta1 * before[2]), abs(1 - beta1) * g_scale, abs(float(trace.m_t)))
    detail, dm = _check_moment("m", got_m, float(trace.m_t), m_scale, tol.m, dtype)
    if detail is not None:
        return "m", detail
    u_scale = max(abs(float(trace.u_t)), g_scale)
    detail, du = _check_moment("u", got_u, float(trace.u_t), u_scale, tol.u, dtype)
    if detail is not None:
        return "u", detail
    detail = _check_theta(trace, got_theta, t, hyper, dtype, tol, dm, du)
    return None if detail is None else ("θ", detail)


def _check_theta(
    trace: Any, got: float, t: int, hyper: Mapping[str, Any], dtype: Any,
    tol: Tolerance, dm: float, du: float,
) -> Optional[str]:
    want = float(trace.param_t)
    if _identical(got, want, dtype) or got == want:
        return None
    inter = intermediates(trace, t, hyper)
    if overflowed(trace, t, hyper, dtype, inter):
        return None
    if not math.isfinite(want):
        if _zero_times_infinity(trace, t, hyper, dtype):
            with np.errstate(all="ignore"):
                other = float(np.float64(trace.param_decayed) - math.copysign(math.inf, float(trace.m_t)))
            if math.isnan(got) or _identical(got, other, dtype):
                return None
        return f"θ is {got!r}, the reference gives {want!r}"
    if not math.isfinite(got):
        return f"θ is {got!r}, the reference gives {want!r}"
    update = float(trace.update)
    allowed = theta_allowance(trace, t, hyper, dtype, tol, dm, du, inter)
    if abs(got - want) <= allowed:
        return None
    return (
        f"θ is {got!r}, the reference gives {want!r} (off by {abs(got - want):.3g}; "
        f"allowed {allowed:.3g} = {tol.param:g}·ulp(θ) + {tol.update:g}·ulp(update {update:.3g})"
        + (" + the effect of m and u's tolerated differences)" if dm or du else ")")
    )


def first_breach(
    traces: Sequence[Any],
    before: Sequence[Any],
    after: Sequence[Any],
    t: int,
    hyper: Mapping[str, Any],
    tolerance: Optional[Tolerance] = None,
) -> Optional[Breach]:
    """The first output (in the order ``m``, ``u``, ``θ``) outside the contract, or ``None``.

    Parameters
    ----------
    traces : sequence of adamax_cy.reference.Trace
        The reference's step for each element, in C order, computed in the
        arithmetic of the arrays' dtype.
    before : (param, grad, m, u)
        The step's inputs (arrays of one dtype, or scalars).
    after : (param, m, u)
        The step's results.
    t, hyper, tolerance
        As for :func:`check_element`.

    Examples
    --------
    >>> import numpy as np
    >>> from adamax_cy import adamax_step, reference
    >>> before = (1.0, 0.1, 0.0, 0.0)
    >>> after = adamax_step(*before, 1)
    >>> traces = [reference.adamax_trace(*before, 1)]
    >>> first_breach(traces, before, after, 1, {}) is None
    True
    >>> first_breach(traces, before, (0.99, after[1], after[2]), 1, {}).output
    'θ'
    """
    after_arrays = [np.asarray(a) for a in after]
    dtype = after_arrays[0].dtype if after_arrays[0].dtype in (np.float32, np.float64) else np.dtype(np.float64)
    columns_before = [np.ravel(np.asarray(a, dtype=dtype)).tolist() for a in before]
    columns_after = [np.ravel(a).tolist() for a in after_arrays]
    found: list[tuple[int, int, str]] = []
    for i, trace in enumerate(traces):
        breach = check_element(trace, [c[i] for c in columns_before], [c[i] for c in columns_after],
                               t, hyper, dtype, tolerance)
        if breach is not None:
            found.append((OUTPUTS.index(breach[0]), i, breach[1]))
    if not found:
        return None
    order, i, detail = min(found, key=lambda f: (f[0], f[1]))
    return Breach(OUTPUTS[order], i, detail)
