"""``adamax-cy conform``: the conformance verdict from the shell.

``conform package.module:function`` checks a Python step;
``conform --exec "COMMAND"`` a program in any language speaking the line
protocol of :mod:`adamax_cy.testing._exec` (the test vectors first, then the
harness's cases). Every other option applies to both.

Exit status: 0 when the implementation conforms, 1 when it does not, 2 when
the target cannot be loaded, the program breaks the protocol, an argument is
refused or hypothesis is not installed. The dtypes, the options and the
tolerance fields are those of :mod:`adamax_cy.testing`, which needs
hypothesis (the ``testing`` extra); without it, ``--help`` still shows the
usage, and says how to install it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shlex
import sys
from types import ModuleType
from typing import Any, Optional, Sequence

from .._defaults import CONVENTIONS, MAX_EXAMPLES
from .arguments import (EXTRAS, UsageError, install_line, int_at_least, positive_float, run_alone,
                        unless_hypothesis_is_missing)
from .render import for_stream

HELP = "check anyone's Adamax against the specification"
NEEDS = f"this command needs hypothesis, which is not installed: {install_line(EXTRAS['hypothesis'])}"


def _testing() -> ModuleType | None:
    """:mod:`adamax_cy.testing`, or None when hypothesis is not installed."""
    return unless_hypothesis_is_missing("adamax_cy.testing")


def _tolerance_fields(testing: ModuleType) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(testing.Tolerance))


def _widening(fields: Sequence[str]) -> Any:
    def parse(text: str) -> tuple[str, float]:
        name, sep, value = text.partition("=")
        if not sep or name not in fields:
            raise argparse.ArgumentTypeError(f"expected FIELD=ULPS with FIELD in {tuple(fields)}, got {text!r}")
        try:
            return name, float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of ulps: {value!r}") from None

    return parse


def _option(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    lowered = value.lower()
    if lowered in ("true", "false"):
        return name, lowered == "true"
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or true/false: {value!r}") from None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``conform`` command's arguments to ``parser``."""
    testing = _testing()
    parser.usage = "%(prog)s (target | --exec COMMAND) [options]"
    parser.description = (
        "Hold an Adamax step against the specification's reference: the worked examples, "
        "edge cases, then generated cases. The step is a Python target, or a program in any "
        "language with --exec. Exit 0 if it conforms, 1 if not, 2 if it cannot be run."
    )
    if testing is None:
        parser.epilog = f"Needs hypothesis (not installed): {install_line(EXTRAS['hypothesis'])}"
    fields = _tolerance_fields(testing) if testing is not None else ()
    parser.add_argument("target", nargs="?",
                        help="the step to check, as package.module:function (or :Class); or use --exec")
    parser.add_argument("--exec", dest="exec_command", metavar="COMMAND",
                        help="check a program in any language instead of a target: started once, it "
                        "reads one JSON step per line and answers one (see the docs' test vectors page)")
    parser.add_argument("--convention", choices=CONVENTIONS, default="spec",
                        help="eps added to u in the denominator (spec) or inside the max (torch)")
    parser.add_argument("--dtype", choices=testing and testing.DTYPES, default="float64")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--in-place", action="store_true",
                      help="the target updates param, m and u in place and returns None")
    kind.add_argument("--optimizer", action="store_true",
                      help="the target is an optimizer class (the default for a class): a torch.optim "
                      "optimizer, or a NumPy one with a state dict like adamax_cy.Adamax")
    parser.add_argument("--option", action="append", type=_option, default=[], metavar="NAME=VALUE",
                        help="hold a hyperparameter or option fixed, e.g. eps=1e-7 or maximize=true")
    parser.add_argument("--vary", action="append", choices=testing and testing.OPTIONS, default=[],
                        help="an option the target supports, to be varied by the generated cases")
    parser.add_argument("--widen", action="append", type=_widening(fields), default=[],
                        metavar="FIELD=ULPS",
                        help=f"widen the tolerance (fields {', '.join(fields) or 'of the contract'}), "
                        "stated in the verdict")
    allowances: tuple[str, ...] = ()
    if testing is not None:
        from ..testing.frameworks import ALLOWANCES

        allowances = tuple(ALLOWANCES)
    parser.add_argument("--allow", action="append", choices=allowances or None, default=[], metavar="NAME",
                        help="a named departure to account for, stated in the verdict: "
                        f"{', '.join(allowances) or 'see the docs'} (the frameworks page says "
                        "which framework needs which; the test vectors are then skipped)")
    parser.add_argument("--finite-only", action="store_true",
                        help="leave infinite and NaN values out of the cases")
    parser.add_argument("--max-examples", type=int_at_least(1, MAX_EXAMPLES), default=200, metavar="N",
                        help=f"generated cases to try (1 to {MAX_EXAMPLES:,})")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed, to replay a run")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    program = parser.add_argument_group("with --exec")
    default = ""
    if testing is not None:
        from ..testing._exec import DEFAULT_TIMEOUT

        default = f" (default {DEFAULT_TIMEOUT:g})"
    program.add_argument("--timeout", type=positive_float, default=None, metavar="SECONDS",
                         help=f"seconds to wait for each answer{default}")
    program.add_argument("--no-vectors", action="store_true",
                         help="skip the test vectors that run before the generated cases (they are "
                         "also skipped when --option holds a value fixed)")


