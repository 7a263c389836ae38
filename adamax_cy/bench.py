"""The benchmark: every implementation of the step, timed side by side.

Run ``python -m adamax_cy.bench`` (or ``python -m adamax_cy bench``);
``--quick`` finishes in under a minute. Implementations are timed in turn
(A B C A B C ...) so that drift of a shared machine falls on all of them
alike; each number is the median of several batches of calls.

The **floor** is a compiled loop of this project that moves exactly the
bytes of a step (reads param, grad, m and u; writes param, m and u) with
trivial arithmetic: the practical memory limit of the machine. Effective
bandwidth counts those 7 x itemsize x n bytes for every implementation.

Optional packages: ``tqdm`` (progress bar), ``matplotlib`` (``--plot``),
``torch`` (``torch.optim.Adamax`` as a baseline); ``pip install
"adamax_cy[bench]"`` installs the first two.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import statistics
import sys
import time
import timeit
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from . import _kernel
from ._config import config
from ._defaults import BETA1, BETA2, EPS, LR
from .api import adamax_step_inplace, adamax_step_many

__all__ = ["configure_parser", "run", "main", "numpy_step", "numpy_step_out"]

SIZES = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 4_000_000, 2**24)
QUICK_SIZES = (1, 1_000, 100_000, 2**24)
SMOKE_SIZES = (1, 1_000)
DTYPES = ("float32", "float64")
MANY = (200, 1_000)  # arrays x elements, against one array of arrays * elements
SMOKE_MANY = (4, 100)
# adamax_cy.torch.Adamax against torch.optim.Adamax: (tensors, elements) and the
# speed-up it should reach over the faster of torch's two implementations.
OPTIMIZERS = ((1, 1_000_000, 3.0), (200, 1_000, 10.0))
SMOKE_OPTIMIZERS = ((1, 1_000, 3.0), (4, 100, 10.0))
GRADIENTS = ("kept", "new")  # p.grad the same tensor at every step, or a new one (zero_grad())
ASSIGN = "gradient assignments"  # timed with new gradients, and subtracted
STEP = 3  # any t > 1 will do; the cost does not depend on it

FLOOR = "floor"
FLOOR_1T = "floor 1 thread"
INPLACE = "adamax_step_inplace"
INPLACE_1T = "adamax_step_inplace 1 thread"
NUMPY = "numpy as written"
NUMPY_OUT = "numpy out="
TORCH = "torch foreach=False"
TORCH_FOREACH = "torch foreach=True"
CY_TORCH = "adamax_cy.torch.Adamax"
BASELINES = (NUMPY, NUMPY_OUT, TORCH, TORCH_FOREACH)


def numpy_step(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    u: np.ndarray,
    t: int,
    lr: float = LR,
    beta1: float = BETA1,
    beta2: float = BETA2,
    eps: float = EPS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The step with NumPy, written the way the formulas read (new arrays).

    Examples
    --------
    >>> p, m, u = numpy_step(np.array([1.0]), np.array([0.1]), np.zeros(1), np.zeros(1), 1)
    >>> p.round(6), m.round(6), u
    (array([0.998]), array([0.01]), array([0.1]))
    """
    m = beta1 * m + (1 - beta1) * grad
    u = np.maximum(beta2 * u, np.abs(grad))
    param = param - (lr / (1 - beta1**t)) * m / (u + eps)
    return param, m, u


def numpy_step_out(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    u: np.ndarray,
    t: int,
    scratch: np.ndarray,
    lr: float = LR,
    beta1: float = BETA1,
    beta2: float = BETA2,
    eps: float = EPS,
) -> None:
    """The step with NumPy, in place: ufuncs with ``out=`` and one scratch array.

    Examples
    --------
    >>> p, m, u, s = np.array([1.0]), np.zeros(1), np.zeros(1), np.empty(1)
    >>> numpy_step_out(p, np.array([0.1]), m, u, 1, s)
    >>> p.round(6), m.round(6), u
    (array([0.998]), array([0.01]), array([0.1]))
    """
    m *= beta1
    np.multiply(grad, 1 - beta1, out=scratch)
    m += scratch
    u *= beta2
    np.abs(grad, out=scratch)
    np.maximum(u, scratch, out=u)
    np.add(u, eps, out=scratch)
    np.divide(m, scratch, out=scratch)
    scratch *= lr / (1 - beta1**t)
    param -= scratch


