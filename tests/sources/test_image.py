"""sources/image.py: bad input recognised before any appliance starts, formats detected, and
the allocation bound of an image."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import p2vimage
from p2vimage.sources.image import allocated_bound, open_source
from tests.conftest import run_cli, sha256


def _mbr_disk(path: Path, size: int = 1 << 20) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(510)
        f.write(b"\x55\xaa")
    return path


@pytest.mark.parametrize(
    ("content", "exc", "fragment"),
    [
        (None, p2vimage.SourceNotFoundError, "no such file"),
        ("dir", p2vimage.UnsupportedFormatError, "is a directory"),
        (b"", p2vimage.UnsupportedFormatError, "empty"),
        (b"x" * 100, p2vimage.UnsupportedFormatError, "too small"),
        (b"\0" * 1000, p2vimage.UnsupportedFormatError, "512-byte sectors"),
    ],
)
def test_bad_sources_rejected_before_launch(tmp_path: Path, content, exc, fragment) -> None:
    path = tmp_path / "src.img"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(exc, match=fragment):
        open_source(path)


def test_fifo_is_not_a_disk(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(p2vimage.UnsupportedFormatError, match="not a regular file"):
        open_source(fifo)


def test_raw_disk_with_fake_qcow2_header_stays_raw(tmp_path: Path) -> None:
    """A raw disk whose first bytes look like qcow2 must never be probed as qcow2."""
    disk = _mbr_disk(tmp_path / "fake.img")
    with open(disk, "r+b") as f:
        f.write(b"QFI\xfb\x00\x00\x00\x03")  # qcow2 magic + version
    before = sha256(disk)
    src = open_source(disk)
    assert src.format == "raw" and src.detected
    assert sha256(disk) == before


def test_qcow2_detected_and_checked(tmp_path: Path) -> None:
    q = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(q), "64M"], check=True)
    src = open_source(q)
    assert (src.format, src.virtual_size) == ("qcow2", 64 << 20)


def test_qcow2_with_missing_backing_file(tmp_path: Path) -> None:
    base = tmp_path / "base.img"
    _mbr_disk(base)
    q = tmp_path / "top.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base), str(q)],
        check=True,
    )
    base.unlink()
    with pytest.raises(p2vimage.UnsupportedFormatError, match="not a usable qcow2"):
        open_source(q)


def test_truncated_qcow2(tmp_path: Path) -> None:
    q = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(q), "64M"], check=True)
    q.write_bytes(q.read_bytes()[:600])
    with pytest.raises(p2vimage.UnsupportedFormatError):
        open_source(q)


def test_explicit_source_format(tmp_path: Path) -> None:
    disk = _mbr_disk(tmp_path / "d.img")
    assert open_source(disk, "dd").format == "raw"
    with pytest.raises(p2vimage.UsageError, match="unsupported --source-format"):
        open_source(disk, "iso")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: __import__("gzip").compress(b"\0" * 4096), "gzip"),
        (lambda: __import__("lzma").compress(b"\0" * 4096), "xz"),
        (lambda: b"\0" * 0x8001 + b"CD001" + b"\0" * (0x8800 - 0x8006), "ISO 9660"),
        (lambda: b"PK\x03\x04" + b"\0" * 2044, "zip"),
    ],
)
def test_foreign_files_refused_before_launch(tmp_path: Path, make, fragment: str) -> None:
    data = make()
    data += b"\0" * (-len(data) % 512)
    path = tmp_path / "capture.img"
    path.write_bytes(data)
    with pytest.raises(p2vimage.UnsupportedFormatError, match=fragment):
        open_source(path)
    r = run_cli("inspect", str(path))
    assert r.returncode == 3 and "not a disk image" in r.stderr


def test_allocated_bound_follows_allocation_not_size(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.raw"
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)
        f.seek(512 << 20)
        f.write(os.urandom(3 << 20))
    bound = allocated_bound(sparse, "raw")
    assert 3 << 20 <= bound < 8 << 20  # 3 MiB of data in a 1 GiB file
    q = tmp_path / "c.qcow2"
    subprocess.run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(sparse), str(q)],
                   check=True)
    assert allocated_bound(q, "qcow2") >= 3 << 20  # compressed clusters count whole
