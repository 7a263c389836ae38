"""The package as installed: layout, stub, and the reference's independence."""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import subprocess
import sys

import pytest

import adamax_cy
import adamax_cy.reference


def test_stub_matches_the_compiled_module(tmp_path):
    # Run outside the checkout, so the installed package is the one checked.
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "adamax_cy._kernel"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_type_checks():
    # The annotations and the stub agree with how the code uses them.
    root = pathlib.Path(__file__).resolve().parents[1]
    if not (root / "adamax_cy" / "__init__.py").is_file():
        pytest.skip("the tests run apart from the sources, which are what mypy checks")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "adamax_cy"], capture_output=True, text=True, cwd=root,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_kernel_is_compiled():
    from adamax_cy import _kernel

    assert pathlib.Path(_kernel.__file__).suffix in {".so", ".pyd"}


def test_reference_is_a_subpackage_not_a_top_level_package():
    assert adamax_cy.reference.__name__ == "adamax_cy.reference"
    spec = importlib.util.find_spec("reference")
    if spec is not None:  # a checkout on sys.path may hold the source folder
        assert pathlib.Path(spec.origin).parent.name == "reference"
        assert "site-packages" not in str(spec.origin)


def test_reference_never_imports_the_product():
    folder = pathlib.Path(adamax_cy.reference.__file__).parent
    for source in folder.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level >= 1 or not (node.module or "").startswith("adamax_cy"), source
                assert node.level <= 1, f"{source.name} imports from outside the reference"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith(("adamax_cy", "numpy")), source


def test_computing_code_never_imports_the_reference():
    folder = pathlib.Path(adamax_cy.__file__).parent
    for name in ("api.py", "_config.py", "_defaults.py"):
        text = (folder / name).read_text()
        assert "reference" not in {
            part for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.ImportFrom) for part in (node.module or "").split(".")
        }, name


def test_show_config_reports_the_build(capsys):
    info = adamax_cy.show_config(as_dict=True)
    assert info["version"] == adamax_cy.__version__
    assert "-ffp-contract=off" in info["compile_flags"]
    assert info["default_threads"] >= 1
    adamax_cy.show_config()
    assert "openmp" in capsys.readouterr().out
