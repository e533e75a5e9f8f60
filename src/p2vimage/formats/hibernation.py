"""Is this Windows hibernated?  Read from the first bytes of ``hiberfil.sys``.

A hibernated Windows resumes from ``hiberfil.sys`` with the file system as it was in
memory, so any offline change is lost or corrupts the volume; Windows 8+ "fast
startup" writes the same header.  ``hibr``/``HIBR`` means hibernated; ``wake``,
``RSTR`` or zeros mean resumed or shut down.  (Finding and reading the file in a
mounted guest is the job's: :meth:`p2vimage.guest.appliance.Job.mount_root`.)
"""

from __future__ import annotations

HIBERNATED = (b"hibr", b"HIBR")


def is_hibernated(header: bytes | None) -> bool:
    return header is not None and header[:4] in HIBERNATED
