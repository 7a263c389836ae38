"""The conformance harness catches real bugs, and accepts correct implementations.

Each deliberately wrong Adamax below differs from the spec by one classic
mistake; the harness must reject it and name the formula whose output breaks
first (m, u or θ, in the spec's order). ``adamax_cy`` itself and the
reference must be accepted in every convention and dtype.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from functools import partial

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adamax_cy
from adamax_cy import reference
from adamax_cy.testing import (
    TOLERANCES,
    Adapter,
    Case,
    Tolerance,
    assert_conforms,
    cases,
    check_conformance,
    functional,
    in_place,
)
from adamax_cy.testing._cases import HYPERPARAMETERS, OPTIONS, RANGES
from adamax_cy.testing._adapters import numpy_optimizer
from adamax_cy.testing._harness import _run_case, run_fixed_cases

ALL_OPTIONS = ("weight_decay", "decoupled_weight_decay", "maximize")
BAD_EXAMPLES = 25  # per wrong implementation: the worked examples and edge cases do most of the work


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The run's hypothesis seed (printed in the header), so a failure replays."""
    return int(request.config.getoption("hypothesis_seed"))


def _coefficients(param, t, lr, beta1, beta2, eps):
    """The contract's scalar coefficients, computed in double and rounded to the arrays'
    dtype: beta1, 1 - beta1, beta2, eps and the step size lr / (1 - beta1**t)."""
    f = np.asarray(param).dtype.type
    with np.errstate(over="ignore"):
        return f(beta1), f(1.0 - beta1), f(beta2), f(eps), f(lr / (1.0 - beta1**t))


# A correct NumPy Adamax (spec convention), the base every bug below departs from.
def correct(param, grad, m, u, t, lr, beta1, beta2, eps):
    b1, w, b2, e, c = _coefficients(param, t, lr, beta1, beta2, eps)
    m = b1 * m + w * grad
    u = np.maximum(b2 * u, np.abs(grad))
    d = u + e
    with np.errstate(invalid="ignore"):
        q = np.where((m == 0) & (d == 0), m - m, m / d)  # eps = 0 and nothing to learn: θ is kept
    return param - c * q, m, u


def eps_inside_max(param, grad, m, u, t, lr, beta1, beta2, eps):
    b1, w, b2, e, c = _coefficients(param, t, lr, beta1, beta2, eps)
    m = b1 * m + w * grad
    u = np.maximum(b2 * u, np.abs(grad) + e)
    return param - c * (m / u), m, u


def eps_added_to_update(param, grad, m, u, t, lr, beta1, beta2, eps):
    b1, w, b2, e, c = _coefficients(param, t, lr, beta1, beta2, eps)
    m = b1 * m + w * grad
    u = np.maximum(b2 * u, np.abs(grad))
    return param - (c * (m / u) + e), m, u


def no_bias_correction(param, grad, m, u, t, lr, beta1, beta2, eps):
    b1, w, b2, e, c = _coefficients(param, t, lr, beta1, beta2, eps)
    m = b1 * m + w * grad
    u = np.maximum(b2 * u, np.abs(grad))
    return param - np.asarray(param).dtype.type(lr) * (m / (u + e)), m, u


def bias_correction_on_u_too(param, grad, m, u, t, lr, beta1, beta2, eps):
    b1, w, b2, e, c = _coefficients(param, t, lr, beta1, beta2, eps)
    m = b1 * m + w * grad
    u = np.maximum(b2 * u, np.abs(grad))
    u_hat = u / np.asarray(param).dtype.type(1.0 - beta2**t)
    return param - c * (m / (u_hat + e)), m, u


def t_off_by_one(param, grad, m, u, t, lr, beta1, beta2, eps):
    return correct(param, grad, m, u, t + 1, lr, beta1, beta2, eps)


def m_updated_after_use(param, grad, m, u, t, lr, beta1, beta2, eps):
    b1, w, b2, e, c = _coefficients(param, t, lr, beta1, beta2, eps)
    u = np.maximum(b2 * u, np.abs(grad))
    param = param - c * (m / (u + e))
    m = b1 * m + w * grad
    return param, m, u


