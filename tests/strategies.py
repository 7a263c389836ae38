"""Hypothesis strategies: hyperparameters over their valid ranges, and values
that include the awkward ones (signed zeros, subnormals, huge and tiny
magnitudes, infinities and NaN)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

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
    """lr, betas, eps and every option across their valid ranges."""
    unit = st.one_of(
        st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999, 0.9999]),
        st.floats(0, 1, exclude_max=True),
    )
    return st.fixed_dictionaries(
        {
            "lr": st.one_of(st.just(0.0), st.floats(1e-6, 10.0)),
            "beta1": unit,
            "beta2": unit,
            # 1e-50 and 1e-320 round to 0 in float32 (and 1e-320 is subnormal in float64)
            "eps": st.one_of(st.sampled_from([0.0, 1e-8, 1e-7, 1e-50, 1e-320]), st.floats(1e-20, 1.0)),
            "weight_decay": st.one_of(st.just(0.0), st.floats(1e-6, 1.0)),
            "decoupled_weight_decay": st.booleans(),
            "maximize": st.booleans(),
            "convention": st.just(convention) if convention else st.sampled_from(["spec", "torch"]),
        }
    )


steps = st.one_of(st.integers(1, 20), st.integers(1, 10**6))


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
