"""SIGINT/SIGTERM handling that survives libguestfs callbacks.

A KeyboardInterrupt raised while libguestfs is running one of our Python
callbacks is printed and swallowed by the C binding, so the job would go on
to completion.  The handler therefore also records the signal; long-running
code calls :func:`check` between steps, and the CLI checks once more before
reporting success.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import Interrupted

_received: list[str] = []


def _handler(signum: int, _frame: Any) -> None:
    name = signal.Signals(signum).name
    _received.append(name)
    raise KeyboardInterrupt(name)


@contextmanager
def handling_signals() -> Iterator[None]:
    """Install the SIGINT/SIGTERM handlers for the duration of one command.

    The C binding reports an exception raised in a callback through
    ``sys.excepthook``; the one we install keeps our own KeyboardInterrupt
    quiet (it was recorded, and :func:`check` turns it into Interrupted), so
    the user sees one error line, not a trace.
    """
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


def received() -> bool:
    return bool(_received)


def as_error() -> Interrupted:
    name = _received[0] if _received else "SIGINT"
    return Interrupted(f"interrupted by {name}; nothing was written")


def check() -> None:
    """Raise Interrupted if a signal arrived, even one a C callback swallowed."""
    if _received:
        raise as_error()