def abs_forgotten(param, grad, m, u, t, lr, beta1, beta2, eps):
    b1, w, b2, e, c = _coefficients(param, t, lr, beta1, beta2, eps)
    m = b1 * m + w * grad
    u = np.maximum(b2 * u, grad)
    return param - c * (m / (u + e)), m, u


def max_replaced_by_sum(param, grad, m, u, t, lr, beta1, beta2, eps):
    b1, w, b2, e, c = _coefficients(param, t, lr, beta1, beta2, eps)
    m = b1 * m + w * grad
    u = b2 * u + np.abs(grad)
    return param - c * (m / (u + e)), m, u


def max_replaced_by_decayed_value(param, grad, m, u, t, lr, beta1, beta2, eps):
    b1, w, b2, e, c = _coefficients(param, t, lr, beta1, beta2, eps)
    m = b1 * m + w * grad
    u = b2 * u
    return param - c * (m / (u + e)), m, u


def betas_swapped(param, grad, m, u, t, lr, beta1, beta2, eps):
    return correct(param, grad, m, u, t, lr, beta2, beta1, eps)


def float32_state_upcast(param, grad, m, u, t, lr, beta1, beta2, eps):
    as64 = partial(np.asarray, dtype=np.float64)
    return correct(as64(param), as64(grad), as64(m), as64(u), t, lr, beta1, beta2, eps)


def float32_computed_in_double(param, grad, m, u, t, lr, beta1, beta2, eps):
    dtype = np.asarray(param).dtype
    return tuple(np.asarray(x, dtype=dtype) for x in float32_state_upcast(param, grad, m, u, t, lr, beta1, beta2, eps))


def nan_dropped_by_max(param, grad, m, u, t, lr, beta1, beta2, eps):
    b1, w, b2, e, c = _coefficients(param, t, lr, beta1, beta2, eps)
    m = b1 * m + w * grad
    u = np.fmax(b2 * u, np.abs(grad))  # fmax ignores NaN
    return param - c * (m / (u + e)), m, u


WRONG = [
    # (implementation, dtype, the formula whose output breaks first)
    (eps_inside_max, "float64", "u"),
    (eps_inside_max, "float32", "u"),
    (eps_added_to_update, "float64", "θ"),
    (no_bias_correction, "float64", "θ"),
    (no_bias_correction, "float32", "θ"),
    (bias_correction_on_u_too, "float64", "θ"),
    (t_off_by_one, "float64", "θ"),
    (t_off_by_one, "float32", "θ"),
    (m_updated_after_use, "float64", "θ"),
    (abs_forgotten, "float64", "u"),
    (max_replaced_by_sum, "float64", "u"),
    (max_replaced_by_decayed_value, "float64", "u"),
    (betas_swapped, "float64", "m"),
    (float32_state_upcast, "float32", "m"),
    (float32_computed_in_double, "float32", "m"),
    (nan_dropped_by_max, "float64", "u"),
    (nan_dropped_by_max, "float32", "u"),
]


@pytest.fixture(autouse=True)
def _quiet_numpy():
    with np.errstate(all="ignore"):  # the wrong implementations meet NaN and infinities
        yield


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_correct_numpy_base_conforms(dtype, seed):
    """Without it, the bugs below could be rejected for a reason other than their bug."""
    assert_conforms(correct, dtype=dtype, max_examples=BAD_EXAMPLES * 4, seed=seed)


@pytest.mark.parametrize(
    ("implementation", "dtype", "formula"),
    WRONG,
    ids=[f"{impl.__name__}-{dtype}" for impl, dtype, _ in WRONG],
)
def test_wrong_implementations_are_rejected_with_the_right_diagnosis(implementation, dtype, formula, seed):
    report = check_conformance(implementation, dtype=dtype, max_examples=BAD_EXAMPLES, seed=seed)
    assert not report.conforms
    assert report.mismatch.formula == formula, str(report)
    assert report.mismatch.expected is not None and report.mismatch.actual is not None


