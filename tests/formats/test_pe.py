"""Tests for p2vimage.formats.pe (the reader) and fixtures.pe (the test-side builder)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2vimage.formats.pe import (
    MACHINE_AMD64,
    MACHINE_ARM64,
    MACHINE_I386,
    MACHINE_IA64,
    PEError,
    PEInfo,
    read_pe,
    version_str,
)

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # pytest run from elsewhere than the project root
    sys.path.insert(0, str(_ROOT))

from fixtures.pe import _vs_node, _vs_string, build_pe  # noqa: E402

MACHINES = [MACHINE_I386, MACHINE_AMD64]
E_LFANEW = 0x80
COFF = E_LFANEW + 4
OPT = COFF + 20


def _u16(data: bytes, off: int) -> int:
    return struct.unpack_from("<H", data, off)[0]


def _u32(data: bytes, off: int) -> int:
    return struct.unpack_from("<I", data, off)[0]


def _patch(data: bytes, off: int, fmt: str, *values: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, off, *values)
    return bytes(buf)


def _sections(data: bytes) -> list[tuple[bytes, int, int, int, int, int]]:
    """(name, vsize, rva, raw size, raw pointer, characteristics) for each section."""
    count = _u16(data, COFF + 2)
    table = OPT + _u16(data, COFF + 16)
    rows = []
    for i in range(count):
        name, vsize, rva, raw_size, raw_ptr, *_, flags = struct.unpack_from(
            "<8sIIIIIIHHI", data, table + 40 * i
        )
        rows.append((name.rstrip(b"\0"), vsize, rva, raw_size, raw_ptr, flags))
    return rows


def _rsrc_offset(data: bytes) -> int:
    return next(row[4] for row in _sections(data) if row[0] == b".rsrc")


def _reference_checksum(data: bytes, checksum_offset: int) -> int:
    """Word-by-word PE checksum with the carry folded after every addition."""
    body = bytearray(data)
    body[checksum_offset : checksum_offset + 4] = bytes(4)
    if len(body) % 2:
        body.append(0)
    csum = 0
    for i in range(0, len(body), 2):
        csum += body[i] | body[i + 1] << 8
        csum = (csum & 0xFFFF) + (csum >> 16)
    csum = (csum & 0xFFFF) + (csum >> 16)
    return csum + len(data)


def _assert_parses_or_peerror(data: bytes) -> None:
    try:
        info = read_pe(data)
    except PEError:
        return
    assert isinstance(info, PEInfo)


# --- round trip --------------------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("kind", ["driver", "exe"])
@pytest.mark.parametrize(
    "version", [(5, 0, 2195, 6717), (5, 1, 2600, 5512), (5, 2, 3790, 3959), (10, 0, 17763, 1)]
)
def test_round_trip(machine: int, kind: str, version: tuple[int, int, int, int]) -> None:
    data = build_pe(
        machine,
        version=version,
        kind=kind,
        file_description="IDE/ATAPI Port Driver",
        original_filename="atapi.sys",
    )
    info = read_pe(data)
    assert info.machine == machine
    assert info.arch == ("x86" if machine == MACHINE_I386 else "x64")
    assert info.is_pe32_plus is (machine == MACHINE_AMD64)
    assert info.subsystem == (1 if kind == "driver" else 3)
    assert info.file_version == version
    assert info.product_version == version
    assert info.strings["FileDescription"] == "IDE/ATAPI Port Driver"
    assert info.strings["OriginalFilename"] == "atapi.sys"
    assert info.strings["CompanyName"] == "Microsoft Corporation"
    assert info.strings["ProductName"] == "Microsoft\u00ae Windows\u00ae Operating System"
    assert info.strings["FileVersion"].startswith(version_str(version) + " (")
    assert info.strings["ProductVersion"] == version_str(version)
    assert len(data) <= 4096


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
    max_size=40,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    machine=st.sampled_from(MACHINES),
    kind=st.sampled_from(["driver", "exe"]),
    version=st.tuples(*[st.integers(0, 0xFFFF)] * 4),
    description=_text,
    original=_text,
    company=_text,
    product=_text,
    payload=st.binary(max_size=600),
)
def test_round_trip_hypothesis(
    machine: int,
    kind: str,
    version: tuple[int, int, int, int],
    description: str,
    original: str,
    company: str,
    product: str,
    payload: bytes,
) -> None:
    data = build_pe(
        machine,
        version=version,
        kind=kind,
        file_description=description,
        original_filename=original,
        company=company,
        product_name=product,
        payload=payload,
    )
    info = read_pe(data)
    assert (info.machine, info.file_version, info.product_version) == (machine, version, version)
    expected = {
        "FileDescription": description,
        "OriginalFilename": original,
        "CompanyName": company,
        "ProductName": product,
    }
    for key, value in expected.items():
        # The builder leaves empty strings out of StringFileInfo.
        assert info.strings.get(key, "") == value
    assert _u32(data, OPT + 64) == _reference_checksum(data, OPT + 64)


def test_version_str() -> None:
    assert version_str((5, 2, 3790, 3959)) == "5.2.3790.3959"
    assert version_str((10, 0, 17763, 0)) == "10.0.17763.0"


def test_fixed_file_info_wins_over_the_file_version_string() -> None:
    """Windows setup compares VS_FIXEDFILEINFO; the FileVersion string is only text."""
    data = build_pe(MACHINE_I386, version=(5, 2, 3790, 3959))
    needle = "3790.3959 (".encode("utf-16-le")
    assert data.count(needle) == 1
    data = data.replace(needle, "9999.9999 (".encode("utf-16-le"))
    info = read_pe(data)
    assert info.strings["FileVersion"].startswith("5.2.9999.9999 (")
    assert info.file_version == (5, 2, 3790, 3959)


def test_versions_compare_numerically() -> None:
    older = read_pe(build_pe(MACHINE_I386, version=(5, 1, 2600, 980)))
    newer = read_pe(build_pe(MACHINE_I386, version=(5, 1, 2600, 5512)))
    assert older.file_version is not None and newer.file_version is not None
    assert max([older, newer], key=lambda i: i.file_version or (0,)) is newer
    assert version_str(older.file_version) > version_str(newer.file_version)  # why not strings


def test_pe_info_is_hashable_and_comparable() -> None:
    data = build_pe(MACHINE_AMD64)
    assert read_pe(data) == read_pe(data)
    assert hash(read_pe(data)) == hash(read_pe(data))


@pytest.mark.parametrize(
    ("machine", "arch"),
    [(MACHINE_IA64, "ia64"), (MACHINE_ARM64, "arm64"), (0x1C0, "unknown"), (0x1234, "unknown")],
)
def test_other_machines(machine: int, arch: str) -> None:
    data = _patch(build_pe(MACHINE_AMD64), COFF, "<H", machine)
    info = read_pe(data)
    assert (info.machine, info.arch) == (machine, arch)


# --- builder layout ----------------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("kind", ["driver", "exe"])
def test_builder_layout(machine: int, kind: str) -> None:
    data = build_pe(machine, kind=kind, payload=b"\xcc" * 700)
    assert data[:2] == b"MZ" and _u32(data, 0x3C) == E_LFANEW
    assert data[E_LFANEW : E_LFANEW + 4] == b"PE\0\0"
    characteristics = _u16(data, COFF + 18)
    assert characteristics & 0x0002  # EXECUTABLE_IMAGE
    assert not characteristics & 0x2000  # not a DLL
    assert bool(characteristics & 0x0100) is (machine == MACHINE_I386)  # 32BIT_MACHINE
    magic = _u16(data, OPT)
    assert magic == (0x20B if machine == MACHINE_AMD64 else 0x10B)
    assert _u32(data, OPT + 32) == 0x1000  # SectionAlignment
    assert _u32(data, OPT + 36) == 0x200  # FileAlignment
    size_of_image = _u32(data, OPT + 56)
    size_of_headers = _u32(data, OPT + 60)
    sections = _sections(data)
    assert [row[0] for row in sections] == [b".text", b".rsrc"]
    assert size_of_headers == sections[0][4] == 0x200
    for _name, vsize, rva, raw_size, raw_ptr, _flags in sections:
        assert rva % 0x1000 == 0 and raw_ptr % 0x200 == 0 and raw_size % 0x200 == 0
        assert raw_size >= vsize
    last = sections[-1]
    assert size_of_image == (last[2] + last[1] + 0xFFF) // 0x1000 * 0x1000
    assert len(data) == last[4] + last[3]
    assert _u32(data, OPT + 64) == _reference_checksum(data, OPT + 64)
    assert b"\xcc" * 700 in data


def test_payload_changes_the_file() -> None:
    a = build_pe(MACHINE_I386, payload=b"one")
    b = build_pe(MACHINE_I386, payload=b"two")
    assert a != b and read_pe(a) == read_pe(b)


@pytest.mark.parametrize(
    ("machine", "kind", "expected"),
    [
        (MACHINE_I386, "exe", "PE32 executable (console) Intel 80386"),
        (MACHINE_AMD64, "exe", "PE32+ executable (console) x86-64"),
        (MACHINE_I386, "driver", "PE32 executable (native) Intel 80386"),
        (MACHINE_AMD64, "driver", "PE32+ executable (native) x86-64"),
    ],
)
def test_file_command_identifies_builds(
    tmp_path: Path, machine: int, kind: str, expected: str
) -> None:
    """libguestfs runs `file` on cmd.exe to decide a Windows guest's architecture."""
    path = tmp_path / ("cmd.exe" if kind == "exe" else "atapi.sys")
    path.write_bytes(build_pe(machine, kind=kind, original_filename=path.name))
    out = subprocess.run(
        ["file", "-b", str(path)], check=True, capture_output=True, text=True
    ).stdout
    assert expected in out


