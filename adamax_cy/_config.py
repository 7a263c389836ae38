"""What this build is: version, OpenMP, threads, compiler flags."""

from __future__ import annotations

import platform
import sys
from typing import Any

import numpy as np

from . import _kernel
from ._version import __version__


def openmp_enabled() -> bool:
    """Whether the compiled kernel was built with OpenMP (and so can use threads).

    Examples
    --------
    >>> isinstance(openmp_enabled(), bool)
    True
    """
    return _kernel.openmp_enabled()


def thread_policy() -> str:
    """What ``num_threads=None`` does now, in one line.

    Above the serial threshold the default adapts to the machine: it
    measures its parallel calls against serial ones, per kind of call,
    dtype and size class, and runs serially for a while when threads have
    cost more (a core busy with other work); the performance page of the
    documentation says more.

    Examples
    --------
    >>> isinstance(thread_policy(), str)
    True
    """
    threads = _kernel.max_threads()
    if threads == 1:
        return "serial: one thread to use"
    if not _kernel.adaptive():
        return f"{threads} threads from {_kernel.serial_threshold} elements (not adaptive)"
    state = _kernel.policy_state()
    late = sum(c["late_threads"] for c in state)
    slow = sum(c["no_faster"] for c in state)
    serial = [c for c in state if c["mode"] in ("measuring", "serial (backing off)")]
    text = (f"adaptive: {threads} threads from {_kernel.serial_threshold} elements, serial "
            f"for a while when threads cost more; so far {len(state)} size classes seen, "
            f"{late} late threads, {slow} times threads were no faster")
    if serial:
        text += ", serial now for " + ", ".join(
            f"{c['dtype']} {c['elements'][0]}-{c['elements'][1]}"
            + (" (many arrays)" if c["kind"] == "many arrays" else "") for c in serial)
    return text


def config() -> dict[str, Any]:
    """The build and run-time configuration as a dict (see :func:`show_config`)."""
    return {
        "version": __version__,
        "openmp": _kernel.openmp_enabled(),
        "default_threads": _kernel.max_threads(),
        "serial_threshold": _kernel.serial_threshold,
        "thread_policy": thread_policy(),
        "level": _kernel.level(),
        "levels_available": ", ".join(_kernel.available_levels()),
        "compiler": _kernel.compiler_version(),
        "compile_flags": _kernel.compile_flags(),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def show_config(as_dict: bool = False) -> dict[str, Any] | None:
    """Print the build and run-time configuration, or return it as a dict.

    Parameters
    ----------
    as_dict : bool, optional
        Return the information instead of printing it.

    Examples
    --------
    >>> show_config(as_dict=True)["openmp"] in (True, False)
    True
    """
    info = config()
    if as_dict:
        return info
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return None
