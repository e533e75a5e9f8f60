"""Progress of long work, as values handed to a callback: the library never draws.

``convert(..., progress=callback)`` calls ``callback(Progress(...))`` from the thread
running the job, a few times a second at most while bytes move, and once at the end
of each phase with ``done == total``.  The CLI turns these into its terminal line;
another tool may log them, update a UI, or ignore them.  A callback that raises
stops the job (the exception propagates).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` in ``phase``: bytes (``"copy disk 1/2"``, ``"restore sda"``),
    or with ``unit="steps"`` the phases of a job without bulk data (``check``:
    ``"check: inspect"`` is step 1 of 3)."""

    phase: str
    done: int
    total: int
    seconds: float = 0.0  # since the phase started
    unit: str = "bytes"  # "bytes" | "steps"

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


def check_callback(progress: object) -> None:
    """A ``progress=`` argument is None or callable: refused before any work otherwise."""
    if progress is not None and not callable(progress):
        from .errors import UsageError

        raise UsageError(f"progress: a callable taking a Progress, or None, "
                         f"not {type(progress).__name__}")


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
        self._last = -math.inf  # the first add() reports, however long the host has been up

    def add(self, n: int) -> None:
        self.done += n
        if self.callback is None:
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.callback(Progress(self.phase, self.done, self.total, now - self.t0))

    def finish(self, *, total_was_bound: bool = False) -> None:
        """The last report of the phase: ``done == total``.  ``total_was_bound``: the total
        was an upper bound (a Clonezilla restore's), so it ends at what was done."""
        if total_was_bound or self.total < self.done:
            self.total = self.done
        if self.callback is not None:
            self.callback(Progress(self.phase, self.done, self.total,
                                   time.monotonic() - self.t0))


class Steps:
    """Reports the phases of a job as steps: ``next()`` as each phase starts."""

    def __init__(self, callback: ProgressCallback | None, job: str,
                 phases: tuple[str, ...]) -> None:
        self.callback, self.job, self.phases = callback, job, phases
        self.done = 0
        self.t0 = time.monotonic()

    def _say(self, phase: str) -> None:
        if self.callback is not None:
            self.callback(Progress(f"{self.job}: {phase}", self.done, len(self.phases),
                                   time.monotonic() - self.t0, unit="steps"))

    def next(self) -> None:
        """The next phase starts (``done`` counts the phases finished before it)."""
        self._say(self.phases[min(self.done, len(self.phases) - 1)])
        self.done += 1

    def finish(self) -> None:
        self.done = len(self.phases)
        self._say("done")
