"""The layout the architecture page describes, held to the code.

Each source file of the package is named on ``docs/architecture.rst`` and every
file the page names exists; no file is over 700 lines and no class over 400
lines of code (docstrings apart); the compiled core knows nothing of torch;
no file cites a document that readers do not have. Needs the source tree
(skipped when the tests run outside it, against an installed wheel).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "adamax_cy"
PAGE = ROOT / "docs" / "architecture.rst"
SOURCE_SUFFIXES = (".py", ".pyx", ".pxi", ".pxd")
MAX_FILE_LINES = 700
MAX_CLASS_LINES = 400

pytestmark = pytest.mark.skipif(
    not (PACKAGE / "_kernel.pyx").exists() or not PAGE.exists(),
    reason="needs the source tree (these tests run outside it against an installed wheel)",
)


def sources() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE.rglob("*")
        if p.suffix in SOURCE_SUFFIXES
        and "reference" not in p.relative_to(PACKAGE).parts  # a link to reference/ in a checkout
        and p.name not in ("__init__.py", "__main__.py", "_version.py")
    )


def test_every_source_file_is_on_the_architecture_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    loops = re.compile(r"_loops_\w+\.pyx")  # named once on the page as _loops_<level>.pyx
    missing = [
        str(p.relative_to(ROOT))
        for p in sources()
        if p.name not in page and f"``{p.stem}``" not in page and not loops.fullmatch(p.name)
    ]
    assert missing == [], f"not on docs/architecture.rst: {missing}"


def test_every_file_the_architecture_page_names_exists() -> None:
    page = PAGE.read_text(encoding="utf-8")
    named = set(re.findall(r"``([\w/<>.]+\.(?:py|pyx|pxi|pxd|toml))``", page))
    names = {p.name for p in ROOT.rglob("*") if ".git" not in p.parts}
    gone = [
        n for n in sorted(named)
        if "<" not in n and not (ROOT / n).exists() and not (PACKAGE / n).exists() and n not in names
    ]
    assert gone == [], f"docs/architecture.rst names files that do not exist: {gone}"


def test_no_file_is_a_room_with_many_jobs() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES
    }
    assert long == {}, f"files over {MAX_FILE_LINES} lines: {long}"


def _code_lines(node: ast.ClassDef) -> int:
    """Lines of a class, less the lines of its docstrings and its methods' docstrings."""
    total = node.end_lineno - node.lineno + 1  # type: ignore[operator]
    for inner in ast.walk(node):
        if isinstance(inner, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = inner.body[0] if inner.body else None
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
                total -= doc.end_lineno - doc.lineno + 1  # type: ignore[operator]
    return total


def test_no_class_is_over_its_limit() -> None:
    big = {}
    for p in sources():
        if p.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and (n := _code_lines(node)) > MAX_CLASS_LINES:
                big[f"{p.relative_to(ROOT)}:{node.name}"] = n
    assert big == {}, f"classes over {MAX_CLASS_LINES} lines of code: {big}"


def test_the_compiled_core_knows_nothing_of_torch() -> None:
    core = [PACKAGE / "_kernel.pyx", PACKAGE / "_kernel.pxd", *PACKAGE.glob("_kernel_*.pxi"), PACKAGE / "_loops.pxi"]
    mentions = [
        str(p.relative_to(ROOT))
        for p in core
        # "torch" alone is also the name of a convention (eps inside the max).
        if re.search(r"pytorch|import torch|torch\.|adamax_cy\.torch|_tensor_table|dlpack|DLTensor|exp_avg|exp_inf|TensorTable", p.read_text(encoding="utf-8"), re.IGNORECASE)
    ]
    assert mentions == []


def test_no_file_cites_a_document_readers_do_not_have() -> None:
    tracked = [
        p
        for folder in ("adamax_cy", "reference", "tests", "docs")
        for p in (ROOT / folder).rglob("*")
        if p.is_file()
        and p.suffix in SOURCE_SUFFIXES + (".pyi", ".rst", ".md")
        and "_build" not in p.parts
        and p != Path(__file__)
    ]
    citing = [str(p.relative_to(ROOT)) for p in tracked if re.search(r"\b(SPEC|DESIGN)\.md\b", p.read_text(encoding="utf-8"))]
    assert citing == []
