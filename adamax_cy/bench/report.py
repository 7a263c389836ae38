"""The benchmark's results as text, Markdown and a plot."""

from __future__ import annotations

import sys
from typing import Any

from .baselines import FLOOR, FLOOR_1T, FLOOR_DIV, FLOOR_DIV_1T, NUMPY, TORCH
from .busy import ALL, DEFAULT, ONE

BUSY_WAYS = (DEFAULT, ONE, ALL)


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
        print("load average (1, 5, 15 min) at the start: "
              + ", ".join(f"{x:.2f}" for x in m.get("load_average_start", [])) + "; at the end: "
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
    if results.get("busy"):
        print("\nbusy machine (busy-loop processes holding cores): time per call, "
              "mean / 90th percentile", file=file)
        for e in results["busy"]:
            print(f"{e['busy']} busy, {e['dtype']} n={e['n']:>9}: " + "; ".join(
                f"{way} {_fmt_time(e[way]['mean_s'])} / {_fmt_time(e[way]['p90_s'])}"
                for way in BUSY_WAYS) + f"; default / 1 thread {e['ratio']:.2f}", file=file)
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
    if results.get("busy"):
        lines += ["", "| busy cores | dtype | n | " + " | ".join(
            f"{way}: mean | {way}: 90th pct." for way in BUSY_WAYS)
            + " | default / 1 thread (mean) |", "|---:|---|---:|" + "---:|" * 7]
        for e in results["busy"]:
            lines.append(f"| {e['busy']} | {e['dtype']} | {e['n']:,} | " + " | ".join(
                f"{_fmt_time(e[way]['mean_s'])} | {_fmt_time(e[way]['p90_s'])}"
                for way in BUSY_WAYS) + f" | {e['ratio']:.2f} |")
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
                     {"color": "grey", "linestyle": ":"} if name == FLOOR_1T else
                     {"color": "black", "linestyle": "-."} if name == FLOOR_DIV else
                     {"color": "grey", "linestyle": "-."} if name == FLOOR_DIV_1T else {})
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
