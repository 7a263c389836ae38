"""Every check of a caller's arguments, before anything is written.

Each check raises :class:`TypeError` or :class:`ValueError` with a message
that names the argument, prefixed with ``where`` (for example
``"param_groups[1]: "`` or ``"arrays[3]: "``) so that the layer calling it
(the functions of :mod:`adamax_cy.api`, :class:`adamax_cy.Adamax`,
:class:`adamax_cy.torch.Adamax`) can say which of its inputs is wrong
without catching and rewording the error.
"""

from __future__ import annotations

import bisect
import math
import numbers
import operator
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np

from . import _kernel
from ._defaults import CONVENTIONS, LR, MAX_STEP, NONFINITE, SUPPORTED_DTYPES

ARRAY_NAMES = ("param", "grad", "m", "u")

Flat = tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]
WRITTEN_NAMES = ("param", "m", "u")

# ------------------------------------------------------------ hyperparameters


def real(name: str, value: Any, where: str = "") -> float:
    """``value`` as a float: any real number but a bool."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{where}{name} must be a real number, got {type(value).__name__} {value!r}"
        )
    return float(value)


def non_negative(name: str, value: Any, where: str = "") -> float:
    """A finite real number >= 0, as a float."""
    x = real(name, value, where)
    if not (math.isfinite(x) and x >= 0):
        raise ValueError(f"{where}{name} must be a finite number >= 0, got {value!r}")
    return x


def beta(name: str, value: Any, where: str = "") -> float:
    """A decay rate in [0, 1), as a float."""
    x = real(name, value, where)
    if not 0 <= x < 1:
        raise ValueError(f"{where}{name} must be in [0, 1), got {value!r}")
    return x


def flag(name: str, value: Any, where: str = "") -> bool:
    """A bool (Python's or NumPy's)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_step(t: Any, where: str = "") -> int:
    """The step count ``t`` of a call as an int from 1 to ``MAX_STEP - 1``."""
    if isinstance(t, (bool, np.bool_)):
        raise TypeError(f"{where}t must be an integer >= 1, got the bool {t!r}")
    try:
        step = operator.index(t)
    except TypeError:
        raise TypeError(
            f"{where}t must be an integer >= 1, got {type(t).__name__} {t!r}"
        ) from None
    if not 1 <= step < MAX_STEP:
        raise ValueError(f"{where}t must be an integer >= 1 (and below 2**63), got {t!r}")
    return step


def check_num_threads(num_threads: Any, where: str = "") -> int:
    """``None`` (the OpenMP default, returned as 0) or an int in [1, thread_limit]."""
    if num_threads is None:
        return 0
    if isinstance(num_threads, (bool, np.bool_)) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(
            f"{where}num_threads must be None or an integer >= 1, got {num_threads!r}"
        )
    if not 1 <= operator.index(num_threads) <= _kernel.thread_limit:
        raise ValueError(
            f"{where}num_threads must be None or an integer from 1 to {_kernel.thread_limit}, "
            f"got {num_threads!r}"
        )
    return int(num_threads)


def check_convention(convention: Any, where: str = "") -> str:
    """One of :data:`adamax_cy._defaults.CONVENTIONS`."""
    if convention not in CONVENTIONS:
        raise ValueError(f"{where}convention must be one of {CONVENTIONS}, got {convention!r}")
    return str(convention)


