"""Clonezilla image directories: restore-clonezilla and convert DIR, end to end.

The directories are made by ``fixtures/clonezilla.py`` with the real tools
(sfdisk, parted, dd, partclone.ntfs, gzip, zstd, split) from multi-partition
disks derived from the NT 5.x (XP, C: at sector 63) and NT 6 (7: System
Reserved + C:) profile images, each with a data partition and an extended
partition holding two logical NTFS volumes.  The original disk is the
reference; partclone.restore is the second reference.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fixtures import clonezilla as cz
from p2vimage.sources.clonezilla import partclone, streams
from tests.conftest import P2VIMAGE, run_cli

SECTOR = 512
# name -> (profile, compression, split size (None: one file), partitions saved with -a 0)
VARIANTS = {
    "xp-gz-split": ("winxp-x86", "gz", "300kB", ()),
    "xp-zst": ("winxp-x86", "zst", None, (6,)),
    "w7-zst-split": ("win7-x64", "zst", "300kB", ()),
    "w7-gz": ("win7-x64", "gz", None, (3,)),
}


def _dir(variant: str) -> Path:
    profile, comp, split, nocs = VARIANTS[variant]
    return cz.clonezilla_dir(profile, comp, split, no_checksum=nocs)


def _original(variant: str) -> Path:
    return cz.multipart_disk(VARIANTS[variant][0])


def _dump(disk: Path) -> str:
    out = subprocess.run(["sfdisk", "-d", str(disk)], capture_output=True, text=True,
                         check=True).stdout
    return out.replace(str(disk), "DISK")


def _pread(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        return os.pread(f.fileno(), length, offset)


def _used_runs(image_dir: Path, part: str) -> tuple[partclone.Header, list[tuple[int, int]]]:
    """Used blocks of a partition, from its image's bitmap (checked against partclone.info
    in the unit tests)."""
    files = sorted(image_dir.glob(f"{part}.ntfs-ptcl-img.*"))
    comp = files[0].name.split("-ptcl-img.")[1].split(".")[0]
    reader, raw = streams.open_stream(files, comp, threaded=False)
    try:
        hdr = partclone.read_header(reader)
        bitmap = partclone.read_bitmap(reader, hdr)
    finally:
        reader.close()
        raw.close()
    return hdr, list(partclone.iter_runs(bitmap, hdr.total_blocks))


def _restore(variant: str, out: Path, *extra: str) -> dict:
    r = run_cli("restore-clonezilla", str(_dir(variant)), "-o", str(out), "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    out = tmp_path_factory.mktemp("cz-restored")
    return {v: (out / f"{v}.raw", _restore(v, out / f"{v}.raw")) for v in VARIANTS}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_restore_reproduces_the_original_disk(restored, variant: str, tmp_path: Path) -> None:
    out, doc = restored[variant]
    orig = _original(variant)
    d = _dir(variant)
    parts = cz.read_table(orig)
    data = [p for p in parts if p.type != 0x05]
    assert [p["name"] for p in doc["partitions"]] == [f"sda{p.number}" for p in data]
    nocs = VARIANTS[variant][3]
    assert [p["checksum"] for p in doc["partitions"]] == [
        "none" if p.number in nocs else "CRC32" for p in data]
    if VARIANTS[variant][2]:
        assert any(p["chunks"] > 1 for p in doc["partitions"])
    assert out.stat().st_size == orig.stat().st_size
    # Partition table (incl. the rebuilt EBR chain), MBR boot code + signature, hidden
    # sectors, EBRs: every byte outside the data partitions is the original's.
    assert _dump(out) == _dump(orig)
    assert doc["warnings"] == []
    covered = sorted((p.start, p.start + p.size) for p in data)
    pos = 0
    for start, end in [*covered, (out.stat().st_size // SECTOR, None)]:
        if start > pos:
            assert _pread(out, pos * SECTOR, (start - pos) * SECTOR) == _pread(
                orig, pos * SECTOR, (start - pos) * SECTOR), f"sectors {pos}-{start}"
        pos = end or pos
    assert _pread(out, 0, 440) == cz.BOOT_CODE
    used_total = 0
    for p in data:
        hdr, runs = _used_runs(d, f"sda{p.number}")
        base, bs = p.start * SECTOR, hdr.block_size
        for first, count in runs:  # every used cluster byte-identical
            off, n = base + first * bs, min(count * bs, p.size * SECTOR - first * bs)
            assert _pread(out, off, n) == _pread(orig, off, n), f"sda{p.number} block {first}"
        used_total += hdr.used_bytes
        # The backup boot sector partclone does not store: recreated at the last sector.
        last = base + (p.size - 1) * SECTOR
        assert _pread(out, last, SECTOR) == _pread(orig, last, SECTOR) == _pread(
            out, base, SECTOR)
        vol = tmp_path / f"sda{p.number}"
        subprocess.run(["dd", f"if={out}", f"of={vol}", "bs=1M", "iflag=skip_bytes,count_bytes",
                        f"skip={base}", f"count={p.size * SECTOR}", "conv=sparse",
                        "status=none"], check=True)
        fix = subprocess.run(["ntfsfix", "-n", str(vol)], capture_output=True, text=True)
        assert fix.returncode == 0, fix.stdout + fix.stderr
        assert "Checking the alternate boot sector... OK" in fix.stdout, fix.stdout
        vol.unlink()
    # Thin: free clusters are holes (the originals carry deleted data there).
    assert out.stat().st_blocks * 512 < used_total + (2 << 20)


@pytest.mark.parametrize("variant", ["xp-gz-split", "w7-zst-split"])
def test_same_bytes_as_partclone_restore(restored, variant: str, tmp_path: Path) -> None:
    out, _doc = restored[variant]
    d = _dir(variant)
    decompress = {"gz": "gzip -dc", "zst": "zstd -dc"}[VARIANTS[variant][1]]
    for p in (p for p in cz.read_table(_original(variant)) if p.type != 0x05):
        name = f"sda{p.number}"
        ref = tmp_path / f"{name}.raw"
        with open(ref, "wb") as f:
            f.truncate(p.size * SECTOR)
        subprocess.run(
            f"cat {d}/{name}.ntfs-ptcl-img.* | {decompress} | partclone.restore -f 1 -C "
            f"-s - -O {ref} -L /dev/null", shell=True, check=True, capture_output=True)
        ours = _pread(out, p.start * SECTOR, p.size * SECTOR)
        theirs = ref.read_bytes()
        assert ours[:-SECTOR] == theirs[:-SECTOR], name
        assert theirs[-SECTOR:] == bytes(SECTOR)  # partclone leaves no backup boot sector
        ref.unlink()


def test_qcow2_output_is_thin_and_identical(restored, tmp_path: Path) -> None:
    raw, _ = restored["w7-gz"]
    out = tmp_path / "disk.qcow2"
    doc = _restore("w7-gz", out, "--format", "qcow2")
    assert doc["format"] == "qcow2"
    cmp = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(out), str(raw)],
                         capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    used = sum(p["used_bytes"] for p in doc["partitions"])
    # Thin: no bigger than qemu-img's own zero-skipping conversion of the restored raw
    # (clusters for the used blocks, the boot code, EBRs and backup boot sectors, metadata).
    ref = tmp_path / "ref" / "ref.qcow2"
    ref.parent.mkdir()
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(ref)],
                   check=True)
    assert used < out.stat().st_size <= ref.stat().st_size + (1 << 20)
    ref.unlink()
    ref.parent.rmdir()
    assert sorted(os.listdir(tmp_path)) == ["disk.qcow2"]  # no temporary raw left


# --- bad input: exit 3, the partition named, nothing left behind -------------------------


def _copy(variant: str, dest: Path) -> Path:
    shutil.copytree(_dir(variant), dest)
    return dest


def _chunks(d: Path, part: str) -> list[Path]:
    return sorted(d.glob(f"{part}.ntfs-ptcl-img.*"))


def _missing_middle(d: Path) -> None:
    _chunks(d, "sda1")[1].unlink()


def _missing_last(d: Path) -> None:
    _chunks(d, "sda2")[-1].unlink()


def _extra(d: Path) -> None:
    c = _chunks(d, "sda5")
    shutil.copy(c[0], c[-1].with_name(c[-1].name[:-1] + chr(ord(c[-1].name[-1]) + 1)))


def _truncated(d: Path) -> None:
    c = _chunks(d, "sda2")[1]
    c.write_bytes(c.read_bytes()[:1000])


def _corrupt_chunk(d: Path) -> None:
    c = _chunks(d, "sda1")[2]
    data = bytearray(c.read_bytes())
    for i in range(5000, 5100):
        data[i] ^= 0x55
    c.write_bytes(data)


def _checksum_mismatch(d: Path) -> None:
    """A flipped byte in the block data, recompressed: only partclone's CRC32 can see it."""
    chunks = _chunks(d, "sda5")
    raw = subprocess.run(f"cat {' '.join(map(str, chunks))} | gzip -dc", shell=True,
                         capture_output=True, check=True).stdout
    at = len(raw) - 300_000
    raw = raw[:at] + bytes((raw[at] ^ 1,)) + raw[at + 1 :]
    for c in chunks:
        c.unlink()
    (d / "sda5.ntfs-ptcl-img.gz").write_bytes(
        subprocess.run(["gzip", "-c"], input=raw, capture_output=True, check=True).stdout)


