"""Signals held back across a block that must finish once it has started."""

from __future__ import annotations

import collections
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


def _install(signums: list[int], handlers: list[Any]) -> BaseException | None:
    """Set each signal's handler; return the first exception a handler raised meanwhile.

    :func:`signal.signal` runs the handlers of signals already received
    before it changes anything, and one of them may raise: the whole list is
    then set again (setting a handler twice is harmless) until it is done.
    The list is set by one call from C, so no Python handler runs between
    two of its items but inside :func:`signal.signal` itself.
    """
    error = None
    for _ in range(_RETRIES):
        try:
            collections.deque(map(_handlers.signal, signums, handlers), 0)
            return error
        except BaseException as e:  # a handler raised (KeyboardInterrupt, SystemExit...)
            error = e if error is None else error
    raise error  # type: ignore[misc]  # (not a handler's: signal.signal's own error)


#: Attempts of :func:`_install`: a handler raises once per signal received, so
#: only an error of :func:`signal.signal` itself fails this many in a row.
_RETRIES = 1000


class deferred_signals:
    """Run the block to its end before any Python signal handler runs.

    A compiled step may write the arrays with the GIL released, and Python
    runs the handler of a signal that arrived meanwhile (Ctrl-C's, which
    raises KeyboardInterrupt, or one that saves a checkpoint on a
    preemption notice) at its next chance, which may fall between writing
    the arrays and counting the step. Inside this block each signal with a
    Python handler is only recorded; on leaving it, the handlers are
    restored and called for the recorded signals, in order. Only the main
    thread runs handlers, so elsewhere the block runs as it is.

    A handler that raises while the handlers are being swapped in or back
    (the block's or any other) never leaves one of them replaced: all are
    restored first, then every recorded signal is handled, and the first
    exception a handler raised is raised once all of them have run.
    """

    __slots__ = ("signums", "previous", "received", "active")

    def __enter__(self) -> None:
        self.signums: list[int] = []
        self.previous: list[Any] = []
        self.received: list[tuple[int, FrameType | None]] = []
        self.active = False
        if threading.get_ident() != threading.main_thread().ident:  # (after a fork too)
            return
        signums = list(_python_handled())
        if not signums:
            return
        previous = list(map(_getsignal, signums))
        try:  # (setting a handler to itself changes nothing)
            _handlers.signal(signums[0], previous[0])
        except ValueError:  # not the main interpreter
            return
        self.signums, self.previous, self.active = signums, previous, True
        try:
            _install(signums, [self._record] * len(signums))
        except BaseException:  # a handler raised part-way: put every one back
            self.active = False
            _install(signums, previous)
            raise

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.active:
            self.received.append((signum, frame))
            return
        # Left installed by an exception at an unlucky moment (the window is a
        # few instructions wide): behave as the handler it replaced, and put
        # that handler back.
        handler = self.previous[self.signums.index(signum)]
        _handlers.signal(signum, handler)
        if callable(handler):
            handler(signum, frame)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.active:
            return
        # The handlers go back while the block still records: a signal that
        # arrives meanwhile for one not yet put back is handled below, and
        # none can find its handler put back and raise before the others are.
        first = _install(self.signums, self.previous)
        self.active = False
        handler_of = dict(zip(self.signums, self.previous))
        for signum, frame in self.received:
            try:
                handler_of[signum](signum, frame)
            except BaseException as e:
                first = e if first is None else first
        if first is not None:
            raise first