# --- no version resource -----------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES)
def test_no_resource_section(machine: int) -> None:
    data = build_pe(machine, version=None)
    assert [row[0] for row in _sections(data)] == [b".text"]
    info = read_pe(data)
    assert info.file_version is None and info.product_version is None and info.strings == {}


def test_resources_without_rt_version() -> None:
    data = build_pe(MACHINE_I386)
    root = _rsrc_offset(data)
    assert _u32(data, root + 16) == 16  # the root's only entry is RT_VERSION
    info = read_pe(_patch(data, root + 16, "<I", 24))  # make it RT_MANIFEST
    assert info.file_version is None and info.strings == {}


def test_version_resource_without_fixed_info() -> None:
    """VS_VERSIONINFO may omit VS_FIXEDFILEINFO (wValueLength 0): strings, no version."""
    data = build_pe(MACHINE_I386)
    rsrc = _rsrc_offset(data)
    vs, old_size = rsrc + 88, _u32(data, rsrc + 76)
    table = _vs_node("040904B0", b"", 0, True, [_vs_string("CompanyName", "Acme")])
    blob = _vs_node(
        "VS_VERSION_INFO", b"", 0, False, [_vs_node("StringFileInfo", b"", 0, True, [table])]
    )
    assert len(blob) < old_size
    buf = bytearray(data)
    buf[vs : vs + old_size] = blob + bytes(old_size - len(blob))
    struct.pack_into("<I", buf, rsrc + 76, len(blob))
    info = read_pe(bytes(buf))
    assert info.file_version is None and info.product_version is None
    assert info.strings == {"CompanyName": "Acme"}


