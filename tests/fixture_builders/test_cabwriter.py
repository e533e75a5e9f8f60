"""Tests for fixtures.cabwriter, with cabextract (libmspack) as the oracle."""

from __future__ import annotations

import math
import random
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.cabwriter import FRAME_SIZE, cab_checksum, write_cab

CONFIGS = [("none", 21), ("lzx", 15), ("lzx", 16), ("lzx", 18), ("lzx", 21), ("mszip", 21)]
CONFIG_IDS = [f"{c}{w}" if c == "lzx" else c for c, w in CONFIGS]

_RNG = random.Random(20070217)

FILE_SETS: dict[str, list[tuple[str, bytes]]] = {
    "tiny": [("atapi.sys", b"MZ\x90\x00tiny")],
    "empty-file": [("empty.txt", b""), ("after.txt", b"x"), ("trailing-empty", b"")],
    "only-empty": [("nothing.inf", b"")],
    "multi-block": [
        ("big.bin", _RNG.randbytes(100_003)),
        ("small.txt", b"between"),
        ("second.bin", _RNG.randbytes(40_000)),
    ],
    "odd-lengths": [(f"odd{n}.dat", _RNG.randbytes(n)) for n in (1, 3, 33, 32_767, 32_769)],
    "exact-frames": [("two-frames.bin", _RNG.randbytes(2 * FRAME_SIZE))],
    "subfolders": [
        ("i386\\atapi.sys", b"driver bytes" * 100),
        ("i386\\sub\\deep\\pciide.sys", b"\xe8\x00\x00\x00\x00" * 77),
        ("amd64/intelide.sys", b"forward slash becomes backslash"),
    ],
}


# --- a small independent CAB parser and the reference checksum -----------------------------


def reference_checksum(data: bytes, seed: int = 0) -> int:
    """CSUMCompute exactly as the CAB specification prints it."""
    csum = seed
    n = len(data) // 4
    for i in range(n):
        b = data[4 * i : 4 * i + 4]
        csum ^= b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24
    rest = data[4 * n :]
    ul = 0
    if len(rest) == 3:
        ul = rest[0] << 16 | rest[1] << 8 | rest[2]
    elif len(rest) == 2:
        ul = rest[0] << 8 | rest[1]
    elif len(rest) == 1:
        ul = rest[0]
    return csum ^ ul


def parse_cab(cab: bytes) -> dict:
    (sig, r1, cb_cabinet, r2, coff_files, r3, vminor, vmajor, c_folders, c_files, flags,
     set_id, i_cabinet) = struct.unpack_from("<4sIIIIIBBHHHHH", cab, 0)  # fmt: skip
    assert (sig, r1, r2, r3) == (b"MSCF", 0, 0, 0)
    folders = [struct.unpack_from("<IHH", cab, 36 + 8 * i) for i in range(c_folders)]
    files = []
    off = coff_files
    for _ in range(c_files):
        size, offset, ifolder, date, time, attribs = struct.unpack_from("<IIHHHH", cab, off)
        end = cab.index(b"\0", off + 16)
        files.append((size, offset, ifolder, date, time, attribs, cab[off + 16 : end]))
        off = end + 1
    blocks = []
    for coff, count, _ in folders:
        pos = coff
        for _ in range(count):
            csum, cb_data, cb_uncomp = struct.unpack_from("<IHH", cab, pos)
            blocks.append((csum, cb_data, cb_uncomp, cab[pos + 8 : pos + 8 + cb_data]))
            pos += 8 + cb_data
    return {
        "cbCabinet": cb_cabinet,
        "coffFiles": coff_files,
        "version": (vmajor, vminor),
        "flags": flags,
        "setID": set_id,
        "iCabinet": i_cabinet,
        "folders": folders,
        "files": files,
        "blocks": blocks,
        "end_of_blocks": pos if folders else None,
    }


def cabextract(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["cabextract", *map(str, args)], capture_output=True, text=True, check=False, timeout=120
    )


