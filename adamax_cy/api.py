"""The public functions: validation first, then one call into the kernel.

Everything a caller can get wrong is checked here, before any array is
written, so a call that raises leaves every array exactly as it was.
"""

from __future__ import annotations

import bisect
import math
import numbers
import operator
from typing import Any, Literal, NamedTuple, Sequence

import numpy as np

from . import _kernel
from ._defaults import BETA1, BETA2, CONVENTIONS, EPS, LR, MAX_STEP

__all__ = ["adamax_step", "adamax_step_inplace", "adamax_step_many"]

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_ARRAY_NAMES = ("param", "grad", "m", "u")


class Hyperparameters(NamedTuple):
    """The checked hyperparameters of one call, by the kernel's keyword names.

    The kernel computes the coefficients (the step size and the rest) from
    them, in one place.
    """

    t: int
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decoupled_weight_decay: bool
    maximize: bool
    convention: str
    num_threads: int  # 0 means the library's default


def _real(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    x = _real(name, value)
    if not (math.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return x


def _beta(name: str, value: Any) -> float:
    x = _real(name, value)
    if not 0 <= x < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return x


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_step(t: Any) -> int:
    """The step count as an int, or a clear error."""
    if isinstance(t, (bool, np.bool_)):
        raise TypeError(f"t must be an integer >= 1, got the bool {t!r}")
    try:
        step = operator.index(t)
    except TypeError:
        raise TypeError(
            f"t must be an integer >= 1, got {type(t).__name__} {t!r}"
        ) from None
    if not 1 <= step < MAX_STEP:
        raise ValueError(f"t must be an integer >= 1 (and below 2**63), got {t!r}")
    return step


def check_num_threads(num_threads: Any) -> int:
    """``None`` (the OpenMP default, returned as 0) or an int in [1, thread_limit]."""
    if num_threads is None:
        return 0
    if isinstance(num_threads, (bool, np.bool_)) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be None or an integer >= 1, got {num_threads!r}")
    if not 1 <= operator.index(num_threads) <= _kernel.thread_limit:
        raise ValueError(
            f"num_threads must be None or an integer from 1 to {_kernel.thread_limit}, "
            f"got {num_threads!r}"
        )
    return int(num_threads)


def check_convention(convention: Any) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return str(convention)


def check_options(
    lr: Any,
    beta1: Any,
    beta2: Any,
    eps: Any,
    weight_decay: Any,
    decoupled_weight_decay: Any,
    maximize: Any,
    convention: Any,
) -> dict[str, Any]:
    """Check every hyperparameter except ``t``; return them normalised."""
    return {
        "lr": _non_negative("lr", lr),
        "beta1": _beta("beta1", beta1),
        "beta2": _beta("beta2", beta2),
        "eps": _non_negative("eps", eps),
        "weight_decay": _non_negative("weight_decay", weight_decay),
        "decoupled_weight_decay": _flag("decoupled_weight_decay", decoupled_weight_decay),
        "maximize": _flag("maximize", maximize),
        "convention": check_convention(convention),
    }


def coefficients(t: int, options: dict[str, Any], num_threads: int) -> Hyperparameters:
    """The hyperparameters of one call, as the kernel takes them (checked by the caller)."""
    return Hyperparameters(
        t=t,
        lr=options["lr"],
        beta1=options["beta1"],
        beta2=options["beta2"],
        eps=options["eps"],
        weight_decay=options["weight_decay"],
        decoupled_weight_decay=options["decoupled_weight_decay"],
        maximize=options["maximize"],
        convention=options["convention"],
        num_threads=num_threads,
    )


def check_hyperparameters(
    t: Any, num_threads: Any = None, *options: Any, **named: Any
) -> Hyperparameters:
    """Validate ``t``, ``num_threads`` and the options (those of :func:`check_options`,
    by position or by name); return them for the kernel."""
    return coefficients(
        check_step(t), check_options(*options, **named), check_num_threads(num_threads)
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
    for name, a in zip(_ARRAY_NAMES, arrays):
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
    for name, a in zip(_ARRAY_NAMES[1:], arrays[1:]):
        if a.dtype != dtype or not a.dtype.isnative:
            raise TypeError(
                f"{where}{name} has dtype {a.dtype} but param has dtype {dtype}: "
                "all four arrays must share one dtype, float32 or float64"
            )
    for name, a in zip(_ARRAY_NAMES[1:], arrays[1:]):
        if a.shape != param.shape:
            raise ValueError(
                f"{where}shape mismatch: param has shape {param.shape} "
                f"but {name} has shape {a.shape}"
            )
    for name, a in (("param", param), ("m", m), ("u", u)):
        if not a.flags.writeable:
            raise ValueError(f"{where}{name} is read-only; an in-place step must write to it")
    order = _shared_order(param, m, u, where)
    for i, j in ((0, 2), (0, 3), (2, 3), (1, 0), (1, 2), (1, 3)):
        if np.shares_memory(arrays[i], arrays[j]):
            raise ValueError(
                f"{where}{_ARRAY_NAMES[i]} and {_ARRAY_NAMES[j]} overlap in memory; "
                "aliasing would corrupt the update"
            )
    contiguous = grad.flags.c_contiguous if order == "C" else grad.flags.f_contiguous
    if not contiguous:
        grad = np.asarray(grad, order=order).copy(order=order)
    return _flat(param, order), _flat(grad, order), _flat(m, order), _flat(u, order)


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


def run_kernel(
    flat: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], h: Hyperparameters
) -> None:
    """Call the compiled update on checked flat arrays."""
    _kernel.update(*flat, **h._asdict())


def run_many(
    flat: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]],
    h: Hyperparameters,
) -> None:
    """Call the compiled many-array update on lists checked by :func:`check_many`."""
    _kernel.update_many(*flat, **h._asdict())


