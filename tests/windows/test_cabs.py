"""Cabinet listing, extraction through cabextract, and drvindex.inf parsing.

The cabinets are the 96 real test files in ``realdata/cab`` (libmspack, cabextract, gcab,
libarchive, python-cabarchive and Microsoft cabarc ones; see CABS.md there).  The oracles
are independent of the code under test: ``cabextract -l`` for names and sizes, the MD5s
that MANIFEST.json recorded from ``cabextract -t``, and a separate plain ``cabextract -d``
run of the whole cabinet.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2vimage.errors import EXIT_BAD_INPUT, CorruptImageError
from p2vimage.formats.cabinet import (
    COMP_LZX,
    COMP_MSZIP,
    CabEntry,
    CabinetFormatError,
    folders,
    list_cabinet,
    read_cabinet,
    read_cabinet_bytes,
)
from p2vimage.windows import cabs
from p2vimage.windows.cabs import (
    CabinetError,
    cabextract_version,
    cabinets_for,
    extract,
    is_safe_member_name,
    parse_drvindex,
)
from tests.conftest import REALDATA

CAB_ROOT = REALDATA / "cab"
MANIFEST_PATH = CAB_ROOT / "MANIFEST.json"

# cabextract, gcab and the real cabinets are required: missing ones fail, never skip.
MANIFEST: dict = json.loads(MANIFEST_PATH.read_text())
ALL_CABS = sorted(str(p.relative_to(CAB_ROOT)) for p in CAB_ROOT.rglob("*.cab"))
PASSING = [c for c in ALL_CABS if MANIFEST.get(c, {}).get("cabextract_t_exit") == 0]
FAILING = [c for c in ALL_CABS if MANIFEST.get(c, {}).get("cabextract_t_exit") != 0]

#: Files whose cabinet is not at offset 0 (libmspack finds it by scanning the file).  A
#: Driver Cache cabinet always starts with MSCF, so p2vimage refuses these on purpose.
EMBEDDED = {
    "cabextract-test-cabs/search.cab",
    "libmspack-cabd/search_basic.cab",
    "libmspack-cabd/search_tricky1.cab",
}
#: Members bigger than this are not extracted in the test (none of the outer cabinets has
#: one; the 2 GiB members of the nested large-files.cab are only listed, never extracted).
MAX_TEST_MEMBER = 20 * 1024 * 1024

_LIST_LINE = re.compile(rb"^ *(\d+) \| [^|]* \| (.*)$")


def _md5(path: Path | bytes) -> str:
    return hashlib.md5(Path(os.fsdecode(path)).read_bytes()).hexdigest()


def _cabextract_list(path: Path) -> tuple[int, list[tuple[int, bytes]]]:
    proc = subprocess.run(
        ["cabextract", "-q", "-l", str(path)], capture_output=True, check=False, timeout=60
    )
    rows = []
    for line in proc.stdout.split(b"\n"):
        match = _LIST_LINE.match(line)
        if match:
            rows.append((int(match.group(1)), match.group(2)))
    return proc.returncode, rows


def _reference_extract(path: Path, out: Path) -> dict[bytes, str]:
    """A plain, independent `cabextract -d` of the whole cabinet: {relative path: md5}."""
    out.mkdir()
    subprocess.run(
        ["cabextract", "-q", "-d", str(out), str(path)], capture_output=True, check=False
    )
    root = os.fsencode(out)
    result = {}
    for top, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(top, name)
            result[os.path.relpath(full, root)] = _md5(full)
    return result


def _tree(root: Path) -> list[str]:
    return sorted(os.fsdecode(p.relative_to(root)) for p in root.rglob("*"))


# --- a tiny cabinet writer for hand-made hostile cases ---------------------------------------


def _make_cab(members: list[tuple[bytes, bytes]], attr: int = 0x20) -> bytes:
    """An uncompressed single-folder cabinet (CFDATA checksums 0 = not present)."""
    files = b""
    offset = 0
    for name, content in members:
        files += struct.pack("<IIHHHH", len(content), offset, 0, 0x226C, 0x59BA, attr)
        files += name + b"\0"
        offset += len(content)
    data = b"".join(content for _, content in members)
    blocks = [data[i : i + 32768] for i in range(0, len(data), 32768)]
    coff_files = 36 + 8
    data_start = coff_files + len(files)
    cfdata = b"".join(struct.pack("<IHH", 0, len(b), len(b)) + b for b in blocks)
    total = data_start + len(cfdata)
    header = struct.pack(
        "<4sIIIIIBBHHHHH", b"MSCF", 0, total, 0, coff_files, 0, 3, 1, 1, len(members), 0, 77, 0
    )
    return header + struct.pack("<IHH", data_start, len(blocks), 0) + files + cfdata


# --- listing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", ALL_CABS)
def test_listing_matches_cabextract(rel: str) -> None:
    """Names and sizes equal `cabextract -l` wherever it succeeds; junk is a
    CabinetFormatError."""
    path = CAB_ROOT / rel
    rc, rows = _cabextract_list(path)
    try:
        info = read_cabinet(path)
    except CabinetFormatError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        # only libmspack's scan for embedded cabinets finds something we refuse
        assert rc != 0 or not rows or rel in EMBEDDED, rel
        return
    assert rel not in EMBEDDED
    entries = list_cabinet(path)
    assert entries == list(info.entries)
    assert all(isinstance(e, CabEntry) for e in entries)
    ours = [(e.size, name) for e, name in zip(entries, info.output_names, strict=True)]
    if rc == 0:
        if info.spanned:  # cabextract lists the merged set, each file once
            assert set(ours) <= set(rows)
        else:
            assert ours == rows
    # the simple cases spelled out: output name = stored name with "\" -> "/"
    for entry, name in zip(entries, info.output_names, strict=True):
        simple = entry.name.isascii() and entry.name[0] not in "\\/" and ".." not in entry.name
        if simple and "/" not in entry.name:
            assert name == entry.name.replace("\\", "/").encode()

    header = MANIFEST[rel]["header"]
    assert [f["size"] for f in header["files"]] == [e.size for e in entries]
    for f, e in zip(header["files"], entries, strict=True):
        if isinstance(f["folder"], int):
            assert e.folder == f["folder"]
        else:  # 0xfffd/0xfffe/0xffff: continued across cabinets
            assert e.folder is None
        if f["name"].isascii() and rel != "libmspack-cabd/hidden-files.cab":
            assert e.name == f["name"]
    assert [f["method"] for f in header["folders"]] == [f.method for f in folders(path)]


def test_hidden_files_cab_follows_libmspack() -> None:
    """coffFiles points at other records than those after the folders; cabextract wins."""
    path = CAB_ROOT / "libmspack-cabd/hidden-files.cab"
    assert [e.name for e in list_cabinet(path)] == ["normal1.txt", "normal2.txt"]


def test_folder_compression_facts() -> None:
    mixed = folders(CAB_ROOT / "libmspack-cabd/mszip_lzx_qtm.cab")
    assert [f.method for f in mixed] == ["MSZIP", "LZX:18", "Quantum:level2:window18"]
    assert [(f.compression, f.window_bits) for f in mixed] == [(1, 15), (3, 18), (2, 18)]
    lzx21 = folders(CAB_ROOT / "node-cabarc/lzx-21.cab")
    assert [(f.compression, f.window_bits) for f in lzx21] == [(COMP_LZX, 21)]
    assert all(f.supported for f in mixed + lzx21)
    odd = folders(CAB_ROOT / "libmspack-cabd/cve-2014-9732-folders-segfault.cab")
    assert [f.method for f in odd] == ["none", "unknown(15)"] and not odd[1].supported


def test_large_files_listed_not_extracted(tmp_path: Path) -> None:
    """The 14 MB inner cabinet is extracted and listed; its 2 GiB members are not extracted."""
    outer = CAB_ROOT / "cabextract-test-cabs/large-files-cab.cab"
    got = extract(outer, ["large-files.cab"], tmp_path)
    inner = got["large-files.cab"]
    assert inner.stat().st_size == 14_689_228
    assert _md5(inner).startswith("ac923e14")
    info = read_cabinet(inner)
    assert [f.method for f in info.folders] == ["MSZIP", "LZX:15", "LZX:21"]
    assert [e.size for e in info.entries] == [2_147_450_880] * 3
    assert sorted(e.folder for e in info.entries) == [0, 1, 2]


# --- extraction over every cabinet ------------------------------------------------------------


@pytest.mark.parametrize("rel", PASSING)
def test_extract_every_member_of_good_cabinets(rel: str, tmp_path: Path) -> None:
    path = CAB_ROOT / rel
    dest = tmp_path / "dest"
    if rel in EMBEDDED:
        with pytest.raises(CabinetError):
            extract(path, ["x"], dest)
        assert not dest.exists() or _tree(dest) == []
        return

    info = read_cabinet(path)
    keys = [cabs._windows_key(e.name) for e in info.entries]
    wanted, refused, shared = [], [], []
    for entry, key in zip(info.entries, keys, strict=True):
        if not is_safe_member_name(entry.name):
            refused.append(entry.name)
        elif keys.count(key) > 1:  # e.g. names that all decode to U+FFFD
            shared.append(entry.name)
        elif entry.size <= MAX_TEST_MEMBER:
            wanted.append(entry.name)
    assert wanted or rel == "cabextract-test-cabs/dirwalk-vulns.cab" or shared

    got = extract(path, wanted, dest)
    assert list(got) == wanted
    reference = _reference_extract(path, tmp_path / "reference")
    manifest = {f["name"]: f["md5"] for f in MANIFEST[rel]["cabextract_t_ok_files"]}
    by_name = {e.name: (e, n) for e, n in zip(info.entries, info.output_names, strict=True)}
    for name, out in got.items():
        entry, rel_out = by_name[name]
        assert out == dest / os.fsdecode(rel_out)
        assert out.is_file() and not out.is_symlink()
        assert out.resolve().is_relative_to(dest.resolve())
        assert out.stat().st_size == entry.size
        digest = _md5(out)
        assert digest == reference[rel_out], name
        if os.fsdecode(rel_out) in manifest:
            assert digest == manifest[os.fsdecode(rel_out)], name
    # nothing else was left behind (no temporary directory either)
    assert _tree(dest) == sorted(
        {os.fsdecode(p) for o in got.values() for p in _parents(o.relative_to(dest))}
    )
    for name in refused + shared:
        before = _tree(dest)
        with pytest.raises(CabinetError):
            extract(path, [name], dest)
        assert _tree(dest) == before


def _parents(rel: Path) -> list[Path]:
    return [rel, *[p for p in rel.parents if str(p) != "."]]


@pytest.mark.parametrize("rel", FAILING)
def test_corrupt_cabinets_raise_and_leave_nothing(rel: str, tmp_path: Path) -> None:
    path = CAB_ROOT / rel
    try:
        names = [e.name for e in list_cabinet(path)]
    except CabinetFormatError:
        names = [f["name"] for f in MANIFEST[rel]["header"].get("files", [])] or ["x"]
        names = [n for n in names if is_safe_member_name(n)] or ["x"]
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(CabinetError) as caught:
        extract(path, names, dest)
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert isinstance(caught.value, CorruptImageError)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert _tree(dest) == []


def test_split_set_member_spanning_cabinets(tmp_path: Path) -> None:
    """medium2.bin starts in split-2 and ends in split-4; cabextract follows the set."""
    got = extract(CAB_ROOT / "cabextract-test-cabs/split-3.cab", ["MEDIUM2.BIN"], tmp_path)
    assert _md5(got["MEDIUM2.BIN"]).startswith("b4b0a02a")


def test_renamed_multi_basic_set(tmp_path: Path) -> None:
    """The libmspack 5-part set works once its parts carry the names their headers use."""
    for n in range(1, 6):
        src = CAB_ROOT / f"libmspack-cabd/multi_basic_pt{n}.cab"
        shutil.copy(src, tmp_path / f"cabd_multi_basic_pt{n}.cab")
    got = extract(
        tmp_path / "cabd_multi_basic_pt1.cab",
        ["test1.txt", "test2.txt", "test3.txt"],
        tmp_path / "out",
    )
    prefixes = {"test1.txt": "1ee6ef51", "test2.txt": "8e8ca89f", "test3.txt": "e207982a"}
    for name, out in got.items():
        assert _md5(out).startswith(prefixes[name])


def test_microsoft_cabarc_lzx21(tmp_path: Path) -> None:
    path = CAB_ROOT / "node-cabarc/lzx-21.cab"
    got = extract(path, ["README.md"], tmp_path)
    assert _md5(got["README.md"]) == "2e0a298aa2da71fa28732e8b7da4be64"
    assert _tree(tmp_path) == ["README.md"]  # only the requested member was written
    # Windows name semantics: any case, either slash; the stored spelling is used on disk
    got = extract(path, ["FolderName/SOMEFILE.txt"], tmp_path / "b")
    out = got["FolderName/SOMEFILE.txt"]
    assert out == tmp_path / "b" / "foldername" / "somefile.txt"
    assert _md5(out) == "5894cd6bd18e4b5c0b22ec447b8eba08"


def test_gcab_mszip_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    payload = {
        "rand.bin": os.urandom(150_000),
        "sub/text.txt": "".join(f"line {i}\r\n" for i in range(20_000)).encode(),
        "empty.sys": b"",
    }
    for name, data in payload.items():
        (src / name).write_bytes(data)
    cab = tmp_path / "made.cab"
    subprocess.run(["gcab", "-c", "-z", str(cab), *payload], cwd=src, check=True)
    info = read_cabinet(cab)
    assert {f.compression for f in info.folders} == {COMP_MSZIP}
    assert sorted(e.name for e in info.entries) == ["empty.sys", "rand.bin", "sub\\text.txt"]
    got = extract(cab, ["sub\\text.txt", "rand.bin", "EMPTY.SYS"], tmp_path / "out")
    assert got["sub\\text.txt"].read_bytes() == payload["sub/text.txt"]
    assert got["rand.bin"].read_bytes() == payload["rand.bin"]
    assert got["EMPTY.SYS"].read_bytes() == b""


# --- checksums and hostile input -------------------------------------------------------------


@pytest.mark.parametrize("rel", ["node-cabarc/mszip.cab", "node-cabarc/none.cab"])
def test_cfdata_checksum_is_verified(rel: str, tmp_path: Path) -> None:
    """libmspack checks CFDATA checksums while extracting; a flipped byte is an error."""
    data = bytearray((CAB_ROOT / rel).read_bytes())
    info = read_cabinet_bytes(bytes(data))
    start = info.folders[0].data_offset
    checksum, compressed, _ = struct.unpack_from("<IHH", data, start)
    assert checksum != 0 and compressed > 40
    data[start + 8 + 20] ^= 0x01
    bad = tmp_path / "bad.cab"
    bad.write_bytes(data)
    dest = tmp_path / "dest"
    with pytest.raises(CabinetError, match="checksum error"):
        extract(bad, ["README.md"], dest)
    assert _tree(dest) == []


def test_dirwalk_names_refused_and_nothing_outside(tmp_path: Path) -> None:
    path = CAB_ROOT / "cabextract-test-cabs/dirwalk-vulns.cab"
    entries = list_cabinet(path)
    assert len(entries) == 29
    hostile = [e.name for e in entries if ".." in e.name or e.name[0] in "\\/"]
    assert len(hostile) == 26
    dest = tmp_path / "a" / "dest"
    dest.mkdir(parents=True)
    for name in hostile:
        with pytest.raises(CabinetError, match="unsafe"):
            extract(path, [name], dest)
    # spelled without the leading slash, the name is simply not a member
    with pytest.raises(CabinetError, match="no member named 'absolute/path'"):
        extract(path, ["absolute/path"], dest)
    assert _tree(tmp_path) == ["a", "a/dest"]
    # the three members whose names are only replacement characters extract normally
    rest = [e.name for e in entries if e.name not in hostile]
    got = extract(path, rest, dest)
    assert all(p.parent == dest for p in got.values())
    assert sorted(_tree(tmp_path))[:2] == ["a", "a/dest"] and len(_tree(tmp_path)) == 5


@pytest.mark.parametrize(
    "name",
    [
        "..\\atapi.sys",
        "a\\..\\b",
        "\\atapi.sys",
        "/etc/passwd",
        "C:atapi.sys",
        "c:\\x",
        "*.sys",
        "atapi.sy?",
        "[a]tapi.sys",
        "",
        "a\\\\b",
        "dir\\",
        ".\\x",
        "a\x00b",
        "a\nb",
        "x<y",
        'x"y',
        "a|b",
        "file.sys:stream",
    ],
)
def test_unsafe_request_names(name: str, tmp_path: Path, monkeypatch) -> None:
    assert not is_safe_member_name(name)
    calls = []
    monkeypatch.setattr(cabs.subprocess, "run", lambda *a, **k: calls.append(a))
    with pytest.raises(CabinetError, match="unsafe"):
        extract(CAB_ROOT / "node-cabarc/mszip.cab", [name], tmp_path)
    assert calls == [] and _tree(tmp_path) == []  # refused before cabextract runs


def test_safe_request_names() -> None:
    for name in ["atapi.sys", "ATAPI.SYS", "i386\\pciidex.sys", "a/b/c.inf", "tést.dat", "a.b"]:
        assert is_safe_member_name(name)


def test_missing_members_are_named(tmp_path: Path) -> None:
    with pytest.raises(CabinetError, match=r"no member named 'atapi.sys', 'pciide.sys'"):
        extract(
            CAB_ROOT / "node-cabarc/mszip.cab", ["README.md", "atapi.sys", "pciide.sys"], tmp_path
        )
    assert _tree(tmp_path) == []


def test_hand_made_cab_round_trip(tmp_path: Path) -> None:
    cab = tmp_path / "driver.cab"
    cab.write_bytes(_make_cab([(b"atapi.sys", b"A" * 40_000), (b"intelide.sys", b"I" * 7)]))
    got = extract(cab, ["ATAPI.SYS", "IntelIde.sys", "atapi.sys"], tmp_path / "out")
    assert got["ATAPI.SYS"] == got["atapi.sys"] == tmp_path / "out" / "atapi.sys"
    assert got["ATAPI.SYS"].read_bytes() == b"A" * 40_000
    assert got["IntelIde.sys"].read_bytes() == b"I" * 7
    assert extract(cab, [], tmp_path / "none") == {}


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([(b"ATAPI.SYS", b"1"), (b"atapi.sys", b"2")], "several members are named"),
        ([(b"atapi.sys", b"1"), (b"\\atapi.sys", b"2")], "several members would be written"),
        ([(b"atapi.sys", b"1"), (b"/atapi.sys", b"2")], "several members would be written"),
    ],
)
def test_ambiguous_members_refused(members, message, tmp_path: Path) -> None:
    cab = tmp_path / "x.cab"
    cab.write_bytes(_make_cab(members))
    dest = tmp_path / "dest"
    with pytest.raises(CabinetError, match=message):
        extract(cab, ["atapi.sys"], dest)
    assert not dest.exists() or _tree(dest) == []


def test_second_cabinet_appended_is_detected(tmp_path: Path) -> None:
    """cabextract also processes a cabinet hidden after the first one's end: refuse."""
    cab = tmp_path / "driver.cab"
    first = _make_cab([(b"atapi.sys", b"good" * 100)])
    cab.write_bytes(first + _make_cab([(b"atapi.sys", b"evil" * 100)]))
    assert [e.name for e in list_cabinet(cab)] == ["atapi.sys"]
    dest = tmp_path / "dest"
    with pytest.raises(CabinetError, match="cabextract sees 2 member"):
        extract(cab, ["atapi.sys"], dest)
    assert _tree(dest) == []