# --- not a PE ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "MZ"),
        (b"M", "MZ"),
        (b"MZ", "MS-DOS header truncated"),
        (b"MZ" + bytes(510), "PE\\0\\0"),
        (b"\x7fELF\x02\x01\x01" + bytes(57), "'MZ'"),
        (b"#!/bin/sh\n" + bytes(100), "'MZ'"),
    ],
)
def test_not_a_pe(data: bytes, words: str) -> None:
    with pytest.raises(PEError, match="not a PE file") as excinfo:
        read_pe(data)
    assert words in str(excinfo.value)


def test_plain_dos_executable() -> None:
    dos = bytearray(build_pe(MACHINE_I386)[:0x80])
    struct.pack_into("<I", dos, 0x3C, 0x1000)
    with pytest.raises(PEError, match=r"e_lfanew .* 0x1000, past the end"):
        read_pe(bytes(dos))


def test_pe_error_is_a_value_error() -> None:
    assert issubclass(PEError, ValueError)


# --- truncated, corrupted and hostile input ----------------------------------------------


@pytest.mark.parametrize("machine", MACHINES)
def test_truncation_at_every_offset(machine: int) -> None:
    data = build_pe(machine, file_description="Intel PCI IDE Controller Driver")
    read_pe(data)
    for n in range(len(data)):
        with pytest.raises(PEError):
            read_pe(data[:n])


