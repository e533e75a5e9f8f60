"""formats/hibernation.py: the ``hiberfil.sys`` header signatures."""

from __future__ import annotations

import pytest

from p2vimage.formats.hibernation import is_hibernated


@pytest.mark.parametrize(("header", "hibernated"), [
    (b"hibr" + bytes(4092), True),  # NT 5.x / NT 6 hibernated
    (b"HIBR" + bytes(4092), True),  # Windows 8+ (also fast startup)
    (b"hibr", True),  # only the four bytes the check reads
    (b"wake" + bytes(4092), False),  # resumed
    (b"RSTR" + bytes(4092), False),  # restore in progress
    (bytes(4096), False),  # zeroed at shutdown
    (b"Hibr", False),  # the signature is case-sensitive
    (b"hib", False),  # a truncated file
    (b"", False),
    (None, False),  # no hiberfil.sys
])
def test_is_hibernated(header: bytes | None, hibernated: bool) -> None:
    assert is_hibernated(header) is hibernated