def adamax_step_inplace(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    u: np.ndarray,
    t: int,
    lr: float = LR,
    beta1: float = BETA1,
    beta2: float = BETA2,
    eps: float = EPS,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    convention: str = "spec",
    num_threads: int | None = None,
) -> None:
    """One Adamax step that updates ``param``, ``m`` and ``u`` in place.

    Parameters
    ----------
    param, grad, m, u : numpy.ndarray
        The parameter, its gradient, the first moment and the infinity norm:
        one shape and one dtype (float32 or float64). ``param``, ``m`` and
        ``u`` must be writable and contiguous (C or F order, the same for all
        three); ``grad`` may be read-only or strided. No two may overlap.
    t : int
        The step number, 1 on the first step.
    lr, beta1, beta2, eps : float
        Learning rate, decay of the first moment, decay of the infinity norm
        and the constant added for numerical stability (SPEC.md's defaults).
    weight_decay : float, optional
        L2 penalty added to the gradient (PyTorch's ``weight_decay``), or
        decoupled decay ``param -= lr * weight_decay * param`` (AdamW style)
        when ``decoupled_weight_decay`` is true.
    decoupled_weight_decay : bool, optional
        Apply ``weight_decay`` to the parameter instead of the gradient.
    maximize : bool, optional
        Ascend instead of descend (negate the gradient).
    convention : {"spec", "torch"}, optional
        ``"spec"`` divides by ``u + eps`` (SPEC.md, Keras, TensorFlow);
        ``"torch"`` takes ``u = max(beta2 * u, |g| + eps)`` and divides by
        ``u`` (PyTorch, Optax).
    num_threads : int or None, optional
        Threads to use; ``None`` is the OpenMP default, which honours
        ``OMP_NUM_THREADS`` and ``threadpoolctl``. Results do not depend on it.

    Raises
    ------
    TypeError
        An argument of the wrong type, or a dtype other than float32/float64.
    ValueError
        Shapes that differ, a read-only or non-contiguous output, arrays that
        overlap, or a hyperparameter out of range. Nothing is written.

    Examples
    --------
    >>> import numpy as np
    >>> param = np.array([1.0, 2.0, 3.0])
    >>> m, u = np.zeros(3), np.zeros(3)
    >>> adamax_step_inplace(param, np.array([0.1, 0.2, 0.3]), m, u, t=1)
    >>> param
    array([0.998, 1.998, 2.998])
    >>> m
    array([0.01, 0.02, 0.03])
    """
    # The common case is checked and run in compiled code; anything else
    # (an error to report, F order, a strided grad...) takes the checks below.
    if _kernel.step_inplace(param, grad, m, u, t, lr, beta1, beta2, eps, weight_decay,
                            decoupled_weight_decay, maximize, convention, num_threads):
        return
    h = check_hyperparameters(
        t, num_threads, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay, maximize,
        convention,
    )
    run_kernel(check_arrays(param, grad, m, u), h)


