"""Output of the command line: tables, JSON and the progress bar.

Tables and the progress bar use `rich <https://rich.readthedocs.io>`_ when it
is installed and plain text otherwise.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence


def rich_console() -> Any:
    """A rich Console on the current ``sys.stdout``, or None without rich."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=sys.stdout, highlight=False)


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[str] = (),
    caption: str | None = None,
    section_every: int = 0,
) -> None:
    """Print ``rows`` (cells may hold several lines) under ``columns``.

    ``right`` names the columns to align right (numbers); ``section_every``
    draws a line after every that many rows.
    """
    console = rich_console()
    if console is not None:
        from rich import box
        from rich.table import Table

        # Title and caption as text, so that they wrap to the console, not the table.
        table = Table(
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            show_edge=False,
            collapse_padding=True,
            show_header=any(columns),
        )
        for name in columns:
            number = name in right
            table.add_column(name, justify="right" if number else "left", no_wrap=number)
        for k, row in enumerate(rows, 1):
            table.add_row(*row, end_section=bool(section_every) and k % section_every == 0)
        console.print(title, style="bold")
        console.print(table)
        if caption:
            console.print(caption, style="dim")
        console.print()
        return
    cells = [[cell.split("\n") for cell in row] for row in rows]
    widths = [
        max([len(name)] + [len(line) for row in cells for line in row[i]])
        for i, name in enumerate(columns)
    ]

    def line(parts: Sequence[str]) -> str:
        return "  ".join(
            p.rjust(w) if name in right else p.ljust(w)
            for p, w, name in zip(parts, widths, columns)
        ).rstrip()

    rule = line(["-" * w for w in widths])
    out = [title] + ([line(columns), rule] if any(columns) else [])
    for n, cell_lines in enumerate(cells, 1):
        for k in range(max(len(c) for c in cell_lines)):
            out.append(line([c[k] if k < len(c) else "" for c in cell_lines]))
        if section_every and n % section_every == 0 and n < len(cells):
            out.append(rule)
    if caption:
        out.append(caption)
    print("\n".join(out) + "\n")


class Progress:
    """A progress bar over ``total`` steps on a terminal with rich; otherwise nothing."""

    def __init__(self, total: int, description: str, enabled: bool = True) -> None:
        self.total, self.description = total, description
        self._bar: Any = None
        self._task: Any = None
        if enabled:
            console = rich_console()
            if console is not None and console.is_terminal:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
                from rich.progress import Progress as RichProgress

                self._bar = RichProgress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TextColumn("loss {task.fields[loss]}"),
                    console=console,
                    transient=True,
                )

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, loss="...")
        return self

    def advance(self, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, loss=f"{loss:.4f}")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def emit_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2, allow_nan=True)
    sys.stdout.write("\n")
