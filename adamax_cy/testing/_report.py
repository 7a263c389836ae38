"""What the harness reports: the first mismatch and the verdict."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from ._adapters import Triple
from ._cases import Case
from ._tolerances import TOLERANCES, Tolerance

FORMULAS = {
    "m": "formula 1, m_t = β1·m + (1 − β1)·g",
    "u": "formula 2, u_t = max(β2·u, |g|)",
    "θ": "formula 3, θ_t = θ − (α / (u_t + ε))·m_t / (1 − β1^t)",
}
_TORCH_FORMULAS = {
    "u": "formula 2, u_t = max(β2·u, |g| + ε) (torch convention)",
    "θ": "formula 3, θ_t = θ − (α / u_t)·m_t / (1 − β1^t) (torch convention)",
}



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
    full_range: bool = False
    test_vectors: int = 0

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
        if self.full_range:
            head += ", hyperparameters over their whole legal range"
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
            f"{self.test_vectors} test vector(s), {self.generated_cases} generated case(s); seed {self.seed} (replay with seed={self.seed})"
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
            "full_range": self.full_range,
            "tolerance_ulps": dataclasses.asdict(self.tolerance),
            "tolerance_widened": self.widened,
            "worked_examples": self.worked_examples,
            "edge_cases": self.edge_cases,
            "test_vectors": self.test_vectors,
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

