"""The stateful Adamax optimizer: parameter groups, state and safe checkpoints.

:class:`Adamax` holds, for every parameter array, its first moment ``m``, its
infinity norm ``u`` and its own step count, and applies the compiled step of
:mod:`adamax_cy.api` to all of them at once. Its checkpoints are NumPy
``.npz`` files written atomically and read without unpickling.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np

from . import _checkpoint
from . import _kernel
from ._checkpoint import CheckpointError
from ._defaults import BETA1, BETA2, EPS, GROUP_OPTIONS, LR
from ._interrupts import deferred_signals
from ._validation import (
    check_group,
    check_many,
    check_nonfinite,
    check_num_threads,
    is_sequence,
    normalise_group,
)
from .api import coefficients, run_many

__all__ = ["Adamax", "CheckpointError"]

LrType = Union[float, Callable[[int], float]]


class Adamax:
    """The Adamax optimizer over NumPy arrays, updated in place.

    The constructor follows ``torch.optim.Adamax``. Each parameter keeps its
    own first moment ``m``, infinity norm ``u`` (arrays of its shape, dtype
    and memory order) and step count, so a parameter that first receives a
    gradient late gets the bias correction of its own first step.

    Parameters
    ----------
    params : sequence of numpy.ndarray, mapping of str to numpy.ndarray, or list of dict
        The parameters, updated in place: float32 or float64, writable, C- or
        F-contiguous, no two overlapping. A mapping names them; a list of
        dicts gives parameter groups, each with a ``"params"`` entry (a
        sequence or a mapping of arrays) and any of the options below, which
        override the optimizer's for that group.
    lr : float or callable, optional
        Learning rate (the paper's default), or a function of the step number
        (1 on a parameter's first step) returning it: a schedule. A callable
        is called at every step, once per distinct step count in the group.
    betas : (float, float), optional
        ``(beta1, beta2)``: the decay of the first moment and of the
        infinity norm.
    eps : float, optional
        The constant added for numerical stability.
    weight_decay : float, optional
        L2 penalty added to the gradient, or decoupled decay of the parameter
        when ``decoupled_weight_decay`` is true (as in
        :func:`adamax_cy.adamax_step_inplace`).
    decoupled_weight_decay : bool, optional
        Decay the parameter instead of adding to the gradient (AdamW style).
    maximize : bool, optional
        Ascend instead of descend.
    convention : {"spec", "torch"}, optional
        Where eps goes: ``"spec"`` divides by ``u + eps``; ``"torch"`` takes
        ``u = max(beta2 * u, |g| + eps)``.
    num_threads : int or None, optional
        Threads for the compiled step; ``None`` is the OpenMP default.
        Results do not depend on it.
    nonfinite : {"propagate", "raise", "skip"}, optional
        What a gradient holding an infinity or NaN does: ``"propagate"``
        (IEEE arithmetic, no check), ``"raise"`` (:class:`FloatingPointError`
        naming the parameter; nothing is written) or ``"skip"`` (the whole
        step is skipped and :meth:`step` returns False, as mixed-precision
        loss scalers do). The scan runs in compiled code, in parallel.

    Attributes
    ----------
    param_groups : list of dict
        One dict per group: ``"params"`` and ``"names"`` (tuples of the
        arrays and of their names, fixed at construction) and the options
        above. Change an option between steps (``opt.param_groups[0]
        ["lr"] = 1e-3``) to schedule it; new values are checked at the next
        step, before anything is written.
    defaults : dict
        The options given to the constructor.

    Raises
    ------
    TypeError, ValueError
        At construction, for any option or parameter array that
        :func:`adamax_cy.adamax_step_many` would refuse (the same checks), an
        empty parameter list, an unknown group option or duplicate names.

    Notes
    -----
    A step makes one compiled call (:func:`adamax_cy.adamax_step_many`'s
    kernel, float32 and float64 arrays together) per parameter group and
    distinct step count: groups may differ in their
    hyperparameters and step counts in their bias correction, which are
    per-call scalars. With one group whose parameters all have gradients,
    that is one call. Every gradient and option of every group is checked
    before the first write.

    ``num_threads`` and ``nonfinite`` belong to the optimizer, not to
    its state: they are not in :meth:`state_dict` or checkpoints.

    Thread safety: :meth:`step` refuses (:class:`RuntimeError`) to run while
    another thread steps, saves or loads the same optimizer, since two steps
    at once would take the same step count. :meth:`save`, :meth:`state_dict`,
    :meth:`load_state` and :meth:`load_state_dict` wait for a step running in
    another thread to finish, so they see and replace whole steps. Distinct
    optimizers over distinct arrays may step in parallel threads.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([1.0, 2.0, 3.0])
    >>> opt = Adamax([w])
    >>> opt.step([np.array([0.1, 0.2, 0.3])])
    True
    >>> w
    array([0.998, 1.998, 2.998])

    Named parameters, groups with their own learning rate, and a gradient
    missing for one parameter (it and its state are left alone):

    >>> model = {"weight": np.ones((2, 2), dtype=np.float32), "bias": np.zeros(2)}
    >>> opt = Adamax([{"params": {"weight": model["weight"]}},
    ...               {"params": {"bias": model["bias"]}, "lr": 0.01}])
    >>> opt.step({"weight": np.full((2, 2), 0.5, dtype=np.float32), "bias": None})
    True
    >>> model["weight"]
    array([[0.998, 0.998],
           [0.998, 0.998]], dtype=float32)
    >>> opt.steps
    {'weight': 1, 'bias': 0}
    """

    def __init__(
        self,
        params: Any,
        lr: LrType = LR,
        betas: tuple[float, float] = (BETA1, BETA2),
        eps: float = EPS,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        convention: str = "spec",
        num_threads: int | None = None,
        nonfinite: str = "propagate",
    ) -> None:
        self.defaults = normalise_group(
            {
                "lr": lr,
                "betas": betas,
                "eps": eps,
                "weight_decay": weight_decay,
                "decoupled_weight_decay": decoupled_weight_decay,
                "maximize": maximize,
                "convention": convention,
            },
            "",
        )
        check_num_threads(num_threads)
        check_nonfinite(nonfinite)
        self.num_threads = num_threads
        self.nonfinite = nonfinite

        self.param_groups, self._groups_given = _make_groups(params, self.defaults)
        self._params = [p for group in self.param_groups for p in group["params"]]
        self._names = [n for group in self.param_groups for n in group["names"]]
        if not self._params:
            raise ValueError("the optimizer got an empty parameter list")
        if len(set(self._names)) != len(self._names):
            raise ValueError(f"parameter names must be unique, got {self._names}")
        self._group_of = [g for g, group in enumerate(self.param_groups) for _ in group["params"]]
        self._group_params = [group["params"] for group in self.param_groups]
        # Held by a step, a load and a save. Reentrant: a signal handler that
        # saves runs in the thread of the step it interrupted, after its end.
        self._lock = threading.RLock()
        self._m = [np.zeros_like(p) for p in self._params]
        self._u = [np.zeros_like(p) for p in self._params]
        self._steps = [0] * len(self._params)
        # The checks of adamax_step_many, with zero gradients (lazily mapped pages).
        zero_grads = [np.zeros_like(p) for p in self._params]
        check_many(self._params, zero_grads, self._m, self._u, labels=self._names)

    # ------------------------------------------------------------------ step

    @property
    def param_names(self) -> list[str]:
        """The names of the parameters, in order (keys, or ``params[i]``)."""
        return list(self._names)

    @property
    def steps(self) -> dict[str, int]:
        """Each parameter's step count (0 until its first gradient)."""
        return dict(zip(self._names, self._steps))

    def step(self, grads: Any) -> bool:
        """Apply one Adamax step to every parameter that has a gradient.

        Parameters
        ----------
        grads : sequence, mapping or list of per-group entries
            The gradients, in the structure of ``params``: a sequence of the
            same length, or a mapping of names (one may always pass a mapping
            of :attr:`param_names`; names left out mean no gradient), or with
            parameter groups, one sequence or mapping per group. ``None``
            means no gradient this step: the parameter, its state and its
            step count are left alone. Each gradient has its parameter's
            shape and dtype; it may be strided or read-only.

        Returns
        -------
        bool
            Whether the step was applied: False only when ``nonfinite="skip"``
            found an infinity or NaN in a gradient (then nothing changed).

        Raises
        ------
        TypeError, ValueError
            A gradient that does not fit its parameter (the message names the
            parameter), or an invalid option in a group.
        FloatingPointError
            With ``nonfinite="raise"``, a gradient holding an infinity or NaN.

        RuntimeError
            Another thread is stepping, saving or loading this optimizer now.

        Nothing is written when an exception is raised. A Ctrl-C, or any
        signal with a Python handler, that arrives while the arrays are being
        written is handled once the step is complete and counted.
        """
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(
                "another thread is stepping this optimizer (or saving or loading it); "
                "step an optimizer from one thread at a time"
            )
        try:
            return self._step(grads)
        finally:
            self._lock.release()

    def _step(self, grads: Any) -> bool:
        flat_grads = _flat_grads(grads, self.param_groups, self._names, self._groups_given)
        active = [i for i, grad in enumerate(flat_grads) if grad is not None]
        num_threads = check_num_threads(self.num_threads)
        check_nonfinite(self.nonfinite)
        # (group, t) -> positions in `active`, each bucket one compiled call.
        buckets: dict[tuple[int, int], list[int]] = {}
        for k, i in enumerate(active):
            buckets.setdefault((self._group_of[i], self._steps[i] + 1), []).append(k)
        calls = [
            (coefficients(t, _group_options(self.param_groups[g], g, t), num_threads), positions)
            for (g, t), positions in buckets.items()
        ]
        quadruples = (
            [self._params[i] for i in active],
            [flat_grads[i] for i in active],
            [self._m[i] for i in active],
            [self._u[i] for i in active],
        )
        # The common case is checked in compiled code (the kernel takes the
        # contiguous arrays as they are); anything else gets the Python checks,
        # which name the parameter in their errors.
        if _kernel.check_many_fast(*quadruples):
            flat = quadruples
        else:
            flat = check_many(*quadruples, labels=[self._names[i] for i in active])
        if self.nonfinite != "propagate":
            for k, grad in enumerate(flat[1]):
                if not _kernel.all_finite(grad.reshape(-1), num_threads):
                    if self.nonfinite == "skip":
                        return False
                    raise FloatingPointError(
                        f"{self._names[active[k]]}: the gradient holds an infinity or NaN "
                        "(nonfinite='raise'); nothing was updated"
                    )
        # All or nothing for the caller: Ctrl-C and other signal handlers
        # wait until the arrays are written and the steps counted.
        with deferred_signals():
            for h, positions in calls:
                run_many(tuple([lst[k] for k in positions] for lst in flat), h)  # type: ignore[arg-type]
            for i in active:
                self._steps[i] += 1
        return True

    # ------------------------------------------------------------ state dict

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as plain Python and NumPy objects (copies).

        Returns
        -------
        dict
            ``{"format", "version", "param_names", "param_groups", "state"}``:
            ``param_groups`` is a list of dicts of the group options (a
            callable ``lr`` is kept as is) with ``"params"`` the indices of
            the group's parameters; ``state`` has one dict per parameter,
            ``{"step": int, "m": ndarray, "u": ndarray}``. Later steps do not
            change it.

        Examples
        --------
        >>> import numpy as np
        >>> opt = Adamax([np.ones(2)], lr=0.01)
        >>> sd = opt.state_dict()
        >>> sd["param_groups"][0]["lr"], sd["state"][0]["step"]
        (0.01, 0)
        """
        with self._lock:
            return _checkpoint.state_dict(
                self._names, self.param_groups, self._steps, self._m, self._u
            )

    def _checked_groups(self) -> list[dict[str, Any]]:
        """The parameter groups as a state holds them: each group's options
        checked and normalised (as a load checks them) and its parameters,
        which must be those it was built with."""
        built = self._group_params
        if not is_sequence(self.param_groups) or len(self.param_groups) != len(built):
            count = len(built)
            raise ValueError(
                f"param_groups must hold the {count} parameter group{'s' * (count != 1)} "
                "the optimizer was built with; groups cannot be added or removed"
            )
        groups = []
        for g, (group, params) in enumerate(zip(self.param_groups, built)):
            if not isinstance(group, Mapping):
                raise TypeError(f"param_groups[{g}] must be a dict, got {type(group).__name__}")
            missing = [key for key in ("params", *GROUP_OPTIONS) if key not in group]
            if missing:
                raise ValueError(f"param_groups[{g}] lacks {missing}")
            given = group["params"]
            if not (
                is_sequence(given) and len(given) == len(params)
                and all(a is b for a, b in zip(given, params))
            ):
                raise ValueError(
                    f"param_groups[{g}]: params were changed; the parameters of an optimizer "
                    "are fixed at construction"
                )
            groups.append({**normalise_group(group, f"param_groups[{g}]: "), "params": params})
        return groups

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`.

        Everything is checked (structure, group count and membership,
        options, step counts, shapes and dtypes, and that no ``u`` is
        negative, which no step makes) before anything changes; the arrays
        are copied in. NaN in ``m`` or ``u`` is accepted: a NaN gradient
        with ``nonfinite="propagate"`` leaves it.

        Parameters
        ----------
        state_dict : dict
            As returned by :meth:`state_dict` of an optimizer over parameters
            of the same names, shapes, dtypes and grouping.

        Raises
        ------
        CheckpointError
            (a ValueError) anything that does not fit; nothing was changed.
        """
        self._commit(
            _checkpoint.check_state_dict(state_dict, self._names, self._params, self.param_groups)
        )

    def _commit(self, checked: Mapping[str, Any]) -> None:
        # Only copies of checked arrays: nothing below can fail halfway, and
        # signal handlers (Ctrl-C's too) wait until they are done.
        with self._lock, deferred_signals():
            for group, options in zip(self.param_groups, checked["groups"]):
                group.update(options)
            pairs = [(self._m, checked["m"]), (self._u, checked["u"])]
            if checked["params"] is not None:
                pairs.append((self._params, checked["params"]))
            for destinations, sources in pairs:
                for dst, src in zip(destinations, sources):
                    np.copyto(dst, src, casting="no")
            self._steps = list(checked["steps"])

    # ----------------------------------------------------------- checkpoints

    def save(self, path: str | bytes | os.PathLike[Any], *, include_params: bool = True) -> None:
        """Write a checkpoint atomically: the old file or the new one, never a torn one.

        The ``.npz`` is written to a temporary file in the same folder,
        fsynced and renamed over ``path``; a failure leaves any previous
        checkpoint at ``path`` as it was. Temporary files that killed
        processes left for ``path`` (untouched for a minute) are removed.

        Parameters
        ----------
        path : str, bytes or os.PathLike
            The file to write (used as given: no ``.npz`` is appended). A
            symbolic link there is replaced by the checkpoint (the file it
            points to is left as it was).
        include_params : bool, optional
            Also store the parameter values, so that one file restores a run
            (see :meth:`load_state`).

        Raises
        ------
        TypeError, ValueError
            An option of ``param_groups`` that a load would refuse (the
            checks of :meth:`step`), a missing option, or a group's
            ``"params"`` changed; nothing is written.
        OSError
            ``path`` is empty, its folder does not exist, or it is (or links
            to) a directory (:class:`IsADirectoryError`) or anything else than
            a regular file, such as a named pipe or a device
            (:class:`FileExistsError`): such a path is never replaced, and no
            file is created.

        Notes
        -----
        A callable ``lr`` cannot be stored (a file holds no code): the
        checkpoint records that the group's ``lr`` was a schedule, and
        loading requires the optimizer to be given the schedule again.
        ``num_threads`` and ``nonfinite`` are not stored.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> w = np.ones(3)
        >>> opt = Adamax([w])
        >>> _ = opt.step([np.full(3, 0.1)])
        >>> w2 = np.zeros(3)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     opt.save(os.path.join(folder, "run.npz"))
        ...     opt2 = Adamax.load(os.path.join(folder, "run.npz"), [w2])
        >>> w2, opt2.steps
        (array([0.998, 0.998, 0.998]), {'params[0]': 1})
        """
        params = self._params if include_params else None
        with self._lock:
            arrays = _checkpoint.to_arrays(
                self._names, self._checked_groups(), self._steps, self._m, self._u, params
            )
            _checkpoint.write_atomic(path, arrays)

    def load_state(self, path: str | bytes | os.PathLike[Any], *, restore_params: bool = True) -> None:
        """Restore a checkpoint written by :meth:`save` into this optimizer.

        The file is read with ``allow_pickle=False`` (loading never runs
        code) and checked in full against this optimizer before anything
        changes. The options in the file replace the current ones, except
        a group's ``lr`` that was a schedule: the file does not hold it, so
        the group must have a callable ``lr`` now (given to the constructor),
        which is kept.

        Parameters
        ----------
        path : str, bytes or os.PathLike
            The checkpoint.
        restore_params : bool, optional
            Copy the stored parameter values (if the file has them) into the
            parameter arrays.

        Raises
        ------
        CheckpointError
            (a ValueError) a truncated, corrupted, pickled or foreign file, or
            one that does not fit this optimizer's parameters; nothing was
            changed.
        FileNotFoundError
            No file at ``path``.
        """
        self._commit(
            _checkpoint.read(
                path, self._names, self._params, self.param_groups, restore_params=restore_params
            )
        )

    @classmethod
    def load(cls, path: str | bytes | os.PathLike[Any], params: Any, **kwargs: Any) -> Adamax:
        """A new optimizer over ``params`` with the state of the checkpoint at ``path``.

        ``Adamax(params, **kwargs)`` followed by :meth:`load_state`: the
        parameter arrays receive the stored values (if saved), and the
        file's options replace ``kwargs``' except callables (``lr``
        schedules must be passed again) and ``num_threads``/``nonfinite``.

        Parameters
        ----------
        path : str, bytes or os.PathLike
            The checkpoint written by :meth:`save`.
        params
            The parameters, in the structure the saving optimizer had.
        **kwargs
            Constructor arguments.

        Returns
        -------
        Adamax

        Raises
        ------
        CheckpointError
            As :meth:`load_state`.
        """
        optimizer = cls(params, **kwargs)
        optimizer.load_state(path)
        return optimizer

    # ---------------------------------------------------------------- repr

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for g, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {g}")
            for key in sorted(GROUP_OPTIONS):
                lines.append(f"    {key}: {group[key]}")
        lines.append(f"nonfinite: {self.nonfinite}")
        lines.append(f"num_threads: {self.num_threads}")
        lines.append(")")
        return "\n".join(lines)


def _make_groups(params: Any, defaults: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The parameter groups from the constructor's ``params``, and whether it gave groups."""
    if isinstance(params, (np.ndarray, str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(
            "params must be a sequence of arrays, a mapping of names to arrays or a "
            f"list of parameter groups (dicts), got {type(params).__name__}"
        )
    if not isinstance(params, Mapping):
        params = list(params)
    groups_given = isinstance(params, list) and any(isinstance(p, Mapping) for p in params)
    groups: list[Mapping[str, Any]]
    if isinstance(params, Mapping) or not groups_given:
        groups = [{"params": params}]
    else:
        groups = list(params)
    return [
        _make_group(group, g, f"param_groups[{g}]: " if groups_given else "", defaults, groups_given)
        for g, group in enumerate(groups)
    ], groups_given


def _make_group(
    group: Any, g: int, where: str, defaults: Mapping[str, Any], groups_given: bool
) -> dict[str, Any]:
    """Parameter group ``g`` as ``param_groups`` holds it: arrays, names and checked options."""
    if not isinstance(group, Mapping) or "params" not in group:
        raise TypeError(
            f"param_groups[{g}] must be a dict with a 'params' entry, got {type(group).__name__}"
        )
    unknown = set(group) - {"params", *GROUP_OPTIONS}
    if unknown:
        raise ValueError(
            f"{where}unknown options {sorted(unknown)}; a group may set {list(GROUP_OPTIONS)}"
        )
    arrays = group["params"]
    if isinstance(arrays, Mapping):
        for key in arrays:
            if not isinstance(key, str):
                raise TypeError(f"{where}parameter names must be str, got {key!r}")
        names, arrays = list(arrays), list(arrays.values())
    elif is_sequence(arrays):
        prefix = f"param_groups[{g}]" if groups_given else "params"
        names, arrays = [f"{prefix}[{i}]" for i in range(len(arrays))], list(arrays)
    else:
        raise TypeError(
            f"{where}params must be a sequence or a mapping of arrays, "
            f"got {type(arrays).__name__}"
        )
    options = {**defaults, **{k: v for k, v in group.items() if k != "params"}}
    return {"params": tuple(arrays), "names": tuple(names), **normalise_group(options, where)}


def _flat_grads(
    grads: Any, groups: Sequence[Mapping[str, Any]], names: Sequence[str], groups_given: bool
) -> list[Any]:
    """One gradient (or None) per parameter, in order, from the params' structure."""
    n = len(names)
    if isinstance(grads, Mapping):
        unknown = [k for k in grads if k not in names]
        if unknown:
            raise ValueError(f"grads has unknown parameter names {unknown}; known: {names}")
        return [grads.get(name) for name in names]
    if not is_sequence(grads):
        raise TypeError(
            "grads must have the structure of the params (a sequence, a mapping of "
            f"names, or one entry per group), got {type(grads).__name__}"
        )
    if not groups_given:
        if len(grads) != n:
            raise ValueError(f"expected {n} gradients (one per parameter), got {len(grads)}")
        return list(grads)
    if len(grads) != len(groups):
        raise ValueError(
            f"expected one entry per parameter group ({len(groups)}), "
            f"got {len(grads)}"
        )
    flat: list[Any] = []
    for g, (group, entry) in enumerate(zip(groups, grads)):
        size = len(group["params"])
        if isinstance(entry, Mapping):
            unknown = [k for k in entry if k not in group["names"]]
            if unknown:
                raise ValueError(f"grads[{g}] has unknown parameter names {unknown}")
            flat.extend(entry.get(name) for name in group["names"])
        elif entry is None:
            flat.extend([None] * size)
        elif is_sequence(entry) and len(entry) == size:
            flat.extend(entry)
        else:
            raise ValueError(f"grads[{g}] must hold {size} gradients (or None)")
    return flat


def _group_options(group: Mapping[str, Any], g: int, t: int) -> dict[str, Any]:
    """Group ``g``'s options, checked, with ``lr`` evaluated for step ``t``."""
    where = f"param_groups[{g}]: "
    lr = group["lr"]
    if callable(lr):
        lr = lr(t)
        where += f"the lr schedule at step {t}: "
    return check_group(group, lr, where)