def test_truncated_section_message_names_the_section() -> None:
    data = build_pe(MACHINE_AMD64)
    with pytest.raises(PEError, match=r"section 1 \('\.rsrc'.*past the end"):
        read_pe(data[:-1])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    machine=st.sampled_from(MACHINES),
    changes=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_random_corruption(machine: int, changes: list[tuple[int, int]]) -> None:
    buf = bytearray(build_pe(machine, original_filename="viostor.sys"))
    for offset, value in changes:
        buf[offset % len(buf)] = value
    _assert_parses_or_peerror(bytes(buf))


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("value", [0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF])
def test_hostile_dword_at_every_header_and_resource_offset(machine: int, value: int) -> None:
    data = build_pe(machine, original_filename="pciide.sys")
    rsrc = _rsrc_offset(data)
    offsets = [*range(0, 0x200 - 3, 2), *range(rsrc, len(data) - 3, 2)]
    for offset in offsets:
        _assert_parses_or_peerror(_patch(data, offset, "<I", value))


def test_huge_section_count() -> None:
    data = _patch(build_pe(MACHINE_I386), COFF + 2, "<H", 0xFFFF)
    with pytest.raises(PEError, match="section table"):
        read_pe(data)


def test_huge_resource_entry_count() -> None:
    data = build_pe(MACHINE_I386)
    root = _rsrc_offset(data)
    with pytest.raises(PEError, match="claims 131070 entries"):
        read_pe(_patch(data, root + 12, "<HH", 0xFFFF, 0xFFFF))


def test_resource_directory_loop() -> None:
    """An RT_VERSION entry that points back at the root cannot make the walk loop."""
    data = build_pe(MACHINE_AMD64)
    root = _rsrc_offset(data)
    looped = _patch(data, root + 20, "<I", 0x8000_0000)  # type entry -> root directory
    with pytest.raises(PEError, match="directory"):
        read_pe(looped)


def test_resource_rva_outside_sections() -> None:
    data = build_pe(MACHINE_I386)
    dirs = OPT + 96
    with pytest.raises(PEError, match="not inside any section"):
        read_pe(_patch(data, dirs + 2 * 8, "<I", 0x0090_0000))


def test_version_data_rva_outside_sections() -> None:
    data = build_pe(MACHINE_I386)
    entry = _rsrc_offset(data) + 72
    with pytest.raises(PEError, match="VS_VERSIONINFO at RVA 0x123000"):
        read_pe(_patch(data, entry, "<I", 0x123000))


@pytest.mark.parametrize("w_length", [0, 1, 5])
def test_version_node_with_tiny_length(w_length: int) -> None:
    data = build_pe(MACHINE_I386)
    vs = _rsrc_offset(data) + 88
    with pytest.raises(PEError, match="wLength"):
        read_pe(_patch(data, vs, "<H", w_length))


def test_version_child_with_zero_length_ends_the_children() -> None:
    data = build_pe(MACHINE_I386)
    vs = _rsrc_offset(data) + 88
    children = vs + 0x5C  # header 6 + key 32 -> 40, value 52 -> 92
    assert data[children + 6 : children + 34] == "StringFileInfo".encode("utf-16-le")
    info = read_pe(_patch(data, children, "<H", 0))
    assert info.file_version == (5, 2, 3790, 0) and info.strings == {}


def test_bad_fixed_file_info_signature() -> None:
    data = build_pe(MACHINE_I386)
    ffi = _rsrc_offset(data) + 88 + 40
    assert _u32(data, ffi) == 0xFEEF04BD
    with pytest.raises(PEError, match="VS_FIXEDFILEINFO signature"):
        read_pe(_patch(data, ffi, "<I", 0xDEADBEEF))


def test_bad_optional_header_magic() -> None:
    data = _patch(build_pe(MACHINE_I386), OPT, "<H", 0x107)
    with pytest.raises(PEError, match="optional header magic 0x107"):
        read_pe(data)
