"""How the installed frameworks conform: torch, Optax/JAX, Keras on each backend.

From the shell: ``adamax-cy frameworks --out frameworks`` or
``python -m adamax_cy.testing.frameworks --out frameworks`` (the command is
:mod:`adamax_cy.cli.frameworks`).

:func:`report` runs every installed framework's Adamax through
:func:`adamax_cy.testing.check_conformance` under each convention and dtype,
each run in its own subprocess (with a timeout), and writes a JSON file and a
Markdown table: framework, version, dtype, convention, verdict, the
allowances it needed and the worst differences in ulps for m, u and θ.

Known, explained departures are handled by **named allowances**, never by
widening a tolerance by hand; each is stated in the report where it was used:

``lerp``
    ``m_t`` computed as ``m + (g − m)·(1 − β1)`` (Keras, and torch's
    ``lerp``) instead of ``β1·m + (1 − β1)·g``: equal in exact arithmetic,
    a few ulps apart in floating point. Rounding ``g − m`` costs up to
    2 ulp of the formula's largest term ``S`` once carried by ``1 − β1``,
    the product 1 and the sum ½ (3.5 in all); in float32 the coefficients
    ``1 − f32(1 − β1)`` and ``f32(β1)`` differ, 1.5 more: ``m`` may differ
    by 3.5 ulp(S) in float64 and 5 in float32, and ``θ`` by the effect of
    that difference. For ``β1 < 0.5``, where ``g − m`` can be far larger than
    formula 1's terms, the bound is ``4/(1 − β1)`` ulp of ``max(|m|, |g|, |m_t|)``
    (2.5 for the form, 1.5 for the reference, and the growth as the
    implementation carries its own ``m``). From an infinite ``m`` or ``g`` the form gives NaN
    (``inf + w·(g − inf)``) where the spec keeps the infinity: such elements
    are skipped and counted.
``flush-subnormals``
    XLA on CPU flushes subnormal inputs and results to zero. An element
    whose inputs or any intermediate of the step is subnormal is skipped
    (the reference's result is taken for it), and the report counts them.
``float32-bias-correction``
    ``1 − β1^t`` computed in float32 (Optax without x64, Keras in float32)
    instead of in double and rounded. With ``β1' = f32(β1)`` (relative error
    ≤ u = 2⁻²⁴), ``pow`` within one ulp (2u) and the subtraction and the
    reference's rounding within u·bc each,
    ``|bc' − bc| / bc ≤ β1^t·((1 + u)^t·(1 + 2u) − 1) / bc + 2u =: ρ``, and
    the update, proportional to ``1/bc``, moves by at most ``|Δ|·ρ/(1 − ρ)``:
    that much more is allowed on θ. ``ρ`` is the condition number
    ``β1^t / (1 − β1^t)`` times a few u: about 1e4·3u at β1 = 0.9999, t = 1.

A run starts strict; when it fails, the allowance that matches the failure
(a subnormal in the failing case; ``m`` wrong; θ wrong in float32) is added
and the run repeated, until it conforms or no allowance explains the failure.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from .._version import __version__
from ..reference import adamax_trace
from ._adapters import Adapter, UnsupportedCase, optimizer
from ._harness import check_conformance

__all__ = ["ALLOWANCES", "FRAMEWORKS", "RUNS", "bias_correction_bound", "check", "installed", "markdown",
           "report", "run_one", "runs_of"]

ALLOWANCES = {
    "lerp": "m computed as m + (g − m)·(1 − β1): m within 3.5 ulp (float64) / 5 ulp (float32) of its largest "
            "term; elements with an infinite m or g (NaN in this form) skipped",
    "flush-subnormals": "subnormals flushed to zero (XLA on CPU): elements with a subnormal input or intermediate skipped",
    "float32-bias-correction": "1 − β1^t computed in float32: θ within the derived bound |Δ|·ρ/(1 − ρ) more",
}
_ORDER = ("lerp", "flush-subnormals", "float32-bias-correction")
_LERP_ULPS = {"float64": 3.5, "float32": 5.0}

#: framework name -> (module that must be importable, environment for its subprocess)
FRAMEWORKS: dict[str, tuple[str, dict[str, str]]] = {
    "torch": ("torch", {}),
    "optax": ("optax", {"JAX_PLATFORMS": "cpu"}),
    "keras-jax": ("keras", {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}),
    "keras-torch": ("keras", {"KERAS_BACKEND": "torch"}),
    "keras-tensorflow": ("tensorflow", {"KERAS_BACKEND": "tensorflow"}),
}
_BACKEND_MODULE = {"keras-jax": "jax", "keras-torch": "torch", "keras-tensorflow": "tensorflow"}


def bias_correction_bound(beta1: float, t: int) -> float:
    """``ρ``: the relative difference between a float32 ``1 − β1^t`` and the contract's."""
    u = 2.0**-24
    power = beta1**t
    bc = 1.0 - power
    if not bc > 0:
        return math.inf
    growth = math.expm1(t * math.log1p(u))  # (1 + u)^t − 1 without cancellation
    rho = power * ((1 + growth) * (1 + 2 * u) - 1) / bc + 2 * u
    return rho * (1 + 2.0**-20)  # second-order terms


