"""A ``torch.optim.Optimizer`` that runs the compiled Adamax step.

:class:`Adamax` is a drop-in replacement for :class:`torch.optim.Adamax` on
CPU: the same constructor, the same ``state_dict`` layout (checkpoints load
both ways) and PyTorch's convention by default. Each step updates the
parameters in place, in their own memory, with one compiled call per
parameter group; a compiled table per group remembers each tensor's memory
and checks, in a few attribute reads per parameter, that it is still
current (Python runs only for what changed).

Importing this module imports torch; nothing else in :mod:`adamax_cy` does.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import torch

from ._defaults import BETA1, BETA2, EPS, LR, MAX_STEP
from . import _tensor_table
from ._validation import check_betas, check_convention, check_num_threads, check_options

__all__ = ["Adamax"]

SUPPORTED_DTYPES = (torch.float32, torch.float64)

#: The keyword arguments of ``torch.optim.Adamax`` that only select how torch
#: computes the step; this optimizer accepts them at these values only.
TORCH_ONLY_OPTIONS = {"foreach": None, "differentiable": False, "capturable": False}


def _scalar_dtype() -> torch.dtype:
    # Where torch.optim keeps its step counters (float64 under a float64 default dtype).
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class _GroupPlan:
    """A parameter group's compiled table, and the Python side of what changed."""

    def __init__(self, group: dict[str, Any], where: str,
                 new_states: list[tuple[torch.Tensor, bool]]) -> None:
        self.group = group
        self.where = where
        self.new_states = new_states  # the optimizer's record of the states a step created
        params = list(group["params"])
        self.table = _tensor_table.TensorTable(params, torch.utils.dlpack.to_dlpack)

    def gather(self, params: list[torch.Tensor], state_of: dict[torch.Tensor, Any]) -> int:
        """The table's gather, with what changed checked and recorded; -1 for a new table."""
        table = self.table
        found = table.gather(params, state_of)
        if found > 0 and table.stale:
            for j in table.stale:
                self.refresh_entry(j, params[j], state_of)
            found = table.gather(params, state_of)
            if table.stale:
                raise RuntimeError(f"{self.where}: the parameters changed during the step")
        for j in table.to_copy:
            g = params[j].grad
            if g is None:
                raise RuntimeError(f"{self.where}: a gradient was removed during the step")
            self.refresh_grad(j, params[j], g)
        return found

    def refresh_entry(self, j: int, p: torch.Tensor, state_of: dict[torch.Tensor, Any]) -> None:
        """Check parameter ``j`` and its state (created if need be) and record them."""
        if p not in state_of or not state_of[p]:
            self.new_states.append((p, p in state_of))
        _new_entry(self, j, p, state_of[p], f"{self.where}['params'][{j}]")

    def refresh_grad(self, j: int, p: torch.Tensor, g: torch.Tensor) -> None:
        """Give the table a copy of a gradient it cannot read in place, or raise."""
        a = _grad_tensor(g, p, f"{self.where}['params'][{j}]")
        self.table.set_grad(j, a, a.data_ptr())


