"""Recognise a Clonezilla image directory and describe one of its disks, without reading data.

Everything that can be wrong with the *layout* (no partition table, a gap in
the chunk names, an unknown compression suffix, two images for one
partition, an image of a partition the table does not have) is found here,
before any output exists, and reported naming the partition.  Clonezilla's
own conventions (``ocs-functions``): ``disk``/``parts`` list device names,
device names with ``/`` become ``-`` in file names, ``<disk>-pt.sf`` is the
authoritative table, ``<disk>-pt.parted`` gives the disk size, chunks come
from ``split -a 2`` and are joined in C-locale order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import BadInputError, SourceNotFoundError, UnsupportedFormatError, UsageError
from .streams import SUPPORTED, sniff_compression

EXTENDED_TYPES = (0x05, 0x0F, 0x85)
SECTOR = 512

# Clonezilla's compression suffixes (ocs-get-comp-suffix), supported or not
_COMP_SUFFIXES = "gz|bz2|lzo|lzma|xz|lzip|lrz|lz4|zst|uncomp"
# <part>.<fs>-ptcl-img.<comp>[.<chunk>]; ntfsclone <part>.ntfs-img[.<comp>][.<chunk>];
# dd <part>.dd-img[.<comp>][.<chunk>]; older partclone <part>.<fs>-img[.<chunk>]
_IMAGE_RE = re.compile(
    r"^(?P<part>[^.]+)\."
    r"(?:(?P<fs>[A-Za-z0-9+]+)-ptcl-img\.(?P<comp>[A-Za-z0-9]+)"
    rf"|(?P<old>ntfs-img|dd-img|[A-Za-z0-9+]+-img)(?:\.(?P<ocomp>{_COMP_SUFFIXES}))?)"
    r"(?:\.(?P<chunk>[a-z]{2,}))?$"
)
_PART_LINE = re.compile(r"^\s*(?P<dev>\S+)\s*:\s*(?P<fields>.*)$")
_DISK_SIZE = re.compile(r"^Disk\s+\S+:\s*(?P<n>\d+)(?P<unit>s|B)\s*$", re.M)


@dataclass(frozen=True)
class Partition:
    """One row of the sfdisk dump."""

    name: str  # file-name form, e.g. ``sda1``
    number: int
    start: int  # sectors
    size: int  # sectors
    type: int  # MBR type byte (0 on GPT)
    bootable: bool
    sector_size: int = SECTOR  # the dump's unit: 512, or 4096 on 4Kn disks
    type_guid: str = ""  # GPT partition type

    @property
    def extended(self) -> bool:
        return not self.type_guid and self.type in EXTENDED_TYPES

    @property
    def offset(self) -> int:
        return self.start * self.sector_size

    @property
    def length(self) -> int:
        return self.size * self.sector_size


@dataclass(frozen=True)
class PartitionImage:
    """The image files of one partition, chunks in the order they must be joined."""

    partition: str
    kind: str  # "partclone", "ntfsclone" or "raw" (dd, partclone.dd)
    fs: str
    compression: str
    files: tuple[Path, ...]

    @property
    def compressed_size(self) -> int:
        return sum(f.stat().st_size for f in self.files)


@dataclass
class DiskImage:
    """One disk of a Clonezilla image directory."""

    directory: Path
    disk: str
    size: int  # bytes
    label_id: int | None
    partitions: list[Partition]
    images: dict[str, PartitionImage]
    mbr: Path | None
    hidden_after_mbr: Path | None
    ebrs: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    label: str = "dos"  # or "gpt"
    sector_size: int = SECTOR
    sfdisk_dump: Path | None = None  # <disk>-pt.sf, replayed by sfdisk for GPT
    gpt_1st: Path | None = None  # protective MBR + primary GPT as saved (34 x 512 bytes)


def to_filename(dev: str) -> str:
    """Clonezilla's ``to_filename``: ``/dev/cciss/c0d0`` -> ``cciss-c0d0``."""
    return dev.removeprefix("/dev/").replace("/", "-")


def looks_like_clonezilla(path: Path) -> bool:
    """A directory with Clonezilla's ``disk``/``parts`` list and a partition table dump."""
    return path.is_dir() and ((path / "disk").is_file() or (path / "parts").is_file()) and any(
        path.glob("*-pt.sf")
    )


def _words(path: Path) -> list[str]:
    try:
        words = [to_filename(w) for w in path.read_text(errors="replace").split()]
    except FileNotFoundError:
        return []
    if any("\0" in w for w in words):  # (a NUL would reach open() as part of a file name)
        raise BadInputError(f"{path.name}: a device name with a NUL byte (a damaged file)")
    return words


