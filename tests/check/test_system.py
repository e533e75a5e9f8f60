"""check/system.py: every boot-start driver's file, the NT 5.x boot sector geometry (a
real mkntfs boot sector) and the HAL against the vCPUs (the real XP hive's
uniprocessor HAL)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from fixtures.hivebuild import build_hive, dword, esz, multi
from p2vimage.check.guest import CheckView
from p2vimage.check.report import ERROR, WARNING
from p2vimage.check.system import check_boot_start_files, check_geometry, check_hal
from p2vimage.guest.registry import Hive
from tests.check.files_view import files_view

SETS = ["ControlSet001", "ControlSet002"]
XP = "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"
DRIVERS = "/WINDOWS/system32/drivers"


def _found(res) -> list[tuple[str, str]]:
    return [(f.id, f.severity) for f in res.findings]


def _services(tmp_path: Path, per_set: dict[str, dict[str, dict]]) -> Hive:
    spec = {f"{cs}\\Services\\{name}": values
            for cs, services in per_set.items() for name, values in services.items()}
    return Hive(build_hive(tmp_path / "SYSTEM", spec))


def _boot(error_control: int = 1, **extra) -> dict:
    return {"Start": dword(0), "Type": dword(1), "ErrorControl": dword(error_control), **extra}


def test_boot_start_files_skipped_without_a_disk(real_hives: dict[str, Path]) -> None:
    view = CheckView(Hive(real_hives[XP]), None, ["ControlSet001"], "/WINDOWS")
    res = check_boot_start_files(view)
    assert res.status == "skipped" and res.skipped == "no disk: only hives were given"


def test_missing_boot_start_files(tmp_path: Path) -> None:
    hive = _services(tmp_path, {
        "ControlSet001": {
            "atapi": _boot(),  # present (default path, another spelling)
            "fatal": _boot(3, ImagePath=esz("\\SystemRoot\\System32\\drivers\\fatal.sys")),
            "normal": _boot(1),
            "svc": {"Start": dword(0), "Type": dword(0x10)},  # not a driver: ignored
            "manual": {"Start": dword(3), "Type": dword(1)},  # not boot start
            "skipped": _boot(3),
            "skipped\\StartOverride": {"0": dword(4)},
            "both": _boot(1),
        },
        "ControlSet002": {"both": _boot(3), "lkg": _boot(3)},
    })
    view = files_view(hive, SETS, {f"{DRIVERS}/ATAPI.SYS": b"MZ"})
    res = check_boot_start_files(view)
    by_name = {f.message.split(":")[0].split()[-1]: f for f in res.findings}
    assert set(by_name) == {"fatal", "normal", "both", "lkg"}
    # Severe/Critical in the Default control set stops the boot; elsewhere it warns
    assert (by_name["fatal"].id, by_name["fatal"].severity) == (
        "boot-start.file-missing", ERROR)
    assert "the boot stops" in by_name["fatal"].message
    assert by_name["fatal"].evidence == ["ControlSet001\\Services\\fatal\\ImagePath",
                                         "\\WINDOWS\\System32\\drivers\\fatal.sys"]
    assert by_name["normal"].severity == WARNING
    assert "Windows starts without it" in by_name["normal"].message
    assert by_name["lkg"].severity == WARNING  # Critical, but only in LastKnownGood
    # one finding per file, naming each control set that loads it
    assert "(ControlSet001, ControlSet002)" in by_name["both"].message
    assert by_name["both"].severity == WARNING
    assert by_name["both"].evidence[:2] == ["ControlSet001\\Services\\both\\ImagePath",
                                            "ControlSet002\\Services\\both\\ImagePath"]
    assert res.status == "failed"


@pytest.fixture(scope="module")
def ntfs_boot(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The boot sector mkntfs writes for a partition at sector 63 of a 255-head disk."""
    vol = tmp_path_factory.mktemp("ntfs") / "vol"
    with open(vol, "wb") as f:
        f.truncate(8 << 20)
    subprocess.run(["mkntfs", "-q", "-F", "-f", "-p", "63", "-H", "255", "-S", "63", str(vol)],
                   check=True, capture_output=True)
    return vol.read_bytes()[:512]


def _view(tmp_path: Path, major: int = 5) -> CheckView:
    hive = Hive(build_hive(tmp_path / "SYSTEM", {"ControlSet001": {}}))
    return CheckView(hive, None, ["ControlSet001"], "/WINDOWS", major=major, minor=1)


def test_geometry(tmp_path: Path, ntfs_boot: bytes) -> None:
    view = _view(tmp_path)
    assert struct.unpack_from("<HHI", ntfs_boot, 0x18) == (63, 255, 63)
    # above ~4.2 GB SeaBIOS presents 255 heads: the boot sector agrees
    assert check_geometry(view, ntfs_boot, 8 << 30, 63).findings == []
    # a 1 GiB disk gets 64 heads from SeaBIOS; and a partition that moved
    res = check_geometry(view, ntfs_boot, 1 << 30, 2048)
    assert _found(res) == [("nt5.geometry", ERROR), ("nt5.hidden-sectors", ERROR)]
    assert res.findings[0].message.startswith(
        "boot sector says 255 heads/63 sectors, SeaBIOS presents 64/63 for a 1.0 GiB disk")
    assert "hidden sectors 63 != partition start 2048" in res.findings[1].message
    # the partition start unknown: only the geometry is judged
    assert _found(check_geometry(view, ntfs_boot, 8 << 30, None)) == []
    fat = bytearray(ntfs_boot)
    fat[3:11] = b"MSDOS5.0"
    assert _found(check_geometry(view, bytes(fat), 8 << 30, 63)) == [("nt5.not-ntfs", WARNING)]


def test_geometry_does_not_apply(tmp_path: Path, ntfs_boot: bytes) -> None:
    assert check_geometry(_view(tmp_path, major=6), ntfs_boot, 1 << 30, 0).skipped == (
        "Windows Vista and later boot by LBA")
    assert check_geometry(_view(tmp_path), None, None, None).skipped == (
        "no disk: only hives were given")


def test_uniprocessor_hal_on_the_real_xp_hive(real_hives: dict[str, Path]) -> None:
    view = CheckView(Hive(real_hives[XP]), None, ["ControlSet001", "ControlSet003"],
                     "/WINDOWS", major=5, minor=1)
    res = check_hal(view, 2)
    assert _found(res) == [("nt5.hal-uniprocessor", WARNING)]
    assert res.findings[0].message == (
        "HAL halacpi.dll (acpipic_up) is uniprocessor: Windows will use 1 of the 2 vCPUs")
    assert check_hal(view, 1).findings == [] and check_hal(view, None).findings == []


def test_hal_cases(tmp_path: Path) -> None:
    (tmp_path / "mp").mkdir()
    mp = Hive(build_hive(tmp_path / "mp" / "SYSTEM", {
        "ControlSet001\\Enum\\Root\\ACPI_HAL\\0000": {"HardwareID": multi("acpiapic_mp")}}))
    view = CheckView(mp, None, ["ControlSet001"], "/WINDOWS", major=5, minor=2)
    assert check_hal(view, 8).findings == []
    assert _found(check_hal(_view(tmp_path), 2)) == [("nt5.hal-unknown", WARNING)]
    assert check_hal(_view(tmp_path, major=10), 2).skipped == (
        "Windows Vista and later use one multiprocessor-capable HAL")