class Adamax(torch.optim.Optimizer):
    """Adamax for PyTorch on CPU, computed by the compiled kernel.

    A drop-in replacement for :class:`torch.optim.Adamax`: the same
    constructor, parameter groups, per-parameter state (``step``,
    ``exp_avg``, ``exp_inf``) and ``state_dict`` layout, so checkpoints move
    between the two both ways and LR schedulers work unchanged. Each step
    updates the tensors in place, in their own memory, in one compiled call
    per parameter group (float32 and float64 parameters together), instead
    of several torch operations per tensor.

    Parameters
    ----------
    params : iterable
        Tensors to optimise, or dicts defining parameter groups (each with
        its own hyperparameters), as for any ``torch.optim.Optimizer``.
        Parameters must be dense, contiguous CPU tensors of dtype float32
        or float64.
    lr : float or Tensor, optional
        Learning rate (read from each parameter group at every step).
    betas : tuple of float, optional
        ``(beta1, beta2)``: decay of the first moment and of the infinity norm.
    eps : float, optional
        Added for numerical stability (inside the max under
        ``convention="torch"``, to the denominator under ``"spec"``).
    weight_decay : float, optional
        L2 penalty added to the gradient, as in PyTorch.
    foreach : None, optional
        Accepted for compatibility; only ``None`` (the step is always one
        fused call).
    maximize : bool, optional
        Ascend instead of descend (negate the gradient).
    differentiable, capturable : bool, optional
        Accepted for compatibility; only ``False``.
    convention : {"torch", "spec"}, optional
        ``"torch"`` (the default) computes PyTorch's Adamax,
        ``u = max(beta2 * u, |g| + eps)`` and divides by ``u``; ``"spec"``
        divides by ``u + eps`` (SPEC.md, Keras). One setting for the whole
        optimizer; it is not stored in the ``state_dict``.
    num_threads : int or None, optional
        Threads for the kernel; ``None`` is the OpenMP default. Results do
        not depend on it.

    Raises
    ------
    TypeError
        A hyperparameter of the wrong type; at a step, a parameter or
        gradient that is complex, sparse, or of a dtype other than float32
        and float64.
    ValueError
        A hyperparameter out of range, ``foreach``, ``differentiable`` or
        ``capturable`` at a value other than the default; at a step, a
        parameter that is not contiguous, not on the CPU, or that shares
        memory with another parameter of its group. A step that raises
        changes no parameter and no state.

    Notes
    -----
    Differences from ``torch.optim.Adamax``: complex parameters are refused
    (torch updates their real and imaginary parts as independent reals; use
    ``torch.view_as_real`` parameters for that); parameters are updated
    by a different rounding sequence, so results agree with torch's to
    within a few ulp per step rather than bitwise (``exp_inf`` is equal);
    step counters must be whole numbers below 2**63 - 1; the storage of the
    state tensors cannot be resized (``resize_``) while the optimizer holds
    them. Within a group, parameters whose step counts differ (one that had no
    gradient at some step) take one compiled call per distinct count.
    Gradients must not share memory with the parameters or the state (autograd
    never makes such gradients). A gradient that is not contiguous, or that
    is a lazily negated view, is read through a contiguous copy made at that
    step; every other gradient is read in place.

    Replacing a parameter's ``.data``, its state, a state entry or its
    gradient between steps is seen at the next step, as
    ``torch.optim.Adamax`` sees it; assigning a state tensor's ``.data`` is
    not (assign a new tensor to the state entry instead). Until that next
    step the optimizer still holds the replaced state tensors and parameter
    memory; it never holds a gradient.

    Examples
    --------
    >>> import torch
    >>> from adamax_cy.torch import Adamax
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    >>> opt = Adamax([w], lr=0.002)
    >>> w.grad = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    >>> opt.step()
    >>> w.detach()
    tensor([0.9980, 1.9980, 2.9980], dtype=torch.float64)
    >>> sorted(opt.state_dict()["state"][0])
    ['exp_avg', 'exp_inf', 'step']
    >>> opt.state[w]["step"]
    tensor(1.)
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | torch.Tensor = LR,
        betas: tuple[float, float] = (BETA1, BETA2),
        eps: float = EPS,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        convention: str = "torch",
        num_threads: int | None = None,
    ) -> None:
        options = {"foreach": foreach, "differentiable": differentiable, "capturable": capturable}
        _check_torch_only(options, "")
        self.convention = check_convention(convention)
        self.num_threads = check_num_threads(num_threads) or None
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            **options,
        }
        self._plans: dict[int, _GroupPlan] = {}
        # (parameter, whether it had a state entry) for the states this step created
        self._new_states: list[tuple[torch.Tensor, bool]] = []
        _group_options(defaults, "torch", "")
        super().__init__(params, defaults)

    def __getstate__(self) -> dict[str, Any]:
        return {
            **super().__getstate__(),
            "convention": self.convention,
            "num_threads": self.num_threads,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("convention", "torch")
        self.__dict__.setdefault("num_threads", None)
        self._plans = {}  # the tensors may all have been replaced
        self._new_states = []
        for group in self.param_groups:
            for key, default in TORCH_ONLY_OPTIONS.items():
                group.setdefault(key, default)
            group.setdefault("maximize", False)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict saved by this class or by ``torch.optim.Adamax``.

        Parameters
        ----------
        state_dict : dict
            As returned by ``state_dict()`` of either optimizer.

        Raises
        ------
        ValueError
            The state dict is for a different set of parameters, or one of
            its groups has ``differentiable`` or ``capturable`` set. Nothing
            is loaded then. (A ``foreach`` setting is kept but has no effect.)
        """
        for i, group in enumerate(state_dict.get("param_groups", ())):
            options = {k: group.get(k, v) for k, v in TORCH_ONLY_OPTIONS.items() if k != "foreach"}
            _check_torch_only(options, f"param_groups[{i}]: ")
        super().load_state_dict(state_dict)

    # No torch.no_grad() here: the step runs no torch operation that autograd
    # could record, and the decorator costs about 2 us per call.
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimisation step on every parameter that has a gradient.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (run with gradients
            enabled, before the step).

        Returns
        -------
        object
            The closure's loss, or ``None``.

        Raises
        ------
        TypeError, ValueError
            As described for the class. Every group is checked before the
            first write, so a step that raises changes nothing.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if len(self._plans) > len(self.param_groups):  # groups were removed
            self._plans = {i: plan for i, plan in self._plans.items() if i < len(self.param_groups)}
        self._new_states.clear()
        try:
            prepared = [w for i, group in enumerate(self.param_groups) if (w := self._prepare(i, group))]
        except BaseException:
            self._forget_new_states()
            for plan in self._plans.values():
                try:
                    plan.table.release()  # the tensors held for the step
                except RuntimeError:  # another thread's step is running on it
                    pass
            raise
        touched = [p for _, params in prepared for p in params] if len(prepared) > 1 else (
            prepared[0][1] if prepared else [])
        for table, _ in prepared:
            table.run()
        if touched:
            # The writes bypassed torch: let autograd know, as an in-place op would.
            torch.autograd.graph.increment_version(touched)
        return loss

    def _prepare(
        self, i: int, group: dict[str, Any]
    ) -> tuple[_tensor_table.TensorTable, list[torch.Tensor]] | None:
        """Check group ``i`` and compute its coefficients.

        Returns its table and the parameters the step will write (all of the
        group's when their count is the table's), or None when no parameter
        has a gradient.

        The compiled table does the per-parameter work; Python runs only
        for what changed since the last step (a new parameter or state, a
        gradient that needs a copy) and to raise errors. Nothing is written.
        """
        where = f"param_groups[{i}]"
        if group.get("differentiable", False) is not False or group.get("capturable", False) is not False:
            _group_options(group, self.convention, f"{where}: ")  # raises
        plan = self._plans.get(i)
        if plan is None or plan.group is not group:
            plan = self._plans[i] = _GroupPlan(group, where, self._new_states)
        params = group["params"]
        if type(params) is not list:
            params = list(params)
        found = plan.gather(params, self.state)
        if found < 0:  # the group's parameters were changed
            plan = self._plans[i] = _GroupPlan(group, where, self._new_states)
            found = plan.gather(params, self.state)
        if found == 0:
            return None
        if plan.table.unchecked:
            _check_disjoint(plan.table.written(), where)
            plan.table.mark_checked()
        try:
            beta1, beta2 = group["betas"]
        except (TypeError, ValueError):
            beta1 = beta2 = None  # the Python checks below say what is wrong
        fast = (group["lr"], beta1, beta2, group["eps"], group["weight_decay"], group["maximize"])
        if not plan.table.prepare(*fast, self.convention, self.num_threads):
            o = _group_options(group, self.convention, f"{where}: ")
            for j, p in enumerate(params):
                if p.grad is not None:
                    _step_count(float(self.state[p]["step"]), f"{where}['params'][{j}]")
            checked = (o["lr"], o["beta1"], o["beta2"], o["eps"], o["weight_decay"], o["maximize"])
            if not plan.table.prepare(*checked, self.convention, self.num_threads):
                raise AssertionError(f"{where}: checked hyperparameters refused: {o}")
        return plan.table, params if found == len(params) else plan.table.selected_params()

    def _forget_new_states(self) -> None:
        """Undo the states a failed step created: every parameter as it was."""
        for p, had_entry in self._new_states:
            if had_entry:
                self.state[p].clear()
            else:
                self.state.pop(p, None)
        self._new_states.clear()