def test_a_bug_only_generated_cases_reveal_is_shrunk(seed):
    """Wrong only for beta2 < 0.5: no worked example or edge case shows it, hypothesis must."""

    def wrong_for_small_beta2(param, grad, m, u, t, lr, beta1, beta2, eps):
        return correct(param, grad, m, u, t, lr, beta1, max(beta2, 0.5), eps)

    # The test vectors' seeded random ones may have beta2 < 0.5: left out, the search must find it.
    report = check_conformance(wrong_for_small_beta2, max_examples=200, seed=seed, test_vectors=False)
    assert not report.conforms
    mm = report.mismatch
    assert mm.formula == "u"
    assert mm.case.label == "generated case"
    assert mm.case.hyperparameters["beta2"] < 0.5
    # Shrunk: one element, and at most the two steps that a nonzero decayed u needs.
    assert mm.case.param.size == 1 and len(mm.case.grads) <= 2
    assert mm.step == len(mm.case.grads) - 1
    text = str(report)
    assert "DOES NOT CONFORM" in text and "expected (θ, m, u)" in text and "actual   (θ, m, u)" in text


def test_a_late_trajectory_step_is_diagnosed_at_that_step(seed):
    """An implementation that drifts after step 3 fails at t = 4 of a trajectory."""

    def drifts_late(param, grad, m, u, t, lr, beta1, beta2, eps):
        return correct(param, grad, m, u, t, lr * (1.5 if t >= 4 else 1.0), beta1, beta2, eps)

    report = check_conformance(drifts_late, max_examples=200, seed=seed)
    assert not report.conforms
    assert report.mismatch.formula == "θ"
    assert report.mismatch.t >= 4


def _reference_step(dtype):
    """The reference as a functional step for arrays of ``dtype``."""

    def step(param, grad, m, u, t, lr, beta1, beta2, eps, **options):
        arrays = [np.asarray(x, dtype=dtype) for x in (param, grad, m, u)]
        lists = [a.reshape(-1).tolist() for a in arrays]
        out = reference.adamax_step(*lists, t, lr, beta1, beta2, eps, arithmetic=dtype, **options)
        result = tuple(np.array(x, dtype=dtype).reshape(arrays[0].shape) for x in out)
        return tuple(float(x) for x in result) if np.ndim(param) == 0 and dtype == "float64" else result

    return step


