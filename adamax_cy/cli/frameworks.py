"""``adamax-cy frameworks``: how the installed frameworks' Adamax conform.

Runs the report of :mod:`adamax_cy.testing.frameworks`: every installed
framework (torch, Optax/JAX, Keras on each backend, TensorFlow) through the
conformance harness under both conventions and dtypes, each in its own
process; writes ``OUT.json`` and ``OUT.md`` and prints the table.
``python -m adamax_cy.testing.frameworks`` is the same command. Needs
hypothesis (the ``testing`` extra); without it, ``--help`` still shows the
usage, and says how to install it.
"""

from __future__ import annotations

import argparse
import json
import sys
from types import ModuleType
from typing import Optional, Sequence

from .._defaults import MAX_EXAMPLES
from .arguments import (EXTRAS, UsageError, install_line, int_at_least, non_negative_int,
                        positive_float, run_alone, unless_hypothesis_is_missing, writable_file)
from .render import for_stream

NEEDS = f"this command needs hypothesis, which is not installed: {install_line(EXTRAS['hypothesis'])}"


def _report() -> ModuleType | None:
    """:mod:`adamax_cy.testing.frameworks`, or None when hypothesis is not installed."""
    return unless_hypothesis_is_missing("adamax_cy.testing.frameworks")


def _out_prefix(text: str) -> str:
    """An argparse type: a prefix ``OUT`` such that ``OUT.json`` and ``OUT.md`` can be written."""
    for suffix in (".json", ".md"):
        writable_file(text + suffix)
    return text


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``frameworks`` command's arguments to ``parser``."""
    report = _report()
    names = list(report.FRAMEWORKS) if report is not None else None
    parser.description = (
        "Run every installed framework's Adamax (torch, Optax/JAX, Keras on each backend, "
        "TensorFlow) through the conformance harness under both conventions and dtypes, each "
        "in its own process; write OUT.json and OUT.md and print the table. Frameworks that "
        "are not installed are listed as skipped. Exit 1 if a run failed to complete."
    )
    if report is None:
        parser.epilog = f"Needs hypothesis (not installed): {install_line(EXTRAS['hypothesis'])}"
    parser.add_argument("--out", type=_out_prefix, default="frameworks", metavar="OUT",
                        help="write OUT.json and OUT.md (default %(default)s)")
    parser.add_argument("--framework", action="append", choices=names,
                        help="only this framework (repeat for several; default: all installed)")
    parser.add_argument("--max-examples", type=int_at_least(1, MAX_EXAMPLES), default=100, metavar="N",
                        help=f"generated cases per run, 1 to {MAX_EXAMPLES:,} (default %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="hypothesis seed (default %(default)s)")
    parser.add_argument("--timeout", type=positive_float, default=900.0, metavar="SECONDS",
                        help="for each framework and dtype (default %(default)g)")
    # One framework and dtype, in the subprocess the report starts: JSON lines on stdout.
    parser.add_argument("--one", choices=names, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # the first run only


def run(args: argparse.Namespace) -> int:
    """Run the report (or, with the hidden ``--one``, one framework and dtype); the exit status."""
    report = _report()
    if report is None:
        raise UsageError(NEEDS)
    if args.one:
        for row in report.runs_of(args.one, args.dtype, args.max_examples, args.seed, args.quick):
            print(json.dumps(row, allow_nan=False), flush=True)
        return 0
    doc = report.report(args.out, args.framework, args.max_examples, args.seed, args.timeout)
    sys.stdout.write(for_stream(report.markdown(doc)))  # the files keep the Greek letters
    return 1 if any("error" in r for r in doc["results"]) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m adamax_cy.testing.frameworks``: the command on its own."""
    return run_alone("python -m adamax_cy.testing.frameworks", configure_parser, run, argv)