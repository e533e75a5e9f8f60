"""targets/atomic.py: claimed outputs (one job per .partial), on real files; no appliance."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from p2vimage.errors import OutputBusyError, UsageError
from p2vimage.targets.atomic import AtomicOutputs, partial_path


def test_second_claim_fails_and_first_finishes_intact(tmp_path: Path) -> None:
    dest = tmp_path / "x.qcow2"
    first = AtomicOutputs([dest], overwrite=False)
    first.partial(dest).write_bytes(b"first job's data")
    with pytest.raises(OutputBusyError, match="being written by another conversion"):
        AtomicOutputs([dest], overwrite=True)
    assert first.partial(dest).read_bytes() == b"first job's data"  # not truncated, not gone
    first.commit()
    assert dest.read_bytes() == b"first job's data"
    assert not partial_path(dest).exists()
    # Committed: a later job sees the output, and without --overwrite leaves no trace.
    with pytest.raises(UsageError, match="already exists"):
        AtomicOutputs([dest], overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.qcow2"]


def test_claims_from_threads_one_wins(tmp_path: Path) -> None:
    dest = tmp_path / "same.raw"
    results: list[object] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        try:
            results.append(AtomicOutputs([dest], overwrite=True))
        except OutputBusyError as exc:
            results.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if isinstance(r, AtomicOutputs)]
    assert len(winners) == 1 and len(results) == 8
    winners[0].discard()
    assert list(tmp_path.iterdir()) == []


def test_claim_held_by_another_process(tmp_path: Path) -> None:
    dest = tmp_path / "x.img"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; "
         "from p2vimage.targets.atomic import AtomicOutputs; "
         f"a = AtomicOutputs([Path({str(dest)!r})], overwrite=False); "
         "print('held', flush=True); sys.stdin.read(); a.discard()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputBusyError):
            AtomicOutputs([dest], overwrite=True)
    finally:
        holder.communicate("", timeout=30)
    assert list(tmp_path.iterdir()) == []
    # The holder is gone (its lock with it): the claim now succeeds.
    with AtomicOutputs([dest], overwrite=False):
        assert partial_path(dest).exists()
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_taken_over_and_symlink_refused(tmp_path: Path) -> None:
    dest = tmp_path / "x.img"
    partial_path(dest).write_bytes(b"left by a SIGKILLed run")
    with AtomicOutputs([dest], overwrite=False) as a:
        assert a.partial(dest).stat().st_size == 0  # truncated, ours now
    assert list(tmp_path.iterdir()) == []
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    os.symlink(victim, partial_path(dest))
    with pytest.raises(UsageError, match="cannot create"):
        AtomicOutputs([dest], overwrite=False)
    assert victim.read_bytes() == b"keep"


