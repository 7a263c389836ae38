"""Draw the performance page's figure from the raw results page.

Reads the tables of ``performance-results.md`` (the benchmark's Markdown
output, as published) and writes ``_static/performance.png``: one panel per
question the page answers. Run it after replacing the results::

    python docs/plot_performance.py

It needs matplotlib (``pip install ".[bench]"``); the documentation build
does not run it, it only shows the picture.
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "performance-results.md"
FIGURE = HERE / "_static" / "performance.png"

_UNITS = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def microseconds(text: str) -> float:
    value, unit = text.split()
    return float(value) * _UNITS[unit]


def tables(markdown: str) -> list[list[dict[str, str]]]:
    """Every Markdown table, as a list of rows keyed by the header."""
    found, rows = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            header, _, *body = rows
            found.append([dict(zip(header, row)) for row in body])
            rows = []
    return found


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = tables(RESULTS.read_text(encoding="utf-8"))
    steps = next(t for t in results if t and "implementation" in t[0] and "n" in t[0])
    optimizer = next(t for t in results if t and "gradients" in t[0])

    def series(dtype: str, name: str, column: str, convert=float) -> tuple[list[int], list[float]]:
        rows = [r for r in steps if r["dtype"] == dtype and r["implementation"] == name]
        return [int(r["n"].replace(",", "")) for r in rows], [convert(r[column]) for r in rows]

    fig, axes = plt.subplots(3, 1, figsize=(9, 12.5), constrained_layout=True)
    styles = {
        "adamax_step_inplace": dict(color="C0", lw=2.5, marker="o"),
        "floor": dict(color="black", lw=1.5, ls="--"),
        "numpy as written": dict(color="C1", marker="s"),
        "numpy out=": dict(color="C1", ls=":", marker="s"),
        "torch foreach=False": dict(color="C3", marker="^"),
        "adamax_cy.torch.Adamax": dict(color="C2", marker="D"),
    }

    ax = axes[0]
    for name in ("adamax_step_inplace", "numpy as written", "torch foreach=False", "adamax_cy.torch.Adamax"):
        n, t = series("float64", name, "median", microseconds)
        keep = [(a, b) for a, b in zip(n, t) if a <= 10_000]
        ax.plot(*zip(*keep), label=name, **styles[name])
    ax.axhline(1.0, color="grey", lw=1, ls="--", label="target: 1 µs per call")
    ax.set(xscale="log", yscale="log", xlabel="elements (float64)", ylabel="µs per step",
           title="Small arrays: how long does one step take?")

    ax = axes[1]
    for name in ("floor", "adamax_step_inplace", "numpy out=", "numpy as written", "torch foreach=False"):
        n, gbs = series("float64", name, "GB/s")
        keep = [(a, b) for a, b in zip(n, gbs) if a >= 10_000]
        label = "memory floor (bytes moved, no arithmetic)" if name == "floor" else name
        ax.plot(*zip(*keep), label=label, **styles[name])
    ax.set(xscale="log", xlabel="elements (float64)", ylabel="GB/s (7 × 8 bytes per element)",
           title="Large arrays: how close to the memory limit?")
    ax.set_ylim(bottom=0)

    ax = axes[2]
    groups = ("1 × 1,000,000", "200 × 1,000")
    targets = {"1 × 1,000,000": 3, "200 × 1,000": 10}
    x = 0.0
    ticks, tick_labels = [], []
    for g, group in enumerate(groups):
        rows = [r for r in optimizer if r["tensors × elements"] == group]
        start = x
        for row in rows:
            value = float(row["speed-up over the faster"])
            ax.bar(x, value, color=f"C{2 + 2 * g}")
            ax.text(x, value + 0.2, f"{value:.1f}×", ha="center", fontsize=9)
            ticks.append(x)
            tick_labels.append(f"{row['dtype']}\n{row['gradients']}")
            x += 1
        ax.hlines(targets[group], start - 0.4, x - 0.6, color=f"C{2 + 2 * g}", ls="--",
                  label=f"target for {group}: {targets[group]}×")
        x += 0.8
    ax.set_xticks(ticks, tick_labels, fontsize=9)
    ax.set(ylabel="× the faster torch.optim.Adamax", xlabel="left: 1 tensor of 1M elements; right: 200 tensors of 1,000",
           title="PyTorch: how much faster is adamax_cy.torch.Adamax?")
    ax.set_ylim(0, 17)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)

    for ax in axes[:2]:
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.savefig(FIGURE, dpi=100)
    print(f"wrote {FIGURE}")


if __name__ == "__main__":
    main()
