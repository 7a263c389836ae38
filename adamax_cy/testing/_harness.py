"""The harness: run an implementation beside the reference and judge it by the contract."""

from __future__ import annotations

import dataclasses
import numbers
import random
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Optional

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky

from .. import _contract, _validation, reference
from .._defaults import CONVENTIONS, MAX_EXAMPLES
from ._adapters import Adapter, Triple, _adapter, _InputModified, functional, in_place  # noqa: F401
from ._cases import (
    DTYPES,
    HYPERPARAMETERS,
    OPTIONS,
    Case,
    _edge_cases,
    _vector_cases,
    _worked_examples,
    cases,
    spec_options_apply,
)
from ._report import ConformanceReport, Mismatch
from ._tolerances import TOLERANCES, Tolerance

__all__ = ["assert_conforms", "check_conformance"]


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
    t: int,
    hyper: Mapping[str, Any],
    dtype: np.dtype,
    tol: Tolerance,
) -> Optional[tuple[str, int, str]]:
    """The first wrong output as ``(formula, element, detail)``, or ``None``: the contract's verdict."""
    shape = start[0].shape
    names = ("θ", "m", "u")
    for name in ("m", "u", "θ"):
        a = actual[names.index(name)]
        if a.dtype != dtype:
            return name, 0, f"{name} came back as {a.dtype}, not {dtype}"
        if a.shape != shape:
            return name, 0, f"{name} came back with shape {a.shape}, not {shape}"
    before = (start[0], grad, start[1], start[2])
    breach = _contract.first_breach(traces, before, actual, t, hyper, tol)
    return None if breach is None else (breach.output, breach.element, breach.detail)


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
        found = _compare(traces, state, grad, actual, t, case.hyperparameters, dtype, tol)
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


# ------------------------------------------------------------- the harness


def run_fixed_cases(
    adapter: Adapter, dtype: str, convention: str, fixed: Mapping[str, Any], nonfinite: bool, tol: Tolerance
) -> tuple[Optional[Mismatch], int, int]:
    """The worked examples, then the edge cases: ``(first mismatch or None, examples run, edge cases run)``.

    The specification's table is checked only where it holds (its
    convention, defaults and options); otherwise, as for every case, the
    expectation is the reference's own result for the same inputs.
    """
    examples = _worked_examples(dtype, fixed)
    plain = spec_options_apply(convention, fixed)
    for n, (case, ex) in enumerate(examples, start=1):
        if plain and (wrong := _check_rounded(case, ex)) is not None:
            return wrong, n, 0  # the reference and the spec's table disagree
        mismatch = _run_case(adapter, case, convention, tol)
        if mismatch is not None:
            return mismatch, n, 0
    edges = _edge_cases(dtype, fixed, nonfinite)
    for n, case in enumerate(edges, start=1):
        mismatch = _run_case(adapter, case, convention, tol)
        if mismatch is not None:
            return mismatch, len(examples), n
    return None, len(examples), len(edges)



