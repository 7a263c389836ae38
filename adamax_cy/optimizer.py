"""The stateful Adamax optimizer: parameter groups, state and safe checkpoints.

:class:`Adamax` holds, for every parameter array, its first moment ``m``, its
infinity norm ``u`` and its own step count, and applies the compiled step of
:mod:`adamax_cy.api` to all of them at once. Its checkpoints are NumPy
``.npz`` files written atomically and read without unpickling.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np

from . import _kernel
from ._defaults import BETA1, BETA2, EPS, LR
from .api import (
    check_many,
    check_num_threads,
    check_options,
    coefficients,
    run_many,
)

__all__ = ["Adamax", "CheckpointError"]

#: The policies for non-finite gradients.
NONFINITE = ("propagate", "raise", "skip")
#: The hyperparameters a parameter group holds (besides ``"params"``).
GROUP_OPTIONS = (
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "decoupled_weight_decay",
    "maximize",
    "convention",
)
#: What a checkpoint file says it is, and the layout version this code reads.
FORMAT = "adamax_cy.Adamax checkpoint"
VERSION = 1

LrType = Union[float, Callable[[int], float]]


class CheckpointError(ValueError):
    """A state dict or checkpoint file that cannot be loaded (nothing was changed)."""


def _check_betas(betas: Any, where: str) -> tuple[float, float]:
    if isinstance(betas, (str, bytes, np.ndarray)) or not isinstance(betas, Sequence):
        raise TypeError(f"{where}betas must be a pair (beta1, beta2), got {betas!r}")
    if len(betas) != 2:
        raise ValueError(f"{where}betas must be a pair (beta1, beta2), got {betas!r}")
    return betas[0], betas[1]


def _check_group(options: Mapping[str, Any], lr: Any, where: str) -> dict[str, Any]:
    """Validate a group's options with ``lr`` given as a number; return them normalised.

    The checks are those of :func:`adamax_cy.api.check_options`; their
    messages are prefixed with ``where``.
    """
    beta1, beta2 = _check_betas(options["betas"], where)
    try:
        checked = check_options(
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=options["eps"],
            weight_decay=options["weight_decay"],
            decoupled_weight_decay=options["decoupled_weight_decay"],
            maximize=options["maximize"],
            convention=options["convention"],
        )
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}{e}") from None
    return checked


def _normalise_group(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A group's options, checked, as stored in ``param_groups`` (``lr`` may be callable)."""
    lr = options["lr"]
    checked = _check_group(options, LR if callable(lr) else lr, where)
    return {
        "lr": lr if callable(lr) else checked["lr"],
        "betas": (checked["beta1"], checked["beta2"]),
        "eps": checked["eps"],
        "weight_decay": checked["weight_decay"],
        "decoupled_weight_decay": checked["decoupled_weight_decay"],
        "maximize": checked["maximize"],
        "convention": checked["convention"],
    }


def _is_array_sequence(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes, np.ndarray))


