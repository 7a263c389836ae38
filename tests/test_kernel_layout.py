"""The compiled core knows numbers only; the PyTorch table is an extension above it."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import adamax_cy

PACKAGE = pathlib.Path(adamax_cy.__file__).parent


def core_sources() -> list[pathlib.Path]:
    return sorted(PACKAGE.glob("_kernel*.pyx")) + sorted(PACKAGE.glob("_kernel*.pxi")) + sorted(
        PACKAGE.glob("_kernel*.pxd"))


def test_the_core_sources_are_shipped():
    names = {p.name for p in core_sources()}
    assert {"_kernel.pyx", "_kernel.pxd"} <= names
    assert len(names) > 3  # the hub and its includes


def test_the_core_mentions_neither_torch_nor_dlpack():
    # "torch" alone is also the name of a numerical convention; the library,
    # its table, its state keys and DLPack must not appear.
    forbidden = re.compile(
        r"dlpack|TensorTable|_tensor_table|exp_avg|exp_inf|import torch|torch\.|adamax_cy\.torch",
        re.IGNORECASE)
    for source in core_sources():
        for number, line in enumerate(source.read_text().splitlines(), 1):
            assert not forbidden.search(line), f"{source.name}:{number}: {line.strip()}"


def test_the_table_extension_cimports_the_core():
    text = (PACKAGE / "_tensor_table.pyx").read_text()
    assert "from adamax_cy._kernel cimport" in text
    assert "import torch" not in text


def test_no_compiled_source_is_too_long():
    for source in [*core_sources(), PACKAGE / "_tensor_table.pyx"]:
        assert len(source.read_text().splitlines()) <= 700, source.name


def test_table_stub_matches_the_compiled_module(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "adamax_cy._tensor_table"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
