"""The general path of :mod:`adamax_cy.torch`: the groups the compiled table does not take.

Each parameter is routed to the compiled kernel through flat views in storage
order (complex parameters, dense layouts that are not contiguous, the local
shards of ``DTensor`` parameters) or to torch's own implementation. The
group's checked options come from the caller (:mod:`adamax_cy.torch`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.adamax import adamax as torch_adamax

from ._defaults import MAX_STEP
from ._torch_tensors import (
    SUPPORTED_DTYPES, _KERNEL_DTYPE_SET, MismatchError, _check_disjoint, _check_tensor,
    _counter_address, _counter_value, _dense_layout, _dtensor_type, _flat, _for_table, _is_counter,
    _is_plain, _same_layout, _scalar_dtype, _step_count,
)
from .api import adamax_step_many


class _GeneralStep:
    """One step of a group on the general path.

    Each parameter with a gradient is routed: to the compiled kernel through
    flat views in storage order (its local shard for a ``DTensor``), or to
    torch's implementation. :meth:`add` checks and routes, :meth:`finish`
    checks the group, :meth:`run` writes.
    """

    def __init__(self, group: dict[str, Any], options: dict[str, Any] | None, convention: str,
                 num_threads: int | None, where: str) -> None:
        """``options``: the group's checked hyperparameters, None for torch's implementation."""
        self.group = group
        self.convention = convention
        self.num_threads = num_threads
        self.where = where
        self.options = options
        self.kernel: dict[int, tuple[list[Any], list[Any], list[Any], list[Any]]] = {}
        self.steps: list[torch.Tensor] = []
        self.written: list[tuple[torch.Tensor, ...]] = []  # by the kernel
        self.indices: list[int] = []  # of the parameters in written
        self.torch_lists: tuple[list[torch.Tensor], ...] = ([], [], [], [], [])

    def add(self, j: int, p: torch.Tensor, g: torch.Tensor, state: dict[str, Any],
            shared: set[int] | frozenset[int] = frozenset()) -> bool:
        """Route parameter ``j``, ``p``; whether the table would take it (and its state) as it is.

        ``shared``: the addresses of counters other parameters' states hold
        too (see ``_shared_counters``); such a parameter takes torch's
        implementation.
        """
        views = None
        if (self.options is not None and p.dtype in _KERNEL_DTYPE_SET and p.is_cpu
                and not (shared and _counter_address(state["step"]) in shared)):
            views = self._local(p, g, state["exp_avg"], state["exp_inf"])
        if views is None:
            where = f"{self.where}['params'][{j}]"
            if g.shape != p.shape:
                raise MismatchError(f"{where}: the gradient does not match the parameter's shape")
            for name in ("exp_avg", "exp_inf"):
                t = state[name]
                if not isinstance(t, torch.Tensor) or t.shape != p.shape or t.dtype != p.dtype:
                    raise MismatchError(f"{where}: state[{name!r}] does not match the parameter's shape and dtype")
            if self.convention != "torch":
                raise ValueError(
                    f"{self.where}['params'][{j}]: this parameter ({p.dtype} on {p.device}) is "
                    "stepped by torch's implementation, which computes convention='torch' only"
                )
            params, grads, exp_avgs, exp_infs, steps = self.torch_lists
            params.append(p)
            grads.append(g)
            exp_avgs.append(state["exp_avg"])
            exp_infs.append(state["exp_inf"])
            steps.append(state["step"])
            return False
        exp_avg, exp_inf, step = state["exp_avg"], state["exp_inf"], state["step"]
        if p.is_inference() or exp_avg.is_inference() or exp_inf.is_inference():
            where = f"{self.where}['params'][{j}]"
            _check_tensor(p, "the parameter", where)
            _check_tensor(exp_avg, "state['exp_avg']", where)
            _check_tensor(exp_inf, "state['exp_inf']", where)
        if not _is_counter(step):
            step = state["step"] = torch.tensor(float(step), dtype=_scalar_dtype())
        value = _counter_value(step)
        if not (math.isfinite(value) and value == int(value) and 0 <= value < MAX_STEP - 1):
            _step_count(value, f"{self.where}['params'][{j}]")  # raises
        lp, lg, lm, lu = views
        self.steps.append(step)
        self.written.append((lp, lm, lu))
        self.indices.append(j)
        n = lp.numel()
        if n:
            real: tuple[torch.Tensor, ...] = views
            if lp.is_complex():
                real = tuple(torch.view_as_real(a.detach()) for a in views)
                n *= 2
            for out, a in zip(self.kernel.setdefault(int(value) + 1, ([], [], [], [])), real):
                out.append(_flat(a, n))
        return (_for_table(p) and _for_table(exp_avg) and _for_table(exp_inf)
                and step.dtype in SUPPORTED_DTYPES)

    @staticmethod
    def _local(p: Any, g: Any, exp_avg: Any, exp_inf: Any
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(param, grad, exp_avg, exp_inf)`` as the kernel reads them, or None for torch's path.

        The local tensors of a ``DTensor`` parameter (its gradient and state
        of the same mesh and placements); the gradient as a copy in the
        parameter's layout when it is laid out otherwise.
        """
        tensors: tuple[Any, ...] = (p, g, exp_avg, exp_inf)
        if not _is_plain(p):
            dtensor = _dtensor_type()
            if dtensor is None or not all(isinstance(t, dtensor) for t in tensors):
                return None
            if not all(t.device_mesh == p.device_mesh and t.placements == p.placements for t in tensors):
                return None
            with torch.no_grad():
                tensors = tuple(t.to_local().detach() for t in tensors)
            p, g, exp_avg, exp_inf = tensors
        if not (_is_plain(p) and p.is_cpu and p.layout is torch.strided
                and p.dtype in _KERNEL_DTYPE_SET and (p.is_contiguous() or _dense_layout(p))):
            return None
        dtype, shape = p.dtype, p.shape
        for t in tensors:
            if not (_is_plain(t) and t.is_cpu and t.layout is torch.strided
                    and t.dtype == dtype and t.shape == shape):
                return None
        for t in (p, exp_avg, exp_inf):
            if t.is_conj() or t.is_neg() or not _same_layout(t, p):
                return None
        if g.is_conj() or g.is_neg() or not _same_layout(g, p):
            g = torch.empty_like(p, memory_format=torch.preserve_format).copy_(g.detach())
        return p, g, exp_avg, exp_inf

    def finish(self) -> _GeneralStep | None:
        """Check that no written tensor overlaps another; self, or None with nothing to do."""
        if not self.steps and not self.torch_lists[0]:
            return None
        _check_disjoint(self.written, self.where)
        return self

    def run(self) -> list[torch.Tensor]:
        """Update the parameters; the tensors the kernel wrote (for autograd's version counters)."""
        o = self.options
        if o is not None:
            for t, (ps, gs, ms, us) in self.kernel.items():
                adamax_step_many(
                    ps, gs, ms, us, t, o["lr"], o["beta1"], o["beta2"], o["eps"],
                    weight_decay=o["weight_decay"], maximize=o["maximize"],
                    convention=self.convention, num_threads=self.num_threads,
                )
            if self.steps:
                torch._foreach_add_(self.steps, 1)
        params, grads, exp_avgs, exp_infs, steps = self.torch_lists
        if params:
            group = self.group
            beta1, beta2 = group["betas"]
            has_complex = any(p.is_complex() for p in params)
            differentiable = group.get("differentiable", False)
            with torch.set_grad_enabled(bool(differentiable)):
                torch_adamax(
                    params, grads, exp_avgs, exp_infs, steps, eps=group["eps"], beta1=beta1,
                    beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
                    foreach=group.get("foreach"),
                    maximize=group["maximize"], differentiable=differentiable,
                    capturable=group.get("capturable", False), has_complex=has_complex,
                )
        return [ts[0] for ts in self.written]
