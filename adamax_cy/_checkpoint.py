"""The checkpoint file of :class:`adamax_cy.Adamax`: its layout, the atomic
write, the safe read, and the checks of a state dict against an optimizer.

A checkpoint is an uncompressed NumPy ``.npz``: a ``format`` string, a
``meta`` JSON string (version, parameter names, the groups' options and
sizes, step counts, whether parameters are stored) and the arrays ``m{i}``,
``u{i}`` and optionally ``param{i}`` for the i-th parameter. It is read with
``allow_pickle=False``: loading never runs code.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import operator
import os
import re
import reprlib
import secrets
import stat
import time
import zipfile
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._defaults import GROUP_OPTIONS, MAX_STEP
from ._interrupts import deferred_signals
from ._validation import is_sequence, normalise_group

#: What a checkpoint file says it is, and the layout version this code reads.
FORMAT = "adamax_cy.Adamax checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A state dict or checkpoint file that cannot be loaded (nothing was changed)."""


# ------------------------------------------------------------ state dicts


def state_dict(
    names: Sequence[str],
    groups: Sequence[Mapping[str, Any]],
    steps: Sequence[int],
    ms: Sequence[np.ndarray],
    us: Sequence[np.ndarray],
) -> dict[str, Any]:
    """An optimizer's state dict (see :meth:`adamax_cy.Adamax.state_dict`): copies."""
    saved_groups = []
    start = 0
    for group in groups:
        size = len(group["params"])
        options = {k: group[k] for k in GROUP_OPTIONS}
        options["betas"] = tuple(options["betas"])
        saved_groups.append({**options, "params": list(range(start, start + size))})
        start += size
    return {
        "format": FORMAT,
        "version": VERSION,
        "param_names": list(names),
        "param_groups": saved_groups,
        "state": [
            {"step": step, "m": m.copy(order="K"), "u": u.copy(order="K")}
            for step, m, u in zip(steps, ms, us)
        ],
    }


# ------------------------------------------------------------ writing


