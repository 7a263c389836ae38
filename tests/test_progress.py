"""Progress of the demo and the benchmark: shown on a terminal, with or without
rich; nothing but the final results when the output is redirected."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

pty = pytest.importorskip("pty", reason="a pseudo-terminal needs a POSIX system")

from test_cli_errors import _SCRIPT  # noqa: E402  (the command line as its console script runs it)

DEMO = ["demo", "--size", "400", "--steps", "40", "--samples", "64"]
BENCH = ["bench", "--smoke", "--only", "floor", "--dtypes", "float32", "--sizes", "1", "--no-many"]
HIDE = {"rich": (), "plain": ("rich",)}


def _on_a_terminal(args, hide, cwd) -> tuple[int, bytes, bytes]:
    """Run with stderr on a pseudo-terminal; return (status, stdout, what the terminal got)."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, ",".join(hide), *args],
        stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL, cwd=cwd, env=env,
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        out = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    return proc.returncode, out, shown


@pytest.mark.parametrize("mode", ["rich", "plain"])
@pytest.mark.parametrize("args, label", [(DEMO, b"training"), (BENCH, b"benchmark")],
                         ids=["demo", "bench"])
def test_progress_is_shown_on_a_terminal(args, label, mode, tmp_path):
    if mode == "rich":
        pytest.importorskip("rich")
    status, out, shown = _on_a_terminal(args, HIDE[mode], tmp_path)
    assert status == 0, shown.decode(errors="replace")
    assert label in shown
    # The results go to standard output, without progress frames.
    assert out and b"\r" not in out and b"\x1b" not in out


@pytest.mark.parametrize("mode", ["rich", "plain"])
@pytest.mark.parametrize("args", [DEMO, DEMO + ["--json"], BENCH], ids=["demo", "demo-json", "bench"])
def test_redirected_output_gets_only_the_results(args, mode, tmp_path):
    if mode == "rich":
        pytest.importorskip("rich")
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, ",".join(HIDE[mode]), *args],
        capture_output=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert proc.stdout and b"\r" not in proc.stdout and b"\x1b" not in proc.stdout