def check_nonfinite(nonfinite: Any, where: str = "") -> str:
    """One of :data:`adamax_cy._defaults.NONFINITE`."""
    if nonfinite not in NONFINITE:
        raise ValueError(f"{where}nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
    return str(nonfinite)


def check_betas(betas: Any, where: str = "") -> tuple[Any, Any]:
    """``(beta1, beta2)`` from a pair (each checked later by :func:`check_options`)."""
    if isinstance(betas, (str, bytes, np.ndarray)) or not isinstance(betas, Sequence):
        raise TypeError(f"{where}betas must be a pair (beta1, beta2), got {betas!r}")
    if len(betas) != 2:
        raise ValueError(f"{where}betas must be a pair (beta1, beta2), got {betas!r}")
    return betas[0], betas[1]


def check_options(
    lr: Any,
    beta1: Any,
    beta2: Any,
    eps: Any,
    weight_decay: Any,
    decoupled_weight_decay: Any,
    maximize: Any,
    convention: Any,
    *,
    where: str = "",
) -> dict[str, Any]:
    """Check every hyperparameter except ``t``; return them normalised."""
    return {
        "lr": non_negative("lr", lr, where),
        "beta1": beta("beta1", beta1, where),
        "beta2": beta("beta2", beta2, where),
        "eps": non_negative("eps", eps, where),
        "weight_decay": non_negative("weight_decay", weight_decay, where),
        "decoupled_weight_decay": flag("decoupled_weight_decay", decoupled_weight_decay, where),
        "maximize": flag("maximize", maximize, where),
        "convention": check_convention(convention, where),
    }


def check_group(options: Mapping[str, Any], lr: Any, where: str = "") -> dict[str, Any]:
    """A parameter group's options (``betas`` a pair) with ``lr`` given as a number,
    checked; returned as :func:`check_options` returns them."""
    beta1, beta2 = check_betas(options["betas"], where)
    return check_options(
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=options["eps"],
        weight_decay=options["weight_decay"],
        decoupled_weight_decay=options["decoupled_weight_decay"],
        maximize=options["maximize"],
        convention=options["convention"],
        where=where,
    )


def normalise_group(options: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """A group's options, checked, as a parameter group stores them (``lr`` may be callable)."""
    lr = options["lr"]
    checked = check_group(options, LR if callable(lr) else lr, where)
    return {
        "lr": lr if callable(lr) else checked["lr"],
        "betas": (checked["beta1"], checked["beta2"]),
        "eps": checked["eps"],
        "weight_decay": checked["weight_decay"],
        "decoupled_weight_decay": checked["decoupled_weight_decay"],
        "maximize": checked["maximize"],
        "convention": checked["convention"],
    }


# ------------------------------------------------------------ arrays


def is_sequence(x: Any) -> bool:
    """A sequence of items (not a string, bytes or an array)."""
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes, np.ndarray))


def check_sequence(name: str, value: Any, where: str = "") -> Sequence[Any]:
    """``value`` when it is a sequence of arrays (see :func:`is_sequence`)."""
    if not is_sequence(value):
        raise TypeError(f"{where}{name} must be a sequence of arrays, got {type(value).__name__}")
    return value  # type: ignore[no-any-return]


def as_float_array(name: str, value: Any, where: str = "") -> np.ndarray:
    """``value`` as an array of real numbers that float64 holds exactly."""
    a = np.asarray(value)
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        raise TypeError(
            f"{where}{name} has dtype {a.dtype}, which float64 would round; "
            "supported dtypes are float32 and float64"
        )
    if a.dtype.kind not in "iuf":
        raise TypeError(
            f"{where}{name} must hold real numbers (float32 or float64), got dtype {a.dtype}"
        )
    return a


def check_shapes(arrays: Sequence[np.ndarray], where: str = "") -> None:
    """The four arrays (``param``, ``grad``, ``m``, ``u``) share ``param``'s shape."""
    for name, a in zip(ARRAY_NAMES[1:], arrays[1:]):
        if a.shape != arrays[0].shape:
            raise ValueError(
                f"{where}shape mismatch: param has shape {arrays[0].shape} "
                f"but {name} has shape {a.shape}"
            )


def _flat(a: np.ndarray, order: Literal["C", "F"]) -> np.ndarray:
    # A view (the array is contiguous in `order`); as a base ndarray, since a
    # subclass such as np.matrix would not flatten to one dimension.
    return a.view(np.ndarray).reshape(-1, order=order)


