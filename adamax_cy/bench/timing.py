"""The timing harness: calibrated batches, implementations in turn, summaries."""

from __future__ import annotations

import gc
import statistics
import timeit
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .. import _kernel
from ..api import adamax_step_inplace
from .baselines import BASELINES, FLOOR, STEP, state


@dataclass
class Timing:
    implementation: str
    dtype: str
    n: int
    median_s: float
    q1_s: float
    q3_s: float
    min_s: float
    max_s: float
    spread: float  # (q3 - q1) / median
    calls_per_batch: int
    batches: int
    gbps: float
    floor_pct: float | None = None
    speedup: dict[str, float] = field(default_factory=dict)


def calibrate(timer: timeit.Timer, batch_seconds: float) -> int:
    """Calls per batch so that one batch lasts about ``batch_seconds``."""
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= batch_seconds / 4 or number >= 1 << 24:
            return max(1, round(number * batch_seconds / max(elapsed, 1e-9)))
        number *= 4 if elapsed < batch_seconds / 40 else 2


def summarise(name: str, dtype: str, n: int, per_call: list[float], number: int) -> Timing:
    q1, median, q3 = statistics.quantiles(per_call, n=4, method="inclusive") \
        if len(per_call) > 1 else (per_call[0],) * 3
    median = statistics.median(per_call)
    nbytes = 7 * np.dtype(dtype).itemsize * n
    return Timing(
        implementation=name, dtype=dtype, n=n, median_s=median, q1_s=q1, q3_s=q3,
        min_s=min(per_call), max_s=max(per_call), spread=(q3 - q1) / median,
        calls_per_batch=number, batches=len(per_call), gbps=nbytes / median / 1e9,
    )


def time_interleaved(
    named_timers: list[tuple[str, timeit.Timer]], batches: int, batch_seconds: float,
    progress: Any,
) -> dict[str, tuple[list[float], int]]:
    """Per-call seconds of each batch, implementations in turn (A B C A B C ...)."""
    numbers = {}
    for name, timer in named_timers:
        timer.timeit(1)  # warm up (first-touch, lazy initialisation)
        numbers[name] = calibrate(timer, batch_seconds)
    samples: dict[str, list[float]] = {name: [] for name, _ in named_timers}
    gc.collect()
    for _ in range(batches):
        for name, timer in named_timers:
            samples[name].append(timer.timeit(numbers[name]) / numbers[name])
        progress.advance()
    return {name: (samples[name], numbers[name]) for name, _ in named_timers}


def add_ratios(timings: list[Timing]) -> None:
    """Percent of the floor's bandwidth and speed-ups over the baselines."""
    by = {t.implementation: t for t in timings}
    floor = by.get(FLOOR)
    for t in timings:
        if floor is not None:
            t.floor_pct = 100.0 * floor.median_s / t.median_s
        t.speedup = {b: by[b].median_s / t.median_s for b in BASELINES if b in by}


def allocation_per_step(n: int, dtype: str, steps: int = 20, step: Any = None) -> int:
    """Peak bytes traced by ``tracemalloc`` over ``steps`` calls of
    ``step(param, grad, m, u, t)`` (default: :func:`adamax_step_inplace`) on
    ``n`` elements, after one untraced call for lazy initialisation."""
    step = adamax_step_inplace if step is None else step
    p, g, m, u = state(n, dtype)
    step(p, g, m, u, STEP)
    calls = iter(range(STEP + 1, STEP + 1 + steps))  # made before tracing starts
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        for t in calls:
            step(p, g, m, u, t)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


THRESHOLD_SIZES = tuple(int(4096 * 2 ** (k / 2)) for k in range(13))  # 4,096 ... 262,144


