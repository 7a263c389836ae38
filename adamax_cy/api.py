"""The public functions: validation first, then one call into the kernel.

Everything a caller can get wrong is checked (by :mod:`adamax_cy._validation`)
before any array is written, so a call that raises leaves every array
exactly as it was.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from . import _kernel
from ._defaults import BETA1, BETA2, EPS, LR
from ._validation import (
    ARRAY_NAMES,
    as_float_array,
    check_arrays,
    check_many,
    check_num_threads,
    check_options,
    check_shapes,
    check_step,
)

__all__ = ["adamax_step", "adamax_step_inplace", "adamax_step_many"]


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
        and the constant added for numerical stability (the paper's defaults).
    weight_decay : float, optional
        L2 penalty added to the gradient (PyTorch's ``weight_decay``), or
        decoupled decay ``param -= lr * weight_decay * param`` (AdamW style)
        when ``decoupled_weight_decay`` is true.
    decoupled_weight_decay : bool, optional
        Apply ``weight_decay`` to the parameter instead of the gradient.
    maximize : bool, optional
        Ascend instead of descend (negate the gradient).
    convention : {"spec", "torch"}, optional
        ``"spec"`` divides by ``u + eps`` (the specification, Keras, TensorFlow);
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
    arrays = [as_float_array(name, x) for name, x in zip(ARRAY_NAMES, inputs)]
    scalars = all(a.ndim == 0 and not isinstance(x, np.ndarray) for a, x in zip(arrays, inputs))
    float32 = all(isinstance(x, np.ndarray) and x.dtype == np.float32 for x in inputs)
    dtype = np.dtype(np.float32 if float32 else np.float64)
    check_shapes(arrays)
    new_param, new_m, new_u = (
        np.array(a, dtype=dtype, order="C") for a in (arrays[0], arrays[2], arrays[3])
    )
    grad_c = np.ascontiguousarray(arrays[1], dtype=dtype)
    run_kernel((new_param.reshape(-1), grad_c.reshape(-1), new_m.reshape(-1), new_u.reshape(-1)), h)
    if scalars:
        return float(new_param), float(new_m), float(new_u)
    return new_param, new_m, new_u



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