@dataclass
class Case:
    """One implementation ready to run: a statement and its namespace."""

    name: str
    stmt: str
    namespace: dict[str, Any]
    setup: str = "pass"

    def timer(self) -> timeit.Timer:
        return timeit.Timer(self.stmt, self.setup, globals=self.namespace)


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


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _cy_torch() -> Any:
    try:
        from . import torch as cy_torch  # type: ignore[attr-defined]
    except ImportError:
        return None
    return getattr(cy_torch, "Adamax", None)


def state(n: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, ...]:
    """param, grad, m, u for a benchmark of ``n`` elements (finite, non-zero)."""
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(n).astype(dtype)
    grad = rng.standard_normal(n).astype(dtype)
    m = (0.1 * grad).astype(dtype)
    u = np.abs(grad).astype(dtype)
    return param, grad, m, u


def cases(
    arrays: tuple[np.ndarray, ...], wanted: Sequence[str], notes: list[str]
) -> Iterator[Case]:
    """The implementations in ``wanted`` that can run here, on shared arrays."""
    param, grad, m, u = arrays
    base = {"p": param, "g": grad, "m": m, "u": u, "t": STEP}
    if FLOOR in wanted:
        yield Case(FLOOR, "floor(p, g, m, u, 0.0, 0)", {**base, "floor": _kernel.floor})
    if FLOOR_1T in wanted:
        yield Case(FLOOR_1T, "floor(p, g, m, u, 0.0, 1)", {**base, "floor": _kernel.floor})
    if INPLACE in wanted:
        yield Case(INPLACE, "step(p, g, m, u, t)", {**base, "step": adamax_step_inplace})
    if INPLACE_1T in wanted:
        yield Case(INPLACE_1T, "step(p, g, m, u, t, num_threads=1)",
                   {**base, "step": adamax_step_inplace})
    if NUMPY in wanted:
        # Rebinds local names as a user's loop would; the shared arrays stay as they are.
        yield Case(NUMPY, "p, m, u = step(p, g, m, u, t)", {"state": arrays, "step": numpy_step,
                   "t": STEP}, setup="p, g, m, u = state")
    if NUMPY_OUT in wanted:
        yield Case(NUMPY_OUT, "step(p, g, m, u, t, s)",
                   {**base, "s": np.empty_like(param), "step": numpy_step_out})
    torch = _torch() if any(w in wanted for w in (TORCH, TORCH_FOREACH, CY_TORCH)) else None
    if torch is None:
        if any(w in wanted for w in (TORCH, TORCH_FOREACH)):
            note = "torch is not installed: torch.optim.Adamax skipped"
            if note not in notes:
                notes.append(note)
        return
    optimizers = [(TORCH, torch.optim.Adamax, {"foreach": False}),
                  (TORCH_FOREACH, torch.optim.Adamax, {"foreach": True})]
    cy_adamax = _cy_torch() if CY_TORCH in wanted else None
    if cy_adamax is not None:
        optimizers.append((CY_TORCH, cy_adamax, {}))
    elif CY_TORCH in wanted:
        note = "adamax_cy.torch.Adamax is not available: skipped"
        if note not in notes:
            notes.append(note)
    for name, cls, options in optimizers:
        if name not in wanted:
            continue
        tensor = torch.from_numpy(param)  # shares memory: no copy of the big arrays
        tensor.grad = torch.from_numpy(grad)
        optimizer = cls([tensor], lr=LR, betas=(BETA1, BETA2), eps=EPS, **options)
        yield Case(name, "opt.step()", {"opt": optimizer, "keep": tensor})


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
        progress.update(1)
    return {name: (samples[name], numbers[name]) for name, _ in named_timers}


def add_ratios(timings: list[Timing]) -> None:
    """Percent of the floor's bandwidth and speed-ups over the baselines."""
    by = {t.implementation: t for t in timings}
    floor = by.get(FLOOR)
    for t in timings:
        if floor is not None:
            t.floor_pct = 100.0 * floor.median_s / t.median_s
        t.speedup = {b: by[b].median_s / t.median_s for b in BASELINES if b in by}