def test_symlink_in_destination_is_not_followed(tmp_path: Path) -> None:
    cab = tmp_path / "x.cab"
    cab.write_bytes(_make_cab([(b"dir\\atapi.sys", b"x" * 10)]))
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "dir").symlink_to(outside)
    with pytest.raises(CabinetError, match="not a directory"):
        extract(cab, ["dir\\atapi.sys"], dest)
    assert _tree(outside) == [] and _tree(dest) == ["dir"]


def test_windows_case_rules(tmp_path: Path) -> None:
    cab = tmp_path / "x.cab"
    cab.write_bytes(_make_cab([("straße.sys".encode(), b"s")], attr=0xA0))
    assert list_cabinet(cab)[0].name == "straße.sys"
    assert extract(cab, ["STRAßE.SYS"], tmp_path / "a")["STRAßE.SYS"].read_bytes() == b"s"
    with pytest.raises(CabinetError, match="no member"):  # Windows does not fold ß to SS
        extract(cab, ["STRASSE.SYS"], tmp_path / "b")


def test_missing_and_odd_files(tmp_path: Path) -> None:
    with pytest.raises(CabinetFormatError, match="cannot open"):
        list_cabinet(tmp_path / "nope.cab")
    with pytest.raises(CabinetFormatError, match="not a regular file"):
        list_cabinet(tmp_path)
    (tmp_path / "empty.cab").write_bytes(b"")
    with pytest.raises(CabinetFormatError, match="empty"):
        list_cabinet(tmp_path / "empty.cab")
    os.mkfifo(tmp_path / "fifo.cab")
    with pytest.raises(CabinetFormatError, match="not a regular file"):
        list_cabinet(tmp_path / "fifo.cab")
    # extract() reports the same as a CabinetError (exit code 3), naming the cabinet
    with pytest.raises(CabinetError, match="cannot open") as caught:
        extract(tmp_path / "nope.cab", ["x"], tmp_path / "dest")
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert caught.value.cabinet == str(tmp_path / "nope.cab")