def _write_npz(file: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to the open binary ``file`` as an uncompressed ``.npz``."""
    np.savez(file, **arrays)  # type: ignore[arg-type]


def _fsync_directory(folder: str) -> None:
    # Makes the rename durable. Directories cannot be opened on Windows,
    # where the rename is durable once os.replace returns.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        Learning rate (SPEC.md's default), or a function of the step number
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
    kernel, float32 and float64 arrays together, one GIL release) per
    parameter group and distinct step count: groups may differ in their
    hyperparameters and step counts in their bias correction, which are
    per-call scalars. With one group whose parameters all have gradients,
    that is one call. Every gradient and option of every group is checked
    before the first write.

    ``num_threads`` and ``nonfinite`` belong to the optimizer, not to
    its state: they are not in :meth:`state_dict` or checkpoints.

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
        self.defaults = _normalise_group(
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
        if nonfinite not in NONFINITE:
            raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
        self.num_threads = num_threads
        self.nonfinite = nonfinite

        if isinstance(params, (np.ndarray, str, bytes)) or not isinstance(params, Iterable):
            raise TypeError(
                "params must be a sequence of arrays, a mapping of names to arrays or a "
                f"list of parameter groups (dicts), got {type(params).__name__}"
            )
        if not isinstance(params, Mapping):
            params = list(params)
        self._groups_given = isinstance(params, list) and any(
            isinstance(p, Mapping) for p in params
        )
        groups: list[Mapping[str, Any]]
        if isinstance(params, Mapping) or not self._groups_given:
            groups = [{"params": params}]
        else:
            groups = list(params)
        self.param_groups: list[dict[str, Any]] = []
        for g, group in enumerate(groups):
            where = f"param_groups[{g}]: " if self._groups_given else ""
            self.param_groups.append(self._make_group(group, g, where))

        self._params = [p for group in self.param_groups for p in group["params"]]
        self._names = [n for group in self.param_groups for n in group["names"]]
        if not self._params:
            raise ValueError("the optimizer got an empty parameter list")
        if len(set(self._names)) != len(self._names):
            raise ValueError(f"parameter names must be unique, got {self._names}")
        self._group_of = [g for g, group in enumerate(self.param_groups) for _ in group["params"]]
        self._m = [np.zeros_like(p) for p in self._params]
        self._u = [np.zeros_like(p) for p in self._params]
        self._steps = [0] * len(self._params)
        # The checks of adamax_step_many, with zero gradients (lazily mapped pages).
        zero_grads = [np.zeros_like(p) for p in self._params]
        check_many(self._params, zero_grads, self._m, self._u, labels=self._names)

    def _make_group(self, group: Any, g: int, where: str) -> dict[str, Any]:
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
        elif _is_array_sequence(arrays):
            prefix = f"param_groups[{g}]" if self._groups_given else "params"
            names, arrays = [f"{prefix}[{i}]" for i in range(len(arrays))], list(arrays)
        else:
            raise TypeError(
                f"{where}params must be a sequence or a mapping of arrays, "
                f"got {type(arrays).__name__}"
            )
        options = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        return {"params": tuple(arrays), "names": tuple(names), **_normalise_group(options, where)}

    # ------------------------------------------------------------------ step

    @property
    def param_names(self) -> list[str]:
        """The names of the parameters, in order (keys, or ``params[i]``)."""
        return list(self._names)

    @property
    def steps(self) -> dict[str, int]:
        """Each parameter's step count (0 until its first gradient)."""
        return dict(zip(self._names, self._steps))

    def _flat_grads(self, grads: Any) -> list[Any]:
        """One gradient (or None) per parameter, in order, from the params' structure."""
        n = len(self._params)
        if isinstance(grads, Mapping):
            unknown = [k for k in grads if k not in self._names]
            if unknown:
                raise ValueError(f"grads has unknown parameter names {unknown}; known: {self._names}")
            return [grads.get(name) for name in self._names]
        if not _is_array_sequence(grads):
            raise TypeError(
                "grads must have the structure of the params (a sequence, a mapping of "
                f"names, or one entry per group), got {type(grads).__name__}"
            )
        if not self._groups_given:
            if len(grads) != n:
                raise ValueError(f"expected {n} gradients (one per parameter), got {len(grads)}")
            return list(grads)
        if len(grads) != len(self.param_groups):
            raise ValueError(
                f"expected one entry per parameter group ({len(self.param_groups)}), "
                f"got {len(grads)}"
            )
        flat: list[Any] = []
        for g, (group, entry) in enumerate(zip(self.param_groups, grads)):
            size = len(group["params"])
            if isinstance(entry, Mapping):
                unknown = [k for k in entry if k not in group["names"]]
                if unknown:
                    raise ValueError(f"grads[{g}] has unknown parameter names {unknown}")
                flat.extend(entry.get(name) for name in group["names"])
            elif entry is None:
                flat.extend([None] * size)
            elif _is_array_sequence(entry) and len(entry) == size:
                flat.extend(entry)
            else:
                raise ValueError(f"grads[{g}] must hold {size} gradients (or None)")
        return flat

    def _group_options(self, g: int, t: int) -> dict[str, Any]:
        """Group ``g``'s options, checked, with ``lr`` evaluated for step ``t``."""
        group = self.param_groups[g]
        where = f"param_groups[{g}]: "
        lr = group["lr"]
        if callable(lr):
            lr = lr(t)
            where += f"the lr schedule at step {t}: "
        return _check_group(group, lr, where)

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

        Nothing is written when an exception is raised.
        """
        flat_grads = self._flat_grads(grads)
        active = [i for i, grad in enumerate(flat_grads) if grad is not None]
        num_threads = check_num_threads(self.num_threads)
        if self.nonfinite not in NONFINITE:
            raise ValueError(f"nonfinite must be one of {NONFINITE}, got {self.nonfinite!r}")
        # (group, t) -> positions in `active`, each bucket one compiled call.
        buckets: dict[tuple[int, int], list[int]] = {}
        for k, i in enumerate(active):
            buckets.setdefault((self._group_of[i], self._steps[i] + 1), []).append(k)
        calls = [
            (coefficients(t, self._group_options(g, t), num_threads), positions)
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
        groups = []
        start = 0
        for group in self.param_groups:
            size = len(group["params"])
            options = {k: group[k] for k in GROUP_OPTIONS}
            options["betas"] = tuple(options["betas"])
            groups.append({**options, "params": list(range(start, start + size))})
            start += size
        return {
            "format": FORMAT,
            "version": VERSION,
            "param_names": list(self._names),
            "param_groups": groups,
            "state": [
                {"step": step, "m": m.copy(order="K"), "u": u.copy(order="K")}
                for step, m, u in zip(self._steps, self._m, self._u)
            ],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`.

        Everything is checked (structure, group count and membership,
        options, step counts, shapes and dtypes) before anything changes; the
        arrays are copied in.

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
        self._commit(self._check_state_dict(state_dict))

    def _check_state_dict(self, sd: Any) -> dict[str, Any]:
        """Validate ``sd`` against this optimizer; return what to commit."""
        if not isinstance(sd, Mapping):
            raise CheckpointError(f"a state dict must be a dict, got {type(sd).__name__}")
        missing = {"param_groups", "state"} - set(sd)
        if missing:
            raise CheckpointError(f"the state dict lacks {sorted(missing)}")
        if sd.get("format", FORMAT) != FORMAT or sd.get("version", VERSION) != VERSION:
            raise CheckpointError(
                f"not an {FORMAT} of version {VERSION}: format {sd.get('format')!r}, "
                f"version {sd.get('version')!r}"
            )
        names = sd.get("param_names", self._names)
        if not _is_array_sequence(names) or list(names) != self._names:
            raise CheckpointError(
                f"the state dict is for parameters {list(names)}, "
                f"but this optimizer has {self._names}"
            )
        groups = sd["param_groups"]
        if not _is_array_sequence(groups) or len(groups) != len(self.param_groups):
            count = len(groups) if _is_array_sequence(groups) else type(groups).__name__
            raise CheckpointError(
                f"the state dict has {count} parameter groups, "
                f"this optimizer {len(self.param_groups)}"
            )
        new_groups = []
        start = 0
        for g, (saved, group) in enumerate(zip(groups, self.param_groups)):
            size = len(group["params"])
            if not isinstance(saved, Mapping) or set(saved) != {"params", *GROUP_OPTIONS}:
                raise CheckpointError(
                    f"param_groups[{g}] must be a dict of {['params', *GROUP_OPTIONS]}"
                )
            indices = saved["params"]
            if not _is_array_sequence(indices) or list(indices) != list(range(start, start + size)):
                raise CheckpointError(
                    f"param_groups[{g}] holds parameters {indices!r}, "
                    f"this optimizer's group {list(range(start, start + size))}"
                )
            start += size
            try:
                new_groups.append(_normalise_group(saved, f"param_groups[{g}]: "))
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"invalid options: {e}") from None
        state = sd["state"]
        if not _is_array_sequence(state) or len(state) != len(self._params):
            raise CheckpointError(
                f"the state dict must hold one state per parameter ({len(self._params)})"
            )
        steps: list[int] = []
        ms: list[np.ndarray] = []
        us: list[np.ndarray] = []
        for name, p, entry in zip(self._names, self._params, state):
            if not isinstance(entry, Mapping) or set(entry) != {"step", "m", "u"}:
                raise CheckpointError(f"{name}: the state must be a dict of 'step', 'm' and 'u'")
            steps.append(_check_saved_step(entry["step"], name))
            for key, out in (("m", ms), ("u", us)):
                a = entry[key]
                if not isinstance(a, np.ndarray):
                    raise CheckpointError(f"{name}: {key} must be a numpy.ndarray, got {type(a).__name__}")
                _check_saved_array(a, p, f"{name}: {key}")
                out.append(a)
        return {"groups": new_groups, "steps": steps, "m": ms, "u": us, "params": None}

    def _commit(self, checked: Mapping[str, Any]) -> None:
        # Only copies from here on: nothing below can fail halfway.
        for group, options in zip(self.param_groups, checked["groups"]):
            group.update(options)
        for dst, src in zip(self._m, checked["m"]):
            np.copyto(dst, src, casting="no")
        for dst, src in zip(self._u, checked["u"]):
            np.copyto(dst, src, casting="no")
        if checked["params"] is not None:
            for dst, src in zip(self._params, checked["params"]):
                np.copyto(dst, src, casting="no")
        self._steps = list(checked["steps"])

    # ----------------------------------------------------------- checkpoints

    def save(self, path: str | os.PathLike[str], *, include_params: bool = True) -> None:
        """Write a checkpoint atomically: the old file or the new one, never a torn one.

        The ``.npz`` is written to a temporary file in the same folder,
        flushed and fsynced, renamed over ``path`` (:func:`os.replace`), and
        the folder is fsynced. A failure at any point leaves any previous
        checkpoint at ``path`` as it was and removes the temporary file.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (used as given: no ``.npz`` is appended).
        include_params : bool, optional
            Also store the parameter values, so that one file restores a run
            (see :meth:`load_state`).

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
        arrays = self._checkpoint_arrays(include_params)
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        tmp = os.path.join(
            folder, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        )
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                _write_npz(f, arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_directory(folder)

    def _checkpoint_arrays(self, include_params: bool) -> dict[str, np.ndarray]:
        groups = []
        for group in self.param_groups:
            options = {k: group[k] for k in GROUP_OPTIONS}
            schedule = callable(options["lr"])
            options["lr"] = None if schedule else options["lr"]
            options["betas"] = list(options["betas"])
            groups.append({**options, "lr_schedule": schedule, "size": len(group["params"])})
        meta = {
            "version": VERSION,
            "param_names": self._names,
            "param_groups": groups,
            "steps": self._steps,
            "has_params": bool(include_params),
        }
        arrays = {"format": np.array(FORMAT), "meta": np.array(json.dumps(meta))}
        for i, (p, m, u) in enumerate(zip(self._params, self._m, self._u)):
            arrays[f"m{i}"] = m
            arrays[f"u{i}"] = u
            if include_params:
                arrays[f"param{i}"] = p
        return arrays

    def load_state(self, path: str | os.PathLike[str], *, restore_params: bool = True) -> None:
        """Restore a checkpoint written by :meth:`save` into this optimizer.

        The file is read with ``allow_pickle=False`` (loading never runs
        code) and checked in full against this optimizer before anything
        changes. The options in the file replace the current ones, except
        a group's ``lr`` that was a schedule: the file does not hold it, so
        the group must have a callable ``lr`` now (given to the constructor),
        which is kept.

        Parameters
        ----------
        path : str or os.PathLike
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
        where = os.fspath(path)
        state_dict, params = _parse_checkpoint(_read_npz(path), where, self.param_groups)
        try:
            checked = self._check_state_dict(state_dict)
        except CheckpointError as e:
            raise CheckpointError(f"{where}: {e}") from None
        if params is not None and restore_params:
            for name, p, saved in zip(self._names, self._params, params):
                _check_saved_array(saved, p, f"{where}: {name}: param")
            checked["params"] = params
        self._commit(checked)

    @classmethod
    def load(cls, path: str | os.PathLike[str], params: Any, **kwargs: Any) -> Adamax:
        """A new optimizer over ``params`` with the state of the checkpoint at ``path``.

        ``Adamax(params, **kwargs)`` followed by :meth:`load_state`: the
        parameter arrays receive the stored values (if saved), and the
        file's options replace ``kwargs``' except callables (``lr``
        schedules must be passed again) and ``num_threads``/``nonfinite``.

        Parameters
        ----------
        path : str or os.PathLike
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



def _check_saved_step(step: Any, name: str) -> int:
    if isinstance(step, (bool, np.bool_)):
        raise CheckpointError(f"{name}: step must be an integer >= 0, got {step!r}")
    try:
        value = operator.index(step)
    except TypeError:
        raise CheckpointError(f"{name}: step must be an integer >= 0, got {step!r}") from None
    if value < 0:
        raise CheckpointError(f"{name}: step must be an integer >= 0, got {step!r}")
    return value


def _check_saved_array(a: Any, param: np.ndarray, where: str) -> None:
    if not isinstance(a, np.ndarray):
        raise CheckpointError(f"{where} must be a numpy.ndarray, got {type(a).__name__}")
    if a.shape != param.shape or a.dtype != param.dtype:
        raise CheckpointError(
            f"{where} has shape {a.shape} and dtype {a.dtype}, "
            f"but the parameter has shape {param.shape} and dtype {param.dtype}"
        )


def _read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read in full with ``allow_pickle=False``."""
    where = os.fspath(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as e:  # whatever a damaged or foreign file makes the parser raise
        raise CheckpointError(f"{where}: not a readable .npz checkpoint ({e})") from e
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{where}: not an .npz checkpoint (a single .npy array)")
    try:
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except Exception as e:  # truncated members, bad CRCs, pickled object arrays...
        raise CheckpointError(f"{where}: a damaged or unsafe checkpoint ({e})") from e


def _parse_checkpoint(
    data: Mapping[str, np.ndarray], where: str, current_groups: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], list[np.ndarray] | None]:
    """A checkpoint's arrays as a state dict, and its parameter values (or None).

    A group whose ``lr`` was a schedule takes the callable of
    ``current_groups`` (the optimizer being loaded into).
    """
    if "format" not in data or data["format"].shape != () or str(data["format"]) != FORMAT:
        raise CheckpointError(f"{where}: not an {FORMAT} (a foreign .npz file)")
    try:
        meta = json.loads(str(data["meta"]))
        version, names, groups, steps, has_params = (
            meta["version"],
            meta["param_names"],
            meta["param_groups"],
            meta["steps"],
            meta["has_params"],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: unreadable metadata ({e!r})") from None
    if version != VERSION:
        raise CheckpointError(f"{where}: checkpoint version {version!r}, this code reads {VERSION}")
    if not (
        isinstance(names, list)
        and isinstance(steps, list)
        and len(steps) == len(names)
        and isinstance(groups, list)
        and all(isinstance(g, dict) for g in groups)
        and isinstance(has_params, bool)
    ):
        raise CheckpointError(f"{where}: malformed metadata")
    n = len(names)
    expected = {"format", "meta"} | {f"{k}{i}" for i in range(n) for k in ("m", "u")}
    if has_params:
        expected |= {f"param{i}" for i in range(n)}
    if set(data) != expected:
        raise CheckpointError(
            f"{where}: the arrays {sorted(set(data) ^ expected)} are missing or unexpected"
        )
    param_groups, start = [], 0
    for g, saved in enumerate(groups):
        try:
            size = operator.index(saved.pop("size"))
            schedule = saved.pop("lr_schedule")
            saved["betas"] = tuple(saved["betas"])
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{where}: malformed param_groups[{g}] ({e!r})") from None
        if schedule:
            current = current_groups[g]["lr"] if g < len(current_groups) else None
            if not callable(current):
                raise CheckpointError(
                    f"{where}: param_groups[{g}] had an lr schedule (a callable), which a "
                    "file cannot hold; give the optimizer the schedule again"
                )
            saved["lr"] = current
        param_groups.append({**saved, "params": list(range(start, start + size))})
        start += size
    state_dict = {
        "format": FORMAT,
        "version": VERSION,
        "param_names": names,
        "param_groups": param_groups,
        "state": [
            {"step": step, "m": data[f"m{i}"], "u": data[f"u{i}"]} for i, step in enumerate(steps)
        ],
    }
    params = [data[f"param{i}"] for i in range(n)] if has_params else None
    return state_dict, params
