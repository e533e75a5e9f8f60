"""What ``batch run`` shows while it runs: a live table on a terminal, plain lines else.

Both go to stderr (stdout is for ``--json``).  The table is redrawn in place (cursor up,
clear to end of screen) at most twice a second; the plain form prints one line per
change of a machine's state, so a log file or a CI console stays readable.
"""

from __future__ import annotations

import sys
from typing import TextIO

from .engine import MachineResult

COLUMNS = ("machine", "state", "host", "attempt", "phase", "elapsed")


def _cells(r: MachineResult) -> tuple[str, ...]:
    elapsed = f"{r.elapsed:,.0f}s" if r.elapsed else ""
    return (r.name, r.state, r.host or "", str(r.attempts or ""), r.phase or "", elapsed)


class LiveTable:
    """The table of every machine, redrawn over itself."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.drawn = 0

    def __call__(self, rows: list[MachineResult]) -> None:
        cells = [COLUMNS, *(_cells(r) for r in rows)]
        widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
        text = "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(COLUMNS)))
                         .rstrip() for c in cells)
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
        self.stream.write(text + "\n")
        self.stream.flush()
        self.drawn = len(cells)


class ProgressLines:
    """One line per state change: ``batch: dc01 running on hv07 (attempt 1)``."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.seen: dict[str, tuple[str, int]] = {}

    def __call__(self, rows: list[MachineResult]) -> None:
        for r in rows:
            key = (r.state, r.attempts)
            if self.seen.get(r.name) == key:
                continue
            self.seen[r.name] = key
            where = f" on {r.host}" if r.host and r.state == "running" else ""
            attempt = f" (attempt {r.attempts})" if r.attempts > 1 else ""
            why = f": {r.message}" if r.message and r.state in ("failed", "queued") else ""
            self.stream.write(f"batch: {r.name} {r.state}{where}{attempt}{why}\n")
        self.stream.flush()
