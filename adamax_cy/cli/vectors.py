"""``adamax-cy vectors``: the test vectors, for implementations in any language.

Writes the document of :func:`adamax_cy.testing.generate_test_vectors` (its
format is on the documentation's "Test vectors" page). Needs NumPy only.
"""

from __future__ import annotations

import argparse
import sys

from .. import _vectors
from .arguments import non_negative_int, writable_file

HELP = "write the test vectors (JSON), for implementations in any language"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``vectors`` command's arguments to ``parser``."""
    parser.description = (
        "Write the Adamax test vectors: one JSON document of single steps with their exact "
        "expected results, in float32 and float64 and both conventions, for implementations "
        "in any language."
    )
    parser.add_argument("--out", type=writable_file, default="-", metavar="FILE",
                        help="the file to write ('-', the default, for standard output)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the random arrays and hyperparameters (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Run the ``vectors`` command."""
    if args.out == "-":
        _vectors.write_test_vectors(sys.stdout, seed=args.seed)
    else:
        count = _vectors.write_test_vectors(args.out, seed=args.seed)
        print(f"wrote {count} test vectors to {args.out}", file=sys.stderr)
    return 0
