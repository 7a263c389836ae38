"""The default hyperparameters: the one definition every layer reads."""

from __future__ import annotations

from types import MappingProxyType

#: The paper's defaults (SPEC.md): learning rate, decay rates and epsilon.
DEFAULTS = MappingProxyType({"lr": 0.002, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8})

LR: float = DEFAULTS["lr"]
BETA1: float = DEFAULTS["beta1"]
BETA2: float = DEFAULTS["beta2"]
EPS: float = DEFAULTS["eps"]

#: ``"spec"``: eps added to u in the denominator (SPEC.md, Keras, TensorFlow).
#: ``"torch"``: eps inside the max, denominator u (PyTorch, Optax).
CONVENTIONS = ("spec", "torch")

#: Step counts are whole numbers from 1 to ``MAX_STEP - 1``: beta1**t needs t
#: as a double (and the kernel as a C long long); far beyond any training run.
MAX_STEP = 2**63
