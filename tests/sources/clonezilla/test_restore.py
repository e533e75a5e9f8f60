"""Every partition image format and compression of a Clonezilla directory, restored on the host.

One small MBR disk (made here: mkntfs + ntfscp, a raw partition of random
bytes and zeros) is saved the ways real Clonezilla versions did, with the real
tools where they exist: ``ntfsclone --save-image -o -`` (``-q``), ``partclone.dd``
(``-q1`` and unknown filesystems), old ``*.dd-img`` / ``*.ntfs-img`` names whose
compression only the data tells, partclone 0.3.23 images, and the formats
partclone 0.3.23 cannot write (0001, XXH64, XXH128) from the test-side writer
proved in test_partclone_formats.py.  Every compression Clonezilla offers runs
through its real tool.  The original disk's free space was never written, so
the whole restored disk must equal the original byte for byte (the NTFS backup
boot sector included).  Bad input keeps exit 3 naming the partition.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import partclone_writer as w
from tests.conftest import run_cli

S = 512
# (number, start, size in sectors, type)
LAYOUT = [(1, 2048, 40960, "7"), (2, 43008, 24576, "7"), (3, 67584, 8192, "da"),
          (4, 75776, 16384, "7")]
DISK_SECTORS = 94208
COMPRESS = {
    "gz": ["gzip", "-c", "--fast"], "zst": ["zstd", "-q", "-c", "-3"], "bz2": ["bzip2", "-3", "-c"],
    "xz": ["xz", "-3", "-c"], "lzma": ["lzma", "-3", "-c"], "lzo": ["lzop", "-3", "-c"],
    "lzip": ["lzip", "-3", "-c"], "lz4": ["lz4", "-1", "-c"], "uncomp": ["cat"],
}


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("disk")
    raw = d / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(DISK_SECTORS * S)
    table = "label: dos\nlabel-id: 0x5eed0009\nunit: sectors\n\n" + "".join(
        f"/dev/sda{n} : start={start}, size={size}, type={t}{', bootable' if n == 1 else ''}\n"
        for n, start, size, t in LAYOUT)
    _run("sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(raw), input=table.encode())
    rnd = random.Random(9)
    for n, start, size, t in LAYOUT:
        vol = d / f"p{n}"
        with open(vol, "wb") as f:
            f.truncate(size * S)
        if t == "7":
            _run("mkntfs", "-q", "-F", "-f", "-p", str(start), "-H", "255", "-S", "63",
                 "-c", "4096" if n != 4 else "1024", str(vol))
            for i in range(3):
                src = d / "f.bin"
                src.write_bytes(rnd.randbytes(rnd.randrange(50_000, 400_000)) + b"txt\n" * 20000)
                _run("ntfscp", "-f", str(vol), str(src), f"/f{i}.bin")
        else:  # an unknown filesystem: Clonezilla falls back to partclone.dd
            vol.write_bytes(rnd.randbytes(1 << 20) + bytes(2 << 20) + rnd.randbytes(1 << 20))
        _run("dd", f"if={vol}", f"of={raw}", f"seek={start}", "bs=512", "conv=notrunc,sparse")
        vol.unlink()
    return raw


def _partition(raw: Path, n: int, layout: list = LAYOUT, sector: int = S) -> bytes:
    _n, start, size, _t = layout[n - 1]
    with open(raw, "rb") as f:
        return os.pread(f.fileno(), size * sector, start * sector)


def _pipe(data: bytes, comp: str) -> bytes:
    return _run(*COMPRESS[comp], input=data).stdout


def _put(out: Path, stem: str, blob: bytes, split: int | None) -> None:
    if split is None:
        (out / stem).write_bytes(blob)
        return
    for i, off in enumerate(range(0, len(blob), split)):
        (out / f"{stem}.{chr(97 + i // 26)}{chr(97 + i % 26)}").write_bytes(blob[off : off + split])


def _partclone_bitmap(vol: Path, tmp: Path) -> tuple[list[bool], int, int]:
    img = tmp / "real.img"
    _run("partclone.ntfs", "-f", "1", "-c", "-s", str(vol), "-o", str(img), "-L", "/dev/null")
    used, bs, _dev, used_sb = w.read_real_bitmap(img)
    img.unlink()
    return used, bs, used_sb


def save(raw: Path, out: Path, how: dict[int, tuple[str, str, int | None]], *,
         name: str = "sda", layout: list = LAYOUT, sector: int = S) -> Path:
    """A savedisk directory; ``how[n] = (format, compression or "" (old name), split)``.

    A second disk is added to an existing ``out`` (``disk`` = ``sda sdb``).  With 4K
    sectors the caller writes the table files (sfdisk/parted would see 512-byte sectors)."""
    out.mkdir(exist_ok=True)
    if sector == S:
        _save_tables(raw, out, name)
    disks = (out / "disk").read_text().split() if (out / "disk").exists() else []
    (out / "disk").write_text(" ".join([*disks, name]) + "\n")
    parts = (out / "parts").read_text().split() if (out / "parts").exists() else []
    (out / "parts").write_text(" ".join([*parts, *(f"{name}{n}" for n in how)]) + "\n")
    for n, (fmt, comp, split) in how.items():
        vol = out.parent / f"vol{n}"
        vol.write_bytes(_partition(raw, n, layout, sector))
        _save_partition(out, vol, f"{name}{n}", fmt, comp, split)
    return out


def _save_tables(raw: Path, out: Path, name: str) -> None:
    sf = _run("sfdisk", "-d", str(raw), text=True).stdout.replace(str(raw), f"/dev/{name}")
    (out / f"{name}-pt.sf").write_text(sf)
    parted = _run("parted", "-s", str(raw), "unit", "s", "print", text=True).stdout
    (out / f"{name}-pt.parted").write_text(parted.replace(str(raw), f"/dev/{name}"))
    data = raw.read_bytes()
    (out / f"{name}-mbr").write_bytes(data[:S])
    if "label: gpt" in sf:  # as ocs-sr does, its one-sector-short 2nd part included
        n_sectors = len(data) // S
        (out / f"{name}-gpt-1st").write_bytes(data[: 34 * S])
        (out / f"{name}-gpt-2nd").write_bytes(data[(n_sectors - 32) * S :])
        _run("sgdisk", "-b", str(out / f"{name}-gpt.gdisk"), str(raw))
        (out / f"{name}-gpt.sgdisk").write_text(_run("sgdisk", "-p", str(raw), text=True).stdout)


def _save_partition(out: Path, vol: Path, part: str, fmt: str, comp: str,
                    split: int | None) -> None:
    if fmt == "ntfsclone":
        data = _run("ntfsclone", "--save-image", "-o", "-", str(vol)).stdout
        stem = f"{part}.ntfs-img" + (f".{comp}" if comp else "")
    elif fmt in ("partclone.dd", "dd"):
        if fmt == "partclone.dd":
            data = _run("partclone.dd", "-f", "1", "-s", str(vol), "-o", "-",
                        "-L", "/dev/null").stdout
            stem = f"{part}.dd-ptcl-img.{comp}"
        else:
            data = vol.read_bytes()
            stem = f"{part}.dd-img" + (f".{comp}" if comp else "")
    elif fmt == "partclone":
        data = _run("partclone.ntfs", "-f", "1", "-z", "10485760", "-c", "-s", str(vol),
                    "-o", "-", "-L", "/dev/null").stdout
        stem = f"{part}.ntfs-ptcl-img.{comp}"
    else:  # writer formats: v0001, XXH64, XXH128
        used, bs, used_sb = _partclone_bitmap(vol, out.parent)
        img = out.parent / "w.img"
        if fmt == "v0001":
            w.write_v1(vol.read_bytes(), used, bs, img)
        else:
            mode = w.XXH64 if fmt == "XXH64" else w.XXH128
            w.write_v2(vol.read_bytes(), used, bs, img, mode=mode,
                       bpc=2560 if mode == w.XXH128 else 256, used_superblock=used_sb,
                       version="0.3.47")
        data = img.read_bytes()
        img.unlink()
        stem = f"{part}.ntfs-ptcl-img.{comp}"
    vol.unlink()
    _put(out, stem, _pipe(data, comp or "gz"), split)


# Every format x every compression at least once, split and unsplit, old names sniffed.
DIRS = {
    "ntfsclone-dd": {1: ("ntfsclone", "gz", 200_000), 2: ("ntfsclone", "", None),
                     3: ("partclone.dd", "lzo", 300_000), 4: ("ntfsclone", "zst", None)},
    "old-names": {1: ("ntfsclone", "", 150_000), 3: ("dd", "", None),
                  4: ("partclone", "uncomp", None), 2: ("partclone", "lz4", 100_000)},
    "writer-formats": {1: ("XXH128", "zst", 250_000), 2: ("v0001", "bz2", None),
                       3: ("dd", "lzip", None), 4: ("XXH64", "xz", None)},
    "more-codecs": {1: ("XXH128", "lzma", None), 2: ("XXH128", "lzip", 90_000),
                    3: ("partclone.dd", "lz4", None), 4: ("v0001", "lzo", 30_000)},
}


@pytest.mark.parametrize("name", list(DIRS))
def test_restore_equals_original_disk(disk: Path, tmp_path: Path, name: str) -> None:
    d = save(disk, tmp_path / "img", DIRS[name])
    out = tmp_path / "out.raw"
    r = run_cli("restore-clonezilla", str(d), "-o", str(out), "--format", "raw", "--json")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == disk.read_bytes()
    # thin: the dd partition's 2 MiB of zeros stay a hole
    assert out.stat().st_blocks * 512 < disk.stat().st_size


def test_ntfsclone_equals_ntfsclone_restore(disk: Path, tmp_path: Path) -> None:
    d = save(disk, tmp_path / "img", {1: ("ntfsclone", "gz", None)})
    img = tmp_path / "n.img"
    img.write_bytes(_run("gzip", "-dc", str(d / "sda1.ntfs-img.gz")).stdout)
    ref = tmp_path / "ref"
    _run("ntfsclone", "--restore-image", "--overwrite", str(ref), str(img))
    out = tmp_path / "out.raw"
    r = run_cli("restore-clonezilla", str(d), "-o", str(out))
    assert r.returncode == 0, r.stderr
    _n, start, size, _t = LAYOUT[0]
    assert _partition(out, 1) == ref.read_bytes()[: size * S]


GPT_LAYOUT = [(1, 2048, 8192, "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"),  # MSR: no fs, dd
              (2, 10240, 40960, "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
              (3, 51200, 24576, "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")]
GPT_SECTORS = 80000


@pytest.fixture(scope="module")
def gpt_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("gpt")
    raw = d / "gpt.raw"
    with open(raw, "wb") as f:
        f.truncate(GPT_SECTORS * S)
    table = "label: gpt\nlabel-id: 3932C36A-FA86-43B8-B03A-CD56195B74D4\nunit: sectors\n\n" + \
        "".join(f"/dev/sdb{n} : start={start}, size={size}, type={t}, name=\"p{n}\"\n"
                for n, start, size, t in GPT_LAYOUT)
    _run("sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(raw), input=table.encode())
    rnd = random.Random(10)
    for n, start, size, _t in GPT_LAYOUT:
        vol = d / f"p{n}"
        with open(vol, "wb") as f:
            f.truncate(size * S)
        if n == 1:
            vol.write_bytes(rnd.randbytes(4096) + bytes(size * S - 4096))
        else:
            _run("mkntfs", "-q", "-F", "-f", "-p", str(start), "-H", "255", "-S", "63", str(vol))
            src = d / "f.bin"
            src.write_bytes(rnd.randbytes(300_000))
            _run("ntfscp", "-f", str(vol), str(src), "/f.bin")
        _run("dd", f"if={vol}", f"of={raw}", f"seek={start}", "bs=512", "conv=notrunc,sparse")
        vol.unlink()
    return raw


GPT_HOW = {1: ("partclone.dd", "zst", None), 2: ("XXH128", "zst", 200_000),
           3: ("partclone", "gz", None)}


def test_gpt_disk_and_two_disks(disk: Path, gpt_disk: Path, tmp_path: Path) -> None:
    """sda MBR + sdb GPT in one image: OUT and OUT-2, each identical to its original."""
    d = save(disk, tmp_path / "img", {1: ("partclone", "zst", None), 2: ("ntfsclone", "gz", None),
                                      3: ("partclone.dd", "zst", None),
                                      4: ("XXH128", "zst", None)})
    save(gpt_disk, d, GPT_HOW, name="sdb", layout=GPT_LAYOUT)
    assert (d / "disk").read_text().split() == ["sda", "sdb"]
    assert (d / "sdb-gpt-2nd").stat().st_size == 32 * S  # one sector short, as ocs-sr saves it
    out = tmp_path / "out" / "vm.raw"
    out.parent.mkdir()
    r = run_cli("restore-clonezilla", str(d), "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out.parent)) == ["vm-2.raw", "vm.raw"]
    assert out.read_bytes() == disk.read_bytes()
    assert (out.parent / "vm-2.raw").read_bytes() == gpt_disk.read_bytes()
    verify = _run("sgdisk", "-v", str(out.parent / "vm-2.raw"), text=True).stdout
    assert "No problems found" in verify
    # --disk: only that one
    one = tmp_path / "one.raw"
    r = run_cli("restore-clonezilla", str(d), "-o", str(one), "--disk", "sdb")
    assert r.returncode == 0, r.stderr
    assert one.read_bytes() == gpt_disk.read_bytes()


def test_gpt_without_its_saved_first_part_comes_from_the_dump(gpt_disk: Path,
                                                               tmp_path: Path) -> None:
    d = save(gpt_disk, tmp_path / "img", GPT_HOW, name="sdb", layout=GPT_LAYOUT)
    (d / "sdb-gpt-1st").unlink()
    out = tmp_path / "out.raw"
    r = run_cli("restore-clonezilla", str(d), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert _run("sfdisk", "-d", str(out), text=True).stdout.replace(str(out), "X") == \
        _run("sfdisk", "-d", str(gpt_disk), text=True).stdout.replace(str(gpt_disk), "X")
    assert "No problems found" in _run("sgdisk", "-v", str(out), text=True).stdout
    for n, *_ in GPT_LAYOUT:
        assert _partition(out, n, GPT_LAYOUT) == _partition(gpt_disk, n, GPT_LAYOUT)
    # a damaged saved primary GPT is not trusted (warning), the dump is
    d2 = save(gpt_disk, tmp_path / "img2", GPT_HOW, name="sdb", layout=GPT_LAYOUT)
    bad = bytearray((d2 / "sdb-gpt-1st").read_bytes())
    bad[2 * S + 40] ^= 1  # inside the entries: their CRC no longer matches
    (d2 / "sdb-gpt-1st").write_bytes(bad)
    r = run_cli("restore-clonezilla", str(d2), "-o", str(tmp_path / "out2.raw"))
    assert r.returncode == 0 and "sdb-gpt-1st is not an intact primary GPT" in r.stdout + r.stderr
    assert "No problems found" in _run("sgdisk", "-v", str(tmp_path / "out2.raw"),
                                       text=True).stdout


def _truncate_last(d: Path, glob: str, by: int) -> None:
    f = sorted(d.glob(glob))[-1]
    f.write_bytes(f.read_bytes()[:-by])


BAD = {
    # uncompressed streams have no end marker of their own: the formats' own ends count
    "ntfsclone-truncated": ({2: ("ntfsclone", "uncomp", None)},
                            lambda d: _truncate_last(d, "sda2.ntfs-img.uncomp", 4097),
                            r"sda2: the ntfsclone image is truncated \(data ends at byte \d+ "
                            r"of the 12582912-byte"),
    "dd-truncated": ({3: ("dd", "uncomp", None)},
                     lambda d: _truncate_last(d, "sda3.dd-img.uncomp", 512),
                     r"sda3: the dd image is truncated"),
    "dd-too-big": ({3: ("dd", "uncomp", None)},
                   lambda d: (d / "sda3.dd-img.uncomp").write_bytes(
                       (d / "sda3.dd-img.uncomp").read_bytes() + bytes(512)),
                   r"sda3: the image is of a \d+-byte volume, larger than the 4194304-byte"),
    "lzo-truncated": ({3: ("partclone.dd", "lzo", 300_000)},
                      lambda d: _truncate_last(d, "sda3.dd-ptcl-img.lzo.*", 100),
                      r"sda3: .*(corrupt or truncated lzop|truncated)"),
    "lzip-missing-chunk": ({2: ("XXH128", "lzip", 90_000)},
                           lambda d: sorted(d.glob("sda2.*"))[-1].unlink(),
                           r"sda2: .*(corrupt or truncated lzip|truncated)"),
    "xxh128-checksum": ({1: ("XXH128", "uncomp", None)},
                        lambda d: _flip(d / "sda1.ntfs-ptcl-img.uncomp", 200_000),
                        r"sda1: partclone checksum mismatch at image byte \d+"),
    "v0001-checksum": ({2: ("v0001", "uncomp", None)},
                       lambda d: _flip(d / "sda2.ntfs-ptcl-img.uncomp", _v1_block(d, 0)),
                       r"sda2: partclone checksum mismatch at image byte \d+ \(used block 0\)"),
    "ntfsclone-too-big": ({4: ("ntfsclone", "gz", None)},
                          lambda d: (d / "sda-pt.sf").write_text(
                              (d / "sda-pt.sf").read_text().replace("size=       16384",
                                                                    "size=       15000")),
                          r"sda4: the image is of a 8388608-byte volume, larger than the "
                          r"7680000-byte partition"),
}


def _v1_block(d: Path, k: int) -> int:
    """Image offset of used block ``k`` of a v0001 image: its first byte is what the CRC sees."""
    with open(d / "sda2.ntfs-ptcl-img.uncomp", "rb") as f:
        head = f.read(64)
    bs, total = int.from_bytes(head[36:40], "little"), int.from_bytes(head[48:56], "little")
    return 4160 + total + 8 + k * (bs + 4)


def _flip(f: Path, at: int) -> None:
    data = bytearray(f.read_bytes())
    data[at] ^= 0x10
    f.write_bytes(data)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exit_3_naming_the_partition(disk: Path, tmp_path: Path, case: str) -> None:
    how, mutate, message = BAD[case]
    d = save(disk, tmp_path / "img", how)
    mutate(d)
    outdir = tmp_path / "out"
    outdir.mkdir()
    r = run_cli("restore-clonezilla", str(d), "-o", str(outdir / "disk.raw"))
    assert r.returncode == 3, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert os.listdir(outdir) == []
    shutil.rmtree(d)


def test_convert_sources_of_a_two_disk_image(disk: Path, gpt_disk: Path, tmp_path: Path) -> None:
    """``convert DIR`` gets one source per disk, in the ``disk`` file's order (system disk
    first as ocs-sr lists it; the job's inspection finds the root), each restored exactly."""
    from p2vimage.sources.prepare import SourceSet

    d = save(disk, tmp_path / "img", {2: ("ntfsclone", "gz", None), 4: ("v0001", "zst", None)})
    save(gpt_disk, d, GPT_HOW, name="sdb", layout=GPT_LAYOUT)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with SourceSet([d], None) as sources:
        assert [s.virtual_size for s in sources.sources] == [DISK_SECTORS * S, GPT_SECTORS * S]
        restored = sources.restore(scratch)
        for i, n in ((0, 2), (0, 4)):
            assert _partition(restored[i].path, n) == _partition(disk, n)
        assert restored[1].path.read_bytes() == gpt_disk.read_bytes()
    assert os.listdir(scratch) == []  # temporaries gone


