"""``python -m adamax_cy``: the command line (see :mod:`adamax_cy.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
