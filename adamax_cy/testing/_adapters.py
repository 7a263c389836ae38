"""Adapters: run an implementation on a :class:`Case`, one step at a time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable, Optional

import numpy as np

from ._cases import Case

Triple = tuple[np.ndarray, np.ndarray, np.ndarray]


class Adapter:
    """Runs an implementation on a :class:`Case`, one step at a time.

    Subclasses implement :meth:`steps`, a generator yielding the
    implementation's ``(param, m, u)`` after each step. ``name`` appears in
    reports. An adapter may raise :class:`UnsupportedCase` for a case its
    implementation cannot express (it is then reported, not skipped).
    """

    name = "implementation"

    def steps(self, case: Case) -> Iterator[Triple]:
        raise NotImplementedError


class _FunctionAdapter(Adapter):
    """An adapter around one step function, with renamed and fixed keywords."""

    def __init__(self, fn: Callable[..., Any], *, rename: Optional[Mapping[str, str]] = None,
                 name: Optional[str] = None, **keywords: Any) -> None:
        self.fn = fn
        self.rename = dict(rename or {})
        self.keywords = keywords
        self.name = name or _name(fn)



def _keywords(hyper: Mapping[str, Any], rename: Mapping[str, str]) -> dict[str, Any]:
    return {rename.get(k, k): v for k, v in hyper.items()}


def _name(fn: Any) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qualname}" if module else qualname


def _as_output(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a tensor
        x = x.detach().cpu().numpy()
    return np.array(x, copy=True)


class functional(_FunctionAdapter):
    """Adapter for ``fn(param, grad, m, u, t, lr=, beta1=, beta2=, eps=, **options) -> (param, m, u)``.

    Scalar float64 cases pass Python floats; float32 scalars pass 0-d
    float32 arrays (a Python float cannot hold a float32). The inputs must
    be left untouched. ``rename`` maps our keyword names to the function's
    (for example ``{"lr": "learning_rate"}``); other ``keywords`` are passed
    on every call as they are (for example ``convention="torch"``).

    Examples
    --------
    >>> import adamax_cy
    >>> adapter = functional(adamax_cy.adamax_step)
    >>> adapter.name
    'adamax_cy.api.adamax_step'
    """

    def steps(self, case: Case) -> Iterator[Triple]:
        kw = {**_keywords(case.hyperparameters, self.rename), **self.keywords}
        param, m, u = case.param, case.m, case.u
        for k, grad in enumerate(case.grads):
            inputs = [param, grad, m, u]
            if case.scalar and case.dtype == np.float64:
                args: list[Any] = [float(a) for a in inputs]
            else:
                args = [a.copy() for a in inputs]
            out = self.fn(*args, case.t + k, **kw)
            for before, given_ in zip(inputs, args):
                if isinstance(given_, np.ndarray) and not np.array_equal(before, given_, equal_nan=True):
                    raise _InputModified("a functional step modified its input arrays")
            param, m, u = (_as_output(x) for x in out)
            yield param, m, u


class in_place(_FunctionAdapter):
    """Adapter for ``fn(param, grad, m, u, t, lr=, ...) -> None`` updating the arrays in place.

    Scalar cases pass 0-d arrays; ``rename`` and ``keywords`` are as for
    :class:`functional`.
    """

    def steps(self, case: Case) -> Iterator[Triple]:
        kw = {**_keywords(case.hyperparameters, self.rename), **self.keywords}
        param, m, u = case.param.copy(), case.m.copy(), case.u.copy()
        for k, grad in enumerate(case.grads):
            self.fn(param, grad.copy(), m, u, case.t + k, **kw)
            yield param.copy(), m.copy(), u.copy()


class optimizer(Adapter):
    """Adapter for a ``torch.optim``-style optimizer class (needs torch).

    The class is built as ``cls([p], lr=, betas=(beta1, beta2), eps=,
    weight_decay=, maximize=, **kwargs)`` on one tensor ``p``; each step sets
    ``p.grad`` and calls ``step()``. A case that starts from a state other
    than the fresh one (``t == 1``, ``m`` and ``u`` all +0) writes it into
    ``opt.state[p]`` under ``state_keys`` (the step count, then ``m`` and
    ``u``; torch's ``Adamax`` names them ``"step"``, ``"exp_avg"``,
    ``"exp_inf"``); fresh cases let the optimizer initialise itself.

    Examples
    --------
    >>> adapter = optimizer(object, foreach=True)  # the class is only called per case
    >>> adapter.kwargs
    {'foreach': True}
    """

    def __init__(self, cls: type, *, state_keys: Sequence[str] = ("step", "exp_avg", "exp_inf"),
                 name: Optional[str] = None, **kwargs: Any) -> None:
        self.cls = cls
        self.state_keys = tuple(state_keys)
        self.kwargs = kwargs
        self.name = name or _name(cls)

    def constructor_arguments(self, hyper: Mapping[str, Any]) -> dict[str, Any]:
        """torch's names for the case's hyperparameters."""
        hyper = dict(hyper)
        if hyper.pop("decoupled_weight_decay", False):
            raise UnsupportedCase("this optimizer adapter has no decoupled weight decay")
        out = {"lr": hyper.pop("lr"), "betas": (hyper.pop("beta1"), hyper.pop("beta2")),
               "eps": hyper.pop("eps")}
        out.update(hyper)
        return out

    def steps(self, case: Case) -> Iterator[Triple]:
        import torch

        step_key, m_key, u_key = self.state_keys
        p = torch.nn.Parameter(torch.from_numpy(case.param.copy()))
        opt = self.cls([p], **self.constructor_arguments(case.hyperparameters), **self.kwargs)
        if not _fresh(case):
            opt.state[p] = {
                step_key: torch.tensor(float(case.t - 1)),
                m_key: torch.from_numpy(case.m.copy()),
                u_key: torch.from_numpy(case.u.copy()),
            }
        for grad in case.grads:
            p.grad = torch.from_numpy(grad.copy())
            opt.step()
            state = opt.state[p]
            yield _as_output(p), _as_output(state[m_key]), _as_output(state[u_key])


class numpy_optimizer(Adapter):
    """Adapter for an optimizer class over NumPy arrays with a state dict, like :class:`adamax_cy.Adamax`.

    The class is built as ``cls([param], lr=, betas=(beta1, beta2), eps=,
    **options, **kwargs)`` on one array, stepped with ``step([grad])``, and
    read and given a later starting state through ``state_dict()`` and
    ``load_state_dict()``: ``state_dict()["state"][0]`` is ``{"step": steps
    taken, "m": array, "u": array}``.

    Examples
    --------
    >>> import adamax_cy
    >>> numpy_optimizer(adamax_cy.Adamax, convention="torch").kwargs
    {'convention': 'torch'}
    """

    def __init__(self, cls: type, *, name: Optional[str] = None, **kwargs: Any) -> None:
        self.cls = cls
        self.kwargs = kwargs
        self.name = name or _name(cls)

    def steps(self, case: Case) -> Iterator[Triple]:
        hyper = dict(case.hyperparameters)
        param = case.param.copy()
        opt = self.cls([param], lr=hyper.pop("lr"), betas=(hyper.pop("beta1"), hyper.pop("beta2")),
                       eps=hyper.pop("eps"), **hyper, **self.kwargs)
        if not _fresh(case):
            sd = opt.state_dict()
            sd["state"][0] = {"step": case.t - 1, "m": case.m.copy(), "u": case.u.copy()}
            opt.load_state_dict(sd)
        for grad in case.grads:
            opt.step([grad.copy()])
            state = opt.state_dict()["state"][0]
            yield param.copy(), _as_output(state["m"]), _as_output(state["u"])


def _fresh(case: Case) -> bool:
    """The state a new optimizer starts from: ``t == 1``, ``m`` and ``u`` all +0."""
    return case.t == 1 and not any(a.any() or np.signbit(a).any() for a in (case.m, case.u))


def is_torch_optimizer(cls: type) -> bool:
    """Whether ``cls`` derives from ``torch.optim.Optimizer`` (without importing torch)."""
    return any(c.__name__ == "Optimizer" and c.__module__.startswith("torch.optim")
               for c in getattr(cls, "__mro__", ()))


def is_numpy_optimizer(cls: type) -> bool:
    """Whether ``cls`` has what :class:`numpy_optimizer` calls: ``step``, ``state_dict``, ``load_state_dict``."""
    return all(callable(getattr(cls, name, None)) for name in ("step", "state_dict", "load_state_dict"))


def class_adapter(cls: type) -> Adapter:
    """The adapter for an optimizer class: torch's, or NumPy's; ``TypeError`` for another class."""
    if is_torch_optimizer(cls):
        return optimizer(cls)
    if is_numpy_optimizer(cls):
        return numpy_optimizer(cls)
    raise TypeError(f"{_name(cls)} is a class but not an optimizer: neither a torch.optim.Optimizer "
                    "nor a NumPy optimizer with step, state_dict and load_state_dict")


class UnsupportedCase(Exception):
    """Raised by an adapter for a case its implementation cannot express."""


class _InputModified(Exception):
    pass


def _adapter(step_fn: Any, in_place_: bool) -> Adapter:
    if isinstance(step_fn, Adapter):
        return step_fn
    if in_place_:
        return in_place(step_fn)
    if isinstance(step_fn, type):
        return class_adapter(step_fn)
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable or an Adapter, got {type(step_fn).__name__}")
    return functional(step_fn)

