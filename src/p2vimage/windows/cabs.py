"""Microsoft cabinets from a guest's ``Driver Cache``: which holds a file, and taking it out.

A Windows 2000/XP/2003 guest moved onto KVM needs the in-box IDE drivers (``atapi.sys``,
``intelide.sys``, ``pciide.sys``, ``pciidex.sys``) that setup only copies to
``System32\\drivers`` when the hardware needs them.  The guest keeps them in its own
``%windir%\\Driver Cache\\i386`` (``amd64`` on x64) cabinets: ``driver.cab`` and the
service-pack cabinets (``sp2.cab``, ``sp3.cab`` ...), indexed by ``%windir%\\inf\\drvindex.inf``.
Using the guest's own copies means the drivers always match the installed service pack.
:func:`parse_drvindex` and :func:`cabinets_for` say which cabinet holds a file;
:func:`extract` takes single files out.

Division of labour, and why:

* **Listing** (the CFHEADER, CFFOLDER and CFFILE tables) is done in pure Python by
  :mod:`p2vimage.formats.cabinet`.  It is cheap metadata (no decompression), it lets us
  refuse bad requests before any external program runs, and it tells us the size each
  extracted file must have.  A truncated or hostile file is refused there; here, where a
  user has to act on it, that is a :class:`CabinetError` (exit code 3).  Only a cabinet
  that starts at offset 0 is accepted (see that module).
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

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..deps import require_program
from ..errors import CorruptImageError
from ..formats import inf
from ..formats.cabinet import CabinetFormatError, CabinetMessage, CabInfo, read_cabinet

__all__ = [
    "CABEXTRACT_TIMEOUT",
    "CabinetError",
    "cabextract_version",
    "cabinets_for",
    "extract",
    "is_safe_member_name",
    "parse_drvindex",
]

#: Seconds one cabextract run may take.  Even a large driver.cab decompresses in seconds; the
#: limit only stops a decoder that never ends on a hostile file.
CABEXTRACT_TIMEOUT = 300


class CabinetError(CabinetMessage, CorruptImageError):
    """A cabinet cannot be read or a file cannot be taken out of it (exit code 3).

    The message is one line naming the cabinet and the reason, because it ends up in the
    log of a conversion that the user has to act on ("driver.cab is damaged").
    """


def _read_cabinet(path: str | os.PathLike[str]) -> CabInfo:
    """The cabinet's header tables; a damaged cabinet is a :class:`CabinetError`."""
    try:
        return read_cabinet(path)
    except CabinetFormatError as exc:
        raise CabinetError(exc.cabinet, exc.reason) from exc


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

    info = _read_cabinet(cabinet)
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