def check_arrays(
    param: Any, grad: Any, m: Any, u: Any, where: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check four arrays for an in-place step; return flat views of them.

    ``param``, ``m`` and ``u`` are returned as views (writes reach the
    caller's arrays); ``grad`` may be a copy when its memory layout differs.
    ``where`` prefixes error messages (for example ``"arrays[3]: "``).
    """
    arrays = (param, grad, m, u)
    for name, a in zip(ARRAY_NAMES, arrays):
        if not isinstance(a, np.ndarray):
            raise TypeError(
                f"{where}{name} must be a numpy.ndarray for an in-place step, "
                f"got {type(a).__name__}"
            )
    dtype = param.dtype
    if dtype not in SUPPORTED_DTYPES or not dtype.isnative:
        raise TypeError(
            f"{where}param has dtype {dtype}; supported dtypes are float32 and float64 "
            "(native byte order)"
        )
    for name, a in zip(ARRAY_NAMES[1:], arrays[1:]):
        if a.dtype != dtype or not a.dtype.isnative:
            raise TypeError(
                f"{where}{name} has dtype {a.dtype} but param has dtype {dtype}: "
                "all four arrays must share one dtype, float32 or float64"
            )
    check_shapes(arrays, where)
    for name, a in (("param", param), ("m", m), ("u", u)):
        if not a.flags.writeable:
            raise ValueError(f"{where}{name} is read-only; an in-place step must write to it")
    order = _shared_order(param, m, u, where)
    check_disjoint((param, m, u), (grad,), _quadruple_name, where)
    contiguous = grad.flags.c_contiguous if order == "C" else grad.flags.f_contiguous
    if not contiguous:
        grad = np.asarray(grad, order=order).copy(order=order)
    return _flat(param, order), _flat(grad, order), _flat(m, order), _flat(u, order)


def _quadruple_name(written: bool, k: int) -> str:
    return WRITTEN_NAMES[k] if written else "grad"


def _shared_order(
    param: np.ndarray, m: np.ndarray, u: np.ndarray, where: str
) -> Literal["C", "F"]:
    """"C" or "F": a memory order in which param, m and u are all contiguous."""
    for name, a in (("param", param), ("m", m), ("u", u)):
        if not (a.flags.c_contiguous or a.flags.f_contiguous):
            raise ValueError(
                f"{where}{name} is not contiguous; pass np.ascontiguousarray({name}) "
                "and keep that array (a copy made here would lose the in-place result)"
            )
    if all(a.flags.c_contiguous for a in (param, m, u)):
        return "C"
    if all(a.flags.f_contiguous for a in (param, m, u)):
        return "F"
    raise ValueError(
        f"{where}param, m and u must share one memory layout (all C- or all "
        "F-contiguous); convert them once with np.ascontiguousarray"
    )


def check_many(
    params: Sequence[Any],
    grads: Sequence[Any],
    ms: Sequence[Any],
    us: Sequence[Any],
    labels: Sequence[str] | None = None,
) -> Flat:
    """Check every quadruple; return flat views (``grad`` may be a copy).

    Errors name the quadruple: ``labels[i]`` when given, else ``arrays[i]``.
    Besides the checks of :func:`check_arrays`, no array written by one
    quadruple may overlap any array of another (a gradient may be read by
    several quadruples): see :func:`check_disjoint`.
    """
    # Each sequence is read once: the arrays checked are the arrays updated.
    lists = [
        list(check_sequence(name + "s", x))
        for name, x in zip(ARRAY_NAMES, (params, grads, ms, us))
    ]
    if len({len(x) for x in lists}) != 1:
        raise ValueError(
            "params, grads, ms and us must have the same length, got "
            + ", ".join(str(len(x)) for x in lists)
        )
    if labels is None:
        labels = [f"arrays[{i}]" for i in range(len(lists[0]))]
    flat: Flat = ([], [], [], [])
    for i, (param, grad, m, u) in enumerate(zip(*lists)):
        views = check_arrays(param, grad, m, u, where=f"{labels[i]}: ")
        for out, view in zip(flat, views):
            out.append(view)
    # Written arrays in quadruple order: written[3 * i + s] is WRITTEN_NAMES[s] of quadruple i.
    written = [a for quadruple in zip(lists[0], lists[2], lists[3]) for a in quadruple]
    check_disjoint(
        written,
        lists[1],
        lambda w, k: f"{labels[k // 3]} {WRITTEN_NAMES[k % 3]}" if w else f"{labels[k]} grad",
    )
    return flat


# ------------------------------------------------------------ overlap


def byte_span(a: np.ndarray) -> tuple[int, int]:
    """The bytes ``[start, end)`` that ``a`` can touch (exact when contiguous)."""
    start = end = a.__array_interface__["data"][0]
    if a.size == 0:
        return start, start
    for n, stride in zip(a.shape, a.strides):
        if stride < 0:
            start += stride * (n - 1)
        else:
            end += stride * (n - 1)
    return start, end + a.itemsize


def first_overlap(spans: Iterable[tuple[int, int, Any]]) -> tuple[Any, Any] | None:
    """The labels of two spans ``(start, end, label)`` that share a byte, or None.

    Each span must be filled by its array (a contiguous array fills its
    span): then any overlap shows between neighbours once they are sorted
    by start, and the check costs O(n log n). Ties keep the given order.
    """
    spans = list(spans)
    ordered = _by_start(spans)
    pair = _neighbours_overlap(ordered)
    return None if pair is None else (spans[pair[0]][2], spans[pair[1]][2])


def _by_start(spans: Sequence[tuple[Any, ...]]) -> list[tuple[int, int, int]]:
    # (start, end, index) of the non-empty spans, by start (then given order).
    return sorted((s[0], s[1], k) for k, s in enumerate(spans) if s[1] > s[0])


def _neighbours_overlap(ordered: Sequence[tuple[int, int, int]]) -> tuple[int, int] | None:
    for (_, end, k), (start, _, j) in zip(ordered, ordered[1:]):
        if start < end:
            return k, j
    return None


def check_disjoint(
    written: Sequence[np.ndarray],
    read: Sequence[np.ndarray],
    name: Callable[[bool, int], str],
    where: str = "",
) -> None:
    """No ``written`` array shares memory with another array, written or ``read``.

    ``written`` arrays must be contiguous; ``read`` arrays may have any
    strides and may share memory with each other (a gradient read twice).
    ``name(is_written, k)`` names ``written[k]`` or ``read[k]`` in the error.
    A few arrays are compared pair by pair (written pairs first); more are
    sorted by address, in O(n log n).
    """
    if len(written) * (len(written) + len(read)) <= 12:  # one quadruple
        for k in range(len(written)):
            for j in range(k + 1, len(written)):
                if np.shares_memory(written[k], written[j]):
                    _overlap_error(name(True, k), name(True, j), where)
        for k, r in enumerate(read):
            for j, a in enumerate(written):
                if np.shares_memory(r, a):
                    _overlap_error(name(False, k), name(True, j), where)
        return
    ordered = _by_start([byte_span(a) for a in written])
    pair = _neighbours_overlap(ordered)
    if pair is not None:
        _overlap_error(name(True, pair[0]), name(True, pair[1]), where)
    # Now disjoint, so in start order they are in end order too: test each
    # read array against the written arrays whose spans meet its own.
    ends = [end for _, end, _ in ordered]
    for k, r in enumerate(read):
        lo, hi = byte_span(r)
        if lo == hi:
            continue
        for i in range(bisect.bisect_right(ends, lo), len(ordered)):
            start, _, j = ordered[i]
            if start >= hi:
                break
            if np.shares_memory(r, written[j]):
                _overlap_error(name(False, k), name(True, j), where)


def _overlap_error(label: str, other: str, where: str) -> None:
    raise ValueError(
        f"{where}{label} and {other} overlap in memory; aliasing would corrupt the update"
    )