_SEEDS = [
    (CAB_ROOT / rel).read_bytes()
    for rel in [
        "libmspack-cabd/reserve_HFD.cab",
        "cabextract-test-cabs/split-2.cab",
        "libmspack-cabd/normal_2files_2folders.cab",
    ]
    if (CAB_ROOT / rel).is_file()
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2),
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=8),
)
def test_header_parser_fuzz(seed: int, cut: int, flips) -> None:
    if not _SEEDS:
        return
    data = bytearray(_SEEDS[seed % len(_SEEDS)][: max(cut, 0) or None])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    try:
        info = read_cabinet_bytes(bytes(data))
    except CabinetFormatError as exc:
        assert "\n" not in str(exc)
        return
    assert len(info.entries) == len(info.output_names) > 0
    assert all(e.folder is None or 0 <= e.folder < len(info.folders) for e in info.entries)


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_header_parser_random_bytes(data: bytes) -> None:
    try:
        read_cabinet_bytes(b"MSCF" + data)
    except CabinetFormatError:
        pass


def test_cabextract_version() -> None:
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", cabextract_version())


def test_cabextract_filter_behaviour(tmp_path: Path) -> None:
    """What extract() relies on: -F is case-insensitive, on the output name, and a pattern
    that matches nothing is not an error."""
    cab = str(CAB_ROOT / "cabextract-test-cabs/dir.cab")
    for pattern, expected in [
        ("PLAIN.C", ["plain.c"]),
        ("1/2/3/4.C", ["1", "1/2", "1/2/3", "1/2/3/4.c"]),
        ("4.c", []),
        ("1\\2\\3\\4.c", []),
    ]:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        out.mkdir()
        proc = subprocess.run(["cabextract", "-q", "-d", str(out), "-F", pattern, cab], check=False)
        assert proc.returncode == 0
        assert _tree(out) == expected, pattern


