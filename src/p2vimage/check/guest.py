"""A read-only view of the guest for the checks: hives, version, and (when there is a
disk) its files.

Checks take this view rather than a libguestfs handle so the registry logic runs the
same on a bare hive file (the real hives of the test data, where file questions have
no answer: ``None``) as on a disk image.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from ..formats import pe
from ..formats.partition_table import DiskLayout
from ..guest import files
from ..guest.registry import Hive
from ..windows.emulated_storage import image_file

MACHINES = {"x86": 0x14C, "x64": 0x8664, "arm64": 0xAA64}


@dataclass
class GuestView:
    system: Hive
    software: Hive | None
    control_sets: list[str]  # the bootable ones, Default first
    major: int | None
    minor: int | None
    arch: str | None
    systemroot: str | None = None  # guest path, e.g. /WINDOWS
    g: Any = None  # libguestfs handle with the root mounted read-only, or None
    default_missing: str | None = None  # Select\Default names this absent control set
    system_drive: str = "C"
    layout: DiskLayout | None = None  # the system disk's partitions, read on the host
    _resolved: dict[str, str | None] = field(default_factory=dict)
    # guest folder -> [(path, INF text, upper-cased text)], read once (check.drivers)
    inf_cache: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    @property
    def version(self) -> tuple[int, int]:
        return (self.major or 0, self.minor or 0)

    @property
    def has_files(self) -> bool:
        return self.g is not None

    @property
    def driver_database(self) -> bool:
        return self.system.node("DriverDatabase") is not None

    def driver_path(self, image_path: str | None, service: str) -> str:
        return image_file(self.systemroot or "/WINDOWS", image_path, service)

    def resolve(self, path: str) -> str | None:
        """The real (case-matched) path of a guest file, None when absent."""
        if path not in self._resolved:
            self._resolved[path] = files.resolve(self.g, path) if self.g is not None else None
        return self._resolved[path]

    def exists(self, path: str) -> bool | None:
        """True/False on a disk; None when only hives were given."""
        return None if self.g is None else self.resolve(path) is not None

    def read(self, path: str, size: int, offset: int = 0) -> bytes | None:
        real = self.resolve(path)
        if real is None:
            return None
        try:
            return self.g.pread(real, size, offset)
        except RuntimeError:
            return None

    def file_size(self, path: str) -> int | None:
        real = self.resolve(path)
        try:
            return self.g.filesize(real) if real is not None else None
        except RuntimeError:
            return None

    def read_all(self, path: str, limit: int = 64 << 20) -> bytes | None:
        size = self.file_size(path)
        if size is None or size > limit:
            return None
        try:
            return self.g.read_file(self.resolve(path))
        except RuntimeError:
            return None

    def list_dir(self, path: str) -> list[str]:
        return files.list_dir(self.g, path) if self.g is not None else []

    def pe_problem(self, path: str) -> str | None:
        """Why the file at ``path`` cannot be this guest's kernel driver, or None."""
        size = self.file_size(path)
        if size is None:
            return "cannot be read"
        data = self.read(path, min(size, 4096))
        if data is None:
            return "cannot be read"
        try:
            machine = pe.read_machine(data)
        except pe.PEError as exc:
            return str(exc)
        want = MACHINES.get(self.arch or "")
        if want is not None and machine != want:
            names = {v: k for k, v in MACHINES.items()}
            return (f"built for {names.get(machine, hex(machine))}, "
                    f"the guest is {self.arch}")
        return None

    def is_default(self, cs: str) -> bool:
        """The control set the boot loader uses (errors there; warnings for the others)."""
        return bool(self.control_sets) and cs == self.control_sets[0]

    def join_root(self, *parts: str) -> str:
        return posixpath.join(self.systemroot or "/WINDOWS", *parts)
