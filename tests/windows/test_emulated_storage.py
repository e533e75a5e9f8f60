"""windows/emulated_storage.py: QEMU's IDE/AHCI made boot-ready on NT 6; a fallback
controller the guest cannot use is left exactly as it was (no half-written entries)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.hivebuild import build_hive, dword, sz
from p2vimage.errors import ConversionError
from p2vimage.guest.registry import Hive
from p2vimage.windows import emulated_storage
from tests import steps

CS = "ControlSet001"


def _run(tmp_path: Path, services: tuple[str, ...], bus: str):
    spec = {f"{CS}\\Services\\{s}": {"Start": dword(3), "Type": dword(1),
                                      "ImagePath": sz(f"system32\\drivers\\{s}.sys")}
            for s in services}
    hive = Hive(build_hive(tmp_path / "SYSTEM", spec))
    guest = steps.files_view(hive, [CS], "/Windows")
    plan = steps.plan(tmp_path)
    plan.choose("machine", "pc", "test")
    plan.choose("disk bus", bus, "test")
    emulated_storage.plan_nt6_storage(plan, steps.insp(major=6, minor=1), guest)
    return plan


def test_ide_made_boot_start_with_its_cddb_entries(tmp_path: Path) -> None:
    plan = _run(tmp_path, ("intelide", "pciide", "atapi"), "ide")
    starts = {e.key for e in plan.registry if e.name == "Start"}
    assert starts == {f"Services\\{s}" for s in ("intelide", "pciide", "atapi")}
    cddb = {e.key.rsplit("\\", 1)[1]: e.value for e in plan.registry if e.name == "Service"}
    assert cddb == {"pci#ven_8086&dev_7010": "intelide", "pci#cc_0101": "pciide",
                    "primary_ide_channel": "atapi", "secondary_ide_channel": "atapi"}
    assert plan.warnings == []


def test_a_fallback_controller_with_a_missing_service_is_left_as_is(tmp_path: Path) -> None:
    plan = _run(tmp_path, ("pciide", "atapi"), "virtio-blk")  # no intelide
    assert plan.registry == []  # no Start change, no CDDB entry naming a missing service
    (warning,) = plan.warnings
    assert "Services\\intelide does not exist" in warning and "left as is" in warning


def test_the_boot_controller_with_a_missing_service_stops_the_conversion(
        tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="cannot boot on this controller"):
        _run(tmp_path, ("pciide", "atapi"), "ide")
