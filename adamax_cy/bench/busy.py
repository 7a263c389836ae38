"""The busy-machine scenario: the default threads against one thread while
other processes keep cores busy.

A parallel step waits for its slowest thread; on a machine whose cores are
busy with other work, that can be a scheduler time slice. The scenario
starts N busy-loop processes (:func:`busy_cores`), then times single calls
of the in-place step in alternating blocks (default threads, one thread,
all threads explicitly) and reports the mean and the 90th percentile of the
time per call, as a training loop pays it. The adaptive default starts
from nothing in each scenario: what it learns is part of what is timed.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Iterator, Sequence

from .. import _kernel
from ..api import adamax_step_inplace
from .baselines import STEP, state

DEFAULT = "default threads"
ONE = "1 thread"
ALL = "all threads (explicit)"

# A busy loop that stops by itself: after ``limit`` seconds, or as soon as
# the process that started it is gone (killed without a chance to clean up).
_LOOP = """\
import os, sys, time
parent, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
print("ready", flush=True)
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(20000):
        pass
"""


@contextlib.contextmanager
def busy_cores(n: int, limit: float = 900.0) -> Iterator[list[subprocess.Popen[str]]]:
    """``n`` busy-loop processes for the duration of the ``with`` block.

    They are stopped when the block ends, also by an exception or Ctrl-C;
    each also stops by itself after ``limit`` seconds or when this process
    is gone.
    """
    procs: list[subprocess.Popen[str]] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", _LOOP, str(os.getpid()), str(limit)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True))
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a busy-loop process did not start")
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_calls(n: int, dtype: str, seconds: float, block_seconds: float = 0.02,
               progress: Any = None) -> dict[str, list[float]]:
    """Seconds of every call of the in-place step on ``n`` elements, in
    alternating blocks of about ``block_seconds`` per way of threading, for
    about ``seconds`` per way."""
    p, g, m, u = state(n, dtype)
    threads = max(2, _kernel.max_threads())
    ways = {DEFAULT: None, ONE: 1, ALL: threads}
    clock = time.perf_counter
    for num_threads in ways.values():  # first touch
        adamax_step_inplace(p, g, m, u, STEP, num_threads=num_threads)
    _kernel.policy_reset()
    start = clock()
    adamax_step_inplace(p, g, m, u, STEP, num_threads=1)
    per_block = max(1, int(block_seconds / max(clock() - start, 1e-7)))
    times: dict[str, list[float]] = {name: [] for name in ways}
    spent = dict.fromkeys(ways, 0.0)
    # After a block on all threads the OpenMP threads spin for a while, taking
    # a core from whatever comes next: the default and one thread take turns
    # to come next.
    orders = ((DEFAULT, ONE, ALL), (ONE, DEFAULT, ALL))
    rounds = 0
    while min(spent.values()) < seconds:
        for name in orders[rounds % 2]:
            num_threads = ways[name]
            calls = times[name]
            for _ in range(per_block):
                t0 = clock()
                adamax_step_inplace(p, g, m, u, STEP, num_threads=num_threads)
                calls.append(clock() - t0)
            spent[name] += sum(calls[-per_block:])
        rounds += 1
        if progress is not None:
            progress.describe(f"busy: {dtype} n={n}")
    return times


def measure_busy(counts: Sequence[int], sizes: Sequence[int], dtype: str, seconds: float,
                 progress: Any = None) -> list[dict[str, Any]]:
    """For each number of busy cores (0: quiet) and size, the mean and 90th
    percentile of the time per call of each way of threading."""
    rows = []
    adaptive = _kernel.set_adaptive(True)
    try:
        for count in counts:
            with busy_cores(count):
                for n in sizes:
                    times = time_calls(n, dtype, seconds, progress=progress)
                    entry: dict[str, Any] = {"busy": count, "dtype": dtype, "n": n,
                                             "policy": _kernel.policy_state()}
                    for name, calls in times.items():
                        entry[name] = {"mean_s": statistics.fmean(calls),
                                       "p90_s": _percentile(calls, 0.9), "calls": len(calls)}
                    entry["ratio"] = entry[DEFAULT]["mean_s"] / entry[ONE]["mean_s"]
                    rows.append(entry)
                    if progress is not None:
                        progress.advance()
    finally:
        _kernel.set_adaptive(adaptive)
        _kernel.policy_reset()
    return rows
