"""Output disk files shared by ``convert`` and ``restore-clonezilla``: their names, and the
raw→qcow2 step (``qemu-img convert`` skips holes and zero clusters, so a sparse raw
becomes a thin qcow2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..errors import ConversionError


def output_paths(output: Path, count: int) -> list[Path]:
    """``OUT`` for the system (first) disk, then ``OUT-2``, ``OUT-3`` … before the suffix."""
    return [output] + [output.with_name(f"{output.stem}-{i}{output.suffix}")
                       for i in range(2, count + 1)]


def system_first(count: int, system: int) -> list[int]:
    """The order of the output disks: the system disk (an index of the sources) first,
    the others after it in their own order.  Output ``k`` is source ``order[k]``."""
    return [system] + [i for i in range(count) if i != system]


def qemu_img_convert(qemu_img: str, source: Path, source_fmt: str, dest: Path,
                     fmt: str, *, name: Path | None = None) -> None:
    """Write ``source`` as ``dest`` in ``fmt`` (progress on a terminal); one-line errors
    naming ``name`` (the final path, when ``dest`` is its ``.partial``)."""
    cmd = [qemu_img, "convert", "-f", source_fmt, "-O", fmt]
    if sys.stderr.isatty():
        cmd.append("-p")
    cmd += [str(source), str(dest)]
    proc = subprocess.run(cmd, stdout=sys.stderr if "-p" in cmd else subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["qemu-img convert failed"])[-1]
        raise ConversionError(f"writing {name or dest}: {msg}")
