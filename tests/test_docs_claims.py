"""What the documentation says about other frameworks, checked against them.

Each test checks one statement of the conformance page's "Parity with the
frameworks" section, or of the conventions page, against the real framework:
torch in this process, Optax (JAX) and Keras in a subprocess each (JAX's x64
switch and Keras's backend are fixed once per process). A test whose
framework is not installed is skipped, and says which.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import adamax_cy

HERE = Path(__file__).parent

#: The gaps the docs state, in float32 ulps of θ, from θ = 0 at t = 1.
DOCUMENTED_BIAS_GAPS = {0.9: 2, 0.99: 8, 0.9999: 1424}
#: The largest difference in m the docs state for Keras, in ulps of the largest term.
DOCUMENTED_KERAS_M_ULPS = {"torch": 2, "jax": 4}


def installed(*names: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


needs_torch = pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
needs_optax = pytest.mark.skipif(not installed("jax", "optax"), reason="jax and optax are not installed")
needs_keras = pytest.mark.skipif(not installed("keras"), reason="keras is not installed")


def ulps(actual: Any, expected: Any, dtype: type) -> float:
    """The largest distance, in ulps of ``expected``, of two arrays of ``dtype``."""
    a = np.asarray(actual, dtype).astype(np.float64)
    e = np.asarray(expected, dtype)
    return float(np.max(np.abs(a - e.astype(np.float64)) / np.spacing(np.abs(e)).astype(np.float64)))


def m_ulps(m_theirs: Any, m_before: Any, grad: Any, beta1: float, dtype: type) -> float:
    """Distance of ``m`` to ours, in ulps of formula 1's largest term."""
    m_before, grad = np.asarray(m_before, dtype), np.asarray(grad, dtype)
    ours = dtype(beta1) * m_before + dtype(1 - beta1) * grad
    scale = np.maximum(np.abs(dtype(beta1) * m_before), np.abs(dtype(1 - beta1) * grad))
    diff = np.abs(np.asarray(m_theirs, dtype).astype(np.float64) - ours.astype(np.float64))
    return float(np.max(diff / np.spacing(scale).astype(np.float64)))


def bias_gap(theirs_from_zero: Any, beta1: float) -> float:
    """θ after one step from θ = 0 (g = 0.5, t = 1), against ours, in ulps."""
    z = np.zeros(1, np.float32)
    ours = adamax_cy.adamax_step(z, np.full(1, 0.5, np.float32), z, z, 1, beta1=beta1)[0]
    return ulps(theirs_from_zero, ours, np.float32)


# --------------------------------------------------------------------------
# The measurements made in a subprocess, one per framework configuration


def _optax(x64: bool) -> dict[str, Any]:
    import jax

    jax.config.update("jax_enable_x64", x64)
    import jax.numpy as jnp
    import optax

    def run(param, grads, dtype, **kw):
        opt = optax.adamax(kw.pop("lr", 0.002), **kw)
        p = jnp.asarray(np.asarray(param, dtype))
        state = opt.init(p)
        out = []
        for g in grads:
            updates, state = opt.update(jnp.asarray(np.asarray(g, dtype)), state, p)
            p = optax.apply_updates(p, updates)
            out.append((np.asarray(p), np.asarray(state[0].mu), np.asarray(state[0].nu)))
        return out

    result: dict[str, Any] = {}
    if not x64:
        result["bias_gaps"] = {
            str(b1): bias_gap(run(np.zeros(1), [np.full(1, 0.5)], np.float32, b1=b1)[0][0], b1)
            for b1 in DOCUMENTED_BIAS_GAPS
        }
        result["m_after_subnormal_grad"] = float(run(np.ones(1), [np.full(1, 1e-40)], np.float32)[0][1][0])
        result["theta_eps0_zero_grad"] = float(run(np.ones(1), [np.zeros(1)], np.float32, eps=0.0)[0][0][0])
    else:
        rng = np.random.default_rng(3)
        p0 = rng.standard_normal(2000)
        grads = [rng.standard_normal(2000) for _ in range(20)]
        steps = run(p0, grads, np.float64, lr=0.002, b1=0.9, b2=0.999, eps=1e-8)
        param, m, u = p0, np.zeros(2000), np.zeros(2000)
        worst = {"m": 0.0, "u": 0.0, "theta_minus_contract": -math.inf, "dtype": str(steps[0][0].dtype)}
        for t, (g, (p_t, m_t, u_t)) in enumerate(zip(grads, steps), 1):
            from adamax_cy import reference

            for i in range(0, 2000, 97):  # the reference is plain Python: a sample
                tr = reference.adamax_trace(param[i], g[i], m[i], u[i], t, convention="torch")
                worst["m"] = max(worst["m"], abs(m_t[i] - tr.m_t))
                worst["u"] = max(worst["u"], abs(u_t[i] - tr.u_t))
                bound = 4 * np.spacing(abs(tr.update)) + np.spacing(max(abs(param[i]), abs(tr.param_t)))
                worst["theta_minus_contract"] = max(worst["theta_minus_contract"], abs(p_t[i] - tr.param_t) - bound)
            param, m, u = p_t, m_t, u_t
        result["float64"] = worst
    return result