def list_disks(directory: Path) -> list[str]:
    """The disks a savedisk image holds (``disk``), else those with a table dump (saveparts)."""
    disks = _words(directory / "disk")
    if not disks:
        disks = sorted(p.name.removesuffix("-pt.sf") for p in directory.glob("*-pt.sf"))
    return disks


def _part_number(name: str, disk: str) -> int:
    m = re.search(r"(\d+)$", name.removeprefix(disk))
    if not name.startswith(disk) or not m:
        raise BadInputError(f"{disk}-pt.sf: partition {name} does not belong to {disk}")
    if len(m.group(1)) > 9:  # (int() refuses 4300+ digits; no table has 10**9 entries)
        raise BadInputError(f"{disk}-pt.sf: partition {name[:40]}… has an impossible number")
    return int(m.group(1))


def sfdisk_label(text: str) -> tuple[str, int]:
    """``(label, sector size)`` of an sfdisk dump: dos/gpt, 512/4096 (old dumps: dos, 512)."""
    label = re.search(r"^label:\s*(\S+)", text, re.M)
    size = re.search(r"^sector-size:\s*(\d+)", text, re.M)
    # (a 5000-digit "size" must not reach int(): Python refuses such strings with ValueError)
    sector = -1 if size and len(size.group(1)) > 9 else int(size.group(1)) if size else SECTOR
    return (label.group(1) if label else "dos"), sector


GPT_LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
GPT_RAID = "A19D880F-05FC-4D3B-A006-743F0F84911E"


def _label_id(text: str, disk: str) -> int:
    """An MBR disk signature (``0xd9bc7d71``): 32 bits, written into the MBR as they are."""
    try:
        value = int(text, 16)
    except ValueError:
        value = -1
    if not 0 <= value <= 0xFFFFFFFF:
        raise BadInputError(f"{disk}-pt.sf: label-id {text[:40]!r} is not an MBR disk signature")
    return value


def parse_sfdisk(text: str, disk: str) -> tuple[int | None, list[Partition]]:
    """Label id (MBR disk signature; None on GPT) and partitions (empty slots dropped)."""
    label_id = None
    label, sector_size = sfdisk_label(text)
    parts: list[Partition] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("label:"):
            if label not in ("dos", "gpt"):
                raise UnsupportedFormatError(
                    f"{disk}: {label.upper()} partition tables are not supported (MBR and GPT are)"
                )
            continue
        if line.startswith("label-id:"):
            if label == "dos":
                label_id = _label_id(line.split(":", 1)[1].strip(), disk)
            continue
        if line.startswith("sector-size:"):
            if sector_size not in (SECTOR, 4096):
                raise UnsupportedFormatError(f"{disk}: {sector_size}-byte sectors are not "
                                             "supported (512 and 4096 are)")
            continue
        if line.startswith("unit:"):
            if line.split(":", 1)[1].strip() != "sectors":
                raise BadInputError(f"{disk}-pt.sf: unit is not sectors")
            continue
        m = _PART_LINE.match(line)
        if not m or "start=" not in m.group("fields"):
            continue  # device:, first-lba: and other headers
        name = to_filename(m.group("dev"))
        fields: dict[str, str] = {}
        flags: set[str] = set()
        for item in m.group("fields").split(","):
            if "=" in item:
                k, v = item.split("=", 1)
                fields[k.strip().lower()] = v.strip()
            elif item.strip():
                flags.add(item.strip().lower())
        try:
            start, size = int(fields["start"]), int(fields["size"])
            raw_type = fields.get("type", fields.get("id", "0"))
            guid = raw_type.upper() if label == "gpt" else ""
            type_ = 0 if guid else int(raw_type, 16)
        except (KeyError, ValueError):
            raise BadInputError(f"{disk}-pt.sf: cannot parse the line for {name}") from None
        if size == 0:
            continue  # an empty slot (old sfdisk lists them)
        # an MBR entry holds a type byte and 32-bit start and size; a GPT one 64-bit LBAs
        limit = 1 << (64 if label == "gpt" else 32)
        if not (0 <= start < limit and 0 < size < limit and 0 <= type_ <= 0xFF):
            raise BadInputError(f"{disk}-pt.sf: {name} has start={start}, size={size}, "
                                f"type={raw_type[:40]}, impossible in a {label} table")
        parts.append(Partition(name, _part_number(name, disk), start, size, type_,
                               "bootable" in flags or fields.get("bootable") == "*",
                               sector_size, guid))
    if not parts:
        raise BadInputError(f"{disk}-pt.sf: no partitions")
    return label_id, parts


