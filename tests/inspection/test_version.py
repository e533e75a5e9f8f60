"""Version, edition and names read from the hives (``inspection/version.py``)."""

from __future__ import annotations

from fixtures.hivebuild import build_hive, sz
from p2vimage.guest.registry import Hive
from p2vimage.inspection.version import read_hostname


def test_hostname_falls_back_to_tcpip(tmp_path) -> None:
    """No ComputerName key: the machine is still named, from Tcpip\\Parameters."""
    cs = "ControlSet001"
    both = build_hive(tmp_path / "both", {
        f"{cs}\\Control\\ComputerName\\ComputerName": {"ComputerName": sz("FILESRV01")},
        f"{cs}\\Services\\Tcpip\\Parameters": {"Hostname": sz("filesrv01-dns")},
    })
    tcpip = build_hive(tmp_path / "tcpip", {
        f"{cs}\\Services\\Tcpip\\Parameters": {"Hostname": sz("filesrv01"),
                                              "NV Hostname": sz("older")},
    })
    nv = build_hive(tmp_path / "nv", {
        f"{cs}\\Services\\Tcpip\\Parameters": {"NV Hostname": sz("dc01")},
    })
    none = build_hive(tmp_path / "none", {f"{cs}\\Services\\Tcpip\\Parameters": {}})
    assert read_hostname(Hive(both), cs) == "FILESRV01"
    assert read_hostname(Hive(tcpip), cs) == "filesrv01"
    assert read_hostname(Hive(nv), cs) == "dc01"
    assert read_hostname(Hive(none), cs) is None
