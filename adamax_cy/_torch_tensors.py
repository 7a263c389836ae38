"""Tensor checks and layouts for :mod:`adamax_cy.torch`.

What the optimizer asks of one tensor or of the tensors a step writes: which
path takes a tensor (the compiled table, the flat views of the general path),
whether a layout is dense, whether written tensors overlap, the checks of a
parameter, a gradient and a step counter. Importing this module imports torch.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ._defaults import MAX_STEP

#: The dtypes of the table (the path of plain contiguous parameters).
SUPPORTED_DTYPES = (torch.float32, torch.float64)
#: The dtypes the compiled kernel computes (complex ones as their real views).
KERNEL_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
_KERNEL_DTYPE_SET = frozenset(KERNEL_DTYPES)


class MismatchError(ValueError, RuntimeError):
    """A tensor of a step that does not fit its parameter (shape, dtype, an inference tensor).

    A ValueError, as adamax_cy reports a value out of place, and the
    RuntimeError ``torch.optim.Adamax`` raises for the same input.
    """


class MissingStateError(ValueError, KeyError):
    """A parameter's state lacks an entry: a ValueError, and the KeyError torch raises."""

    __str__ = BaseException.__str__  # the message, not KeyError's repr of it


class BetasLengthError(ValueError, IndexError):
    """``betas`` with fewer than two items: a ValueError, and the IndexError torch raises."""


def _scalar_dtype() -> torch.dtype:
    # Where torch.optim keeps its step counters (float64 under a float64 default dtype).
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _step_count(value: float, where: str) -> None:
    """A step counter the kernel can advance: a whole number from 0 to MAX_STEP - 2."""
    if not (math.isfinite(value) and value == int(value) and 0 <= value < MAX_STEP - 1):
        raise ValueError(
            f"{where}: state['step'] must be a whole number from 0 to 2**63 - 2 before a step, "
            f"got {value}"
        )


def _is_counter(step: Any) -> bool:
    """Whether a state's ``step`` is a counter kept as it is: a one-element real CPU tensor.

    torch keeps a loaded counter of any real dtype and advances it in place
    in that dtype (an int64 one exactly, a float16 one up to 2048); the
    table takes float32 and float64 ones, the general path the others.
    """
    return (type(step) is torch.Tensor and step.numel() == 1 and step.device.type == "cpu"
            and step.layout is torch.strided and not step.is_inference()
            and not step.is_complex() and step.dtype is not torch.bool)


def _counter_value(step: torch.Tensor) -> float:
    """The count before this step, as torch reads it: one less than the count after it in the
    counter's dtype (a float16 counter at 2048 stays at 2048)."""
    if step.dtype in SUPPORTED_DTYPES:
        return step.item()
    return (step.detach() + 1).item() - 1


def _shared_counters(steps: Sequence[Any]) -> set[int]:
    """The addresses of the counters among ``steps`` that more than one state holds.

    torch advances such a counter once per parameter, in order (or all
    first, with ``foreach=True``), each parameter reading its own count:
    their parameters take torch's implementation.
    """
    seen: set[int] = set()
    shared: set[int] = set()
    for step in steps:
        address = _counter_address(step)
        if address is not None:
            (shared if address in seen else seen).add(address)
    return shared


def _counter_address(step: Any) -> int | None:
    """Where a CPU counter tensor keeps its count (None for anything else)."""
    if isinstance(step, torch.Tensor) and step.device.type == "cpu" and step.numel():
        return step.data_ptr()
    return None


def _check_tensor(t: torch.Tensor, name: str, where: str, written: bool = True) -> None:
    if written and t.is_inference():
        raise MismatchError(
            f"{where}: {name} is an inference tensor (made under torch.inference_mode()), "
            "which cannot be updated in place outside inference mode"
        )


def _is_plain(t: Any) -> bool:
    return type(t) is torch.nn.Parameter or type(t) is torch.Tensor


def _is_plain_cpu(t: Any) -> bool:
    return _is_plain(t) and t.device.type == "cpu" and t.layout is torch.strided


def _for_table(t: Any) -> bool:
    """Whether the table takes tensor ``t`` (a parameter or a state tensor) as it is."""
    return (_is_plain_cpu(t) and t.dtype in SUPPORTED_DTYPES and t.is_contiguous()
            and not t.is_conj() and not t.is_neg())


def _check_disjoint(written: Sequence[tuple[torch.Tensor, ...]], where: str,
                    labels: Sequence[str] | None = None) -> None:
    """No written tensor overlaps another (a shared parameter, say).

    ``written`` holds dense tensors ``(param, exp_avg, exp_inf)``, labelled
    by ``labels`` (in the error message) when given.
    """
    spans = sorted(
        (t.data_ptr(), t.data_ptr() + t.numel() * t.element_size(), j, name)
        for j, tensors in enumerate(written)
        for name, t in zip(("parameter", "exp_avg", "exp_inf"), tensors)
        if t.numel()
    )
    for (_, end, j, name), (start, _, k, other) in zip(spans, spans[1:]):
        if start < end:
            if labels is not None:
                raise ValueError(
                    f"{labels[j]} and {labels[k]}: {_article(name)} {name} and {_article(other)} "
                    f"{other} share memory (one tensor in two parameter groups, or views of one "
                    "tensor); an in-place update would corrupt them"
                )
            raise ValueError(
                f"{where}: {_article(name)} {name} and {_article(other)} {other} share memory (a parameter listed twice, or "
                "views of one tensor); an in-place update would corrupt them"
            )


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def _grad_tensor(g: torch.Tensor, p: torch.Tensor, where: str) -> torch.Tensor:
    """A contiguous copy of a gradient the kernel cannot read as it is, or a clear error."""
    if g.layout is not torch.strided:
        raise RuntimeError(f"{where}: Adamax does not support sparse gradients (the gradient is {g.layout})")
    if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
        raise MismatchError(f"{where}: the gradient does not match the parameter's shape, dtype and device")
    return g.detach().resolve_neg().resolve_conj().contiguous()


_DTENSOR: list[type | None] = []


def _dtensor_type() -> type | None:
    """``torch.distributed.tensor.DTensor``, or None where torch has no distributed package."""
    if not _DTENSOR:
        try:
            from torch.distributed.tensor import DTensor as dtensor
        except ImportError:  # pragma: no cover - torch built without distributed
            _DTENSOR.append(None)
        else:
            _DTENSOR.append(dtensor)
    return _DTENSOR[0]


def _dense_layout(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill its memory from ``data_ptr()`` on: no gap, no overlap."""
    expected = 1
    for stride, size in sorted((st, s) for s, st in zip(t.shape, t.stride()) if s != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` (of one shape) lay out their elements alike."""
    sa, sb = a.stride(), b.stride()
    return sa == sb or all(x == y for x, y, s in zip(sa, sb, b.shape) if s != 1)


def _flat(t: torch.Tensor, n: int) -> Any:
    """A 1-D NumPy view of a dense real tensor of ``n`` elements, in storage order."""
    return t.detach().as_strided((n,), (1,)).numpy()
