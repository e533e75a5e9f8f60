"""What ``batch run`` shows: the live table redrawn in place, plain lines per change."""

from __future__ import annotations

import io

from p2vimage.batch.display import LiveTable, ProgressLines
from p2vimage.batch.engine import MachineResult


def rows(state_b: str, attempts_b: int = 1) -> list[MachineResult]:
    return [MachineResult("filesrv01", "running", "hv07", 1, elapsed=65.2, phase="copy: 10%"),
            MachineResult("dc01", state_b, "hv08", attempts_b, exit_code=5,
                          message="output busy")]


def test_live_table_redraws_over_itself() -> None:
    out = io.StringIO()
    table = LiveTable(out)
    table(rows("queued"))
    first = out.getvalue()
    assert first.splitlines()[0].split() == ["machine", "state", "host", "attempt", "phase",
                                             "elapsed"]
    assert "filesrv01  running  hv07" in first and "65s" in first and "copy: 10%" in first
    table(rows("running", 2))
    # the second drawing moves the cursor up over the three lines of the first
    assert out.getvalue()[len(first):].startswith("\x1b[3F\x1b[J")


def test_progress_lines_print_each_change_once() -> None:
    out = io.StringIO()
    show = ProgressLines(out)
    show(rows("queued"))
    show(rows("queued"))
    show(rows("running", 2))
    show(rows("failed", 2))
    assert out.getvalue().splitlines() == [
        "batch: filesrv01 running on hv07",
        "batch: dc01 queued: output busy",
        "batch: dc01 running on hv08 (attempt 2)",
        "batch: dc01 failed (attempt 2): output busy",
    ]
