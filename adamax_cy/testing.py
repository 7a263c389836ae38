"""Conformance testing for anyone's Adamax step, against :mod:`adamax_cy.reference`.

Hand :func:`check_conformance` an Adamax step (a function, an in-place
function or a ``torch.optim``-style optimizer class) and it runs the spec's
worked examples, then hypothesis-generated cases (scalars, arrays, multi-step
trajectories, special values, the hyperparameter ranges), comparing every
output with the reference. A failure is shrunk to the smallest failing case
and reported with the expected and actual ``(θ, m, u)`` and the formula whose
output first differs:

- ``m``: formula 1, ``m_t = β1·m + (1 − β1)·g``;
- ``u``: formula 2, ``u_t = max(β2·u, |g|)`` (``|g| + ε`` for ``"torch"``);
- ``θ``: formula 3, ``θ_t = θ − (α / (u_t + ε))·m_t / (1 − β1^t)``
  (denominator ``u_t`` for ``"torch"``).

Every step is compared from the state the implementation itself produced
(lockstep), so a difference is caught at the step and in the formula where it
arises instead of after it has spread.

Tolerances are stated in ulps of the dtype under test (:class:`Tolerance`);
the default, :data:`TOLERANCES`, is the arithmetic contract of ``adamax_cy``
(``m`` and ``u`` bitwise, ``θ`` within ``1·ulp(θ) + 4·ulp(update)``). They are
widened only when the caller asks, and the report says so.

This module needs hypothesis (``pip install "adamax_cy[testing]"``);
``import adamax_cy`` does not import it. In a pytest suite, conformance takes
three lines::

    pytest_plugins = ["adamax_cy.testing"]          # in conftest.py

    def test_my_adamax(adamax_conformance):
        adamax_conformance(my_adamax, convention="torch")

From the shell: ``python -m adamax_cy conform package.module:function``.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Callable, Optional

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from . import reference
from ._defaults import BETA1, BETA2, CONVENTIONS, DEFAULTS, EPS, LR

try:  # the fixture is defined only where pytest is installed
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

__all__ = [
    "TOLERANCES",
    "TORCH_TOLERANCES",
    "Adapter",
    "Case",
    "ConformanceReport",
    "Mismatch",
    "Tolerance",
    "adamax_conformance",
    "assert_conforms",
    "cases",
    "check_conformance",
    "functional",
    "in_place",
    "optimizer",
]

DTYPES = ("float32", "float64")
HYPERPARAMETERS = ("lr", "beta1", "beta2", "eps")
#: Options beyond the four hyperparameters that cases may vary (``vary=``).
OPTIONS = ("weight_decay", "decoupled_weight_decay", "maximize")
FORMULAS = {
    "m": "formula 1, m_t = β1·m + (1 − β1)·g",
    "u": "formula 2, u_t = max(β2·u, |g|)",
    "θ": "formula 3, θ_t = θ − (α / (u_t + ε))·m_t / (1 − β1^t)",
}
_TORCH_FORMULAS = {
    "u": "formula 2, u_t = max(β2·u, |g| + ε) (torch convention)",
    "θ": "formula 3, θ_t = θ − (α / u_t)·m_t / (1 − β1^t) (torch convention)",
}


# ---------------------------------------------------------------- tolerances


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
        its terms, not of a cancelled ``g``).
    u : float
        Ulps of ``max(u_t, |g|)``, ``|g|`` counted as for ``m``; without
        weight decay this is ``ulp(u_t)``.
    param, update : float
        ``θ_t`` may differ by ``param·ulp(θ_t) + update·ulp(update)``, where
        ``update`` is the reference's ``(α / denominator)·m̂``. When ``m_t``
        or ``u_t`` differ (within their tolerance), the difference they make
        to ``θ_t`` to first order is allowed on top, so that ``θ`` is judged
        on formula 3 alone.

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


#: How far ``torch.optim.Adamax`` (CPU, torch 2.13) may be from the reference
#: in the torch convention, per dtype, for ``beta1 >= 0.5``: the worst cases
#: of a rounding-error count, in the units of :class:`Tolerance` (ulps of the
#: largest term ``S`` of formula 1 for ``m``; of ``max(u_t, |g|)`` for ``u``).
#:
#: - ``m``: torch computes ``exp_avg.lerp_(grad, 1 - beta1)``, that is
#:   ``m + w·(g − m)`` with ``w = 1 − β1``, instead of ``β1·m + w·g``. The
#:   spec's sum rounds three times, each within ½·ulp(S): 1.5. lerp rounds
#:   ``g − m``, whose error ``w`` carries at up to 2·ulp(S), the product
#:   (``|w·(g − m)| ≤ 2·S``) at up to 1, and the sum at ½: 3.5. With weight
#:   decay torch forms ``g + λ·θ`` with a fused multiply-add, one rounding
#:   where the spec has two: ``g`` differs by up to ``1.5·ulp(max(|g|, |λ·θ|))``,
#:   which ``w`` carries into ``m`` as up to 3·ulp(S). In float32 the two
#:   coefficients are rounded apart, ``(1 − f32(w)) − f32(β1) ≠ 0``: up to
#:   1.5 more. Total: 8 (float64), 9.5 (float32).
#: - ``u``: the same operations (``β2·u``, ``|g| + ε``, the max), except for
#:   the fused weight decay: 1.5·ulp in ``g``, plus the rounding of
#:   ``|g| + ε`` on each side: 2.5. Without weight decay ``u`` is bitwise equal.
#: - ``θ``: torch's ``addcdiv_(m, u, value=-lr/(1 − β1^t))`` rounds three
#:   times, the reference four: within the contract's
#:   ``1·ulp(θ) + 4·ulp(update)`` (plus, as always, the effect of the
#:   differences in ``m`` and ``u``).
#:
#: Measured (thousands of generated cases and 150-step runs, weight decay and
#: maximize, foreach off and on): ``m`` up to 3 ulps (2 without weight
#: decay), ``u`` up to 1 (0 without), ``θ`` within 2·ulp(update) beyond
#: 1·ulp(θ). For ``beta1 < 0.5`` lerp switches to ``g − (g − m)·(1 − w)``,
#: where ``1 − w`` recomputed in the dtype carries ``β1`` only to about
#: ``ulp(1)/β1`` relative accuracy (``beta1 = 1e-5`` in float32: 0.1 %), so
#: no ulp bound holds there; and from an infinite ``m`` lerp gives NaN
#: (``inf + w·(g − inf)``) where the spec keeps ``inf``.
TORCH_TOLERANCES: Mapping[str, Tolerance] = MappingProxyType(
    {"float32": Tolerance(m=9.5, u=2.5), "float64": Tolerance(m=8, u=2.5)}
)


def _ulp(x: float, dtype: np.dtype) -> float:
    """The spacing of ``dtype`` numbers at ``|x|`` (the largest finite one's above it)."""
    finfo = np.finfo(dtype)
    magnitude = min(abs(x), float(finfo.max)) if math.isfinite(x) else float(finfo.max)
    return float(np.spacing(dtype.type(magnitude)))


def _update_ulp(tr: reference.Trace, hyper: Mapping[str, Any], dtype: np.dtype) -> float:
    """``ulp(update)``, floored where a subnormal quotient sets the precision.

    The first product or quotient of formula 3 (``m_t / (1 − β1^t)``,
    ``m_t / denominator`` or ``α/(1 − β1^t)·m_t``) may fall in the subnormal
    range, where it keeps only an absolute precision of ``ulp(0)``; the
    operation that follows scales that by ``α / denominator``,
    ``α / (1 − β1^t)`` or ``1 / denominator``. Without the floor, a correct
    implementation that takes another order would fail for tiny gradients.
    """
    tiny = float(np.finfo(dtype).smallest_subnormal)
    lr = float(hyper["lr"])
    factors = [abs(float(tr.step_size))]
    if float(tr.bias_correction) != 0:
        factors.append(abs(lr / float(tr.bias_correction)))
    if float(tr.denominator) != 0:
        factors.append(1.0 / abs(float(tr.denominator)))
    floor = tiny * max(factors) if all(math.isfinite(f) for f in factors) else 0.0
    return max(_ulp(float(tr.update), dtype), floor)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


# --------------------------------------------------------------------- cases


@dataclasses.dataclass(frozen=True)
class Case:
    """Steps to run from a starting state: what an implementation is given.

    ``param``, ``m`` and ``u`` are arrays of the dtype under test (0-d for a
    scalar case); ``grads`` holds one gradient per step, the first at step
    number ``t``; ``hyperparameters`` are passed as keywords on every step.
    """

    param: np.ndarray
    m: np.ndarray
    u: np.ndarray
    t: int
    grads: tuple[np.ndarray, ...]
    hyperparameters: Mapping[str, Any]
    label: str = "generated case"

    @property
    def scalar(self) -> bool:
        return self.param.ndim == 0

    @property
    def dtype(self) -> np.dtype:
        return self.param.dtype

    def describe(self) -> str:
        def show(a: np.ndarray) -> str:
            return repr(a.tolist())

        grads = ", ".join(show(g) for g in self.grads)
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return (
            f"{self.label} ({self.dtype}, {len(self.grads)} step(s) from t={self.t}):\n"
            f"    param={show(self.param)}, m={show(self.m)}, u={show(self.u)}, t={self.t}\n"
            f"    grads per step: [{grads}]\n"
            f"    {hyper}"
        )


def _values(dtype: str, low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, width=32 if dtype == "float32" else 64)


def _specials(dtype: str, nonfinite: bool) -> st.SearchStrategy[float]:
    tiny = float(np.finfo(dtype).smallest_subnormal)
    return st.sampled_from([0.0, -0.0, tiny, -tiny] + ([math.nan, math.inf, -math.inf] if nonfinite else []))


@st.composite
def cases(
    draw: Callable[[st.SearchStrategy[Any]], Any],
    dtype: str = "float64",
    fixed: Optional[Mapping[str, Any]] = None,
    vary: Sequence[str] = (),
    nonfinite: bool = True,
) -> Case:
    """A hypothesis strategy for :class:`Case`.

    Parameters
    ----------
    dtype : {"float64", "float32"}
    fixed : mapping, optional
        Hyperparameters and options held fixed; the hyperparameters not
        given here are drawn from their ranges.
    vary : sequence of str
        Options (from ``weight_decay``, ``decoupled_weight_decay``,
        ``maximize``) to draw as well; the others are not passed at all.
    nonfinite : bool
        Whether special values include infinities and NaN (signed zeros and
        subnormals always do).
    """
    fixed = dict(fixed or {})
    kind = draw(st.sampled_from(["scalar", "array", "trajectory", "special"]))
    shape: tuple[int, ...] = () if kind == "scalar" else (draw(st.integers(1, 6)),)
    size = int(np.prod(shape, dtype=int))
    steps = draw(st.integers(2, 8)) if kind == "trajectory" else draw(st.integers(1, 2))
    finite = _values(dtype, -1e4, 1e4)
    specials = _specials(dtype, nonfinite)
    grad_values = st.one_of(finite, specials) if kind == "special" else finite

    def array(elements: st.SearchStrategy[float]) -> np.ndarray:
        return np.array(draw(st.lists(elements, min_size=size, max_size=size)), dtype=dtype).reshape(shape)

    hyper: dict[str, Any] = {}
    ranges = {
        "lr": st.one_of(st.just(LR), st.floats(1e-6, 1.0)),
        "beta1": st.one_of(st.just(BETA1), st.sampled_from([0.0, 0.5, 0.99]), st.floats(0.0, 0.9999)),
        "beta2": st.one_of(st.just(BETA2), st.sampled_from([0.0, 0.5, 0.9]), st.floats(0.0, 0.9999)),
        "eps": st.one_of(st.just(EPS), st.floats(1e-12, 1e-2)),
    }
    for name in HYPERPARAMETERS:
        hyper[name] = fixed.pop(name) if name in fixed else draw(ranges[name])
    for name in vary:
        if name == "weight_decay":
            hyper[name] = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.1)))
        else:
            hyper[name] = draw(st.booleans())
    hyper.update(fixed)

    later = draw(st.booleans())  # shrinks to False: the fresh state is the simpler case
    if not later:
        t = 1
        m = np.zeros(shape, dtype=dtype)
        u = np.zeros(shape, dtype=dtype)
    else:
        t = draw(st.one_of(st.integers(1, 20), st.integers(1, 10**6)))
        m = array(finite)
        u = np.array(np.abs(array(finite)))  # np.abs gives a scalar for a 0-d array
    param = array(st.one_of(finite, specials) if kind == "special" else finite)
    grads = tuple(array(grad_values) for _ in range(steps))
    return Case(param=param, m=m, u=u, t=t, grads=grads, hyperparameters=MappingProxyType(hyper))


