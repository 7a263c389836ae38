"""The arithmetic contract between the compiled kernel and the reference, for the tests.

The contract itself is defined once, in :mod:`adamax_cy._contract` (and
stated in ``docs/contract.rst``); this module computes the reference's traces
for the tests and asserts it, with a message that names the element.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Iterable

import numpy as np

from adamax_cy import _contract
from adamax_cy.reference import adamax_trace

OPTION_NAMES = ("weight_decay", "decoupled_weight_decay", "maximize", "convention")

step_coefficient = _contract.step_size


def arithmetic(dtype: Any) -> str:
    return "float32" if np.dtype(dtype) == np.float32 else "float64"


def bits(x: float, dtype: Any) -> int:
    if math.isnan(x):
        return -1  # every NaN is the same NaN for the contract
    fmt = "<f" if np.dtype(dtype) == np.float32 else "<d"
    return int.from_bytes(struct.pack(fmt, x), "little")


def check_element(
    before: tuple[float, float, float, float],
    after: tuple[float, float, float],
    t: int,
    hyper: dict[str, Any],
    dtype: Any,
) -> str | None:
    """Check one element against the reference; return a description of a breach."""
    param, grad, m, u = before
    trace = adamax_trace(param, grad, m, u, t, arithmetic=arithmetic(dtype), **hyper)
    breach = _contract.check_element(trace, before, after, t, hyper, dtype)
    if breach is None:
        return None
    output, detail = breach
    return f"{output}: {detail} (reference trace {trace})"


def assert_contract(
    before: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    after: tuple[np.ndarray, np.ndarray, np.ndarray],
    t: int,
    hyper: dict[str, Any],
    indices: Iterable[int] | None = None,
) -> None:
    """Assert the contract for the given flat indices (all when None)."""
    dtype = after[0].dtype
    flat_before = [np.ravel(a, order="C") for a in before]
    flat_after = [np.ravel(a, order="C") for a in after]
    n = flat_after[0].size
    for i in range(n) if indices is None else indices:
        element_before = tuple(float(a[i]) for a in flat_before)
        element_after = tuple(float(a[i]) for a in flat_after)
        breach = check_element(element_before, element_after, t, hyper, dtype)  # type: ignore[arg-type]
        assert breach is None, (
            f"element {i} of {n} ({dtype}), inputs (param, grad, m, u) = {element_before}, "
            f"t={t}, {hyper}: {breach}"
        )
