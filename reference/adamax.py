"""The Adamax step, one line per formula (the documentation's algorithm page).

Written to be read beside the specification, not to be fast. Three
arithmetics are offered:

``"float64"``
    Python floats: every operation rounded to IEEE double.
``"float32"``
    Every operation rounded to IEEE single. A single ``+ - * /`` done in
    double and then rounded to single is exactly the IEEE single result, so
    rounding after each operation reproduces float32 arithmetic.
``"exact"``
    :class:`fractions.Fraction`: the true real-number result for the given
    (binary) inputs, with no rounding at all, except that for
    ``t > EXACT_POWER_STEPS`` the power ``beta1**t`` is carried to
    ``POWER_BITS`` bits (and taken as 0 below ``2**POWER_FLOOR``; see
    :func:`exact_power`): the relative error of ``1 - beta1**t``, and of
    every quantity derived from it, is then below ``2**-1900``, far below
    the resolution of any float, and the time and memory are bounded for
    every ``t < 2**63``.

The scalar coefficients beta1, 1 - beta1, beta2, eps, weight_decay and
lr * weight_decay are computed in double precision and then rounded to the
arithmetic, as the compiled kernel rounds them. The learning rate and the
bias correction ``1 - beta1**t`` are never rounded on their own: each enters
one division only (``lr / denominator`` and ``m_t / (1 - beta1**t)``), which
is computed from their double values and rounded once. (The kernel rounds the
quotient ``lr / (1 - beta1**t)``, computed in double, once per call; either
way no rounding of ``lr`` alone can lose a tiny learning rate's precision.)

Special values follow IEEE rules: division by zero gives an infinity (or NaN
for 0/0) instead of raising, ``max`` propagates NaN like ``numpy.maximum``,
and an element whose first moment and denominator are both zero is left
unchanged (the ``eps = 0`` case of the paper, where 0/0 would otherwise turn
it into NaN).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Sequence, Union

Number = Union[float, Fraction]

#: The arithmetics of :func:`adamax_trace`: IEEE double, IEEE single, exact rationals.
ARITHMETICS = ("float64", "float32", "exact")
#: Where eps goes: ``"spec"`` adds it to ``u_t``; ``"torch"`` puts it inside the max.
CONVENTIONS = ("spec", "torch")

#: The default hyperparameters: the paper's lr, beta1 and beta2, and the
#: specification's eps (the paper's Algorithm 2 has none).
DEFAULTS = {"lr": 0.002, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

#: Exact arithmetic computes ``beta1**t`` exactly up to this many steps.
EXACT_POWER_STEPS = 1024
#: Beyond, the power is carried to this many bits ...
POWER_BITS = 2100
#: ... and taken as 0 once it is below ``2**POWER_FLOOR``.
POWER_FLOOR = -2100


def to_float32(x: float) -> float:
    """Round a double to the nearest IEEE single (overflow gives an infinity)."""
    return array("f", [x])[0]


def _identity(x: Number) -> Number:
    return x


def _exact(x: Any) -> Fraction:
    if isinstance(x, float) and not math.isfinite(x):
        raise ValueError(f"exact arithmetic needs finite inputs, got {x!r}")
    return Fraction(x)


def exact_power(beta: Number, t: int) -> Fraction:
    """``beta**t`` for a binary ``0 <= beta < 1``, exact up to ``EXACT_POWER_STEPS`` steps.

    Beyond, ``beta**(2**k)`` and the partial products are truncated to
    ``POWER_BITS`` bits (relative error below ``2**(1 - POWER_BITS)`` each,
    doubled by every squaring), so the power's relative error is below
    ``(t + 64) * 2**(1 - POWER_BITS)``, less than ``2**-2030`` for any
    ``t < 2**63``; a power below ``2**POWER_FLOOR`` is taken as 0. With
    ``t > EXACT_POWER_STEPS`` and ``beta <= 1 - 2**-53`` (every double below
    1), ``1 - beta**t > 2**-43``, so ``1 - beta**t`` is within a relative
    ``2**-1900`` of the true value. The work is at most 126 products of
    numbers of ``POWER_BITS`` bits, whatever ``t``.
    """
    b = Fraction(beta)
    if t <= EXACT_POWER_STEPS or b == 0:
        return b**t
    # b = n / 2**k exactly: track a mantissa and a binary exponent.
    base, base_exp = b.numerator, -(b.denominator.bit_length() - 1)
    result, result_exp = 1, 0

    def trimmed(mantissa: int, exponent: int) -> tuple[int, int]:
        extra = mantissa.bit_length() - POWER_BITS
        return (mantissa >> extra, exponent + extra) if extra > 0 else (mantissa, exponent)

    while t:
        if t & 1:
            result, result_exp = trimmed(result * base, result_exp + base_exp)
        t >>= 1
        if t:
            base, base_exp = trimmed(base * base, 2 * base_exp)
            # Every remaining factor is at most base < 1: the power is below it.
            if base.bit_length() + base_exp < POWER_FLOOR:
                return Fraction(0)
    if result.bit_length() + result_exp < POWER_FLOOR:
        return Fraction(0)
    return Fraction(result) * Fraction(2) ** result_exp


def _is_nan(x: Number) -> bool:
    return isinstance(x, float) and math.isnan(x)


def ieee_div(a: Number, b: Number) -> Number:
    """``a / b`` with IEEE semantics: x/0 is a signed infinity and 0/0 is NaN."""
    if b != 0 or _is_nan(b):
        return a / b
    if isinstance(a, Fraction):
        raise ValueError("exact arithmetic: division by zero has no real result")
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def nan_max(a: Number, b: Number) -> Number:
    """``max`` that propagates NaN, like ``numpy.maximum``."""
    if _is_nan(a) or a > b:
        return a
    return b


@dataclass(frozen=True)
class Trace:
    """Every intermediate of one element's step, in the order of the formulas."""

    g: Number  #: the gradient after ``maximize`` and L2 weight decay
    param_decayed: Number  #: the parameter after decoupled weight decay
    m_t: Number  #: first moment
    u_t: Number  #: infinity norm
    denominator: Number  #: ``u_t + eps`` (spec) or ``u_t`` (torch)
    bias_correction: Number  #: ``1 - beta1**t``, in double (float arithmetics) or exact
    m_hat: Number  #: bias-corrected first moment ``m_t / bias_correction``, rounded once
    step_size: Number  #: ``lr / denominator``, rounded once
    update: Number  #: ``step_size * m_hat``
    param_t: Number  #: the new parameter