def _as_float_array(name: str, value: Any) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        raise TypeError(
            f"{name} has dtype {a.dtype}, which float64 would round; "
            "supported dtypes are float32 and float64"
        )
    if a.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must hold real numbers (float32 or float64), got dtype {a.dtype}"
        )
    return a


def adamax_step(
    param: Any,
    grad: Any,
    m: Any,
    u: Any,
    t: int,
    lr: float = LR,
    beta1: float = BETA1,
    beta2: float = BETA2,
    eps: float = EPS,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    convention: str = "spec",
) -> tuple[Any, Any, Any]:
    """The Adamax step of the specification: returns the new ``(param, m, u)``.

    The inputs are left untouched. Scalars (Python or NumPy) give Python
    floats; lists and arrays give NumPy arrays of float64, or of float32
    when every input is a float32 array.

    Parameters
    ----------
    param, grad, m, u : float or array_like
        The parameter, its gradient, the first moment and the infinity norm,
        all of one shape.
    t : int
        The step number, 1 on the first step.
    lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay, maximize, convention
        As in :func:`adamax_step_inplace`.

    Returns
    -------
    param, m, u : float or numpy.ndarray
        The updated parameter, first moment and infinity norm.

    Raises
    ------
    TypeError
        Inputs that are not real numbers, or arguments of the wrong type.
    ValueError
        Shapes that differ or a hyperparameter out of range.

    Examples
    --------
    The spec's first worked example:

    >>> adamax_step(1.0, 0.1, 0.0, 0.0, t=1)
    (0.9980000002, 0.009999999999999998, 0.1)
    """
    h = check_hyperparameters(
        t, None, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay, maximize,
        convention,
    )
    inputs = (param, grad, m, u)
    arrays = [_as_float_array(name, x) for name, x in zip(_ARRAY_NAMES, inputs)]
    scalars = all(a.ndim == 0 and not isinstance(x, np.ndarray) for a, x in zip(arrays, inputs))
    float32 = all(isinstance(x, np.ndarray) and x.dtype == np.float32 for x in inputs)
    dtype = np.dtype(np.float32 if float32 else np.float64)
    for name, a in zip(_ARRAY_NAMES[1:], arrays[1:]):
        if a.shape != arrays[0].shape:
            raise ValueError(
                f"shape mismatch: param has shape {arrays[0].shape} but {name} has shape {a.shape}"
            )
    new_param, new_m, new_u = (
        np.array(a, dtype=dtype, order="C") for a in (arrays[0], arrays[2], arrays[3])
    )
    grad_c = np.ascontiguousarray(arrays[1], dtype=dtype)
    run_kernel((new_param.reshape(-1), grad_c.reshape(-1), new_m.reshape(-1), new_u.reshape(-1)), h)
    if scalars:
        return float(new_param), float(new_m), float(new_u)
    return new_param, new_m, new_u



def _byte_interval(a: np.ndarray) -> tuple[int, int]:
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


