"""Ctrl-C held back across a block that must finish once it has started."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

try:  # the C functions under the signal module, without its enum conversions (~20 us)
    import _signal as _handlers  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - not CPython
    _handlers = signal  # type: ignore[no-redef]

_SIGINT = int(signal.SIGINT)


class deferred_interrupts:
    """Run the block to its end even if SIGINT arrives; deliver it afterwards.

    A compiled step writes the arrays with the GIL released, and Python
    raises the KeyboardInterrupt of a Ctrl-C pressed meanwhile at its next
    chance, which may fall between writing the arrays and counting the
    step. Inside this block the signal is only recorded; on leaving it,
    the handler that was installed (by default the one raising
    KeyboardInterrupt) is restored and called. Only the main thread
    receives signals, so elsewhere, or when SIGINT is not handled in
    Python, the block runs as it is.
    """

    __slots__ = ("previous", "received")

    def __enter__(self) -> None:
        self.previous: Any = None
        self.received: list[FrameType | None] = []
        if threading.get_ident() != threading.main_thread().ident:  # (after a fork too)
            return
        previous = _handlers.getsignal(_SIGINT)
        if callable(previous):
            try:
                _handlers.signal(_SIGINT, self._record)
            except ValueError:  # not the main interpreter
                return
            self.previous = previous

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(frame)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.previous is None:
            return
        _handlers.signal(_SIGINT, self.previous)
        if self.received:
            self.previous(_SIGINT, self.received[0])
