"""Converted disks read back, all at once, in one read-only appliance.

What two conversions of the same source must agree on, to be "the same output" (the e2e
tests compare outputs made another way with a reference conversion): per disk,

- ``files``: the SHA-256 of every file of the system volume (one ``checksums_out`` call
  per disk: the appliance's own ``find | sha256sum``, not one call per file);
- ``hives``: the SHA-256 of the SYSTEM and SOFTWARE hives' full registry exports
  (``hivexregedit --export``: their content, not the hive files' layout);
- ``boot``: the boot sectors, the MBR's boot code (the disk's first 446 bytes) and the
  system volume's first sector (its boot sector: BPB and boot code).

One appliance (TCG, as in CI) holds every disk read-only, so N outputs cost one launch.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HIVES = ("system", "software")


@dataclass(frozen=True)
class Readback:
    files: dict[str, str]  # "/WINDOWS/system32/drivers/viostor.sys" -> sha256 hex
    hives: dict[str, str]  # "system", "software" -> sha256 hex of the registry export
    boot: dict[str, bytes]  # "mbr": the first 446 bytes, "volume": its first sector
    volume: str  # the system volume's partition name on its disk, e.g. "1"

    def file(self, guest_path: str) -> str | None:
        """The digest of ``guest_path`` matched case-insensitively, as Windows does (a
        plan names ``/WINDOWS/system32/...`` whatever case the volume keeps)."""
        want = guest_path.replace("\\", "/").lower()
        found = [v for k, v in self.files.items() if k.lower() == want]
        return found[0] if len(found) == 1 else None


def read_back(disks: Sequence[Path], tmp: Path, *, fmt: str = "qcow2") -> list[Readback]:
    """Per disk, in order: its :class:`Readback` (``tmp`` holds downloaded hives)."""
    from p2vimage import deps

    guestfs = deps.guestfs()
    g = guestfs.GuestFS(python_return_dict=True)
    g.set_backend_settings(["force_tcg"])  # KVM may be unusable here (nested), as in CI
    for d in disks:
        g.add_drive_opts(str(d), format=fmt, readonly=1)
    g.launch()
    found, raw = [], []
    try:
        for i, device in enumerate(g.list_devices()):
            part = _mount_system_volume(g, device)
            sums = tmp / f"readback-{i}.sha256"
            g.checksums_out("sha256", "/", str(sums))
            hives = {}
            for name in HIVES:
                local = tmp / f"readback-{i}-{name}"
                g.download(g.case_sensitive_path(f"/windows/system32/config/{name}"),
                           str(local))
                hives[name] = local
            g.umount_all()
            boot = {"mbr": g.pread_device(device, 446, 0),
                    "volume": g.pread_device(part, 512, 0)}
            found.append((_parse_sums(sums.read_text()), boot, part[len(device):]))
            raw.append(hives)
    finally:
        g.close()
    exports: dict[bytes, str] = {}  # one export per distinct hive file
    out = []
    for (files, boot, volume), hives in zip(found, raw, strict=True):
        digests = {}
        for name, local in hives.items():
            key = hashlib.sha256(local.read_bytes()).digest()
            if key not in exports:
                export = subprocess.run(["hivexregedit", "--export", str(local), "\\"],
                                        capture_output=True, check=True).stdout
                exports[key] = hashlib.sha256(export).hexdigest()
            digests[name] = exports[key]
        out.append(Readback(files=files, hives=digests, boot=boot, volume=volume))
    return out


def _mount_system_volume(g, device: str) -> str:
    """Mount (read-only, at /) the partition of ``device`` holding Windows' hives."""
    for part in g.list_partitions():
        if g.part_to_dev(part) != device:
            continue
        try:
            g.mount_ro(part, "/")
        except RuntimeError:  # not a filesystem (an extended partition, swap, ...)
            continue
        try:
            if g.is_dir(g.case_sensitive_path("/windows/system32/config")):
                return part
        except RuntimeError:
            pass
        g.umount_all()
    raise AssertionError(f"{device}: no partition holds Windows' hives")


def _parse_sums(text: str) -> dict[str, str]:
    """``sha256sum`` lines (``HASH  ./path``; a name holding ``\\`` or a newline is
    escaped and its line starts with ``\\``) as {"/path": HASH}."""
    files = {}
    for line in text.splitlines():
        escaped = line.startswith("\\")
        if escaped:
            line = line[1:]
        digest, name = line[:64], line[66:]
        if escaped:
            name = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), name)
        files[name[1:] if name.startswith("./") else name] = digest
    return files