def check_many(
    params: Sequence[Any],
    grads: Sequence[Any],
    ms: Sequence[Any],
    us: Sequence[Any],
    labels: Sequence[str] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Check every quadruple; return flat views (``grad`` may be a copy).

    Errors name the quadruple: ``labels[i]`` when given, else ``arrays[i]``.
    Besides the checks of :func:`check_arrays`, no array written by one
    quadruple may overlap any array of another (a gradient may be read by
    several quadruples). The overlap checks sort byte intervals, so they cost
    O(n log n) for n arrays.
    """
    lists = [
        _sequence(name + "s", x)
        for name, x in zip(_ARRAY_NAMES, (params, grads, ms, us))
    ]
    if len({len(x) for x in lists}) != 1:
        raise ValueError(
            "params, grads, ms and us must have the same length, got "
            + ", ".join(str(len(x)) for x in lists)
        )
    if labels is None:
        labels = [f"arrays[{i}]" for i in range(len(lists[0]))]
    flat: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]] = (
        [], [], [], []
    )
    for i, (param, grad, m, u) in enumerate(zip(*lists)):
        views = check_arrays(param, grad, m, u, where=f"{labels[i]}: ")
        for out, view in zip(flat, views):
            out.append(view)
    # (start, end, quadruple, name, array) of every written, non-empty array.
    written = sorted(
        (*_byte_interval(a), i, name, a)
        for k, name in ((0, "param"), (2, "m"), (3, "u"))
        for i, a in enumerate(lists[k])
        if a.size
    )
    # Contiguous arrays fill their intervals: any overlap shows between neighbours.
    for (_, end, i, name, _a), (start, _, j, other, _b) in zip(written, written[1:]):
        if start < end:
            raise ValueError(
                f"{labels[i]} {name} and {labels[j]} {other} overlap in memory; "
                "aliasing would corrupt the update"
            )
    # Now disjoint, so sorted by end too. Test each caller's gradient (not its
    # copy) against the written arrays whose intervals meet its own.
    ends = [w[1] for w in written]
    for i, g in enumerate(lists[1]):
        lo, hi = _byte_interval(g)
        if lo == hi:
            continue
        for k in range(bisect.bisect_right(ends, lo), len(written)):
            start, _, j, name, a = written[k]
            if start >= hi:
                break
            if j != i and np.shares_memory(g, a):
                raise ValueError(
                    f"{labels[i]} grad and {labels[j]} {name} overlap in memory; "
                    "aliasing would corrupt the update"
                )
    return flat


def _sequence(name: str, value: Any) -> Sequence[Any]:
    if isinstance(value, (np.ndarray, str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of arrays, got {type(value).__name__}")
    return value


def adamax_step_many(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    ms: Sequence[np.ndarray],
    us: Sequence[np.ndarray],
    t: int,
    lr: float = LR,
    beta1: float = BETA1,
    beta2: float = BETA2,
    eps: float = EPS,
    *,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    convention: str = "spec",
    num_threads: int | None = None,
) -> None:
    """One Adamax step on many arrays at once, in place, in one compiled call.

    Each quadruple ``(params[i], grads[i], ms[i], us[i])`` follows the rules
    of :func:`adamax_step_inplace` (its own shape; float32 and float64
    quadruples may be mixed), and the result is bitwise identical to calling
    it on each quadruple. The work is split across threads by elements, not
    by arrays.

    Parameters
    ----------
    params, grads, ms, us : sequence of numpy.ndarray
        Four sequences of equal length.
    t, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay, maximize, convention, num_threads
        As in :func:`adamax_step_inplace`.

    Raises
    ------
    TypeError, ValueError
        As :func:`adamax_step_inplace`, with the index of the offending
        quadruple in the message. Every quadruple is checked before the
        first write: a failed call changes nothing.

    Examples
    --------
    >>> import numpy as np
    >>> params = [np.ones(2), np.ones(3, dtype=np.float32)]
    >>> grads = [np.full(2, 0.1), np.full(3, 0.1, dtype=np.float32)]
    >>> ms = [np.zeros_like(p) for p in params]
    >>> us = [np.zeros_like(p) for p in params]
    >>> adamax_step_many(params, grads, ms, us, t=1)
    >>> params[0]
    array([0.998, 0.998])
    """
    if _kernel.step_many(params, grads, ms, us, t, lr, beta1, beta2, eps, weight_decay,
                         decoupled_weight_decay, maximize, convention, num_threads):
        return
    h = check_hyperparameters(
        t, num_threads, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay, maximize,
        convention,
    )
    run_many(check_many(params, grads, ms, us), h)
