"""Packaging: the installed distribution, the built artifacts, a checkout's root.

The artifact tests read the sdist and the wheel in the folder named by
``ADAMAX_CY_DIST`` (``python -m build`` writes them to ``dist/``) and skip
without it; CI sets it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile

import pytest

import adamax_cy

PACKAGE = pathlib.Path(adamax_cy.__file__).parent
ROOT = pathlib.Path(__file__).resolve().parents[1]
DIST = os.environ.get("ADAMAX_CY_DIST")
SOURCES = (".pyx", ".pxd", ".pxi", ".c")


def _compiled_modules(names):
    """The compiled module names (``adamax_cy._kernel``...) among file names."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    found = set()
    for name in names:
        for suffix in suffixes:
            if name.endswith(suffix):
                found.add(name[: -len(suffix)])
                break
    return found


def _installed():
    """The installed distribution the imported package came from, or skip."""
    # Only an install from a wheel records the package's files (an editable
    # install records a path hook, a build in place nothing; pip leaves an
    # .egg-info folder in the checkout, which python -m puts on sys.path).
    for dist in importlib.metadata.distributions(name="adamax_cy"):
        if dist.read_text("RECORD") and any(
            str(f) == "adamax_cy/__init__.py"
            and pathlib.Path(f.locate()).resolve() == (PACKAGE / "__init__.py").resolve()
            for f in dist.files or []
        ):
            return dist
    pytest.skip("the imported adamax_cy is not installed from a wheel")


# -- a checkout's root ------------------------------------------------------


def _unbuilt_checkout(tmp_path: pathlib.Path) -> pathlib.Path:
    """A folder laid out like a fresh clone's root: sources, no compiled modules."""
    folder = tmp_path / "adamax_cy"
    folder.mkdir()
    for source in PACKAGE.glob("*.py"):
        shutil.copy(source, folder)
    (folder / "_kernel.pyx").write_text("# the kernel's Cython source\n")
    return folder


def _editable() -> bool:
    return any(
        json.loads(direct_url).get("dir_info", {}).get("editable", False)
        for dist in importlib.metadata.distributions(name="adamax_cy")
        if (direct_url := dist.read_text("direct_url.json"))
    )


# An editable install's import hook finds the compiled modules of its own
# checkout for any folder named adamax_cy, so no folder there is unbuilt.
needs_non_editable = pytest.mark.skipif(
    _editable(), reason="adamax_cy is an editable install: every checkout folder imports"
)


def _run(cwd, *args):
    # As a person runs it: the current folder first on sys.path (the test
    # session may have set PYTHONSAFEPATH for its other subprocesses).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


@needs_non_editable
def test_import_from_an_unbuilt_source_folder_says_so(tmp_path):
    folder = _unbuilt_checkout(tmp_path)
    out = _run(tmp_path, "-c", "import adamax_cy")
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ImportError: adamax_cy: imported from the source folder {folder},")
    assert 'pip install -e ".[test]"' in last


@needs_non_editable
def test_python_m_from_an_unbuilt_source_folder_says_so_in_one_line(tmp_path):
    folder = _unbuilt_checkout(tmp_path)
    out = _run(tmp_path, "-m", "adamax_cy", "info")
    assert out.returncode != 0
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"the source folder {folder}," in lines[0]


@needs_non_editable
def test_python_m_pytest_from_an_unbuilt_checkout_tests_the_installed_package(tmp_path):
    folder = _unbuilt_checkout(tmp_path)
    (tmp_path / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "tests")
    (tmp_path / "tests" / "test_where.py").write_text(
        "import pathlib, adamax_cy\n"
        "def test_where():\n"
        f"    assert pathlib.Path(adamax_cy.__file__).parent != pathlib.Path({str(folder)!r})\n"
    )
    out = _run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


@needs_non_editable
def test_docs_conf_from_an_unbuilt_checkout_imports_the_installed_package(tmp_path):
    # What `python -m sphinx ... docs ...` runs first from the checkout's root.
    if not (ROOT / "docs" / "conf.py").exists():
        pytest.skip("needs the docs' sources (these tests run outside the checkout)")
    folder = _unbuilt_checkout(tmp_path)
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "conf.py", tmp_path / "docs")
    code = (
        "import os, runpy, sys; sys.path.insert(0, os.getcwd()); os.chdir('docs')\n"
        "try:\n    runpy.run_path('conf.py')\nexcept Exception as e:\n"
        "    if 'source folder' in str(e): raise\n"  # a later import may need the docs extra
        "import adamax_cy, pathlib\n"
        f"assert pathlib.Path(adamax_cy.__file__).parent != pathlib.Path({str(folder)!r})\n"
    )
    out = _run(tmp_path, "-c", code)
    assert out.returncode == 0, out.stderr


# -- the installed distribution ---------------------------------------------


