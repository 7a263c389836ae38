"""The command line: ``adamax-cy`` and ``python -m adamax_cy``.

With no command it does the main job: the specification's worked examples
through the compiled kernel beside the reference, then a short training run
with :class:`adamax_cy.Adamax`. Commands, one module each:

``examples``  the worked examples (``--trace`` shows every intermediate)
``demo``      the training demonstration, with its options
``info``      the build: version, OpenMP, threads, compiler flags
``bench``     the benchmark (from :mod:`adamax_cy.bench`)
``vectors``   the test vectors, JSON for implementations in any language
``conform``   conformance of anyone's Adamax to the specification (a Python
              step, or a program in any language with ``--exec``)
``frameworks`` how the installed frameworks conform (the report of
              :mod:`adamax_cy.testing.frameworks`)

:mod:`.app` holds the parser and :func:`main`; :mod:`.render` the output;
:mod:`.arguments` what the commands share about their arguments. Tables and
progress use `rich <https://rich.readthedocs.io>`_ when it is installed
(``pip install ".[cli]"`` from a checkout) and plain text otherwise. Every
refusal is one line on standard error and exit status 2. Nothing here is
imported by ``import adamax_cy``.
"""

from .app import main

__all__ = ["main"]
