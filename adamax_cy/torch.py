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

from typing import Any, Callable, Iterable, Sequence

import torch

from ._defaults import BETA1, BETA2, EPS, LR
from . import _tensor_table
from ._torch_general import _GeneralStep
from ._torch_tensors import (
    SUPPORTED_DTYPES, BetasLengthError, MismatchError, MissingStateError, _check_disjoint,
    _check_tensor, _for_table, _grad_tensor, _is_counter, _scalar_dtype, _shared_counters,
    _step_count,
)
from ._validation import check_betas, check_convention, check_num_threads, check_options

__all__ = ["Adamax"]


#: The keyword arguments of ``torch.optim.Adamax`` that select how torch
#: computes the step, with torch's defaults (restored on unpickling).
TORCH_ONLY_OPTIONS = {"foreach": None, "differentiable": False, "capturable": False}


#: Whether the compiled tables export tensors through torch's DLPack C
#: exchange API where torch has one (torch >= 2.10: a C call per tensor)
#: rather than through ``to_dlpack`` capsules (a Python call each).
_DLPACK_EXCHANGE = True


class _NotForTable(Exception):
    """A parameter the group's compiled table does not take: the group takes the general path."""


class _GroupPlan:
    """A parameter group's compiled table, and the Python side of what changed."""

    def __init__(self, group: dict[str, Any], where: str,
                 new_states: list[tuple[torch.Tensor, bool]]) -> None:
        self.group = group
        self.where = where
        self.new_states = new_states  # the optimizer's record of the states a step created
        params = list(group["params"])
        self.table = _tensor_table.TensorTable(params, torch.Tensor, torch.utils.dlpack.to_dlpack,
                                                _DLPACK_EXCHANGE)

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
    """Adamax for PyTorch: the compiled kernel where it computes the step, torch's elsewhere.

    A drop-in replacement for :class:`torch.optim.Adamax`: the same
    constructor and keyword arguments, parameter groups, per-parameter state
    (``step``, ``exp_avg``, ``exp_inf``) and ``state_dict`` layout, so
    checkpoints move between the two both ways, whichever path ran, and LR
    schedulers work unchanged.

    What runs where, per parameter at each step:

    - **Compiled, one call per parameter group** (the table path): dense,
      contiguous float32 and float64 CPU tensors, in a group with
      ``differentiable=False`` and ``capturable=False``. The kernel updates
      them in place, in their own memory.
    - **Compiled, through flat views** (the general path): complex64 and
      complex128 CPU parameters (as ``torch.view_as_real``, which is how
      torch updates them); dense layouts that are not contiguous
      (``channels_last`` and other permutations, with ``exp_avg`` and
      ``exp_inf`` of the same strides), walked in storage order in place, no
      copy; and the local shards of ``DTensor`` parameters (FSDP2's
      ``fully_shard``), stepped through ``to_local()``, with the state kept as
      ``DTensor`` like torch's. This path runs some Python per parameter.
    - **torch's implementation** (``torch.optim.adamax.adamax``, for-loop or
      foreach as ``foreach`` selects, called with the same arguments as
      ``torch.optim.Adamax.step`` would): groups with
      ``differentiable=True`` (autograd records the step) or
      ``capturable=True``; parameters not on the CPU (CUDA, MPS, meta...);
      float16 and bfloat16 (no exact compiled path for them); strided
      layouts with gaps (slices with a step), or whose state tensors have
      other strides than the parameter; tensor subclasses other than
      ``DTensor``; and groups whose hyperparameters torch accepts but the
      kernel does not compute (an infinite ``lr``, ``eps`` or
      ``weight_decay``). These results are torch's, bitwise.

    Parameters
    ----------
    params : iterable
        Tensors to optimise, or dicts defining parameter groups (each with
        its own hyperparameters), as for any ``torch.optim.Optimizer``.
    lr : float or Tensor, optional
        Learning rate (read from each parameter group at every step).
    betas : tuple of float, optional
        ``(beta1, beta2)``: decay of the first moment and of the infinity norm.
    eps : float, optional
        Added for numerical stability (inside the max under
        ``convention="torch"``, to the denominator under ``"spec"``).
    weight_decay : float, optional
        L2 penalty added to the gradient, as in PyTorch.
    foreach : bool or None, optional
        Which of torch's implementations runs where torch's runs (as in
        ``torch.optim.Adamax``); the compiled paths ignore it.
    maximize : bool, optional
        Ascend instead of descend (negate the gradient).
    differentiable : bool, optional
        Let autograd record the step: the group runs torch's implementation.
    capturable : bool, optional
        As in ``torch.optim.Adamax`` (for CUDA graphs): the group runs
        torch's implementation, which refuses CPU parameters at the step.
    convention : {"torch", "spec"}, optional
        ``"torch"`` (the default) computes PyTorch's Adamax,
        ``u = max(beta2 * u, |g| + eps)`` and divides by ``u``; ``"spec"``
        divides by ``u + eps`` (Kingma and Ba's form with eps, as in Keras),
        on the compiled paths only. One setting for the whole optimizer; it
        is not stored in the ``state_dict``.
    num_threads : int or None, optional
        Threads for the kernel; ``None`` is the OpenMP default. Results do
        not depend on it.

    Raises
    ------
    TypeError
        A hyperparameter of the wrong type.
    ValueError
        A hyperparameter out of range, with ``torch.optim.Adamax``'s wording
        (``Invalid learning rate: -1.0``, ``Tensor lr must be 1-element``,
        ``Invalid beta parameter at index 1: 1.0``...) followed by the
        allowed range; at a step, a parameter that is an inference tensor or
        whose memory overlaps another parameter's (in any group: a tensor
        listed twice), a parameter under ``convention="spec"`` that only
        torch's implementation can step. Where ``torch.optim.Adamax``
        raises another type for the same input, ours is of that type too:
        a state tensor or gradient that does not fit its parameter, or an
        inference tensor (``RuntimeError``), a state lacking an entry
        (``KeyError``), ``betas`` with fewer than two items
        (``IndexError``).
    RuntimeError
        At a step, a sparse gradient (as torch: ``Adamax does not support
        sparse gradients``).

    Notes
    -----
    A step that raises one of the errors above changes no parameter and no
    state: every group is checked before the first write. (An error raised
    by torch's implementation while it runs, such as ``capturable=True`` on
    the CPU, is raised as torch raises it, after the groups before it were
    stepped, as with ``torch.optim.Adamax``.)

    How the compiled paths compare with ``torch.optim.Adamax``: the same
    formulas in a different rounding sequence. ``exp_inf`` is bitwise equal
    to torch's without weight decay; with ``weight_decay`` it can differ by
    up to one ulp of ``|grad| + weight_decay * |param|`` (torch may fuse the
    product and the sum of ``grad + weight_decay * param`` into one
    operation; the kernel rounds the product first). ``exp_avg`` is
    computed as ``beta1 * m + (1 - beta1) * g`` where torch computes
    ``m + (g - m) * (1 - beta1)`` (``lerp``): equal in exact arithmetic,
    they differ by up to 2 ulp of the largest term, ``beta1 * |m|`` or
    ``(1 - beta1) * |g|``, which after cancellation can be many ulp of
    ``exp_avg`` itself; the parameter follows within the same bound. With
    ``eps=0``, an element whose ``exp_avg`` and ``exp_inf`` are both 0 keeps
    its parameter where torch gives NaN (0/0). A learning rate whose
    precision is narrower than the parameters' (a float32 tensor ``lr`` on
    float64 parameters, say) sends the group to torch's implementation,
    which divides it by the bias correction in that precision. Step counters must be whole numbers below 2**63 - 1; the
    storage of the state tensors on the table path cannot be resized
    (``resize_``) while the optimizer holds them. Within a group, parameters
    whose step counts differ (one that had no gradient at some step) take
    one compiled call per distinct count. A ``step`` tensor that the states
    of two parameters of a group share is advanced once for each, each
    reading its own count, as torch does: those parameters run torch's
    implementation. A loaded ``step`` of another real dtype (int64,
    float16...) is kept and advanced in its dtype, as torch keeps it.
    Gradients must not share memory with the parameters or the state
    (autograd never makes such gradients).
    A gradient that is not laid out as its parameter, or that is a lazily
    negated or conjugated view, is read through a copy in the parameter's
    layout made at that step; every other gradient is read in place.

    Replacing a parameter's ``.data``, its state, a state entry or its
    gradient between steps is seen at the next step, as
    ``torch.optim.Adamax`` sees it; assigning a state tensor's ``.data`` is
    not (assign a new tensor to the state entry instead). Until that next
    step the optimizer still holds the replaced state tensors and parameter
    memory; it never holds a gradient.

    Threads: the tensors a step reads and writes are held for the whole
    compiled call, so another thread may replace ``.data``, ``.grad``, a
    state entry or a group's list during a step without harm to memory.
    One exception belongs to torch 2.13 itself: ``p.grad = None`` from
    another thread while nothing else holds that gradient can free its
    memory under any reader, ``torch.optim.Adamax`` included (a script
    that uses torch alone shows it); keep a reference to the gradient, or
    do not drop gradients while a step runs.

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
        self.convention = check_convention(convention)
        self.num_threads = check_num_threads(num_threads) or None
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        self._plans: dict[int, _GroupPlan] = {}
        # Groups on the general path (by index), with the group they were for.
        self._general: dict[int, dict[str, Any]] = {}
        # Whether the parameters of different groups were last found disjoint.
        self._groups_disjoint = False
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
        self._general = {}
        self._groups_disjoint = False
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
            As returned by ``state_dict()`` of either optimizer, whichever
            path stepped its parameters.

        Raises
        ------
        ValueError
            The state dict is for a different set of parameters (as torch
            raises it). Nothing is loaded then.
        """
        super().load_state_dict(state_dict)
        self._general = {}
        self._groups_disjoint = False

    # No torch.no_grad() here: the compiled paths run no torch operation that
    # autograd could record (torch's path sets the grad mode itself), and the
    # decorator costs about 2 us per call.
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
        TypeError, ValueError, RuntimeError
            As described for the class. Every group is checked before the
            first write, so a step that raises one of those changes nothing.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        n_groups = len(self.param_groups)
        if len(self._plans) > n_groups or len(self._general) > n_groups:  # groups were removed
            self._plans = {i: plan for i, plan in self._plans.items() if i < n_groups}
            self._general = {i: g for i, g in self._general.items() if i < n_groups}
        self._new_states.clear()
        try:
            prepared = [w for i, group in enumerate(self.param_groups) if (w := self._prepare(i, group))]
            if n_groups > 1 and not self._groups_disjoint:
                self._check_groups_disjoint(prepared)
        except BaseException:
            self._forget_new_states()
            for plan in self._plans.values():
                try:
                    plan.table.release()  # the tensors held for the step
                except RuntimeError:  # another thread's step is running on it
                    pass
            raise
        if len(prepared) == 1 and type(prepared[0]) is tuple:  # one table: the fast case
            table, touched = prepared[0]
            table.run()
        else:
            touched = []
            for work in prepared:
                if isinstance(work, tuple):
                    work[0].run()
                    touched.extend(work[1])
                else:
                    touched.extend(work.run())
        if touched:
            # The writes bypassed torch: let autograd know, as an in-place op would.
            torch.autograd.graph.increment_version(touched)
        return loss

    def _prepare(
        self, i: int, group: dict[str, Any]
    ) -> tuple[_tensor_table.TensorTable, list[torch.Tensor]] | _GeneralStep | None:
        """Check group ``i`` and compute its coefficients.

        Returns its table and the parameters the step will write (all of the
        group's when their count is the table's), the general path's step,
        or None when no parameter has a gradient.

        The compiled table does the per-parameter work; Python runs only
        for what changed since the last step (a new parameter or state, a
        gradient that needs a copy) and to raise errors. A group whose
        parameters or options the table does not take goes to the general
        path (compiled through flat views, or torch's implementation). Nothing
        is written.
        """
        where = f"param_groups[{i}]"
        if self._general.get(i) is group or _torch_flags(group):
            return self._prepare_general(i, group)
        if not isinstance(self.state, dict):  # replaced by a mapping of another kind
            return self._prepare_general(i, group)
        plan = self._plans.get(i)
        if plan is None or plan.group is not group:
            plan = self._plans[i] = _GroupPlan(group, where, self._new_states)
        params = group["params"]
        if type(params) is not list:
            params = list(params)
        try:
            found = plan.gather(params, self.state)
            if found < 0:  # the group's parameters were changed
                plan = self._plans[i] = _GroupPlan(group, where, self._new_states)
                found = plan.gather(params, self.state)
        except _NotForTable:
            return self._prepare_general(i, group)
        if found == 0:
            return None
        if plan.table.unchecked:
            written = plan.table.written()
            _check_disjoint(written, where)
            if _shared_counters(plan.table.counters()):
                return self._prepare_general(i, group)
            plan.table.mark_checked()
            self._groups_disjoint = False
        try:
            beta1, beta2 = group["betas"]
        except (TypeError, ValueError):
            beta1 = beta2 = None  # the Python checks below say what is wrong
        fast = (group["lr"], beta1, beta2, group["eps"], group["weight_decay"], group["maximize"])
        if not plan.table.prepare(*fast, self.convention, self.num_threads):
            o = _group_options(group, self.convention, f"{where}: ")
            if o is None:  # values only torch's implementation computes
                return self._prepare_general(i, group)
            for j, p in enumerate(params):
                if p.grad is not None:
                    _step_count(float(self.state[p]["step"]), f"{where}['params'][{j}]")
            checked = (o["lr"], o["beta1"], o["beta2"], o["eps"], o["weight_decay"], o["maximize"])
            if not plan.table.prepare(*checked, self.convention, self.num_threads):
                raise AssertionError(f"{where}: checked hyperparameters refused: {o}")
        return plan.table, params if found == len(params) else plan.table.selected_params()

    def _prepare_general(self, i: int, group: dict[str, Any]) -> _GeneralStep | None:
        """The general path of group ``i``: each parameter routed, checked, its state made.

        Parameters the table takes after all (the group changed back) send the
        group to the table path again from the next step.
        """
        self._plans.pop(i, None)
        where = f"param_groups[{i}]"
        options = None if _torch_flags(group) else _group_options(group, self.convention, f"{where}: ")
        work = _GeneralStep(group, options, self.convention, self.num_threads, where)
        simple = True
        state_of = self.state
        stepped = [p for p in group["params"] if p.grad is not None]
        shared = _shared_counters([s.get("step") for p in stepped if isinstance(s := state_of.get(p), dict)])
        for j, p in enumerate(group["params"]):
            g = p.grad
            if g is None:
                continue
            if g.layout is not torch.strided:
                raise RuntimeError(f"{where}['params'][{j}]: Adamax does not support sparse gradients "
                                   f"(the gradient is {g.layout})")
            state = state_of.get(p)
            if not state:
                state = self._new_state(p, group)
            simple = work.add(j, p, g, state, shared) and not shared and simple
        if simple:
            self._general.pop(i, None)
        else:
            self._general[i] = group
        if work.steps:  # the kernel writes in this group
            self._groups_disjoint = False
        return work.finish()

    def _new_state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """Parameter ``p``'s state on first use, made as torch makes it."""
        had_entry = p in self.state
        state = self.state[p]
        self._new_states.append((p, had_entry))
        state["step"] = (
            torch.zeros((), dtype=_scalar_dtype(), device=p.device) if group.get("capturable")
            else torch.tensor(0.0, dtype=_scalar_dtype())
        )
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_inf"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _check_groups_disjoint(self, prepared: Sequence[Any]) -> None:
        """No tensor the kernel writes in one group overlaps one it writes in another.

        A tensor in two groups (appended to their lists directly, which
        ``add_param_group`` refuses) would be stepped twice with one state,
        both times with the coefficients of the first. (Torch's own
        implementation reads each state as it steps, as torch does.)
        """
        written: list[tuple[str, tuple[torch.Tensor, ...]]] = []
        for i, group in enumerate(self.param_groups):
            plan = self._plans.get(i)
            if plan is not None and plan.group is group:
                index = {id(p): j for j, p in enumerate(group["params"])}
                written.extend((f"param_groups[{i}]['params'][{index.get(id(ts[0]), '?')}]", ts)
                               for ts in plan.table.written())
        for work in prepared:
            if isinstance(work, _GeneralStep):
                written.extend((f"{work.where}['params'][{j}]", ts)
                               for j, ts in zip(work.indices, work.written))
        _check_disjoint([ts for _, ts in written], "param_groups", [w for w, _ in written])
        self._groups_disjoint = True

    def _forget_new_states(self) -> None:
        """Undo the states a failed step created: every parameter as it was."""
        for p, had_entry in reversed(self._new_states):
            if had_entry:
                self.state[p].clear()
            else:
                self.state.pop(p, None)
        self._new_states.clear()



