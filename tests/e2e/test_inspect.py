"""End-to-end inspection of fixture disk images through a real libguestfs appliance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

import p2vimage
from fixtures import profiles
from fixtures.images import DEMO
from p2vimage.inspection import inspect_job
from tests.conftest import P2VIMAGE, run_cli, sha256

PROFILE = profiles.DEMO_2003


@pytest.fixture(scope="module")
def demo_inspection(demo_job):
    return inspect_job(demo_job)


def test_demo_version_fields(demo_inspection) -> None:
    i = demo_inspection
    assert i.product_name == PROFILE.product_name
    assert f"{i.major}.{i.minor}" == PROFILE.version
    assert i.build == PROFILE.build
    assert i.service_pack == PROFILE.csd_version
    assert i.arch == PROFILE.arch
    assert i.product_type == PROFILE.product_type
    assert i.edition == PROFILE.edition
    assert i.hostname == PROFILE.hostname
    assert i.system_root.strip("/").lower() == PROFILE.systemroot.lower()
    assert i.is_nt5


def test_demo_disk_fields(demo_inspection, demo_job) -> None:
    i = demo_inspection
    assert i.partition_table == "mbr" and i.firmware == "bios"
    assert i.windows_partition == "/dev/sda1"
    parts = demo_job.g.part_list("/dev/sda")
    assert parts[0]["part_start"] == PROFILE.part_start * 512


def test_demo_control_sets_and_hal(demo_inspection) -> None:
    cs = demo_inspection.control_sets
    assert (cs.current, cs.default, cs.last_known_good) == PROFILE.select
    assert cs.present == [f"ControlSet{n:03d}" for n in PROFILE.control_sets]
    assert cs.bootable == cs.present
    assert demo_inspection.hal.hardware_id == PROFILE.hal
    assert demo_inspection.hal.multiprocessor is True


def test_demo_storage(demo_inspection) -> None:
    bc = PROFILE.boot_controller
    assert demo_inspection.boot_storage_drivers == [bc.service]
    (ctrl,) = demo_inspection.storage_controllers
    assert (ctrl.description, ctrl.hardware_id, ctrl.start) == (bc.description, bc.device, 0)


def test_demo_nic(demo_inspection) -> None:
    (nic,) = demo_inspection.nics
    want = PROFILE.nics[0]
    assert nic.guid == want.guid
    assert nic.description == want.description
    assert nic.driver_service == want.service
    assert nic.connection_name == want.connection
    assert nic.mac == want.mac.lower()
    assert nic.dhcp is False and nic.static
    assert nic.ip_addresses == list(want.ip)
    assert nic.subnet_masks == list(want.mask)
    assert nic.gateways == list(want.gateway)
    assert nic.dns_servers == list(want.dns)
    assert nic.wins_servers == list(want.wins)
    assert nic.dns_suffix == want.domain


def test_demo_drivers_and_cabinets(demo_inspection, demo_job) -> None:
    assert demo_inspection.virtio_drivers == []
    names = [Path(c.path).name for c in demo_inspection.driver_cabinets]
    assert names == sorted(c.name for c in PROFILE.driver_cache)
    for c in demo_inspection.driver_cabinets:
        assert c.size == demo_job.g.filesize(c.path) > 0
    assert demo_inspection.real_time_is_universal is PROFILE.real_time_is_universal


def test_cli_inspect_json_and_unchanged_source(images, launch_watch) -> None:
    img = images[DEMO]
    before = sha256(img)
    r = run_cli("inspect", "--json", str(img), env=launch_watch.env())
    assert r.returncode == 0, r.stderr
    assert launch_watch.count >= 1  # what "no appliance" tests rely on sees a real launch
    doc = json.loads(r.stdout)
    assert doc["product_name"] == PROFILE.product_name
    assert doc["nics"][0]["ip_addresses"] == list(PROFILE.nics[0].ip)
    assert doc["appliance_launches"] == 1
    assert doc["launch_attempts"] in (1, 2)
    # A fallback is always explained on stderr, never silent.
    assert (doc["launch_attempts"] == 2) == ("retrying once with TCG" in r.stderr)
    assert sha256(img) == before


@pytest.mark.parametrize(
    ("image", "exc", "fragment"),
    [
        ("linux", p2vimage.NoOperatingSystemError, "the disk holds linux"),
        ("empty", p2vimage.NoOperatingSystemError, "no partitions"),
        ("unformatted", p2vimage.NoOperatingSystemError, "no partition holds a filesystem"),
        ("two-windows", p2vimage.MultipleRootsError, "--root"),
        (f"{DEMO}-corrupt-hive", p2vimage.CorruptHiveError, r"system32/config/system"),
    ],
)
def test_bad_images(images, image: str, exc, fragment: str) -> None:
    path = images[image]
    before = sha256(path)
    with pytest.raises(exc, match=fragment):
        p2vimage.inspect(path)
    assert sha256(path) == before


def test_bad_image_cli_exit_code(images) -> None:
    r = run_cli("inspect", str(images["linux"]))
    assert r.returncode == 3
    assert r.stderr.strip().splitlines()[-1].startswith("p2vimage: error: no Windows")
    assert "Traceback" not in r.stderr


def test_root_option_chooses(images) -> None:
    insp = p2vimage.inspect(images["two-windows"], root="/dev/sda2")
    assert insp.windows_partition == "/dev/sda2"
    assert insp.product_name == PROFILE.product_name


def test_interrupt_exits_130(images) -> None:
    """SIGINT mid-launch: exit 130, one line, no traceback, source unchanged.  The signal
    goes when ``-v`` says the launch began (a fixed sleep could land before the handlers
    exist on a slow machine, or after the end on a fast one)."""
    img = images[DEMO]
    before = sha256(img)
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc = subprocess.Popen(
            [str(P2VIMAGE), "inspect", "-v", str(img)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ},
        )
        assert proc.stderr is not None
        seen = []
        while not any("phase: launch" in line for line in seen):
            line = proc.stderr.readline()
            assert line, f"ended before the launch: {''.join(seen)}"
            seen.append(line)
        proc.send_signal(sig)
        out, rest = proc.communicate(timeout=120)
        err = "".join(seen) + rest
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == (
            f"p2vimage: error: interrupted by {sig.name}; nothing was written"
        )
        assert "Traceback" not in err
    assert sha256(img) == before
