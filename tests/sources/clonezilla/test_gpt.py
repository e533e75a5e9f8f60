"""4K-sector GPT disks from a Clonezilla directory, and the Python GPT writer against sfdisk.

The original 4Kn disk is made with the real tools on a ``losetup --sector-size
4096`` loop device (sgdisk writes the table, mkntfs with 4096-byte sectors and
ntfscp the volumes) and saved the way ocs-sr does on such a disk: ``sfdisk -d``,
``parted unit s print``, ``sgdisk -b``/``-p``, ``dd bs=512 count=34`` for
``-gpt-1st`` (which cuts the 4K entry array after entry 72) and ``-gpt-2nd`` read
at 512-byte offsets computed from the 4K sector count (garbage, as in real
captures), real partclone.ntfs / partclone.dd / ntfsclone images.  The
restored file is read back through a 4K loop device by sgdisk, sfdisk and
parted, independent readers of the table, and compared byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2vimage.sources.clonezilla import gpt
from tests.conftest import run_cli
from tests.sources.clonezilla.test_restore import _partition, save

K = 4096
# (number, start, size in 4096-byte sectors, sgdisk type code, name)
LAYOUT = [(1, 256, 1024, "0C01", "Microsoft reserved partition"),
          (2, 1280, 3072, "0700", "Basic data partition"),
          (3, 4352, 2560, "0700", "data, second")]
DISK_SECTORS = 7424  # 29 MiB; the backup GPT takes the last 5 sectors
DISK_GUID = "4B4B4B4B-1234-4321-8765-0123456789AB"
HOW = {1: ("partclone.dd", "zst", None), 2: ("partclone", "gz", 40_000),
       3: ("ntfsclone", "zst", None)}


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


@contextlib.contextmanager
def loop4k(path: Path) -> Iterator[str]:
    """``path`` as a block device with 4096-byte logical sectors (root; detached after)."""
    dev = _run("losetup", "-f", "--show", "--sector-size", "4096", str(path),
               text=True).stdout.strip()
    try:
        assert _run("blockdev", "--getss", dev, text=True).stdout.strip() == "4096"
        yield dev
    finally:
        _run("losetup", "-d", dev)


def _read(dev: str, *cmd: str) -> str:
    return _run(*cmd, dev, text=True).stdout.replace(dev, "DISK")


@pytest.fixture(scope="module")
def disk4k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("gpt4k")
    raw = d / "4k.raw"
    with open(raw, "wb") as f:
        f.truncate(DISK_SECTORS * K)
    with loop4k(raw) as dev:
        args = ["sgdisk", "-o", "-U", DISK_GUID]
        for n, start, size, code, name in LAYOUT:
            args += [f"-n{n}:{start}:{start + size - 1}", f"-t{n}:{code}", f"-c{n}:{name}"]
        _run(*args, "-A3:set:63", dev)  # a "no drive letter" attribute bit to carry over
    rnd = random.Random(4096)
    for n, start, size, _code, _name in LAYOUT:
        vol = d / f"p{n}"
        with open(vol, "wb") as f:
            f.truncate(size * K)
        if n == 1:  # MSR: no filesystem, Clonezilla uses partclone.dd
            vol.write_bytes(rnd.randbytes(8192) + bytes(size * K - 8192))
        else:
            _run("mkntfs", "-q", "-F", "-f", "-s", "4096", "-p", str(start), str(vol))
            for i in range(2):
                src = d / "f.bin"
                src.write_bytes(rnd.randbytes(150_000) + b"4k text\r\n" * 9000)
                _run("ntfscp", "-f", str(vol), str(src), f"/f{i}.bin")
        _run("dd", f"if={vol}", f"of={raw}", f"seek={start}", "bs=4096", "conv=notrunc,sparse",
             "status=none")
        vol.unlink()
    return raw


def save4k(raw: Path, out: Path, name: str = "sda") -> Path:
    """Save ``raw`` into ``out`` as ocs-sr savedisk does on a 4Kn disk (tables from the
    loop device, the way ocs-sr reads /dev/sda)."""
    out.mkdir()
    with loop4k(raw) as dev:
        sf = _run("sfdisk", "-d", dev, text=True).stdout  # /dev/loop0p1 -> /dev/sda1
        (out / f"{name}-pt.sf").write_text(re.sub(rf"{dev}p?", f"/dev/{name}", sf))
        parted = _run("parted", "-s", dev, "unit", "s", "print", text=True).stdout
        (out / f"{name}-pt.parted").write_text(parted.replace(dev, f"/dev/{name}"))
        n = int(_run("blockdev", "--getsz", dev, text=True).stdout) // 8  # 4K sectors
        _run("dd", f"if={dev}", f"of={out / f'{name}-mbr'}", "bs=512", "count=1", "status=none")
        _run("dd", f"if={dev}", f"of={out / f'{name}-gpt-1st'}", "bs=512", "count=34",
             "status=none")
        _run("dd", f"if={dev}", f"of={out / f'{name}-gpt-2nd'}", f"skip={n - 33 + 1}",
             "bs=512", "count=33", "status=none")
        _run("sgdisk", "-b", str(out / f"{name}-gpt.gdisk"), dev)
        (out / f"{name}-gpt.sgdisk").write_text(_run("sgdisk", "-p", dev, text=True).stdout)
    layout = [(n, start, size, code) for n, start, size, code, _ in LAYOUT]
    return save(raw, out, HOW, name=name, layout=layout, sector=K)


def _layout() -> list[tuple[int, int, int, str]]:
    return [(n, start, size, code) for n, start, size, code, _ in LAYOUT]


def test_4k_gpt_disk_restores_byte_identical(disk4k: Path, tmp_path: Path) -> None:
    d = save4k(disk4k, tmp_path / "img")
    assert "sector-size: 4096" in (d / "sda-pt.sf").read_text()
    assert (d / "sda-gpt-1st").stat().st_size == 34 * 512  # entries cut after entry 72
    assert b"EFI PART" not in (d / "sda-gpt-2nd").read_bytes()  # not a backup GPT at all
    out = tmp_path / "out.raw"
    r = run_cli("restore-clonezilla", str(d), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "logical_block_size=4096" in r.stdout + r.stderr
    assert out.read_bytes() == disk4k.read_bytes()  # tables, backup GPT, every partition
    with loop4k(out) as dev, loop4k(disk4k) as orig:
        verify = _run("sgdisk", "-v", dev, text=True).stdout
        assert "No problems found" in verify
        assert _read(dev, "sfdisk", "-d") == _read(orig, "sfdisk", "-d")
        assert 'name="data, second", attrs="GUID:63"' in _read(dev, "sfdisk", "-d")
        printed = _run("parted", "-s", dev, "unit", "s", "print", text=True).stdout
        assert "Sector size (logical/physical): 4096B/4096B" in printed
        assert "4352s  6911s" in printed


def test_convert_of_a_4k_disk_is_refused_before_any_work(disk4k: Path, tmp_path: Path) -> None:
    """convert would attach the restored disk with 512-byte sectors: exit 3, nothing written."""
    d = save4k(disk4k, tmp_path / "img")
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("convert", str(d), "-o", str(out / "vm.qcow2"))
    assert r.returncode == 3, r.stderr
    assert "disk sda has 4096-byte sectors, which convert does not handle yet" in r.stderr
    assert "Traceback" not in r.stderr and list(out.iterdir()) == []


def test_4k_gpt_from_the_dump_without_or_with_a_damaged_gpt_1st(disk4k: Path,
                                                                 tmp_path: Path) -> None:
    """Without its saved primary GPT (or with one that is damaged, or intact but of other
    partitions than the dump, which places the images) the table comes from the dump: the
    same partitions, GUIDs, names and attributes, headers and entry arrays; every partition
    byte-identical."""
    warnings = {"missing": None, "damaged": "sda-gpt-1st is not an intact primary GPT of this disk",
                "other": "sda-gpt-1st describes other partitions than sda-pt.sf"}
    for case, warning in warnings.items():
        d = save4k(disk4k, tmp_path / f"img-{case}")
        if case == "missing":
            (d / "sda-gpt-1st").unlink()
        elif case == "damaged":
            bad = bytearray((d / "sda-gpt-1st").read_bytes())
            bad[2 * K + 130] ^= 1  # the second entry: the entry-array CRC no longer matches
            (d / "sda-gpt-1st").write_bytes(bad)
        else:  # a valid GPT whose partition 3 ends elsewhere
            other = tmp_path / "other-table.raw"
            with open(other, "wb") as f:
                f.truncate(DISK_SECTORS * K)
            with loop4k(other) as dev:
                _run("sgdisk", "-o", "-n1:256:1279", "-n3:4352:6000", dev)
            (d / "sda-gpt-1st").write_bytes(_pread(other, 0, 34 * 512))
        out = tmp_path / f"{case}.raw"
        r = run_cli("restore-clonezilla", str(d), "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert [w for w in (r.stdout + r.stderr).splitlines() if "gpt-1st" in w] == (
            [f"Warning: {warning}; the GPT comes from the sfdisk dump"] if warning else [])
        for n, *_ in LAYOUT:
            assert _partition(out, n, _layout(), K) == _partition(disk4k, n, _layout(), K)
        with loop4k(out) as dev, loop4k(disk4k) as orig:
            assert "No problems found" in _run("sgdisk", "-v", dev, text=True).stdout
            assert _read(dev, "sfdisk", "-d") == _read(orig, "sfdisk", "-d")
            assert _read(dev, "sgdisk", "-p") == _read(orig, "sgdisk", "-p")
        # Every byte is the original's but the protective MBR's CHS end address: sgdisk
        # computes one, sfdisk (and the dump path, which writes sfdisk's bytes) FF FF FF.
        got, want = bytearray(out.read_bytes()), disk4k.read_bytes()
        assert got[0x1C3:0x1C6] == b"\xff\xff\xff"
        got[0x1C3:0x1C6] = want[0x1C3:0x1C6]
        assert got == want


def _pread(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        return os.pread(f.fileno(), length, offset)


SCRIPT = ("label: gpt\nlabel-id: 11111111-2222-3333-4444-555555555555\n\n"
          "start={a}, size={s}, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE, name=\"msr\"\n"
          "start={b}, size={s}, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, "
          "name=\"d\u00e4t\u00e4$ `x` y\", attrs=\"RequiredPartition LegacyBIOSBootable GUID:63\"\n"
          "/dev/x5 : start={c}, size=100, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n")


@pytest.mark.parametrize("ss", [512, 4096])
def test_writer_writes_the_bytes_sfdisk_writes(ss: int, tmp_path: Path) -> None:
    """From sfdisk's own dump, the Python GPT equals what sfdisk wrote (protective MBR,
    header, entries with an escaped UTF-8 name, attribute bits and a gap at slot 3-4,
    backup), on a plain file (512) and on a 4K loop device."""
    raw = tmp_path / "t.raw"
    with open(raw, "wb") as f:
        f.truncate(64 << 20)
    sectors = (64 << 20) // ss
    script = SCRIPT.format(a=(1 << 20) // ss, b=(4 << 20) // ss, c=(40 << 20) // ss,
                           s=(2 << 20) // ss)
    with contextlib.ExitStack() as stack:
        dev = stack.enter_context(loop4k(raw)) if ss == K else str(raw)
        _run("sfdisk", "-q", "--no-reread", "--no-tell-kernel", dev, input=script.encode())
        dump = _run("sfdisk", "-d", dev, text=True).stdout
    assert "\\x24 \\x60x\\x60" in dump  # sfdisk escaped the name: the parser must undo it
    table = gpt.parse_dump(dump, "t")
    assert [e.number for e in table.entries] == [1, 2, 5]
    pieces = gpt.from_dump(table, sectors, ss, "t")
    for off, data in pieces:
        assert _pread(raw, off, len(data)) == data, off
    assert {off for off, _ in pieces} == {0, ss, 2 * ss, (sectors - 1 - 16384 // ss) * ss,
                                          (sectors - 1) * ss}
