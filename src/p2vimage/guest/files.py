"""Small helpers for files inside the mounted guest (Windows names are case-insensitive)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConversionError


@dataclass
class _Known:
    paths: dict[str, str] = field(default_factory=dict)  # lower-cased path -> real path
    dirs: set[str] = field(default_factory=set)  # real paths checked to be folders


def _state(g: Any) -> _Known | None:
    return getattr(g, "_p2v_known_paths", None)


def remember(g: Any) -> None:
    """Remember the paths found or created through this handle, until :func:`forget`.

    Each lookup is two appliance round trips (~50 ms under TCG) and a conversion asks
    for the same folders dozens of times (``\\WINDOWS\\system32\\drivers`` once per
    driver file).  Only what exists is remembered, and nothing is ever deleted while a
    filesystem stays mounted.  Opt-in: only an owner that calls :func:`forget` whenever
    it mounts or unmounts (the job) may turn it on; other handles are never cached.
    """
    g._p2v_known_paths = _Known()


def forget(g: Any) -> None:
    """Drop what this handle remembers (call after unmounting or mounting)."""
    if g is not None and _state(g) is not None:
        g._p2v_known_paths = _Known()


def resolve(g: Any, path: str) -> str | None:
    """The real path of ``path`` matched case-insensitively, or None when it does not exist."""
    state = _state(g)
    key = path.lower()
    if state is not None and key in state.paths:
        return state.paths[key]
    try:
        real = g.case_sensitive_path(path)
    except RuntimeError:
        return None
    try:
        if not g.exists(real):
            return None
    except RuntimeError:
        return None
    if state is not None:
        state.paths[key] = real
    return real


def resolve_for_write(g: Any, path: str) -> str:
    """Where to write ``path``: the existing file's own spelling, else the real directory
    plus the new name (the directory must exist)."""
    existing = resolve(g, path)
    if existing is not None:
        return existing
    parent, name = posixpath.split(path)
    return posixpath.join(ensure_dir(g, parent), name)


def ensure_dir(g: Any, path: str) -> str:
    """The real path of directory ``path``, creating the missing part (existing folders are
    matched case-insensitively, so ``Drivers`` is not created beside ``drivers``)."""
    state = _state(g)
    known = state.paths if state is not None else {}
    if path.lower() in known:
        return known[path.lower()]
    parts = [p for p in path.split("/") if p]
    real = "/"
    for i, part in enumerate(parts):
        candidate = resolve(g, posixpath.join(real, part))
        if candidate is None:
            rest = posixpath.join(real, *parts[i:])
            try:
                g.mkdir_p(rest)
            except RuntimeError as exc:
                raise ConversionError(
                    f"cannot create {windows_path(rest)} in the guest: {exc}"
                ) from exc
            known[path.lower()] = rest
            return rest
        if state is None or candidate not in state.dirs:
            if not g.is_dir(candidate):
                raise ConversionError(f"{windows_path(candidate)} in the guest is not a folder")
            if state is not None:
                state.dirs.add(candidate)
        real = candidate
    known[path.lower()] = real
    return real



def list_dir(g: Any, path: str) -> list[str]:
    """Names in a guest directory (empty when it does not exist)."""
    real = resolve(g, path)
    if real is None:
        return []
    try:
        return sorted(g.ls(real)) if g.is_dir(real) else []
    except RuntimeError:
        return []


def download(g: Any, path: str, local: Path) -> Path:
    local.parent.mkdir(parents=True, exist_ok=True)
    g.download(path, str(local))
    return local


# libguestfs' ``write`` carries the content in one protocol message ("between 2MB and
# 4MB" is its limit); under TCG it takes 20-90 ms where ``upload`` takes 300-500 ms.
WRITE_MAX = 2_000_000


def upload(g: Any, local: Path, path: str) -> None:
    """Write one file (truncated in place when it exists, as Windows' own tools do: its
    security descriptor stays); a full or read-only guest filesystem becomes a
    ConversionError."""
    try:
        size = local.stat().st_size
        if size <= WRITE_MAX:
            g.write(path, local.read_bytes())
        else:
            g.upload(str(local), path)
    except RuntimeError as exc:
        raise ConversionError(f"cannot write {windows_path(path)} in the guest: {exc}") from exc
    state = _state(g)
    if state is not None:
        state.paths[path.lower()] = path


def windows_path(path: str) -> str:
    """``/WINDOWS/system32`` -> ``\\WINDOWS\\system32`` (how an administrator reads it)."""
    return path.replace("/", "\\")
