"""The checks' view of the guest: the job's read-only :class:`GuestView` plus the
version facts and helpers the checks share (driver file paths, PE machine checks).

Checks take this view rather than a libguestfs handle so the registry logic runs the
same on a bare hive file (the real hives of the test data, where file questions have
no answer: ``None``) as on a disk image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..formats import pe
from ..guest.view import GuestView
from ..windows.emulated_storage import image_file

MACHINES = {"x86": 0x14C, "x64": 0x8664, "arm64": 0xAA64}


@dataclass
class CheckView(GuestView):
    default_missing: str | None = None  # Select\Default names this absent control set
    system_drive: str = "C"
    # guest folder -> [(path, INF text, upper-cased text)], read once (check.drivers)
    inf_cache: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    def driver_path(self, image_path: str | None, service: str) -> str:
        return image_file(self.system_root or "/WINDOWS", image_path, service)

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
