"""interrupt: a Cancel stops its own job only, in the threads that job starts too; the
process-wide stop (signals, request_stop) stops every job; nothing installed by a job."""

from __future__ import annotations

import signal
import sys
import threading

import pytest

from p2vimage import interrupt
from p2vimage.errors import Interrupted, UsageError


def test_a_set_token_stops_its_job_only() -> None:
    mine, other = interrupt.Cancel(), interrupt.Cancel()
    mine.cancel("stop pressed")
    with interrupt.job(other):
        interrupt.check()  # another job's token is not this job's
    with pytest.raises(Interrupted, match="^stop pressed; nothing"), interrupt.job(mine):
        interrupt.check()
    interrupt.check()  # outside any job: nothing recorded process-wide
    assert not interrupt.received()


def test_a_plain_event_is_accepted_and_anything_else_refused() -> None:
    ev = threading.Event()
    ev.set()
    with pytest.raises(Interrupted, match="^cancelled"), interrupt.job(ev):
        interrupt.check()
    with pytest.raises(UsageError, match="cancel"), interrupt.job(True):  # type: ignore[arg-type]
        pass


def test_a_token_set_before_the_call_stops_it_at_once() -> None:
    done = interrupt.Cancel()
    done.cancel("too late")
    with pytest.raises(Interrupted, match="^too late"), interrupt.job(done):
        raise AssertionError("the job body must not run")


def test_threads_started_by_the_job_see_its_token() -> None:
    cancel = interrupt.Cancel()
    seen: list[BaseException | None] = []

    def worker() -> None:
        try:
            interrupt.check()
            seen.append(None)
        except Interrupted as exc:
            seen.append(exc)

    with interrupt.job(cancel):
        cancel.cancel("gone")
        interrupt.start_thread(worker, "t1").join()
        plain = threading.Thread(target=worker)  # not started through the job: no token
        plain.start()
        plain.join()
    assert isinstance(seen[0], Interrupted) and seen[1] is None


def test_request_stop_stops_every_job_until_cleared() -> None:
    try:
        interrupt.request_stop("SIGTERM")
        with pytest.raises(Interrupted, match="interrupted by SIGTERM"), \
                interrupt.job(interrupt.Cancel()):
            interrupt.check()
        with pytest.raises(Interrupted):
            interrupt.check()
    finally:
        interrupt.clear_stop()
    interrupt.check()


def test_handling_signals_installs_and_restores_in_the_main_thread_only() -> None:
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.excepthook)
    with interrupt.handling_signals():
        assert signal.getsignal(signal.SIGTERM) is not before[1]
        assert sys.excepthook is not before[2]
        inner: list = []
        t = threading.Thread(target=lambda: inner.append(
            interrupt.handling_signals().__enter__() is None))
        t.start()
        t.join()
        assert inner == [True]  # a no-op elsewhere, no ValueError
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM),
            sys.excepthook) == before


def test_a_signal_under_handling_signals_is_recorded_and_raised() -> None:
    with interrupt.handling_signals():
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        assert interrupt.received()
        with pytest.raises(Interrupted, match="interrupted by SIGTERM"):
            interrupt.check()
    interrupt.clear_stop()