# ------------------------------------------------------------ the adapters


def _plain(hyper: Mapping[str, Any]) -> None:
    extra = set(hyper) - {"lr", "beta1", "beta2", "eps"}
    if extra:
        raise UnsupportedCase(f"no {', '.join(sorted(extra))} in this adapter")


def _optax_adapter() -> Any:
    base: Any = Adapter

    class OptaxAdamax(base):
        name = "optax.adamax"

        def steps(self, case: Any) -> Iterator[Any]:
            jnp = importlib.import_module("jax.numpy")
            optax = importlib.import_module("optax")

            h = case.hyperparameters
            _plain(h)
            tx = optax.adamax(learning_rate=h["lr"], b1=h["beta1"], b2=h["beta2"], eps=h["eps"])
            param = jnp.asarray(case.param)
            state = tx.init(param)
            first = state[0]._replace(count=jnp.asarray(case.t - 1, jnp.int32), mu=jnp.asarray(case.m),
                                      nu=jnp.asarray(case.u))
            state = (first, *state[1:])
            for grad in case.grads:
                updates, state = tx.update(jnp.asarray(grad), state, param)
                param = optax.apply_updates(param, updates)
                yield np.asarray(param).copy(), np.asarray(state[0].mu).copy(), np.asarray(state[0].nu).copy()

    return OptaxAdamax()


def _keras_adapter() -> Any:
    base: Any = Adapter

    class KerasAdamax(base):
        name = "keras.optimizers.Adamax"

        def steps(self, case: Any) -> Iterator[Any]:
            keras = importlib.import_module("keras")

            h = case.hyperparameters
            _plain(h)
            dtype = str(case.dtype)
            var = keras.Variable(case.param.copy(), dtype=dtype)
            opt = keras.optimizers.Adamax(learning_rate=h["lr"], beta_1=h["beta1"], beta_2=h["beta2"],
                                          epsilon=h["eps"])
            opt.build([var])
            opt.iterations.assign(case.t - 1)
            opt._m[0].assign(case.m.copy())
            opt._u[0].assign(case.u.copy())

            def out(v: Any) -> np.ndarray:
                return np.array(keras.ops.convert_to_numpy(v.value), copy=True)

            for grad in case.grads:
                opt.apply_gradients([(keras.ops.convert_to_tensor(grad.copy(), dtype=dtype), var)])
                yield out(var), out(opt._m[0]), out(opt._u[0])

    return KerasAdamax()


def _adapter(framework: str) -> Any:
    if framework == "torch":
        import torch

        return optimizer(torch.optim.Adamax, name="torch.optim.Adamax")
    if framework == "optax":
        return _optax_adapter()
    return _keras_adapter()


