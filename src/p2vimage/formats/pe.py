"""A small, defensive reader for Windows PE images (drivers, DLLs, executables).

p2vimage has to choose between several copies of the same driver (``atapi.sys``,
``intelide.sys``, ``pciide.sys``, ``pciidex.sys``, ``viostor.sys`` ...) found in a
guest's ``System32``, ``driver.cab``, service-pack caches and virtio media.  Windows
setup and the plug-and-play manager do that by *machine type* (an x64 driver never
loads on x86) and by the binary ``VS_FIXEDFILEINFO`` file version.  They never look
at the ``FileVersion`` *string* in StringFileInfo: that string is free text such as
``"5.2.3790.3959 (srv03_sp2_gdr.070304-2240)"``, is sometimes stale or localised,
and does not sort.  So this module reads exactly those two facts, plus the
StringFileInfo strings for logging and diagnostics.

The input comes from disk images of real, sometimes damaged, machines, and from
whatever a user points us at.  Every read is bounds-checked and every count or
offset taken from the file is validated before use, so that truncated or hostile
input raises :class:`PEError` (never ``IndexError``, ``struct.error``, a loop that
does not end or an allocation driven by a size field in the file).

Format facts are from Microsoft's "PE Format" specification and the Win32
documentation of ``VS_VERSIONINFO``, ``VS_FIXEDFILEINFO``, ``StringFileInfo``,
``StringTable``, ``String``, ``VarFileInfo`` and ``Var``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "ARCH_BY_MACHINE",
    "MACHINE_AMD64",
    "MACHINE_ARM64",
    "MACHINE_I386",
    "MACHINE_IA64",
    "PEError",
    "PEInfo",
    "RT_VERSION",
    "read_pe",
    "version_str",
]

MACHINE_I386 = 0x014C
MACHINE_IA64 = 0x0200
MACHINE_AMD64 = 0x8664
MACHINE_ARM64 = 0xAA64

#: COFF machine type -> the architecture name p2vimage uses everywhere else.
ARCH_BY_MACHINE: dict[int, str] = {
    MACHINE_I386: "x86",
    MACHINE_AMD64: "x64",
    MACHINE_IA64: "ia64",
    MACHINE_ARM64: "arm64",
}

#: Resource type of the version resource (``RT_VERSION``).
RT_VERSION = 16

_PE32_MAGIC = 0x10B
_PE32_PLUS_MAGIC = 0x20B
_VS_FFI_SIGNATURE = 0xFEEF04BD
_RESOURCE_DIRECTORY_INDEX = 2  # IMAGE_DIRECTORY_ENTRY_RESOURCE

_DOS_HEADER_SIZE = 64
_E_LFANEW_OFFSET = 0x3C
_COFF_HEADER_SIZE = 20
_SECTION_HEADER_SIZE = 40
# Size of the optional header up to (not including) the data directories.
_OPT_FIXED_SIZE = {_PE32_MAGIC: 96, _PE32_PLUS_MAGIC: 112}
_OPT_SUBSYSTEM_OFFSET = 68  # same in PE32 and PE32+
_OPT_NUMBER_OF_RVA_AND_SIZES_OFFSET = {_PE32_MAGIC: 92, _PE32_PLUS_MAGIC: 108}
_MAX_DATA_DIRECTORIES = 16  # the loader ignores any beyond these

_RES_DIR_SIZE = 16  # IMAGE_RESOURCE_DIRECTORY
_RES_ENTRY_SIZE = 8  # IMAGE_RESOURCE_DIRECTORY_ENTRY
_RES_DATA_ENTRY_SIZE = 16  # IMAGE_RESOURCE_DATA_ENTRY
_HIGH_BIT = 0x8000_0000

_VS_BLOCK_HEADER_SIZE = 6  # wLength, wValueLength, wType
_VS_FIXEDFILEINFO_SIZE = 52

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_COFF = struct.Struct("<HHIIIHH")
_SECTION = struct.Struct("<8sIIIIIIHHI")
_DATA_DIR = struct.Struct("<II")
_RES_DIR = struct.Struct("<IIHHHH")
_RES_ENTRY = struct.Struct("<II")
_RES_DATA_ENTRY = struct.Struct("<IIII")
_VS_BLOCK_HEADER = struct.Struct("<HHH")
_VS_FIXEDFILEINFO = struct.Struct("<13I")

Version = tuple[int, int, int, int]


class PEError(ValueError):
    """The data is not a PE image, or it is truncated or malformed.

    The message says what was wrong and at which file offset, so that a log line is
    enough to find the damaged byte with a hex editor.
    """


@dataclass(frozen=True)
class PEInfo:
    """What p2vimage needs to know about one PE image.

    ``file_version`` and ``product_version`` come from ``VS_FIXEDFILEINFO`` and are
    ``None`` when the image has no version resource (or one without the fixed part).
    ``strings`` holds the StringFileInfo strings (``CompanyName``,
    ``FileDescription``, ``FileVersion``, ``OriginalFilename`` ...) when present;
    they are for humans and logs, not for comparing versions.
    """

    machine: int
    arch: str
    is_pe32_plus: bool
    subsystem: int
    file_version: Version | None
    product_version: Version | None
    strings: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class _Section:
    name: str
    virtual_size: int
    virtual_address: int
    raw_size: int
    raw_pointer: int


@dataclass(frozen=True)
class _Block:
    """One node of a version resource: header, key, value and children span."""

    key: str
    value_length: int
    value_type: int
    value_offset: int
    children_offset: int
    end: int


def version_str(v: Version) -> str:
    """Format a four-part version the way Windows shows it: ``"5.2.3790.3959"``."""
    return ".".join(str(part) for part in v)


def _unpack(fmt: struct.Struct, data: bytes, offset: int, what: str) -> tuple[int, ...]:
    """``fmt.unpack_from`` with a bounds check that raises :class:`PEError`."""
    if offset < 0 or offset + fmt.size > len(data):
        raise PEError(
            f"truncated {what} at offset {offset:#x}: needs {fmt.size} bytes, "
            f"data is {len(data):#x} bytes long"
        )
    return fmt.unpack_from(data, offset)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _decode_utf16(raw: bytes) -> str:
    # Hostile input may hold unpaired surrogates: never let that raise.
    return raw.decode("utf-16-le", errors="replace")


def read_pe(data: bytes) -> PEInfo:
    """Parse ``data`` (a whole PE file) and return its machine, subsystem and version.

    Raises :class:`PEError` if ``data`` is not a PE image or is truncated or
    malformed in the parts that are read.  A section whose raw data runs past the
    end of ``data`` counts as truncation: the Windows loader refuses such images
    too, and it is the usual sign of a file cut short by a damaged disk.
    """
    data = bytes(data)
    if len(data) < 2 or data[:2] != b"MZ":
        raise PEError(f"not a PE file: no 'MZ' signature at offset 0x0 (found {data[:4]!r})")
    if len(data) < _DOS_HEADER_SIZE:
        raise PEError(
            f"not a PE file: MS-DOS header truncated, data is {len(data):#x} bytes "
            f"but the header needs {_DOS_HEADER_SIZE:#x}"
        )
    (e_lfanew,) = _unpack(_U32, data, _E_LFANEW_OFFSET, "e_lfanew")
    if e_lfanew + 4 > len(data):
        raise PEError(
            f"not a PE file: e_lfanew at offset {_E_LFANEW_OFFSET:#x} points to "
            f"{e_lfanew:#x}, past the end of the data ({len(data):#x} bytes); "
            "a plain MS-DOS executable?"
        )
    signature = data[e_lfanew : e_lfanew + 4]
    if signature != b"PE\0\0":
        raise PEError(
            f"not a PE file: no 'PE\\0\\0' signature at offset {e_lfanew:#x} "
            f"(e_lfanew), found {signature!r}; a plain MS-DOS, NE or LE executable?"
        )

    coff_offset = e_lfanew + 4
    (machine, n_sections, _timestamp, _symtab, _nsyms, opt_size, _characteristics) = _unpack(
        _COFF, data, coff_offset, "COFF file header"
    )

    opt_offset = coff_offset + _COFF_HEADER_SIZE
    if opt_size < 2:
        raise PEError(
            f"optional header missing: SizeOfOptionalHeader is {opt_size} at offset "
            f"{coff_offset + 16:#x}; an object file, not an image?"
        )
    (magic,) = _unpack(_U16, data, opt_offset, "optional header magic")
    if magic not in _OPT_FIXED_SIZE:
        raise PEError(
            f"unknown optional header magic {magic:#x} at offset {opt_offset:#x} "
            "(expected 0x10b for PE32 or 0x20b for PE32+)"
        )
    fixed_size = _OPT_FIXED_SIZE[magic]
    if opt_size < fixed_size:
        raise PEError(
            f"SizeOfOptionalHeader {opt_size:#x} at offset {coff_offset + 16:#x} is smaller "
            f"than the {fixed_size:#x} bytes a {'PE32+' if magic == _PE32_PLUS_MAGIC else 'PE32'}"
            " optional header needs"
        )
    if opt_offset + opt_size > len(data):
        raise PEError(
            f"truncated optional header at offset {opt_offset:#x}: needs {opt_size:#x} "
            f"bytes, data is {len(data):#x} bytes long"
        )
    (subsystem,) = _unpack(_U16, data, opt_offset + _OPT_SUBSYSTEM_OFFSET, "Subsystem")
    (n_rva,) = _unpack(
        _U32,
        data,
        opt_offset + _OPT_NUMBER_OF_RVA_AND_SIZES_OFFSET[magic],
        "NumberOfRvaAndSizes",
    )
    n_dirs = min(n_rva, (opt_size - fixed_size) // _DATA_DIR.size, _MAX_DATA_DIRECTORIES)
    dirs_offset = opt_offset + fixed_size
    directories = [
        _unpack(_DATA_DIR, data, dirs_offset + i * _DATA_DIR.size, f"data directory {i}")
        for i in range(n_dirs)
    ]

    sections = _read_sections(data, opt_offset + opt_size, n_sections)

    file_version: Version | None = None
    product_version: Version | None = None
    strings: dict[str, str] = {}
    if len(directories) > _RESOURCE_DIRECTORY_INDEX:
        res_rva, res_size = directories[_RESOURCE_DIRECTORY_INDEX]
        if res_rva != 0 and res_size != 0:
            version_data = _find_version_resource(data, sections, res_rva)
            if version_data is not None:
                data_offset, blob = version_data
                file_version, product_version, strings = _parse_version_info(blob, data_offset)

    return PEInfo(
        machine=machine,
        arch=ARCH_BY_MACHINE.get(machine, "unknown"),
        is_pe32_plus=magic == _PE32_PLUS_MAGIC,
        subsystem=subsystem,
        file_version=file_version,
        product_version=product_version,
        strings=strings,
    )


def read_machine(head: bytes) -> int:
    """The COFF machine of a PE image from its first bytes (4 KiB hold the headers of any
    real driver): enough to tell an x86 driver from an amd64 one without reading it all."""
    head = bytes(head)
    if head[:2] != b"MZ" or len(head) < _DOS_HEADER_SIZE:
        raise PEError(f"not a PE file: no 'MZ' signature at offset 0x0 (found {head[:4]!r})")
    (e_lfanew,) = _unpack(_U32, head, _E_LFANEW_OFFSET, "e_lfanew")
    if head[e_lfanew : e_lfanew + 4] != b"PE\0\0":
        raise PEError(f"not a PE file: no 'PE\\0\\0' signature at offset {e_lfanew:#x}")
    machine = _unpack(_COFF, head, e_lfanew + 4, "COFF file header")[0]
    (magic,) = _unpack(_U16, head, e_lfanew + 4 + _COFF_HEADER_SIZE, "optional header magic")
    if magic not in _OPT_FIXED_SIZE:
        raise PEError(f"unknown optional header magic {magic:#x}: not an image")
    return machine


def _read_sections(data: bytes, table_offset: int, count: int) -> list[_Section]:
    """Read and validate the section table (at most 65535 entries, bounded by the data)."""
    table_end = table_offset + count * _SECTION_HEADER_SIZE
    if table_end > len(data):
        raise PEError(
            f"truncated section table at offset {table_offset:#x}: {count} sections need "
            f"{count * _SECTION_HEADER_SIZE:#x} bytes, data is {len(data):#x} bytes long"
        )
    sections = []
    for i in range(count):
        header_offset = table_offset + i * _SECTION_HEADER_SIZE
        raw_name, vsize, vaddr, raw_size, raw_ptr, *_ = _SECTION.unpack_from(data, header_offset)
        name = raw_name.rstrip(b"\0").decode("latin-1")
        if raw_size and raw_ptr + raw_size > len(data):
            raise PEError(
                f"truncated file: section {i} ({name!r}, header at offset "
                f"{header_offset:#x}) has raw data at {raw_ptr:#x}..{raw_ptr + raw_size:#x}, "
                f"past the end of the data ({len(data):#x} bytes)"
            )
        sections.append(_Section(name, vsize, vaddr, raw_size, raw_ptr))
    return sections


def _rva_to_offset(sections: list[_Section], rva: int, size: int, what: str) -> tuple[int, int]:
    """Map ``[rva, rva + size)`` to a file offset.

    Returns ``(offset, end)`` where ``end`` is the end of the containing section's raw
    data, the limit for anything else read relative to this RVA.
    """
    for section in sections:
        span = max(section.virtual_size, section.raw_size)
        if section.virtual_address <= rva < section.virtual_address + span:
            delta = rva - section.virtual_address
            if delta + size > section.raw_size:
                raise PEError(
                    f"{what} at RVA {rva:#x} (+{size:#x} bytes) lies beyond the raw data of "
                    f"section {section.name!r} (file offset {section.raw_pointer + delta:#x})"
                )
            return section.raw_pointer + delta, section.raw_pointer + section.raw_size
    raise PEError(f"{what} at RVA {rva:#x} is not inside any section")


def _read_resource_dir(data: bytes, offset: int, limit: int, what: str) -> list[tuple[int, int]]:
    """Read one IMAGE_RESOURCE_DIRECTORY and its entries, all within ``limit``."""
    if offset + _RES_DIR_SIZE > limit:
        raise PEError(f"truncated {what} at offset {offset:#x}: runs past {limit:#x}")
    *_, n_named, n_ids = _RES_DIR.unpack_from(data, offset)
    count = n_named + n_ids
    entries_offset = offset + _RES_DIR_SIZE
    if entries_offset + count * _RES_ENTRY_SIZE > limit:
        raise PEError(
            f"{what} at offset {offset:#x} claims {count} entries, which run past "
            f"the end of the resource section at {limit:#x}"
        )
    return [
        _RES_ENTRY.unpack_from(data, entries_offset + i * _RES_ENTRY_SIZE) for i in range(count)
    ]


def _find_version_resource(
    data: bytes, sections: list[_Section], res_rva: int
) -> tuple[int, bytes] | None:
    """Walk type ``RT_VERSION`` -> first name -> first language to the data entry.

    Returns ``(file offset, bytes)`` of the VS_VERSIONINFO, or ``None`` when there is
    no version resource.  The walk has a fixed depth of three, so a directory entry
    that points back at a parent cannot make it loop.
    """
    root, limit = _rva_to_offset(sections, res_rva, _RES_DIR_SIZE, "resource directory")

    def subdir(entry: tuple[int, int], what: str) -> int:
        target = entry[1]
        if not target & _HIGH_BIT:
            raise PEError(
                f"{what} in the resource tree is a data entry where a directory is expected "
                f"(resource directory at offset {root:#x})"
            )
        return root + (target & ~_HIGH_BIT)

    type_entries = _read_resource_dir(data, root, limit, "resource root directory")
    version_entry = next(
        (e for e in type_entries if not e[0] & _HIGH_BIT and e[0] & 0xFFFF == RT_VERSION),
        None,
    )
    if version_entry is None:
        return None
    name_offset = subdir(version_entry, "RT_VERSION type entry")
    name_entries = _read_resource_dir(data, name_offset, limit, "RT_VERSION name directory")
    if not name_entries:
        return None
    lang_offset = subdir(name_entries[0], "RT_VERSION name entry")
    lang_entries = _read_resource_dir(data, lang_offset, limit, "RT_VERSION language directory")
    if not lang_entries:
        return None
    target = lang_entries[0][1]
    if target & _HIGH_BIT:
        raise PEError(
            f"RT_VERSION language entry at offset {lang_offset + _RES_DIR_SIZE:#x} points "
            "to a fourth directory level instead of a data entry"
        )
    entry_offset = root + target
    if entry_offset + _RES_DATA_ENTRY_SIZE > limit:
        raise PEError(
            f"RT_VERSION data entry at offset {entry_offset:#x} runs past the end of the "
            f"resource section at {limit:#x}"
        )
    data_rva, data_size, _codepage, _reserved = _RES_DATA_ENTRY.unpack_from(data, entry_offset)
    offset, _ = _rva_to_offset(sections, data_rva, data_size, "VS_VERSIONINFO")
    return offset, data[offset : offset + data_size]


def _parse_block(blob: bytes, offset: int, limit: int, base: int) -> _Block:
    """Parse the common header of a version-resource node starting at ``offset``.

    Each node is ``wLength, wValueLength, wType``, a NUL-terminated UTF-16 key, padding
    to a 32-bit boundary, the value, padding, then child nodes up to ``wLength``.
    ``base`` is the file offset of ``blob`` and is only used in messages.
    """
    w_length, w_value_length, w_type = _unpack(
        _VS_BLOCK_HEADER, blob, offset, f"version resource node (file offset {base + offset:#x})"
    )
    if w_length < _VS_BLOCK_HEADER_SIZE:
        raise PEError(
            f"version resource node at file offset {base + offset:#x} has wLength {w_length}, "
            "shorter than its own header"
        )
    end = offset + w_length
    if end > limit:
        raise PEError(
            f"version resource node at file offset {base + offset:#x} (wLength {w_length:#x})"
            f" runs past its parent's end at file offset {base + limit:#x}"
        )
    key_start = offset + _VS_BLOCK_HEADER_SIZE
    key_end = _find_utf16_nul(blob, key_start, end)
    if key_end < 0:
        raise PEError(
            f"version resource node at file offset {base + offset:#x} has no NUL-terminated key"
        )
    key = _decode_utf16(blob[key_start:key_end])
    value_offset = _align4(key_end + 2)
    # wValueLength counts WCHARs for text values (wType 1) and bytes for binary ones.
    value_bytes = w_value_length * 2 if w_type == 1 else w_value_length
    children_offset = _align4(value_offset + value_bytes) if value_bytes else value_offset
    return _Block(key, w_value_length, w_type, value_offset, children_offset, end)


def _find_utf16_nul(blob: bytes, start: int, end: int) -> int:
    """Offset of the first aligned UTF-16 NUL in ``blob[start:end]``, or -1."""
    pos = start
    while True:
        pos = blob.find(b"\0\0", pos, end)
        if pos < 0:
            return -1
        if (pos - start) % 2 == 0:
            return pos
        pos += 1


def _children(blob: bytes, parent: _Block, base: int) -> list[_Block]:
    """The child nodes of ``parent``; each one advances, so this always ends.

    A zero ``wLength`` where a child would start is taken as trailing padding (some
    resource compilers leave it) and ends the list.
    """
    children = []
    offset = parent.children_offset
    while offset + _VS_BLOCK_HEADER_SIZE <= parent.end:
        (w_length,) = _U16.unpack_from(blob, offset)
        if w_length == 0:
            break
        child = _parse_block(blob, offset, parent.end, base)
        children.append(child)
        offset = _align4(child.end)
    return children


def _parse_version_info(
    blob: bytes, base: int
) -> tuple[Version | None, Version | None, dict[str, str]]:
    """Parse a VS_VERSIONINFO resource (``base`` is its file offset, for messages)."""
    root = _parse_block(blob, 0, len(blob), base)
    if root.key != "VS_VERSION_INFO":
        raise PEError(
            f"version resource at file offset {base:#x} has key {root.key!r}, "
            "expected 'VS_VERSION_INFO'"
        )

    file_version: Version | None = None
    product_version: Version | None = None
    if root.value_length:
        if root.value_length < _VS_FIXEDFILEINFO_SIZE or (
            root.value_offset + _VS_FIXEDFILEINFO_SIZE > root.end
        ):
            raise PEError(
                f"VS_FIXEDFILEINFO at file offset {base + root.value_offset:#x} is truncated "
                f"(wValueLength {root.value_length})"
            )
        signature, _struc, fv_ms, fv_ls, pv_ms, pv_ls, *_ = _VS_FIXEDFILEINFO.unpack_from(
            blob, root.value_offset
        )
        if signature != _VS_FFI_SIGNATURE:
            raise PEError(
                f"bad VS_FIXEDFILEINFO signature {signature:#010x} at file offset "
                f"{base + root.value_offset:#x} (expected {_VS_FFI_SIGNATURE:#010x})"
            )
        file_version = (fv_ms >> 16, fv_ms & 0xFFFF, fv_ls >> 16, fv_ls & 0xFFFF)
        product_version = (pv_ms >> 16, pv_ms & 0xFFFF, pv_ls >> 16, pv_ls & 0xFFFF)

    strings: dict[str, str] = {}
    for child in _children(blob, root, base):
        if child.key != "StringFileInfo":
            continue  # VarFileInfo: translations, not needed here
        for table in _children(blob, child, base):
            for string in _children(blob, table, base):
                strings.setdefault(string.key, _string_value(blob, string))
    return file_version, product_version, strings


def _string_value(blob: bytes, node: _Block) -> str:
    """The text of a ``String`` node.

    Read up to the first NUL or the node's end rather than trusting ``wValueLength``:
    some resource compilers store it in bytes instead of WCHARs.
    """
    if node.value_length == 0 or node.value_offset >= node.end:
        return ""
    nul = _find_utf16_nul(blob, node.value_offset, node.end)
    stop = nul if nul >= 0 else node.end - (node.end - node.value_offset) % 2
    return _decode_utf16(blob[node.value_offset : stop])
