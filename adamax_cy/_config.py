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


def config() -> dict[str, Any]:
    """The build and run-time configuration as a dict (see :func:`show_config`)."""
    return {
        "version": __version__,
        "openmp": _kernel.openmp_enabled(),
        "default_threads": _kernel.max_threads(),
        "serial_threshold": _kernel.serial_threshold,
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
