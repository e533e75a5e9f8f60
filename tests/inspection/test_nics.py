"""inspection/nics.py: which network adapters are hardware, and the TCP/IP settings each
one holds (hivex-written hives of the shapes Windows writes; the real Win7 hive)."""

from __future__ import annotations

from pathlib import Path

from fixtures.hivebuild import build_hive, dword, multi, sz
from p2vimage.guest.registry import Hive
from p2vimage.inspection.classes import NET
from p2vimage.inspection.nics import kept_connection_names, physical_nics

CS = "ControlSet001"
CLS = f"{CS}\\Control\\Class\\{NET}"
NETWORK = f"{CS}\\Control\\Network\\{NET}"
TCPIP = f"{CS}\\Services\\Tcpip\\Parameters\\Interfaces"
NETBT = f"{CS}\\Services\\NetBT\\Parameters\\Interfaces"
G1 = "{11111111-1111-1111-1111-111111111111}"
G2 = "{22222222-2222-2222-2222-222222222222}"
G3 = "{33333333-3333-3333-3333-333333333333}"
W7 = "regipy-win7sp1-x86-SYSTEM"


def _adapter(key: str, hwid: str, guid: str, desc: str, **extra) -> dict:
    return {f"{CLS}\\{key}": {"MatchingDeviceId": sz(hwid), "NetCfgInstanceId": sz(guid),
                              "DriverDesc": sz(desc), **extra}}


def test_hardware_adapters_only(tmp_path: Path) -> None:
    spec = {}
    for key, hwid, extra in [
        ("0000", "pci\\ven_8086&dev_100e", {}),
        ("0001", "usb\\vid_0b95&pid_7720", {}),
        ("0002", "PCMCIA\\3COM-3CCFE575CT", {}),
        ("0003", "ms_pschedmp", {}),  # software miniports, tunnels, RAS
        ("0004", "*isatap", {}),
        ("0005", "sw\\{eeab7790-c514-11d1-b42b-00805fc1270e}", {}),
        ("0006", "root\\vmware_nat", {}),
        ("0007", "b57xp32", {"Characteristics": dword(0x84)}),  # NCF_PHYSICAL, no bus
        ("0008", "vpcnetsvc", {"Characteristics": dword(0x1)}),  # no bus, not physical
        ("0009", "ms_loop", {"Characteristics": dword(0x4)}),  # ms_*: never hardware
    ]:
        spec |= _adapter(key, hwid, f"{{{key.zfill(8)}-0000-0000-0000-000000000000}}",
                         f"nic {key}", **extra)
    spec[f"{CLS}\\0010"] = {"MatchingDeviceId": sz("pci\\ven_10ec&dev_8139")}  # no GUID
    spec[f"{CLS}\\Properties"] = {"MatchingDeviceId": sz("pci\\ven_10ec&dev_8139"),
                                  "NetCfgInstanceId": sz(G3)}  # not an adapter key
    nics = physical_nics(Hive(build_hive(tmp_path / "SYSTEM", spec)), CS)
    assert [n.class_key for n in nics] == ["0000", "0001", "0002", "0007"]
    assert nics[0].hardware_id == "pci\\ven_8086&dev_100e" and nics[0].description == "nic 0000"