#: torch.optim.Adamax's range checks, in its order: its words, then ours.
_TORCH_CHECKS = (
    ("lr", "Invalid learning rate", "lr must be a number >= 0"),
    ("eps", "Invalid epsilon value", "eps must be a number >= 0"),
    ("beta1", "Invalid beta parameter at index 0", "beta1 must be in [0, 1)"),
    ("beta2", "Invalid beta parameter at index 1", "beta2 must be in [0, 1)"),
    ("weight_decay", "Invalid weight_decay value", "weight_decay must be a number >= 0"),
)


def _torch_checks(lr: Any, betas: Any, eps: Any, weight_decay: Any, where: str) -> bool:
    """Raise the ValueError torch.optim.Adamax raises for these values, with our detail.

    False when torch's checks cannot be evaluated (a value of the wrong
    type: the caller's own checks say what is wrong); True when torch
    accepts the values.
    """
    if isinstance(lr, torch.Tensor) and lr.numel() != 1:
        raise ValueError(f"{where}Tensor lr must be 1-element, got {lr.numel()} elements")
    try:
        values = {"lr": lr, "eps": eps, "beta1": betas[0], "beta2": betas[1], "weight_decay": weight_decay}
        for name, words, ours in _TORCH_CHECKS:
            value = values[name]
            ok = 0.0 <= value < 1.0 if name.startswith("beta") else 0.0 <= value
            if not ok:
                raise ValueError(f"{where}{words}: {value} ({ours}, got {value!r})")
    except (TypeError, IndexError, KeyError, RuntimeError):
        return False
    return True