def _load(target: str) -> Any:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected package.module:function, got {target!r}")
    # Modules in the current folder are found, as with ``python -m`` (a console
    # script's sys.path starts with the script's folder instead).
    # The folder is on sys.path for this import only: main() may be called
    # from a program whose sys.path is not ours to change.
    here = os.getcwd()
    added = "" not in sys.path and here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        obj: Any = importlib.import_module(module_name)
    finally:
        if added and here in sys.path:
            sys.path.remove(here)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse what only makes sense for the other kind of target (:class:`UsageError`)."""
    if args.target is None and args.exec_command is None:
        raise UsageError("give the step to check (package.module:function) or --exec COMMAND")
    if args.target is not None and args.exec_command is not None:
        raise UsageError(f"give a target or --exec COMMAND, not both (got {args.target!r} and --exec)")
    if args.exec_command is not None:
        for flag, given in (("--in-place", args.in_place), ("--optimizer", args.optimizer)):
            if given:
                raise UsageError(f"{flag} describes a Python target; it does not apply to --exec")
        try:
            words = shlex.split(args.exec_command)
        except ValueError as err:
            raise UsageError(f"--exec: cannot split {args.exec_command!r}: {err}") from None
        if not words:
            raise UsageError("--exec needs a command")
    else:
        for flag, given in (("--timeout", args.timeout is not None), ("--no-vectors", args.no_vectors)):
            if given:
                raise UsageError(f"{flag} applies only to --exec")


def _harness_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`adamax_cy.testing.check_conformance` the options give."""
    return {
        "convention": args.convention,
        "dtype": args.dtype,
        "options": dict(args.option),
        "vary": tuple(dict.fromkeys(args.vary)),
        "tolerance": dict(args.widen) or None,
        "nonfinite": not args.finite_only,
        "max_examples": args.max_examples,
        "seed": args.seed,
    }


def _judge(step: Any, args: argparse.Namespace, **extra: Any) -> tuple[Any, dict[str, Any]]:
    """The harness's report on ``step``, with the allowances of ``--allow``; what they skipped."""
    from .. import testing

    if not args.allow:
        return testing.check_conformance(step, **_harness_options(args), **extra), {}
    from ..testing import frameworks

    h = _harness_options(args)
    report, measure = frameworks.check(step, list(dict.fromkeys(args.allow)), h.pop("convention"),
                                       h.pop("dtype"), h.pop("options") or None, h.pop("max_examples"),
                                       h.pop("seed"), **h, test_vectors=False)
    return report, {"allowances": list(dict.fromkeys(args.allow)), "elements_skipped": measure.skipped}


def _print_report(report: Any, allowed: dict[str, Any], as_json: bool, **more: Any) -> None:
    if as_json:
        print(json.dumps({**report.to_dict(), **allowed, **more}, indent=2, allow_nan=False))
        return
    print(for_stream(str(report)))
    if allowed:
        print(f"allowances: {', '.join(allowed['allowances'])} "
              f"({allowed['elements_skipped']} elements skipped by them)")


