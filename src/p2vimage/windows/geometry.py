"""NTFS boot-sector geometry for Windows 2000/XP/2003 on SeaBIOS.

The NT 5.x NTFS boot code reads NTLDR with CHS whenever the LBA is below the
BIOS CHS capacity, converting LBA to CHS with the heads (offset 0x1A) and
sectors per track (0x18) stored in the boot sector.  A physical RAID BIOS
usually reported 255/63; SeaBIOS reports 16/32/64/128 heads for disks up to
about 4.2 GB (and 255 above), so a mismatch gives "A disk read error
occurred".  We write what SeaBIOS will report for the *new* disk size, in the
primary and the backup boot sector.  Partition starts (hidden sectors, 0x1C)
never move: the boot code and XP's MountedDevices both key on them.
"""

from __future__ import annotations

import struct

from ..guest.view import GuestView
from ..inspection import Inspection
from ..plan import BootSectorEdit, Plan

SECTOR = 512
SPT = 63
HEADS_OFFSET = 0x1A
SPT_OFFSET = 0x18
HIDDEN_OFFSET = 0x1C


def seabios_heads(disk_bytes: int) -> int:
    """Logical heads SeaBIOS presents for an IDE/virtio disk of this size.

    QEMU guesses 16 physical heads and 63 sectors; SeaBIOS' LARGE/LBA
    translation doubles the heads until the cylinders fit in 1024, and uses 255
    above 128 heads' capacity.
    """
    sectors = disk_bytes // SECTOR
    for heads in (16, 32, 64, 128):
        if sectors <= 1024 * heads * SPT:
            return heads
    return 255


def read_ntfs_geometry(boot_sector: bytes) -> dict[str, int] | None:
    """(spt, heads, hidden, total sectors) of an NTFS boot sector, or None if not NTFS."""
    if len(boot_sector) < SECTOR or boot_sector[3:11] != b"NTFS    ":
        return None
    spt, heads, hidden = struct.unpack_from("<HHI", boot_sector, SPT_OFFSET)
    total = struct.unpack_from("<Q", boot_sector, 0x28)[0]
    return {"sectors_per_track": spt, "heads": heads, "hidden_sectors": hidden, "total": total}


def plan_geometry(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """The NTFS boot sectors of the system disk get SeaBIOS' geometry (NT 5.x only)."""
    if not insp.is_nt5:
        return
    assert plan.context is not None
    disk_size = plan.context.disk_size
    heads = seabios_heads(disk_size)
    for part, bs in guest.boot_sectors():
        geo = read_ntfs_geometry(bs)
        if geo is None:
            continue
        fields = {"heads": (HEADS_OFFSET, 2, heads), "sectors_per_track": (SPT_OFFSET, 2, SPT)}
        plan.boot_sectors.append(BootSectorEdit(
            "ntfs-geometry", part, fields, {k: geo[k] for k in fields},
            f"NT 5.x boot code reads NTLDR by CHS; SeaBIOS reports {heads} heads / "
            f"{SPT} sectors for a {disk_size // (1 << 20)} MiB disk",
        ))