def _keras() -> dict[str, Any]:
    import keras

    def run(param, grads, dtype, state=None, **kw):
        v = keras.Variable(np.asarray(param, dtype), dtype=dtype)
        opt = keras.optimizers.Adamax(**kw)
        opt.build([v])
        momentum, norm = opt.variables[-2], opt.variables[-1]
        if state is not None:
            momentum.assign(np.asarray(state[0], dtype))
            norm.assign(np.asarray(state[1], dtype))
        out = []
        for g in grads:
            opt.apply([keras.ops.convert_to_tensor(np.asarray(g, dtype))], [v])
            out.append((np.array(v.numpy()), np.array(momentum.numpy()), np.array(norm.numpy())))
        return out

    backend = keras.backend.backend()
    result: dict[str, Any] = {"backend": backend}
    rng = np.random.default_rng(1)
    dtypes = [np.float32] + ([np.float64] if backend == "torch" else [])
    for dtype in dtypes:
        p0 = rng.standard_normal(2000).astype(dtype)
        grads = [rng.standard_normal(2000).astype(dtype) for _ in range(20)]
        steps = run(p0, grads, dtype, learning_rate=0.001)
        m = np.zeros(2000, dtype)
        u = np.zeros(2000, dtype)
        worst_m = worst_u = 0.0
        for t, (g, (_, m_t, u_t)) in enumerate(zip(grads, steps), 1):
            _, _, ours_u = adamax_cy.adamax_step(p0, g, m, u, t, lr=float(np.float32(0.001)), eps=1e-7)
            worst_m = max(worst_m, m_ulps(m_t, m, g, 0.9, dtype))
            worst_u = max(worst_u, float(np.max(np.abs(u_t.astype(np.float64) - ours_u))))
            m, u = m_t, u_t
        result[np.dtype(dtype).name] = {"m_ulps": worst_m, "u_absdiff": worst_u}
    result["m_beta1_0"] = float(run(np.ones(1), [np.full(1, 1e-20)], np.float32, state=(np.ones(1), np.zeros(1)),
                                    learning_rate=0.001, beta_1=0.0)[0][1][0])
    result["m_after_subnormal_grad"] = float(run(np.ones(1), [np.full(1, 1e-40)], np.float32, learning_rate=0.001)[0][1][0])
    result["theta_eps0_zero_grad"] = float(run(np.ones(1), [np.zeros(1)], np.float32, learning_rate=0.001, epsilon=0.0)[0][0][0])
    result["bias_gaps"] = {
        str(b1): bias_gap(run(np.zeros(1), [np.full(1, 0.5)], np.float32, learning_rate=0.002, beta_1=b1, epsilon=1e-8)[0][0], b1)
        for b1 in DOCUMENTED_BIAS_GAPS
    }
    if backend == "torch":  # a float64 model (JAX without x64 has none)
        p0 = rng.standard_normal(500)
        g = rng.standard_normal(500)
        theta = run(p0, [g], np.float64, learning_rate=0.001)[0][0]
        zeros = np.zeros(500)
        as_held = adamax_cy.adamax_step(p0, g, zeros, zeros, 1, lr=float(np.float32(0.001)), eps=1e-7)[0]
        as_double = adamax_cy.adamax_step(p0, g, zeros, zeros, 1, lr=0.001, eps=1e-7)[0]
        result["float64_lr"] = {
            "ulps_to_float32_lr": ulps(theta, as_held, np.float64),
            "relative_to_double_lr": float(np.max(np.abs(theta - as_double) / np.abs(as_double - p0))),
        }
    return result


