"""Find Windows on the job's partitions: a few lookups, not libguestfs' ``inspect_os``.

``inspect_os`` probes every filesystem of every disk for every operating system it
knows (mounting each, reading hives in the daemon, running ``file``): 7-12 s of a TCG
appliance, while a Windows conversion reads the hives itself with hivex anyway.  Here
each NTFS or FAT partition (known from the partition table read on the host) is
mounted read-only and looked at for a system root holding ``system32\\config\\system``,
as ``inspect_os`` decides it.  The version, product and architecture then come from the
hives (:mod:`p2vimage.inspection`) and ``cmd.exe``'s PE header, and drive letters from
``MountedDevices``.

When this finds no Windows (an LDM volume, a filesystem on the whole disk, another OS)
the job falls back to ``inspect_os``, whose view of other systems gives the messages
("the disk holds linux ..."); the fast path never decides that Windows is absent.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Any

from ..formats.partition_table import DiskLayout
from ..formats.pe import PEError, read_machine
from . import files
from .registry import Hive

# System root folder names inspect_os accepts, lower case.
SYSTEM_ROOTS = ("windows", "winnt", "win32", "win", "reactos")
_MACHINES = {0x14C: "x86", 0x8664: "x64", 0x200: "ia64", 0xAA64: "arm64"}
# The SOFTWARE key with the product name and version (read in full by the inspection).
CURRENT_VERSION = r"Microsoft\Windows NT\CurrentVersion"


@dataclass(frozen=True)
class WindowsRoot:
    device: str  # the partition: /dev/sda1
    system_root: str  # its real spelling: /WINDOWS
    system_hive: str  # /WINDOWS/system32/config/system
    software_hive: str | None


def probe(g: Any, device: str) -> WindowsRoot | None:
    """The Windows installation on ``device`` (mounted read-only at / and unmounted
    again), or None."""
    try:
        g.mount_ro(device, "/")
    except RuntimeError:
        return None
    try:
        return probe_mounted(g, device)
    finally:
        g.umount_all()
        files.forget(g)


def probe_mounted(g: Any, device: str) -> WindowsRoot | None:
    """As :func:`probe`, on a filesystem already mounted at /."""
    try:
        tops = g.ls("/")
    except RuntimeError:
        return None
    for top in sorted(tops):
        if top.lower() not in SYSTEM_ROOTS:
            continue
        sr = f"/{top}"
        system = files.resolve(g, f"{sr}/system32/config/system")
        if system is None or not g.is_file(system):
            continue
        software = files.resolve(g, f"{sr}/system32/config/software")
        if software is not None and not g.is_file(software):
            software = None
        return WindowsRoot(device, sr, system, software)
    return None


def product_name(software: Hive) -> str | None:
    """``ProductName`` from a SOFTWARE hive, to tell candidate roots apart in messages."""
    return software.get_str(software.node(CURRENT_VERSION), "ProductName")


def arch_of_cmd(g: Any, system_root: str) -> str | None:
    """x86/x64/... from ``system32\\cmd.exe``'s PE header (libguestfs' own test)."""
    cmd = files.resolve(g, f"{system_root}/system32/cmd.exe")
    if cmd is None:
        return None
    try:
        head = g.pread(cmd, 4096, 0)
        return _MACHINES.get(read_machine(head))
    except (RuntimeError, PEError, ValueError):
        return None


def drive_letters(system: Hive, layouts: list[DiskLayout | None]) -> dict[str, str]:
    """``{"C": "/dev/sda1"}`` from SYSTEM ``MountedDevices`` (``\\DosDevices\\C:`` values).

    An MBR volume's value is the disk signature (4 bytes) and the partition's byte
    offset (8 bytes); a GPT volume's is ``DMIO:ID:`` and the partition GUID.
    """
    out: dict[str, str] = {}
    node = system.node("MountedDevices")
    values = {v.name: v.data for v in system.values(node).values()} if node is not None else {}
    for name, data in values.items():
        if not name.upper().startswith("\\DOSDEVICES\\") or not name.endswith(":"):
            continue
        letter = name[-2].upper()
        dev = _match(data, layouts)
        if dev is not None:
            out[letter] = dev
    return dict(sorted(out.items()))


def _match(data: bytes, layouts: list[DiskLayout | None]) -> str | None:
    if len(data) == 12:
        sig, offset = struct.unpack("<IQ", data)
        for lay in layouts:
            if lay is None or lay.kind != "mbr" or lay.mbr_signature != sig:
                continue
            for p in lay.partitions:
                if p.start == offset and not p.container:
                    return p.name
    elif len(data) == 24 and data[:8] == b"DMIO:ID:":
        guid = str(uuid.UUID(bytes_le=data[8:24])).upper()
        for lay in layouts:
            for p in lay.partitions if lay is not None else ():
                if p.unique_guid == guid:
                    return p.name
    return None
