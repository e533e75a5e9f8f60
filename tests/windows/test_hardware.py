"""windows/hardware.py: the machine, disk bus and NIC convert picks, by the same rules
``check`` assumes (choices.pick_bus / pick_nic): staged drivers, and drivers the guest
already has (a former VM's capture) count alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.hivebuild import build_hive, dword, sz
from p2vimage.errors import ConversionError
from p2vimage.guest.registry import Hive
from p2vimage.windows import hardware
from tests import steps

CS = "ControlSet001"


def _guest(tmp_path: Path, **services: int):
    spec = {f"{CS}\\Services\\{name}": {"Start": dword(start), "Type": dword(1),
                                         "ImagePath": sz(f"system32\\drivers\\{name}.sys")}
            for name, start in services.items()}
    spec.setdefault(f"{CS}\\Services\\atapi", {"Start": dword(0)})
    hive = Hive(build_hive(tmp_path / "SYSTEM", spec))
    return steps.view(hive, control_sets=[CS], major=6, minor=1, arch="x64")


def _pick(tmp_path: Path, guest, **options) -> dict[str, str]:
    plan = steps.plan(tmp_path, **options)
    insp = steps.insp(major=6, minor=1, arch="x64", firmware="bios")
    for step in (hardware.choose_machine, hardware.choose_bus, hardware.choose_nic):
        step(plan, insp, guest)
    return {d.what: d.value for d in plan.devices} | {
        f"{d.what} reason": d.reason for d in plan.devices}


def test_without_media_the_emulated_devices(tmp_path: Path) -> None:
    got = _pick(tmp_path, _guest(tmp_path))
    assert (got["machine"], got["disk bus"], got["nic model"]) == ("pc", "ide", "e1000")
    assert got["disk bus reason"].startswith("no --virtio-win given")


def test_a_boot_start_viostor_and_netkvm_already_in_the_guest_count(tmp_path: Path) -> None:
    got = _pick(tmp_path, _guest(tmp_path, viostor=0, netkvm=3))
    assert (got["disk bus"], got["nic model"]) == ("virtio-blk", "virtio")
    assert "already a boot-start driver" in got["disk bus reason"]
    assert "already installed" in got["nic model reason"]


def test_a_demand_start_viostor_is_not_ready_for_boot(tmp_path: Path) -> None:
    guest = _guest(tmp_path, viostor=3)
    assert _pick(tmp_path, guest)["disk bus"] == "ide"
    with pytest.raises(ConversionError):
        _pick(tmp_path, guest, bus="virtio-blk")


def test_only_vioscsi_boot_start_gives_virtio_scsi(tmp_path: Path) -> None:
    assert _pick(tmp_path, _guest(tmp_path, vioscsi=0))["disk bus"] == "virtio-scsi"
