"""The ``adamax_conformance`` pytest fixture (``pytest_plugins = ["adamax_cy.testing"]``)."""

from __future__ import annotations

from typing import Any, Callable

from ._harness import assert_conforms
from ._report import ConformanceReport

try:  # the fixture is defined only where pytest is installed
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def adamax_conformance(request: Any) -> Callable[..., ConformanceReport]:
        """:func:`assert_conforms`, seeded from ``--hypothesis-seed`` when given.

        Enable with ``pytest_plugins = ["adamax_cy.testing"]`` in ``conftest.py``.
        """
        option = request.config.getoption("hypothesis_seed", None)

        def check(step_fn: Any, **kwargs: Any) -> ConformanceReport:
            if option is not None and "seed" not in kwargs:
                kwargs["seed"] = int(option)
            return assert_conforms(step_fn, **kwargs)

        return check
