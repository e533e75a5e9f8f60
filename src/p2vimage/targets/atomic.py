"""Outputs that appear whole or not at all.

Everything is written to ``NAME.partial`` beside the destination and renamed
only when the whole job succeeded; on any error, Ctrl-C or SIGTERM the
partial files are removed.  After SIGKILL at most a ``.partial`` remains,
never a file at the final path.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError


def partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


class AtomicOutputs:
    """A set of destinations committed together."""

    def __init__(self, destinations: list[Path], *, overwrite: bool) -> None:
        self.destinations = [Path(d) for d in destinations]
        for d in self.destinations:
            if not d.parent.is_dir():
                raise UsageError(f"{d}: the directory {d.parent} does not exist")
            if not os.access(d.parent, os.W_OK):
                raise UsageError(f"{d}: the directory {d.parent} is not writable")
            if (d.exists() or d.is_symlink()) and not overwrite:
                raise UsageError(f"{d} already exists (use --overwrite to replace it)")
            if d.is_dir():
                raise UsageError(f"{d} is a directory")
        self.committed = False

    def partial(self, dest: Path) -> Path:
        return partial_path(Path(dest))

    def commit(self) -> None:
        for d in self.destinations:
            p = self.partial(d)
            if p.exists():
                os.replace(p, d)
        self.committed = True

    def discard(self) -> None:
        for d in self.destinations:
            try:
                self.partial(d).unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> AtomicOutputs:
        self.discard()  # a stale .partial from a killed run
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self.committed:
            self.discard()