K = 4096
K_LAYOUT = [(1, 256, 3072, "7"), (2, 3328, 2560, "7")]  # in 4096-byte sectors


def test_4k_sector_mbr_disk(tmp_path: Path) -> None:
    """A 4Kn disk: the dump, parted and MBR count 4096-byte sectors; NTFS has 4096-byte
    sectors, so its backup boot sector is the partition's last 4096 bytes."""
    raw = tmp_path / "4k.raw"
    with open(raw, "wb") as f:
        f.truncate(6144 * K)
    mbr = bytearray(512)
    mbr[440:444] = (0x4B4B4B4B).to_bytes(4, "little")
    for i, (n, start, size, t) in enumerate(K_LAYOUT):
        mbr[446 + 16 * i : 462 + 16 * i] = bytes((0x80 if n == 1 else 0, 0xFE, 0xFF, 0xFF,
                                                  int(t, 16), 0xFE, 0xFF, 0xFF)) + \
            start.to_bytes(4, "little") + size.to_bytes(4, "little")
    mbr[510:] = b"\x55\xaa"
    with open(raw, "r+b") as f:
        f.write(mbr)
    for n, start, size, _t in K_LAYOUT:
        vol = tmp_path / "vol"
        with open(vol, "wb") as f:
            f.truncate(size * K)
        _run("mkntfs", "-q", "-F", "-f", "-s", "4096", "-p", str(start), str(vol))
        src = tmp_path / "f.bin"
        src.write_bytes(random.Random(n).randbytes(200_000))
        _run("ntfscp", "-f", str(vol), str(src), "/f.bin")
        _run("dd", f"if={vol}", f"of={raw}", f"seek={start}", "bs=4096", "conv=notrunc,sparse")
    d = tmp_path / "img"
    d.mkdir()
    (d / "sda-pt.sf").write_text(
        "label: dos\nlabel-id: 0x4b4b4b4b\ndevice: /dev/sda\nunit: sectors\n"
        "sector-size: 4096\n\n"
        "/dev/sda1 : start=         256, size=        3072, type=7, bootable\n"
        "/dev/sda2 : start=        3328, size=        2560, type=7\n")
    (d / "sda-pt.parted").write_text(
        "Model:  (file)\nDisk /dev/sda: 6144s\nSector size (logical/physical): 4096B/4096B\n"
        "Partition Table: msdos\n")
    (d / "sda-mbr").write_bytes(bytes(mbr))
    save(raw, d, {1: ("partclone", "zst", None), 2: ("ntfsclone", "gz", None)},
         layout=K_LAYOUT, sector=K)
    out = tmp_path / "out.raw"
    r = run_cli("restore-clonezilla", str(d), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "logical_block_size=4096" in r.stdout + r.stderr
    assert out.read_bytes() == raw.read_bytes()  # incl. sda1's backup boot sector (4096 B)