def _group_options(group: dict[str, Any], convention: str, where: str) -> dict[str, Any] | None:
    """The group's hyperparameters, checked, as keyword arguments of the API.

    None when torch accepts values the kernel does not compute (an infinite
    ``lr``, ``eps`` or ``weight_decay``, a ``maximize`` that is not a bool):
    the group then runs torch's implementation. Values torch refuses raise
    torch's error.
    """
    lr, betas = group["lr"], group["betas"]
    torch_accepts = _torch_checks(lr, betas, group["eps"], group["weight_decay"], where)
    if torch_accepts and convention == "torch" and _lr_bits(lr) < max(
            (_real_bits(p.dtype) for p in group.get("params", ())), default=0):
        return None  # torch computes lr / (1 - beta1**t) in lr's narrower precision
    if isinstance(lr, torch.Tensor):
        lr = lr.item()
    try:
        beta1, beta2 = check_betas(betas, where)
    except ValueError as e:
        if _too_short(betas):  # torch.optim.Adamax reads betas[1]: an IndexError
            raise BetasLengthError(str(e)) from None
        raise
    try:
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
    except (TypeError, ValueError):
        if torch_accepts and convention == "torch":
            return None
        raise



def _too_short(betas: Any) -> bool:
    try:
        return len(betas) < 2
    except TypeError:
        return False


