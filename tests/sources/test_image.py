"""Bad input recognised before any appliance starts, and the CLI conventions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import p2vimage
from p2vimage import errors
from p2vimage.sources.image import open_source
from tests.conftest import P2VIMAGE, run_cli, sha256


def _mbr_disk(path: Path, size: int = 1 << 20) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(510)
        f.write(b"\x55\xaa")
    return path


def test_exception_classes_carry_exit_codes() -> None:
    assert p2vimage.UsageError("x").exit_code == 2
    for cls in (
        p2vimage.SourceNotFoundError,
        p2vimage.SourceUnreadableError,
        p2vimage.UnsupportedFormatError,
        p2vimage.NoOperatingSystemError,
        p2vimage.MultipleRootsError,
        p2vimage.CorruptHiveError,
        p2vimage.CorruptImageError,
    ):
        assert issubclass(cls, p2vimage.BadInputError) and cls("x").exit_code == 3
    assert p2vimage.ConversionError("x").exit_code == 4
    assert p2vimage.NotReadyError("x").exit_code == 1
    assert p2vimage.Interrupted("x").exit_code == 130
    assert errors.EXIT_INTERRUPTED == 130
    # Temporary (exit 5): what a caller may retry, told apart by the exit code alone.
    for cls in (p2vimage.OutputBusyError, p2vimage.ApplianceError,
                p2vimage.InsufficientSpaceError):
        assert issubclass(cls, p2vimage.TemporaryError) and cls("x").exit_code == 5
        assert not issubclass(cls, (p2vimage.UsageError, p2vimage.ConversionError))
    assert errors.EXIT_TEMPORARY == 5


def test_write_errors_by_cause() -> None:
    """A failed output write: no room is temporary (exit 5), anything else exit 4."""
    import errno

    assert isinstance(errors.write_error("w", errno.ENOSPC), p2vimage.InsufficientSpaceError)
    assert isinstance(errors.write_error("w", errno.EDQUOT), p2vimage.InsufficientSpaceError)
    other = errors.write_error("w", errno.EIO)
    assert type(other) is p2vimage.ConversionError and other.exit_code == 4
    assert type(errors.write_error("w", None)) is p2vimage.ConversionError


def test_public_errors_are_listed_once() -> None:
    """The package exports every exception class of errors.py, from its one list."""
    for name in errors.__all__:
        assert getattr(p2vimage, name) is getattr(errors, name)
        assert name in p2vimage.__all__
    assert "TemporaryError" in errors.__all__


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


# --- CLI conventions (no appliance needed) -------------------------------------


def test_cli_usage_error_is_exit_2_one_line() -> None:
    r = run_cli("inspect")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("p2vimage: error: ")
    r = run_cli("frobnicate")
    assert r.returncode == 2 and r.stderr.startswith("p2vimage: error: ")


def test_cli_missing_file_exit_3(tmp_path: Path) -> None:
    r = run_cli("inspect", str(tmp_path / "missing.img"))
    assert r.returncode == 3
    assert r.stderr == f"p2vimage: error: {tmp_path / 'missing.img'}: no such file\n"
    assert r.stdout == ""


def test_cli_json_error_document(tmp_path: Path) -> None:
    (tmp_path / "e.img").write_bytes(b"")
    r = run_cli("inspect", "--json", str(tmp_path / "e.img"))
    assert r.returncode == 3
    doc = json.loads(r.stdout)
    assert doc["error"]["type"] == "UnsupportedFormatError"
    assert doc["error"]["exit_code"] == 3
    assert "empty" in doc["error"]["message"]


def test_cli_unreadable_file_exit_3(tmp_path: Path) -> None:
    """As an unprivileged user, a mode-000 image is unreadable (root would read it)."""
    if shutil.which("runuser") is None:
        pytest.fail("runuser (util-linux) is required for this test")
    d = Path(tempfile.mkdtemp(prefix="p2v-unreadable-", dir="/tmp"))
    try:
        d.chmod(0o755)
        img = _mbr_disk(d / "secret.img")
        img.chmod(0o000)
        env = {**os.environ, "HOME": "/tmp"}
        r = subprocess.run(
            ["runuser", "-u", "nobody", "--", str(P2VIMAGE), "inspect", str(img)],
            capture_output=True, text=True, env=env, check=False,
        )
    finally:
        shutil.rmtree(d)
    assert r.returncode == 3, r.stderr
    assert r.stderr.strip() == f"p2vimage: error: {img}: permission denied"




def test_missing_binding_message(tmp_path: Path) -> None:
    disk = _mbr_disk(tmp_path / "d.img")
    code = (
        "import sys; sys.modules['guestfs'] = None\n"
        "from p2vimage.cli import main\n"
        f"raise SystemExit(main(['inspect', {str(disk)!r}]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 4
    assert "Traceback" not in r.stderr
    assert "install the Debian package python3-guestfs" in r.stderr
    assert r.stderr.count("\n") == 1


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


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = run_cli("inspect", "--debug", str(tmp_path / "missing.img"))
    assert r.returncode == 3
    assert "Traceback" in r.stderr and "SourceNotFoundError" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("p2vimage: error: ")
    r = run_cli("inspect", str(tmp_path / "missing.img"))
    assert "Traceback" not in r.stderr


def test_output_order_puts_the_system_disk_first(tmp_path: Path) -> None:
    """Output k is source order[k]: the system disk first, the others in their own order;
    a Clonezilla directory's disks are named in the report, image files as given."""
    from p2vimage.sources.image import SourceImage
    from p2vimage.targets.disk import output_paths, system_first

    assert system_first(1, 0) == [0]
    assert system_first(3, 0) == [0, 1, 2]
    assert system_first(3, 1) == [1, 0, 2]
    assert system_first(3, 2) == [2, 0, 1]
    assert output_paths(tmp_path / "vm.qcow2", 3)[1:] == [tmp_path / "vm-2.qcow2",
                                                          tmp_path / "vm-3.qcow2"]
    cz = SourceImage(tmp_path / "r.raw", "raw", 1, 0, True, origin=tmp_path / "img", disk="sdb")
    assert cz.describe(True) == f"{tmp_path / 'img'} (sdb)"
    assert cz.describe(False) == str(tmp_path / "img")
    plain = SourceImage(tmp_path / "a.img", "raw", 1, 0, True)
    assert plain.describe(True) == str(tmp_path / "a.img")
