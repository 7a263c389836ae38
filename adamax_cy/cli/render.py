"""Output of the command line: tables, JSON and progress.

Tables and progress use `rich <https://rich.readthedocs.io>`_ when it is
installed (the ``cli`` and ``bench`` extras) and plain text otherwise.

- Results go to standard output. Where it cannot encode the Greek letters
  and arrows of the tables (``PYTHONIOENCODING=latin-1``, a C locale), they
  are written with ASCII names instead (``theta``, ``beta1``, ``->``).
- JSON is strict: the non-finite numbers are the strings ``"nan"``,
  ``"inf"`` and ``"-inf"`` (as in :mod:`adamax_cy.testing`'s reports).
- Progress goes to standard error and only when it is a terminal: a bar with
  rich, a line that rewrites itself without. Redirected, nothing is written
  but the results.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, Sequence

#: ASCII names of the characters the tables use, for a stream that cannot encode them.
_ASCII_NAMES = (
    ("m\u0302", "m_hat"),
    ("\u03b8", "theta"),
    ("\u03b2", "beta"),
    ("\u03b5", "eps"),
    ("\u2192", "->"),
    ("\u00d7", "x"),
    ("\u2212", "-"),
    ("\u00b7", "*"),
)


def _encodes_all(stream: Any) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        ("".join(char for char, _ in _ASCII_NAMES) + "\u2026\u2501").encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def for_stream(text: str, stream: Any = None) -> str:
    """``text`` as ``stream`` (default: ``sys.stdout``) can write it.

    Examples
    --------
    >>> import io
    >>> for_stream("θ − update", io.TextIOWrapper(io.BytesIO(), encoding="latin-1"))
    'theta - update'
    """
    stream = sys.stdout if stream is None else stream
    if _encodes_all(stream):
        return text
    for char, name in _ASCII_NAMES:
        text = text.replace(char, name)
    encoding = getattr(stream, "encoding", None) or "ascii"
    return text.encode(encoding, "replace").decode(encoding)


def rich_console(stream: Any = None) -> Any:
    """A rich Console on ``stream`` (default: the current ``sys.stdout``), or None
    without rich or when the stream cannot encode the tables' characters (rich's
    own, such as the ellipsis, could not be written either)."""
    stream = sys.stdout if stream is None else stream
    if not _encodes_all(stream):
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=stream, highlight=False)


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
    title, caption = for_stream(title), caption and for_stream(caption)
    columns = [for_stream(name) for name in columns]
    right = [for_stream(name) for name in right]
    rows = [[for_stream(cell) for cell in row] for row in rows]
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
    """Progress over ``total`` steps, on standard error when it is a terminal.

    A context manager: :meth:`advance` counts steps (with an optional status,
    e.g. the loss), :meth:`describe` changes what is being done. With rich, a
    bar; without, one line rewritten in place at most ten times a second.
    The display is removed at the end. When standard error is not a terminal,
    or ``enabled`` is false, nothing is written.
    """

    def __init__(self, total: int, description: str, enabled: bool = True) -> None:
        self.total, self.description, self.status = total, description, ""
        self.done = 0
        self._stream = sys.stderr
        self._bar: Any = None
        self._task: Any = None
        self._plain = False
        self._start = self._last = 0.0
        self._width = 0
        isatty = getattr(self._stream, "isatty", None)
        if not (enabled and isatty is not None and isatty()):
            return
        console = rich_console(self._stream)
        if console is None:
            self._plain = True
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=True,
        )

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, status="")
        self._show(force=True)
        return self

    def advance(self, steps: int = 1, status: str | None = None) -> None:
        """Count ``steps`` more done; ``status`` replaces the text after the count."""
        self.done += steps
        if status is not None:
            self.status = status
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, status=self.status)
        self._show(force=self.done >= self.total)

    def describe(self, description: str) -> None:
        """Say what is being done now."""
        self.description = description
        if self._bar is not None:
            self._bar.update(self._task, description=description)
        self._show(force=True)

    def _show(self, force: bool) -> None:
        if not self._plain:
            return
        now = time.perf_counter()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        line = for_stream(
            f"{self.description}  {self.done}/{self.total}  {now - self._start:.0f} s  {self.status}".rstrip(),
            self._stream,
        )
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self._plain and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()


def strict(document: Any) -> Any:
    """``document`` with its non-finite floats as the strings "nan", "inf", "-inf".

    Examples
    --------
    >>> strict({"loss": float("nan"), "steps": [1.0, float("-inf")]})
    {'loss': 'nan', 'steps': [1.0, '-inf']}
    """
    if isinstance(document, float) and not math.isfinite(document):
        return repr(document)
    if isinstance(document, dict):
        return {key: strict(value) for key, value in document.items()}
    if isinstance(document, (list, tuple)):
        return [strict(value) for value in document]
    return document


JSON_HELP = 'print JSON instead of tables (non-finite numbers as "nan", "inf", "-inf")'


def json_text(document: Any) -> str:
    """``document`` as strict JSON, indented (see :func:`strict`)."""
    return json.dumps(strict(document), indent=2, allow_nan=False)


def emit_json(document: Any) -> None:
    """Print ``document`` as strict JSON on standard output."""
    sys.stdout.write(json_text(document) + "\n")
