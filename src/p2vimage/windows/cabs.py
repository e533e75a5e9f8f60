"""Microsoft cabinets from a guest's ``Driver Cache``: list them, and take single files out.

A Windows 2000/XP/2003 guest moved onto KVM needs the in-box IDE drivers (``atapi.sys``,
``intelide.sys``, ``pciide.sys``, ``pciidex.sys``) that setup only copies to
``System32\\drivers`` when the hardware needs them.  The guest keeps them in its own
``%windir%\\Driver Cache\\i386`` (``amd64`` on x64) cabinets: ``driver.cab`` and the
service-pack cabinets (``sp2.cab``, ``sp3.cab`` ...), indexed by ``%windir%\\inf\\drvindex.inf``.
Using the guest's own copies means the drivers always match the installed service pack.

Division of labour, and why:

* **Listing** (:func:`read_cabinet`, :func:`list_cabinet`, :func:`folders`) is done here in
  pure Python.  It is cheap metadata (the CFHEADER, CFFOLDER and CFFILE tables, no
  decompression), it lets us refuse bad requests before any external program runs, and it
  tells us the size each extracted file must have.  Every read is bounds-checked: a
  truncated or hostile file raises :class:`CabinetError`, never ``IndexError`` or
  ``struct.error``.  Only a cabinet that starts at offset 0 is accepted: a ``Driver Cache``
  cabinet always does, and libmspack's scan for cabinets embedded in other files (used for
  self-extracting executables) would let a file say different things to us and to it.
* **Decompression** is left to libmspack through the ``cabextract`` program (Debian package
  ``cabextract``).  Microsoft's driver cabinets use LZX:21; libmspack is the maintained,
  fuzzed decoder for LZX, MSZIP and Quantum and it verifies every CFDATA checksum while
  extracting (a failure is reported as ``checksum error`` and exit status 1).  We never
  decode LZX ourselves.
* :func:`extract` treats the cabinet as hostile: requested names are validated, each is
  mapped to exactly one member (Windows case-insensitive rules), ``cabextract -l`` must agree
  with our own table, each member is extracted alone into a private empty directory with an
  escaped ``-F`` pattern, the output is checked (regular file, no symlinks, inside the
  destination, size equal to CFFILE) and only then moved into place.  On any failure nothing
  of the call is left in the destination.

Facts about cabextract 1.9 (Debian 12) this relies on, each checked by the tests:

* ``-F`` takes an ``fnmatch(3)`` pattern matched with ``FNM_CASEFOLD`` against the *output*
  name (``\\`` separators already turned into ``/``, leading slashes removed, ``../`` turned
  into ``xx/``); without ``FNM_PATHNAME`` a ``*`` also matches ``/``.  Only the **last**
  ``-F`` given counts in 1.9, so one run per member is needed.  A pattern that matches
  nothing is not an error (exit status 0, no output).
* Names without the UTF-8 attribute (0x80) are written as raw bytes; UTF-8 names are
  re-encoded with bad sequences replaced by U+FFFD.
* A failed member leaves an empty or partial output file behind and makes the exit status 1;
  a CFDATA checksum mismatch is reported on stderr as ``<output name>: checksum error``.
* cabextract scans the whole file: a second cabinet appended after the first one's end is
  processed too (and could overwrite a member), hence the ``-l`` cross-check.
* For a multi-cabinet set it opens the neighbours named in the header, found
  case-insensitively in the cabinet's own directory.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..deps import require_program
from ..errors import CorruptImageError
from . import inf

__all__ = [
    "CABEXTRACT_TIMEOUT",
    "COMP_LZX",
    "COMP_MSZIP",
    "COMP_NONE",
    "COMP_QUANTUM",
    "CabEntry",
    "CabFolder",
    "CabInfo",
    "CabinetError",
    "cabextract_version",
    "cabinets_for",
    "extract",
    "folders",
    "is_safe_member_name",
    "list_cabinet",
    "parse_drvindex",
    "read_cabinet",
    "read_cabinet_bytes",
]

#: CFFOLDER.typeCompress low nibble values.
COMP_NONE = 0
COMP_MSZIP = 1
COMP_QUANTUM = 2
COMP_LZX = 3

#: Seconds one cabextract run may take.  Even a large driver.cab decompresses in seconds; the
#: limit only stops a decoder that never ends on a hostile file.
CABEXTRACT_TIMEOUT = 300

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


class CabinetError(CorruptImageError):
    """A cabinet cannot be read or a file cannot be taken out of it (exit code 3).

    The message is one line naming the cabinet and the reason, because it ends up in the
    log of a conversion that the user has to act on ("driver.cab is damaged").
    """

    def __init__(self, cabinet: str | os.PathLike[str], reason: str = "") -> None:
        self.cabinet = os.fspath(cabinet)
        self.reason = reason
        super().__init__(_one_line(f"cabinet {self.cabinet}: {reason}"))

    def __reduce__(self):  # keep pickling (multiprocessing) working with two arguments
        return (type(self), (self.cabinet, self.reason))


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
    """Bounds-checked access to the cabinet bytes; every failure is a CabinetError."""

    def __init__(self, buf: bytes | memoryview, size: int, cabinet: str) -> None:
        self.buf = buf
        self.size = size
        self.cabinet = cabinet

    def take(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise CabinetError(
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
            raise CabinetError(self.cabinet, f"truncated: {what} at offset {offset} is missing")
        chunk = bytes(self.buf[offset : min(offset + _MAX_STRING, self.size)])
        end = chunk.find(b"\0")
        if end < 0:
            raise CabinetError(
                self.cabinet, f"{what} at offset {offset} is not NUL-terminated within 256 bytes"
            )
        if end == 0 and not permit_empty:
            raise CabinetError(self.cabinet, f"{what} at offset {offset} is empty")
        return chunk[:end]


def read_cabinet(path: str | os.PathLike[str]) -> CabInfo:
    """Parse the CFHEADER, CFFOLDER and CFFILE tables of the cabinet at ``path``.

    No data is decompressed, so this is cheap even for a 70 MB ``driver.cab`` (the file is
    memory-mapped and only the tables are touched).  Raises :class:`CabinetError` for
    anything that is not a well-formed cabinet starting at offset 0.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CabinetError(name, f"cannot open: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CabinetError(name, "not a regular file")
        if st.st_size == 0:
            raise CabinetError(name, "empty file")
        try:
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    return _parse(view, st.st_size, name)
                finally:
                    view.release()
        except (OSError, ValueError) as exc:
            raise CabinetError(name, f"cannot read: {exc}") from exc
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
        raise CabinetError(cabinet, "no MSCF signature at offset 0: not a cabinet")
    # The sanity test libmspack applies before it believes a header (cabd_find); a header
    # failing it is skipped by libmspack, so it must not be believed here either.
    if not (coff_files < cb_cabinet and coff_files < size + 32 and cb_cabinet < size + 32):
        raise CabinetError(
            cabinet,
            f"header claims {cb_cabinet} bytes with files at {coff_files}, the file has {size}",
        )
    if n_folders == 0:
        raise CabinetError(cabinet, "no folders in cabinet")
    if n_files == 0:
        raise CabinetError(cabinet, "no files in cabinet")

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
            raise CabinetError(cabinet, f"file {index} names folder {i_folder} of only {n_folders}")
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


def _fnmatch_escape(name: bytes) -> bytes:
    """An fnmatch(3) pattern that matches exactly ``name`` (case-folded by cabextract)."""
    return re.sub(rb"([*?\[\]\\])", rb"\\\1", name)


# --- member names ----------------------------------------------------------------------------

_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f*?\[\]<>"|:]')


def is_safe_member_name(name: str) -> bool:
    """Whether ``name`` may be requested from :func:`extract`.

    Refused: empty names, ``..`` anywhere, a leading ``\\`` or ``/``, drive letters and
    stream names (any ``:``), control characters, wildcard characters of fnmatch and of
    Windows (``* ? [ ] < > "``), ``|``, empty or ``.`` path components.  A name that passes
    can only ever denote a path below the destination, and is its own ``-F`` pattern.
    """
    if not isinstance(name, str) or not name or len(name) > 255:
        return False
    if ".." in name or name[0] in "\\/" or _UNSAFE_CHARS.search(name):
        return False
    return all(part not in ("", ".") for part in re.split(r"[\\/]", name))


def _upcase(ch: str) -> str:
    up = ch.upper()
    return up if len(up) == 1 else ch


def _windows_key(name: str) -> str:
    """Compare key with Windows semantics: one-to-one upper-casing, ``/`` equal to ``\\``.

    NTFS and the cabinet APIs upper-case character by character; ``str.casefold`` would
    also fold ``ß`` to ``ss``, which Windows does not.
    """
    return "".join(map(_upcase, name.replace("/", "\\")))


# --- running cabextract ----------------------------------------------------------------------

_LIST_LINE = re.compile(rb"^ *(\d+) \| [^|\n]* \| (.*)$")


def cabextract_version() -> str:
    """The version of the installed cabextract (e.g. ``"1.9"``), for logs and bug reports.

    Raises MissingDependencyError naming the Debian package when it is not installed.
    """
    exe = require_program("cabextract")
    proc = subprocess.run(
        [exe, "--version"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    text = proc.stdout.decode("utf-8", "replace")
    match = re.search(r"cabextract version (\S+)", text)
    return match.group(1) if match else text.strip()


def _run(cabinet: str, argv: list[str | bytes], strip: str | None = None) -> tuple[bytes, str]:
    """Run cabextract; CabinetError (with its first stderr line) unless it exits with 0."""
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=CABEXTRACT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CabinetError(cabinet, f"cabextract did not finish in {exc.timeout} s") from exc
    stderr = proc.stderr.decode("utf-8", "backslashreplace")
    if strip:
        stderr = stderr.replace(strip.rstrip("/") + "/", "")
    stderr = stderr.replace(cabinet + ": ", "")
    if proc.returncode != 0:
        # The first line that is not one of libmspack's warnings ("possible N extra bytes",
        # "file possibly truncated") says why; the warnings are kept only if nothing else.
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        errors = [line for line in lines if not line.startswith("WARNING")]
        first = (errors or lines or [""])[0]
        raise CabinetError(
            cabinet,
            f"cabextract failed (exit status {proc.returncode})" + (f": {first}" if first else ""),
        )
    return proc.stdout, stderr


def _cabextract_listing(exe: str, cabinet: str) -> list[tuple[int, bytes]]:
    stdout, _ = _run(cabinet, [exe, "-q", "-l", os.fsencode(cabinet)])
    listing = []
    for line in stdout.split(b"\n"):
        match = _LIST_LINE.match(line)
        if match:
            listing.append((int(match.group(1)), match.group(2)))
    return listing


def _check_run_output(cabinet: str, run_dir: str, rel: bytes, size: int, label: str) -> bytes:
    """The one file a cabextract run must have written, checked; returns its path (bytes)."""
    root = os.fsencode(run_dir)
    expected = os.path.join(root, rel)
    found: list[bytes] = []
    for top, dirs, files in os.walk(root):
        for entry in dirs + files:
            full = os.path.join(top, entry)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                raise CabinetError(cabinet, f"cabextract output for {label} contains a symlink")
            if not stat.S_ISDIR(st.st_mode):
                found.append(full)
    if found != [expected]:
        if expected not in found:
            raise CabinetError(cabinet, f"cabextract did not produce {label}")
        raise CabinetError(cabinet, f"cabextract wrote more than {label}")
    st = os.lstat(expected)
    if not stat.S_ISREG(st.st_mode):
        raise CabinetError(cabinet, f"cabextract output for {label} is not a regular file")
    if not _inside(os.path.realpath(expected), os.path.realpath(root)):
        raise CabinetError(cabinet, f"cabextract output for {label} lies outside its directory")
    if st.st_size != size:
        raise CabinetError(
            cabinet, f"{label}: cabextract wrote {st.st_size} bytes, the cabinet says {size}"
        )
    return expected


def _inside(path: bytes, root: bytes, equal_ok: bool = False) -> bool:
    """Whether the resolved ``path`` lies below the resolved ``root``."""
    return (equal_ok and path == root) or path.startswith(root.rstrip(b"/") + b"/")


def _place(cabinet: str, dest_real: bytes, rel: bytes, created: list[bytes]) -> bytes:
    """Create the parent directories of ``rel`` below ``dest_real``; never follow a symlink."""
    parts = rel.split(b"/")
    cur = dest_real
    for part in parts[:-1]:
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            created.append(cur)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise CabinetError(
                cabinet, f"cannot place {os.fsdecode(rel)}: {os.fsdecode(cur)} is not a directory"
            )
    final = os.path.join(cur, parts[-1])
    if not _inside(os.path.realpath(os.path.dirname(final)), dest_real, equal_ok=True):
        raise CabinetError(cabinet, f"{os.fsdecode(rel)} would be placed outside the destination")
    if os.path.isdir(final) and not os.path.islink(final):
        raise CabinetError(cabinet, f"cannot place {os.fsdecode(rel)}: a directory is in the way")
    return final


def extract(
    path: str | os.PathLike[str],
    names: Iterable[str],
    dest_dir: str | os.PathLike[str],
) -> dict[str, Path]:
    """Extract the members ``names`` of the cabinet ``path`` into ``dest_dir``.

    Names match members case-insensitively with Windows rules (``/`` and ``\\`` are the same
    separator); a member ``dir\\file`` lands at ``dest_dir/dir/file``.  Returns
    ``{requested name: extracted path}``.  Only the requested members are decompressed, by
    cabextract (libmspack), which also verifies the CFDATA checksums.

    Raises :class:`CabinetError` (and leaves nothing of this call in ``dest_dir``: members
    are staged in a private directory there and moved into place only when all are checked)
    for an unreadable or
    corrupt cabinet, a refused name (see :func:`is_safe_member_name`), a name no member has
    or several members share, a disagreement between cabextract and the header tables, a
    cabextract failure (its first stderr line is quoted) and an output of the wrong size.
    """
    cabinet = os.path.abspath(os.fspath(path))
    requested = [names] if isinstance(names, str) else list(names)
    if not requested:
        return {}
    unsafe = [n for n in requested if not is_safe_member_name(n)]
    if unsafe:
        raise CabinetError(cabinet, "refusing unsafe member name(s): " + _names(unsafe))

    info = read_cabinet(cabinet)
    by_key: dict[str, list[int]] = {}
    for index, entry in enumerate(info.entries):
        by_key.setdefault(_windows_key(entry.name), []).append(index)
    missing = [n for n in requested if not by_key.get(_windows_key(n))]
    if missing:
        raise CabinetError(cabinet, "no member named " + _names(missing))
    shared = [n for n in requested if len(by_key[_windows_key(n)]) > 1]
    if shared:
        raise CabinetError(cabinet, "several members are named " + _names(shared))
    chosen = {n: by_key[_windows_key(n)][0] for n in requested}
    wanted = list(dict.fromkeys(chosen.values()))
    for index in wanted:
        entry, rel = info.entries[index], info.output_names[index]
        if not is_safe_member_name(entry.name):
            raise CabinetError(cabinet, "refusing unsafe member name " + _names([entry.name]))
        if info.output_names.count(rel) > 1:
            raise CabinetError(cabinet, f"several members would be written to {os.fsdecode(rel)!r}")

    exe = require_program("cabextract")
    listing = _cabextract_listing(exe, cabinet)
    for index in wanted:
        entry, rel = info.entries[index], info.output_names[index]
        sizes = [size for size, listed in listing if listed == rel]
        if sizes != [entry.size]:
            raise CabinetError(
                cabinet,
                f"cabextract sees {len(sizes)} member(s) {os.fsdecode(rel)!r} "
                f"where the header has one of {entry.size} bytes",
            )

    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    dest_real = os.fsencode(os.path.realpath(dest))
    work = tempfile.mkdtemp(prefix=b".cabextract-", dir=dest_real)
    work_s = os.fsdecode(work)
    staged: dict[int, bytes] = {}
    placed: dict[int, bytes] = {}
    created: list[bytes] = []
    try:
        for count, index in enumerate(wanted):
            entry, rel = info.entries[index], info.output_names[index]
            run_dir = os.path.join(work_s, str(count))
            os.mkdir(run_dir, 0o700)
            argv: list[str | bytes] = [
                exe,
                "-q",
                "-d",
                run_dir,
                "-F",
                _fnmatch_escape(rel),
                os.fsencode(cabinet),
            ]
            _run(cabinet, argv, strip=run_dir)
            staged[index] = _check_run_output(cabinet, run_dir, rel, entry.size, entry.name)
        for index, source in staged.items():
            final = _place(cabinet, dest_real, info.output_names[index], created)
            os.replace(source, final)
            placed[index] = final
    except BaseException:
        for final in placed.values():
            _unlink_quietly(final)
        for directory in reversed(created):
            try:
                os.rmdir(directory)
            except OSError:
                pass
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {n: Path(os.fsdecode(placed[index])) for n, index in chosen.items()}


def _unlink_quietly(path: bytes) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _one_line(text: str) -> str:
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


# --- drvindex.inf ----------------------------------------------------------------------------


def _plain_file_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "\\/:\0")


def parse_drvindex(text: str) -> dict[str, list[str]]:
    """Parse ``%windir%\\inf\\drvindex.inf``: ``{cabinet file: [member names]}``, all lower-case.

    The dict is in precedence order, newest first, as ``[Version] CabFiles=`` lists the tags
    (``CabFiles=SP3,driver``), so the first cabinet holding a file is the one Windows itself
    would use.  ``[Cabs]`` maps each tag to its file (``SP3=sp3.cab``) and the section named
    after each tag lists its members.  Tags found only in ``[Cabs]`` follow, in that order.

    The file comes from a guest and may be damaged, so this never raises on junk: comments
    (``;``), CRLF, quotes, blank lines, duplicate or missing sections are tolerated and what
    can be understood is returned.  A tag without a ``[Cabs]`` file is dropped (guessing a
    file name could pick the wrong cabinet); a tag without a section gets an empty list;
    a cabinet "name" that is not a plain file name (separators, ``:``, ``..``) is dropped.
    """
    if not isinstance(text, str):
        return {}
    sections = inf.sections(text)

    tags: list[str] = []
    for line in sections.get("version", []):
        key, value = inf.split_key(line)
        if key is not None and key.strip().lower() == "cabfiles":
            tags = [inf.unquote(t).lower() for t in value.split(",")]
            break
    files: dict[str, str] = {}
    for line in sections.get("cabs", []):
        key, value = inf.split_key(line)
        if key is None:
            continue
        tag, file_name = inf.unquote(key).lower(), inf.unquote(value).lower()
        if tag and _plain_file_name(file_name):
            files.setdefault(tag, file_name)

    result: dict[str, list[str]] = {}
    for tag in dict.fromkeys([t for t in tags if t] + list(files)):
        file_name = files.get(tag)
        if file_name is None:
            continue
        members = result.setdefault(file_name, [])
        seen = set(members)
        for line in sections.get(tag, []):
            key, value = inf.split_key(line)
            member = inf.unquote(key if key is not None else value).lower()
            if member and member not in seen:
                seen.add(member)
                members.append(member)
    return result


def cabinets_for(index: Mapping[str, Sequence[str]], member: str) -> list[str]:
    """The cabinets of a :func:`parse_drvindex` result that hold ``member``, newest first."""
    wanted = member.lower()
    return [cab for cab, members in index.items() if wanted in members]
