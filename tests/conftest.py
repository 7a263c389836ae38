"""Hypothesis profiles and a printed seed, so any failure can be replayed.

``CI=true`` selects the ``ci`` profile; ``HYPOTHESIS_PROFILE`` picks another.
Every run prints its seed; pass ``--hypothesis-seed=N`` to replay it.
"""

import os
import secrets

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", parent=settings.get_profile("ci"), max_examples=60)
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=2000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(secrets.randbelow(2**32))


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("hypothesis_seed")
    profile = settings._current_profile
    return f"hypothesis profile {profile!r}, seed {seed} (replay: pytest --hypothesis-seed={seed})"
