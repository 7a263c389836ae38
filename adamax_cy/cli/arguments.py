"""What the commands share about their arguments: a parser whose errors are one
line, argparse types that refuse bad values, and the refusal of a value that
can only be judged after parsing (:class:`UsageError`)."""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from types import ModuleType
from typing import Callable, NoReturn, Optional, Sequence

#: The dtypes the commands compute in.
DTYPES = ("float64", "float32")

#: The optional extra that installs each optional dependency.
EXTRAS = {"rich": "cli", "matplotlib": "bench", "hypothesis": "testing", "torch": "torch"}


def install_line(extra: str) -> str:
    """How to install an optional extra from a checkout of the project."""
    return f'pip install ".[{extra}]"'


class UsageError(Exception):
    """An argument refused after parsing: one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with errors as a single line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_at_least(low: int, high: Optional[int] = None) -> Callable[[str], int]:
    """An argparse type: an integer >= low (and <= high, if given), with a
    one-line error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            expected = f">= {low}" if high is None else f"from {low} to {high:,}"
            raise argparse.ArgumentTypeError(f"expected an integer {expected}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def writable_file(text: str) -> str:
    """An argparse type: a file that can be written ('-' for standard output).

    Checked when the arguments are parsed, so that a run that would end in a
    failed write is refused before it starts; nothing is created here.
    """
    if text == "-":
        return text
    path = os.path.abspath(text)
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: no folder {folder!r}")
    target = path if os.path.exists(path) else folder
    if not os.access(target, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: permission denied")
    return text


def unless_hypothesis_is_missing(name: str) -> Optional[ModuleType]:
    """Import module ``name``; None when what is missing is hypothesis (the testing extra)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "hypothesis":
            raise
        return None


def run_alone(
    prog: str,
    configure_parser: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: Optional[Sequence[str]] = None,
    description: Optional[str] = None,
) -> int:
    """Run one command as a program of its own: its parser, then its run;
    a refusal is one line on standard error and exit status 2."""
    parser = Parser(prog=prog, description=description)
    configure_parser(parser)
    try:
        return run(parser.parse_args(argv))
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
