"""``adamax-cy info``: how this copy was built and what it uses at run time."""

from __future__ import annotations

import argparse

from .. import _config
from .render import JSON_HELP, emit_json, print_table

HELP = "the build: version, OpenMP, threads, compiler flags"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``info`` command's arguments to ``parser``."""
    parser.description = "Show how this copy of adamax_cy was built and what it will use at run time."
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def run(args: argparse.Namespace) -> int:
    """Run the ``info`` command."""
    info = _config.show_config(as_dict=True)
    assert info is not None
    if args.json:
        emit_json(info)
    else:
        print_table(f"adamax_cy {info['version']}", ["", ""], [[k, str(v)] for k, v in info.items()])
    return 0