def many_cases(dtype: str, arrays: int, elements: int) -> list[tuple[str, timeit.Timer]]:
    """adamax_step_many on ``arrays`` arrays against one array of the same total size."""
    quads = [state(elements, dtype, seed) for seed in range(arrays)]
    lists = [list(x) for x in zip(*quads)]
    one = state(arrays * elements, dtype)
    names = (f"adamax_step_many {arrays} x {elements}", f"adamax_step_many 1 x {arrays * elements}",
             f"adamax_step_inplace {arrays * elements}")
    return [
        (names[0], timeit.Timer("many(P, G, M, U, t)", globals={
            "many": adamax_step_many, "P": lists[0], "G": lists[1], "M": lists[2],
            "U": lists[3], "t": STEP})),
        (names[1], timeit.Timer("many([p], [g], [m], [u], t)", globals={
            "many": adamax_step_many, "p": one[0], "g": one[1], "m": one[2], "u": one[3],
            "t": STEP})),
        (names[2], timeit.Timer("step(p, g, m, u, t)", globals={
            "step": adamax_step_inplace, "p": one[0], "g": one[1], "m": one[2], "u": one[3],
            "t": STEP})),
    ]


def optimizer_cases(dtype: str, tensors: int, elements: int, gradients: str,
                    notes: list[str]) -> list[tuple[str, timeit.Timer]]:
    """``step()`` of adamax_cy.torch.Adamax and of torch.optim.Adamax (both ways) on
    ``tensors`` parameters of ``elements`` each; empty without torch.

    With ``gradients="new"`` every step first gives each parameter a
    gradient tensor other than its last one, as ``zero_grad()`` and
    ``backward()`` do (two sets, used in turn: nothing is allocated); the
    assignments alone are timed too (:data:`ASSIGN`), for the caller to
    subtract. With one tensor, the memory floor on adamax_cy's own tensors
    (parameter, gradient, ``exp_avg``, ``exp_inf``) is timed as well
    (:data:`FLOOR`).
    """
    torch, cy_adamax = _torch(), _cy_torch()
    if torch is None or cy_adamax is None:
        note = "torch or adamax_cy.torch is not available: the optimizer comparison is skipped"
        if note not in notes:
            notes.append(note)
        return []
    named = []
    for name, cls, options in ((CY_TORCH, cy_adamax, {}),
                               (TORCH, torch.optim.Adamax, {"foreach": False}),
                               (TORCH_FOREACH, torch.optim.Adamax, {"foreach": True})):
        arrays = [state(elements, dtype, seed) for seed in range(tensors)]
        params = [torch.nn.Parameter(torch.from_numpy(a[0])) for a in arrays]
        grads = [[torch.from_numpy(a[1]) for a in arrays],
                 [torch.from_numpy(a[1].copy()) for a in arrays]]
        for p, g in zip(params, grads[0]):
            p.grad = g
        opt = cls(params, lr=LR, betas=(BETA1, BETA2), eps=EPS, **options)
        ns = {"opt": opt, "params": params, "sets": itertools.cycle(grads), "zip": zip}
        stmt = "opt.step()" if gradients == "kept" else (
            "for p, g in zip(params, next(sets)):\n    p.grad = g\nopt.step()")
        named.append((name, timeit.Timer(stmt, globals=ns)))
        if tensors == 1 and name == CY_TORCH:
            opt.step()  # creates the state
            st = opt.state[params[0]]
            floor_ns = {"floor": _kernel.floor, "a": (arrays[0][0], arrays[0][1],
                        st["exp_avg"].numpy(), st["exp_inf"].numpy())}
            named.append((FLOOR, timeit.Timer("floor(*a, 0.0, 0)", globals=floor_ns)))
        if gradients == "new" and name == TORCH:
            assign_ns = {**ns, "sets": itertools.cycle(grads)}
            named.append((ASSIGN, timeit.Timer(stmt.rsplit("\n", 1)[0], globals=assign_ns)))
    return named


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
                progress.set_description(f"threshold {dtype} n={n}")
                p, g, m, u = state(n, dtype)
                ns = {"step": adamax_step_inplace, "p": p, "g": g, "m": m, "u": u, "t": STEP}
                named = [("one", timeit.Timer("step(p, g, m, u, t, num_threads=1)", globals=ns)),
                         ("all", timeit.Timer("step(p, g, m, u, t)", globals=ns))]
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


@dataclass
class Target:
    name: str
    status: str  # "pass", "miss" or "not measured"
    detail: str
    measured: dict[str, Any] = field(default_factory=dict)


def _find(timings: list[Timing], name: str, dtype: str, n: int) -> Timing | None:
    for t in timings:
        if (t.implementation, t.dtype, t.n) == (name, dtype, n):
            return t
    return None