def listed_names(path: Path) -> list[str]:
    res = cabextract("-l", path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [line.split(" | ") for line in res.stdout.splitlines() if line.count(" | ") == 2]
    return [row[2] for row in rows[1:]]  # first row is the column titles


def assert_round_trip(files: list[tuple[str, bytes]], cab: bytes, workdir: Path) -> None:
    path = workdir / "test.cab"
    path.write_bytes(cab)
    res = cabextract("-t", path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "All done, no errors." in res.stdout
    out = workdir / "out"
    res = cabextract("-d", out, path)
    assert res.returncode == 0, res.stdout + res.stderr
    expected = {name.replace("\\", "/"): data for name, data in files}
    assert listed_names(path) == list(expected)
    extracted = {
        p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()
    }
    assert extracted == expected


def expected_type(compression: str, window_bits: int) -> int:
    return {"none": 0, "mszip": 1, "lzx": 3 | window_bits << 8}[compression]


# --- round trips through cabextract --------------------------------------------------------


@pytest.mark.parametrize(("compression", "window_bits"), CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("set_name", list(FILE_SETS))
def test_round_trip(compression: str, window_bits: int, set_name: str, tmp_path: Path) -> None:
    files = FILE_SETS[set_name]
    cab = write_cab(files, compression=compression, window_bits=window_bits)
    parsed = parse_cab(cab)
    assert len(parsed["folders"]) == 1
    assert parsed["folders"][0][2] == expected_type(compression, window_bits)
    assert_round_trip(files, cab, tmp_path)


@pytest.mark.parametrize(("compression", "window_bits"), CONFIGS, ids=CONFIG_IDS)
def test_dict_input_same_as_list(compression: str, window_bits: int) -> None:
    files = FILE_SETS["subfolders"]
    kwargs = {"compression": compression, "window_bits": window_bits}
    assert write_cab(dict(files), **kwargs) == write_cab(files, **kwargs)


def test_non_ascii_name_flagged_utf8(tmp_path: Path) -> None:
    files = [("Treiber\\größe.sys", b"abc")]
    cab = write_cab(files)
    (_, _, _, _, _, attribs, name) = parse_cab(cab)["files"][0]
    assert attribs == 0x20 | 0x80
    assert name == "Treiber\\größe.sys".encode()
    assert_round_trip(files, cab, tmp_path)


# --- the bytes themselves ------------------------------------------------------------------


@pytest.mark.parametrize(("compression", "window_bits"), CONFIGS, ids=CONFIG_IDS)
def test_header_folder_files_and_blocks(compression: str, window_bits: int) -> None:
    files = FILE_SETS["multi-block"] + FILE_SETS["subfolders"] + [("zero", b"")]
    cab = write_cab(
        files,
        compression=compression,
        window_bits=window_bits,
        set_id=0x1234,
        date_time=(2004, 8, 3, 21, 15, 33),
    )
    p = parse_cab(cab)
    total = sum(len(d) for _, d in files)
    assert p["cbCabinet"] == len(cab)
    assert p["coffFiles"] == 36 + 8
    assert p["version"] == (1, 3)
    assert (p["flags"], p["setID"], p["iCabinet"]) == (0, 0x1234, 0)
    coff, count, ctype = p["folders"][0]
    assert ctype == expected_type(compression, window_bits)
    assert count == math.ceil(total / FRAME_SIZE)
    assert p["end_of_blocks"] == len(cab)

    date = (2004 - 1980) << 9 | 8 << 5 | 3
    time = 21 << 11 | 15 << 5 | 33 // 2
    offset = 0
    for (size, off, ifolder, fdate, ftime, attribs, name), (want_name, data) in zip(
        p["files"], files, strict=True
    ):
        want_entry = (len(data), offset, 0, date, time, 0x20)
        assert (size, off, ifolder, fdate, ftime, attribs) == want_entry
        assert name == want_name.replace("/", "\\").encode()
        offset += size
    first_block = p["coffFiles"] + sum(16 + len(f[6]) + 1 for f in p["files"])
    assert coff == first_block

    uncomp = [b[2] for b in p["blocks"]]
    assert uncomp[:-1] == [FRAME_SIZE] * (count - 1)
    assert sum(uncomp) == total
    for csum, cb_data, cb_uncomp, payload in p["blocks"]:
        sizes = struct.pack("<HH", cb_data, cb_uncomp)
        want = reference_checksum(sizes, reference_checksum(payload))
        assert csum == want != 0
        assert cb_data <= FRAME_SIZE + 6144
        if compression == "none":
            assert cb_data == cb_uncomp
        elif compression == "mszip":
            assert payload[:2] == b"CK"


def test_lzx_frames_are_uncompressed_blocks() -> None:
    """Frame layout: [E8 bit] block type 3, 24-bit size, pad to word, R0-R2, data, odd pad."""
    data = _RNG.randbytes(2 * FRAME_SIZE + 5)
    blocks = parse_cab(write_cab([("f", data)], window_bits=16))["blocks"]
    assert [b[2] for b in blocks] == [FRAME_SIZE, FRAME_SIZE, 5]
    registers = struct.pack("<III", 1, 1, 1)
    # bits 0 011 000000001000000000000000 0000 -> words 0x3008 0x0000, little-endian
    assert blocks[0][3] == b"\x08\x30\x00\x00" + registers + data[:FRAME_SIZE]
    # bits 011 000000001000000000000000 00000 -> words 0x6010 0x0000
    assert blocks[1][3] == b"\x10\x60\x00\x00" + registers + data[FRAME_SIZE : 2 * FRAME_SIZE]
    # size 5: 011 000000000000000000000101 00000 -> words 0x6000 0x00a0, then one pad byte
    assert blocks[2][3] == b"\x00\x60\xa0\x00" + registers + data[-5:] + b"\0"


@pytest.mark.parametrize(("compression", "window_bits"), CONFIGS, ids=CONFIG_IDS)
def test_deterministic(compression: str, window_bits: int) -> None:
    files = FILE_SETS["multi-block"]
    kwargs = {"compression": compression, "window_bits": window_bits}
    assert write_cab(files, **kwargs) == write_cab(list(files), **kwargs)


def test_all_empty_files_have_no_data_blocks(tmp_path: Path) -> None:
    files = [("a", b""), ("b\\c", b"")]
    cab = write_cab(files)
    assert parse_cab(cab)["folders"][0][1] == 0
    assert_round_trip(files, cab, tmp_path)


# --- the oracle notices damage (so passing round trips mean something) ---------------------


def _first_block_offset(cab: bytes) -> int:
    return struct.unpack_from("<I", cab, 36)[0]


def test_cabextract_rejects_bad_checksum(tmp_path: Path) -> None:
    cab = bytearray(write_cab([("a.txt", b"hello world")]))
    cab[_first_block_offset(bytes(cab))] ^= 0x01
    path = tmp_path / "bad.cab"
    path.write_bytes(cab)
    res = cabextract("-t", path)
    assert res.returncode != 0
    assert "checksum" in res.stdout + res.stderr


def test_cabextract_decodes_the_lzx_stream(tmp_path: Path) -> None:
    """Setting the E8 bit (checksum fixed up) must break decoding: the stream is parsed."""
    cab = bytearray(write_cab([("a.txt", b"hello world" * 50)]))
    pos = _first_block_offset(bytes(cab))
    _, cb_data, cb_uncomp = struct.unpack_from("<IHH", cab, pos)
    cab[pos + 9] |= 0x80  # top bit of the first 16-bit word: E8 translation flag
    payload = bytes(cab[pos + 8 : pos + 8 + cb_data])
    csum = cab_checksum(struct.pack("<HH", cb_data, cb_uncomp), cab_checksum(payload))
    struct.pack_into("<I", cab, pos, csum)
    path = tmp_path / "e8.cab"
    path.write_bytes(cab)
    assert cabextract("-t", path).returncode != 0


# --- argument checking ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "kwargs"),
    [
        ([("a", b"x")], {"window_bits": 14}),
        ([("a", b"x")], {"window_bits": 22}),
        ([("a", b"x")], {"compression": "quantum"}),
        ([], {}),
        ([("a", b"x"), ("A", b"y")], {}),
        ([("", b"x")], {}),
        ([("a\\..\\b", b"x")], {}),
        ([("\\abs", b"x")], {}),
        ([("n" * 256, b"x")], {}),
        ([("a", b"x")], {"date_time": (1979, 1, 1, 0, 0, 0)}),
        ([("a", b"x")], {"set_id": 0x10000}),
    ],
)
def test_rejects_invalid_arguments(files: list[tuple[str, bytes]], kwargs: dict) -> None:
    with pytest.raises(ValueError):
        write_cab(files, **kwargs)


# --- property tests ------------------------------------------------------------------------


@given(data=st.binary(max_size=64), seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_checksum_matches_reference(data: bytes, seed: int) -> None:
    assert cab_checksum(data, seed) == reference_checksum(data, seed)


_contents = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda n, s: random.Random(s).randbytes(n),
        st.integers(min_value=0, max_value=3 * FRAME_SIZE + 7),
        st.integers(min_value=0, max_value=2**16),
    ),
)


@settings(max_examples=25, deadline=None)
@given(
    contents=st.lists(_contents, min_size=1, max_size=5),
    config=st.sampled_from(CONFIGS),
)
def test_round_trip_property(contents: list[bytes], config: tuple[str, int]) -> None:
    compression, window_bits = config
    files = [(f"dir{i % 2}\\file{i}.bin", data) for i, data in enumerate(contents)]
    cab = write_cab(files, compression=compression, window_bits=window_bits)
    assert parse_cab(cab)["folders"][0][2] == expected_type(compression, window_bits)
    with tempfile.TemporaryDirectory() as tmp:
        assert_round_trip(files, cab, Path(tmp))
