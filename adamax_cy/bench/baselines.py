"""What the benchmark times: the implementations, their names and their arrays.

The NumPy baselines are written here; torch's ``torch.optim.Adamax`` (both
ways) and :class:`adamax_cy.torch.Adamax` are timed when torch is installed.
"""

from __future__ import annotations

import itertools
import timeit
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from .. import _kernel
from .._defaults import BETA1, BETA2, EPS, LR
from ..api import adamax_step_inplace, adamax_step_many

DTYPES = ("float32", "float64")
GRADIENTS = ("kept", "new")  # p.grad the same tensor at every step, or a new one (zero_grad())
ASSIGN = "gradient assignments"  # timed with new gradients, and subtracted
STEP = 3  # any t > 1 will do; the cost does not depend on it

FLOOR = "floor"
FLOOR_1T = "floor 1 thread"
FLOOR_DIV = "floor with division"
FLOOR_DIV_1T = "floor with division 1 thread"
INPLACE = "adamax_step_inplace"
INPLACE_1T = "adamax_step_inplace 1 thread"
INPLACE_ALL = "adamax_step_inplace all threads"
NUMPY = "numpy as written"
NUMPY_OUT = "numpy out="
TORCH = "torch foreach=False"
TORCH_FOREACH = "torch foreach=True"
CY_TORCH = "adamax_cy.torch.Adamax"
BASELINES = (NUMPY, NUMPY_OUT, TORCH, TORCH_FOREACH)
IMPLEMENTATIONS = (FLOOR, FLOOR_1T, FLOOR_DIV, FLOOR_DIV_1T, INPLACE, INPLACE_1T, INPLACE_ALL, NUMPY, NUMPY_OUT, TORCH, TORCH_FOREACH, CY_TORCH)