def _measure(name: str) -> dict[str, Any]:
    return {"optax": lambda: _optax(False), "optax-x64": lambda: _optax(True), "keras": _keras}[name]()


@lru_cache(maxsize=None)
def measured(name: str, keras_backend: str = "") -> dict[str, Any]:
    """Run ``_measure(name)`` in a fresh interpreter and return its result."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
    if keras_backend:
        env["KERAS_BACKEND"] = keras_backend
    code = f"import json, test_docs_claims as t; print('RESULT', json.dumps(t._measure({name!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


# --------------------------------------------------------------------------
# eps = 0 and a zero first gradient: NaN in the frameworks, θ kept here


def test_eps0_and_a_zero_first_gradient_keep_theta_here() -> None:
    assert adamax_cy.adamax_step(1.0, 0.0, 0.0, 0.0, t=1, eps=0.0)[0] == 1.0
    assert adamax_cy.adamax_step(1.0, 0.0, 0.0, 0.0, t=1, eps=0.0, convention="torch")[0] == 1.0


@needs_torch
def test_eps0_and_a_zero_first_gradient_give_nan_in_torch() -> None:
    import torch

    p = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.Adamax([p], eps=0.0)
    p.grad = torch.zeros(1)
    opt.step()
    assert math.isnan(p.item())


@needs_optax
def test_eps0_and_a_zero_first_gradient_give_nan_in_optax() -> None:
    assert math.isnan(measured("optax")["theta_eps0_zero_grad"])


@needs_keras
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_eps0_and_a_zero_first_gradient_give_nan_in_keras(backend: str) -> None:
    pytest.importorskip(backend, reason=f"Keras's {backend} backend is not installed")
    assert math.isnan(measured("keras", backend)["theta_eps0_zero_grad"])


# --------------------------------------------------------------------------
# The float32 bias correction of Optax (without x64) and Keras


@needs_optax
def test_float32_optax_without_x64_is_off_by_the_documented_ulps() -> None:
    gaps = measured("optax")["bias_gaps"]
    assert {float(k): v for k, v in gaps.items()} == DOCUMENTED_BIAS_GAPS


@needs_keras
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_float32_keras_is_off_by_the_documented_ulps(backend: str) -> None:
    pytest.importorskip(backend, reason=f"Keras's {backend} backend is not installed")
    gaps = measured("keras", backend)["bias_gaps"]
    assert {float(k): v for k, v in gaps.items()} == DOCUMENTED_BIAS_GAPS


def test_the_documented_gaps_are_the_float32_bias_correction() -> None:
    """The cause the docs give: 1 − β1 computed in float32 from float32(β1)."""
    for beta1, gap in DOCUMENTED_BIAS_GAPS.items():
        in_float32 = np.float32(1) - np.float32(beta1)
        relative = abs(float(in_float32) - (1 - beta1)) / (1 - beta1)
        # The update is lr/bc · m/u; its relative error is the bias correction's.
        assert abs(relative / np.finfo(np.float32).eps - gap) <= 0.1 * gap + 1


# --------------------------------------------------------------------------
# Optax in float64: the torch convention within the contract


@needs_optax
def test_float64_optax_follows_the_torch_convention() -> None:
    worst = measured("optax-x64")["float64"]
    assert worst["dtype"] == "float64"
    assert worst["m"] == 0 and worst["u"] == 0
    assert worst["theta_minus_contract"] <= 0


# --------------------------------------------------------------------------
# Subnormals: XLA on a CPU flushes them to zero


def test_a_subnormal_gradient_moves_m_here() -> None:
    one, tiny = np.ones(1, np.float32), np.full(1, 1e-40, np.float32)
    m = adamax_cy.adamax_step(one, tiny, one * 0, one * 0, t=1)[1][0]
    assert m == np.float32(0.1) * tiny[0] != 0


@needs_optax
def test_optax_flushes_a_subnormal_gradient_to_zero() -> None:
    assert measured("optax")["m_after_subnormal_grad"] == 0.0


@needs_keras
def test_keras_on_jax_flushes_a_subnormal_gradient_to_zero() -> None:
    pytest.importorskip("jax", reason="Keras's jax backend is not installed")
    assert measured("keras", "jax")["m_after_subnormal_grad"] == 0.0


# --------------------------------------------------------------------------
# Keras: u bitwise, m within a few ulps (its lerp form), β1 < 0.5 cancellation


@needs_keras
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras_u_is_bitwise_and_m_within_the_documented_ulps(backend: str) -> None:
    pytest.importorskip(backend, reason=f"Keras's {backend} backend is not installed")
    from adamax_cy.testing import TORCH_TOLERANCES

    result = measured("keras", backend)
    for dtype in ("float32", "float64"):
        if dtype not in result:
            continue
        assert result[dtype]["u_absdiff"] == 0
        assert 0 < result[dtype]["m_ulps"] <= DOCUMENTED_KERAS_M_ULPS[backend]
        assert result[dtype]["m_ulps"] <= TORCH_TOLERANCES[dtype].m


@needs_keras
def test_keras_on_jax_loses_the_gradient_when_beta1_is_0() -> None:
    pytest.importorskip("jax", reason="Keras's jax backend is not installed")
    assert adamax_cy.adamax_step(1.0, 1e-20, 1.0, 0.0, t=1, beta1=0.0)[1] == 1e-20
    assert measured("keras", "jax")["m_beta1_0"] == 0.0


@needs_keras
def test_a_float64_keras_model_steps_with_the_float32_learning_rate() -> None:
    pytest.importorskip("torch", reason="Keras's torch backend is not installed")
    result = measured("keras", "torch")["float64_lr"]
    # Within the contract of the float32-held learning rate, and 5e-8 away from 0.001.
    assert result["ulps_to_float32_lr"] <= 8
    assert 4e-8 <= result["relative_to_double_lr"] <= 6e-8


# --------------------------------------------------------------------------
# PyTorch: where its lerp parts ways with the spec beyond any ulp bound


@needs_torch
def test_torch_carries_a_small_beta1_only_to_about_ulp1_over_beta1() -> None:
    """beta1 = 1e-5 in float32: m off by about 0.1 % (the docs' example)."""
    import torch

    from adamax_cy import reference

    beta1 = 1e-5
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adamax([p], betas=(beta1, 0.999))
    p.grad = torch.zeros(1)
    opt.step()  # creates the state; m stays 0
    opt.state[p]["exp_avg"].fill_(1.0)
    opt.step()  # m = beta1 * 1 + (1 - beta1) * 0
    theirs = float(opt.state[p]["exp_avg"][0])
    expected = reference.adamax_step(0.0, 0.0, 1.0, 0.0, 2, beta1=beta1, convention="torch", arithmetic="float32")[1]
    ours = adamax_cy.adamax_step(np.zeros(1, np.float32), np.zeros(1, np.float32), np.ones(1, np.float32),
                                 np.zeros(1, np.float32), 2, beta1=beta1, convention="torch")[1][0]
    assert float(ours) == expected
    relative = abs(theirs - expected) / expected
    ulp1 = float(np.finfo(np.float32).eps)
    assert 5e-4 <= relative <= ulp1 / beta1  # "0.1 %", and within ulp(1)/β1


@needs_torch
def test_torch_turns_m_to_nan_after_an_infinite_gradient_where_the_spec_keeps_inf() -> None:
    import torch

    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.Adamax([p])
    for g in (math.inf, 1.0):
        p.grad = torch.full((1,), g, dtype=torch.float64)
        opt.step()
    assert math.isnan(float(opt.state[p]["exp_avg"][0]))

    m = u = 0.0
    theta = 0.0
    for t, g in enumerate((math.inf, 1.0), 1):
        theta, m, u = adamax_cy.adamax_step(theta, g, m, u, t, convention="torch")
    assert m == math.inf
