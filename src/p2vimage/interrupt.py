"""Stopping a job: a per-job :class:`Cancel` token, and the CLI's SIGINT/SIGTERM handling.

**One job.**  Every public call (``convert``, ``check``, ``inspect``,
``restore_clonezilla``) takes ``cancel=``: a :class:`Cancel` (a
:class:`threading.Event` with a reason) that another thread sets to stop *that*
job.  The call runs inside :func:`job`, which makes the token the current one for
its thread (a :mod:`contextvars` variable; the threads the job starts itself are
started with :func:`start_thread`, so they see it too).  Long-running code calls
:func:`check` between steps (between copy requests, Clonezilla chunks, pipeline
phases); a set token makes it raise :class:`~p2vimage.errors.Interrupted`, and the
job unwinds, removing its partial outputs.  A blocking libguestfs call is not cut
short: the job stops at the next check after it.

**Signals are the front end's.**  A library call installs no signal handler and no
``sys.excepthook``.  The CLI (or an application that wants the same behaviour)
wraps its work in :func:`handling_signals`: SIGINT/SIGTERM are then recorded
process-wide and raise KeyboardInterrupt in the main thread, and every job's next
:func:`check` stops it.  The record matters because a KeyboardInterrupt raised while
libguestfs runs one of our Python callbacks is printed and swallowed by the C
binding, so the job would go on; the hook installed there keeps that print quiet.

:func:`request_stop` records a stop for every job in the process (what an
application calls on Ctrl-C when its main thread only waits on workers);
:func:`clear_stop` lets new jobs run again.
"""

from __future__ import annotations

import contextvars
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import Interrupted, UsageError

_lock = threading.Lock()
_received: list[str] = []  # process-wide: signals recorded by handling_signals, request_stop
_depth = 0  # nesting of handling_signals() in the main thread


class Cancel(threading.Event):
    """A token that stops the one job it is passed to (``cancel=`` of a public call).

    ``cancel.cancel("user pressed Stop")`` (or plain ``set()``) may be called from
    any thread; the job raises :class:`~p2vimage.errors.Interrupted` at its next
    check and removes what it had started to write.  A token can serve several
    calls (a batch stopping all of them at once); once set it stays set.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self.set()


_current: contextvars.ContextVar[Cancel | None] = contextvars.ContextVar(
    "p2vimage_cancel", default=None)


@contextmanager
def job(cancel: Cancel | threading.Event | None) -> Iterator[None]:
    """Make ``cancel`` the current job's token in this thread (and in threads started
    with :func:`start_thread` inside it); a job nested in another keeps the outer
    token too when it has none of its own.  A plain :class:`threading.Event` is
    accepted as well."""
    if cancel is None:
        yield
        return
    if not isinstance(cancel, threading.Event):
        raise UsageError(f"cancel: a p2vimage.Cancel or threading.Event, "
                         f"not {type(cancel).__name__}")
    token = _current.set(cancel)  # type: ignore[arg-type]
    try:
        check()  # a token set before the call: nothing starts
        yield
    finally:
        _current.reset(token)


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A started daemon thread that runs ``target`` in a copy of the caller's context,
    so :func:`check` there sees the job's token."""
    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(target,), name=name, daemon=True)
    thread.start()
    return thread


def _handler(signum: int, _frame: Any) -> None:
    name = signal.Signals(signum).name
    _received.append(name)
    raise KeyboardInterrupt(name)


def request_stop(reason: str = "SIGINT") -> None:
    """Make every running job stop at its next check (from any thread), until
    :func:`clear_stop` or the next :func:`handling_signals` entered in the main thread."""
    _received.append(reason)  # list.append is atomic; a handler may run it too


def clear_stop() -> None:
    """Let new jobs run again after :func:`request_stop`."""
    with _lock:
        _received.clear()


@contextmanager
def handling_signals() -> Iterator[None]:
    """Install the SIGINT/SIGTERM handlers for the duration of one command (the CLI's).

    The C binding reports an exception raised in a callback through
    ``sys.excepthook``; the one installed here keeps our own KeyboardInterrupt
    quiet (it was recorded, and :func:`check` turns it into Interrupted), so the
    user sees one error line, not a trace.  The outermost entry forgets signals of
    earlier commands; outside the main thread nothing is installed (Python allows
    signal handlers in the main thread only).
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
    """A stop is recorded for this job: a signal, :func:`request_stop`, or its token."""
    cancel = _current.get()
    return bool(_received) or (cancel is not None and cancel.is_set())


def as_error() -> Interrupted:
    if _received:
        return Interrupted(f"interrupted by {_received[0]}; nothing was written")
    cancel = _current.get()
    if cancel is not None and cancel.is_set():
        reason = getattr(cancel, "reason", "cancelled")
        return Interrupted(f"{reason}; nothing was written")
    return Interrupted("interrupted by SIGINT; nothing was written")


def check() -> None:
    """Raise Interrupted if this job was cancelled or a stop was recorded (even a
    signal a C callback swallowed)."""
    if received():
        raise as_error()
