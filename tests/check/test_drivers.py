"""check/drivers.py: virtio packages staged for Plug and Play (judged by the real virtio
INFs' own decorated models) and the network check (stale static addresses on the real
Win7 hive; a driver for the NIC in DriverDatabase, staged, or in %SystemRoot%\\inf)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.hivebuild import build_hive, dword, multi, sz
from p2vimage.check import devices
from p2vimage.check.drivers import (
    DEVICEPATH_KEY,
    check_network,
    check_virtio_staging,
    staged_for,
)
from p2vimage.check.guest import CheckView
from p2vimage.check.report import WARNING
from p2vimage.guest.registry import Hive
from tests.check.files_view import files_view
from tests.conftest import REALDATA

INF = REALDATA / "virtio-win" / "inf"
STAGE = "/WINDOWS/Drivers/VirtIO"
W7 = "regipy-win7sp1-x86-SYSTEM"
BLK = devices.boot_chain("virtio-blk", "pc", False)[0]  # transitional, 1AF4:1001
BLK_MODERN = devices.boot_chain("virtio-blk", "q35", True)[0]  # 1AF4:1042
NET = devices.nic_device("virtio", False)  # 1AF4:1000


def _found(res) -> list[tuple[str, str]]:
    return [(f.id, f.severity) for f in res.findings]


@pytest.fixture
def system(tmp_path: Path) -> Hive:
    return Hive(build_hive(tmp_path / "SYSTEM", {"ControlSet001\\Services": {}}))


def _software(tmp_path: Path, device_path: str | None) -> Hive:
    values = {"DevicePath": sz(device_path)} if device_path is not None else {}
    return Hive(build_hive(tmp_path / "SOFTWARE", {DEVICEPATH_KEY: values},
                           hive_name="SOFTWARE"))


def _xp_stage() -> dict[str, bytes]:
    """The real XP x86 viostor and netkvm packages, laid out as staging does."""
    return {f"{STAGE}/viostor/viostor.inf": (INF / "Wxp_x86_viostor.inf").read_bytes(),
            f"{STAGE}/NetKVM/netkvm.inf": (INF / "Wxp_x86_netkvm.inf").read_bytes(),
            f"{STAGE}/viostor/viostor.sys": b"MZ"}


def test_staging_skipped_without_a_disk(system: Hive) -> None:
    view = CheckView(system, None, ["ControlSet001"], "/WINDOWS")
    assert check_virtio_staging(view, [BLK]).skipped == "no disk: only hives were given"
    assert not staged_for(view, BLK)


def test_xp_packages_staged_for_an_xp_guest(system: Hive, tmp_path: Path) -> None:
    soft = _software(tmp_path, "%SystemRoot%\\inf;%SystemRoot%\\Drivers\\VirtIO")
    view = files_view(system, ["ControlSet001"], _xp_stage(), software=soft)
    res = check_virtio_staging(view, [BLK, NET])
    assert res.findings == [] and res.status == "passed"
    assert staged_for(view, BLK) and staged_for(view, NET)
    # the XP viostor (1AF4:1001 only) does not claim the modern device q35 presents
    assert not staged_for(view, BLK_MODERN)
    assert _found(check_virtio_staging(view, [BLK_MODERN])) == [
        ("virtio.device-not-staged", WARNING)]


def test_xp_packages_on_a_2003_x64_guest_are_ignored(system: Hive, tmp_path: Path) -> None:
    """NTx86 models only: Windows x64 ignores both packages, so nothing claims the devices."""
    soft = _software(tmp_path, "%SystemRoot%\\Drivers\\VirtIO")
    view = files_view(system, ["ControlSet001"], _xp_stage(), software=soft,
                      arch="x64", major=5, minor=2)
    res = check_virtio_staging(view, [BLK, NET])
    assert _found(res) == [("virtio.package-wrong-os", WARNING)] * 2 + [
        ("virtio.device-not-staged", WARNING)] * 2
    assert {f.evidence[0] for f in res.findings[:2]} == {
        "\\WINDOWS\\Drivers\\VirtIO\\NetKVM\\netkvm.inf",
        "\\WINDOWS\\Drivers\\VirtIO\\viostor\\viostor.inf"}
    assert "has no models for Windows 5.2 x64" in res.findings[0].message
    assert not staged_for(view, BLK)


def test_wlh_package_needs_vista(system: Hive, tmp_path: Path) -> None:
    """The Vista (Wlh) viostor is decorated NTx86.6.0: an XP guest ignores it."""
    files = {f"{STAGE}/viostor.inf": (INF / "Wlh_x86_viostor.inf").read_bytes()}
    soft = _software(tmp_path, "%SystemRoot%\\Drivers\\VirtIO")
    xp = files_view(system, ["ControlSet001"], files, software=soft)
    assert _found(check_virtio_staging(xp, [BLK])) == [
        ("virtio.package-wrong-os", WARNING), ("virtio.device-not-staged", WARNING)]
    vista = files_view(system, ["ControlSet001"], files, software=soft, major=6, minor=0)
    assert check_virtio_staging(vista, [BLK, BLK_MODERN]).findings == []


@pytest.mark.parametrize("device_path", [None, "%SystemRoot%\\inf",
                                         "%SystemRoot%\\Drivers\\VirtIO\\viostor"])
def test_devicepath_must_list_the_stage_folder(system: Hive, tmp_path: Path,
                                               device_path: str | None) -> None:
    view = files_view(system, ["ControlSet001"], _xp_stage(),
                      software=_software(tmp_path, device_path))
    res = check_virtio_staging(view, [BLK])
    assert _found(res) == [("virtio.devicepath", WARNING)]
    assert res.findings[0].evidence == [
        "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\DevicePath"]


def test_nothing_staged(system: Hive) -> None:
    view = files_view(system, ["ControlSet001"], {"/WINDOWS/system32/ntoskrnl.exe": b"MZ"})
    res = check_virtio_staging(view, [BLK])
    assert _found(res) == [("virtio.not-staged", WARNING)]  # and nothing else said
    assert res.findings[0].evidence == ["\\WINDOWS\\Drivers\\VirtIO"]


def test_stale_static_addresses_on_the_real_win7_hive(real_hives: dict[str, Path]) -> None:
    """Both Intel NICs of the Win7 hive keep static addresses (INSPECTION.txt)."""
    view = CheckView(Hive(real_hives[W7]), None, ["ControlSet001", "ControlSet002"],
                     "/Windows", major=6, minor=1)
    res = check_network(view, "e1000", devices.nic_device("e1000", False))
    assert _found(res) == [("network.stale-static-ip", WARNING)] * 2
    assert sorted(f.message.split("static ")[1].split(":")[0] for f in res.findings) == [
        "10.3.58.5", "192.168.1.123"]
    assert {f.evidence[0] for f in res.findings} == {
        "ControlSet001\\Services\\Tcpip\\Parameters\\Interfaces\\"
        "{698E50A9-4F58-4D86-B61D-F42E58DCACF6}",
        "ControlSet001\\Services\\Tcpip\\Parameters\\Interfaces\\"
        "{6AAFC9A9-0542-4DB2-8760-CCFFA953737C}"}
    assert res.title == "Network (e1000 NIC)"


def test_a_driver_for_the_nic(system: Hive, tmp_path: Path) -> None:
    cs = ["ControlSet001"]
    # nowhere: the guest boots without network
    res = check_network(files_view(system, cs, {"/WINDOWS/inf/machine.inf": b"[Version]"}),
                        "virtio", NET)
    assert _found(res) == [("network.no-driver", WARNING)]
    assert res.findings[0].evidence == ["\\WINDOWS\\Drivers\\VirtIO", "\\WINDOWS\\inf"]
    # staged, or installed into %SystemRoot%\inf as oemN.inf
    netkvm = (INF / "Wxp_x86_netkvm.inf").read_bytes()
    for path in (f"{STAGE}/netkvm.inf", "/WINDOWS/inf/oem3.inf"):
        assert check_network(files_view(system, cs, {path: netkvm}), "virtio", NET).findings \
            == []
    # Windows 8+: found in DriverDatabase without any INF file
    dd = "DriverDatabase"
    e1000 = devices.nic_device("e1000", False)
    hive = Hive(build_hive(tmp_path / "DD", {
        f"{dd}\\DeviceIds\\PCI\\VEN_8086&DEV_100E": {"net1ic64.inf": dword(1)},
        f"{dd}\\DriverInfFiles\\net1ic64.inf": {"Active": multi("net1ic64.inf_amd64_1")},
        f"{dd}\\DriverPackages\\net1ic64.inf_amd64_1\\Descriptors\\PCI\\VEN_8086&DEV_100E": {
            "Configuration": sz("E100E.ndi")},
        f"{dd}\\DriverPackages\\net1ic64.inf_amd64_1\\Configurations\\E100E.ndi": {
            "Service": sz("e1iexpress")},
        "ControlSet001\\Services": {},
    }))
    view = files_view(hive, cs, {}, arch="x64", major=10, minor=0)
    assert check_network(view, "e1000", e1000).findings == []
    assert _found(check_network(view, "rtl8139", devices.nic_device("rtl8139", False))) == [
        ("network.no-driver", WARNING)]