def measure_threshold(dtypes: Sequence[str], batches: int, batch_seconds: float,
                      progress: Any) -> dict[str, Any]:
    """One thread against all threads around the serial threshold, threads forced on.

    For each dtype, the smallest size from which all threads are faster than
    one at every larger size measured, judged on the lower quartile of the
    batches (the batches least disturbed by other work on the machine).
    """
    previous = _kernel.set_serial_threshold(0)
    out: dict[str, Any] = {"sizes": list(THRESHOLD_SIZES), "dtypes": {}}
    try:
        for dtype in dtypes:
            rows = []
            for n in THRESHOLD_SIZES:
                progress.describe(f"threshold {dtype} n={n}")
                p, g, m, u = state(n, dtype)
                # All threads asked for explicitly: the adaptive default might pick one.
                ns = {"step": adamax_step_inplace, "p": p, "g": g, "m": m, "u": u, "t": STEP,
                      "all": max(2, _kernel.max_threads())}
                named = [("one", timeit.Timer("step(p, g, m, u, t, num_threads=1)", globals=ns)),
                         ("all", timeit.Timer("step(p, g, m, u, t, num_threads=all)",
                                              globals=ns))]
                samples = time_interleaved(named, batches, batch_seconds, progress)
                one, all_ = (summarise(k, dtype, n, *samples[k]) for k in ("one", "all"))
                rows.append({"n": n, "one_thread_q1_s": one.q1_s, "all_threads_q1_s": all_.q1_s,
                             "one_thread_median_s": one.median_s,
                             "all_threads_median_s": all_.median_s,
                             "ratio_q1": all_.q1_s / one.q1_s})
            crossover = None
            for row in reversed(rows):
                if row["ratio_q1"] >= 1:
                    break
                crossover = row["n"]
            out["dtypes"][dtype] = {"rows": rows, "crossover": crossover}
    finally:
        _kernel.set_serial_threshold(previous)
    return out


def time_step(
    shapes: Sequence[int | tuple[int, ...]],
    *,
    dtype: Any = None,
    number: int = 20,
    repeat: int = 5,
    num_threads: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Seconds per ``step()`` of :class:`adamax_cy.torch.Adamax` and of ``torch.optim.Adamax``.

    Each optimizer gets its own parameters of the given shapes, with fixed
    random gradients, and one untimed step; then ``step()`` is timed
    ``number`` times in each of ``repeat`` rounds, and the fastest round
    counts (as :func:`timeit.repeat` advises). Needs torch.

    Parameters
    ----------
    shapes : sequence of int or tuple of int
        One parameter tensor per shape, e.g. ``[(1_000_000,)]`` or
        ``[(1000,)] * 200``.
    dtype : torch.dtype, optional
        ``torch.float32`` (the default) or ``torch.float64``.
    number, repeat : int, optional
        Steps per round and rounds.
    num_threads : int or None, optional
        Passed to adamax_cy's Adamax (torch uses ``torch.get_num_threads()``).
    seed : int, optional
        Seed of the parameters and gradients.

    Returns
    -------
    dict
        Seconds per step for ``"adamax_cy"``, ``"torch"`` (for-loop) and
        ``"torch_foreach"``.

    Examples
    --------
    >>> times = time_step([(10,)] * 3, number=2, repeat=2)
    >>> sorted(times)
    ['adamax_cy', 'torch', 'torch_foreach']
    """
    import torch

    from ..torch import Adamax

    dtype = torch.float32 if dtype is None else dtype
    makers: dict[str, Callable[[list[Any]], Any]] = {
        "adamax_cy": lambda ps: Adamax(ps, num_threads=num_threads),
        "torch": lambda ps: torch.optim.Adamax(ps, foreach=False),
        "torch_foreach": lambda ps: torch.optim.Adamax(ps, foreach=True),
    }
    times = {}
    for name, make in makers.items():
        gen = torch.Generator().manual_seed(seed)
        params = [torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=dtype)) for shape in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype)
        opt = make(params)
        opt.step()
        times[name] = min(timeit.repeat(opt.step, number=number, repeat=repeat)) / number
    return times