def _edge_cases(dtype: str, fixed: Mapping[str, Any], nonfinite: bool) -> list[Case]:
    """Scalar steps on the values that separate implementations, run before the search.

    Each special gradient (negative, signed zeros, the smallest subnormal,
    infinities, NaN) is tried from the fresh state and from a later one, and
    followed by an ordinary step (what does the state it left do next?).
    """
    hyper = MappingProxyType({"lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS, **fixed})
    tiny = float(np.finfo(dtype).smallest_subnormal)
    out = []
    specials = (math.inf, -math.inf, math.nan) if nonfinite else ()
    for grad in (-0.5, 0.0, -0.0, tiny, -tiny, *specials):
        for t, m, u, grads in ((1, 0.0, 0.0, [grad]), (3, -0.25, 0.75, [grad]), (1, 0.0, 0.0, [grad, 0.25])):
            out.append(Case(
                param=np.array(1.5, dtype=dtype), m=np.array(m, dtype=dtype),
                u=np.array(u, dtype=dtype), t=t, grads=tuple(np.array(g, dtype=dtype) for g in grads),
                hyperparameters=hyper, label="edge case",
            ))
    return out


def _worked_examples(dtype: str, fixed: Mapping[str, Any]) -> list[tuple[Case, Any]]:
    hyper = {"lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS, **fixed}
    out = []
    for ex in reference.WORKED_EXAMPLES:
        arrays = [np.array(x, dtype=dtype) for x in (ex.param, ex.grad, ex.m, ex.u)]
        case = Case(
            param=arrays[0],
            m=arrays[2],
            u=arrays[3],
            t=ex.t,
            grads=(arrays[1],),
            hyperparameters=MappingProxyType(hyper),
            label=f"worked example {ex.number}",
        )
        out.append((case, ex))
    return out


# ------------------------------------------------------------------ adapters


Triple = tuple[np.ndarray, np.ndarray, np.ndarray]


class Adapter:
    """Runs an implementation on a :class:`Case`, one step at a time.

    Subclasses implement :meth:`steps`, a generator yielding the
    implementation's ``(param, m, u)`` after each step. ``name`` appears in
    reports. An adapter may raise :class:`UnsupportedCase` for a case its
    implementation cannot express (it is then reported, not skipped).
    """

    name = "implementation"

    def steps(self, case: Case) -> Iterator[Triple]:
        raise NotImplementedError


class _FunctionAdapter(Adapter):
    """An adapter around one step function, with renamed and fixed keywords."""

    def __init__(self, fn: Callable[..., Any], *, rename: Optional[Mapping[str, str]] = None,
                 name: Optional[str] = None, **keywords: Any) -> None:
        self.fn = fn
        self.rename = dict(rename or {})
        self.keywords = keywords
        self.name = name or _name(fn)



def _keywords(hyper: Mapping[str, Any], rename: Mapping[str, str]) -> dict[str, Any]:
    return {rename.get(k, k): v for k, v in hyper.items()}


def _name(fn: Any) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qualname}" if module else qualname


def _as_output(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a tensor
        x = x.detach().cpu().numpy()
    return np.array(x, copy=True)


class functional(_FunctionAdapter):
    """Adapter for ``fn(param, grad, m, u, t, lr=, beta1=, beta2=, eps=, **options) -> (param, m, u)``.

    Scalar float64 cases pass Python floats; float32 scalars pass 0-d
    float32 arrays (a Python float cannot hold a float32). The inputs must
    be left untouched. ``rename`` maps our keyword names to the function's
    (for example ``{"lr": "learning_rate"}``); other ``keywords`` are passed
    on every call as they are (for example ``convention="torch"``).

    Examples
    --------
    >>> import adamax_cy
    >>> adapter = functional(adamax_cy.adamax_step)
    >>> adapter.name
    'adamax_cy.api.adamax_step'
    """

    def steps(self, case: Case) -> Iterator[Triple]:
        kw = {**_keywords(case.hyperparameters, self.rename), **self.keywords}
        param, m, u = case.param, case.m, case.u
        for k, grad in enumerate(case.grads):
            inputs = [param, grad, m, u]
            if case.scalar and case.dtype == np.float64:
                args: list[Any] = [float(a) for a in inputs]
            else:
                args = [a.copy() for a in inputs]
            out = self.fn(*args, case.t + k, **kw)
            for before, given_ in zip(inputs, args):
                if isinstance(given_, np.ndarray) and not np.array_equal(before, given_, equal_nan=True):
                    raise _InputModified("a functional step modified its input arrays")
            param, m, u = (_as_output(x) for x in out)
            yield param, m, u


class in_place(_FunctionAdapter):
    """Adapter for ``fn(param, grad, m, u, t, lr=, ...) -> None`` updating the arrays in place.

    Scalar cases pass 0-d arrays; ``rename`` and ``keywords`` are as for
    :class:`functional`.
    """

    def steps(self, case: Case) -> Iterator[Triple]:
        kw = {**_keywords(case.hyperparameters, self.rename), **self.keywords}
        param, m, u = case.param.copy(), case.m.copy(), case.u.copy()
        for k, grad in enumerate(case.grads):
            self.fn(param, grad.copy(), m, u, case.t + k, **kw)
            yield param.copy(), m.copy(), u.copy()


class optimizer(Adapter):
    """Adapter for a ``torch.optim``-style optimizer class (needs torch).

    The class is built as ``cls([p], lr=, betas=(beta1, beta2), eps=,
    weight_decay=, maximize=, **kwargs)`` on one tensor ``p``; each step sets
    ``p.grad`` and calls ``step()``. A case that starts from a state other
    than the fresh one (``t == 1``, ``m == u == 0``) writes it into
    ``opt.state[p]`` under ``state_keys`` (the step count, then ``m`` and
    ``u``; torch's ``Adamax`` names them ``"step"``, ``"exp_avg"``,
    ``"exp_inf"``); fresh cases let the optimizer initialise itself.

    Examples
    --------
    >>> adapter = optimizer(object, foreach=True)  # the class is only called per case
    >>> adapter.kwargs
    {'foreach': True}
    """

    def __init__(self, cls: type, *, state_keys: Sequence[str] = ("step", "exp_avg", "exp_inf"),
                 name: Optional[str] = None, **kwargs: Any) -> None:
        self.cls = cls
        self.state_keys = tuple(state_keys)
        self.kwargs = kwargs
        self.name = name or _name(cls)

    def constructor_arguments(self, hyper: Mapping[str, Any]) -> dict[str, Any]:
        """torch's names for the case's hyperparameters."""
        hyper = dict(hyper)
        if hyper.pop("decoupled_weight_decay", False):
            raise UnsupportedCase("this optimizer adapter has no decoupled weight decay")
        out = {"lr": hyper.pop("lr"), "betas": (hyper.pop("beta1"), hyper.pop("beta2")),
               "eps": hyper.pop("eps")}
        out.update(hyper)
        return out

    def steps(self, case: Case) -> Iterator[Triple]:
        import torch

        step_key, m_key, u_key = self.state_keys
        p = torch.nn.Parameter(torch.from_numpy(case.param.copy()))
        opt = self.cls([p], **self.constructor_arguments(case.hyperparameters), **self.kwargs)
        fresh = case.t == 1 and not case.m.any() and not case.u.any()
        if not fresh:
            opt.state[p] = {
                step_key: torch.tensor(float(case.t - 1)),
                m_key: torch.from_numpy(case.m.copy()),
                u_key: torch.from_numpy(case.u.copy()),
            }
        for grad in case.grads:
            p.grad = torch.from_numpy(grad.copy())
            opt.step()
            state = opt.state[p]
            yield _as_output(p), _as_output(state[m_key]), _as_output(state[u_key])


class UnsupportedCase(Exception):
    """Raised by an adapter for a case its implementation cannot express."""


class _InputModified(Exception):
    pass


def _adapter(step_fn: Any, in_place_: bool) -> Adapter:
    if isinstance(step_fn, Adapter):
        return step_fn
    if in_place_:
        return in_place(step_fn)
    if isinstance(step_fn, type):
        return optimizer(step_fn)
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable or an Adapter, got {type(step_fn).__name__}")
    return functional(step_fn)


# ---------------------------------------------------------------- comparison


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """Where an implementation first departs from the reference.

    ``formula`` is ``"m"``, ``"u"`` or ``"θ"`` (the first output, in the
    spec's order, that is wrong), or ``None`` when the step raised or
    modified its inputs. ``start`` is the state the failing step began from
    and ``grad`` its gradient; ``expected`` and ``actual`` are ``(θ, m, u)``.
    """

    formula: Optional[str]
    reason: str
    case: Case
    step: int
    t: int
    element: Optional[tuple[int, ...]]
    start: Optional[Triple]
    grad: Optional[np.ndarray]
    expected: Optional[Triple]
    actual: Optional[Triple]
    detail: str

    def describe(self, convention: str = "spec") -> str:
        formulas = {**FORMULAS, **(_TORCH_FORMULAS if convention == "torch" else {})}
        where = f"step {self.step + 1} of {len(self.case.grads)} (t={self.t})"
        if self.element is not None and self.element != ():
            where += f", element {self.element[0] if len(self.element) == 1 else self.element}"
        lines = []
        if self.formula is not None:
            lines.append(f"first wrong output: {self.formula}  ({formulas[self.formula]})")
        lines.append(f"{self.reason}: {self.detail}")
        lines.append(f"at {where} of the smallest failing case,")
        lines.append(self.case.describe())
        if self.start is not None and self.grad is not None and self.step > 0:
            lines.append("  the step began from the implementation's own state (θ, m, u) = "
                         + _show_triple(self.start) + f", grad {self.grad.tolist()!r}")
        if self.expected is not None:
            lines.append("  expected (θ, m, u) = " + _show_triple(self.expected))
        if self.actual is not None:
            lines.append("  actual   (θ, m, u) = " + _show_triple(self.actual))
        return "\n".join(lines)


def _show_triple(triple: Triple) -> str:
    return "(" + ", ".join(repr(np.asarray(a).tolist()) for a in triple) + ")"


class _Found(Exception):
    def __init__(self, mismatch: Mismatch) -> None:
        super().__init__(mismatch.detail)
        self.mismatch = mismatch


def _expected_step(
    start: Triple, grad: np.ndarray, t: int, hyper: Mapping[str, Any], convention: str, dtype: str
) -> list[reference.Trace]:
    param, m, u = (a.reshape(-1) for a in start)
    return [
        reference.adamax_trace(
            float(param[i]), float(g), float(m[i]), float(u[i]), t,
            convention=convention, arithmetic=dtype, **hyper,
        )
        for i, g in enumerate(grad.reshape(-1))
    ]


def _compare(
    traces: list[reference.Trace],
    start: Triple,
    grad: np.ndarray,
    actual: Triple,
    hyper: Mapping[str, Any],
    dtype: np.dtype,
    tol: Tolerance,
) -> Optional[tuple[str, int, str]]:
    """The first wrong output as ``(formula, element, detail)``, or ``None``."""
    shape = start[0].shape
    names = ("θ", "m", "u")
    for name in ("m", "u", "θ"):
        a = actual[names.index(name)]
        if a.dtype != dtype:
            return name, 0, f"{name} came back as {a.dtype}, not {dtype}"
        if a.shape != shape:
            return name, 0, f"{name} came back with shape {a.shape}, not {shape}"
    beta1 = float(hyper["beta1"])
    m_prev = start[1].reshape(-1)
    l2 = float(hyper.get("weight_decay", 0.0)) if not hyper.get("decoupled_weight_decay") else 0.0
    theta_prev, raw = start[0].reshape(-1), grad.reshape(-1)
    # |g| counted as its terms: grad and, with L2 weight decay, λ·θ.
    g_scale = [max(abs(float(raw[i])), abs(l2 * float(theta_prev[i])), abs(float(tr.g)))
               for i, tr in enumerate(traces)]
    theta_a, m_a, u_a = (a.reshape(-1) for a in actual)
    dm = [0.0] * len(traces)
    du = [0.0] * len(traces)
    for i, tr in enumerate(traces):
        got, want = float(m_a[i]), float(tr.m_t)
        if not _same(got, want):
            scale = max(abs(beta1 * float(m_prev[i])), abs(1 - beta1) * g_scale[i], abs(want))
            dm[i] = abs(got - want)
            if not (math.isfinite(got) and math.isfinite(want)) or dm[i] > tol.m * _ulp(scale, dtype):
                ulps = dm[i] / _ulp(scale, dtype) if math.isfinite(dm[i]) else math.inf
                return "m", i, f"m is {got!r}, the reference gives {want!r} ({ulps:.3g} ulp of the formula's terms; tolerance {tol.m:g})"
    for i, tr in enumerate(traces):
        got, want = float(u_a[i]), float(tr.u_t)
        if not _same(got, want):
            du[i] = abs(got - want)
            scale = max(abs(want), g_scale[i])
            if not (math.isfinite(got) and math.isfinite(want)) or du[i] > tol.u * _ulp(scale, dtype):
                ulps = du[i] / _ulp(scale, dtype) if math.isfinite(du[i]) else math.inf
                return "u", i, f"u is {got!r}, the reference gives {want!r} ({ulps:.3g} ulp; tolerance {tol.u:g})"
    for i, tr in enumerate(traces):
        got, want = float(theta_a[i]), float(tr.param_t)
        if _same(got, want):
            continue
        if not (math.isfinite(got) and math.isfinite(want)):
            return "θ", i, f"θ is {got!r}, the reference gives {want!r}"
        update = float(tr.update)
        allowed = tol.param * _ulp(want, dtype) + tol.update * _update_ulp(tr, hyper, dtype)
        if dm[i] or du[i]:
            # First-order effect on θ of the (tolerated) differences in m_t and u_t.
            allowed += abs(float(tr.step_size) * dm[i] / float(tr.bias_correction))
            allowed += abs(update * du[i] / float(tr.denominator))
        if not abs(got - want) <= allowed:
            return "θ", i, (
                f"θ is {got!r}, the reference gives {want!r} (off by {abs(got - want):.3g}; "
                f"allowed {allowed:.3g} = {tol.param:g}·ulp(θ) + {tol.update:g}·ulp(update {update:.3g})"
                + (" + the effect of m and u's tolerated differences)" if dm[i] or du[i] else ")")
            )
    return None


def _run_case(
    adapter: Adapter, case: Case, convention: str, tol: Tolerance
) -> Optional[Mismatch]:
    dtype = case.dtype
    arithmetic = str(dtype)
    state: Triple = (case.param, case.m, case.u)
    steps = adapter.steps(case)
    for k, grad in enumerate(case.grads):
        t = case.t + k

        def failure(reason: str, detail: str) -> Mismatch:
            return Mismatch(formula=None, reason=reason, case=case, step=k, t=t, element=None,
                            start=state, grad=grad, expected=None, actual=None, detail=detail)

        try:
            actual = next(steps)
        except StopIteration:
            return failure("missing step", "the adapter stopped before the last step")
        except Exception as err:  # the implementation's error is the finding
            reason = "modified input" if isinstance(err, _InputModified) else "raised"
            return failure(reason, f"{type(err).__name__}: {err}")
        if not (isinstance(actual, tuple) and len(actual) == 3):
            return failure("bad result", "the step did not give (param, m, u)")
        traces = _expected_step(state, grad, t, case.hyperparameters, convention, arithmetic)
        theta_e, m_e, u_e = (
            np.array([getattr(tr, f) for tr in traces], dtype=dtype).reshape(case.param.shape)
            for f in ("param_t", "m_t", "u_t")
        )
        found = _compare(traces, state, grad, actual, case.hyperparameters, dtype, tol)
        if found is not None:
            formula, i, detail = found
            element = np.unravel_index(i, case.param.shape) if case.param.ndim else ()
            return Mismatch(formula=formula, reason="value", case=case, step=k, t=t,
                            element=tuple(int(j) for j in element), start=state, grad=grad,
                            expected=(theta_e, m_e, u_e), actual=actual, detail=detail)
        state = actual
    return None


def _reduce(adapter: Adapter, mismatch: Mismatch, convention: str, tol: Tolerance) -> Mismatch:
    """The failing element alone, up to the failing step, if that still fails the same way.

    The step is element-wise, so this is a smaller case than hypothesis's
    shrinker reaches when the culprit sits in the middle of an array.
    """
    case = mismatch.case
    if mismatch.element is None or (case.param.size <= 1 and mismatch.step == len(case.grads) - 1):
        return mismatch
    i = int(np.ravel_multi_index(mismatch.element, case.param.shape)) if case.param.ndim else 0

    def one(a: np.ndarray) -> np.ndarray:
        return a.reshape(-1)[i : i + 1].copy() if a.ndim else a.copy()

    smaller = dataclasses.replace(
        case, param=one(case.param), m=one(case.m), u=one(case.u),
        grads=tuple(one(g) for g in case.grads[: mismatch.step + 1]),
    )
    again = _run_case(adapter, smaller, convention, tol)
    if again is not None and again.formula == mismatch.formula and again.reason == mismatch.reason:
        return again
    return mismatch


def _check_rounded(case: Case, ex: Any) -> Optional[Mismatch]:
    """The spec's table: the reference itself agrees with it to the places shown."""
    traces = _expected_step((case.param, case.m, case.u), case.grads[0], case.t,
                            case.hyperparameters, "spec", str(case.dtype))
    got = {"θ": [tr.param_t for tr in traces], "m": [tr.m_t for tr in traces],
           "u": [tr.u_t for tr in traces]}
    want = dict(zip(("θ", "m", "u"), (np.ravel(x).tolist() for x in ex.expected)))
    for name in ("m", "u", "θ"):
        for i, (g, w) in enumerate(zip(got[name], want[name])):
            if abs(g - w) > 0.5 * 10.0**-ex.places:
                return Mismatch(formula=name, reason="worked example", case=case, step=0, t=case.t,
                                element=(i,), start=None, grad=None, expected=None, actual=None,
                                detail=f"{name} = {g!r} is not the spec's {w!r} to {ex.places} places")
    return None


# ------------------------------------------------------------------- reports


@dataclasses.dataclass(frozen=True)
class ConformanceReport:
    """The verdict of :func:`check_conformance`; true when the implementation conforms."""

    implementation: str
    convention: str
    dtype: str
    tolerance: Tolerance
    options: Mapping[str, Any]
    vary: tuple[str, ...]
    nonfinite: bool
    worked_examples: int
    edge_cases: int
    generated_cases: int
    seed: int
    mismatch: Optional[Mismatch]

    @property
    def conforms(self) -> bool:
        return self.mismatch is None

    def __bool__(self) -> bool:
        return self.conforms

    @property
    def widened(self) -> bool:
        return self.tolerance != TOLERANCES[self.dtype]

    def __str__(self) -> str:
        head = f"{self.implementation}: convention {self.convention!r}, {self.dtype}"
        if self.options:
            head += ", " + ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        if self.vary:
            head += ", varying " + ", ".join(self.vary)
        if not self.nonfinite:
            head += ", finite values only"
        verdict = "CONFORMS" if self.conforms else "DOES NOT CONFORM"
        lines = [head, f"verdict: {verdict}"]
        if self.mismatch is not None:
            lines.append(self.mismatch.describe(self.convention))
        tol = f"tolerance: {self.tolerance.describe()}"
        if self.widened:
            tol += f"  (WIDENED from the contract's {TOLERANCES[self.dtype].describe()})"
        lines.append(tol)
        lines.append(
            f"checked: {self.worked_examples} worked example(s), {self.edge_cases} edge case(s), "
            f"{self.generated_cases} generated case(s); seed {self.seed} (replay with seed={self.seed})"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        out: dict[str, Any] = {
            "implementation": self.implementation,
            "conforms": self.conforms,
            "convention": self.convention,
            "dtype": self.dtype,
            "options": dict(self.options),
            "vary": list(self.vary),
            "nonfinite": self.nonfinite,
            "tolerance_ulps": dataclasses.asdict(self.tolerance),
            "tolerance_widened": self.widened,
            "worked_examples": self.worked_examples,
            "edge_cases": self.edge_cases,
            "generated_cases": self.generated_cases,
            "seed": self.seed,
            "mismatch": None,
        }
        mm = self.mismatch
        if mm is not None:
            def listed(triple: Optional[Triple]) -> Optional[list[Any]]:
                return None if triple is None else [_json_value(np.asarray(a).tolist()) for a in triple]

            out["mismatch"] = {
                "formula": mm.formula,
                "reason": mm.reason,
                "detail": mm.detail,
                "label": mm.case.label,
                "step": mm.step,
                "t": mm.t,
                "element": list(mm.element) if mm.element is not None else None,
                "start": listed(mm.start),
                "grad": _json_value(mm.grad.tolist()) if mm.grad is not None else None,
                "expected": listed(mm.expected),
                "actual": listed(mm.actual),
                "case": {
                    "param": _json_value(mm.case.param.tolist()),
                    "m": _json_value(mm.case.m.tolist()),
                    "u": _json_value(mm.case.u.tolist()),
                    "t": mm.case.t,
                    "grads": [_json_value(g.tolist()) for g in mm.case.grads],
                    "hyperparameters": dict(mm.case.hyperparameters),
                },
            }
        return out


def _json_value(x: Any) -> Any:
    """NaN and infinities as strings, so the output is strict JSON."""
    if isinstance(x, list):
        return [_json_value(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    return x


# ------------------------------------------------------------- the harness


def check_conformance(
    step_fn: Any,
    *,
    convention: str = "spec",
    dtype: str = "float64",
    in_place: bool = False,
    options: Optional[Mapping[str, Any]] = None,
    vary: Sequence[str] = (),
    tolerance: Optional[Tolerance | Mapping[str, float]] = None,
    nonfinite: bool = True,
    max_examples: int = 100,
    seed: Optional[int] = None,
) -> ConformanceReport:
    """Hold an Adamax step against the reference and report where it departs.

    The spec's worked examples run first, then scalar edge cases (negative,
    zero, subnormal, infinite and NaN gradients), then up to ``max_examples``
    generated cases. A failure is shrunk by hypothesis to the smallest
    failing case.

    Parameters
    ----------
    step_fn : callable, class or Adapter
        A functional step ``fn(param, grad, m, u, t, lr=, beta1=, beta2=,
        eps=, **options) -> (param, m, u)``; with ``in_place=True`` a step
        that updates ``param``, ``m`` and ``u`` in place; a ``torch.optim``-
        style class (see :class:`optimizer`); or any :class:`Adapter`.
    convention : {"spec", "torch"}
        The reference's convention: ε added to ``u`` in the denominator, or
        inside the max.
    dtype : {"float64", "float32"}
        The arrays' dtype. float32 is judged against the reference's
        ``arithmetic="float32"`` (every operation rounded to single).
    in_place : bool
        Wrap a plain callable with :class:`in_place` instead of :class:`functional`.
    options : mapping, optional
        Keywords held fixed on every call, for example
        ``{"eps": 1e-7, "lr": 0.001}`` or ``{"weight_decay": 0.01}``. The
        hyperparameters ``lr``, ``beta1``, ``beta2``, ``eps`` not given are
        drawn from their ranges.
    vary : sequence of str
        Options the implementation supports that cases should draw as well
        (``weight_decay``, ``decoupled_weight_decay``, ``maximize``).
    tolerance : Tolerance or mapping, optional
        ``None`` is the contract, ``TOLERANCES[dtype]``. A mapping widens it
        (``{"m": 2}``; see :meth:`Tolerance.widen`); a :class:`Tolerance` is
        used as given. The report states any widening.
    nonfinite : bool
        Whether to try infinite and NaN gradients and parameters (the spec
        follows IEEE rules for them). ``False`` leaves them out; the report
        says so.
    max_examples : int
        How many generated cases to try.
    seed : int, optional
        The hypothesis seed; drawn at random (and reported) when ``None``.

    Returns
    -------
    ConformanceReport
        True when every case conforms; ``str(report)`` is the verdict.

    Raises
    ------
    ValueError
        An unknown convention, dtype or option.

    Examples
    --------
    >>> import adamax_cy
    >>> report = check_conformance(adamax_cy.adamax_step, max_examples=10, seed=0)
    >>> report.conforms
    True
    >>> def no_bias_correction(param, grad, m, u, t, lr, beta1, beta2, eps):
    ...     m = beta1 * m + (1 - beta1) * grad
    ...     u = max(beta2 * u, abs(grad))
    ...     return param - lr / (u + eps) * m, m, u
    >>> report = check_conformance(no_bias_correction, max_examples=10, seed=0)
    >>> report.conforms, report.mismatch.formula
    (False, 'θ')
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    fixed = dict(options or {})
    for name in fixed:
        if name not in HYPERPARAMETERS + OPTIONS:
            raise ValueError(f"unknown option {name!r}; known: {HYPERPARAMETERS + OPTIONS}")
    vary = tuple(vary)
    for name in vary:
        if name not in OPTIONS or name in fixed:
            raise ValueError(f"vary takes options from {OPTIONS} not fixed in options, got {name!r}")
    if tolerance is None:
        tol = TOLERANCES[dtype]
    elif isinstance(tolerance, Tolerance):
        tol = tolerance
    else:
        tol = TOLERANCES[dtype].widen(**tolerance)
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    adapter = _adapter(step_fn, in_place)

    def report(mismatch: Optional[Mismatch], worked: int, edge: int, generated: int) -> ConformanceReport:
        return ConformanceReport(
            implementation=adapter.name, convention=convention, dtype=dtype, tolerance=tol,
            options=MappingProxyType(fixed), vary=vary, nonfinite=nonfinite, worked_examples=worked,
            edge_cases=edge, generated_cases=generated, seed=seed, mismatch=mismatch,
        )

    examples = _worked_examples(dtype, fixed)
    plain = convention == "spec" and not set(fixed) & set(HYPERPARAMETERS)
    for n, (case, ex) in enumerate(examples, start=1):
        if plain and (wrong := _check_rounded(case, ex)) is not None:  # pragma: no cover
            return report(wrong, n, 0, 0)  # the reference and the spec's table disagree
        mismatch = _run_case(adapter, case, convention, tol)
        if mismatch is not None:
            return report(mismatch, n, 0, 0)

    edges = _edge_cases(dtype, fixed, nonfinite)
    for n, case in enumerate(edges, start=1):
        mismatch = _run_case(adapter, case, convention, tol)
        if mismatch is not None:
            return report(mismatch, len(examples), n, 0)

    generated = 0

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        print_blob=False,
        report_multiple_bugs=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)
    @given(cases(dtype, fixed, vary, nonfinite))
    def probe(case: Case) -> None:
        nonlocal generated
        generated += 1
        mismatch = _run_case(adapter, case, convention, tol)
        if mismatch is not None:
            raise _Found(mismatch)

    try:
        probe()
    except _Found as found:
        return report(_reduce(adapter, found.mismatch, convention, tol), len(examples), len(edges), generated)
    return report(None, len(examples), len(edges), generated)


def assert_conforms(step_fn: Any, **kwargs: Any) -> ConformanceReport:
    """:func:`check_conformance`, raising ``AssertionError`` with the verdict on failure.

    Returns
    -------
    ConformanceReport
        When the implementation conforms.

    Raises
    ------
    AssertionError
        With the smallest failing case, the expected and actual ``(θ, m, u)``
        and the formula whose output first differs.

    Examples
    --------
    >>> import adamax_cy
    >>> step = functional(adamax_cy.adamax_step, convention="torch")
    >>> assert_conforms(step, convention="torch", max_examples=5, seed=1).conforms
    True
    """
    result = check_conformance(step_fn, **kwargs)
    if not result:
        raise AssertionError("Adamax conformance failed\n" + str(result))
    return result


if pytest is not None:

    @pytest.fixture
    def adamax_conformance(request: Any) -> Callable[..., ConformanceReport]:
        """:func:`assert_conforms`, seeded from ``--hypothesis-seed`` when given.

        Enable with ``pytest_plugins = ["adamax_cy.testing"]`` in ``conftest.py``.
        """
        option = request.config.getoption("hypothesis_seed", None)

        def check(step_fn: Any, **kwargs: Any) -> ConformanceReport:
            if option is not None and "seed" not in kwargs:
                kwargs["seed"] = int(option)
            return assert_conforms(step_fn, **kwargs)

        return check
