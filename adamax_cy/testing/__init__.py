"""Conformance testing for anyone's Adamax step, against :mod:`adamax_cy.reference`.

Hand :func:`check_conformance` an Adamax step (a function, an in-place
function or a ``torch.optim``-style optimizer class) and it runs the spec's
worked examples, then hypothesis-generated cases (scalars, arrays, multi-step
trajectories, special values, the hyperparameter ranges), comparing every
output with the reference. A failure is shrunk to the smallest failing case
and reported with the expected and actual ``(θ, m, u)`` and the formula whose
output first differs:

- ``m``: formula 1, ``m_t = β1·m + (1 − β1)·g``;
- ``u``: formula 2, ``u_t = max(β2·u, |g|)`` (``|g| + ε`` for ``"torch"``);
- ``θ``: formula 3, ``θ_t = θ − (α / (u_t + ε))·m_t / (1 − β1^t)``
  (denominator ``u_t`` for ``"torch"``).

Every step is compared from the state the implementation itself produced
(lockstep), so a difference is caught at the step and in the formula where it
arises instead of after it has spread.

Tolerances are stated in ulps of the dtype under test (:class:`Tolerance`);
the default, :data:`TOLERANCES`, is the arithmetic contract of ``adamax_cy``
(``m`` and ``u`` bitwise, ``θ`` within ``1·ulp(θ) + 4·ulp(update)``, with the
allowances for subnormal and overflowing intermediates and the rules for
non-finite values that the contract page states). They are widened only when
the caller asks, and the report says so.

The package's modules: ``_cases`` (the worked examples, edge cases and the
hypothesis strategy), ``_adapters`` (how an implementation is called),
``_harness`` (the lockstep run and :func:`check_conformance`), ``_report``
(mismatches and verdicts), ``_tolerances`` and ``_plugin`` (the pytest
fixture). The comparison itself is ``adamax_cy._contract``.

This module needs hypothesis (``pip install "adamax_cy[testing]"``);
``import adamax_cy`` does not import it. In a pytest suite, conformance takes
three lines::

    pytest_plugins = ["adamax_cy.testing"]          # in conftest.py

    def test_my_adamax(adamax_conformance):
        adamax_conformance(my_adamax, convention="torch")

From the shell: ``python -m adamax_cy conform package.module:function``.

For implementations in other languages: :func:`generate_test_vectors`
(``adamax-cy vectors``) and ``adamax-cy conform --exec "COMMAND"``; how the
installed frameworks conform: ``adamax_cy.testing.frameworks``
(``adamax-cy frameworks``).
"""

from __future__ import annotations

from .._vectors import generate_test_vectors, load_test_vectors, write_test_vectors
from . import _plugin
from ._adapters import Adapter, UnsupportedCase, functional, in_place, optimizer
from ._cases import DTYPES, OPTIONS, Case, cases
from ._harness import assert_conforms, check_conformance
from ._report import ConformanceReport, Mismatch
from ._tolerances import TOLERANCES, TORCH_TOLERANCES, Tolerance

if _plugin.pytest is not None:
    from ._plugin import adamax_conformance

__all__ = [
    "DTYPES",
    "OPTIONS",
    "TOLERANCES",
    "TORCH_TOLERANCES",
    "Adapter",
    "Case",
    "ConformanceReport",
    "Mismatch",
    "Tolerance",
    "adamax_conformance",
    "assert_conforms",
    "cases",
    "check_conformance",
    "functional",
    "generate_test_vectors",
    "in_place",
    "load_test_vectors",
    "optimizer",
    "write_test_vectors",
]
