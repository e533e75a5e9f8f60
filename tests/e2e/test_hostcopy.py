"""The host-side copy writes exactly the edited guest: used clusters and non-NTFS regions.

Each conversion runs in-process with ``hostcopy.copy_disk`` wrapped so that, just
before the copy, the edited overlay is saved whole as a raw reference (``qemu-img
convert``: qemu's reading, not ours).  Then, independently of our own readers:
- the partitions come from ``sfdisk --json`` on the reference;
- the used clusters of each NTFS partition come from ``ntfsclone --save-image`` of
  that partition (a loop device), which walks the MFT itself;
- the output is read back by ``qemu-img convert -O raw``.
The output must equal the reference with every free NTFS cluster zeroed (so the old
data in free space is gone and free clusters read as zeros), and ``ntfsfix -n`` must
accept every NTFS partition of the output.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import p2vimage
from fixtures.images import DEMO
from p2vimage import interrupt
from p2vimage.blockio.nbd import server_processes
from p2vimage.errors import BadInputError, ConversionError, Interrupted
from p2vimage.formats import ntfsclone
from p2vimage.formats.ntfs_volume import parse_boot, volume_flags
from p2vimage.targets import hostcopy
from p2vimage.targets.extents import CopyPlan
from tests.conftest import private_tmpdir

MiB = 1 << 20
CHUNK = 16 * MiB


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True)


@contextmanager
def loop(path: Path, offset: int, size: int, readonly: bool = True) -> Iterator[str]:
    args = ["losetup", "--find", "--show", "-o", str(offset), "--sizelimit", str(size)]
    dev = _run(*args, *(["-r"] if readonly else []), str(path)).stdout.decode().strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def partitions(raw: Path) -> list[dict]:
    doc = json.loads(_run("sfdisk", "--json", str(raw)).stdout)["partitiontable"]
    ss = doc.get("sectorsize", 512)
    return [{"start": p["start"] * ss, "size": p["size"] * ss, "type": str(p["type"]).lower()}
            for p in doc["partitions"]]


def ntfs_used(dev: str) -> tuple[list[tuple[int, int]], int] | None:
    """(used runs in bytes, bytes the clusters cover) of the NTFS volume on ``dev``."""
    kind = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", dev],
                          capture_output=True, check=False).stdout.strip()
    if kind != b"ntfs":
        return None
    f = io.BytesIO(_run("ntfsclone", "--save-image", "--force", "-o", "-", dev).stdout)
    hdr = ntfsclone.read_header(f)
    return [(off, len(d)) for off, d in ntfsclone.iter_runs(f, hdr)], \
        hdr.nr_clusters * hdr.cluster_size


def expected_image(ref: Path, dest: Path) -> list[dict]:
    """``ref`` with every free cluster of each NTFS partition zeroed, into ``dest``."""
    _run("cp", "--sparse=always", str(ref), str(dest))
    parts = partitions(ref)
    with open(dest, "r+b") as f:
        for p in parts:
            with loop(ref, p["start"], p["size"]) as dev:
                got = ntfs_used(dev)
            p["ntfs"] = got is not None
            if got is None:
                continue
            runs, covered = got
            pos = 0
            for off, n in sorted(runs) + [(covered, 0)]:
                if off > pos:  # a free stretch: zeros
                    f.seek(p["start"] + pos)
                    left = off - pos
                    while left:
                        step = min(left, CHUNK)
                        f.write(bytes(step))
                        left -= step
                pos = max(pos, off + n)
    return parts


def assert_same(expected: Path, output_raw: Path) -> None:
    assert expected.stat().st_size <= output_raw.stat().st_size
    with open(expected, "rb") as a, open(output_raw, "rb") as b:
        pos = 0
        while True:
            x = a.read(CHUNK)
            y = b.read(len(x)) if x else b""
            if not x:
                break
            if x != y:
                bad = next(i for i in range(len(x)) if x[i] != y[i])
                pytest.fail(f"output differs from the edited guest at byte {pos + bad}")
            pos += len(x)
        while rest := b.read(CHUNK):  # grown with --size: the new space reads as zeros
            assert rest.count(0) == len(rest)


def convert_with_reference(monkeypatch, tmp_path: Path, sources, out: Path, **kw):
    """Run convert, keeping each edited disk as ``ref-N.raw`` just before its copy."""
    refs: list[Path] = []
    real_one, real_second = hostcopy.copy_disk, hostcopy.second_pass

    def keep(overlay: Path) -> None:
        ref = tmp_path / f"ref-{len(refs)}.raw"
        _run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(overlay), str(ref))
        refs.append(ref)

    def keeping(overlay: Path, *args, **kwargs):
        keep(overlay)
        return real_one(overlay, *args, **kwargs)

    def keeping_second(overlay: Path, *args, **kwargs):
        keep(overlay)
        return real_second(overlay, *args, **kwargs)

    monkeypatch.setattr(hostcopy, "copy_disk", keeping)
    monkeypatch.setattr(hostcopy, "second_pass", keeping_second)
    seen = []
    report = p2vimage.convert(sources, out, progress=seen.append, **kw)
    return report, refs, seen


def check_output(tmp_path: Path, ref: Path, out: Path, fmt: str) -> list[dict]:
    exp = tmp_path / f"expected-{out.name}.raw"
    parts = expected_image(ref, exp)
    back = tmp_path / f"back-{out.name}.raw"
    _run("qemu-img", "convert", "-f", fmt, "-O", "raw", str(out), str(back))
    assert_same(exp, back)
    for p in parts:
        if p["ntfs"]:
            with loop(back, p["start"], p["size"]) as dev:
                r = subprocess.run(["ntfsfix", "-n", dev], capture_output=True, text=True)
                assert r.returncode == 0, r.stdout + r.stderr
    exp.unlink()
    back.unlink()
    return parts


def test_mbr_qcow2_grown_equals_edited_guest(images, tmp_path, monkeypatch) -> None:
    out = tmp_path / "o" / "demo.qcow2"
    out.parent.mkdir()
    report, refs, seen = convert_with_reference(monkeypatch, tmp_path, str(images[DEMO]), out,
                                                size=2 << 30)
    parts = check_output(tmp_path, refs[0], out, "qcow2")
    assert any(p["ntfs"] for p in parts)
    info = json.loads(_run("qemu-img", "info", "--output=json", str(out)).stdout)
    assert info["virtual-size"] == 2 << 30
    # the report: phases apart, copy figures per disk, progress reported up to the total
    assert list(report.phases) == ["launch", "inspect", "plan", "apply", "check", "bitmap",
                                   "copy"]
    (c,) = report.copy
    # two passes: the source while the appliance worked, then what the edits changed
    assert c.bytes_read == c.first_pass_bytes + c.second_pass_bytes == report.bytes_read
    assert 0 < c.second_pass_bytes < c.first_pass_bytes
    assert c.first_pass_bytes >= (c.ntfs_bytes + c.other_bytes) // 2
    # the edits free clusters (the old runs of rewritten files): zeroed again, and the
    # comparison above found them reading as zeros
    assert c.zeroed_bytes > 0
    assert 0 < c.bytes_written <= c.bytes_read
    assert c.whole_volumes == []
    passes = {p.phase for p in seen}
    assert passes == {"copy disk 1/1", "copy disk 1/1 (changes)"}
    for phase in passes:
        mine = [p for p in seen if p.phase == phase]
        assert mine[-1].done == mine[-1].total
        assert all(a.done <= b.done for a, b in zip(mine, mine[1:], strict=False))
    assert sum(max(p.total for p in seen if p.phase == ph) for ph in passes) == c.bytes_read


def test_gpt_raw_equals_edited_guest(images, tmp_path, monkeypatch) -> None:
    out = tmp_path / "o" / "w2019.img"
    out.parent.mkdir()
    report, refs, _ = convert_with_reference(monkeypatch, tmp_path, images["win2019-x64"], out,
                                             format="raw")
    parts = check_output(tmp_path, refs[0], out, "raw")
    assert len(parts) >= 3 and sum(p["ntfs"] for p in parts) >= 1  # ESP, MSR, Windows
    # sparse: the raw output allocates about what was written
    assert out.stat().st_blocks * 512 <= report.copy[0].bytes_written + 4 * MiB


def mark_dirty(image: Path, partition_start: int) -> None:
    """Set the dirty flag of the NTFS volume at ``partition_start`` (record 3, in place)."""
    with open(image, "r+b") as f:
        f.seek(partition_start)
        boot = parse_boot(f.read(512))
        at = partition_start + boot.record_offset(3)
        f.seek(at)
        record = f.read(boot.record_size)
        flags, off = volume_flags(record)
        f.seek(at + off)
        f.write(struct.pack("<H", flags | 1))


@pytest.mark.slow
def test_two_disks_equal_edited_guest_untrusted_bitmap_copied_whole(images, tmp_path,
                                                                    monkeypatch) -> None:
    """Two disks, the data disk's NTFS marked dirty: its bitmap is not trusted, so that
    partition is copied whole (free clusters and all), with a warning in the report."""
    data = tmp_path / "data.raw"
    _run("cp", "--sparse=always", str(images["win2003-x86-2disk-disk2"]), str(data))
    (part,) = partitions(data)
    mark_dirty(data, part["start"])
    out = tmp_path / "o" / "two.qcow2"
    out.parent.mkdir()
    report, refs, _ = convert_with_reference(
        monkeypatch, tmp_path, [images["win2003-x86-2disk"], data], out)
    assert len(refs) == 2 and len(report.copy) == 2
    check_output(tmp_path, refs[0], out, "qcow2")
    assert report.copy[1].whole_volumes == ["/dev/sdb1"]
    assert any("/dev/sdb1: the NTFS allocation bitmap cannot be trusted (the volume is marked "
               "dirty" in w for w in report.warnings)
    back = tmp_path / "back2.raw"
    _run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(out.with_name("two-2.qcow2")),
         str(back))
    assert_same(refs[1], back)  # every byte: nothing zeroed


@pytest.mark.slow
def test_source_changing_size_is_exit_3(images, tmp_path) -> None:
    """A capture still growing while it is converted: BadInputError (exit 3), nothing left."""
    src = tmp_path / "growing.raw"
    _run("cp", "--sparse=always", str(images[DEMO]), str(src))
    out = tmp_path / "o"
    out.mkdir()

    def grow(p) -> None:
        if src.stat().st_size == images[DEMO].stat().st_size:
            os.truncate(src, src.stat().st_size + MiB)

    with pytest.raises(BadInputError, match="changed size during the conversion") as err:
        p2vimage.convert(src, out / "x.qcow2", progress=grow)
    assert err.value.exit_code == 3
    assert list(out.iterdir()) == []


# --- failures during the host copy ------------------------------------------------------


@pytest.fixture()
def overlay(images, tmp_path: Path) -> Path:
    src = images[DEMO]
    ov = tmp_path / "overlay.qcow2"
    _run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(src), str(ov))
    return ov


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_copy_disk_alone_writes_the_used_data(overlay, tmp_path: Path, fmt: str) -> None:
    ov = overlay
    dest = tmp_path / f"out.{fmt}"
    seen: list = []
    c = hostcopy.copy_disk(ov, "/dev/sda", dest, fmt, None, tmp_path, label="copy",
                           progress=seen.append)
    assert c.ntfs_bytes > 0 and c.whole_volumes == []
    assert seen[-1].done == seen[-1].total == c.bytes_read
    ref = tmp_path / "ref.raw"
    _run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(ov), str(ref))
    check_output(tmp_path, ref, dest, fmt)
    assert list(tmp_path.glob("nbd-*")) == []  # the socket directories are gone


def test_nbd_server_killed_mid_copy_is_exit_4(overlay, tmp_path: Path, monkeypatch) -> None:
    """The source's qemu-nbd dies during the copy: ConversionError (exit 4) naming it."""
    ov = overlay
    monkeypatch.setattr(hostcopy, "REQUEST", 64 << 10)  # many small requests: time to kill

    def kill_servers(_p) -> None:
        for pid in server_processes({os.getpid()}):
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(ConversionError, match="NBD") as err:
        hostcopy.copy_disk(ov, "/dev/sda", tmp_path / "out.qcow2", "qcow2", None, tmp_path,
                           label="copy", progress=kill_servers)
    assert err.value.exit_code == 4
    assert list(tmp_path.glob("nbd-*")) == []