def numpy_step(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    u: np.ndarray,
    t: int,
    lr: float = LR,
    beta1: float = BETA1,
    beta2: float = BETA2,
    eps: float = EPS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The step with NumPy, written the way the formulas read (new arrays).

    Examples
    --------
    >>> p, m, u = numpy_step(np.array([1.0]), np.array([0.1]), np.zeros(1), np.zeros(1), 1)
    >>> p.round(6), m.round(6), u
    (array([0.998]), array([0.01]), array([0.1]))
    """
    m = beta1 * m + (1 - beta1) * grad
    u = np.maximum(beta2 * u, np.abs(grad))
    param = param - (lr / (1 - beta1**t)) * m / (u + eps)
    return param, m, u


def numpy_step_out(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    u: np.ndarray,
    t: int,
    scratch: np.ndarray,
    lr: float = LR,
    beta1: float = BETA1,
    beta2: float = BETA2,
    eps: float = EPS,
) -> None:
    """The step with NumPy, in place: ufuncs with ``out=`` and one scratch array.

    Examples
    --------
    >>> p, m, u, s = np.array([1.0]), np.zeros(1), np.zeros(1), np.empty(1)
    >>> numpy_step_out(p, np.array([0.1]), m, u, 1, s)
    >>> p.round(6), m.round(6), u
    (array([0.998]), array([0.01]), array([0.1]))
    """
    m *= beta1
    np.multiply(grad, 1 - beta1, out=scratch)
    m += scratch
    u *= beta2
    np.abs(grad, out=scratch)
    np.maximum(u, scratch, out=u)
    np.add(u, eps, out=scratch)
    np.divide(m, scratch, out=scratch)
    scratch *= lr / (1 - beta1**t)
    param -= scratch


@dataclass
class Case:
    """One implementation ready to run: a statement and its namespace."""

    name: str
    stmt: str
    namespace: dict[str, Any]
    setup: str = "pass"

    def timer(self) -> timeit.Timer:
        return timeit.Timer(self.stmt, self.setup, globals=self.namespace)


def optional_torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def optional_cy_torch() -> Any:
    try:
        from .. import torch as cy_torch
    except ImportError:
        return None
    return getattr(cy_torch, "Adamax", None)


def state(n: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, ...]:
    """param, grad, m, u for a benchmark of ``n`` elements (finite, non-zero)."""
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(n).astype(dtype)
    grad = rng.standard_normal(n).astype(dtype)
    m = (0.1 * grad).astype(dtype)
    u = np.abs(grad).astype(dtype)
    return param, grad, m, u


def cases(
    arrays: tuple[np.ndarray, ...], wanted: Sequence[str], notes: list[str]
) -> Iterator[Case]:
    """The implementations in ``wanted`` that can run here, on shared arrays."""
    param, grad, m, u = arrays
    base = {"p": param, "g": grad, "m": m, "u": u, "t": STEP}
    if FLOOR in wanted:
        yield Case(FLOOR, "floor(p, g, m, u, 0.0, 0)", {**base, "floor": _kernel.floor})
    if FLOOR_1T in wanted:
        yield Case(FLOOR_1T, "floor(p, g, m, u, 0.0, 1)", {**base, "floor": _kernel.floor})
    if FLOOR_DIV in wanted:
        yield Case(FLOOR_DIV, "floor(p, g, m, u, 0.0, 0, True)", {**base, "floor": _kernel.floor})
    if FLOOR_DIV_1T in wanted:
        yield Case(FLOOR_DIV_1T, "floor(p, g, m, u, 0.0, 1, True)",
                   {**base, "floor": _kernel.floor})
    if INPLACE in wanted:
        yield Case(INPLACE, "step(p, g, m, u, t)", {**base, "step": adamax_step_inplace})
    if INPLACE_1T in wanted:
        yield Case(INPLACE_1T, "step(p, g, m, u, t, num_threads=1)",
                   {**base, "step": adamax_step_inplace})
    if INPLACE_ALL in wanted:  # as the floor: every thread, whatever the adaptive default picks
        yield Case(INPLACE_ALL, "step(p, g, m, u, t, num_threads=all)",
                   {**base, "step": adamax_step_inplace, "all": max(2, _kernel.max_threads())})
    if NUMPY in wanted:
        # Rebinds local names as a user's loop would; the shared arrays stay as they are.
        yield Case(NUMPY, "p, m, u = step(p, g, m, u, t)", {"state": arrays, "step": numpy_step,
                   "t": STEP}, setup="p, g, m, u = state")
    if NUMPY_OUT in wanted:
        yield Case(NUMPY_OUT, "step(p, g, m, u, t, s)",
                   {**base, "s": np.empty_like(param), "step": numpy_step_out})
    torch = optional_torch() if any(w in wanted for w in (TORCH, TORCH_FOREACH, CY_TORCH)) else None
    if torch is None:
        if any(w in wanted for w in (TORCH, TORCH_FOREACH)):
            note = "torch is not installed: torch.optim.Adamax skipped"
            if note not in notes:
                notes.append(note)
        return
    optimizers = [(TORCH, torch.optim.Adamax, {"foreach": False}),
                  (TORCH_FOREACH, torch.optim.Adamax, {"foreach": True})]
    cy_adamax = optional_cy_torch() if CY_TORCH in wanted else None
    if cy_adamax is not None:
        optimizers.append((CY_TORCH, cy_adamax, {}))
    elif CY_TORCH in wanted:
        note = "adamax_cy.torch.Adamax is not available: skipped"
        if note not in notes:
            notes.append(note)
    for name, cls, options in optimizers:
        if name not in wanted:
            continue
        tensor = torch.from_numpy(param)  # shares memory: no copy of the big arrays
        tensor.grad = torch.from_numpy(grad)
        optimizer = cls([tensor], lr=LR, betas=(BETA1, BETA2), eps=EPS, **options)
        yield Case(name, "opt.step()", {"opt": optimizer, "keep": tensor})


def many_cases(dtype: str, arrays: int, elements: int) -> list[tuple[str, timeit.Timer]]:
    """adamax_step_many on ``arrays`` arrays against one array of the same total size."""
    quads = [state(elements, dtype, seed) for seed in range(arrays)]
    lists = [list(x) for x in zip(*quads)]
    one = state(arrays * elements, dtype)
    names = (f"adamax_step_many {arrays} x {elements}", f"adamax_step_many 1 x {arrays * elements}",
             f"adamax_step_inplace {arrays * elements}")
    return [
        (names[0], timeit.Timer("many(P, G, M, U, t)", globals={
            "many": adamax_step_many, "P": lists[0], "G": lists[1], "M": lists[2],
            "U": lists[3], "t": STEP})),
        (names[1], timeit.Timer("many([p], [g], [m], [u], t)", globals={
            "many": adamax_step_many, "p": one[0], "g": one[1], "m": one[2], "u": one[3],
            "t": STEP})),
        (names[2], timeit.Timer("step(p, g, m, u, t)", globals={
            "step": adamax_step_inplace, "p": one[0], "g": one[1], "m": one[2], "u": one[3],
            "t": STEP})),
    ]


def optimizer_cases(dtype: str, tensors: int, elements: int, gradients: str,
                    notes: list[str]) -> list[tuple[str, timeit.Timer]]:
    """``step()`` of adamax_cy.torch.Adamax and of torch.optim.Adamax (both ways) on
    ``tensors`` parameters of ``elements`` each; empty without torch.

    With ``gradients="new"`` every step first gives each parameter a
    gradient tensor other than its last one, as ``zero_grad()`` and
    ``backward()`` do (two sets, used in turn: nothing is allocated); the
    assignments alone are timed too (:data:`ASSIGN`), for the caller to
    subtract. With one tensor, the memory floor on adamax_cy's own tensors
    (parameter, gradient, ``exp_avg``, ``exp_inf``) is timed as well
    (:data:`FLOOR`).
    """
    torch, cy_adamax = optional_torch(), optional_cy_torch()
    if torch is None or cy_adamax is None:
        note = "torch or adamax_cy.torch is not available: the optimizer comparison is skipped"
        if note not in notes:
            notes.append(note)
        return []
    named = []
    for name, cls, options in ((CY_TORCH, cy_adamax, {}),
                               (TORCH, torch.optim.Adamax, {"foreach": False}),
                               (TORCH_FOREACH, torch.optim.Adamax, {"foreach": True})):
        arrays = [state(elements, dtype, seed) for seed in range(tensors)]
        params = [torch.nn.Parameter(torch.from_numpy(a[0])) for a in arrays]
        grads = [[torch.from_numpy(a[1]) for a in arrays],
                 [torch.from_numpy(a[1].copy()) for a in arrays]]
        for p, g in zip(params, grads[0]):
            p.grad = g
        opt = cls(params, lr=LR, betas=(BETA1, BETA2), eps=EPS, **options)
        ns = {"opt": opt, "params": params, "sets": itertools.cycle(grads), "zip": zip}
        stmt = "opt.step()" if gradients == "kept" else (
            "for p, g in zip(params, next(sets)):\n    p.grad = g\nopt.step()")
        named.append((name, timeit.Timer(stmt, globals=ns)))
        if tensors == 1 and name == CY_TORCH:
            opt.step()  # creates the state
            st = opt.state[params[0]]
            floor_ns = {"floor": _kernel.floor, "a": (arrays[0][0], arrays[0][1],
                        st["exp_avg"].numpy(), st["exp_inf"].numpy())}
            named.append((FLOOR, timeit.Timer("floor(*a, 0.0, 0)", globals=floor_ns)))
        if gradients == "new" and name == TORCH:
            assign_ns = {**ns, "sets": itertools.cycle(grads)}
            named.append((ASSIGN, timeit.Timer(stmt.rsplit("\n", 1)[0], globals=assign_ns)))
    return named
