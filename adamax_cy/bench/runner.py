"""The ``bench`` command: its options, the settings of a run, the run itself."""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from typing import Any, Callable, Sequence

from .. import _kernel
from .._config import config
from .baselines import (
    ASSIGN, CY_TORCH, DTYPES, FLOOR, GRADIENTS, IMPLEMENTATIONS, TORCH, TORCH_FOREACH,
    cases, many_cases, optimizer_cases, optional_torch, state,
)
from ..cli.arguments import (
    EXTRAS, UsageError, install_line, positive_float, positive_int, run_alone, writable_file,
)
from ..cli.render import Progress, json_text
from .busy import measure_busy
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
# The busy-machine scenario: float32 at these sizes, quiet and with 1 and 2
# cores kept busy, for about this many seconds per way of threading.
BUSY = (1, 2)
BUSY_SIZES = (100_000, 1_000_000, 8_000_000)
BUSY_SECONDS, QUICK_BUSY_SECONDS = 2.0, 0.6
SMOKE_BUSY, SMOKE_BUSY_SIZES, SMOKE_BUSY_SECONDS = (1,), (40_000,), 0.02
#: At most this many busy-loop processes (each holds a core).
MAX_BUSY = 64
# adamax_cy.torch.Adamax against torch.optim.Adamax: (tensors, elements) and the
# speed-up it should reach over the faster of torch's two implementations.
OPTIMIZERS = ((1, 1_000_000, 3.0), (200, 1_000, 10.0))
SMOKE_OPTIMIZERS = ((1, 1_000, 3.0), (4, 100, 10.0))
#: Arrays of one size alive at once (param, grad, m, u and NumPy's temporaries).
ARRAYS_PER_SIZE = 8


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


def _physical_memory() -> int | None:
    """Bytes of memory in this machine, or None where it cannot be told."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _size(text: str) -> int:
    """One array size: a whole number >= 1 (``1e6`` is accepted), small enough
    that the arrays of one size fit in this machine's memory."""
    try:
        n = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isinf(value):
            raise argparse.ArgumentTypeError(f"size {text} is too large") from None
        if not (math.isfinite(value) and value.is_integer()):
            raise argparse.ArgumentTypeError(f"sizes must be whole numbers, got {text!r}") from None
        n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    memory = _physical_memory()
    need = ARRAYS_PER_SIZE * 8 * n
    if memory is not None and need > memory:
        raise argparse.ArgumentTypeError(
            f"size {text} needs about {need / 1e9:.3g} GB; this machine has {memory / 1e9:.3g} GB")
    return n


