"""The PyTorch table is an extension above the compiled core, with a true stub.

(That the core itself names no torch, DLPack or state key, and the sizes of
its files, are checked with the rest of the layout in test_architecture.py.)
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

SOURCES = pathlib.Path(__file__).parents[1] / "adamax_cy"


@pytest.mark.skipif(
    not (SOURCES / "_tensor_table.pyx").exists(),
    reason="needs the source tree (these tests run outside it against an installed wheel)",
)
def test_the_table_extension_cimports_the_core():
    text = (SOURCES / "_tensor_table.pyx").read_text()
    assert "from adamax_cy._kernel cimport" in text
    assert "import torch" not in text


def test_table_stub_matches_the_compiled_module(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "adamax_cy._tensor_table"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
