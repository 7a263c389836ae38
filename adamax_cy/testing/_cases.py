"""Cases: the worked examples, the edge cases and the hypothesis strategy for generated ones."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Callable, Optional

import numpy as np
from hypothesis import strategies as st

from .. import _vectors, reference
from .._defaults import BETA1, BETA2, DEFAULTS, EPS, LR

DTYPES = ("float32", "float64")
HYPERPARAMETERS = ("lr", "beta1", "beta2", "eps")
#: Options beyond the four hyperparameters that cases may vary (``vary=``).
OPTIONS = ("weight_decay", "decoupled_weight_decay", "maximize")
#: The options' values under which the specification's worked examples hold.
SPEC_OPTIONS = MappingProxyType({"weight_decay": 0.0, "decoupled_weight_decay": False, "maximize": False})
#: The largest step number the library accepts.
MAX_T = 2**63 - 1

_HUGE = float(np.finfo(np.float64).max)
_TINY64 = float(np.finfo(np.float64).smallest_subnormal)
_TINY32 = float(np.finfo(np.float32).smallest_subnormal)


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


def _specials(dtype: str, nonfinite: bool, full_range: bool = False) -> st.SearchStrategy[float]:
    info = np.finfo(dtype)
    tiny = float(info.smallest_subnormal)
    values = [0.0, -0.0, tiny, -tiny]
    if full_range:
        values += [float(info.tiny), float(info.max), -float(info.max)]
    return st.sampled_from(values + ([math.nan, math.inf, -math.inf] if nonfinite else []))


def _unit_interval(default: float) -> st.SearchStrategy[float]:
    """A decay rate over ``[0, 1)``: the default, usual values, subnormal ones and ones near 1."""
    return st.one_of(
        st.just(default),
        st.sampled_from([0.0, 0.5, 0.9, 0.99]),
        st.floats(0.0, 0.9999),
        st.sampled_from([_TINY64, 1e-310, 1e-40, 1 - 2**-24, 1 - 2**-30, 1 - 2**-53]),
        st.floats(0.0, 1.0, exclude_max=True),
    )


def _non_negative(default: float, low: float, high: float) -> st.SearchStrategy[float]:
    """A value over ``[0, max double]``: the default, a usual range, 0, tiny and huge values, anything."""
    return st.one_of(
        st.just(default),
        st.floats(low, high),
        st.just(0.0),
        st.sampled_from([_TINY64, 1e-320, _TINY32, 1.5 * _TINY32, 1e-40, 1e-45]),
        st.sampled_from([1e20, 1e39, 1e300, _HUGE]),
        st.floats(0.0, _HUGE),
    )


#: Each hyperparameter and option over its whole legal range.
RANGES: Mapping[str, st.SearchStrategy[Any]] = MappingProxyType({
    "lr": _non_negative(LR, 1e-6, 1.0),
    "beta1": _unit_interval(BETA1),
    "beta2": _unit_interval(BETA2),
    "eps": _non_negative(EPS, 1e-12, 1e-2),
    "weight_decay": st.one_of(st.just(0.0), _non_negative(0.0, 0.0, 0.1)),
    "decoupled_weight_decay": st.booleans(),
    "maximize": st.booleans(),
})

#: A step number over its whole legal range, mostly small.
STEP_NUMBERS = st.one_of(
    st.integers(1, 20), st.integers(1, 10**6), st.integers(1, MAX_T), st.sampled_from([2**53 + 1, MAX_T])
)

#: The usual ranges: what training runs use, where every mainstream
#: implementation is expected to work.
USUAL_RANGES: Mapping[str, st.SearchStrategy[Any]] = MappingProxyType({
    "lr": st.one_of(st.just(LR), st.floats(1e-6, 1.0)),
    # Near 1 often: where the bias correction matters for thousands of steps.
    "beta1": st.one_of(st.just(BETA1), st.sampled_from([0.0, 0.5]), st.sampled_from([0.99, 0.999, 0.9999]),
                       st.floats(0.0, 0.9999)),
    "beta2": st.one_of(st.just(BETA2), st.sampled_from([0.0, 0.5, 0.9]), st.floats(0.0, 0.9999)),
    "eps": st.one_of(st.just(EPS), st.floats(1e-12, 1e-2)),
    "weight_decay": st.one_of(st.just(0.0), st.floats(0.0, 0.1)),
    "decoupled_weight_decay": st.booleans(),
    "maximize": st.booleans(),
})
USUAL_STEP_NUMBERS = st.one_of(st.integers(1, 20), st.integers(1, 10**6))


def bias_window(beta1: float) -> int:
    """The step number at which ``1 - beta1**t`` in double becomes exactly 1.

    From there on ``beta1**t`` is at most half an ulp of 1 (``2**-54``); a
    bias-correction bug shows only before it.
    """
    if not 0 < beta1 < 1:
        return 1
    return int(min(MAX_T, math.ceil(54 / -math.log2(beta1))))


def _step_numbers(beta1: float, full_range: bool) -> st.SearchStrategy[int]:
    """Step numbers, two times in three within the window where the bias correction matters.

    Half of those are drawn by how far ``beta1**t`` has decayed (``2**-1`` to
    ``2**-54``, evenly in the exponent), so that the steps where the bias
    correction still moves θ by many ulps come up as often as the later ones.
    """
    window = bias_window(beta1)
    if window == 1:
        decayed = st.just(1)
    else:
        rate = -math.log2(beta1)
        decayed = st.integers(1, 54).map(lambda bits: int(min(window, max(1, math.ceil(bits / rate)))))
    return st.one_of(STEP_NUMBERS if full_range else USUAL_STEP_NUMBERS, st.integers(1, window), decayed)


@st.composite
def cases(
    draw: Callable[[st.SearchStrategy[Any]], Any],
    dtype: str = "float64",
    fixed: Optional[Mapping[str, Any]] = None,
    vary: Sequence[str] = (),
    nonfinite: bool = True,
    full_range: bool = False,
) -> Case:
    """A hypothesis strategy for :class:`Case`.

    The state, in the ``"special"`` kind of case, holds signed zeros,
    subnormals and, with ``nonfinite``, infinities and NaN (with
    ``full_range``, the smallest normal and the largest finite values too).

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
    full_range : bool
        Draw the hyperparameters over their whole legal range (0 and
        subnormal to the largest double; decay rates from 0 to just below 1)
        and the step number up to ``2**63 − 1``, instead of the usual ranges
        (``lr`` 1e-6 to 1, ``eps`` 1e-12 to 1e-2, decay rates to 0.9999,
        ``t`` to 10**6).
    """
    fixed = dict(fixed or {})
    ranges = RANGES if full_range else USUAL_RANGES
    kind = draw(st.sampled_from(["scalar", "array", "trajectory", "special"]))
    shape: tuple[int, ...] = () if kind == "scalar" else (draw(st.integers(1, 6)),)
    size = int(np.prod(shape, dtype=int))
    steps = draw(st.integers(2, 8)) if kind == "trajectory" else draw(st.integers(1, 2))
    finite = _values(dtype, -1e4, 1e4)
    specials = _specials(dtype, nonfinite, full_range)
    values = st.one_of(finite, specials) if kind == "special" else finite

    def array(elements: st.SearchStrategy[float]) -> np.ndarray:
        return np.array(draw(st.lists(elements, min_size=size, max_size=size)), dtype=dtype).reshape(shape)

    hyper: dict[str, Any] = {}
    for name in HYPERPARAMETERS:
        hyper[name] = fixed.pop(name) if name in fixed else draw(ranges[name])
    for name in vary:
        hyper[name] = draw(ranges[name])
    hyper.update(fixed)

    later = draw(st.booleans())  # shrinks to False: the fresh state is the simpler case
    if not later:
        t = 1
        m = np.zeros(shape, dtype=dtype)
        u = np.zeros(shape, dtype=dtype)
    else:
        t = min(draw(_step_numbers(float(hyper["beta1"]), full_range)), MAX_T - steps + 1)
        m = array(values)
        u = np.array(np.abs(array(values)))  # np.abs gives a scalar for a 0-d array
    param = array(values)
    grads = tuple(array(values) for _ in range(steps))
    return Case(param=param, m=m, u=u, t=t, grads=grads, hyperparameters=MappingProxyType(hyper))


def _edge_cases(dtype: str, fixed: Mapping[str, Any], nonfinite: bool) -> list[Case]:
    """Scalar steps on the values that separate implementations, run before the search.

    Each special gradient (negative, signed zeros, the smallest subnormal,
    infinities, NaN) is tried from the fresh state and from a later one, and
    followed by an ordinary step (what does the state it left do next?); and
    from θ = 0 with m = 1, where θ_t is the update alone, judged at its own
    precision.
    """
    hyper = MappingProxyType({"lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS, **fixed})
    tiny = float(np.finfo(dtype).smallest_subnormal)
    out = []
    specials = (math.inf, -math.inf, math.nan) if nonfinite else ()
    for grad in (-0.5, 0.0, -0.0, tiny, -tiny, *specials):
        for param, t, m, u, grads in ((1.5, 1, 0.0, 0.0, [grad]), (1.5, 3, -0.25, 0.75, [grad]),
                                      (1.5, 1, 0.0, 0.0, [grad, 0.25]), (0.0, 1, 1.0, 0.0, [grad])):
            out.append(Case(
                param=np.array(param, dtype=dtype), m=np.array(m, dtype=dtype),
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



def spec_options_apply(convention: str, fixed: Mapping[str, Any]) -> bool:
    """Whether the worked examples' table holds: the spec's convention, defaults and options."""
    if convention != "spec":
        return False
    expected = {**DEFAULTS, **SPEC_OPTIONS}
    return all(name in expected and value == expected[name] for name, value in fixed.items())


def vector_case(vector: Mapping[str, Any]) -> Case:
    """A test vector (:mod:`adamax_cy._vectors`) as a one-step :class:`Case`."""
    arrays, hyper = _vectors.inputs(vector)
    return Case(param=arrays["param"], m=arrays["m"], u=arrays["u"], t=vector["t"], grads=(arrays["grad"],),
                hyperparameters=MappingProxyType(hyper), label=f"test vector {vector['id']}")


@functools.lru_cache(maxsize=1)
def _document() -> Mapping[str, Any]:
    return _vectors.generate_test_vectors()


def _vector_cases(dtype: str, convention: str, vary: Sequence[str], nonfinite: bool) -> list[Case]:
    """The test vectors that apply (dtype, convention, the options varied), as cases.

    They put every step number and the window where ``1 - beta1**t`` stops
    changing in front of the implementation whatever the seed, where
    generated cases reach them only by chance.
    """
    return [vector_case(v) for v in _vectors.applicable(_document(), dtype, convention, vary, nonfinite)]