def to_arrays(
    names: Sequence[str],
    groups: Sequence[Mapping[str, Any]],
    steps: Sequence[int],
    ms: Sequence[np.ndarray],
    us: Sequence[np.ndarray],
    params: Sequence[np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """The arrays of a checkpoint file (the state's own arrays, not copies).

    ``groups`` are the optimizer's parameter groups (their options and
    ``"params"``); a callable ``lr`` is recorded as a schedule.
    """
    saved_groups = []
    for group in groups:
        options = {k: group[k] for k in GROUP_OPTIONS}
        schedule = callable(options["lr"])
        options["lr"] = None if schedule else options["lr"]
        options["betas"] = list(options["betas"])
        saved_groups.append({**options, "lr_schedule": schedule, "size": len(group["params"])})
    meta = {
        "version": VERSION,
        "param_names": list(names),
        "param_groups": saved_groups,
        "steps": list(steps),
        "has_params": params is not None,
    }
    arrays = {"format": np.array(FORMAT), "meta": np.array(json.dumps(meta, allow_nan=False))}
    for i, (m, u) in enumerate(zip(ms, us)):
        arrays[f"m{i}"] = m
        arrays[f"u{i}"] = u
        if params is not None:
            arrays[f"param{i}"] = params[i]
    return arrays


def _write_npz(file: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to the open binary ``file`` as an uncompressed ``.npz``."""
    np.savez(file, **arrays)  # type: ignore[arg-type]


def _fsync_directory(folder: str) -> None:
    # Makes the rename durable. Directories cannot be opened on Windows,
    # where the rename is durable once os.replace returns.
    if os.name != "posix":
        return
    fd = None
    try:
        with deferred_signals():  # no Ctrl-C between opening and owning the descriptor
            fd = os.open(folder, os.O_RDONLY)
        os.fsync(fd)
    finally:
        if fd is not None:
            os.close(fd)


def _check_target(path: str) -> None:
    """Refuse a checkpoint path that names no file or something else than a
    regular file (or a symbolic link to one, which is replaced), before
    anything is created."""
    if path == "":
        raise FileNotFoundError(errno.ENOENT, "cannot save a checkpoint: the path is empty", path)
    if os.path.basename(path) == "":
        raise IsADirectoryError(
            errno.EISDIR, "cannot save a checkpoint: the path names a folder", path
        )
    try:
        mode = os.stat(path).st_mode  # through a link: what it points to
    except FileNotFoundError:  # (a dangling link is replaced)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                errno.ENOENT, "cannot save a checkpoint: its folder does not exist", path
            ) from None
        return
    except NotADirectoryError:
        raise NotADirectoryError(
            errno.ENOTDIR, "cannot save a checkpoint: a file stands where a folder should", path
        ) from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(
            errno.EISDIR, "cannot save a checkpoint over a directory", path
        )
    if not stat.S_ISREG(mode):
        raise FileExistsError(
            errno.EEXIST,
            f"not a regular file ({_KINDS.get(stat.S_IFMT(mode), 'a special file')}): a "
            "checkpoint never replaces it",
            path,
        )


_KINDS = {stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def write_atomic(path: str | bytes | os.PathLike[Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` at ``path``: the old file or the new one, never a torn one.

    The file is written to a temporary file in the same folder, flushed and
    fsynced, renamed over ``path`` (:func:`os.replace`), and the folder is
    fsynced. A failure at any point leaves any previous file at ``path`` as
    it was and removes the temporary file; stale temporary files of earlier
    saves to ``path`` are removed first (see :data:`STALE_AFTER`).

    ``path`` (a str, bytes or path-like, as :func:`open` takes) must name a
    regular file, a symbolic link or nothing: a link is replaced by the
    checkpoint (the file it points to is left as it was); a path that is, or
    links to, a directory, a named pipe, a device or a socket is refused
    (:class:`OSError`) before anything is created.
    """
    path = os.fsdecode(path)
    _check_target(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    _remove_stale_temporaries(folder, base)
    name = f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp = os.path.join(folder, name)
    f = None
    try:
        # No Ctrl-C (or other handler) between creating the file and owning it.
        with deferred_signals():
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                             0o666)
            except OSError as e:
                raise OSError(
                    e.errno, f"cannot save a checkpoint: {e.strerror} (its temporary file)", path
                ) from None
            _WRITING.add(name)
            try:
                f = os.fdopen(fd, "wb")
            except BaseException:
                os.close(fd)
                raise
        with f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if name in _WRITING:  # (the file exists: this call created it)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    finally:
        if f is not None:
            f.close()
        _WRITING.discard(name)
    _fsync_directory(folder)


#: A temporary file untouched for this many seconds, of a process that no
#: longer runs, is removed by the next save to the same path. (The age spares
#: a writer on another machine sharing the folder, whose process id means
#: nothing here.)
STALE_AFTER = 60.0
_TEMPORARY = re.compile(r"\.(?P<base>.+)\.(?P<pid>[0-9]+)\.[0-9a-f]{8}\.tmp")
#: The temporary files this process is writing now (saves in several threads).
_WRITING: set[str] = set()


def _remove_stale_temporaries(folder: str, base: str) -> None:
    """Remove the temporary files of earlier saves to ``folder/base`` whose
    process was killed (``kill -9``, a power cut) before it could remove them."""
    if os.name != "posix":  # os.kill(pid, 0) would not test for a process there
        return
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or match["base"] != base or entry.name in _WRITING:
            continue
        with contextlib.suppress(OSError):
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < STALE_AFTER:
                continue
            pid = int(match["pid"])
            if pid != os.getpid() and _running(pid):
                continue
            os.unlink(entry.path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a number no process has: be careful)
    return True


# ------------------------------------------------------------ reading


#: Bytes of metadata allowed: a base, and more per parameter (names are stored
#: as UTF-32, four bytes a character).
META_BYTES = 2**20
META_BYTES_PER_PARAM = 2**14
#: Bytes besides the array data that a member may take (.npy header, zip headers).
MEMBER_OVERHEAD = 2**12
_CHUNK = 2**20


def read_members(
    path: str | bytes | os.PathLike[Any],
    where: str,
    expected: Callable[[dict[str, np.ndarray]], Mapping[str, tuple[tuple[int, ...], Any, str]]],
    max_bytes: int,
    meta_bytes: int,
) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path``, read with every size checked first.

    The file must be at most ``max_bytes`` long. ``format`` and ``meta`` (strings,
    ``meta`` of at most ``meta_bytes``) are read first; ``expected(those two)`` then gives the
    ``(shape, dtype, label)`` that each other member must declare, and
    nothing else may be in the file. Sizes come from the zip directory and
    the ``.npy`` headers and are checked before any array data is read, so a
    small file cannot make this allocate more than the arrays it should
    hold. Nothing is unpickled.
    """
    try:
        # Not blocking: opening a named pipe would wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CheckpointError(f"{where}: not a readable .npz checkpoint ({e})") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointError(f"{where}: not a readable .npz checkpoint (not a regular file)")
    with os.fdopen(fd, "rb") as f:
        head = f.read(8)
        if head.startswith(b"\x93NUMPY"):
            raise CheckpointError(f"{where}: not an .npz checkpoint (a single .npy array)")
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise CheckpointError(
                f"{where}: {size} bytes, more than a checkpoint of this optimizer's "
                f"parameters takes ({max_bytes})"
            )
        try:
            z = zipfile.ZipFile(f)
        except Exception as e:  # whatever a damaged or foreign file makes the parser raise
            what = "a pickled file, which is never loaded" if head[:1] == b"\x80" else str(e)
            raise CheckpointError(f"{where}: not a readable .npz checkpoint ({what})") from None
        with z:
            members: dict[str, zipfile.ZipInfo] = {}
            for info in z.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if key in members:
                    raise CheckpointError(f"{where}: the member {_short(key)} appears twice")
                members[key] = info
            if "format" not in members:
                raise CheckpointError(f"{where}: not an {FORMAT} (a foreign .npz file)")
            data = {"format": _read_member(z, members["format"], where, "format", (), "U",
                                           4 * len(FORMAT))}
            if "meta" not in members:
                raise CheckpointError(f"{where}: the arrays ['meta'] are missing or unexpected")
            data["meta"] = _read_member(z, members["meta"], where, "meta", (), "U", meta_bytes)
            layout = expected(data)
            unexpected = sorted((set(members) - {"format", "meta"}) ^ set(layout))
            if unexpected:
                raise CheckpointError(
                    f"{where}: the arrays {_short(unexpected)} are missing or unexpected"
                )
            for key, (shape, dtype, label) in layout.items():
                data[key] = _read_member(z, members[key], where, label, shape, dtype, 0)
    return data


def _read_member(
    z: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, label: str,
    shape: tuple[int, ...], dtype: np.dtype[Any] | str, max_bytes: int,
) -> np.ndarray:
    """One ``.npy`` member: its header checked against ``shape`` and ``dtype``
    (a dtype kind, such as ``"U"``, with at most ``max_bytes`` of data), then its
    data read into an array of that size and its checksum verified."""
    damaged = f"{where}: a damaged or unsafe checkpoint"
    try:
        with z.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            declared_shape, fortran, declared = header
            if declared.hasobject:
                raise CheckpointError(
                    f"{damaged} ({label} holds Python objects, which are never loaded: "
                    "allow_pickle=False)"
                )
            if isinstance(dtype, str):
                ok = declared.kind == dtype and declared.itemsize <= max_bytes
            else:
                ok = declared == dtype
            if not ok or declared_shape != shape:
                raise CheckpointError(
                    f"{where}: {label} has shape {_short(declared_shape)} and dtype "
                    f"{_cut(str(declared), 80)}, but the parameter has shape {shape} and "
                    f"dtype {dtype}"
                    if not isinstance(dtype, str) else
                    f"{damaged} ({label} is not a short string)"
                )
            nbytes = declared.itemsize * math.prod(shape)
            if info.file_size != f.tell() + nbytes:
                raise ValueError(f"{label} holds {info.file_size - f.tell()} bytes, not {nbytes}")
            out = np.empty(shape, declared, order="F" if fortran else "C")
            buffer = memoryview(out.reshape(-1, order="A").view(np.uint8))  # type: ignore[arg-type]
            done = 0
            while done < nbytes:
                chunk = f.read(min(_CHUNK, nbytes - done))
                if not chunk:
                    raise ValueError(f"{label} is truncated")
                buffer[done:done + len(chunk)] = chunk
                done += len(chunk)
            if f.read(1):  # also verifies the checksum at the end of the member
                raise ValueError(f"{label} is longer than its header says")
    except CheckpointError:
        raise
    except Exception as e:  # truncated members, bad checksums, malformed headers...
        raise CheckpointError(f"{damaged} ({_cut(str(e), 200)})") from e
    return out


def _parse_meta(data: Mapping[str, np.ndarray], where: str) -> tuple[Any, list[Any], list[dict[str, Any]], list[Any], bool]:
    """``(version, names, groups, steps, has_params)`` from a checkpoint's metadata."""
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
    except (KeyError, TypeError, ValueError, RecursionError) as e:  # (deep nesting)
        raise CheckpointError(f"{where}: unreadable metadata ({_cut(repr(e))})") from None
    if not _is_int(version) or version != VERSION:
        raise CheckpointError(
            f"{where}: checkpoint version {_short(version)}, this code reads {VERSION}"
        )
    if not (
        isinstance(names, list)
        and isinstance(steps, list)
        and len(steps) == len(names)
        and isinstance(groups, list)
        and all(isinstance(g, dict) for g in groups)
        and isinstance(has_params, bool)
    ):
        raise CheckpointError(f"{where}: malformed metadata")
    return version, names, groups, steps, has_params


def from_arrays(
    data: Mapping[str, np.ndarray],
    where: str,
    schedules: Sequence[Callable[[int], float] | None],
) -> tuple[dict[str, Any], list[np.ndarray] | None]:
    """A checkpoint's arrays as a state dict, and its parameter values (or None).

    A group whose ``lr`` was a schedule takes ``schedules[g]``, the callable
    ``lr`` of the optimizer being loaded into (None where it has none).
    """
    version, names, groups, steps, has_params = _parse_meta(data, where)
    n = len(names)
    expected = {"format", "meta"} | {f"{k}{i}" for i in range(n) for k in ("m", "u")}
    if has_params:
        expected |= {f"param{i}" for i in range(n)}
    if set(data) != expected:
        raise CheckpointError(
            f"{where}: the arrays {_short(sorted(set(data) ^ expected))} are missing or unexpected"
        )
    param_groups, start = [], 0
    for g, saved in enumerate(groups):
        try:
            size = saved.pop("size")
            if not _is_int(size):
                raise TypeError(f"size {_short(size)} is not an integer")
            schedule = saved.pop("lr_schedule")
            saved["betas"] = tuple(saved["betas"])
            if not 0 <= size <= n - start:
                raise ValueError(f"size {_short(size)} for {n - start} parameters left")
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: malformed param_groups[{g}] ({_cut(repr(e))})") from None
        if schedule:
            current = schedules[g] if g < len(schedules) else None
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


# ------------------------------------------------------------ checking


def read(
    path: str | bytes | os.PathLike[Any],
    names: Sequence[str],
    params: Sequence[np.ndarray],
    groups: Sequence[Mapping[str, Any]],
    restore_params: bool,
) -> dict[str, Any]:
    """The checkpoint at ``path``, checked against an optimizer; what to commit.

    As :func:`check_state_dict`, with ``"params"`` the stored parameter
    values when the file has them and ``restore_params`` is true. The
    metadata is checked against the optimizer's parameters (names, group
    sizes) and each array's declared shape and dtype against its parameter's
    before any array is read.
    """
    where = os.fsdecode(path)
    names = list(names)
    sizes = [len(group["params"]) for group in groups]
    meta_bytes = META_BYTES + META_BYTES_PER_PARAM * len(params)
    max_bytes = meta_bytes + sum(3 * (p.nbytes + MEMBER_OVERHEAD) for p in params)
    max_bytes += 2 * MEMBER_OVERHEAD

    def layout(data: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], Any, str]]:
        _, saved_names, saved_groups, _, has_params = _parse_meta(data, where)
        if saved_names != names:
            raise CheckpointError(
                f"{where}: the checkpoint is for parameters {_short(saved_names)}, "
                f"but this optimizer has {_short(names)}"
            )
        saved_sizes = [group.get("size") for group in saved_groups]
        if saved_sizes != sizes or not all(map(_is_int, saved_sizes)):
            raise CheckpointError(
                f"{where}: the checkpoint's param_groups hold {_short(saved_sizes)} parameters, "
                f"this optimizer's {_short(sizes)}"
            )
        keys = ("m", "u", "param") if has_params else ("m", "u")
        return {
            f"{key}{i}": (p.shape, p.dtype, f"{name}: {key}")
            for i, (name, p) in enumerate(zip(names, params))
            for key in keys
        }

    data = read_members(where, where, layout, max_bytes, meta_bytes)
    schedules = [group["lr"] if callable(group["lr"]) else None for group in groups]
    state_dict, saved_params = from_arrays(data, where, schedules)
    try:
        checked = check_state_dict(state_dict, names, params, groups)
    except CheckpointError as e:
        raise CheckpointError(f"{where}: {e}") from None
    if saved_params is not None and restore_params:
        for name, p, saved in zip(names, params, saved_params):
            check_saved_array(saved, p, f"{where}: {name}: param")
            if not p.flags.writeable:
                raise CheckpointError(
                    f"{where}: {name}: the parameter is read-only; its stored value cannot "
                    "be restored (pass restore_params=False to load the rest)"
                )
        checked["params"] = saved_params
    return checked


def check_state_dict(
    sd: Any,
    names: Sequence[str],
    params: Sequence[np.ndarray],
    groups: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Validate a state dict against an optimizer; return what to commit.

    ``names`` and ``params`` are the optimizer's parameters in order and
    ``groups`` its parameter groups. The result holds the normalised options
    of each group (``"groups"``), and the ``"steps"``, ``"m"`` and ``"u"``
    of each parameter.
    """
    names = list(names)
    group_sizes = [len(group["params"]) for group in groups]
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
    saved_names = sd.get("param_names", names)
    if not is_sequence(saved_names) or list(saved_names) != names:
        raise CheckpointError(
            f"the state dict is for parameters {_short(saved_names)}, "
            f"but this optimizer has {_short(names)}"
        )
    groups = sd["param_groups"]
    if not is_sequence(groups) or len(groups) != len(group_sizes):
        count = len(groups) if is_sequence(groups) else type(groups).__name__
        raise CheckpointError(
            f"the state dict has {count} parameter groups, "
            f"this optimizer {len(group_sizes)}"
        )
    new_groups = []
    start = 0
    for g, (saved, size) in enumerate(zip(groups, group_sizes)):
        if not isinstance(saved, Mapping) or set(saved) != {"params", *GROUP_OPTIONS}:
            raise CheckpointError(
                f"param_groups[{g}] must be a dict of {['params', *GROUP_OPTIONS]}"
            )
        indices = saved["params"]
        if not is_sequence(indices) or list(indices) != list(range(start, start + size)):
            raise CheckpointError(
                f"param_groups[{g}] holds parameters {_short(indices)}, "
                f"this optimizer's group {_short(list(range(start, start + size)))}"
            )
        start += size
        try:
            new_groups.append(normalise_group(saved, f"param_groups[{g}]: "))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"invalid options: {_cut(str(e))}") from None
    state = sd["state"]
    if not is_sequence(state) or len(state) != len(params):
        raise CheckpointError(
            f"the state dict must hold one state per parameter ({len(params)})"
        )
    steps: list[int] = []
    ms: list[np.ndarray] = []
    us: list[np.ndarray] = []
    for name, p, entry in zip(names, params, state):
        if not isinstance(entry, Mapping) or set(entry) != {"step", "m", "u"}:
            raise CheckpointError(f"{name}: the state must be a dict of 'step', 'm' and 'u'")
        steps.append(check_saved_step(entry["step"], name))
        for key, out in (("m", ms), ("u", us)):
            a = entry[key]
            if not isinstance(a, np.ndarray):
                raise CheckpointError(
                    f"{name}: {key} must be a numpy.ndarray, got {type(a).__name__}"
                )
            check_saved_array(a, p, f"{name}: {key}")
            # (NaN is legal: a NaN gradient with nonfinite="propagate" leaves one.)
            if key == "u" and (a < 0).any():
                raise CheckpointError(
                    f"{name}: u holds negative values, which no step makes "
                    "(u is a maximum of absolute values)"
                )
            out.append(a)
    return {"groups": new_groups, "steps": steps, "m": ms, "u": us, "params": None}


def _is_int(value: Any) -> bool:
    """An integer of the metadata: a JSON number without a fraction, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_saved_step(step: Any, name: str) -> int:
    """A stored step count: an integer from 0 to ``MAX_STEP - 2``, so that the
    next step's ``t`` is one the kernel takes."""
    try:
        if isinstance(step, (bool, np.bool_)):
            raise TypeError
        value = operator.index(step)
    except TypeError:
        value = -1
    if not 0 <= value < MAX_STEP - 1:
        raise CheckpointError(
            f"{name}: step must be an integer >= 0 (and below 2**63 - 1), got {_short(step)}"
        )
    return value


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 3, 8, 8
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 80


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to about ``limit`` characters: messages stay short
    whatever a file holds."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_saved_array(a: Any, param: np.ndarray, where: str) -> None:
    """A stored array of ``param``'s shape and dtype."""
    if not isinstance(a, np.ndarray):
        raise CheckpointError(f"{where} must be a numpy.ndarray, got {type(a).__name__}")
    if a.shape != param.shape or a.dtype != param.dtype:
        raise CheckpointError(
            f"{where} has shape {a.shape} and dtype {a.dtype}, "
            f"but the parameter has shape {param.shape} and dtype {param.dtype}"
        )