def _version(framework: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    names = {"torch": ["torch"], "optax": ["optax", "jax"]}.get(framework, ["keras", _BACKEND_MODULE.get(framework, "")])
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(parts)


# ---------------------------------------------------------- the allowances


def _subnormal(x: float, dtype: str) -> bool:
    return 0 < abs(x) < float(np.finfo(dtype).tiny)


@dataclasses.dataclass
class _Measure:
    m: float = 0.0
    u: float = 0.0
    theta: float = 0.0
    skipped: int = 0
    bias_corrected: int = 0

    def ulps(self, name: str, got: float, want: float, unit: float) -> None:
        if math.isfinite(got) and math.isfinite(want) and unit > 0:
            setattr(self, name, max(getattr(self, name), abs(got - want) / unit))


def _with_allowances(inner: Any, allowances: Sequence[str], convention: str, measure: _Measure) -> Any:
    """An adapter that applies the named allowances to ``inner``'s outputs and measures them."""
    base: Any = Adapter

    class Allowed(base):
        name = inner.name

        def steps(self, case: Any) -> Iterator[Any]:
            dtype = str(case.dtype)
            spacing = lambda x: float(np.spacing(np.abs(np.asarray(x, dtype=dtype))))  # noqa: E731
            hyper = dict(case.hyperparameters)
            state = (case.param, case.m, case.u)
            # What replacing θ by the reference's moved it by: the implementation keeps
            # its own θ, so later steps are judged after taking that back out.
            offset = np.zeros(case.param.size)
            for k, actual in enumerate(inner.steps(case)):
                t = case.t + k
                grad = case.grads[k]
                theta, m, u = (np.array(a, copy=True) for a in actual)
                if theta.shape != case.param.shape or m.shape != theta.shape or u.shape != theta.shape:
                    yield theta, m, u  # the harness reports it
                    state = (theta, m, u)
                    continue
                flat = [a.reshape(-1) for a in (theta, m, u)]
                with np.errstate(all="ignore"):
                    flat[0][:] = flat[0] - offset
                starts = [a.reshape(-1) for a in state]
                for i, g in enumerate(grad.reshape(-1)):
                    p0, m0, u0 = (float(a[i]) for a in starts)
                    tr = adamax_trace(p0, float(g), m0, u0, t, convention=convention, arithmetic=dtype, **hyper)
                    got = [float(a[i]) for a in flat]
                    if "flush-subnormals" in allowances:
                        values = [p0, float(g), m0, u0, *(float(getattr(tr, f.name)) for f in dataclasses.fields(tr)),
                                  float(hyper["beta1"]) * m0, (1 - float(hyper["beta1"])) * float(tr.g),
                                  float(hyper["beta2"]) * u0]
                        if any(_subnormal(v, dtype) for v in values):
                            offset[i] += _moved(got[0], float(tr.param_t))
                            flat[0][i], flat[1][i], flat[2][i] = tr.param_t, tr.m_t, tr.u_t
                            measure.skipped += 1
                            continue
                    if "lerp" in allowances and (math.isinf(m0) or math.isinf(float(tr.g))):
                        offset[i] += _moved(got[0], float(tr.param_t))
                        flat[0][i], flat[1][i], flat[2][i] = tr.param_t, tr.m_t, tr.u_t
                        measure.skipped += 1
                        continue
                    # In the harness's units: ulps of formula 1's largest term, of max(u_t, |g|), of θ.
                    beta1 = float(hyper["beta1"])
                    terms = (abs(beta1 * m0), abs((1 - beta1) * float(tr.g)), abs(float(tr.m_t)))
                    measure.ulps("m", got[1], float(tr.m_t), spacing(max(terms)))
                    measure.ulps("u", got[2], float(tr.u_t), spacing(max(abs(float(tr.u_t)), abs(float(tr.g)))))
                    measure.ulps("theta", got[0], float(tr.param_t), spacing(max(abs(p0), abs(float(tr.param_t)))))
                    if "lerp" in allowances and beta1 < 0.5:
                        # Below 0.5, g − m can be far larger than formula 1's terms: the lerp
                        # form's error is bounded in ulps of max(|m|, |g|, |m_t|) instead (2.5,
                        # plus the reference's 1.5), growing to 4/(1 − β1) as the implementation
                        # carries its own m from step to step.
                        dm = abs(got[1] - float(tr.m_t))
                        scale = spacing(max(abs(m0), abs(float(tr.g)), abs(float(tr.m_t))))
                        if 0 < dm <= 4 / (1 - beta1) * scale:
                            theta_allowed = (spacing(max(abs(p0), abs(float(tr.param_t)))) + 4 * spacing(tr.update)
                                             + abs(float(tr.step_size) * dm / float(tr.bias_correction)))
                            if abs(got[0] - float(tr.param_t)) <= theta_allowed:
                                offset[i] += _moved(got[0], float(tr.param_t))
                                flat[0][i] = tr.param_t
                            flat[1][i] = tr.m_t
                    if "float32-bias-correction" in allowances and dtype == "float32":
                        rho = bias_correction_bound(float(np.float32(hyper["beta1"])), t)
                        update = abs(float(tr.update))
                        allowed = (spacing(max(abs(p0), abs(float(tr.param_t)))) + 4 * spacing(tr.update)
                                   + (update * rho / (1 - rho) if rho < 1 else math.inf))
                        dm, du = abs(got[1] - float(tr.m_t)), abs(got[2] - float(tr.u_t))
                        if dm and float(tr.bias_correction):
                            allowed += abs(float(tr.step_size) * dm / float(tr.bias_correction))
                        if du and float(tr.denominator):
                            allowed += abs(update * du / float(tr.denominator))
                        if abs(got[0] - float(tr.param_t)) <= allowed and got[0] != tr.param_t:
                            offset[i] += _moved(got[0], float(tr.param_t))
                            flat[0][i] = tr.param_t
                            measure.bias_corrected += 1
                state = (theta, m, u)
                yield theta, m, u

    return Allowed()


def _moved(got: float, want: float) -> float:
    """How far replacing ``got`` by ``want`` moves θ (0 where either is not finite)."""
    return got - want if math.isfinite(got) and math.isfinite(want) else 0.0


def _suggest(mismatch: Any, dtype: str, tried: Sequence[str]) -> Optional[str]:
    """The allowance that explains a failure, if one does."""
    if mismatch is None or mismatch.formula is None:
        return None
    arrays = [mismatch.case.param, mismatch.case.m, mismatch.case.u, *mismatch.case.grads]
    arrays += [a for triple in (mismatch.start, mismatch.expected, mismatch.actual) if triple for a in triple]
    if "flush-subnormals" not in tried and any(
            _subnormal(float(x), dtype) for a in arrays for x in np.ravel(a)):
        return "flush-subnormals"
    if mismatch.formula == "m" and "lerp" not in tried:  # includes NaN from an infinite m
        return "lerp"
    if mismatch.formula == "θ" and dtype == "float32" and "float32-bias-correction" not in tried:
        return "float32-bias-correction"
    return None


#: The runs per framework, dtype and convention: the harness's ranges, then
#: beta1 held at 0.9999, where the bias correction 1 − β1^t is worst conditioned.
RUNS: tuple[Mapping[str, Any], ...] = ({}, {"beta1": 0.9999})


def check(adapter: Any, allowances: Sequence[str], convention: str, dtype: str,
          options: Optional[Mapping[str, Any]] = None, max_examples: int = 100,
          seed: Optional[int] = 0, **harness: Any) -> tuple[Any, "_Measure"]:
    """:func:`adamax_cy.testing.check_conformance` with the named allowances; the report and the measures.

    ``harness`` holds further keyword arguments of ``check_conformance``; a
    ``tolerance`` there is widened for ``m`` by the ``lerp`` allowance.
    """
    for name in allowances:
        if name not in ALLOWANCES:
            raise ValueError(f"unknown allowance {name!r}; known: {', '.join(ALLOWANCES)}")
    measure = _Measure()
    wrapped = _with_allowances(adapter, list(allowances), convention, measure)
    tolerance = dict(harness.pop("tolerance", None) or {})
    if "lerp" in allowances:
        tolerance["m"] = max(tolerance.get("m", 0.0), _LERP_ULPS[dtype])
    result = check_conformance(wrapped, convention=convention, dtype=dtype, tolerance=tolerance or None,
                               options=options, max_examples=max_examples, seed=seed, **harness)
    return result, measure


def run_one(framework: str, convention: str, dtype: str, max_examples: int = 100, seed: int = 0,
            options: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """One framework, convention and dtype through the harness, adding allowances as failures call for them."""
    inner = _adapter(framework)
    allowances: list[str] = []
    runs = 0
    started = time.perf_counter()
    while True:
        runs += 1
        result, measure = check(inner, allowances, convention, dtype, options, max_examples, seed)
        nxt = None if result.conforms else _suggest(result.mismatch, dtype, allowances)
        if nxt is None:
            break
        allowances.append(nxt)
    mm = result.mismatch
    return {
        "framework": framework, "version": _version(framework), "dtype": dtype, "convention": convention,
        "options": dict(options or {}),
        "verdict": "conforms" if result.conforms else "does not conform",
        "allowances": allowances,
        "worst_ulps": {"m": measure.m, "u": measure.u, "theta": measure.theta},
        "skipped_elements": measure.skipped, "bias_corrected_elements": measure.bias_corrected,
        "first_wrong": None if mm is None else {"formula": mm.formula, "reason": mm.reason, "detail": mm.detail,
                                                "t": mm.t},
        "cases": result.worked_examples + result.edge_cases + result.generated_cases, "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
    }


# ---------------------------------------------------------------- the report


def installed() -> dict[str, Optional[str]]:
    """framework -> None if it can run here, else the reason it is skipped."""
    out: dict[str, Optional[str]] = {}
    for name, (module, _) in FRAMEWORKS.items():
        needed = list(dict.fromkeys([module, _BACKEND_MODULE.get(name, module)]))
        missing = [m for m in needed if importlib.util.find_spec(m) is None]
        out[name] = f"{', '.join(missing)} not installed" if missing else None
    return out


def _subprocess_run(framework: str, dtype: str, max_examples: int, seed: int, timeout: float,
                    quick: bool = False) -> list[dict[str, Any]]:
    env = {**os.environ, **FRAMEWORKS[framework][1]}
    if dtype == "float64":
        env["JAX_ENABLE_X64"] = "1"
    else:
        env.pop("JAX_ENABLE_X64", None)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # above adamax_cy/
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "adamax_cy.testing.frameworks", "--one", framework, "--dtype", dtype,
           "--max-examples", str(max_examples), "--seed", str(seed)] + (["--quick"] if quick else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return [{"framework": framework, "dtype": dtype, "error": f"no result within {timeout:g} s"}]
    if done.returncode != 0:
        return [{"framework": framework, "dtype": dtype, "error": done.stderr.strip()[-800:]}]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def markdown(doc: Mapping[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = [
        f"Run on {doc['date']} ({doc['platform']}, Python {doc['python']}, adamax_cy {doc['adamax_cy']}); "
        f"{doc['max_examples']} generated cases per run, seed {doc['seed']}.",
        "",
        "| framework | versions | dtype | convention | held fixed | verdict | allowances needed | worst m ulp "
        "| worst u ulp | worst θ ulp | first wrong |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        if "error" in r:
            lines.append(f"| {r['framework']} | | {r.get('dtype', '')} | | | error | | | | | {r['error'][:120]} |")
            continue
        w = r["worst_ulps"]
        first = r["first_wrong"]
        first_text = "" if first is None else f"{first['formula']} ({first['reason']}, t={first['t']})"
        lines.append(
            f"| {r['framework']} | {r['version']} | {r['dtype']} | {r['convention']} "
            f"| {', '.join(f'{k}={v}' for k, v in r['options'].items()) or '—'} | {r['verdict']} "
            f"| {', '.join(r['allowances']) or 'none'} | {w['m']:.3g} | {w['u']:.3g} | {w['theta']:.3g} "
            f"| {first_text} |")
    if doc["skipped"]:
        lines += ["", "Not installed: " + "; ".join(f"{k} ({v})" for k, v in doc["skipped"].items()) + "."]
    lines += ["", "Allowances:", ""] + [f"- `{k}`: {v}" for k, v in ALLOWANCES.items()]
    return "\n".join(lines) + "\n"


def report(out: Optional[str] = None, frameworks: Optional[Sequence[str]] = None, max_examples: int = 100,
           seed: int = 0, timeout: float = 900.0) -> dict[str, Any]:
    """Run every installed framework (or those named) and write ``out.json`` and ``out.md``."""
    available = installed()
    names = list(frameworks or FRAMEWORKS)
    for name in names:
        if name not in FRAMEWORKS:
            raise ValueError(f"unknown framework {name!r}; known: {', '.join(FRAMEWORKS)}")
    results: list[dict[str, Any]] = []
    for name in names:
        if available[name] is None:
            for dtype in ("float32", "float64"):
                results += _subprocess_run(name, dtype, max_examples, seed, timeout)
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": f"{platform.system()} {platform.machine()}", "python": platform.python_version(),
        "adamax_cy": __version__, "max_examples": max_examples, "seed": seed,
        "skipped": {k: v for k, v in available.items() if k in names and v is not None},
        "allowances": ALLOWANCES, "results": results,
    }
    if out:
        with open(out + ".json", "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, allow_nan=False)
        with open(out + ".md", "w", encoding="utf-8") as f:
            f.write(markdown(doc))
    return doc


def runs_of(framework: str, dtype: str, max_examples: int = 100, seed: int = 0,
            quick: bool = False) -> Iterator[dict[str, Any]]:
    """Every run of one framework and dtype (:data:`RUNS` × both conventions), as :func:`run_one` rows.

    Meant for a process of its own (:func:`report` starts one per framework
    and dtype): JAX's 64-bit mode is switched on here for float64. With
    ``quick``, the first of :data:`RUNS` only.
    """
    if dtype == "float64" and framework in ("optax", "keras-jax"):
        importlib.import_module("jax").config.update("jax_enable_x64", True)
    for options in RUNS[:1] if quick else RUNS:
        for convention in ("spec", "torch"):
            yield run_one(framework, convention, dtype, max_examples, seed, options)


if __name__ == "__main__":
    from ..cli.frameworks import main

    sys.exit(main())
