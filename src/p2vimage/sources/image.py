"""Recognise a source disk image *before* any appliance starts.

Rules (see the README's safety section):
- a file whose first sector carries the MBR/GPT boot signature is raw, even if
  it also carries another format's magic: a raw disk can hold a fake qcow2
  header, and letting qemu probe it would read (or write through) a backing
  file the image names;
- a recognised container magic is confirmed with ``qemu-img info -f FMT``;
- anything else is raw (a blank disk, a partition-less capture), and the
  inspection then says what is (not) on it;
- empty, missing, unreadable and directory sources are refused with their own
  error class, without launching anything.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .. import deps
from ..errors import (
    CorruptImageError,
    SourceNotFoundError,
    SourceUnreadableError,
    UnsupportedFormatError,
    UsageError,
)

SUPPORTED_FORMATS = ("raw", "qcow2", "vmdk", "vpc", "vhdx", "vdi", "qed")
FORMAT_ALIASES = {"dd": "raw", "img": "raw", "vhd": "vpc"}


@dataclass(frozen=True)
class SourceImage:
    path: Path
    format: str
    virtual_size: int
    actual_size: int
    detected: bool  # False when the user named the format
    # What the user named, when ``path`` was made from it (a network source: its URI,
    # redacted; ``path`` is then a local qcow2 backed by the job's NBD export of it).
    origin: Path | str | None = None
    # Every file below ``path`` in its backing chain: an output written over one of
    # them would change the source while it is being read.
    backing_files: tuple[Path, ...] = ()
    disk: str | None = None  # the disk of a Clonezilla directory (``sdb``) this source is
    # What the host copy reads, when not ``path``: a network source's handle without the
    # appliance's read cache in front (the cache serializes reads; the copy reads each
    # used cluster once anyway).
    copy_path: Path | None = None

    def describe(self, several_from_origin: bool = False) -> str:
        """What the user named, with the Clonezilla disk when the directory holds several."""
        name = str(self.origin or self.path)
        return f"{name} ({self.disk})" if several_from_origin and self.disk else name


def _sniff(head: bytes, tail: bytes) -> str | None:
    """Container format named by the file's magic, or None."""
    if head[:4] == b"QFI\xfb":
        return "qcow2"
    if head[:4] == b"KDMV" or head.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if head[:8] == b"vhdxfile":
        return "vhdx"
    if head[:8] == b"conectix" or tail[-512:-504] == b"conectix":
        return "vpc"
    if len(head) >= 0x44 and head[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return "vdi"
    if head[:4] == b"QED\x00":
        return "qed"
    return None


# Files people mistake for disk images: refused before any appliance starts.
_FOREIGN = (
    (0, b"\x1f\x8b", "a gzip-compressed file (decompress it first)"),
    (0, b"\xfd7zXZ\x00", "an xz-compressed file (decompress it first)"),
    (0, b"\x28\xb5\x2f\xfd", "a zstd-compressed file (decompress it first)"),
    (0, b"BZh", "a bzip2-compressed file (decompress it first)"),
    (0, b"PK\x03\x04", "a zip archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"MSCF", "a Microsoft cabinet"),
    (0, b"\x7fELF", "an executable (ELF)"),
    (0x8001, b"CD001", "an ISO 9660 CD/DVD image"),
    (257, b"ustar", "a tar archive"),
    (0, b"partclone-image", "a partclone image (give the Clonezilla directory instead)"),
    (0, b"\0ntfsclone-image", "an ntfsclone image (give the Clonezilla directory instead)"),
)


def _foreign(head: bytes) -> str | None:
    for offset, magic, what in _FOREIGN:
        if head[offset : offset + len(magic)] == magic:
            return what
    return None


def _has_boot_signature(head: bytes) -> bool:
    return len(head) >= 512 and head[510:512] == b"\x55\xaa"


def _check_qcow2_extent(p: Path, head: bytes, size: int) -> None:
    """A qcow2 whose L1 or refcount table lies past the end of the file is truncated.

    ``qemu-img info`` reads only the header and would accept it; the appliance
    would then fail much later with an I/O error.
    """
    if len(head) < 72:
        raise UnsupportedFormatError(f"{p}: truncated qcow2 header")
    cluster_bits = struct.unpack_from(">I", head, 20)[0]
    l1_size, l1_offset, rc_offset, rc_clusters = struct.unpack_from(">IQQI", head, 36)
    if not 9 <= cluster_bits <= 21:
        raise UnsupportedFormatError(f"{p}: corrupt qcow2 header (cluster_bits {cluster_bits})")
    ends = {
        "L1 table": l1_offset + 8 * l1_size,
        "refcount table": rc_offset + (rc_clusters << cluster_bits),
    }
    for what, end in ends.items():
        if end > size:
            raise UnsupportedFormatError(
                f"{p}: truncated qcow2 image: its {what} ends at byte {end}, "
                f"the file has {size} bytes"
            )


_GPT_PROTECTIVE = 0xEE


def _check_partition_extent(p: Path, head: bytes, size: int) -> None:
    """Refuse a raw disk whose partition table points past the end of the file.

    That is a truncated capture (``dd`` stopped early, a full target disk): the
    last partition lacks its tail, which for NTFS holds the backup boot sector.
    Caught here, before any appliance starts, instead of as an obscure mount
    failure later.  MBR primary entries and GPT entries (512-byte sectors) are
    checked; a table this cannot read is left to the inspection.
    """
    if not _has_boot_signature(head):
        return
    sectors = size // 512
    entries = [struct.unpack_from("<B3xBxxxII", head, 446 + 16 * i) for i in range(4)]
    if any(e[1] == _GPT_PROTECTIVE for e in entries):
        _check_gpt_extent(p, head, sectors)
        return
    for i, (_status, ptype, start, count) in enumerate(entries, 1):
        if ptype and count and start + count > sectors:
            raise CorruptImageError(
                f"{p}: partition {i} ends at byte {(start + count) * 512}, past the end of "
                f"the image ({size} bytes): the capture is truncated"
            )


def _check_gpt_extent(p: Path, head: bytes, sectors: int) -> None:
    if head[512:520] != b"EFI PART":
        return  # a 4K-sector GPT, or a damaged one: the inspection will say
    entries_lba, count, entry_size = struct.unpack_from("<QII", head, 512 + 72)
    if not (128 <= entry_size <= 1024 and count <= 1024):
        raise CorruptImageError(f"{p}: corrupt GPT header (entry size {entry_size}, "
                                f"{count} entries)")
    for i in range(count):
        at = entries_lba * 512 + i * entry_size
        if at + 48 > len(head):
            break  # entries beyond the first 64 KiB: rare; the inspection will say
        first, last = struct.unpack_from("<QQ", head, at + 32)
        if head[at:at + 16] != bytes(16) and last >= sectors:
            raise CorruptImageError(
                f"{p}: GPT partition {i + 1} ends at byte {(last + 1) * 512}, past the end "
                f"of the image ({sectors * 512} bytes): the capture is truncated"
            )


def normalise_format(fmt: str) -> str:
    f = FORMAT_ALIASES.get(fmt.lower(), fmt.lower())
    if f not in SUPPORTED_FORMATS:
        raise UsageError(
            f"unsupported --source-format '{fmt}' (use one of: {', '.join(SUPPORTED_FORMATS)})"
        )
    return f


def qemu_img_info(path: Path, fmt: str) -> list[dict]:
    """``qemu-img info`` with an explicit format: the image first, then its backing chain."""
    qemu_img = deps.require_program("qemu-img")
    proc = subprocess.run(
        [qemu_img, "info", "--output=json", "--backing-chain", "-f", fmt, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["qemu-img info failed"])[-1]
        msg = msg.removeprefix("qemu-img: ")
        raise UnsupportedFormatError(f"{path}: not a usable {fmt} image: {msg}")
    info = json.loads(proc.stdout)
    return info if isinstance(info, list) else [info]


def allocated_bound(path: Path, fmt: str) -> int:
    """Bytes of guest data the image holds allocated: an upper bound of any thin copy.

    ``qemu-img measure -O qcow2`` walks the allocation map (SEEK_DATA/SEEK_HOLE on
    raw, the L2 tables on qcow2), so it costs milliseconds whatever the size; its
    ``required`` includes qcow2 metadata for the output, which we keep as margin.
    """
    qemu_img = deps.require_program("qemu-img")
    proc = subprocess.run(
        [qemu_img, "measure", "--output=json", "-f", fmt, "-O", "qcow2", str(path)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode == 0:
        try:
            return int(json.loads(proc.stdout)["required"])
        except (ValueError, KeyError):
            pass
    # A format qemu-img cannot measure: the whole virtual size is the safe bound.
    st = os.stat(path)
    return max(st.st_size, st.st_blocks * 512)


def classify(p: Path | str, head: bytes, tail: bytes, size: int,
             source_format: str | None) -> tuple[str, bool]:
    """The format of a source from its first 64 KiB, its last sector and its size, and
    whether it was detected (not named by the user); raises for what is no disk image.
    ``p`` names the source in messages (a path, or a network source's redacted URI)."""
    if size == 0:
        raise UnsupportedFormatError(f"{p}: the file is empty")
    if size < 512:
        raise UnsupportedFormatError(f"{p}: only {size} bytes, too small to be a disk image")

    if source_format:
        fmt = normalise_format(source_format)
        detected = False
    else:
        sniffed = _sniff(head, tail)
        if sniffed is None and not _has_boot_signature(head):
            foreign = _foreign(head)
            if foreign:
                raise UnsupportedFormatError(f"{p}: {foreign}, not a disk image")
        fmt = "raw" if (sniffed is None or _has_boot_signature(head)) else sniffed
        detected = True
    if fmt == "raw":
        if size % 512:
            raise UnsupportedFormatError(
                f"{p}: {size} bytes is not a whole number of 512-byte sectors "
                "(truncated capture, or a format we do not recognise)"
            )
        _check_partition_extent(p, head, size)
    elif fmt == "qcow2":
        _check_qcow2_extent(p, head, size)
    return fmt, detected


def open_source(path: str | os.PathLike[str], source_format: str | None = None) -> SourceImage:
    """Check a source and settle its format; raises a BadInputError subclass."""
    from .uri import is_uri, redact

    if is_uri(path):
        raise UsageError(f"{redact(str(path))}: a network source: open it with "
                         "sources.prepare.SourceSet (it starts and stops the source's server)")
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SourceNotFoundError(f"{p}: no such file") from None
    except OSError as exc:
        raise SourceUnreadableError(f"{p}: cannot access: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UnsupportedFormatError(f"{p}: is a directory, not a disk image")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise UnsupportedFormatError(f"{p}: not a regular file or block device")
    try:
        with open(p, "rb") as f:
            head = f.read(65536)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 512))
            tail = f.read(512)
    except PermissionError:
        raise SourceUnreadableError(f"{p}: permission denied") from None
    except OSError as exc:
        raise SourceUnreadableError(f"{p}: cannot read: {exc.strerror}") from None
    fmt, detected = classify(p, head, tail, size, source_format)
    if fmt == "raw":
        return SourceImage(p, "raw", size, st.st_blocks * 512, detected)
    chain = qemu_img_info(p, fmt)
    info = chain[0]
    backing = tuple(Path(i["filename"]) for i in chain[1:] if i.get("filename"))
    return SourceImage(
        p, fmt, int(info.get("virtual-size", 0)), int(info.get("actual-size", 0)), detected,
        backing_files=backing,
    )