def _status(ok: bool) -> str:
    return "pass" if ok else "miss"


def evaluate(
    timings: list[Timing], many: list[dict[str, Any]], allocations: dict[str, int],
    optimizers: Sequence[dict[str, Any]] = (),
) -> list[Target]:
    """Each target of the benchmark, with the numbers it was judged on."""
    targets = []

    # 1. One element: <= 1 us per call, >= 4x NumPy as written, >= 20x torch.
    measured, ok, missing = {}, True, True
    for dtype in DTYPES:
        t = _find(timings, INPLACE, dtype, 1)
        if t is None:
            continue
        missing = False
        entry = {"us_per_call": t.median_s * 1e6}
        ok &= t.median_s <= 1e-6
        for base, factor in ((NUMPY, 4.0), (TORCH, 20.0), (TORCH_FOREACH, 20.0)):
            if base in t.speedup:
                entry[f"speedup_{base}"] = t.speedup[base]
                ok &= t.speedup[base] >= factor
        measured[dtype] = entry
    targets.append(Target(
        "one element: <= 1 us per in-place call, >= 4x NumPy as written, >= 20x torch",
        "not measured" if missing else _status(ok),
        "; ".join(f"{d}: " + ", ".join(f"{k} {v:.3g}" for k, v in e.items())
                  for d, e in measured.items()), measured))

    # 2. Out of cache: 16M float64 at >= 90% of the floor.
    t = _find(timings, INPLACE, "float64", 2**24)
    if t is None or t.floor_pct is None:
        targets.append(Target("16M float64: >= 90% of the floor", "not measured", ""))
    else:
        targets.append(Target(
            "16M float64: >= 90% of the floor", _status(t.floor_pct >= 90),
            f"{t.floor_pct:.1f}% of the floor ({t.gbps:.1f} GB/s)",
            {"floor_pct": t.floor_pct, "gbps": t.gbps}))

    # 3. In cache: 100,000 elements, both dtypes, all threads, >= 85% of the floor.
    # Also one thread against the floor on one thread: when other work keeps a
    # core busy, a team of threads can be many times slower than one thread,
    # and the all-threads figures then measure the machine, not the loop.
    measured, ok = {}, True
    for dtype in DTYPES:
        t = _find(timings, INPLACE, dtype, 100_000)
        if t is not None and t.floor_pct is not None:
            entry = {"floor_pct": t.floor_pct, "gbps": t.gbps}
            ok &= t.floor_pct >= 85
            t1, f1 = (_find(timings, x, dtype, 100_000) for x in (INPLACE_1T, FLOOR_1T))
            if t1 is not None and f1 is not None:
                entry["one_thread_floor_pct"] = 100 * f1.median_s / t1.median_s
                entry["one_thread_gbps"] = t1.gbps
            measured[dtype] = entry
    level = _kernel.level()
    targets.append(Target(
        f"100,000 elements (in cache): >= 85% of the floor (level {level})",
        _status(ok) if measured else "not measured",
        "; ".join(f"{d}: {e['floor_pct']:.1f}% ({e['gbps']:.1f} GB/s)"
                  + (f", one thread {e['one_thread_floor_pct']:.1f}% of the one-thread floor "
                     f"({e['one_thread_gbps']:.1f} GB/s)" if "one_thread_gbps" in e else "")
                  for d, e in measured.items()), measured))

    # 4. Default threads never slower than one thread by more than noise.
    worst: tuple[float, float, str, int] | None = None
    ok = True
    for t1 in timings:
        if t1.implementation != INPLACE_1T:
            continue
        td = _find(timings, INPLACE, t1.dtype, t1.n)
        if td is None:
            continue
        ratio = td.median_s / t1.median_s
        noise = max(0.05, td.spread, t1.spread)
        ok &= ratio <= 1 + noise
        if worst is None or ratio - noise > worst[0] - worst[1]:
            worst = (ratio, noise, t1.dtype, t1.n)
    targets.append(Target(
        "default threads never slower than 1 thread by more than noise",
        "not measured" if worst is None else _status(ok),
        "" if worst is None else (
            f"worst: {worst[2]} n={worst[3]}: default/1-thread = {worst[0]:.3f} "
            f"(noise {worst[1]:.3f} = max(5%, interquartile spread)); "
            f"serial threshold {_kernel.serial_threshold} elements"),
        {} if worst is None else {"worst_ratio": worst[0], "noise": worst[1],
                                  "dtype": worst[2], "n": worst[3]}))

    # 5. Many arrays: 200 x 1,000 within 2x of one array of 200,000.
    ok = True
    for entry in many:
        ok &= entry["ratio"] <= 2
    targets.append(Target(
        "adamax_step_many, many small arrays: <= 2x one array of the same total size",
        _status(ok) if many else "not measured",
        "; ".join(f"{e['dtype']} {e['arrays']} x {e['elements']}: {e['ratio']:.2f}x"
                  for e in many), {"cases": many}))

    # 6. No heap allocation per in-place step.
    targets.append(Target(
        "zero heap allocation per in-place step (tracemalloc)",
        _status(all(v == 0 for v in allocations.values())) if allocations else "not measured",
        ", ".join(f"{k}: {v} bytes" for k, v in allocations.items()), dict(allocations)))

    # 7. adamax_cy.torch.Adamax against the faster of torch.optim.Adamax's two ways.
    targets.append(Target(
        "adamax_cy.torch.Adamax: >= 3x torch.optim.Adamax on 1 x 1,000,000, >= 10x on 200 x 1,000",
        _status(all(e["speedup"] >= e["target"] for e in optimizers)) if optimizers
        else "not measured",
        "; ".join(f"{e['dtype']} {e['tensors']} x {e['elements']}, {e['gradients']} gradients: "
                  f"{e['speedup']:.2f}x" for e in optimizers), {"cases": list(optimizers)}))
    return targets


