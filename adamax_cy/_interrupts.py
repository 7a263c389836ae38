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

#: The signals a Python handler may be installed for, but the real-time ones
#: (looked up at every step, so kept to the ones programs use).
_SIGNALS = tuple(
    int(s) for s in signal.valid_signals()
    if s not in {getattr(signal, "SIGKILL", None), getattr(signal, "SIGSTOP", None)}
    and not getattr(signal, "SIGRTMIN", 1 << 30) <= s <= getattr(signal, "SIGRTMAX", -1)
)
_getsignal = _handlers.getsignal
#: The handlers last seen, and which of the signals have Python handlers then.
_seen: tuple[list[Any], tuple[int, ...]] = ([], ())


def _python_handled() -> tuple[int, ...]:
    """The signals whose handler is a Python callable now."""
    global _seen
    handlers = list(map(_getsignal, _SIGNALS))
    if handlers != _seen[0]:
        _seen = (handlers, tuple(s for s, h in zip(_SIGNALS, handlers) if callable(h)))
    return _seen[1]


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
        for signum in _python_handled():
            handler = _getsignal(signum)
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