@pytest.mark.parametrize("convention", ["spec", "torch"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adamax_cy_and_the_reference_conform(convention, dtype, seed):
    common = dict(convention=convention, dtype=dtype, vary=ALL_OPTIONS, max_examples=40, seed=seed)
    assert_conforms(functional(adamax_cy.adamax_step, convention=convention), **common)
    assert_conforms(in_place(adamax_cy.adamax_step_inplace, convention=convention), **common)
    assert_conforms(functional(_reference_step(dtype), convention=convention), **common)


def test_adamax_step_many_conforms_through_an_in_place_wrapper(seed):
    def many(param, grad, m, u, t, **kw):
        adamax_cy.adamax_step_many([param], [grad], [m], [u], t, **kw)

    assert_conforms(many, in_place=True, dtype="float32", vary=ALL_OPTIONS, max_examples=40, seed=seed)


def test_the_other_convention_is_rejected_in_u(seed):
    for implementation, convention in (("torch", "spec"), ("spec", "torch")):
        report = check_conformance(
            functional(adamax_cy.adamax_step, convention=implementation),
            convention=convention, max_examples=10, seed=seed,
        )
        assert report.mismatch.formula == "u"


def lerp_first_moment(param, grad, m, u, t, lr, beta1, beta2, eps):
    """Spec convention with m computed like torch.lerp (weight 1 - beta1)."""
    b1, w, b2, e, c = _coefficients(param, t, lr, beta1, beta2, eps)
    if w < 0.5:
        m = m + w * (grad - m)
    else:
        m = grad - (grad - m) * (np.asarray(param).dtype.type(1) - w)
    u = np.maximum(b2 * u, np.abs(grad))
    return param - c * (m / (u + e)), m, u


def test_lerp_breaks_m_on_infinities():
    """0.9·inf + 0.1·0 is inf, but inf + 0.1·(0 − inf) is NaN."""
    report = check_conformance(lerp_first_moment, tolerance={"m": 1000}, max_examples=1, seed=0)
    assert report.mismatch.formula == "m" and "nan" in report.mismatch.detail


def test_tolerances_are_widened_only_explicitly(seed):
    # lerp's weight 1 - beta1, rounded to float32, carries beta1 = 1e-5 only to
    # 3 digits: held at the default, lerp is within a few ulps of the terms.
    common = dict(dtype="float32", nonfinite=False, options={"beta1": 0.9}, max_examples=50, seed=seed)
    strict = check_conformance(lerp_first_moment, **common)
    assert strict.mismatch.formula == "m" and not strict.widened
    widened = check_conformance(lerp_first_moment, tolerance={"m": 4}, **common)
    assert widened.conforms, str(widened)
    assert widened.widened and "WIDENED" in str(widened)
    assert widened.tolerance == TOLERANCES["float32"].widen(m=4)
    with pytest.raises(ValueError, match="cannot narrow"):
        TOLERANCES["float64"].widen(param=0)
    with pytest.raises(ValueError):
        Tolerance(m=-1)


def test_assert_conforms_raises_with_the_verdict(seed):
    with pytest.raises(AssertionError, match=r"first wrong output: u") as info:
        assert_conforms(abs_forgotten, max_examples=5, seed=seed)
    assert "smallest failing case" in str(info.value)


def test_a_step_that_raises_or_modifies_its_input_is_reported(seed):
    def raises(param, grad, m, u, t, **kw):
        raise ZeroDivisionError("boom")

    report = check_conformance(raises, max_examples=5, seed=seed)
    assert report.mismatch.reason == "raised" and "boom" in report.mismatch.detail

    def modifies(param, grad, m, u, t, **kw):
        out = adamax_cy.adamax_step(param, grad, m, u, t, **kw)
        if isinstance(m, np.ndarray):
            m[...] = out[1]
        return out

    report = check_conformance(modifies, dtype="float32", max_examples=5, seed=seed)
    assert report.mismatch.reason == "modified input"


def test_the_json_report_is_strict_json(seed):
    report = check_conformance(nan_dropped_by_max, max_examples=5, seed=seed)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["conforms"] is False and data["mismatch"]["formula"] == "u"


def test_importing_adamax_cy_does_not_import_hypothesis(tmp_path):
    code = "import sys, adamax_cy; assert 'hypothesis' not in sys.modules, 'hypothesis imported'"
    # Outside the checkout, so the installed package is imported, not the sources.
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_the_command_line(tmp_path, capsys, seed):
    from adamax_cy.cli.conform import main

    (tmp_path / "mine.py").write_text(
        "import numpy as np\n"
        "from adamax_cy import adamax_step\n"
        "def step_torch(*args, **kw):\n"
        "    return adamax_step(*args, convention='torch', **kw)\n"
        "def no_abs(param, grad, m, u, t, lr, beta1, beta2, eps):\n"
        "    m = beta1 * m + (1 - beta1) * grad\n"
        "    u = np.maximum(beta2 * u, grad)\n"
        "    return param - lr / (u + eps) * m / (1 - beta1**t), m, u\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        common = ["--max-examples", "10", "--seed", str(seed)]
        assert main(["mine:step_torch", "--convention", "torch", "--dtype", "float32", *common]) == 0
        assert "CONFORMS" in capsys.readouterr().out
        assert main(["mine:no_abs", "--json", *common]) == 1
        data = json.loads(capsys.readouterr().out)
        assert data["mismatch"]["formula"] == "u"
        assert main(["mine:missing", *common]) == 2
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mine", None)


def test_the_pytest_fixture_in_three_lines(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["adamax_cy.testing"]\n')
    (tmp_path / "test_mine.py").write_text(textwrap.dedent(
        """
        import adamax_cy
        from adamax_cy.testing import functional

        def test_conforms(adamax_conformance):
            adamax_conformance(adamax_cy.adamax_step, max_examples=5)

        def test_wrong(adamax_conformance):
            adamax_conformance(functional(adamax_cy.adamax_step, convention="torch"), max_examples=5)
        """
    ))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    assert "first wrong output: u" in result.stdout


# ------------------------------------------------ the contract at every edge


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "options",
    [{"weight_decay": 0.01}, {"maximize": True}, {"weight_decay": 0.01, "decoupled_weight_decay": True},
     {"eps": 1e-7, "lr": 0.001}],
    ids=["l2", "maximize", "decoupled", "keras-defaults"],
)
def test_options_held_fixed_are_judged_by_the_references_own_result(options, dtype, seed):
    """The spec's table holds only with its defaults and options; with others held
    fixed, the worked examples' expectation is the reference's result for the same inputs."""
    for step in (functional(adamax_cy.adamax_step), in_place(adamax_cy.adamax_step_inplace)):
        report = assert_conforms(step, dtype=dtype, options=options, max_examples=10, seed=seed)
        assert report.worked_examples == len(reference.WORKED_EXAMPLES)


def test_the_command_line_accepts_an_option_held_fixed(capsys, seed):
    from adamax_cy.cli.conform import main

    argv = ["adamax_cy:adamax_step", "--option", "weight_decay=0.01", "--max-examples", "5", "--seed", str(seed)]
    assert main(argv) == 0, capsys.readouterr().out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "options",
    [{"eps": 0.0}, {"lr": 1e-320}, {"lr": 1e-40}, {"lr": 1.5 * 2.0**-149}, {"lr": 1.7e308, "beta1": 0.5}],
    ids=["eps0", "lr1e-320", "lr1e-40", "lr-float32-subnormal", "lr-huge"],
)
def test_extreme_hyperparameters_held_fixed_are_accepted(options, dtype, seed):
    """eps = 0 with a subnormal gradient overflows lr / d in the reference's order (the
    overflow exemption); a subnormal lr makes lr / d subnormal there (the allowance
    scaled by m̂) and lr / (1 - beta1**t) subnormal in the kernel's (scaled by m_t / d)."""
    for step in (functional(adamax_cy.adamax_step), in_place(adamax_cy.adamax_step_inplace),
                 functional(_reference_step(dtype))):
        assert_conforms(step, dtype=dtype, options=options, max_examples=20, seed=seed)


def test_an_infinite_first_moment_times_an_underflowed_step_size():
    """m = inf: the kernel's c·(m/d) is -inf where the reference's (lr/d)·m̂ is 0·inf = NaN
    (lr/d underflowed). Both are accepted; a finite θ or the wrong infinity is not."""
    hyper = {"lr": 1e-10, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    case = Case(param=np.array(0.0, np.float32), m=np.array(np.inf, np.float32), u=np.array(0.0, np.float32),
                t=1, grads=(np.array(3e38, np.float32),), hyperparameters=hyper)
    tol = TOLERANCES["float32"]
    for step in (functional(adamax_cy.adamax_step), functional(_reference_step("float32"))):
        assert _run_case(step, case, "spec", tol) is None

    def gives(theta):
        def step(param, grad, m, u, t, **kw):
            _, m_t, u_t = adamax_cy.adamax_step(param, grad, m, u, t, **kw)
            return np.asarray(theta, np.float32), m_t, u_t
        return functional(step)

    for wrong in (np.inf, 0.0):
        assert _run_case(gives(wrong), case, "spec", tol).formula == "θ"


IMPLEMENTATIONS = {
    "adamax_step": lambda convention, dtype: functional(adamax_cy.adamax_step, convention=convention),
    "adamax_step_inplace": lambda convention, dtype: in_place(adamax_cy.adamax_step_inplace, convention=convention),
    "Adamax": lambda convention, dtype: numpy_optimizer(adamax_cy.Adamax, convention=convention),
    "reference": lambda convention, dtype: functional(_reference_step(dtype), convention=convention),
}

@st.composite
def option_sets(draw):
    """Any subset of the hyperparameters and options (small ones most often), each over
    its whole legal range."""
    names = draw(st.sets(st.sampled_from(HYPERPARAMETERS + OPTIONS)))
    return {name: draw(RANGES[name]) for name in sorted(names)}


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_harness_accepts_every_implementation_on_any_legal_input(data):
    """For any legal input and any option set the harness supports, the harness accepts
    adamax_step, adamax_step_inplace, the Adamax optimizer and the reference's own float64
    and float32 modes, in both conventions and dtypes: the worked examples (with the
    table where it applies), the edge cases, and a case drawn over the whole legal range
    (hyperparameters subnormal to huge, eps = 0, beta1 near 1, t up to 2**63 - 1, special
    values in the state)."""
    dtype = data.draw(st.sampled_from(["float64", "float32"]), label="dtype")
    convention = data.draw(st.sampled_from(["spec", "torch"]), label="convention")
    fixed = data.draw(option_sets(), label="options")
    free = [o for o in OPTIONS if o not in fixed]
    vary = data.draw(st.lists(st.sampled_from(free), unique=True), label="vary") if free else []
    case = data.draw(cases(dtype, fixed, vary, nonfinite=True, full_range=True), label="case")
    tol = TOLERANCES[dtype]
    with np.errstate(all="ignore"):
        for name, make in IMPLEMENTATIONS.items():
            adapter = make(convention, dtype)
            mismatch, _, _ = run_fixed_cases(adapter, dtype, convention, fixed, True, tol)
            mismatch = mismatch or _run_case(adapter, case, convention, tol)
            assert mismatch is None, f"{name}:\n{mismatch.describe(convention)}"


# --------------------------------------------- a failure that does not reproduce


def _fixed_case_calls(dtype="float64"):
    """How many steps the worked examples and edge cases take, so a fault can be put after them."""
    calls = 0

    def counting(*args, **kwargs):
        nonlocal calls
        calls += 1
        return adamax_cy.adamax_step(*args, **kwargs)

    mismatch, _, _ = run_fixed_cases(functional(counting), dtype, "spec", {}, True, TOLERANCES[dtype])
    assert mismatch is None
    return calls


@pytest.mark.parametrize("fault", ["value", "raise"])
def test_a_failure_that_does_not_reproduce_is_reported_not_raised(fault, seed):
    """A step wrong only once (a data race, say) is not deterministic: hypothesis cannot
    replay it. The verdict is DOES NOT CONFORM with the mismatch seen, and says that the
    case conformed when run again; nothing is raised."""
    at = _fixed_case_calls() + 3
    calls, done = 0, False

    def once(*args, **kwargs):
        nonlocal calls, done
        calls += 1
        theta, m, u = adamax_cy.adamax_step(*args, **kwargs)
        # Once, on a generated step whose θ is plainly wrong when moved by 1.
        if calls >= at and not done and np.all(np.abs(theta) < 1e6):
            done = True
            if fault == "raise":
                raise RuntimeError("a one-off failure")
            theta = theta + 1.0
        return theta, m, u

    report = check_conformance(once, max_examples=30, seed=seed, test_vectors=False)
    assert calls > at and not report.conforms
    mm = report.mismatch
    if fault == "raise":
        assert mm.reason.startswith("raised") and "RuntimeError: a one-off failure" in mm.detail
    else:
        assert mm.formula == "θ"
    text = str(report)
    assert "verdict: DOES NOT CONFORM" in text and "did not reproduce" in text
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["conforms"] is False


@pytest.mark.parametrize("options, says", [
    ({"lr": float("nan")}, "lr"),
    ({"lr": -1e-3}, "lr"),
    ({"eps": -1.0}, "eps"),
    ({"eps": float("inf")}, "eps"),
    ({"beta1": 1.0}, "beta1"),
    ({"beta2": -0.5}, "beta2"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"maximize": 2}, "maximize"),
    ({"decoupled_weight_decay": 1.0}, "decoupled_weight_decay"),
    ({"lr": "0.1"}, "lr"),
])
def test_option_values_outside_their_legal_range_are_refused(options, says):
    """An illegal value held fixed is the caller's mistake: refused before any step runs (a
    permissive implementation would "conform", a validating one be judged wrong)."""
    calls = []

    def step(*args, **kwargs):
        calls.append(1)
        return adamax_cy.adamax_step(*args, **kwargs)

    with pytest.raises(ValueError, match=says):
        check_conformance(step, options=options, max_examples=5, seed=0)
    assert calls == []


@pytest.mark.parametrize("max_examples, error", [
    (0, ValueError), (-1, ValueError), (10**7, ValueError), (1.5, TypeError), (True, TypeError),
])
def test_a_number_of_generated_cases_out_of_range_is_refused(max_examples, error):
    calls = []

    def step(*args, **kwargs):
        calls.append(1)
        return adamax_cy.adamax_step(*args, **kwargs)

    with pytest.raises(error, match="max_examples"):
        check_conformance(step, max_examples=max_examples, seed=0)
    assert calls == []


@pytest.mark.parametrize("target", [3.14, "adamax_cy:adamax_step", None])
def test_a_target_that_is_not_callable_is_refused(target):
    with pytest.raises(TypeError, match="callable"):
        check_conformance(target, max_examples=1, seed=0)


@pytest.mark.parametrize("convention", ["spec", "torch"])
def test_the_numpy_optimizer_class_is_checked_through_its_state_dict(convention, seed):
    """A class that is not a torch optimizer, like adamax_cy.Adamax, is run through the NumPy
    optimizer adapter; a wrong one is rejected."""
    report = check_conformance(adamax_cy.Adamax if convention == "spec" else
                               numpy_optimizer(adamax_cy.Adamax, convention="torch"),
                               convention=convention, vary=ALL_OPTIONS, max_examples=30, seed=seed)
    assert report.conforms, str(report)

    class NoBiasCorrection(adamax_cy.Adamax):
        def step(self, grads):
            steps = list(self._steps)
            self._steps = [0 for _ in steps]  # every step is the first: bias correction 1 - beta1
            done = super().step(grads)
            self._steps = [s + 1 for s in steps]
            return done

    report = check_conformance(NoBiasCorrection, max_examples=30, seed=seed)
    assert not report.conforms and report.mismatch.formula == "θ"


def late_bias(param, grad, m, u, t, lr=0.002, beta1=0.9, beta2=0.999, eps=1e-8, **kw):
    """Drops the bias correction once t is "large": wrong wherever 1 - beta1**t still differs from 1."""
    if t > 1000:
        lr = lr * (1.0 - beta1**t)
    return adamax_cy.adamax_step(param, grad, m, u, t, lr, beta1, beta2, eps, **kw)


@pytest.mark.parametrize("run", range(5))
def test_a_bias_correction_bug_at_large_t_is_caught_by_the_test_vectors(run, seed):
    """The harness runs the test vectors that apply, after the edge cases: large step numbers
    and the bias-correction window every time, whatever the seed."""
    report = check_conformance(late_bias, max_examples=20, seed=seed + run)
    assert not report.conforms
    assert report.mismatch.formula == "θ" and report.mismatch.t > 1000
    assert report.mismatch.case.label.startswith("test vector ")
    assert report.test_vectors > 0 and "test vector" in str(report)


@pytest.mark.parametrize("beta1", [0.9, 0.99, 0.999, 0.9999])
def test_generated_step_numbers_reach_where_the_bias_correction_matters(beta1):
    """Generated step numbers reach the window where 1 - beta1**t still differs from 1 (and
    the late part of it, t > 1000, where beta1 is near 1); bias_window is that window."""
    from hypothesis import find

    from adamax_cy.testing._cases import _step_numbers, bias_window

    window = bias_window(beta1)
    assert 1.0 - beta1 ** (window - 1) != 1.0 and 1.0 - beta1**window == 1.0
    low = min(1000, window // 2)
    t = find(_step_numbers(beta1, False), lambda t: low < t <= window,
             settings=settings(database=None, max_examples=200))
    assert low < t <= window