def _disk_size(directory: Path, disk: str, parts: list[Partition], warnings: list[str]) -> int:
    end = max(p.offset + p.length for p in parts)
    try:
        text = (directory / f"{disk}-pt.parted").read_text(errors="replace")
    except FileNotFoundError:
        text = ""
    m = _DISK_SIZE.search(text)
    if not m:
        warnings.append(f"{disk}-pt.parted gives no size in sectors; the disk ends with its "
                        "last partition")
        return end
    digits = m.group("n")
    size = int(digits) if len(digits) <= 20 else 1 << 64  # (int() refuses 4300+ digits)
    size *= parts[0].sector_size if m.group("unit") == "s" else 1
    if size >= 1 << 63:  # the largest file Linux can even describe (off_t)
        raise BadInputError(f"{disk}-pt.parted: a disk of {digits[:30]}{m.group('unit')} "
                            "is impossible")
    if size < end:
        raise BadInputError(
            f"{disk}-pt.parted: the disk ({size} bytes) is smaller than its partitions "
            f"({end} bytes)"
        )
    return size


def _chunk_index(suffix: str) -> int:
    n = 0
    for ch in suffix:
        n = n * 26 + ord(ch) - ord("a")
    return n


def _classify(part: str, names: list[str], directory: Path) -> PartitionImage:
    stems: dict[str, list[tuple[str | None, re.Match[str]]]] = {}
    for name in names:
        m = _IMAGE_RE.match(name)
        assert m is not None
        stem = name if m.group("chunk") is None else name[: -len(m.group("chunk")) - 1]
        stems.setdefault(stem, []).append((m.group("chunk"), m))
    if len(stems) > 1:
        raise BadInputError(f"{part}: several images ({', '.join(sorted(stems))})")
    stem, entries = next(iter(stems.items()))
    m = entries[0][1]
    if m.group("old"):
        # ntfsclone, dd, or partclone before the "-ptcl-" naming; compression in the
        # name (newer) or only in the data (older: sniffed like Clonezilla's `file -Ls`)
        old = m.group("old")
        kind = {"ntfs-img": "ntfsclone", "dd-img": "raw"}.get(old, "partclone")
        fs = {"ntfs-img": "ntfs", "dd-img": "dd"}.get(old, old.removesuffix("-img"))
        comp = m.group("ocomp")
    else:
        fs, comp = m.group("fs"), m.group("comp")
        kind = "raw" if fs == "dd" else "partclone"  # partclone.dd writes raw bytes
    if comp not in SUPPORTED and comp is not None:
        raise UnsupportedFormatError(
            f"{part}: unknown or unsupported compression suffix '.{comp}' ({stem}; "
            f"supported: {', '.join(SUPPORTED)})"
        )
    chunks = sorted(c for c, _ in entries if c is not None)  # str order = C order for a-z
    if chunks and len(chunks) != len(entries):
        raise BadInputError(f"{part}: both {stem} and split chunks {stem}.{chunks[0]}… exist")
    if chunks:
        width = len(chunks[0])
        if any(len(c) != width for c in chunks):
            raise BadInputError(f"{part}: chunk suffixes of different lengths ({stem}.*)")
        for want, c in enumerate(chunks):
            if _chunk_index(c) != want:
                missing = "".join(
                    chr(ord("a") + (want // 26**i) % 26) for i in reversed(range(width))
                )
                raise BadInputError(f"{part}: chunk {stem}.{missing} is missing")
        files = tuple(directory / f"{stem}.{c}" for c in chunks)
    else:
        files = (directory / stem,)
    if comp is None:
        comp = sniff_compression(files[0])
        if comp not in SUPPORTED:
            raise UnsupportedFormatError(f"{part}: {stem} is compressed with {comp}, which is "
                                         f"not supported (supported: {', '.join(SUPPORTED)})")
    return PartitionImage(part, kind, fs, comp, files)


LVM_TYPES = {0x8E}
RAID_TYPES = {0xFD}
# files ocs-sr writes when it saved LVM volumes or software/fake RAID (ocs-functions save_logv,
# ocs-save-mdraid-layout, dmraid)
_LVM_FILES = ("lvm_vg_dev.list", "lvm_logv.list", "lvm_*.conf")
_RAID_FILES = ("dmraid.table", "md*-detail.info", "*-examine.info", "mdadm.conf")


def refuse_volume_managers(d: Path, disk: str, parts: list[Partition]) -> None:
    """LVM and software RAID are not restored: say exactly what the image holds (exit 3).

    Their volumes are saved as ``<vg>-<lv>.<fs>-ptcl-img`` images that belong to no
    partition, so restoring the partitions alone would give a disk whose data is
    missing -- better refuse, naming the evidence.
    """
    found: list[str] = []
    for p in parts:
        t = p.type_guid or f"{p.type:x}"
        if p.type_guid == GPT_LVM or (not p.type_guid and p.type in LVM_TYPES):
            found.append(f"{p.name} is an LVM physical volume (type {t})")
        elif p.type_guid == GPT_RAID or (not p.type_guid and p.type in RAID_TYPES):
            found.append(f"{p.name} is a Linux software RAID member (type {t})")
    for what, patterns in (("LVM", _LVM_FILES), ("RAID", _RAID_FILES)):
        for pattern in patterns:
            for f in sorted(d.glob(pattern)):
                words = f.read_text(errors="replace").split()[:3] if f.stat().st_size < 1 << 20 \
                    else []
                found.append(f"{f.name} ({what}{': ' + ' '.join(words) if words else ''})")
    if found:
        raise UnsupportedFormatError(
            f"{disk}: LVM and software RAID inside a Clonezilla image are not supported: "
            + "; ".join(found[:4]) + ("; …" if len(found) > 4 else "")
        )


def load(directory: str | Path, disk: str | None = None) -> DiskImage:
    """Describe ``disk`` (default: the only disk) of a Clonezilla image directory."""
    d = Path(directory)
    if not d.exists():
        raise SourceNotFoundError(f"{d}: no such directory")
    if not looks_like_clonezilla(d):
        raise UnsupportedFormatError(
            f"{d}: not a Clonezilla image directory (no 'disk'/'parts' list and "
            "'<disk>-pt.sf' partition table)"
        )
    disks = list_disks(d)
    if disk is None:
        if len(disks) != 1:
            raise UsageError(
                f"{d} holds {len(disks)} disks ({', '.join(disks)}): choose one with --disk"
            )
        disk = disks[0]
    disk = to_filename(disk)
    if disk not in disks:
        raise UsageError(f"--disk {disk}: {d} holds {', '.join(disks) or 'no disk'}")
    warnings: list[str] = []
    try:
        sf = (d / f"{disk}-pt.sf").read_text(errors="replace")
    except FileNotFoundError:
        raise BadInputError(f"{d}: {disk}-pt.sf is missing (no partition table)") from None
    label_id, parts = parse_sfdisk(sf, disk)
    label, sector_size = sfdisk_label(sf)
    refuse_volume_managers(d, disk, parts)
    size = _disk_size(d, disk, parts, warnings)

    listed = _words(d / "parts")
    by_part: dict[str, list[str]] = {}
    known = {p.name: p for p in parts}
    for f in sorted(p.name for p in d.iterdir()):
        m = _IMAGE_RE.match(f)
        part = m.group("part") if m else f.split(".", 1)[0]
        if part == disk or not part.startswith(disk):
            continue  # another disk's partition, or a metadata file
        if m is None:
            if "-img" in f:
                raise UnsupportedFormatError(f"{part}: unexpected image file name {f}")
            continue
        if part not in known:
            raise BadInputError(f"{part}: image files exist but {disk}-pt.sf has no {part}")
        by_part.setdefault(part, []).append(f)
    images: dict[str, PartitionImage] = {}
    for p in parts:
        if p.extended:
            continue
        if p.name in by_part:
            images[p.name] = _classify(p.name, by_part[p.name], d)
        elif p.name in listed:
            raise BadInputError(f"{p.name}: listed in 'parts' but no image file found")
        else:
            warnings.append(f"{p.name}: no image (not saved by Clonezilla); left empty")

    mbr = d / f"{disk}-mbr"
    hidden = d / f"{disk}-hidden-data-after-mbr"
    ebrs = {p.name: d / f"{p.name}-ebr" for p in parts if p.extended and
            (d / f"{p.name}-ebr").is_file()}
    if not mbr.is_file():
        warnings.append(f"{disk}-mbr is missing: no MBR boot code")
    elif mbr.stat().st_size != SECTOR:
        raise BadInputError(f"{disk}-mbr: {mbr.stat().st_size} bytes, not one sector")
    first = min(p.start for p in parts)
    if label == "gpt":
        hidden = d / "-"  # ocs-sr saves hidden sectors of MBR disks only
    if hidden.is_file() and hidden.stat().st_size > (first - 1) * sector_size:
        raise BadInputError(
            f"{disk}-hidden-data-after-mbr: {hidden.stat().st_size} bytes do not fit before "
            f"the first partition (sector {first})"
        )
    if sector_size != SECTOR:
        warnings.append(f"{disk} has {sector_size}-byte sectors: the VM must see its disk with "
                        f"logical_block_size={sector_size} (the tables and NTFS count in them)")
    return DiskImage(
        directory=d, disk=disk, size=size, label_id=label_id, partitions=parts,
        images=images, mbr=mbr if mbr.is_file() else None,
        hidden_after_mbr=hidden if hidden.is_file() else None, ebrs=ebrs,
        warnings=warnings, label=label, sector_size=sector_size, sfdisk_dump=d / f"{disk}-pt.sf",
        gpt_1st=d / f"{disk}-gpt-1st" if (d / f"{disk}-gpt-1st").is_file() else None,
    )
