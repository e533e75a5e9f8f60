"""Tests of fixtures/regf.py, the writer of a minimal empty registry hive.

The hive is checked the way the rest of the test suite uses it: hivex opens it, grows
it into a deep key tree with values of every common type, commits, and reads it back;
hivexregedit exports it.  The on-disk structure (header checksum, cells, security
descriptor) is checked with an independent parser written here.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from fixtures.regf import minimal_hive_bytes, write_minimal_hive
except ModuleNotFoundError:  # pytest run from elsewhere than the project root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from fixtures.regf import minimal_hive_bytes, write_minimal_hive

import hivex  # noqa: E402  (Debian python3-hivex; required)

REG_SZ = 1
REG_EXPAND_SZ = 2
REG_BINARY = 3
REG_DWORD = 4
REG_MULTI_SZ = 7
REG_QWORD = 11

BINS_START = 0x1000


# --------------------------------------------------------------------------- helpers


def _sz(text: str) -> bytes:
    """REG_SZ / REG_EXPAND_SZ data: UTF-16LE with its terminating NUL."""
    return (text + "\0").encode("utf-16-le")


def _multi_sz(items: list[str]) -> bytes:
    """REG_MULTI_SZ data: NUL-terminated strings followed by an empty string."""
    return "".join(s + "\0" for s in items).encode("utf-16-le") + b"\0\0"


def _checksum(block: bytes) -> int:
    """Independent recomputation of the REGF header checksum."""
    acc = 0
    for i in range(0, 0x1FC, 4):
        acc ^= int.from_bytes(block[i : i + 4], "little")
    return {0: 1, 0xFFFFFFFF: 0xFFFFFFFE}.get(acc, acc)


def _cells(data: bytes) -> list[tuple[int, int, bytes]]:
    """Walk every hbin and return (bins-relative offset, signed size, cell data)."""
    out = []
    pos = BINS_START
    while pos < len(data):
        assert data[pos : pos + 4] == b"hbin"
        bin_off, bin_size = struct.unpack_from("<II", data, pos + 4)
        assert bin_off == pos - BINS_START
        assert bin_size % 4096 == 0 and bin_size > 0
        cell = pos + 32
        while cell < pos + bin_size:
            (size,) = struct.unpack_from("<i", data, cell)
            assert size != 0 and abs(size) % 8 == 0, f"bad cell size {size} at {cell:#x}"
            out.append((cell - BINS_START, size, data[cell + 4 : cell + abs(size)]))
            cell += abs(size)
        assert cell == pos + bin_size, "cells do not tile the bin exactly"
        pos += bin_size
    return out


def _parse_sid(buf: bytes, off: int) -> str:
    rev, count = buf[off], buf[off + 1]
    auth = int.from_bytes(buf[off + 2 : off + 8], "big")
    subs = struct.unpack_from(f"<{count}I", buf, off + 8)
    return "-".join(["S", str(rev), str(auth), *map(str, subs)])


def _sk_refcount(data: bytes) -> tuple[int, int]:
    """Return (sk offset, refcount) of the security cell used by the root key."""
    (root_off,) = struct.unpack_from("<I", data, 0x24)
    (sk_off,) = struct.unpack_from("<I", data, BINS_START + root_off + 4 + 0x2C)
    sk = BINS_START + sk_off + 4
    assert data[sk : sk + 2] == b"sk"
    (refcount,) = struct.unpack_from("<I", data, sk + 0x0C)
    return sk_off, refcount


def _ensure_path(h, path: str) -> int:
    """Return the node for backslash-separated ``path`` under root, creating it."""
    node = h.root()
    for name in path.split("\\"):
        child = h.node_get_child(node, name)
        node = child if child is not None else h.node_add_child(node, name)
    return node


def _set(h, node: int, name: str, t: int, value: bytes) -> None:
    h.node_set_value(node, {"key": name, "t": t, "value": value})


def _find(h, path: str) -> int:
    node = h.root()
    for name in path.split("\\"):
        node = h.node_get_child(node, name)
        assert node is not None, f"missing key {path}"
    return node


# Values written to the tree, by key path: name -> (type, bytes).
VIOSTOR = "ControlSet001\\Services\\viostor"
VALUES: dict[str, dict[str, tuple[int, bytes]]] = {
    VIOSTOR: {
        "Start": (REG_DWORD, struct.pack("<I", 0)),
        "Type": (REG_DWORD, struct.pack("<I", 1)),
        "ErrorControl": (REG_DWORD, struct.pack("<I", 0xDEADBEEF)),
        "Group": (REG_SZ, _sz("SCSI miniport")),
        "ImagePath": (REG_EXPAND_SZ, _sz("%SystemRoot%\\System32\\drivers\\viostor.sys")),
        "DependOnService": (REG_MULTI_SZ, _multi_sz(["FltMgr", "PnP"])),
        "InstallTime": (REG_QWORD, struct.pack("<Q", 0x01D9_1234_5678_9ABC)),
        "Blob": (REG_BINARY, bytes(range(256)) * 3),
    },
    "ControlSet001\\Services\\viostor\\Parameters\\PnpInterface": {
        "5": (REG_DWORD, struct.pack("<I", 1)),
    },
    "ControlSet001\\Control\\CriticalDeviceDatabase\\pci#ven_1af4&dev_1001": {
        "ClassGUID": (REG_SZ, _sz("{4D36E97B-E325-11CE-BFC1-08002BE10318}")),
        "Service": (REG_SZ, _sz("viostor")),
    },
    "Select": {
        "Current": (REG_DWORD, struct.pack("<I", 1)),
        "Default": (REG_DWORD, struct.pack("<I", 1)),
    },
    "A\\B\\C\\D\\E\\F\\G\\H\\I\\J\\K\\L": {
        "Deep": (REG_SZ, _sz("twelve levels down")),
    },
}


def _all_key_paths() -> list[str]:
    """~200 key paths: the ones holding VALUES plus many services with subkeys."""
    paths = list(VALUES)
    for i in range(60):
        svc = f"ControlSet001\\Services\\Svc{i:03d}"
        paths += [svc, svc + "\\Parameters", svc + "\\Enum"]
    return paths


def _key_count(paths: list[str]) -> int:
    """Number of distinct keys (root excluded) that creating ``paths`` makes."""
    keys = set()
    for p in paths:
        parts = p.split("\\")
        keys.update("\\".join(parts[: i + 1]) for i in range(len(parts)))
    return len(keys)


@pytest.fixture
def hive_path(tmp_path: Path) -> Path:
    path = tmp_path / "SYSTEM"
    write_minimal_hive(path)
    return path


@pytest.fixture
def grown_hive(hive_path: Path) -> Path:
    """The minimal hive after hivex added the whole tree and committed it in place."""
    h = hivex.Hivex(str(hive_path), write=True)
    for path in _all_key_paths():
        _ensure_path(h, path)
    for path, values in VALUES.items():
        node = _find(h, path)
        for name, (t, value) in values.items():
            _set(h, node, name, t, value)
    h.commit(None)
    del h
    return hive_path


# ------------------------------------------------------------------ opening with hivex


def test_hivex_opens_empty_hive(hive_path: Path) -> None:
    h = hivex.Hivex(str(hive_path))
    root = h.root()
    assert h.node_name(root) == "ROOT"
    assert h.node_children(root) == []
    assert h.node_values(root) == []
    # (node_nr_children / node_nr_values are not used: hivex 1.3.23's Python binding
    # treats a count of 0 as an error and raises "RuntimeError: Success".)


@pytest.mark.parametrize("minor", [3, 4, 5, 6])
@pytest.mark.parametrize(
    "root_name",
    ["ROOT", "CMI-CreateHive{2A7FB991-7BBE-4F9D-B91E-7CB51D4737F5}", "x" * 255],
)
def test_root_name_and_version(tmp_path: Path, root_name: str, minor: int) -> None:
    path = tmp_path / "hive"
    write_minimal_hive(path, root_name=root_name, minor_version=minor)
    h = hivex.Hivex(str(path))
    assert h.node_name(h.root()) == root_name
    assert h.node_children(h.root()) == []
    assert struct.unpack_from("<II", path.read_bytes(), 0x14) == (1, minor)


def test_opens_for_write_and_commits_unchanged(hive_path: Path) -> None:
    h = hivex.Hivex(str(hive_path), write=True)
    h.commit(None)
    del h
    h = hivex.Hivex(str(hive_path))
    assert h.node_name(h.root()) == "ROOT"
    assert h.node_children(h.root()) == []


# ------------------------------------------------------------- growing and reading back


def test_grown_hive_reads_back_every_value(grown_hive: Path) -> None:
    h = hivex.Hivex(str(grown_hive))
    for path, values in VALUES.items():
        node = _find(h, path)
        assert {h.value_key(v) for v in h.node_values(node)} == set(values)
        for name, (t, value) in values.items():
            val = h.node_get_value(node, name)
            assert h.value_type(val) == (t, len(value))
            assert h.value_value(val) == (t, value)

    viostor = _find(h, VIOSTOR)
    assert h.value_dword(h.node_get_value(viostor, "Start")) == 0
    # The binding returns REG_DWORD as a signed 32-bit int.
    assert h.value_dword(h.node_get_value(viostor, "ErrorControl")) & 0xFFFFFFFF == 0xDEADBEEF
    assert h.value_qword(h.node_get_value(viostor, "InstallTime")) == 0x01D9_1234_5678_9ABC
    assert h.value_string(h.node_get_value(viostor, "Group")) == "SCSI miniport"
    assert (
        h.value_string(h.node_get_value(viostor, "ImagePath"))
        == "%SystemRoot%\\System32\\drivers\\viostor.sys"
    )
    # hivex 1.3.23's binding also returns the empty string of the final terminator.
    strings = h.value_multiple_strings(h.node_get_value(viostor, "DependOnService"))
    while strings and strings[-1] == "":
        strings.pop()
    assert strings == ["FltMgr", "PnP"]


def test_grown_hive_has_all_keys(grown_hive: Path) -> None:
    paths = _all_key_paths()
    assert _key_count(paths) >= 200
    h = hivex.Hivex(str(grown_hive))
    for path in paths:
        _find(h, path)
    services = _find(h, "ControlSet001\\Services")
    names = {h.node_name(c) for c in h.node_children(services)}
    assert names == {"viostor"} | {f"Svc{i:03d}" for i in range(60)}
    assert [h.node_name(c) for c in h.node_children(h.root())] == ["A", "ControlSet001", "Select"]


def test_grown_hive_spans_several_bins_and_stays_consistent(grown_hive: Path) -> None:
    data = grown_hive.read_bytes()
    (bins_size,) = struct.unpack_from("<I", data, 0x28)
    assert bins_size > 4096, "the tree should not fit in the original single bin"
    assert len(data) == BINS_START + bins_size
    seq1, seq2 = struct.unpack_from("<II", data, 4)
    assert seq1 == seq2
    assert struct.unpack_from("<I", data, 0x1FC)[0] == _checksum(data)
    _cells(data)  # every bin is tiled by well-formed cells

    # hivex gave every new key the root's sk cell and counted the references.
    _sk_off, refcount = _sk_refcount(data)
    assert refcount == 1 + _key_count(_all_key_paths())


def test_hivexregedit_exports_grown_hive(grown_hive: Path) -> None:
    proc = subprocess.run(
        ["hivexregedit", "--export", str(grown_hive), "\\"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = re.sub(r"\\\r?\n\s*", "", proc.stdout)  # join continued lines, if any
    lines = set(out.splitlines())
    assert "[\\ControlSet001\\Services\\viostor]" in lines
    assert "[\\A\\B\\C\\D\\E\\F\\G\\H\\I\\J\\K\\L]" in lines
    assert "[\\ControlSet001\\Services\\Svc059\\Enum]" in lines
    assert '"Start"=dword:00000000' in lines
    assert '"ErrorControl"=dword:deadbeef' in lines
    for name, (t, value) in VALUES[VIOSTOR].items():
        if t == REG_DWORD:
            continue
        assert f'"{name}"=hex({t:x}):' + ",".join(f"{b:02x}" for b in value) in lines


# --------------------------------------------------------------------- on-disk format


def test_header_fields_and_checksum() -> None:
    data = minimal_hive_bytes(hive_name="SYSTEM", minor_version=3)
    assert len(data) == 8192
    assert data[:4] == b"regf"
    seq1, seq2, stamp, major, minor, ftype, fmt, root, bins, cluster = struct.unpack_from(
        "<IIQIIIIIII", data, 4
    )
    assert seq1 == seq2
    assert stamp != 0
    assert (major, minor, ftype, fmt, cluster) == (1, 3, 0, 1, 1)
    assert bins == 4096
    assert root == 0x20
    assert data[0x30:0x70] == "SYSTEM".encode("utf-16-le").ljust(64, b"\0")
    assert struct.unpack_from("<I", data, 0x1FC)[0] == _checksum(data)
    assert data[0x200:0x1000] == bytes(0xE00)


def test_checksum_special_cases() -> None:
    from fixtures.regf import header_checksum

    assert header_checksum(bytes(512)) == 1  # XOR 0 is reserved
    all_ones = b"\xff\xff\xff\xff" + bytes(508)
    assert header_checksum(all_ones) == 0xFFFFFFFE  # XOR 0xFFFFFFFF is reserved
    assert header_checksum(b"\x01\0\0\0\x02\0\0\0" + bytes(504)) == 3


def test_cells_nk_sk_and_free() -> None:
    data = minimal_hive_bytes(root_name="ROOT")
    cells = _cells(data)
    assert [size < 0 for _, size, _ in cells] == [True, True, False]
    assert all(off % 8 == 0 for off, _, _ in cells)
    (nk_off, _, nk), (sk_off, _, sk), (free_off, free_size, _) = cells
    assert free_off + free_size == 4096

    # Root nk.
    assert nk[:2] == b"nk"
    (flags,) = struct.unpack_from("<H", nk, 2)
    assert flags == 0x0004 | 0x0008 | 0x0020  # HIVE_ENTRY | NO_DELETE | COMP_NAME
    n_sub, n_vsub, sub_list, vsub_list, n_val, val_list, sec, cls = struct.unpack_from(
        "<8I", nk, 0x14
    )
    assert (n_sub, n_vsub, n_val) == (0, 0, 0)
    assert (sub_list, vsub_list, val_list, cls) == (0xFFFFFFFF,) * 4
    assert sec == sk_off
    name_len, cls_len = struct.unpack_from("<HH", nk, 0x48)
    assert (name_len, cls_len) == (4, 0)
    assert nk[0x4C : 0x4C + name_len] == b"ROOT"

    # sk: self-linked, one reference, valid self-relative descriptor.
    assert sk[:2] == b"sk"
    flink, blink, refcount, sd_len = struct.unpack_from("<IIII", sk, 4)
    assert (flink, blink, refcount) == (sk_off, sk_off, 1)
    sd = sk[0x14 : 0x14 + sd_len]
    assert len(sd) == sd_len
    rev, _sbz, control, o_owner, o_group, o_sacl, o_dacl = struct.unpack_from("<BBHIIII", sd)
    assert rev == 1
    assert control & 0x8000 and control & 0x0004  # SELF_RELATIVE, DACL_PRESENT
    assert o_sacl == 0
    assert _parse_sid(sd, o_owner) == "S-1-5-32-544"
    assert _parse_sid(sd, o_group) == "S-1-5-18"
    acl_rev, _, acl_size, ace_count, _ = struct.unpack_from("<BBHHH", sd, o_dacl)
    assert acl_rev == 2 and o_dacl + acl_size <= sd_len
    aces = []
    pos = o_dacl + 8
    for _ in range(ace_count):
        ace_type, _ace_flags, ace_size, mask = struct.unpack_from("<BBHI", sd, pos)
        assert ace_type == 0  # ACCESS_ALLOWED
        aces.append((_parse_sid(sd, pos + 8), mask))
        pos += ace_size
    assert pos == o_dacl + acl_size
    assert aces == [
        ("S-1-5-18", 0xF003F),
        ("S-1-5-32-544", 0xF003F),
        ("S-1-1-0", 0x20019),
    ]


def test_deterministic() -> None:
    assert minimal_hive_bytes() == minimal_hive_bytes()
    assert minimal_hive_bytes("X", "SOFTWARE", 5) == minimal_hive_bytes("X", "SOFTWARE", 5)
    assert minimal_hive_bytes("X") != minimal_hive_bytes("Y")


def test_write_matches_bytes(tmp_path: Path) -> None:
    path = tmp_path / "SOFTWARE"
    write_minimal_hive(path, root_name="SW", hive_name="SOFTWARE", minor_version=5)
    assert path.read_bytes() == minimal_hive_bytes("SW", "SOFTWARE", 5)


# ---------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs",
    [
        {"root_name": "x" * 256},  # longer than a Windows key name
        {"root_name": "Wurzelschlüssel"},  # not ASCII: can not be a KEY_COMP_NAME name
        {"root_name": "ROOT\u20ac"},
        {"root_name": ""},
        {"root_name": "A\\B"},
        {"hive_name": "H" * 32},  # does not fit the 64-byte UTF-16 field
        {"minor_version": 2},
        {"minor_version": 7},
    ],
)
def test_bad_arguments_raise_value_error(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        minimal_hive_bytes(**kwargs)
    path = tmp_path / "not-created"
    with pytest.raises(ValueError):
        write_minimal_hive(path, **kwargs)
    assert not path.exists()
