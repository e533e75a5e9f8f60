"""Is this Windows hibernated?  Read from the first bytes of ``hiberfil.sys``.

A hibernated Windows resumes from ``hiberfil.sys`` with the file system as it was in
memory, so any offline change is lost or corrupts the volume; Windows 8+ "fast
startup" writes the same header.  ``hibr``/``HIBR`` means hibernated; ``wake``,
``RSTR`` or zeros mean resumed or shut down.
"""

from __future__ import annotations

from typing import Any

HIBERNATED = (b"hibr", b"HIBR")


def is_hibernated(header: bytes | None) -> bool:
    return header is not None and header[:4] in HIBERNATED


def guest_is_hibernated(g: Any, root: str = "/") -> bool:
    """Whether the volume mounted at ``root`` in appliance ``g`` holds a hibernation image."""
    try:
        path = g.case_sensitive_path(root.rstrip("/") + "/hiberfil.sys")
        if not g.is_file(path):
            return False
        return is_hibernated(g.pread(path, 4, 0))
    except RuntimeError:
        return False