def test_error_pickles() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(CabinetError("driver.cab", "bad\nthing")))
    assert str(err) == "cabinet driver.cab: bad\\nthing"
    err = pickle.loads(pickle.dumps(CabinetFormatError("driver.cab", "bad\nthing")))
    assert str(err) == "cabinet driver.cab: bad\\nthing"


# --- drvindex.inf ----------------------------------------------------------------------------

XP_SP3_DRVINDEX = (
    "; drvindex.inf as left by Windows XP SP3 (abridged)\r\n"
    "[Version]\r\n"
    'signature="$Windows NT$"\r\n'
    "CabFiles=SP3,SP2,driver   ; newest first\r\n"
    "\r\n"
    "[driver]\r\n"
    "1394bus.sys\r\n"
    "atapi.sys\r\n"
    "intelide.sys\r\n"
    "pciide.sys\r\n"
    "PCIIDEX.SYS\r\n"
    "viaide.sys\r\n"
    "\r\n"
    "[SP2]\r\n"
    "atapi.sys\r\n"
    "pciidex.sys\r\n"
    "\r\n"
    "[SP3]\r\n"
    "  atapi.sys  \r\n"
    "ntkrnlpa.exe\r\n"
    "\r\n"
    "[Cabs]\r\n"
    "driver=driver.cab\r\n"
    "SP2=sp2.cab\r\n"
    'SP3="SP3.CAB"\r\n'
)


