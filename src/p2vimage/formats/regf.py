"""Registry value types, and the bytes a hive stores for each type's data.

Pure encoding: no hive is opened here (:mod:`p2vimage.guest.registry` reads and
writes hives through hivex).  Decoding tolerates what real hives contain — REG_SZ
data without a terminator, odd lengths, numbers shorter than their type — because a
broken value must not stop an inspection.
"""

from __future__ import annotations

import struct
from typing import Any

REG_NONE = 0
REG_SZ = 1
REG_EXPAND_SZ = 2
REG_BINARY = 3
REG_DWORD = 4
REG_DWORD_BIG_ENDIAN = 5
REG_LINK = 6
REG_MULTI_SZ = 7
REG_QWORD = 11

TYPE_NAMES = {
    REG_NONE: "REG_NONE",
    REG_SZ: "REG_SZ",
    REG_EXPAND_SZ: "REG_EXPAND_SZ",
    REG_BINARY: "REG_BINARY",
    REG_DWORD: "REG_DWORD",
    REG_DWORD_BIG_ENDIAN: "REG_DWORD_BIG_ENDIAN",
    REG_LINK: "REG_LINK",
    REG_MULTI_SZ: "REG_MULTI_SZ",
    REG_QWORD: "REG_QWORD",
}


def decode_sz(data: bytes) -> str:
    """UTF-16LE up to the first NUL; tolerate odd lengths and missing terminators."""
    if len(data) % 2:
        data = data[:-1]
    text = data.decode("utf-16-le", errors="replace")
    nul = text.find("\0")
    return text if nul < 0 else text[:nul]


def decode_multi_sz(data: bytes) -> list[str]:
    """REG_MULTI_SZ: NUL-separated strings ending in an empty one (dropped here)."""
    if len(data) % 2:
        data = data[:-1]
    text = data.decode("utf-16-le", errors="replace")
    parts = text.split("\0")
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def encode_sz(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\0\0"


def encode_multi_sz(items: list[str]) -> bytes:
    return b"".join(s.encode("utf-16-le") + b"\0\0" for s in items) + b"\0\0"


def decode_value(vtype: int, data: bytes) -> Any:
    """Python value for registry data: str, list[str], int or bytes."""
    if vtype in (REG_SZ, REG_EXPAND_SZ, REG_LINK):
        return decode_sz(data)
    if vtype == REG_MULTI_SZ:
        return decode_multi_sz(data)
    if vtype == REG_DWORD and len(data) >= 4:
        return struct.unpack_from("<I", data)[0]
    if vtype == REG_DWORD_BIG_ENDIAN and len(data) >= 4:
        return struct.unpack_from(">I", data)[0]
    if vtype == REG_QWORD and len(data) >= 8:
        return struct.unpack_from("<Q", data)[0]
    return bytes(data)


def encode_value(vtype: int, value: Any) -> bytes:
    """Bytes Windows would store for ``value`` of type ``vtype``."""
    if vtype in (REG_SZ, REG_EXPAND_SZ):
        return encode_sz(str(value))
    if vtype == REG_MULTI_SZ:
        return encode_multi_sz(list(value))
    if vtype == REG_DWORD:
        return struct.pack("<I", int(value))
    if vtype == REG_QWORD:
        return struct.pack("<Q", int(value))
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"cannot encode {value!r} as {TYPE_NAMES.get(vtype, vtype)}")