_CHECKS = {"lr": _validation.non_negative, "beta1": _validation.beta, "beta2": _validation.beta,
           "eps": _validation.non_negative, "weight_decay": _validation.non_negative,
           "decoupled_weight_decay": _validation.flag, "maximize": _validation.flag}


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options to hold fixed, checked as the library checks them; ``ValueError`` names a wrong one.

    A value outside its legal range is the caller's mistake, not the
    implementation's: judging a step on it would fault a step that refuses
    it and pass one that does not.
    """
    fixed = dict(options)
    for name, value in fixed.items():
        if name not in HYPERPARAMETERS + OPTIONS:
            raise ValueError(f"unknown option {name!r}; known: {HYPERPARAMETERS + OPTIONS}")
        try:
            _CHECKS[name](name, value, "option ")
        except TypeError as err:
            raise ValueError(str(err)) from None
    return fixed


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
    full_range: bool = False,
    max_examples: int = 100,
    seed: Optional[int] = None,
    test_vectors: bool = True,
) -> ConformanceReport:
    """Hold an Adamax step against the reference and report where it departs.

    The spec's worked examples run first, then scalar edge cases (negative,
    zero, subnormal, infinite and NaN gradients), then the test vectors that
    apply (:func:`generate_test_vectors`: large step numbers and the window
    where ``1 − β1^t`` stops changing, every time), then up to
    ``max_examples`` generated cases. A failure is shrunk by hypothesis to
    the smallest failing case; one that does not reproduce when its case is
    run again is still reported, and says so.

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
    full_range : bool
        Draw the generated cases' hyperparameters over their whole legal
        range (``lr`` and ``eps`` from 0 and subnormal to the largest
        double, decay rates up to just below 1, ``t`` up to ``2**63 − 1``)
        instead of the usual ranges of training. The report says so.
    max_examples : int
        How many generated cases to try, from 1 to 1,000,000.
    seed : int, optional
        The hypothesis seed; drawn at random (and reported) when ``None``.
    test_vectors : bool
        Run the test vectors of ``dtype`` and ``convention`` (those using
        only the options in ``vary``, finite ones only without
        ``nonfinite``) before the generated cases. They carry their own
        hyperparameters, so they are left out when ``options`` holds one fixed.

    Returns
    -------
    ConformanceReport
        True when every case conforms; ``str(report)`` is the verdict.

    Raises
    ------
    TypeError
        ``step_fn`` is not callable, or ``max_examples`` is not an int.
    ValueError
        An unknown convention, dtype or option, an option's value outside
        its legal range (``lr``, ``eps`` and ``weight_decay`` finite and
        >= 0, decay rates in [0, 1), the flags bools), or ``max_examples``
        outside 1 to 1,000,000.

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
    if isinstance(max_examples, bool) or not isinstance(max_examples, numbers.Integral):
        raise TypeError(f"max_examples must be an int, got {type(max_examples).__name__}")
    if not 1 <= max_examples <= MAX_EXAMPLES:
        raise ValueError(f"max_examples must be from 1 to {MAX_EXAMPLES:,}, got {max_examples}")
    fixed = check_options(options or {})
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

    vectors_run = 0

    def report(mismatch: Optional[Mismatch], worked: int, edge: int, generated: int) -> ConformanceReport:
        return ConformanceReport(
            implementation=adapter.name, convention=convention, dtype=dtype, tolerance=tol,
            options=MappingProxyType(fixed), vary=vary, nonfinite=nonfinite, worked_examples=worked,
            edge_cases=edge, generated_cases=generated, seed=seed, mismatch=mismatch,
            full_range=full_range, test_vectors=vectors_run,
        )

    mismatch, worked, edge = run_fixed_cases(adapter, dtype, convention, fixed, nonfinite, tol)
    if mismatch is not None:
        return report(mismatch, worked, edge, 0)
    if test_vectors and not fixed:
        for case in _vector_cases(dtype, convention, vary, nonfinite):
            vectors_run += 1
            mismatch = _run_case(adapter, case, convention, tol)
            if mismatch is not None:
                return report(mismatch, worked, edge, 0)

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
    @given(cases(dtype, fixed, vary, nonfinite, full_range))
    def probe(case: Case) -> None:
        nonlocal generated
        generated += 1
        mismatch = _run_case(adapter, case, convention, tol)
        if mismatch is not None:
            raise _Found(mismatch)

    try:
        probe()
    except _Found as found:
        return report(_reduce(adapter, found.mismatch, convention, tol), worked, edge, generated)
    except Flaky as flaky:
        seen = _first_found(flaky)
        if seen is None:
            raise
        return report(_not_reproduced(seen), worked, edge, generated)
    return report(None, worked, edge, generated)


def _first_found(error: BaseException) -> Optional[Mismatch]:
    """The first mismatch inside hypothesis's report of a failure that did not reproduce."""
    if isinstance(error, _Found):
        return error.mismatch
    for inner in getattr(error, "exceptions", ()):
        found = _first_found(inner)
        if found is not None:
            return found
    return None


def _not_reproduced(mismatch: Mismatch) -> Mismatch:
    """A mismatch seen once that the same case, run again, did not show: still a departure."""
    return dataclasses.replace(mismatch, detail=(
        f"{mismatch.detail}; this case did not reproduce the failure when run again "
        "(the implementation is not deterministic: a data race, uninitialised memory, hidden state?)"
    ))


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