def test_drvindex_xp_sp3() -> None:
    index = parse_drvindex(XP_SP3_DRVINDEX)
    assert list(index) == ["sp3.cab", "sp2.cab", "driver.cab"]
    assert index["sp3.cab"] == ["atapi.sys", "ntkrnlpa.exe"]
    assert index["sp2.cab"] == ["atapi.sys", "pciidex.sys"]
    assert index["driver.cab"] == [
        "1394bus.sys",
        "atapi.sys",
        "intelide.sys",
        "pciide.sys",
        "pciidex.sys",
        "viaide.sys",
    ]
    assert cabinets_for(index, "ATAPI.SYS") == ["sp3.cab", "sp2.cab", "driver.cab"]
    assert cabinets_for(index, "intelide.sys") == ["driver.cab"]
    assert cabinets_for(index, "viostor.sys") == []


def test_drvindex_damaged_and_partial() -> None:
    assert parse_drvindex("") == {}
    assert parse_drvindex("garbage\n[[[\n=\n;;;") == {}
    # no [Version]: [Cabs] order; a tag without a section gets an empty list
    text = "\ufeff[Cabs]\nsp1 = sp1.cab\ndriver=driver.cab\n[driver]\nATAPI.SYS\n"
    assert parse_drvindex(text) == {"sp1.cab": [], "driver.cab": ["atapi.sys"]}
    # a tag with no [Cabs] file is dropped; a path as a cabinet name is dropped
    text = "[Version]\nCabFiles=sp9,driver,evil\n[Cabs]\ndriver=driver.cab\nevil=..\\x.cab\n"
    assert parse_drvindex(text) == {"driver.cab": []}
    # Unix line ends, old Mac line ends, continuation lines and duplicate sections merge
    text = "[version]\rcabfiles=a,\\\r b\r[cabs]\ra=a.cab\rb=b.cab\r[a]\rx.sys\r[A]\ry.sys\r"
    assert parse_drvindex(text) == {"a.cab": ["x.sys", "y.sys"], "b.cab": []}


_INF_ATOMS = st.sampled_from(
    [
        "[Version]",
        "[Cabs]",
        "[driver]",
        "[sp3]",
        "CabFiles=sp3,driver",
        "CabFiles=",
        "driver=driver.cab",
        "sp3=sp3.cab",
        "atapi.sys",
        "; comment",
        '"',
        "=",
        "\\",
        "[",
        "]",
        ",",
        "",
        "  ",
        "sp3=",
        "=x.cab",
        "a=b=c",
        "[cabs",
        "\ufeff",
        "\x00",
    ]
)


@given(
    st.lists(st.one_of(_INF_ATOMS, st.text(max_size=20)), max_size=40),
    st.sampled_from(["\n", "\r\n", "\r"]),
)
@settings(max_examples=400, deadline=None)
def test_drvindex_fuzz(lines: list[str], newline: str) -> None:
    index = parse_drvindex(newline.join(lines))
    assert isinstance(index, dict)
    for cab, members in index.items():
        assert cab == cab.lower() and cab and not any(c in cab for c in "\\/:")
        assert isinstance(members, list)
        assert all(m == m.lower() and m for m in members)
        assert len(members) == len(set(members))


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_drvindex_never_raises_on_any_text(text: str) -> None:
    parse_drvindex(text)