def test_settings_of_a_static_and_a_dhcp_adapter(tmp_path: Path) -> None:
    spec = _adapter("0001", "pci\\ven_8086&dev_100f", G1, "Intel PRO/1000 MT",
                    NetworkAddress=sz("00-1A-2B-3C-4D-5E"))
    spec |= _adapter("0002", "pci\\ven_10ec&dev_8139", G2, "Realtek",
                     NetworkAddress=sz("not a mac"))
    spec[f"{CLS}\\0002\\Ndi"] = {"Service": sz("RTL8023xp")}
    spec[f"{CS}\\Enum\\PCI\\VEN_8086&DEV_100F\\4&1"] = {
        "Driver": sz(f"{NET.lower()}\\0001"), "Service": sz("E1G60")}
    spec[f"{NETWORK}\\{G1}\\Connection"] = {"Name": sz("LAN")}
    spec[f"{TCPIP}\\{G1}"] = {
        "EnableDHCP": dword(0),
        "IPAddress": multi("10.3.58.5", "0.0.0.0", " 192.168.7.2 ", ""),
        "SubnetMask": multi("255.255.255.0", "0.0.0.0", "255.255.0.0", "255.0.0.0"),
        "DefaultGateway": multi("10.3.58.1", ""),
        "DefaultGatewayMetric": multi("1", " "),
        "NameServer": sz("10.3.58.4,10.3.58.5 10.3.58.6"),
        "Domain": sz("corp.example"),
    }
    spec[f"{NETBT}\\Tcpip_{G1}"] = {"NameServerList": multi("10.3.58.9", "")}
    spec[f"{TCPIP}\\{G2}"] = {"EnableDHCP": dword(1), "IPAddress": multi("0.0.0.0"),
                              "DhcpIPAddress": sz("192.168.1.50"), "Domain": sz("")}
    a, b = physical_nics(Hive(build_hive(tmp_path / "SYSTEM", spec)), CS)
    assert a.static and not b.static
    assert (a.driver_service, a.enum_instance) == ("E1G60", "PCI\\VEN_8086&DEV_100F\\4&1")
    assert a.mac == "00:1a:2b:3c:4d:5e" and b.mac is None
    assert a.connection_name == "LAN" and b.connection_name is None
    assert a.ip_addresses == ["10.3.58.5", "192.168.7.2"]  # 0.0.0.0 and blanks dropped
    assert a.subnet_masks == ["255.255.255.0", "255.255.0.0"]  # as many as addresses
    assert (a.gateways, a.gateway_metrics) == (["10.3.58.1"], ["1"])
    assert a.dns_servers == ["10.3.58.4", "10.3.58.5", "10.3.58.6"]
    assert (a.dns_suffix, a.wins_servers) == ("corp.example", ["10.3.58.9"])
    # the DHCP adapter: service from its Ndi key (no Enum instance points at it)
    assert (b.driver_service, b.enum_instance) == ("RTL8023xp", None)
    assert b.dhcp is True and b.ip_addresses == [] and b.dhcp_ip_address == "192.168.1.50"
    assert b.dns_suffix is None and b.wins_servers == []


def test_adapter_without_tcpip_settings(tmp_path: Path) -> None:
    spec = _adapter("0000", "pci\\ven_8086&dev_100e", G1, "e1000")
    spec[f"{TCPIP}\\{G1}"] = {"IPAddress": multi("10.0.0.2")}  # no EnableDHCP
    (nic,) = physical_nics(Hive(build_hive(tmp_path / "SYSTEM", spec)), CS)
    assert nic.dhcp is None and not nic.static  # unknown: never treated as static
    assert nic.driver_service is None
    assert physical_nics(Hive(build_hive(tmp_path / "EMPTY", {CS: {}})), CS) == []


def test_kept_connection_names(tmp_path: Path) -> None:
    spec = _adapter("0000", "pci\\ven_8086&dev_100e", G1, "e1000")
    for guid, name in ((G1, "Local Area Connection"), (G2, "Wireless"),
                       (G3, 'bad "name" & more')):
        spec[f"{NETWORK}\\{guid}\\Connection"] = {"Name": sz(name)}
    spec[f"{NETWORK}\\{{44444444-4444-4444-4444-444444444444}}"] = {}  # no Connection key
    hive = Hive(build_hive(tmp_path / "SYSTEM", spec))
    dropped = physical_nics(hive, CS)
    # the dropped adapter's name is free for the new NIC; names cmd cannot quote are left out
    assert kept_connection_names(hive, CS, dropped) == ["Wireless"]
    assert kept_connection_names(hive, CS, []) == ["Local Area Connection", "Wireless"]
    assert kept_connection_names(hive, "ControlSet002", dropped) == []


def test_real_win7_hive_two_static_nics(real_hives: dict[str, Path]) -> None:
    """The Win7 hive (INSPECTION.txt): two Intel PRO/1000 MT adapters, each static, each
    with its connection name; the other connections are software ones."""
    hive = Hive(real_hives[W7])
    nics = physical_nics(hive, CS)
    assert sorted((n.class_key, n.connection_name, n.driver_service) for n in nics) == [
        ("0007", "Local Area Connection", "E1G60"), ("0012", "Local Area Connection 2", "E1G60")]
    assert all(n.static and n.subnet_masks == ["255.255.255.0"] for n in nics)
    kept = kept_connection_names(hive, CS, nics)
    assert "Local Area Connection" not in kept and "Local Area Connection 2" not in kept
    assert "isatap.{698E50A9-4F58-4D86-B61D-F42E58DCACF6}" in kept
