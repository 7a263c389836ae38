"""The benchmark's targets, each judged on the numbers it names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .. import _kernel
from .baselines import (
    DTYPES, FLOOR, FLOOR_1T, FLOOR_DIV, FLOOR_DIV_1T, INPLACE, INPLACE_1T, INPLACE_ALL, NUMPY, TORCH,
    TORCH_FOREACH,
)
from .busy import DEFAULT, ONE
from .timing import Timing


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


def _all_threads(timings: list[Timing], dtype: str, n: int) -> Timing | None:
    """The step on every thread: asked for explicitly, else the default."""
    return _find(timings, INPLACE_ALL, dtype, n) or _find(timings, INPLACE, dtype, n)


def _status(ok: bool) -> str:
    return "pass" if ok else "miss"


def evaluate(
    timings: list[Timing], many: list[dict[str, Any]], allocations: dict[str, int],
    optimizers: Sequence[dict[str, Any]] = (), busy: Sequence[dict[str, Any]] = (),
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
    # The step with every thread asked for explicitly, as the floor runs (the
    # adaptive default may be on one thread). Also one thread against the
    # floor on one thread: when other work keeps a core busy, a team of threads
    # can be many times slower than one thread, and the all-threads figures
    # then measure the machine, not the loop.
    measured, ok = {}, True
    for dtype in DTYPES:
        t, f = _all_threads(timings, dtype, 100_000), _find(timings, FLOOR, dtype, 100_000)
        if t is not None and f is not None:
            entry = {"floor_pct": 100 * f.median_s / t.median_s, "gbps": t.gbps}
            ok &= entry["floor_pct"] >= 85
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

    # 3b. In cache, against the floor that also divides once per element, as
    # the bitwise contract makes the step do.
    measured, ok = {}, True
    for dtype in DTYPES:
        t, f = _all_threads(timings, dtype, 100_000), _find(timings, FLOOR_DIV, dtype, 100_000)
        if t is None or f is None:
            continue
        entry = {"division_floor_pct": 100 * f.median_s / t.median_s}
        ok &= entry["division_floor_pct"] >= 90
        t1, f1 = (_find(timings, x, dtype, 100_000) for x in (INPLACE_1T, FLOOR_DIV_1T))
        if t1 is not None and f1 is not None:
            entry["one_thread_division_floor_pct"] = 100 * f1.median_s / t1.median_s
        measured[dtype] = entry
    targets.append(Target(
        "100,000 elements: >= 90% of the floor with one division per element (all threads)",
        _status(ok) if measured else "not measured",
        "; ".join(f"{d}: {e['division_floor_pct']:.1f}%"
                  + (f", one thread {e['one_thread_division_floor_pct']:.1f}%"
                     if "one_thread_division_floor_pct" in e else "")
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

    # 5. Many arrays: 200 x 1,000 within 1.3x of one array of 200,000.
    ok = True
    for entry in many:
        ok &= entry["ratio"] <= 1.3
    targets.append(Target(
        "adamax_step_many, many small arrays: <= 1.3x one array of the same total size",
        _status(ok) if many else "not measured",
        "; ".join(f"{e['dtype']} {e['arrays']} x {e['elements']}: {e['ratio']:.2f}x"
                  for e in many), {"cases": many}))

    # 5b. The default on a busy machine, and its speed-up on a quiet one.
    loaded = [e for e in busy if e["busy"] > 0]
    targets.append(Target(
        "busy machine (1 and 2 busy cores): default threads' mean <= 1.25x one thread's",
        _status(all(e["ratio"] <= 1.25 for e in loaded))
        if {1, 2} <= {e["busy"] for e in loaded} else "not measured",
        "; ".join(f"{e['busy']} busy, {e['dtype']} n={e['n']:,}: {e['ratio']:.2f}x "
                  f"(90th percentile {1e6 * e[DEFAULT]['p90_s']:.0f} us against "
                  f"{1e6 * e[ONE]['p90_s']:.0f} us)" for e in loaded),
        {"cases": [{k: e[k] for k in ("busy", "dtype", "n", "ratio")} for e in loaded]}))
    quiet = [e for e in busy if e["busy"] == 0 and e["n"] == 1_000_000 and e["dtype"] == "float32"]
    targets.append(Target(
        "quiet machine: default threads' mean <= 0.75x one thread's at 1M float32",
        _status(all(e["ratio"] <= 0.75 for e in quiet)) if quiet else "not measured",
        "; ".join(f"{e['ratio']:.2f}x" for e in quiet),
        {"ratio": quiet[0]["ratio"]} if quiet else {}))

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
