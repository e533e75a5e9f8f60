"""``restore-clonezilla``: the disks of a Clonezilla image directory as raw or qcow2 files.

The command around :mod:`p2vimage.sources.clonezilla.restore`, which rebuilds one
disk into a file: here the outputs are named (``OUT``, then ``OUT-2``, ``OUT-3`` …),
refused inside the image directory, claimed (:class:`~p2vimage.targets.atomic.AtomicOutputs`)
and their space checked before a byte is written; they appear together, and only when
every disk was restored with every checksum verified.  :func:`restore_clonezilla` is
the public ``p2vimage.restore_clonezilla``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import interrupt
from .errors import ConversionError, TemporaryError, UsageError
from .progress import ProgressCallback, check_callback
from .sources.clonezilla import metadata
from .sources.clonezilla.metadata import DiskImage
from .sources.clonezilla.restore import PartitionResult, raw_bound, restore_disk
from .targets import space
from .targets.atomic import AtomicOutputs
from .targets.disk import output_paths

FORMATS = ("raw", "qcow2")


@dataclass
class RestoreResult:
    source: str
    disk: str
    output: str
    format: str
    size: int
    partitions: list[PartitionResult]
    bytes_written: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    other_disks: list[RestoreResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_lines(self) -> list[str]:
        lines = [f"Restored {self.source} ({self.disk}, {self.size / (1 << 30):.2f} GiB) "
                 f"to {self.output} ({self.format})"]
        for p in self.partitions:
            rate = p.used_bytes / max(p.seconds, 1e-6) / (1 << 20)
            lines.append(
                f"  {p.name}: {p.fs}, {p.used_bytes / (1 << 20):,.1f} MiB used, "
                f"{p.compression} in {p.chunks} file(s), checksum {p.checksum}, "
                f"{p.seconds:.1f}s ({rate:,.0f} MiB/s)"
            )
        lines += [f"Warning: {w}" for w in self.warnings]
        for other in self.other_disks:
            lines += other.summary_lines()
        return lines


def _restore_one(img: DiskImage, partial: Path, format: str, out: Path,
                 progress: ProgressCallback | None) -> list[PartitionResult]:
    try:
        return restore_disk(img, partial, format, progress=progress)
    except (ConversionError, TemporaryError) as exc:
        raise type(exc)(str(exc).replace(str(partial), str(out))) from None


def restore_needs(imgs: list[DiskImage], outs: list[Path], format: str) -> list[space.Need]:
    """Space on the output's filesystem: every disk (a qcow2 is written directly)."""
    bounds = [raw_bound(img) for img in imgs]
    needs = []
    for img, o, b in zip(imgs, outs, bounds, strict=True):
        size = b if format == "raw" else b + space.qcow2_overhead(img.size)
        needs.append(space.Need(o.parent, size, f"the restored disk {o.name}"))
    return needs


def restore_clonezilla(
    directory: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    format: str = "raw",
    disk: str | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: interrupt.Cancel | threading.Event | None = None,
) -> RestoreResult:
    """Rebuild the disks of a Clonezilla image directory as raw or qcow2 files.

    Every disk (``output``, then ``OUT-2``, ``OUT-3`` … in the ``disk`` file's
    order), or only ``disk``.  Returns a :class:`RestoreResult` (further disks in
    ``other_disks``); the outputs appear only when every disk was restored with every
    checksum verified, all together or not at all.

    ``progress`` is called with :class:`~p2vimage.progress.Progress` values (phase
    ``restore sda``: used bytes written) from the calling thread; ``cancel`` (a
    :class:`~p2vimage.interrupt.Cancel`) stops this call only, leaving no output.
    """
    check_callback(progress)
    with interrupt.job(cancel):
        return _restore(directory, output, format, disk, overwrite, progress)


def _restore(directory: str | os.PathLike[str], output: str | os.PathLike[str], format: str,
             disk: str | None, overwrite: bool,
             progress: ProgressCallback | None) -> RestoreResult:
    t0 = time.monotonic()
    if format not in FORMATS:
        raise UsageError(f"--format {format}: use raw or qcow2")
    out = Path(output)
    src = Path(directory)
    names = [disk] if disk is not None or not metadata.looks_like_clonezilla(src) else \
        metadata.list_disks(src) or [None]
    imgs = [metadata.load(directory, name) for name in names]
    outs = output_paths(out, len(imgs))
    for o in outs:
        if o.resolve().is_relative_to(imgs[0].directory.resolve()):
            raise UsageError(f"{o}: never write into the image directory")
    results: list[RestoreResult] = []
    with AtomicOutputs(outs, overwrite=overwrite) as atomic:
        space.check(restore_needs(imgs, outs, format))
        for img, o in zip(imgs, outs, strict=True):
            t1 = time.monotonic()
            partial = atomic.partial(o)
            parts = _restore_one(img, partial, format, o, progress)
            results.append(RestoreResult(
                source=str(img.directory), disk=img.disk, output=str(o), format=format,
                size=img.size, partitions=parts, bytes_written=partial.stat().st_blocks * 512,
                seconds=round(time.monotonic() - t1, 3), warnings=img.warnings,
            ))
            interrupt.check()
        atomic.commit()
    first = results[0]
    first.other_disks = results[1:]
    first.seconds = round(time.monotonic() - t0, 3)
    return first
