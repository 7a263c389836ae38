"""Hypothesis strategies: hyperparameters over their valid ranges, and values
that include the awkward ones (signed zeros, subnormals, huge and tiny
magnitudes, infinities and NaN)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from adamax_cy.testing._cases import RANGES, STEP_NUMBERS

DTYPES = (np.float32, np.float64)


def values(dtype: Any, *, specials: bool = True) -> st.SearchStrategy[float]:
    """Element values: mostly ordinary magnitudes, sometimes anything at all."""
    width = 32 if np.dtype(dtype) == np.float32 else 64
    info = np.finfo(dtype)
    ordinary = st.floats(-1e3, 1e3, width=width)
    scaled = st.builds(
        lambda mantissa, exponent: float(np.asarray(mantissa * 10.0**exponent, dtype=dtype)),
        st.floats(-10, 10),
        st.integers(-30 if width == 32 else -300, 30 if width == 32 else 300),
    )
    special = st.sampled_from(
        [0.0, -0.0, float(info.smallest_subnormal), -float(info.smallest_subnormal),
         float(info.tiny), float(info.max), -float(info.max), np.inf, -np.inf, np.nan]
    )
    anything = st.floats(width=width)
    if not specials:
        small = st.floats(-1e-3, 1e-3).map(lambda x: float(np.asarray(x, dtype=dtype)))
        return st.one_of(ordinary, small)
    return st.one_of(ordinary, ordinary, scaled, special, anything)


def hyperparameters(*, convention: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """lr, betas, eps and every option across their whole legal range (the harness's ranges):
    lr and eps from 0 and subnormal to the largest double, betas from 0 to just below 1."""
    return st.fixed_dictionaries(
        {
            **{name: RANGES[name] for name in ("lr", "beta1", "beta2", "eps", "weight_decay")},
            "decoupled_weight_decay": st.booleans(),
            "maximize": st.booleans(),
            "convention": st.just(convention) if convention else st.sampled_from(["spec", "torch"]),
        }
    )


#: Step numbers from 1 to 2**63 - 1, mostly small.
steps = STEP_NUMBERS


@st.composite
def states(draw: Any, *, max_side: int = 6, specials: bool = True) -> dict[str, Any]:
    """Four arrays of one shape and dtype, in C or F order, possibly with a strided grad."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=max_side))
    elements = values(dtype, specials=specials)
    arrays = [draw(hnp.arrays(dtype, shape, elements=elements)) for _ in range(4)]
    if draw(st.booleans()):  # u >= 0 as in real use, most of the time
        arrays[3] = np.asarray(np.abs(arrays[3]))
    if draw(st.booleans()):
        arrays = [np.asfortranarray(a) for a in arrays]
    if draw(st.booleans()) and len(shape) >= 1:
        wide = np.empty(shape[:-1] + (2 * shape[-1],), dtype=dtype)
        wide[..., ::2] = arrays[1]
        arrays[1] = wide[..., ::2]  # a strided, non-contiguous gradient
    param, grad, m, u = arrays
    return {"param": param, "grad": grad, "m": m, "u": u, "dtype": dtype}
