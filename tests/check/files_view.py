"""A :class:`CheckView` whose guest files are given in memory.

The checks' file questions (is this driver there? is it a PE of the right machine? which
INFs are staged?) go through the view; on bare hives they have no answer.  This view
answers them from a ``{guest path: bytes}`` map, matched case-insensitively as the real
view does, so a check's decisions about files can be tested on real hives without an
appliance (as ``tests/steps.FilesView`` does for the planning steps).  What is under test
is the check's logic; the appliance's file access has its own tests.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from p2vimage.check.guest import CheckView
from p2vimage.guest.registry import Hive


@dataclass
class FilesCheckView(CheckView):
    files: dict[str, bytes] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)  # every path resolved, in order

    @property
    def has_files(self) -> bool:
        return True

    def _dirs(self) -> dict[str, str]:
        out = {"/": "/"}
        for path in self.files:
            parent = posixpath.dirname(path)
            while parent not in ("", "/"):
                out.setdefault(parent.lower(), parent)
                parent = posixpath.dirname(parent)
        return out

    def resolve(self, path: str) -> str | None:
        self.asked.append(path)
        low = path.rstrip("/").lower() or "/"
        for real in self.files:
            if real.lower() == low:
                return real
        return self._dirs().get(low)

    def exists(self, path: str) -> bool | None:
        return self.resolve(path) is not None

    def is_file(self, path: str) -> bool:
        return self.resolve(path) in self.files

    def is_dir(self, path: str) -> bool:
        real = self.resolve(path)
        return real is not None and real not in self.files

    def read(self, path: str, size: int, offset: int = 0) -> bytes | None:
        real = self.resolve(path)
        return self.files[real][offset : offset + size] if real in self.files else None

    def file_size(self, path: str) -> int | None:
        real = self.resolve(path)
        return len(self.files[real]) if real in self.files else None

    def read_all(self, path: str, limit: int = 64 << 20) -> bytes | None:
        size = self.file_size(path)
        return None if size is None or size > limit else self.read(path, size)

    def list_dir(self, path: str) -> list[str]:
        real = self.resolve(path)
        if real is None or real in self.files:
            return []
        prefix = real.rstrip("/") + "/"
        names = {p[len(prefix):].split("/")[0] for p in [*self.files, *self._dirs().values()]
                 if p.startswith(prefix) and len(p) > len(prefix)}
        return sorted(names)


def files_view(system: Hive, control_sets: list[str], files: dict[str, bytes], *,
               software: Hive | None = None, system_root: str = "/WINDOWS",
               arch: str = "x86", major: int = 5, minor: int = 1,
               **kw) -> FilesCheckView:
    return FilesCheckView(system, software, control_sets, system_root, arch=arch,
                          major=major, minor=minor, files=files, **kw)