def _step_count(value: float, where: str) -> None:
    """A step counter the kernel can advance: a whole number from 0 to MAX_STEP - 2."""
    if not (math.isfinite(value) and value == int(value) and 0 <= value < MAX_STEP - 1):
        raise ValueError(
            f"{where}: state['step'] must be a whole number from 0 to 2**63 - 2 before a step, "
            f"got {value}"
        )


def _check_torch_only(options: dict[str, Any], where: str) -> None:
    for name, value in options.items():
        default = TORCH_ONLY_OPTIONS[name]
        if value is not default:
            raise ValueError(
                f"{where}{name}={value!r} is not supported by adamax_cy.torch.Adamax "
                f"(only {default!r}: the step is always one compiled call on CPU tensors); "
                "use torch.optim.Adamax for it"
            )


def _group_options(group: dict[str, Any], convention: str, where: str) -> dict[str, Any]:
    """The group's hyperparameters, checked, as keyword arguments of the API."""
    _check_torch_only(
        {"differentiable": group.get("differentiable", False), "capturable": group.get("capturable", False)},
        where,
    )
    lr = group["lr"]
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1:
            raise ValueError(f"{where}a Tensor lr must have one element, got {lr.numel()}")
        lr = lr.item()
    beta1, beta2 = check_betas(group["betas"], where)
    return check_options(
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=group["eps"],
        weight_decay=group["weight_decay"],
        decoupled_weight_decay=False,
        maximize=group["maximize"],
        convention=convention,
        where=where,
    )


