"""guest/view.py: the read-only view of a guest, on bare hives (file questions have no
answer) and on a libguestfs handle whose calls fail (a handle that was never launched:
every call raises the RuntimeError a failing appliance call raises)."""

from __future__ import annotations

from pathlib import Path

import guestfs
import pytest

from fixtures.hivebuild import build_hive, dword
from p2vimage.formats.partition_table import DiskLayout, PartitionSpan
from p2vimage.guest.registry import Hive
from p2vimage.guest.view import GuestView

XP = "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"
W10 = "regipy-win10-18362-x64-SYSTEM_WIN_10_1709"


@pytest.fixture
def xp(real_hives: dict[str, Path]) -> Hive:
    return Hive(real_hives[XP], name="SYSTEM")


def test_of_hives_reads_the_bootable_control_sets(xp: Hive) -> None:
    """The real XP hive's Select: Current = Default = 1, LastKnownGood = 3."""
    v = GuestView.of_hives(xp)
    assert v.control_sets == ["ControlSet001", "ControlSet003"]
    assert v.software is None and v.system_root is None and v.g is None
    # given control sets are taken as they are
    assert GuestView.of_hives(xp, control_sets=["ControlSet003"]).control_sets == [
        "ControlSet003"]
    assert v.is_default("ControlSet001") and not v.is_default("ControlSet003")
    assert not GuestView.of_hives(xp, control_sets=[]).is_default("ControlSet001")


def test_version_root_and_driver_database(xp: Hive, real_hives: dict[str, Path]) -> None:
    v = GuestView.of_hives(xp)
    assert v.version == (0, 0)  # unknown until the inspection says
    v.major, v.minor = 5, 1
    assert v.version == (5, 1)
    assert v.join_root("system32", "drivers") == "/WINDOWS/system32/drivers"
    v.system_root = "/WINNT"
    assert v.join_root("inf", "x.inf") == "/WINNT/inf/x.inf"
    assert not v.driver_database  # XP: CriticalDeviceDatabase only
    assert GuestView.of_hives(Hive(real_hives[W10])).driver_database  # Windows 10


def test_hive_only_view_has_no_file_answers(xp: Hive) -> None:
    v = GuestView.of_hives(xp, system_root="/WINDOWS")
    assert not v.has_files
    assert v.exists("/WINDOWS/system32/drivers/atapi.sys") is None  # not False: unknown
    assert v.resolve("/WINDOWS") is None
    assert not v.is_file("/WINDOWS/system32/config/system") and not v.is_dir("/WINDOWS")
    assert v.read("/boot.ini", 10) is None and v.file_size("/boot.ini") is None
    assert v.read_all("/boot.ini") is None
    assert v.list_dir("/WINDOWS") == []
    assert v.boot_sectors() == []


def test_failing_appliance_calls_mean_absent(xp: Hive) -> None:
    g = guestfs.GuestFS(python_return_dict=True)
    v = GuestView(xp, None, ["ControlSet001"], "/WINDOWS", g=g, system_disk=None)
    assert v.has_files
    assert v.exists("/WINDOWS/system32/drivers/atapi.sys") is False
    assert v._resolved == {"/WINDOWS/system32/drivers/atapi.sys": None}  # asked once
    assert not v.is_file("/boot.ini") and not v.is_dir("/WINDOWS")
    assert v.read("/boot.ini", 10) is None and v.file_size("/boot.ini") is None
    assert v.read_all("/boot.ini") is None
    assert v.list_dir("/WINDOWS") == []
    assert v.boot_sectors() == []  # no system disk named: nothing to ask


def test_boot_sectors_come_from_the_host_read_layout(xp: Hive) -> None:
    ntfs = b"\xebR\x90NTFS    " + bytes(501)
    layout = DiskLayout("/dev/sda", 1 << 30, (
        PartitionSpan("/dev/sda1", 1 << 20, 1 << 29, "ntfs", number=1, boot_sector=ntfs),
        PartitionSpan("/dev/sda2", 1 << 29, 1 << 30, None, container=True, number=2),
        PartitionSpan("/dev/sda5", (1 << 29) + 512, 1 << 30, None, number=5,
                      boot_sector=bytes(512)),
    ), "mbr", 0x1234)
    g = guestfs.GuestFS(python_return_dict=True)  # never asked when the layout is known
    v = GuestView(xp, None, ["ControlSet001"], g=g, layout=layout, system_disk="/dev/sda")
    assert v.boot_sectors() == [("/dev/sda1", ntfs), ("/dev/sda5", bytes(512))]


def test_a_synthetic_hive_without_select_needs_control_sets(tmp_path: Path) -> None:
    from p2vimage.errors import CorruptHiveError

    h = Hive(build_hive(tmp_path / "SYSTEM", {"ControlSet001\\Services\\x": {"Start": dword(0)}}))
    with pytest.raises(CorruptHiveError, match="no Select key"):
        GuestView.of_hives(h)
    assert GuestView.of_hives(h, control_sets=["ControlSet001"]).control_sets == [
        "ControlSet001"]