def _real_bits(dtype: torch.dtype) -> int:
    """The precision of a parameter's real numbers, in bits of storage."""
    return (dtype.to_real() if dtype.is_complex else dtype).itemsize * 8


def _lr_bits(lr: Any) -> int:
    """The precision in which torch divides ``lr`` by the bias correction.

    A Python number is divided in double; a tensor in its own dtype (an
    integer tensor in torch's default dtype); a NumPy scalar in its own.
    """
    if isinstance(lr, torch.Tensor):
        return _real_bits(lr.dtype if lr.is_floating_point() or lr.is_complex() else torch.get_default_dtype())
    itemsize = getattr(getattr(lr, "dtype", None), "itemsize", None)
    if isinstance(itemsize, int) and getattr(lr.dtype, "kind", "") == "f":
        return itemsize * 8
    return 64


def _torch_flags(group: dict[str, Any]) -> bool:
    """Whether the group asks for what only torch's implementation does."""
    return bool(group.get("differentiable", False) or group.get("capturable", False))



def _new_entry(plan: _GroupPlan, j: int, p: torch.Tensor, state: dict[str, Any], where: str) -> None:
    """Check a parameter and its state, creating the state on first use, and record them.

    Raises _NotForTable for a parameter or state the table does not take.
    """
    _check_tensor(p, "the parameter", where)
    if not _for_table(p) or type(state) is not dict:  # (an OrderedDict put there, say)
        raise _NotForTable(where)
    if len(state) == 0:
        step = torch.tensor(0.0, dtype=_scalar_dtype())
        exp_avg = torch.zeros_like(p, memory_format=torch.contiguous_format)
        exp_inf = torch.zeros_like(p, memory_format=torch.contiguous_format)
    else:
        missing = {"step", "exp_avg", "exp_inf"} - set(state)
        if missing:
            raise MissingStateError(f"{where}: the state lacks {sorted(missing)}")
        step = state["step"]
        if _is_counter(step):
            if step.dtype not in SUPPORTED_DTYPES:  # kept, as torch keeps it: the general path
                raise _NotForTable(where)
        else:
            step = torch.tensor(float(step), dtype=_scalar_dtype())  # a number, say
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
        for name, t in (("exp_avg", exp_avg), ("exp_inf", exp_inf)):
            if not isinstance(t, torch.Tensor) or t.shape != p.shape or t.dtype != p.dtype:
                raise MismatchError(f"{where}: state[{name!r}] does not match the parameter's shape and dtype")
            _check_tensor(t, f"state[{name!r}]", where)
            if not _for_table(t):
                raise _NotForTable(where)
    state["step"] = step
    state["exp_avg"] = exp_avg
    state["exp_inf"] = exp_inf
    # The memory the table writes stays alive: the parameter's through an alias
    # (its address is compared at every step, so a new .data is seen); the
    # state's through NumPy views, which also forbid resizing its storage.
    keep = (p.detach(), *(t.detach().numpy() for t in (exp_avg, exp_inf, step)))
    plan.table.set_entry(j, p, state, exp_avg, exp_inf, step, exp_avg.data_ptr(),
                         exp_inf.data_ptr(), step.data_ptr(), step.dtype == torch.float64, keep)
