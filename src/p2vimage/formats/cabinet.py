"""Microsoft cabinet files (``MSCF``): their header tables, read in pure Python.

The CFHEADER, CFFOLDER and CFFILE tables are cheap metadata (no decompression): they say
which members a cabinet has, how each folder is compressed and how big each file is, so a
caller can refuse bad requests before any external program runs and check the size of
what it extracts.  Every read is bounds-checked: a truncated or hostile file raises
:class:`CabinetFormatError`, never ``IndexError`` or ``struct.error``.  Only a cabinet
that starts at offset 0 is accepted: a ``Driver Cache`` cabinet always does, and
libmspack's scan for cabinets embedded in other files (used for self-extracting
executables) would let a file say different things to us and to it.

Decompression is not done here: :mod:`p2vimage.windows.cabs` takes members out with
``cabextract`` (libmspack).  So that it can match and check cabextract's output byte for
byte, :class:`CabInfo` also carries, per member, the relative path cabextract writes it
to, computed with cabextract 1.9's own naming rules (restated below; the tests compare
them with ``cabextract -l`` over every test cabinet).
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass

#: CFFOLDER.typeCompress low nibble values.
COMP_NONE = 0
COMP_MSZIP = 1
COMP_QUANTUM = 2
COMP_LZX = 3

_FLAG_PREV = 0x0001
_FLAG_NEXT = 0x0002
_FLAG_RESERVE = 0x0004
_ATTR_NAME_IS_UTF = 0x80
_IFOLD_CONTINUED_FROM_PREV = 0xFFFD
_IFOLD_CONTINUED_TO_NEXT = 0xFFFE
_IFOLD_CONTINUED_PREV_AND_NEXT = 0xFFFF

_CFHEADER = struct.Struct("<4sIIIIIBBHHHHH")  # 36 bytes
_CFHEADER_RESERVE = struct.Struct("<HBB")
_CFFOLDER = struct.Struct("<IHH")
_CFFILE = struct.Struct("<IIHHHH")
_MAX_STRING = 256  # libmspack reads at most 256 bytes for a name, NUL included

_METHOD_NAMES = {COMP_NONE: "none", COMP_MSZIP: "MSZIP", COMP_QUANTUM: "Quantum", COMP_LZX: "LZX"}


class CabinetMessage:
    """Mixin of the cabinet exceptions: ``cabinet`` and ``reason`` attributes and a one-line
    message naming both (it ends up in the log of a conversion the user has to act on:
    "driver.cab is damaged").  Shared with :class:`p2vimage.windows.cabs.CabinetError`."""

    def __init__(self, cabinet: str | os.PathLike[str], reason: str = "") -> None:
        self.cabinet = os.fspath(cabinet)
        self.reason = reason
        super().__init__(one_line(f"cabinet {self.cabinet}: {reason}"))

    def __reduce__(self):  # keep pickling (multiprocessing) working with two arguments
        return (type(self), (self.cabinet, self.reason))


class CabinetFormatError(CabinetMessage, ValueError):
    """A cabinet's header tables cannot be read (damaged, truncated, not a cabinet).

    Callers that report it to a user turn it into
    :class:`p2vimage.windows.cabs.CabinetError` (exit code 3).
    """


@dataclass(frozen=True)
class CabEntry:
    """One CFFILE record.

    ``name`` is the name as stored, backslashes kept.  Names flagged UTF-8 (attribute 0x80)
    are decoded the way cabextract does (bad sequences become U+FFFD); other names are
    decoded as ISO-8859-1 so that every byte survives and maps back (cabinets do not record
    which ANSI code page their creator used).  ``size`` is the uncompressed size.
    ``folder`` is the CFFOLDER index, or ``None`` when the file continues from or into
    another cabinet of a spanning set (iFolder 0xFFFD, 0xFFFE, 0xFFFF).
    """

    name: str
    size: int
    folder: int | None


@dataclass(frozen=True)
class CabFolder:
    """One CFFOLDER record: how its data blocks are compressed.

    ``compression`` is one of :data:`COMP_NONE`, :data:`COMP_MSZIP`, :data:`COMP_QUANTUM`,
    :data:`COMP_LZX` (other values are reported as found; libmspack refuses them).
    ``window_bits`` is the LZX or Quantum window size in bits (bits 8-12 of typeCompress),
    15 for MSZIP (its fixed 32 KiB window) and 0 for stored data.  ``level`` is the Quantum
    level (bits 4-7), else 0.
    """

    index: int
    type_compress: int
    data_blocks: int
    data_offset: int

    @property
    def compression(self) -> int:
        return self.type_compress & 0x000F

    @property
    def window_bits(self) -> int:
        if self.compression in (COMP_LZX, COMP_QUANTUM):
            return (self.type_compress >> 8) & 0x1F
        if self.compression == COMP_MSZIP:
            return 15
        return 0

    @property
    def level(self) -> int:
        return (self.type_compress >> 4) & 0x0F if self.compression == COMP_QUANTUM else 0

    @property
    def method(self) -> str:
        """``none``, ``MSZIP``, ``LZX:21``, ``Quantum:level2:window18`` or ``unknown(N)``."""
        comp = self.compression
        if comp == COMP_LZX:
            return f"LZX:{self.window_bits}"
        if comp == COMP_QUANTUM:
            return f"Quantum:level{self.level}:window{self.window_bits}"
        return _METHOD_NAMES.get(comp, f"unknown({comp})")

    @property
    def supported(self) -> bool:
        """Whether libmspack can decode this folder at all (method and window in range)."""
        comp = self.compression
        if comp in (COMP_NONE, COMP_MSZIP):
            return True
        if comp == COMP_LZX:
            return 15 <= self.window_bits <= 21
        if comp == COMP_QUANTUM:
            return 10 <= self.window_bits <= 21
        return False


@dataclass(frozen=True)
class CabInfo:
    """Everything :func:`read_cabinet` learns from one cabinet's header tables.

    ``output_names[i]`` is the relative path (bytes: non-UTF-8 names are written raw)
    that cabextract writes ``entries[i]`` to, computed with cabextract's own rules; it is
    what ``cabextract -l`` prints and what ``-F`` is matched against.
    """

    path: str
    file_size: int
    cabinet_size: int
    version: tuple[int, int]
    flags: int
    set_id: int
    set_index: int
    prev_cabinet: str | None
    next_cabinet: str | None
    folders: tuple[CabFolder, ...]
    entries: tuple[CabEntry, ...]
    output_names: tuple[bytes, ...]

    @property
    def spanned(self) -> bool:
        """Part of a multi-cabinet set (driver cabinets never are)."""
        return bool(self.flags & (_FLAG_PREV | _FLAG_NEXT))


# --- header parsing ------------------------------------------------------------------------


class _Reader:
    """Bounds-checked access to the cabinet bytes; every failure is a CabinetFormatError."""

    def __init__(self, buf: bytes | memoryview, size: int, cabinet: str) -> None:
        self.buf = buf
        self.size = size
        self.cabinet = cabinet

    def take(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise CabinetFormatError(
                self.cabinet,
                f"truncated: {what} at offset {offset} needs {length} bytes, "
                f"the file has {self.size}",
            )
        return bytes(self.buf[offset : offset + length])

    def string(self, offset: int, what: str, permit_empty: bool = False) -> bytes:
        """A NUL-terminated string of up to 255 bytes, as libmspack accepts it.

        libmspack refuses empty file and cabinet names but accepts empty disk names.
        """
        if offset >= self.size:
            raise CabinetFormatError(self.cabinet,
                                     f"truncated: {what} at offset {offset} is missing")
        chunk = bytes(self.buf[offset : min(offset + _MAX_STRING, self.size)])
        end = chunk.find(b"\0")
        if end < 0:
            raise CabinetFormatError(
                self.cabinet, f"{what} at offset {offset} is not NUL-terminated within 256 bytes"
            )
        if end == 0 and not permit_empty:
            raise CabinetFormatError(self.cabinet, f"{what} at offset {offset} is empty")
        return chunk[:end]


def read_cabinet(path: str | os.PathLike[str]) -> CabInfo:
    """Parse the CFHEADER, CFFOLDER and CFFILE tables of the cabinet at ``path``.

    No data is decompressed, so this is cheap even for a 70 MB ``driver.cab`` (the file is
    memory-mapped and only the tables are touched).  Raises :class:`CabinetFormatError` for
    anything that is not a well-formed cabinet starting at offset 0.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CabinetFormatError(name, f"cannot open: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CabinetFormatError(name, "not a regular file")
        if st.st_size == 0:
            raise CabinetFormatError(name, "empty file")
        try:
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    return _parse(view, st.st_size, name)
                finally:
                    view.release()
        except (OSError, ValueError) as exc:
            raise CabinetFormatError(name, f"cannot read: {exc}") from exc
    finally:
        os.close(fd)


def read_cabinet_bytes(data: bytes, name: str = "<bytes>") -> CabInfo:
    """Like :func:`read_cabinet` for a cabinet already in memory (``name`` is for messages)."""
    return _parse(data, len(data), name)


def list_cabinet(path: str | os.PathLike[str]) -> list[CabEntry]:
    """The members of a cabinet in CFFILE order (see :class:`CabEntry`)."""
    return list(read_cabinet(path).entries)


def folders(path: str | os.PathLike[str]) -> list[CabFolder]:
    """The folders of a cabinet with their compression (see :class:`CabFolder`).

    Compression is a property of a folder, not of a file, so a caller that wants to know how
    a member is packed looks up ``folders(path)[entry.folder]``.
    """
    return list(read_cabinet(path).folders)


def _parse(buf: bytes | memoryview, size: int, cabinet: str) -> CabInfo:
    rd = _Reader(buf, size, cabinet)
    head = rd.take(0, _CFHEADER.size, "CFHEADER")
    (
        signature,
        _reserved1,
        cb_cabinet,
        _reserved2,
        coff_files,
        _reserved3,
        version_minor,
        version_major,
        n_folders,
        n_files,
        flags,
        set_id,
        set_index,
    ) = _CFHEADER.unpack(head)
    if signature != b"MSCF":
        raise CabinetFormatError(cabinet, "no MSCF signature at offset 0: not a cabinet")
    # The sanity test libmspack applies before it believes a header (cabd_find); a header
    # failing it is skipped by libmspack, so it must not be believed here either.
    if not (coff_files < cb_cabinet and coff_files < size + 32 and cb_cabinet < size + 32):
        raise CabinetFormatError(
            cabinet,
            f"header claims {cb_cabinet} bytes with files at {coff_files}, the file has {size}",
        )
    if n_folders == 0:
        raise CabinetFormatError(cabinet, "no folders in cabinet")
    if n_files == 0:
        raise CabinetFormatError(cabinet, "no files in cabinet")

    pos = _CFHEADER.size
    folder_reserve = 0
    if flags & _FLAG_RESERVE:
        header_reserve, folder_reserve, _data_reserve = _CFHEADER_RESERVE.unpack(
            rd.take(pos, _CFHEADER_RESERVE.size, "reserved-area sizes")
        )
        pos += _CFHEADER_RESERVE.size
        rd.take(pos, header_reserve, "reserved header area")
        pos += header_reserve

    prev_name = next_name = None
    if flags & _FLAG_PREV:
        raw = rd.string(pos, "previous cabinet name")
        pos += len(raw) + 1
        pos += len(rd.string(pos, "previous disk name", True)) + 1
        prev_name = raw.decode("latin-1")
    if flags & _FLAG_NEXT:
        raw = rd.string(pos, "next cabinet name")
        pos += len(raw) + 1
        pos += len(rd.string(pos, "next disk name", True)) + 1
        next_name = raw.decode("latin-1")

    folder_list: list[CabFolder] = []
    for index in range(n_folders):
        data_offset, data_blocks, type_compress = _CFFOLDER.unpack(
            rd.take(pos, _CFFOLDER.size, f"CFFOLDER {index}")
        )
        pos += _CFFOLDER.size
        rd.take(pos, folder_reserve, f"CFFOLDER {index} reserved area")
        pos += folder_reserve
        folder_list.append(CabFolder(index, type_compress, data_blocks, data_offset))

    # libmspack reads the CFFILE table right after the folders and ignores coffFiles (beyond
    # the sanity test above); so do we, because cabextract is what extracts the files.
    # (libmspack's hidden-files.cab test points coffFiles elsewhere on purpose.)

    raw_names: list[bytes] = []
    utf8_flags: list[bool] = []
    entries: list[CabEntry] = []
    for index in range(n_files):
        size_, _offset, i_folder, _date, _time, attribs = _CFFILE.unpack(
            rd.take(pos, _CFFILE.size, f"CFFILE {index}")
        )
        pos += _CFFILE.size
        raw = rd.string(pos, f"name of CFFILE {index}")
        pos += len(raw) + 1
        folder: int | None
        if i_folder >= _IFOLD_CONTINUED_FROM_PREV:
            folder = None
        elif i_folder < n_folders:
            folder = i_folder
        else:
            raise CabinetFormatError(
                cabinet, f"file {index} names folder {i_folder} of only {n_folders}")
        utf8 = bool(attribs & _ATTR_NAME_IS_UTF)
        # UTF-8 names as cabextract decodes them; others byte for byte (see CabEntry)
        name = "".join(map(chr, _cabextract_codepoints(raw))) if utf8 else raw.decode("latin-1")
        raw_names.append(raw)
        utf8_flags.append(utf8)
        entries.append(CabEntry(name=name, size=size_, folder=folder))

    isunix = _unix_separators(raw_names)
    outputs = tuple(
        _output_name(raw, utf8, isunix) for raw, utf8 in zip(raw_names, utf8_flags, strict=True)
    )
    return CabInfo(
        path=cabinet,
        file_size=size,
        cabinet_size=cb_cabinet,
        version=(version_major, version_minor),
        flags=flags,
        set_id=set_id,
        set_index=set_index,
        prev_cabinet=prev_name,
        next_cabinet=next_name,
        folders=tuple(folder_list),
        entries=tuple(entries),
        output_names=outputs,
    )


# --- cabextract's naming rules ---------------------------------------------------------------
# We need to know, byte for byte, where cabextract will write a member and what its -F
# pattern is compared with.  These three functions restate create_output_name() and
# unix_path_seperators() of cabextract 1.9; the tests compare them with `cabextract -l`
# over every test cabinet.


def _cabextract_codepoints(raw: bytes) -> list[int]:
    """Decode a UTF-8 flagged name as cabextract does (bad bytes -> U+FFFD, one at a time)."""
    out: list[int] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        i += 1
        if c < 0x80:
            x = c
        elif 0xC2 <= c < 0xE0 and i < n and raw[i] & 0xC0 == 0x80:
            x = ((c & 0x1F) << 6) | (raw[i] & 0x3F)
            i += 1
        elif 0xE0 <= c < 0xF0 and i + 1 < n and all(b & 0xC0 == 0x80 for b in raw[i : i + 2]):
            x = ((c & 0x0F) << 12) | ((raw[i] & 0x3F) << 6) | (raw[i + 1] & 0x3F)
            i += 2
        elif 0xF0 <= c < 0xF5 and i + 2 < n and all(b & 0xC0 == 0x80 for b in raw[i : i + 3]):
            x = (
                ((c & 0x07) << 18)
                | ((raw[i] & 0x3F) << 12)
                | ((raw[i + 1] & 0x3F) << 6)
                | (raw[i + 2] & 0x3F)
            )
            i += 3
        else:
            x = 0xFFFD
        if x <= 0 or x > 0x10FFFF or 0xD800 <= x <= 0xDFFF or x in (0xFFFE, 0xFFFF):
            x = 0xFFFD
        out.append(x)
    return out


def _unix_separators(names: Sequence[bytes]) -> bool:
    """cabextract's guess whether a cabinet uses ``/`` (True) or ``\\`` as path separator."""
    slash = any(b"/" in n for n in names)
    backslash = any(b"\\" in n for n in names)
    if not slash:
        return False
    if not backslash:
        return True
    if len(names) == 1:
        for c in names[0]:
            if c == 0x5C:
                return False
            if c == 0x2F:
                return True
        return False
    old: bytes | None = None
    old_len = 0
    for name in names:
        cut = [p for p in (name.find(b"\\"), name.find(b"/")) if p >= 0]
        length = min(cut) + 1 if cut else 0
        if length and length == old_len and old is not None and name[:length] == old[:length]:
            return name[length - 1] != 0x5C
        old, old_len = name, length
    return False


def _output_name(raw: bytes, utf8: bool, isunix: bool) -> bytes:
    """The relative path cabextract writes a member to (and matches ``-F`` against)."""
    sep, other = (0x2F, 0x5C) if isunix else (0x5C, 0x2F)
    if utf8:
        chars = []
        for x in _cabextract_codepoints(raw):
            if x == sep:
                x = 0x2F
            elif x == other:
                x = 0x5C
            chars.append(chr(x))
        out = bytearray("".join(chars).encode("utf-8"))
    else:
        out = bytearray(0x2F if c == sep else 0x5C if c == other else c for c in raw)
    start = 0
    while start < len(out) and out[start] in (0x2F, 0x5C):
        start += 1
    if start:
        out = out[start:] if start < len(out) else bytearray(b"x")
    i = 0
    while i < len(out):
        if out[i : i + 2] == b".." and i + 2 < len(out) and out[i + 2] in (0x2F, 0x5C):
            out[i] = out[i + 1] = 0x78  # "x"
            i += 3
        else:
            i += 1
    return bytes(out)


def one_line(text: str) -> str:
    """``text`` with every unprintable character escaped: one line, for messages."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)
