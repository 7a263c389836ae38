"""The parser, the table of commands and :func:`main`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Callable, Sequence

from .._version import __version__
from . import demo, examples, info, vectors
from .arguments import EXTRAS, Parser, UsageError, install_line

#: Commands of this package, imported with it: name -> module. Each module
#: provides ``HELP``, ``configure_parser(parser)`` and ``run(args) -> int``.
COMMANDS = {"examples": examples, "demo": demo, "info": info, "vectors": vectors}

#: Commands implemented in other modules: name -> (help, candidate modules).
#: Each module provides ``configure_parser(parser)`` and ``run(args) -> int``
#: and is imported only when its command is chosen, so a missing optional
#: dependency never breaks the rest of the command line.
PLUGINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bench": (
        "time the kernel against NumPy, torch and the memory floor",
        ("adamax_cy.bench",),
    ),
    "conform": (
        "check anyone's Adamax against the specification",
        ("adamax_cy.cli.conform", "adamax_cy.testing"),
    ),
    "frameworks": (
        "report how the installed frameworks' Adamax conform",
        ("adamax_cy.cli.frameworks",),
    ),
}


class CommandUnavailable(Exception):
    """A command whose module (or one of its dependencies) is not installed."""


def cmd_default(args: argparse.Namespace) -> int:
    """The main job: the worked examples, then the demonstration."""
    parser = build_parser()
    status = examples.run(parser.parse_args(["examples"]))
    print()
    demo.run(parser.parse_args(["demo"]))
    return status


def load_plugin(command: str) -> Any:
    """Import the module that implements ``command``, or raise CommandUnavailable."""
    _help, candidates = PLUGINS[command]
    for name in candidates:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not in this installation; try the next candidate
            missing = (exc.name or "").partition(".")[0]
            hint = f": {install_line(EXTRAS[missing])}" if missing in EXTRAS else ""
            raise CommandUnavailable(
                f"the '{command}' command needs {exc.name!r}, which is not installed{hint}"
            ) from None
        except ImportError as exc:
            raise CommandUnavailable(f"the '{command}' command cannot be loaded: {exc}") from None
        if callable(getattr(module, "configure_parser", None)) and callable(
            getattr(module, "run", None)
        ):
            return module
    raise CommandUnavailable(f"the '{command}' command is not available in this version of adamax_cy")


def build_parser(command: str | None = None, prog: str = "adamax-cy") -> argparse.ArgumentParser:
    """The argument parser; the module of ``command`` is imported if it is a plugin."""
    parser = Parser(
        prog=prog,
        description=(
            "The Adamax optimizer step, compiled with Cython. Without a command: the "
            "specification's worked examples through the compiled kernel, then a short "
            "training demonstration."
        ),
    )
    parser.add_argument("--version", action="version", version=f"adamax_cy {__version__}")
    parser.set_defaults(func=cmd_default)
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP)
        module.configure_parser(p)
        p.set_defaults(func=module.run)
    for name, (help_text, _modules) in PLUGINS.items():
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if name == command:
            plugin = load_plugin(name)
            plugin.configure_parser(p)
            p.set_defaults(func=plugin.run)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _default_prog() -> str:
    return "python -m adamax_cy" if os.path.basename(sys.argv[0]) == "__main__.py" else "adamax-cy"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments, without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success; 1 when a check fails (a worked example disagrees) or
        the output cannot be written; 2 for a refused argument or a command
        that is not installed, with one line on standard error.

    Examples
    --------
    >>> main(["info", "--json"])  # doctest: +ELLIPSIS
    {
      "version": ...
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = _default_prog()
    command = _command_of(argv)
    try:
        parser = build_parser(command, prog)
    except CommandUnavailable as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        status = int(func(args))
        sys.stdout.flush()  # a write that fails (a full disk) fails here, not at exit
        return status
    except SystemExit as exc:  # argparse: --help, --version and bad arguments
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(f"{prog}: error: {exc.code}", file=sys.stderr)
        return 2
    except UsageError as exc:
        where = f"{prog} {command}" if command else prog
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prog}: error: not enough memory (try a smaller size)", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (``adamax-cy info | head``): silence the
        # interpreter's final flush of stdout, as the Python docs advise.
        _silence_stdout()
        return 1
    except OSError as exc:  # e.g. standard output on a full disk
        print(f"{prog}: error: {exc}", file=sys.stderr)
        _silence_stdout()
        return 1


def _silence_stdout() -> None:
    """Send what is left in standard output's buffer nowhere, so that the
    interpreter's final flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
