"""virtio-win media: an ISO read with pycdlib (never mounted), or an unpacked directory.

Reading the ISO in-process costs no appliance launch and no root privileges (virt-v2v
attaches the ISO to its appliance and spends extra launches on it).  The whole file table
is read once; files are read on demand.

Names: Rock Ridge names when the disc has them, else Joliet, else the ISO 9660 names with
their ``;1`` version and the trailing ``.`` of extension-less names removed (old discs are
plain ISO 9660, all upper case; every lookup here is case-insensitive anyway).

A hostile or damaged disc must not hang or exhaust us: the walk refuses directory loops
(an extent seen twice), depth beyond 32 and more than 200 000 entries; a single member is
read only up to 256 MiB (a driver package file is a few MB).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..deps import require_module
from ..errors import BadInputError

MAX_DEPTH = 32
MAX_ENTRIES = 200_000
MAX_FILE = 256 << 20


class MediaError(BadInputError):
    """The virtio-win media cannot be read (not an ISO, truncated, a directory loop...)."""


@dataclass
class VirtioMedia:
    """One virtio-win source, opened once: ``files`` maps relative paths (``/``-separated,
    the disc's own case) to the handle needed to read them."""

    path: Path
    kind: str  # "iso" | "dir"
    volume_id: str | None = None
    names: str = "dir"  # "rock-ridge" | "joliet" | "iso9660" | "dir"
    files: dict[str, Any] = field(default_factory=dict)
    _iso: Any = None
    _lower: dict[str, str] = field(default_factory=dict)

    def list(self) -> list[str]:
        return sorted(self.files)

    def find(self, rel: str) -> str | None:
        """The real relative path of ``rel`` matched case-insensitively."""
        if not self._lower:
            self._lower = {p.lower(): p for p in self.files}
        return self._lower.get(rel.strip("/").lower())

    def read(self, rel: str) -> bytes:
        real = self.find(rel)
        if real is None:
            raise MediaError(f"{self.path}: no file {rel}")
        handle = self.files[real]
        if self.kind == "dir":
            p = Path(handle)
            if p.stat().st_size > MAX_FILE:
                raise MediaError(f"{self.path}: {real} is too large for a driver file")
            return p.read_bytes()
        kw = {_NS_ARG[self.names]: handle}
        try:
            with self._iso.open_file_from_iso(**kw) as f:
                data = f.read(MAX_FILE + 1)
        except Exception as exc:  # pycdlib raises its own types and OSError
            raise MediaError(f"{self.path}: cannot read {real}: {exc}") from exc
        if len(data) > MAX_FILE:
            raise MediaError(f"{self.path}: {real} is too large for a driver file")
        return data

    def close(self) -> None:
        if self._iso is not None:
            try:
                self._iso.close()
            except Exception:  # closing a damaged image may complain; nothing to keep
                pass
            self._iso = None
            self._fp.close()

    def __enter__(self) -> VirtioMedia:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_NS_ARG = {"rock-ridge": "rr_path", "joliet": "joliet_path", "iso9660": "iso_path"}


def open_media(path: str | os.PathLike[str]) -> VirtioMedia:
    """Open ``--virtio-win ISO|DIR``; raise :class:`MediaError` (exit 3) when unusable."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"--virtio-win {p}: no such file or directory")
    if p.is_dir():
        return _open_dir(p)
    return _open_iso(p)


def _open_dir(root: Path) -> VirtioMedia:
    media = VirtioMedia(root, "dir")
    seen: set[tuple[int, int]] = set()
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            raise MediaError(f"--virtio-win {root}: directory loop at {dirpath}")
        seen.add((st.st_dev, st.st_ino))
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir.count(os.sep) >= MAX_DEPTH:
            raise MediaError(f"--virtio-win {root}: directories nested too deep at {dirpath}")
        for name in filenames:
            full = os.path.join(dirpath, name)
            if not os.path.isfile(full) or os.path.islink(full):
                continue
            rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
            media.files[rel] = full
            count += 1
            if count > MAX_ENTRIES:
                raise MediaError(f"--virtio-win {root}: too many files")
        dirnames.sort()
    return media


def _iso_name(name: str) -> str:
    base = name.split(";", 1)[0]
    return base[:-1] if base.endswith(".") else base


def _open_iso(path: Path) -> VirtioMedia:
    pycdlib = require_module("pycdlib")
    fp = open(path, "rb")  # noqa: SIM115 - kept open for on-demand reads, closed by close()
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(fp)
    except Exception as exc:
        fp.close()
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MediaError(f"--virtio-win {path}: not a readable ISO 9660 image ({msg})") from exc
    if iso.has_rock_ridge():
        names = "rock-ridge"
    elif iso.has_joliet():
        names = "joliet"
    else:
        names = "iso9660"
    media = VirtioMedia(path, "iso", names=names)
    media._iso = iso
    media._fp = fp  # type: ignore[attr-defined]
    try:
        media.volume_id = iso.pvd.volume_identifier.decode("ascii", "replace").strip() or None
    except Exception:
        media.volume_id = None
    try:
        _walk_iso(media, iso, names)
    except MediaError:
        media.close()
        raise
    except Exception as exc:
        media.close()
        raise MediaError(f"--virtio-win {path}: damaged ISO 9660 image ({exc})") from exc
    return media


def _walk_iso(media: VirtioMedia, iso: Any, names: str) -> None:
    """Depth-first walk with loop, depth and size guards (pycdlib's own walk has none)."""
    arg = _NS_ARG[names]
    seen_extents: set[int] = set()
    count = 0
    stack: list[tuple[str, str, int]] = [("/", "", 0)]  # (namespace path, rel path, depth)
    while stack:
        ns_path, rel, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MediaError(f"--virtio-win {media.path}: directories nested too deep at {rel}")
        for child in iso.list_children(**{arg: ns_path}):
            if child is None or child.is_dot() or child.is_dotdot():
                continue
            count += 1
            if count > MAX_ENTRIES:
                raise MediaError(f"--virtio-win {media.path}: too many entries")
            if names == "rock-ridge" and child.rock_ridge is not None:
                name = child.rock_ridge.name().decode("utf-8", "replace")
            elif names == "joliet":
                name = child.file_identifier().decode("utf-16-be", "replace")
            else:
                name = _iso_name(child.file_identifier().decode("ascii", "replace"))
            if not name or name in (".", "..") or "/" in name or "\0" in name:
                continue
            child_ns = posixpath.join(ns_path, name if names != "iso9660" else
                                      child.file_identifier().decode("ascii", "replace"))
            child_rel = f"{rel}/{name}" if rel else name
            if child.is_dir():
                extent = child.extent_location()
                if extent in seen_extents:
                    raise MediaError(
                        f"--virtio-win {media.path}: directory loop at {child_rel}"
                    )
                seen_extents.add(extent)
                stack.append((child_ns, child_rel, depth + 1))
            else:
                media.files[child_rel] = child_ns