def _sizes(text: str) -> list[int]:
    sizes = [_size(x.strip()) for x in text.split(",") if x.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected sizes separated by commas, got {text!r}")
    return sizes


def _names(kind: str, allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: names separated by commas, each one of ``allowed``."""

    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        for name in names:
            if name not in allowed:
                raise argparse.ArgumentTypeError(
                    f"unknown {kind} {name!r}: choose from {', '.join(allowed)}")
        if not names:
            raise argparse.ArgumentTypeError(f"expected {kind}s separated by commas, got {text!r}")
        return names

    return parse


def _busy(text: str) -> list[int]:
    """Numbers of busy cores, separated by commas: whole numbers 0 to MAX_BUSY."""
    counts = []
    for part in (x.strip() for x in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 0 <= int(part) <= MAX_BUSY:
            raise argparse.ArgumentTypeError(
                f"busy cores must be whole numbers from 0 to {MAX_BUSY}, got {part!r}")
        counts.append(int(part))
    if not counts:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    return counts


def _json_path(text: str) -> str:
    return text if text == "-" else writable_file(text)


def _check_plot(path: str) -> None:
    """matplotlib is installed and writes ``path``'s format: checked before any work."""
    try:
        import matplotlib  # noqa: F401  (first: its submodules may be loaded already)
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(f"--plot needs matplotlib: {install_line(EXTRAS['matplotlib'])}") from None
    formats = Figure().canvas.get_supported_filetypes()
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if suffix not in formats:
        raise UsageError(f"--plot: matplotlib cannot write {path!r}; name a file ending in one of "
                         + ", ".join(f".{f}" for f in sorted(formats)))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to ``parser``."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="fewer sizes and batches: under a minute")
    mode.add_argument("--smoke", action="store_true",
                      help="a few seconds, tiny sizes: checks that everything runs")
    parser.add_argument("--sizes", type=_sizes, metavar="N,N,...",
                        help=f"array sizes (default {','.join(map(str, SIZES))})")
    parser.add_argument("--dtypes", type=_names("dtype", DTYPES), default=",".join(DTYPES),
                        metavar="DTYPE,...", help="float32, float64 or both (default both)")
    parser.add_argument("--batches", type=positive_int, metavar="K",
                        help="batches per implementation and size; medians are over them")
    parser.add_argument("--batch-time", type=positive_float, metavar="SECONDS",
                        help="approximate duration of one batch")
    parser.add_argument("--only", type=_names("implementation", IMPLEMENTATIONS), metavar="NAME,...",
                        help="implementations to time (default all): " + ", ".join(
                            IMPLEMENTATIONS))
    parser.add_argument("--threshold", action="store_true",
                        help="measure only where all threads start to beat one (threads "
                        "forced on), to set the kernel's serial threshold")
    parser.add_argument("--busy", type=_busy, metavar="N,...",
                        help="the busy-machine scenario: quiet, then with N busy-loop "
                        "processes holding cores (default 1,2; 0 for quiet only); the "
                        "benchmark stops them")
    parser.add_argument("--no-busy", action="store_true",
                        help="skip the busy-machine scenario")
    parser.add_argument("--no-many", action="store_true",
                        help="skip the many-arrays comparison")
    parser.add_argument("--no-optimizers", action="store_true",
                        help="skip adamax_cy.torch.Adamax against torch.optim.Adamax")
    parser.add_argument("--json", type=_json_path, metavar="PATH",
                        help="write the results as JSON to PATH ('-' for standard output)")
    parser.add_argument("--markdown", type=writable_file, metavar="PATH",
                        help="write the results as Markdown tables to PATH")
    parser.add_argument("--plot", type=writable_file, metavar="PATH",
                        help="plot GB/s against size per implementation (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress (shown only when standard error is a terminal)")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The effective settings of a run from its options."""
    sizes: Sequence[int]
    many: tuple[int, int]
    busy: Sequence[int]
    busy_sizes: Sequence[int]
    if args.smoke:
        sizes, batches, batch_time, many = SMOKE_SIZES, 3, 0.002, SMOKE_MANY
        optimizers = SMOKE_OPTIMIZERS
        busy, busy_sizes, busy_seconds = SMOKE_BUSY, SMOKE_BUSY_SIZES, SMOKE_BUSY_SECONDS
    elif args.quick:
        sizes, batches, batch_time, many = QUICK_SIZES, 4, 0.02, MANY
        optimizers = OPTIMIZERS
        busy, busy_sizes, busy_seconds = BUSY, BUSY_SIZES, QUICK_BUSY_SECONDS
    else:
        sizes, batches, batch_time, many = SIZES, 9, 0.05, MANY
        optimizers = OPTIMIZERS
        busy, busy_sizes, busy_seconds = BUSY, BUSY_SIZES, BUSY_SECONDS
    counts = args.busy if args.busy is not None else list(busy)
    only = list(args.only or IMPLEMENTATIONS)
    return {
        "sizes": list(args.sizes or sizes),
        "dtypes": list(args.dtypes),
        "batches": args.batches or batches,
        "batch_seconds": args.batch_time or batch_time,
        "implementations": only,
        "many": None if args.no_many else list(many),
        # The quiet scenario (0) first, then each number of busy cores.
        "busy": None if args.no_busy else sorted(set([0] + counts)),
        "busy_sizes": list(busy_sizes),
        "busy_seconds": busy_seconds,
        "optimizers": [] if args.no_optimizers or CY_TORCH not in only
        else [list(case) for case in optimizers],
    }


def benchmark(s: dict[str, Any], progress_bar: bool = True) -> dict[str, Any]:
    """Run the benchmark described by ``settings``; return the results as a dict."""
    notes: list[str] = []
    started = time.perf_counter()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    rounds = len(s["sizes"]) + (1 if s["many"] else 0) + len(s["optimizers"]) * len(GRADIENTS)
    busy_rounds = len(s["busy"]) * len(s["busy_sizes"]) if s["busy"] else 0
    timings: list[Timing] = []
    many: list[dict[str, Any]] = []
    optimizers: list[dict[str, Any]] = []
    busy: list[dict[str, Any]] = []
    total = s["batches"] * rounds * len(s["dtypes"]) + busy_rounds
    with Progress(total, "benchmark", progress_bar) as progress:
        for dtype in s["dtypes"]:
            for n in s["sizes"]:
                progress.describe(f"{dtype} n={n}")
                arrays = state(n, dtype)
                named = [(c.name, c.timer()) for c in cases(arrays, s["implementations"], notes)]
                samples = time_interleaved(named, s["batches"], s["batch_seconds"], progress)
                group = [summarise(name, dtype, n, *samples[name]) for name, _ in named]
                add_ratios(group)
                timings += group
                del arrays, named
            if s["many"]:
                arrays_, elements = s["many"]
                progress.describe(f"{dtype} many {arrays_} x {elements}")
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
                    progress.describe(f"{dtype} optimizers {tensors} x {elements}")
                    named = optimizer_cases(dtype, tensors, elements, gradients, notes)
                    if not named:
                        progress.advance(s["batches"])
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
        if s["busy"]:
            busy = measure_busy(s["busy"], s["busy_sizes"], "float32", s["busy_seconds"],
                                progress)
    allocations = {f"{d} n={n}": allocation_per_step(n, d)
                   for d in s["dtypes"] for n in (1, max(s["sizes"]))}
    info = machine()
    if load_start is not None:  # other work on the machine disturbs threads
        info["load_average_start"] = load_start
        info["load_average_end"] = list(os.getloadavg())
    return {
        "machine": info,
        "settings": s,
        "notes": notes,
        "results": [asdict(t) for t in timings],
        "many": many,
        "optimizers": optimizers,
        "busy": busy,
        "targets": [asdict(t) for t in evaluate(timings, many, allocations, optimizers, busy)],
        "seconds": time.perf_counter() - started,
    }


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed options; 0 on success."""
    s = settings(args)
    if args.plot and not args.threshold:
        _check_plot(args.plot)
    to_stdout = args.json == "-"
    out = sys.stderr if to_stdout else sys.stdout
    if args.threshold:
        total = len(THRESHOLD_SIZES) * len(s["dtypes"]) * s["batches"]
        with Progress(total, "threshold", not args.no_progress) as progress:
            results = {"machine": machine(), "serial_threshold": _kernel.serial_threshold,
                       "threshold": measure_threshold(s["dtypes"], s["batches"],
                                                      s["batch_seconds"] / 5, progress)}
        threshold_report(results, out)
    else:
        results = benchmark(s, progress_bar=not args.no_progress)
        report(results, file=out)
    if args.json:
        text = json_text(results)
        if to_stdout:
            print(text)
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(text + "\n")
    if args.markdown and not args.threshold:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown(results))
    if args.plot and not args.threshold:
        plot(results, args.plot)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m adamax_cy.bench``."""
    return run_alone("python -m adamax_cy.bench", configure_parser, run, argv,
                     "Time the Adamax step against NumPy, torch and the memory floor.")