"""windows/common_nt5.py: AutoReboot off and intelppm disabled, in every bootable control
set of an NT 5.x guest, planned and then applied to the real XP hive."""

from __future__ import annotations

import shutil
from pathlib import Path

from fixtures.hivebuild import build_hive, dword
from p2vimage.apply import apply_registry
from p2vimage.formats.regf import REG_DWORD
from p2vimage.guest.registry import Hive, read_control_sets
from p2vimage.plan import Plan
from p2vimage.windows import common_nt5
from tests import steps

XP = "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"


def _edits(plan: Plan) -> list[tuple]:
    return [(e.step, e.control_set, e.key, e.name, e.type, e.value) for e in plan.registry]


def test_nt6_guests_are_left_alone(real_hives: dict[str, Path]) -> None:
    hive = Hive(real_hives["regipy-win7sp1-x86-SYSTEM"])
    plan = Plan()
    for step in (common_nt5.plan_autoreboot, common_nt5.plan_intelppm):
        step(plan, steps.insp(major=6, minor=1), steps.view(hive, major=6, minor=1))
    assert plan.registry == []


def test_autoreboot_off_in_every_bootable_control_set(tmp_path: Path,
                                                      real_hives: dict[str, Path]) -> None:
    path = tmp_path / "system"
    shutil.copyfile(real_hives[XP], path)
    hive = Hive(path, write=True)
    bootable = read_control_sets(hive).bootable()
    plan = Plan()
    common_nt5.plan_autoreboot(plan, steps.insp(), steps.view(hive, control_sets=bootable))
    assert _edits(plan) == [
        ("crash-autoreboot", cs, "Control\\CrashControl", "AutoReboot", REG_DWORD, 0)
        for cs in ("ControlSet001", "ControlSet003")]
    assert all("0x7B" in e.reason for e in plan.registry)
    apply_registry(plan, {"SYSTEM": hive})
    reread = Hive(path)
    for cs in bootable:
        assert reread.get_int(reread.node(f"{cs}\\Control\\CrashControl"), "AutoReboot") == 0


def test_intelppm_disabled_only_where_it_exists(tmp_path: Path) -> None:
    """KB953356: set Start=4 on intelppm where the control set has the service; never
    create the service where it is absent."""
    path = build_hive(tmp_path / "system", {
        "ControlSet001\\Services\\intelppm": {"Start": dword(1), "Type": dword(1)},
        "ControlSet002\\Services\\atapi": {"Start": dword(0)},
    })
    hive = Hive(path, write=True)
    plan = Plan()
    view = steps.view(hive, control_sets=["ControlSet001", "ControlSet002"])
    common_nt5.plan_intelppm(plan, steps.insp(major=5, minor=2), view)
    assert _edits(plan) == [("intelppm", "ControlSet001", "Services\\intelppm", "Start",
                             REG_DWORD, 4)]
    apply_registry(plan, {"SYSTEM": hive})
    reread = Hive(path)
    node = reread.node("ControlSet001\\Services\\intelppm")
    assert (reread.get_int(node, "Start"), reread.get_int(node, "Type")) == (4, 1)
    assert reread.node("ControlSet002\\Services\\intelppm") is None
