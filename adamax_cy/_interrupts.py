"""Signals held back across a block that must finish once it has started."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

try:  # the C functions under the signal module, without its enum conversions (~20 us)
    import _signal as _handlers  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - not CPython
    _handlers = signal  # type: ignore[no-redef]

#: Every signal a Python handler may be installed for.
_SIGNALS = tuple(
    int(s) for s in signal.valid_signals()
    if s not in {getattr(signal, "SIGKILL", None), getattr(signal, "SIGSTOP", None)}
)


class deferred_signals:
    """Run the block to its end before any Python signal handler runs.

    A compiled step writes the arrays with the GIL released, and Python
    runs the handler of a signal that arrived meanwhile (Ctrl-C's, which
    raises KeyboardInterrupt, or one that saves a checkpoint on a
    preemption notice) at its next chance, which may fall between writing
    the arrays and counting the step. Inside this block each signal with a
    Python handler is only recorded; on leaving it, the handlers are
    restored and called for the recorded signals, in order. Only the main
    thread runs handlers, so elsewhere the block runs as it is.
    """

    __slots__ = ("previous", "received")

    def __enter__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.received: list[tuple[int, FrameType | None]] = []
        if threading.get_ident() != threading.main_thread().ident:  # (after a fork too)
            return
        for signum in _SIGNALS:
            handler = _handlers.getsignal(signum)
            if callable(handler):
                try:
                    _handlers.signal(signum, self._record)
                except ValueError:  # not the main interpreter
                    return
                self.previous[signum] = handler

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received.append((signum, frame))

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self.previous.items():
            _handlers.signal(signum, handler)
        for signum, frame in self.received:
            self.previous[signum](signum, frame)