def _check_tensor(t: torch.Tensor, name: str, where: str, written: bool = True) -> None:
    if t.layout is not torch.strided:
        raise TypeError(f"{where}: {name} is a {t.layout} tensor; only dense tensors are supported")
    if t.device.type != "cpu":
        raise ValueError(
            f"{where}: {name} is on {t.device}; adamax_cy.torch.Adamax updates CPU tensors only "
            "(use torch.optim.Adamax on other devices)"
        )
    if t.is_complex():
        raise TypeError(
            f"{where}: {name} is complex ({t.dtype}); pass torch.view_as_real of it as a "
            "real parameter instead"
        )
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{where}: {name} has dtype {t.dtype}; supported are float32 and float64")
    if not t.is_contiguous():
        raise ValueError(
            f"{where}: {name} is not contiguous; an in-place update needs contiguous memory "
            "(make the parameter contiguous before creating the optimizer)"
        )
    if written and t.is_inference():
        raise ValueError(
            f"{where}: {name} is an inference tensor (made under torch.inference_mode()), "
            "which cannot be updated in place outside inference mode"
        )


def _new_entry(plan: _GroupPlan, j: int, p: torch.Tensor, state: dict[str, Any], where: str) -> None:
    """Check a parameter and its state, creating the state on first use, and record them."""
    _check_tensor(p, "the parameter", where)
    if len(state) == 0:
        step = torch.tensor(0.0, dtype=_scalar_dtype())
        exp_avg = torch.zeros_like(p, memory_format=torch.contiguous_format)
        exp_inf = torch.zeros_like(p, memory_format=torch.contiguous_format)
    else:
        missing = {"step", "exp_avg", "exp_inf"} - set(state)
        if missing:
            raise ValueError(f"{where}: the state lacks {sorted(missing)}")
        step = state["step"]
        if not (isinstance(step, torch.Tensor) and step.numel() == 1 and step.dtype in SUPPORTED_DTYPES
                and step.device.type == "cpu" and step.layout is torch.strided
                and not step.is_inference()):
            step = torch.tensor(float(step), dtype=_scalar_dtype())  # a number, say
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
        for name, t in (("exp_avg", exp_avg), ("exp_inf", exp_inf)):
            if not isinstance(t, torch.Tensor) or t.shape != p.shape or t.dtype != p.dtype:
                raise ValueError(f"{where}: state[{name!r}] does not match the parameter's shape and dtype")
            _check_tensor(t, f"state[{name!r}]", where)
    state["step"] = step
    state["exp_avg"] = exp_avg
    state["exp_inf"] = exp_inf
    # The memory the table writes stays alive: the parameter's through an alias
    # (its address is compared at every step, so a new .data is seen); the
    # state's through NumPy views, which also forbid resizing its storage.
    keep = (p.detach(), *(t.detach().numpy() for t in (exp_avg, exp_inf, step)))
    plan.table.set_entry(j, p, state, exp_avg, exp_inf, step, exp_avg.data_ptr(),
                         exp_inf.data_ptr(), step.data_ptr(), step.dtype == torch.float64, keep)


def _check_disjoint(written: Sequence[tuple[torch.Tensor, ...]], where: str) -> None:
    """No written tensor of a group overlaps another (a shared parameter, say)."""
    spans = sorted(
        (t.data_ptr(), t.data_ptr() + t.numel() * t.element_size(), j, name)
        for j, tensors in enumerate(written)
        for name, t in zip(("parameter", "exp_avg", "exp_inf"), tensors)
        if t.numel()
    )
    for (_, end, _, name), (start, _, _, other) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError(
                f"{where}: {_article(name)} {name} and {_article(other)} {other} share memory (a parameter listed twice, or "
                "views of one tensor); an in-place update would corrupt them"
            )


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def _grad_tensor(g: torch.Tensor, p: torch.Tensor, where: str) -> torch.Tensor:
    """A contiguous copy of a gradient the kernel cannot read as it is, or a clear error."""
    if g.layout is not torch.strided:
        raise TypeError(f"{where}: the gradient is {g.layout}; sparse gradients are not supported")
    _check_tensor(g.detach().contiguous(), "the gradient", where, written=False)
    if g.shape != p.shape or g.dtype != p.dtype:
        raise ValueError(f"{where}: the gradient does not match the parameter's shape and dtype")
    return g.detach().resolve_neg().resolve_conj().contiguous()
