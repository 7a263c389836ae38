"""``python -m adamax_cy.bench``: the benchmark on its own."""

import sys

from .runner import main

if __name__ == "__main__":
    sys.exit(main())