def test_metadata_states_licence_authors_and_classifiers():
    meta = _installed().metadata
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Author"] or meta["Author-email"]
    classifiers = meta.get_all("Classifier")
    for prefix in ("Development Status :: ", "Operating System :: ", "Typing :: Typed"):
        assert any(c.startswith(prefix) for c in classifiers), prefix
    # Every Python version classified is allowed by Requires-Python, the
    # lowest allowed is classified, and the versions run without a gap.
    lowest = tuple(map(int, re.fullmatch(r">=(\d+)\.(\d+)", meta["Requires-Python"]).groups()))
    minors = sorted(
        int(m.group(1))
        for c in classifiers
        if (m := re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c))
    )
    assert minors[0] == lowest[1] and lowest[0] == 3
    assert minors == list(range(minors[0], minors[-1] + 1))


def test_licence_is_installed_with_the_metadata():
    dist = _installed()
    licence = [f for f in dist.files if f.name == "LICENSE"]
    assert len(licence) == 1 and ".dist-info" in str(licence[0])
    assert "BSD 3-Clause" in licence[0].read_text()


def test_installed_files_are_what_runs():
    files = [str(f) for f in _installed().files if str(f).startswith("adamax_cy/")]
    assert not [f for f in files if f.endswith(SOURCES)]
    assert "adamax_cy/py.typed" in files
    compiled = _compiled_modules(files)
    assert "adamax_cy/_kernel" in compiled
    stubs = {f[: -len(".pyi")] for f in files if f.endswith(".pyi")}
    assert stubs == compiled


def _elf_sections(path: pathlib.Path) -> list[str]:
    """Section names of a 64-bit little-endian ELF file."""
    data = path.read_bytes()
    assert data[:6] == b"\x7fELF\x02\x01", "not a 64-bit little-endian ELF file"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    return [
        data[names_at + h[0]: data.index(b"\0", names_at + h[0])].decode() for h in headers
    ]


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and sys.maxsize > 2**32 and sys.byteorder == "little"),
    reason="reads 64-bit little-endian ELF files",
)
def test_compiled_modules_carry_no_debug_information_or_symbol_table():
    if os.environ.get("ADAMAX_CY_DEBUG") == "1":
        pytest.skip("a debug build keeps its debug information")
    modules = [p for p in PACKAGE.iterdir() if p.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))]
    assert modules
    for module in modules:
        sections = _elf_sections(module)
        assert ".text" in sections, module.name
        kept = [s for s in sections if s == ".symtab" or s.startswith(".debug")]
        assert not kept, f"{module.name}: {kept}"


# -- the artifacts ----------------------------------------------------------


def _artifact(pattern: str) -> pathlib.Path:
    if not DIST:
        pytest.skip("ADAMAX_CY_DIST names no folder of built artifacts")
    found = sorted(pathlib.Path(DIST).glob(pattern))
    assert len(found) == 1, f"{pattern} in {DIST}: {found}"
    return found[0]


def _sdist_names() -> set[str]:
    with tarfile.open(_artifact("adamax_cy-*.tar.gz")) as tar:
        return {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}


def _wheel_names() -> list[str]:
    with zipfile.ZipFile(_artifact("adamax_cy-*.whl")) as wheel:
        return wheel.namelist()


def test_sdist_holds_sources_tests_docs_and_licence():
    names = _sdist_names()
    for name in ("LICENSE", "README.md", "CONTRIBUTING.md", "pyproject.toml", "setup.py",
                 "adamax_cy/_kernel.pyx", "reference/adamax.py", "tests/conftest.py",
                 "tests/contract.py", "tests/strategies.py", "docs/conf.py",
                 "docs/changelog.rst"):
        assert name in names, name
    assert "tests/consumers/adamax_vectors.c" in names  # a test's own C source
    # No generated C and nothing compiled.
    assert not [n for n in names if n.endswith((".so", ".pyd", ".pyc"))
                or (n.startswith("adamax_cy/") and n.endswith(".c"))]


def test_sdist_holds_every_tracked_file_but_the_ci_script():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    expected = {n for n in tracked if not n.startswith((".ci/", ".git"))}
    assert expected - _sdist_names() == set()


def test_wheel_holds_no_sources_and_a_stub_per_compiled_module():
    names = _wheel_names()
    package = [n for n in names if n.startswith("adamax_cy/")]
    assert not [n for n in package if n.endswith(SOURCES)]
    assert "adamax_cy/py.typed" in package
    stubs = {n[: -len(".pyi")] for n in package if n.endswith(".pyi")}
    assert stubs == _compiled_modules(package) and stubs
    assert [n for n in names if re.fullmatch(r"adamax_cy-[^/]+\.dist-info/licenses/LICENSE", n)]


def test_wheel_holds_every_module_of_the_sources():
    names = set(_wheel_names())
    sdist = _sdist_names()
    modules = {n for n in sdist if n.startswith("adamax_cy/") and n.endswith(".py")}
    modules |= {"adamax_cy/reference/" + n[len("reference/"):]
                for n in sdist if n.startswith("reference/") and n.endswith(".py")}
    assert modules - names == set()