def adamax_trace(
    param: float,
    grad: float,
    m: float,
    u: float,
    t: int,
    lr: float = DEFAULTS["lr"],
    beta1: float = DEFAULTS["beta1"],
    beta2: float = DEFAULTS["beta2"],
    eps: float = DEFAULTS["eps"],
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    convention: str = "spec",
    arithmetic: str = "float64",
) -> Trace:
    """One scalar Adamax step, returning every intermediate.

    Parameters
    ----------
    param, grad, m, u : float
        The parameter, its gradient, the first moment and the infinity norm.
    t : int
        The step number, 1 on the first step.
    lr, beta1, beta2, eps : float
        The hyperparameters (defaults: :data:`DEFAULTS`).
    weight_decay : float
        L2 penalty added to the gradient (PyTorch), or, with
        ``decoupled_weight_decay``, the decay ``param -= lr * weight_decay * param``
        applied before the update.
    maximize : bool
        Negate the gradient (ascend instead of descend).
    convention : {"spec", "torch"}
        ``"spec"`` adds eps to ``u_t`` in the denominator (this library's specification, Keras);
        ``"torch"`` puts it inside the max (PyTorch, Optax).
    arithmetic : {"float64", "float32", "exact"}
        How every operation is rounded.

    Returns
    -------
    Trace
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic must be one of {ARITHMETICS}, got {arithmetic!r}")
    if isinstance(t, bool) or int(t) != t or not 1 <= t < 2**63:
        raise ValueError(f"t must be an integer >= 1 (and below 2**63), got {t!r}")
    t = int(t)

    if arithmetic == "exact":
        r: Callable[[Any], Number] = _identity
        num: Callable[[Any], Number] = _exact
        bias_correction_value: Number = 1 - exact_power(_exact(beta1), t)
        one_minus_beta1_value: Number = 1 - _exact(beta1)
        lr_weight_decay_value: Number = _exact(lr) * _exact(weight_decay)
        lr_value: Number = _exact(lr)
    else:
        r = to_float32 if arithmetic == "float32" else _identity
        num = lambda x: r(float(x))  # noqa: E731
        bias_correction_value = 1.0 - float(beta1) ** t
        one_minus_beta1_value = 1.0 - float(beta1)
        lr_weight_decay_value = float(lr) * float(weight_decay)
        lr_value = float(lr)

    # Inputs and scalar coefficients, rounded to the arithmetic; lr and the
    # bias correction stay as computed in double (see the module's notes).
    theta, g, m_prev, u_prev = num(param), num(grad), num(m), num(u)
    beta1_, beta2_, eps_ = num(beta1), num(beta2), num(eps)
    weight_decay_ = num(weight_decay)
    one_minus_beta1 = r(one_minus_beta1_value)
    lr_weight_decay = r(lr_weight_decay_value)
    bias_correction = bias_correction_value

    # Options (PyTorch's order: maximize first, then L2 weight decay).
    if maximize:
        g = -g
    if weight_decay != 0 and not decoupled_weight_decay:
        g = r(g + r(weight_decay_ * theta))
    if weight_decay != 0 and decoupled_weight_decay:
        theta = r(theta - r(lr_weight_decay * theta))

    # 1. First moment (as in Adam).
    m_t = r(r(beta1_ * m_prev) + r(one_minus_beta1 * g))
    # 2. Infinity norm; the conventions differ in where eps goes.
    if convention == "spec":
        u_t = nan_max(r(beta2_ * u_prev), abs(g))
        denominator = r(u_t + eps_)
    else:
        u_t = nan_max(r(beta2_ * u_prev), r(abs(g) + eps_))
        denominator = u_t
    # 3. Bias-corrected update of the parameter.
    m_hat = r(ieee_div(m_t, bias_correction))
    if m_t == 0 and denominator == 0:
        # Only possible with eps = 0 and no gradient yet: nothing to learn
        # from, so the parameter is left unchanged instead of 0/0 = NaN.
        step_size = update = m_t - m_t
    else:
        step_size = r(ieee_div(lr_value, denominator))
        update = r(step_size * m_hat)
    param_t = r(theta - update)

    return Trace(
        g=g,
        param_decayed=theta,
        m_t=m_t,
        u_t=u_t,
        denominator=denominator,
        bias_correction=bias_correction,
        m_hat=m_hat,
        step_size=step_size,
        update=update,
        param_t=param_t,
    )


def _is_sequence(x: Any) -> bool:
    """A flat sequence of numbers (a list, a tuple, a 1-D array), not one number."""
    if isinstance(x, (str, bytes)) or getattr(x, "ndim", None) == 0:
        return False
    try:
        iter(x)
    except TypeError:
        return False
    return True


def adamax_step(
    param: Union[float, Sequence[float]],
    grad: Union[float, Sequence[float]],
    m: Union[float, Sequence[float]],
    u: Union[float, Sequence[float]],
    t: int,
    lr: float = DEFAULTS["lr"],
    beta1: float = DEFAULTS["beta1"],
    beta2: float = DEFAULTS["beta2"],
    eps: float = DEFAULTS["eps"],
    **options: Any,
) -> tuple[Any, Any, Any]:
    """The spec's function: the new ``(param, m, u)``.

    Scalars give scalars; flat sequences of equal length (lists, tuples,
    1-D arrays) are updated element by element and give lists. ``options`` are those of :func:`adamax_trace`.

    Examples
    --------
    >>> adamax_step(1.0, 0.1, 0.0, 0.0, 1)
    (0.9980000002, 0.009999999999999998, 0.1)
    """
    if not _is_sequence(param):
        tr = adamax_trace(param, grad, m, u, t, lr, beta1, beta2, eps, **options)  # type: ignore[arg-type]
        return tr.param_t, tr.m_t, tr.u_t
    sequences = tuple(list(s) for s in (param, grad, m, u))  # type: ignore[arg-type]
    if len({len(s) for s in sequences}) != 1:
        raise ValueError("param, grad, m and u must have the same length")
    traces = [
        adamax_trace(p, g, mi, ui, t, lr, beta1, beta2, eps, **options)
        for p, g, mi, ui in zip(*sequences)  # type: ignore[call-overload]
    ]
    return (
        [tr.param_t for tr in traces],
        [tr.m_t for tr in traces],
        [tr.u_t for tr in traces],
    )