def machine() -> dict[str, Any]:
    info = config()
    info["cpu"] = _cpu_name()
    info["logical_cpus"] = os.cpu_count()
    info["machine"] = platform.machine()
    info["environment"] = {k: v for k, v in os.environ.items()
                           if k.startswith(("OMP_", "GOMP_", "KMP_", "ADAMAX_CY_"))}
    if hasattr(os, "getloadavg"):
        info["load_average"] = list(os.getloadavg())
    torch = _torch()
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, notes: list[str]) -> Any:
    if not enabled:
        return _NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        notes.append("tqdm is not installed: no progress bar (pip install 'adamax_cy[bench]')")
        return _NoProgress()
    return tqdm(total=total, file=sys.stderr, unit="batch", leave=False)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(x)) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be numbers separated by commas: {text!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be integers >= 1")
    return sizes


IMPLEMENTATIONS = (FLOOR, FLOOR_1T, INPLACE, INPLACE_1T, NUMPY, NUMPY_OUT, TORCH, TORCH_FOREACH, CY_TORCH)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to ``parser``."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="fewer sizes and batches: under a minute")
    mode.add_argument("--smoke", action="store_true",
                      help="a few seconds, tiny sizes: checks that everything runs")
    parser.add_argument("--sizes", type=_sizes, metavar="N,N,...",
                        help=f"array sizes (default {','.join(map(str, SIZES))})")
    parser.add_argument("--dtypes", default=",".join(DTYPES), metavar="DTYPE,...",
                        help="float32, float64 or both (default both)")
    parser.add_argument("--batches", type=int, metavar="K",
                        help="batches per implementation and size; medians are over them")
    parser.add_argument("--batch-time", type=float, metavar="SECONDS",
                        help="approximate duration of one batch")
    parser.add_argument("--only", metavar="NAME,...",
                        help="implementations to time (default all): " + ", ".join(
                            IMPLEMENTATIONS))
    parser.add_argument("--threshold", action="store_true",
                        help="measure only where all threads start to beat one (threads "
                        "forced on), to set the kernel's serial threshold")
    parser.add_argument("--no-many", action="store_true",
                        help="skip the many-arrays comparison")
    parser.add_argument("--no-optimizers", action="store_true",
                        help="skip adamax_cy.torch.Adamax against torch.optim.Adamax")
    parser.add_argument("--json", metavar="PATH",
                        help="write the results as JSON to PATH ('-' for standard output)")
    parser.add_argument("--markdown", metavar="PATH",
                        help="write the results as Markdown tables to PATH")
    parser.add_argument("--plot", metavar="PATH",
                        help="plot GB/s against size per implementation (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The effective settings of a run from its options."""
    sizes: Sequence[int]
    many: tuple[int, int]
    if args.smoke:
        sizes, batches, batch_time, many = SMOKE_SIZES, 3, 0.002, SMOKE_MANY
        optimizers = SMOKE_OPTIMIZERS
    elif args.quick:
        sizes, batches, batch_time, many = QUICK_SIZES, 4, 0.02, MANY
        optimizers = OPTIMIZERS
    else:
        sizes, batches, batch_time, many = SIZES, 9, 0.05, MANY
        optimizers = OPTIMIZERS
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in dtypes:
        if d not in DTYPES:
            raise SystemExit(f"unknown dtype {d!r}: choose from {', '.join(DTYPES)}")
    only = list(IMPLEMENTATIONS)
    if args.only:
        only = [x.strip() for x in args.only.split(",") if x.strip()]
        for x in only:
            if x not in IMPLEMENTATIONS:
                raise SystemExit(f"unknown implementation {x!r}: choose from "
                                 + ", ".join(IMPLEMENTATIONS))
    return {
        "sizes": list(args.sizes or sizes),
        "dtypes": dtypes,
        "batches": args.batches or batches,
        "batch_seconds": args.batch_time or batch_time,
        "implementations": only,
        "many": None if args.no_many else list(many),
        "optimizers": [] if args.no_optimizers or CY_TORCH not in only
        else [list(case) for case in optimizers],
    }


def benchmark(s: dict[str, Any], progress_bar: bool = True) -> dict[str, Any]:
    """Run the benchmark described by ``settings``; return the results as a dict."""
    notes: list[str] = []
    started = time.perf_counter()
    rounds = len(s["sizes"]) + (1 if s["many"] else 0) + len(s["optimizers"]) * len(GRADIENTS)
    progress = _progress(s["batches"] * rounds * len(s["dtypes"]), progress_bar, notes)
    timings: list[Timing] = []
    many: list[dict[str, Any]] = []
    optimizers: list[dict[str, Any]] = []
    try:
        for dtype in s["dtypes"]:
            for n in s["sizes"]:
                progress.set_description(f"{dtype} n={n}")
                arrays = state(n, dtype)
                named = [(c.name, c.timer()) for c in cases(arrays, s["implementations"], notes)]
                samples = time_interleaved(named, s["batches"], s["batch_seconds"], progress)
                group = [summarise(name, dtype, n, *samples[name]) for name, _ in named]
                add_ratios(group)
                timings += group
                del arrays, named
            if s["many"]:
                arrays_, elements = s["many"]
                progress.set_description(f"{dtype} many {arrays_} x {elements}")
                named = many_cases(dtype, arrays_, elements)
                samples = time_interleaved(named, s["batches"], s["batch_seconds"], progress)
                medians = [statistics.median(samples[name][0]) for name, _ in named]
                many.append({
                    "dtype": dtype, "arrays": arrays_, "elements": elements,
                    "many_s": medians[0], "many_one_s": medians[1], "one_s": medians[2],
                    "ratio": medians[0] / medians[2],
                })
            for tensors, elements, target in s["optimizers"]:
                for gradients in GRADIENTS:
                    progress.set_description(f"{dtype} optimizers {tensors} x {elements}")
                    named = optimizer_cases(dtype, tensors, elements, gradients, notes)
                    if not named:
                        progress.update(s["batches"])
                        continue
                    samples = time_interleaved(named, s["batches"], s["batch_seconds"], progress)
                    median = {name: statistics.median(samples[name][0]) for name, _ in named}
                    floor_s = median.pop(FLOOR, None)
                    assign = median.pop(ASSIGN, 0.0)  # the user's gradient assignments
                    median = {name: t - assign for name, t in median.items()}
                    torch_s = min(median[TORCH], median[TORCH_FOREACH])
                    optimizers.append({
                        "dtype": dtype, "tensors": tensors, "elements": elements,
                        "gradients": gradients, "adamax_cy_s": median[CY_TORCH],
                        "torch_s": median[TORCH], "torch_foreach_s": median[TORCH_FOREACH],
                        "speedup": torch_s / median[CY_TORCH], "target": target,
                        "assignments_s": assign,
                        "floor_pct": None if floor_s is None else 100 * floor_s / median[CY_TORCH],
                    })
    finally:
        progress.close()
    allocations = {f"{d} n={n}": allocation_per_step(n, d)
                   for d in s["dtypes"] for n in (1, max(s["sizes"]))}
    info = machine()
    if hasattr(os, "getloadavg"):  # other work on the machine disturbs threads
        info["load_average_end"] = list(os.getloadavg())
    return {
        "machine": info,
        "settings": s,
        "notes": notes,
        "results": [asdict(t) for t in timings],
        "many": many,
        "optimizers": optimizers,
        "targets": [asdict(t) for t in evaluate(timings, many, allocations, optimizers)],
        "seconds": time.perf_counter() - started,
    }


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def report(results: dict[str, Any], file: Any = sys.stdout) -> None:
    """Print the results as tables and the targets as pass/miss lines."""
    m = results["machine"]
    print(f"adamax_cy {m['version']} on {m['cpu']} ({m['logical_cpus']} logical CPUs), "
          f"level {m.get('level', 'baseline')}, {m['default_threads']} default threads, "
          f"numpy {m['numpy']}" + (f", torch {m['torch']}" if "torch" in m else ""), file=file)
    if m.get("environment"):
        print("environment: " + " ".join(f"{k}={v}" for k, v in m["environment"].items()),
              file=file)
    if "load_average_end" in m:
        print("load average at the end (1, 5, 15 min): "
              + ", ".join(f"{x:.2f}" for x in m["load_average_end"]), file=file)
    header = (f"{'dtype':<8}{'n':>10}  {'implementation':<30}{'median':>10}{'spread':>8}"
              f"{'GB/s':>8}{'floor%':>8}{'x numpy':>9}{'x torch':>9}")
    print(header, file=file)
    print("-" * len(header), file=file)
    last = None
    for r in results["results"]:
        if last is not None and (r["dtype"], r["n"]) != last:
            print(file=file)
        last = (r["dtype"], r["n"])
        pct = "" if r["floor_pct"] is None else f"{r['floor_pct']:.0f}"
        x_np = r["speedup"].get(NUMPY)
        x_t = r["speedup"].get(TORCH)
        print(f"{r['dtype']:<8}{r['n']:>10}  {r['implementation']:<30}"
              f"{_fmt_time(r['median_s']):>10}{100 * r['spread']:>7.1f}%{r['gbps']:>8.2f}"
              f"{pct:>8}{'' if x_np is None else f'{x_np:.2f}':>9}"
              f"{'' if x_t is None else f'{x_t:.2f}':>9}", file=file)
    for e in results["many"]:
        print(f"\n{e['dtype']}: adamax_step_many {e['arrays']} x {e['elements']}: "
              f"{_fmt_time(e['many_s'])}; one array of {e['arrays'] * e['elements']}: "
              f"{_fmt_time(e['one_s'])} in place, {_fmt_time(e['many_one_s'])} through "
              f"adamax_step_many; ratio {e['ratio']:.2f}", file=file)
    for e in results["optimizers"]:
        print(f"{e['dtype']}: optimizer step, {e['tensors']} x {e['elements']}, "
              f"{e['gradients']} gradients: adamax_cy.torch.Adamax {_fmt_time(e['adamax_cy_s'])}, "
              f"torch foreach=False {_fmt_time(e['torch_s'])}, foreach=True "
              f"{_fmt_time(e['torch_foreach_s'])}: {e['speedup']:.2f}x the faster"
              + (f" (net of the {_fmt_time(e['assignments_s'])} of assigning the gradients)"
                 if e["assignments_s"] else "")
              + (f"; adamax_cy at {e['floor_pct']:.0f}% of the floor"
                 if e["floor_pct"] is not None else ""), file=file)
    for note in results["notes"]:
        print(f"note: {note}", file=file)
    print("\ntargets:", file=file)
    for t in results["targets"]:
        print(f"  [{t['status']:^12}] {t['name']}" + (f": {t['detail']}" if t["detail"] else ""),
              file=file)
    print(f"\n{results['seconds']:.1f} s", file=file)


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables (for the documentation)."""
    lines = ["| dtype | n | implementation | median | spread | GB/s | % of floor "
             "| × numpy as written | × torch foreach=False |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results["results"]:
        pct = "" if r["floor_pct"] is None else f"{r['floor_pct']:.0f}"
        x_np, x_t = r["speedup"].get(NUMPY), r["speedup"].get(TORCH)
        lines.append(
            f"| {r['dtype']} | {r['n']:,} | {r['implementation']} | {_fmt_time(r['median_s'])} "
            f"| {100 * r['spread']:.0f}% | {r['gbps']:.2f} | {pct} "
            f"| {'' if x_np is None else f'{x_np:.2f}'} | {'' if x_t is None else f'{x_t:.2f}'} |")
    if results["many"]:
        lines += ["", "| dtype | adamax_step_many, many arrays | one array, in place "
                  "| one array, adamax_step_many | ratio |", "|---|---:|---:|---:|---:|"]
        for e in results["many"]:
            lines.append(f"| {e['dtype']} | {e['arrays']} × {e['elements']:,}: "
                         f"{_fmt_time(e['many_s'])} | {_fmt_time(e['one_s'])} "
                         f"| {_fmt_time(e['many_one_s'])} | {e['ratio']:.2f} |")
    if results["optimizers"]:
        lines += ["", "| dtype | tensors × elements | gradients | adamax_cy.torch.Adamax "
                  "| torch foreach=False | torch foreach=True | speed-up over the faster "
                  "| adamax_cy, % of the floor | assigning the gradients (subtracted) |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for e in results["optimizers"]:
            pct = "" if e["floor_pct"] is None else f"{e['floor_pct']:.0f}"
            assigning = _fmt_time(e["assignments_s"]) if e["assignments_s"] else ""
            lines.append(f"| {e['dtype']} | {e['tensors']} × {e['elements']:,} | {e['gradients']} "
                         f"| {_fmt_time(e['adamax_cy_s'])} | {_fmt_time(e['torch_s'])} "
                         f"| {_fmt_time(e['torch_foreach_s'])} | {e['speedup']:.2f} | {pct} "
                         f"| {assigning} |")
    lines += ["", "| target | result | measured |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['name']} | **{t['status']}** | {t['detail']} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: str) -> None:
    """GB/s against size, one line per implementation, one panel per dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(dict.fromkeys(r["dtype"] for r in results["results"]))
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6.5 * len(dtypes), 4.8), squeeze=False,
                             sharey=True)
    for ax, dtype in zip(axes[0], dtypes):
        rows = [r for r in results["results"] if r["dtype"] == dtype]
        for name in dict.fromkeys(r["implementation"] for r in rows):
            pts = [(r["n"], r["gbps"]) for r in rows if r["implementation"] == name]
            style = ({"color": "black", "linestyle": "--"} if name == FLOOR else
                     {"color": "grey", "linestyle": ":"} if name == FLOOR_1T else {})
            ax.plot(*zip(*pts), marker="o", markersize=3, label=name, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("elements")
        ax.set_title(dtype)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("effective GB/s (7 x itemsize x n per step)")
    axes[0][-1].legend(fontsize="small")
    m = results["machine"]
    fig.suptitle(f"adamax_cy {m['version']}: {m['cpu']}, {m['logical_cpus']} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def threshold_report(results: dict[str, Any], file: Any = sys.stdout) -> None:
    print(f"serial threshold now: {results['serial_threshold']} elements; "
          "all threads / one thread (lower quartiles of the batches):", file=file)
    for dtype, entry in results["threshold"]["dtypes"].items():
        print(f"{dtype}: " + ", ".join(f"{r['n']}: {r['ratio_q1']:.2f}" for r in entry["rows"]),
              file=file)
        print(f"  all threads faster from {entry['crossover']} elements on", file=file)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed options; 0 on success."""
    s = settings(args)
    to_stdout = args.json == "-"
    out = sys.stderr if to_stdout else sys.stdout
    if args.threshold:
        progress = _progress(len(THRESHOLD_SIZES) * len(s["dtypes"]) * s["batches"],
                             not args.no_progress, [])
        try:
            results = {"machine": machine(), "serial_threshold": _kernel.serial_threshold,
                       "threshold": measure_threshold(s["dtypes"], s["batches"],
                                                      s["batch_seconds"] / 5, progress)}
        finally:
            progress.close()
        threshold_report(results, out)
    else:
        results = benchmark(s, progress_bar=not args.no_progress)
        report(results, file=out)
    if args.json:
        text = json.dumps(results, indent=2)
        if to_stdout:
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    if args.markdown and not args.threshold:
        with open(args.markdown, "w") as f:
            f.write(markdown(results))
    if args.plot and not args.threshold:
        try:
            plot(results, args.plot)
        except ImportError:
            print("--plot needs matplotlib: pip install 'adamax_cy[bench]'", file=sys.stderr)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m adamax_cy.bench``."""
    parser = argparse.ArgumentParser(
        prog="python -m adamax_cy.bench",
        description="Time the Adamax step against NumPy, torch and the memory floor.",
    )
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
