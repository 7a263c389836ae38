"""Tolerances: the contract's (from :mod:`adamax_cy._contract`) and the measured ones of torch."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .._contract import TOLERANCES, Tolerance

__all__ = ["TOLERANCES", "TORCH_TOLERANCES", "Tolerance"]


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
