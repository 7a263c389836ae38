"""Defaults, conventions and limits: the one definition every layer reads."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

#: The defaults: the paper's learning rate and decay rates, and this library's
#: epsilon (the paper's Algorithm 2 has none); the documentation's algorithm page.
DEFAULTS = MappingProxyType({"lr": 0.002, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8})

LR: float = DEFAULTS["lr"]
BETA1: float = DEFAULTS["beta1"]
BETA2: float = DEFAULTS["beta2"]
EPS: float = DEFAULTS["eps"]

#: ``"spec"``: eps added to u in the denominator (this library's specification, Keras, TensorFlow).
#: ``"torch"``: eps inside the max, denominator u (PyTorch, Optax).
CONVENTIONS = ("spec", "torch")

#: Step counts are whole numbers from 1 to ``MAX_STEP - 1``: beta1**t needs t
#: as a double (and the kernel as a C long long); far beyond any training run.
MAX_STEP = 2**63

#: The most generated cases one conformance run tries (hypothesis's
#: ``max_examples``): a run of this size takes hours already.
MAX_EXAMPLES = 1_000_000

#: The dtypes the kernel updates (native byte order only).
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: What :class:`adamax_cy.Adamax` may do with a gradient holding an infinity or NaN.
NONFINITE = ("propagate", "raise", "skip")

#: The options a parameter group of :class:`adamax_cy.Adamax` holds (besides ``"params"``).
GROUP_OPTIONS = (
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "decoupled_weight_decay",
    "maximize",
    "convention",
)
