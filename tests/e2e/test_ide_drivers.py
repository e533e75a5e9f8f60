"""The IDE driver step's edges on a disk image: a driver missing everywhere, --driver-file.

The ``win2003-x86-nopciidex`` fixture is the demo machine with ``pciidex.sys`` in none of
the places Windows keeps drivers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures import virtio_iso
from fixtures.pe import build_pe
from p2vimage.guest import files
from p2vimage.guest.appliance import Job
from p2vimage.sources.image import open_source
from tests.conftest import run_cli, sha256

NAME = "win2003-x86-nopciidex"


def test_missing_driver_on_ide_is_exit_4_and_writes_nothing(images, tmp_path: Path) -> None:
    src = images[NAME]
    before = sha256(src)
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("convert", str(src), "-o", str(out / "x.qcow2"), "--bus", "ide")
    assert r.returncode == 4, r.stderr
    # One error line (a host whose KVM fails logs the TCG fallback before it).
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("p2vimage: error: ")
    assert "pciidex.sys not found" in line
    for place in ("system32\\drivers", "Driver Cache\\i386\\driver.cab", "ServicePackFiles",
                  "dllcache", "--driver-file"):
        assert place in line, place
    assert list(out.iterdir()) == []
    assert sha256(src) == before


def test_missing_driver_is_a_warning_when_ide_is_only_the_fallback(images, tmp_path) -> None:
    iso = virtio_iso.build_iso("current", tmp_path / "iso" / "virtio-win.iso")
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("convert", str(images[NAME]), "-o", str(out / "x.qcow2"),
                "--virtio-win", str(iso), "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert any("pciidex.sys not found" in w and "STOP 0x7B" in w for w in doc["warnings"])
    staged = {f["guest_path"].rsplit("/", 1)[1] for f in doc["plan"]["files"]
              if f["step"] == "ide-drivers"}
    assert staged == {"atapi.sys", "intelide.sys", "pciide.sys"}
    devices = {d["what"]: d["value"] for d in doc["plan"]["devices"]}
    assert devices["disk bus"] == "virtio-blk"
    assert list(out.iterdir()) == []


def test_driver_file_supplies_the_missing_one(images, tmp_path: Path) -> None:
    given = tmp_path / "PCIIDEX.SYS"
    given.write_bytes(build_pe(0x14C, version=(5, 2, 3790, 1830), payload=b"from the admin"))
    out = tmp_path / "x.qcow2"
    r = run_cli("convert", str(images[NAME]), "-o", str(out), "--bus", "ide",
                "--driver-file", str(given), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    f = next(f for f in doc["plan"]["files"] if f["guest_path"].endswith("pciidex.sys"))
    assert f["origin"] == f"--driver-file {given}" and f["version"] == "5.2.3790.1830"
    assert f["changed"] is True
    with Job([open_source(out)]) as job:
        job.mount_root()
        path = files.resolve(job.g, "/WINDOWS/system32/drivers/pciidex.sys")
        assert path is not None
        assert job.g.read_file(path) == given.read_bytes()


@pytest.mark.parametrize(
    ("machine", "data", "fragment"),
    [(0x8664, None, "an x64 driver; the guest is x86"), (None, b"MZ junk", "not a valid PE")],
)
def test_bad_driver_file_is_exit_3(images, tmp_path: Path, machine, data, fragment) -> None:
    given = tmp_path / "pciidex.sys"
    given.write_bytes(data if data is not None else build_pe(machine, version=(5, 2, 3790, 0)))
    r = run_cli("convert", str(images[NAME]), "-o", str(tmp_path / "x.qcow2"), "--dry-run",
                "--driver-file", str(given))
    assert r.returncode == 3, r.stderr
    assert fragment in r.stderr.splitlines()[-1]