def _unknown_suffix(d: Path) -> None:
    for c in _chunks(d, "sda6"):
        c.rename(c.with_name(c.name.replace(".gz", ".lrz")))  # lrzip: not supported


def _too_big(d: Path) -> None:
    sf = d / "sda-pt.sf"
    sf.write_text(sf.read_text().replace("size=      102400, type=7\n",
                                         "size=       90000, type=7\n", 1))


def _listed_but_absent(d: Path) -> None:
    for c in _chunks(d, "sda2"):
        c.unlink()


BAD = {
    "missing-chunk": (_missing_middle, r"sda1: chunk sda1\.ntfs-ptcl-img\.gz\.ab is missing"),
    "missing-last-chunk": (_missing_last, r"sda2: .*truncated"),
    "extra-chunk": (_extra, r"sda5: .*(after the end|after its last block|truncated)"),
    "truncated-chunk": (_truncated, r"sda2: .*(truncated|corrupt gzip)"),
    "corrupt-chunk": (_corrupt_chunk, r"sda1: .*corrupt gzip data"),
    "checksum": (_checksum_mismatch, r"sda5: partclone checksum mismatch at image byte \d+"),
    "unknown-compression": (_unknown_suffix, r"sda6: .*compression suffix '\.lrz'"),
    "image-larger-than-partition": (_too_big, r"sda5: the image is of a 52428800-byte volume, "
                                    r"larger than the 46080000-byte partition"),
    "listed-without-image": (_listed_but_absent, r"sda2: listed in 'parts' but no image"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exit_3_naming_the_partition(case: str, tmp_path: Path) -> None:
    mutate, message = BAD[case]
    d = _copy("xp-gz-split", tmp_path / "img")
    mutate(d)
    before = sorted(os.listdir(d))
    outdir = tmp_path / "out"
    outdir.mkdir()
    for fmt in ("raw", "qcow2"):
        r = run_cli("restore-clonezilla", str(d), "-o", str(outdir / "disk"), "--format", fmt)
        assert r.returncode == 3, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert re.search(message, r.stderr), r.stderr
        assert os.listdir(outdir) == []  # nothing left behind, not even a temporary
    assert sorted(os.listdir(d)) == before  # the source directory is never written


def test_not_a_clonezilla_directory(tmp_path: Path) -> None:
    d = tmp_path / "photos"
    d.mkdir()
    (d / "parts").write_text("sda1\n")  # a lookalike without a partition table
    for cmd in (["restore-clonezilla", str(d), "-o", str(tmp_path / "x.raw")],
                ["convert", str(d), "-o", str(tmp_path / "x.qcow2")]):
        r = run_cli(*cmd, "--json")
        assert r.returncode == 3, r.stderr
        assert "not a Clonezilla image directory" in r.stderr
        assert json.loads(r.stdout)["error"]["exit_code"] == 3
    assert sorted(os.listdir(tmp_path)) == ["photos"]


def test_disk_option_and_multi_disk_directories(tmp_path: Path) -> None:
    d = _copy("xp-zst", tmp_path / "img")
    r = run_cli("restore-clonezilla", str(d), "-o", str(tmp_path / "x.raw"), "--disk", "sdb")
    assert r.returncode == 2 and "--disk sdb" in r.stderr and "sda" in r.stderr
    (d / "disk").write_text("sda sdb\n")  # every disk by default (issue #9): sdb's table lacks
    r = run_cli("restore-clonezilla", str(d), "-o", str(tmp_path / "x.raw"))
    assert r.returncode == 3 and "sdb-pt.sf is missing" in r.stderr
    assert not (tmp_path / "x.raw").exists()
    doc = json.loads(run_cli("restore-clonezilla", str(d), "-o", str(tmp_path / "x.raw"),
                             "--disk", "sda", "--json").stdout)
    assert doc["disk"] == "sda"


# --- convert DIR == convert of the original raw disk ---------------------------------------


def _ntfs_files(disks: list[Path]) -> dict[str, dict[str, str]]:
    """sha256 of every file on every NTFS of the disks, in one read-only appliance."""
    import guestfs

    from p2vimage.guest.appliance import LaunchStats, launch_with_fallback

    def new_handle(extra):
        g = guestfs.GuestFS(python_return_dict=True)
        if extra:
            g.set_backend_settings(extra)
        for d in disks:
            g.add_drive_opts(str(d), format="raw", readonly=True)
        return g

    g = launch_with_fallback(new_handle, LaunchStats())
    out: dict[str, dict[str, str]] = {}
    try:
        local = disks[0].parent / "sums.txt"
        for dev, fs in sorted(g.list_filesystems().items()):
            if fs != "ntfs":
                continue
            g.mount_ro(dev, "/")
            g.checksums_out("sha256", "/", str(local))
            out[dev] = dict(reversed(line.split(None, 1)) for line in
                            local.read_text().splitlines())
            g.umount_all()
        local.unlink()
    finally:
        g.close()
    return out


@pytest.mark.slow
@pytest.mark.appliance
def test_convert_directory_equals_convert_of_the_original(tmp_path: Path) -> None:
    d = _dir("xp-gz-split")
    orig = _original("xp-gz-split")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    ra = run_cli("convert", str(d), "-o", str(a / "guest.raw"), "--format", "raw", "--json")
    assert ra.returncode == 0, ra.stderr
    rb = run_cli("convert", str(orig), "-o", str(b / "guest.raw"), "--format", "raw", "--json")
    assert rb.returncode == 0, rb.stderr
    da, db = json.loads(ra.stdout), json.loads(rb.stdout)
    assert da["sources"] == [str(d)]
    assert "restore" in da["phases"]
    # The temporary restored disk is gone; only the outputs are there.
    assert sorted(os.listdir(a)) == ["guest.json", "guest.raw", "guest.xml"]
    assert da["plan"] == db["plan"]  # same registry changes, files, boot-sector edits
    assert da["plan"]["registry"] and da["plan"]["boot_sectors"]
    assert da["inspection"] == db["inspection"]
    ga, gb = a / "guest.raw", b / "guest.raw"
    assert _dump(ga) == _dump(gb)
    assert _pread(ga, 0, 63 * SECTOR) == _pread(gb, 0, 63 * SECTOR)  # MBR + hidden sectors
    files = _ntfs_files([ga, gb])
    pairs = [(k, k.replace("/dev/sda", "/dev/sdb")) for k in files if k.startswith("/dev/sda")]
    assert len(pairs) == 4
    for ka, kb in pairs:
        assert files[ka] == files[kb], ka
    assert any("system" in f.lower() for f in files["/dev/sda1"])


def test_interrupted_restore_leaves_nothing(tmp_path: Path) -> None:
    """SIGTERM while a chunk is still "arriving" (a FIFO nobody writes): exit 130, no output,
    the qcow2's NBD server stopped (the autouse check), the directory untouched."""
    import signal
    import time

    d = _copy("xp-gz-split", tmp_path / "img")
    stalled = _chunks(d, "sda2")[2]
    stalled.unlink()
    os.mkfifo(stalled)
    outdir = tmp_path / "out"
    outdir.mkdir()
    proc = subprocess.Popen([str(P2VIMAGE), "restore-clonezilla", str(d),
                             "-o", str(outdir / "disk.qcow2"), "--format", "qcow2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # disk.qcow2.partial is claimed at once (empty); it becomes a qcow2 when the restore
    # starts writing into it through its NBD export.
    partial = outdir / "disk.qcow2.partial"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (partial.exists() and partial.stat().st_size):
            time.sleep(0.05)
        assert partial.read_bytes()[:4] == b"QFI\xfb"  # the restore has started writing
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # a failed assertion must not leave it waiting on the FIFO
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted by SIGTERM" in err
    assert os.listdir(outdir) == []


# --- convert DIR of two disks: the Windows disk becomes the first, wherever it is listed ---


@pytest.mark.slow
@pytest.mark.appliance
def test_convert_two_disk_directory_puts_the_windows_disk_first(images, tmp_path: Path) -> None:
    """``disk`` = ``sda sdb`` with Windows on sdb: OUT is sdb (converted), OUT-2 is sda (a
    data disk, its used blocks the original's), in that order in the domain XML."""
    from lxml import etree

    from p2vimage.guest.appliance import Job
    from p2vimage.sources.image import open_source

    d = cz.two_disk_dir()
    assert (d / "disk").read_text().split() == ["sda", "sdb"]
    data_orig = images["win2003-x86-2disk-disk2"]
    out = tmp_path / "vm.raw"
    r = run_cli("convert", str(d), "-o", str(out), "--format", "raw", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    out2 = tmp_path / "vm-2.raw"
    assert doc["outputs"] == [str(out), str(out2)]
    assert doc["sources"] == [f"{d} (sdb)", f"{d} (sda)"]
    assert doc["appliance_launches"] == 1
    assert not any("boot) disk" in w for w in doc["warnings"])  # no order warning: it is right
    assert sorted(os.listdir(tmp_path)) == ["vm-2.raw", "vm.json", "vm.raw", "vm.xml"]
    root = etree.parse(str(tmp_path / "vm.xml")).getroot()
    files = [e.find("source").get("file") for e in root.findall("devices/disk[@device='disk']")]
    assert files == [str(out.resolve()), str(out2.resolve())]
    assert [e.find("target").get("dev") for e in root.findall("devices/disk[@device='disk']")] \
        == ["hda", "hdb"]
    assert doc["plan"]["registry"]
    # The system disk is the XP capture (its table), the second the data disk (its table).
    assert _dump(out) == _dump(_original("xp-zst"))
    assert _dump(out2) == _dump(data_orig)
    assert _pread(out2, 0, SECTOR) == _pread(data_orig, 0, SECTOR)
    # The data disk's used blocks are the original's.
    hdr, runs = _used_runs(d, "sda1")
    base = 2048 * SECTOR
    assert sum(n for _, n in runs) * hdr.block_size == hdr.used_bytes > 1 << 20
    for first, n in runs:
        off, length = base + first * hdr.block_size, n * hdr.block_size
        assert _pread(out2, off, length) == _pread(data_orig, off, length), first
    # The conversion's registry changes are on the first disk: Windows is /dev/sda1 now.
    with Job([open_source(out), open_source(out2)]) as job:
        assert job.find_root() == "/dev/sda1"
        system = job.hive("SYSTEM")
        changed = [e for e in doc["plan"]["registry"] if e["changed"]]
        assert len(changed) > 100 and {e["name"] for e in changed} >= {"AutoReboot", "Start"}
        for e in changed:  # every value the plan changed, in every bootable control set
            got = system.raw(system.node(f"{e['control_set']}\\{e['key']}"), e["name"])
            assert got is not None and (got.type, got.value) == (e["type"], e["value"]), e
        job.g.umount_all()  # the hive was read; now the data disk's files
        job.g.mount_ro("/dev/sdb1", "/")
        assert job.g.cat("/Shares/Finance/budget-2012.txt").startswith("Q1 42")


@pytest.mark.slow
@pytest.mark.appliance
def test_convert_directory_without_windows_exit_3(tmp_path: Path) -> None:
    d = cz.two_disk_dir(windows_disk=False)
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("convert", str(d), "-o", str(out / "vm.qcow2"), "--json")
    assert r.returncode == 3, r.stderr
    err = json.loads(r.stdout)["error"]
    assert err["type"] == "NoOperatingSystemError" and err["exit_code"] == 3
    assert "no Windows installation found on any of the 2 disks (/dev/sda, /dev/sdb)" \
        in err["message"]
    assert os.listdir(out) == []  # no output, no temporary restored raw


@pytest.mark.parametrize("command", [
    ["restore-clonezilla", "--format", "raw"],
    ["restore-clonezilla", "--format", "qcow2"],
    ["convert"],
])
def test_too_little_space_refused_before_the_restore(command: list[str], tmp_path: Path) -> None:
    """The restored disk is bounded from the partition images' headers and checked first:
    exit 4 in one line, nothing written."""
    import time

    d = _dir("xp-gz-split")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        t0 = time.monotonic()
        r = run_cli(command[0], str(d), "-o", str(mnt / "disk.img"), *command[1:], "--json")
        assert time.monotonic() - t0 < 10
        assert r.returncode == 5, r.stderr
        err = json.loads(r.stdout)["error"]
        assert err["type"] == "InsufficientSpaceError", err
        assert f"mounted at {mnt} for " in err["message"]
        assert "temporary raw" not in err["message"]  # restored straight into the output
        needed = int(err["message"].split(": ")[1].split(" bytes")[0])
        # At least the used data partclone stored, at most the disk.
        used = sum(_used_runs(d, p)[0].used_bytes for p in ("sda1", "sda2", "sda5", "sda6"))
        assert used < needed
        assert os.listdir(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
