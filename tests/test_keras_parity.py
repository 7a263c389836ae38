"""Keras's Adamax, as documented, is the spec convention (no TensorFlow needed).

The documentation of ``keras.optimizers.Adamax`` (TensorFlow 2.x) states the
update, with defaults ``learning_rate=0.001``, ``beta_1=0.9``,
``beta_2=0.999``, ``epsilon=1e-07``::

    t += 1
    m = beta1 * m + (1 - beta1) * g
    v = max(beta2 * v, abs(g))
    current_lr = learning_rate / (1 - beta1 ** t)
    w = w - current_lr * m / (v + epsilon)

Keras holds the learning rate in a float32 variable and casts it to the
variable's dtype at each step, so a float64 model steps with
``float64(float32(0.001)) = 0.0010000000474974513``, not ``0.001``.
"""

from __future__ import annotations

import numpy as np
import pytest

import adamax_cy
from adamax_cy.testing import check_conformance

KERAS_LR = 0.001
KERAS_EPSILON = 1e-7
#: The learning rate a Keras model actually steps with: its float32 variable.
KERAS_LR_AS_HELD = float(np.float32(KERAS_LR))
KERAS_OPTIONS = {"lr": KERAS_LR_AS_HELD, "beta1": 0.9, "beta2": 0.999, "eps": KERAS_EPSILON}


def keras_adamax_step(param, grad, m, u, t, lr, beta1, beta2, eps):
    """Keras's documented update, in the variable's dtype, the learning rate held as float32."""
    f = np.asarray(param).dtype.type
    learning_rate = f(np.float32(lr))
    m = f(beta1) * m + f(1 - beta1) * grad
    v = np.maximum(f(beta2) * u, np.abs(grad))
    current_lr = learning_rate / f(1 - beta1**t)
    w = param - current_lr * m / (v + f(eps))
    return w, m, v


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("hypothesis_seed"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_keras_documented_update_is_the_spec_convention(dtype, seed):
    with np.errstate(all="ignore"):
        report = check_conformance(keras_adamax_step, convention="spec", dtype=dtype,
                                   options=KERAS_OPTIONS, max_examples=60, seed=seed)
    assert report.conforms, str(report)


def test_a_float64_keras_model_does_not_step_with_lr_0_001(seed):
    """Given the learning rate as the double 0.001, float64 Keras differs from the spec in θ."""
    with np.errstate(all="ignore"):
        report = check_conformance(keras_adamax_step, dtype="float64",
                                   options={**KERAS_OPTIONS, "lr": KERAS_LR}, max_examples=20, seed=seed)
    assert report.mismatch.formula == "θ", str(report)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adamax_cy_matches_keras_over_100_steps(dtype, seed):
    """m and u bitwise equal at every step; θ within both contracts of the reference."""
    rng = np.random.default_rng(seed)
    theta_keras = rng.standard_normal(64).astype(dtype)
    m_keras, u_keras = np.zeros_like(theta_keras), np.zeros_like(theta_keras)
    for t in range(1, 101):
        grad = (rng.standard_normal(64) * 10.0 ** rng.uniform(-3, 1, 64)).astype(dtype)
        theta_cy, m_cy, u_cy = adamax_cy.adamax_step(
            theta_keras, grad, m_keras, u_keras, t, KERAS_LR_AS_HELD, 0.9, 0.999, KERAS_EPSILON)
        theta_keras, m_keras, u_keras = keras_adamax_step(
            theta_keras, grad, m_keras, u_keras, t, KERAS_LR, 0.9, 0.999, KERAS_EPSILON)
        assert np.array_equal(m_cy, m_keras) and np.array_equal(u_cy, u_keras)
        update = np.abs(KERAS_LR / (1 - 0.9**t) * m_cy.astype(np.float64) / (u_cy + KERAS_EPSILON))
        allowed = 2 * np.spacing(np.abs(theta_cy)) + 8 * np.spacing(update.astype(dtype))
        assert np.all(np.abs(theta_cy - theta_keras) <= allowed)
