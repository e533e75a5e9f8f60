"""Small helpers for files inside the mounted guest (Windows names are case-insensitive)."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from ..errors import ConversionError


def resolve(g: Any, path: str) -> str | None:
    """The real path of ``path`` matched case-insensitively, or None when it does not exist."""
    try:
        real = g.case_sensitive_path(path)
    except RuntimeError:
        return None
    try:
        return real if g.exists(real) else None
    except RuntimeError:
        return None


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
            return rest
        if not g.is_dir(candidate):
            raise ConversionError(f"{windows_path(candidate)} in the guest is not a folder")
        real = candidate
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


def upload(g: Any, local: Path, path: str) -> None:
    """Upload one file; a full or read-only guest filesystem becomes a ConversionError."""
    try:
        g.upload(str(local), path)
    except RuntimeError as exc:
        raise ConversionError(f"cannot write {windows_path(path)} in the guest: {exc}") from exc


def windows_path(path: str) -> str:
    """``/WINDOWS/system32`` -> ``\\WINDOWS\\system32`` (how an administrator reads it)."""
    return path.replace("/", "\\")
