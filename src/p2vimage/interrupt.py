"""SIGINT/SIGTERM handling that survives libguestfs callbacks, and works with threads.

A KeyboardInterrupt raised while libguestfs is running one of our Python
callbacks is printed and swallowed by the C binding, so the job would go on
to completion.  The handler therefore also records the signal; long-running
code calls :func:`check` between steps, and the CLI checks once more before
reporting success.

Threads: Python runs signal handlers in the main thread only, and only the
main thread may install them (``signal.signal`` raises ValueError elsewhere).
So :func:`handling_signals` installs the handlers when entered in the main
thread (the CLI, or a library call made there) and is a no-op in other
threads, where library calls must simply work.  The record is process-wide:
a signal caught by the main thread's handlers makes *every* running job —
those in worker threads too — stop at its next :func:`check` and clean up.
An application that runs jobs only in worker threads (its main thread waiting
on futures, so a Ctrl-C there is a plain KeyboardInterrupt) calls
:func:`request_stop` to get the same effect, e.g. in its ``except
KeyboardInterrupt``.  Nested use (the CLI around ``convert()``) installs once.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import Interrupted

_lock = threading.Lock()
_received: list[str] = []
_depth = 0  # nesting of handling_signals() in the main thread


def _handler(signum: int, _frame: Any) -> None:
    name = signal.Signals(signum).name
    _received.append(name)
    raise KeyboardInterrupt(name)


def request_stop(reason: str = "SIGINT") -> None:
    """Make every running job stop at its next check (from any thread), until
    :func:`clear_stop` or the next command entered in the main thread."""
    _received.append(reason)  # list.append is atomic; a handler may run it too


def clear_stop() -> None:
    """Let new jobs run again after :func:`request_stop`."""
    with _lock:
        _received.clear()


@contextmanager
def handling_signals() -> Iterator[None]:
    """Install the SIGINT/SIGTERM handlers for the duration of one command.

    The C binding reports an exception raised in a callback through
    ``sys.excepthook``; the one we install keeps our own KeyboardInterrupt
    quiet (it was recorded, and :func:`check` turns it into Interrupted), so
    the user sees one error line, not a trace.

    The outermost entry forgets signals of earlier commands; outside the main
    thread nothing is installed (see the module docstring).
    """
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _lock:
        outermost = _depth == 0
        _depth += 1
    if not outermost:
        try:
            yield
        finally:
            with _lock:
                _depth -= 1
        return
    with _lock:
        _received.clear()
    old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    old_hook = sys.excepthook

    def hook(etype: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(etype, KeyboardInterrupt) and _received:
            return
        old_hook(etype, value, tb)

    sys.excepthook = hook
    try:
        yield
    finally:
        sys.excepthook = old_hook
        for s, h in old.items():
            signal.signal(s, h)
        with _lock:
            _depth -= 1


def received() -> bool:
    return bool(_received)


def as_error() -> Interrupted:
    name = _received[0] if _received else "SIGINT"
    return Interrupted(f"interrupted by {name}; nothing was written")


def check() -> None:
    """Raise Interrupted if a signal arrived, even one a C callback swallowed."""
    if _received:
        raise as_error()
