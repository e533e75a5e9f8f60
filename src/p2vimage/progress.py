"""Progress of long work, as values handed to a callback: the library never draws.

``convert(..., progress=callback)`` calls ``callback(Progress(...))`` from the thread
running the job, a few times a second at most while bytes move, and once at the end
of each phase with ``done == total``.  The CLI turns these into its terminal line;
another tool may log them, update a UI, or ignore them.  A callback that raises
stops the job (the exception propagates).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` bytes in ``phase`` (e.g. ``"copy disk 1/2"``, ``"restore sda"``)."""

    phase: str
    done: int
    total: int
    seconds: float = 0.0  # since the phase started

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far, when there is one."""
        r = self.rate
        return (self.total - self.done) / r if r > 0 else None


ProgressCallback = Callable[[Progress], None]


class Meter:
    """Counts bytes of one phase and reports them to a callback, throttled."""

    def __init__(self, callback: ProgressCallback | None, phase: str, total: int,
                 interval: float = 0.25) -> None:
        self.callback = callback
        self.phase = phase
        self.total = total
        self.done = 0
        self.interval = interval
        self.t0 = time.monotonic()
        self._last = 0.0

    def add(self, n: int) -> None:
        self.done += n
        if self.callback is None:
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.callback(Progress(self.phase, self.done, self.total, now - self.t0))

    def finish(self) -> None:
        if self.callback is not None:
            self.callback(Progress(self.phase, self.done, max(self.total, self.done),
                                   time.monotonic() - self.t0))