def run(args: argparse.Namespace) -> int:
    """Run the ``conform`` command; return the exit status."""
    _check_arguments(args)
    testing = _testing()
    if testing is None:
        raise UsageError(NEEDS)
    from ..testing._harness import check_options

    try:
        check_options(dict(args.option))
    except ValueError as err:
        raise UsageError(f"--option: {err}") from None
    if args.exec_command is not None:
        return _run_exec(args)
    try:
        target = _load(args.target)
    except (ImportError, AttributeError, ValueError) as err:
        print(f"conform: cannot load {args.target!r}: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    if not callable(target):
        print(f"conform: error: {args.target!r} is not callable (a {type(target).__name__}): give a "
              "function, a callable object or an optimizer class", file=sys.stderr)
        return 2
    from ..testing._adapters import class_adapter

    if args.in_place:
        step: Any = testing.in_place(target)
    elif args.optimizer or isinstance(target, type):
        if not isinstance(target, type):
            raise UsageError(f"--optimizer: {args.target} is not a class")
        try:
            step = class_adapter(target)
        except TypeError as err:
            raise UsageError(str(err)) from None
    else:
        step = testing.functional(target)
    try:
        report, allowed = _judge(step, args)
    except ValueError as err:
        print(f"conform: {err}", file=sys.stderr)
        return 2
    _print_report(report, allowed, args.json)
    return 0 if report.conforms else 1


def _run_exec(args: argparse.Namespace) -> int:
    """``conform --exec``: the test vectors, then the harness's cases, through the line protocol."""
    from ..testing import _exec

    timeout = {} if args.timeout is None else {"timeout": args.timeout}
    program = _exec.ExecImplementation(args.exec_command, convention=args.convention, **timeout)
    vectors_run, wrong, report = 0, None, None
    allowed: dict[str, Any] = {}
    with program:
        if not (args.option or args.no_vectors or args.allow):  # the vectors carry their own values
            try:
                vectors_run, wrong = _exec.check_vectors(program, args.dtype, args.convention,
                                                         args.vary, not args.finite_only)
            except _exec.ProtocolError:
                pass  # reported below
        if wrong is None and program.protocol_error is None:
            try:
                # The vectors ran above, with their replay lines (or --no-vectors left them out).
                report, allowed = _judge(program, args, **({} if args.allow else {"test_vectors": False}))
            except (ValueError, TypeError) as err:
                print(f"conform: {err}", file=sys.stderr)
                return 2
    if program.protocol_error is not None:
        print(f"{program.name}: PROTOCOL ERROR: {program.protocol_error}", file=sys.stderr)
        if args.json:
            print(json.dumps({"implementation": program.name, "conforms": False,
                              "protocol_error": str(program.protocol_error)}, indent=2))
        return 2
    replay_hint = "replay the failing step: echo {} | " + args.exec_command
    if wrong is not None:
        if args.json:
            print(json.dumps({"implementation": program.name, "conforms": False,
                              "convention": args.convention, "dtype": args.dtype, "test_vectors": vectors_run,
                              "mismatch": wrong, "replay": wrong["replay"]}, indent=2))
        else:
            print(for_stream(
                f"{program.name}: convention {args.convention!r}, {args.dtype}\n"
                f"verdict: DOES NOT CONFORM\n"
                f"first wrong output: {wrong['formula']}  (test vector {wrong['vector']}, {wrong['why']})\n"
                f"{wrong['detail']}\n" + replay_hint.format(shlex.quote(wrong["replay"]))))
        return 1
    assert report is not None
    line = _exec.replay(report.mismatch, args.convention)
    _print_report(report, allowed, args.json, test_vectors=vectors_run, replay=line)
    if not args.json:
        print(f"test vectors: {vectors_run} passed before the generated cases")
        if line is not None:
            print(replay_hint.format(shlex.quote(line)))
    return 0 if report.conforms else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``conform`` as a command of its own."""
    return run_alone("python -m adamax_cy conform", configure_parser, run, argv)

if __name__ == "__main__":
    sys.exit(main())
