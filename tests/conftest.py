"""Hypothesis profiles and a printed seed, so any failure can be replayed.

``CI=true`` selects the ``ci`` profile; ``HYPOTHESIS_PROFILE`` picks another.
Every run prints its seed; pass ``--hypothesis-seed=N`` to replay it.
The header also says which adamax_cy is tested: ``python -m pytest`` from an
unbuilt checkout tests the installed package rather than the source folder.
"""

import os
import secrets
import sys

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


def _import_the_package_under_test() -> None:
    # `python -m pytest` puts the current folder first on sys.path; from the
    # root of an unbuilt checkout, the source folder would hide the installed
    # package (adamax_cy/_source_check.py says so with its path): drop it.
    try:
        import adamax_cy  # noqa: F401
    except ImportError as error:
        if error.name != "adamax_cy" or not os.path.isdir(error.path or ""):
            raise
        root = os.path.dirname(error.path)
        kept = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
        if kept == sys.path:
            raise
        sys.path[:] = kept
        try:
            import adamax_cy  # noqa: F401, F811
        except ImportError:
            pytest.exit(str(error), returncode=pytest.ExitCode.USAGE_ERROR)


def _keep_subprocesses_off_the_source_folder() -> None:
    # The tests' own subprocesses (``python -c ...``) put the current folder
    # first on their sys.path: from the root of a checkout whose source folder
    # is not the package under test, Python 3.11+ leaves it out with
    # PYTHONSAFEPATH; older versions run the tests from another folder.
    import adamax_cy

    here = os.path.join(os.getcwd(), "adamax_cy")
    tested = os.path.dirname(os.path.abspath(adamax_cy.__file__))
    if os.path.isdir(here) and os.path.realpath(here) != os.path.realpath(tested):
        os.environ["PYTHONSAFEPATH"] = "1"
        if sys.version_info < (3, 11):
            import tempfile

            os.chdir(tempfile.gettempdir())


_import_the_package_under_test()
_keep_subprocesses_off_the_source_folder()

settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(secrets.randbelow(2**32))


def pytest_report_header(config: pytest.Config) -> list[str]:
    seed = config.getoption("hypothesis_seed")
    profile = settings._current_profile
    import adamax_cy

    return [
        f"adamax_cy {adamax_cy.__version__} from {os.path.dirname(adamax_cy.__file__)}",
        f"hypothesis profile {profile!r}, seed {seed} (replay: pytest --hypothesis-seed={seed})",
    ]