def test_sigint_during_the_host_copy_leaves_nothing(images, tmp_path: Path,
                                                    monkeypatch) -> None:
    """A real SIGINT (to this process, from the progress callback, so it lands in the
    copy): the job stops, no output or .partial, no qemu-nbd, the work directory gone."""
    out = tmp_path / "o"
    out.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    for k, v in private_tmpdir(work).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(hostcopy, "REQUEST", 64 << 10)
    sent: list[int] = []

    def interrupt_once(p) -> None:
        if not sent and p.phase.startswith("copy"):
            sent.append(p.done)
            os.kill(os.getpid(), signal.SIGINT)

    try:
        # A library call installs no handler: the application asks for the CLI's (a signal
        # recorded even when it lands in a libguestfs callback, which swallows it).
        with interrupt.handling_signals(), pytest.raises((KeyboardInterrupt, Interrupted)):
            p2vimage.convert(str(images[DEMO]), out / "x.qcow2", progress=interrupt_once)
    finally:
        interrupt.clear_stop()  # the record is process-wide: later tests must run
    assert sent
    assert list(out.iterdir()) == []
    assert list(work.iterdir()) == []
    assert server_processes({os.getpid()}) == []


def test_copy_disk_to_a_smaller_size_cuts_only_the_tail(images, tmp_path: Path) -> None:
    """``--size`` below the disk's size but past the last partition: the output is that
    large, every partition (and the gap before it) equal to the edited guest's, and the
    data in the cut-off tail is not read."""
    ov = tmp_path / "grown.qcow2"  # the demo disk, 8 MiB longer, with data in the tail
    _run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(images[DEMO]),
         str(ov), str(images[DEMO].stat().st_size + 8 * MiB))
    _run("qemu-io", "-f", "qcow2", "-c", f"write -P 0x55 {images[DEMO].stat().st_size} 4M",
         str(ov))
    ref = tmp_path / "ref.raw"
    _run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(ov), str(ref))
    last_end = max(p["start"] + p["size"] for p in partitions(ref))
    size = last_end  # the demo disk has unpartitioned sectors after its last partition
    assert size < ref.stat().st_size
    dest = tmp_path / "small.qcow2"
    c = hostcopy.copy_disk(ov, "/dev/sda", dest, "qcow2", size, tmp_path, label="copy",
                           progress=None)
    assert json.loads(_run("qemu-img", "info", "--output=json", str(dest)).stdout)[
        "virtual-size"] == size
    assert c.bytes_read <= size
    exp = tmp_path / "expected.raw"
    expected_image(ref, exp)
    os.truncate(exp, size)
    back = tmp_path / "back.raw"
    _run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(dest), str(back))
    assert back.stat().st_size == size
    assert_same(exp, back)


def test_copy_plan_clip() -> None:
    plan = CopyPlan(100, extents=[(0, 10), (20, 30), (60, 50)], ntfs_bytes=10, other_bytes=80)
    plan.clip(40)
    assert plan.extents == [(0, 10), (20, 20)] and plan.other_bytes == 20
