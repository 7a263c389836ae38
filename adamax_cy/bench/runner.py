"""The ``bench`` command: its options, the settings of a run, the run itself."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from typing import Any, Sequence

from .. import _kernel
from .._config import config
from .baselines import (
    ASSIGN, CY_TORCH, DTYPES, FLOOR, GRADIENTS, IMPLEMENTATIONS, TORCH, TORCH_FOREACH,
    cases, many_cases, optimizer_cases, optional_torch, state,
)
from .report import markdown, plot, report, threshold_report
from .targets import evaluate
from .timing import (
    THRESHOLD_SIZES, Timing, add_ratios, allocation_per_step, measure_threshold, summarise,
    time_interleaved,
)

SIZES = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 4_000_000, 2**24)
QUICK_SIZES = (1, 1_000, 100_000, 2**24)
SMOKE_SIZES = (1, 1_000)
MANY = (200, 1_000)  # arrays x elements, against one array of arrays * elements
SMOKE_MANY = (4, 100)
# adamax_cy.torch.Adamax against torch.optim.Adamax: (tensors, elements) and the
# speed-up it should reach over the faster of torch's two implementations.
OPTIMIZERS = ((1, 1_000_000, 3.0), (200, 1_000, 10.0))
SMOKE_OPTIMIZERS = ((1, 1_000, 3.0), (4, 100, 10.0))


def machine() -> dict[str, Any]:
    info = config()
    info["cpu"] = _cpu_name()
    info["logical_cpus"] = os.cpu_count()
    info["machine"] = platform.machine()
    info["environment"] = {k: v for k, v in os.environ.items()
                           if k.startswith(("OMP_", "GOMP_", "KMP_", "ADAMAX_CY_"))}
    if hasattr(os, "getloadavg"):
        info["load_average"] = list(os.getloadavg())
    torch = optional_torch()
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
