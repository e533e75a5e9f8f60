"""Physical network adapters and their TCP/IP settings, read from the SYSTEM hive.

After P2V the physical adapter becomes a hidden "ghost" device that still owns
its connection name and static address; the network step drops it and
re-applies the settings captured here to the new NIC.  Every piece of an
adapter's footprint hangs off its ``NetCfgInstanceId`` GUID.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..guest.registry import Hive
from . import classes

# Buses a KVM guest will not present; adapters enumerated on them are hardware.
PHYSICAL_BUSES = ("pci", "pcmcia", "usb", "isapnp", "eisa", "pcie")
NCF_PHYSICAL = 0x4
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{12}$")


@dataclass
class Nic:
    guid: str
    description: str | None
    hardware_id: str | None
    class_key: str  # Control\Class\{NET}\NNNN
    driver_service: str | None = None
    enum_instance: str | None = None
    connection_name: str | None = None
    mac: str | None = None
    dhcp: bool | None = None
    ip_addresses: list[str] = field(default_factory=list)
    subnet_masks: list[str] = field(default_factory=list)
    gateways: list[str] = field(default_factory=list)
    gateway_metrics: list[str] = field(default_factory=list)
    dns_servers: list[str] = field(default_factory=list)
    wins_servers: list[str] = field(default_factory=list)
    dns_suffix: str | None = None
    dhcp_ip_address: str | None = None

    @property
    def static(self) -> bool:
        return self.dhcp is False and bool(self.ip_addresses)


def _is_physical(hardware_id: str | None, characteristics: int | None) -> bool:
    if not hardware_id:
        return False
    bus = hardware_id.split("\\", 1)[0].lower()
    if bus in PHYSICAL_BUSES:
        return True
    # A hardware id without a bus prefix, flagged NCF_PHYSICAL by its INF.
    return "\\" not in hardware_id and bool((characteristics or 0) & NCF_PHYSICAL) and bus not in (
        "root",
        "sw",
    ) and not bus.startswith(("ms_", "*"))


def _addresses(values: list[str]) -> list[str]:
    return [v.strip() for v in values if v.strip() and v.strip() != "0.0.0.0"]


def _split_servers(text: str | None) -> list[str]:
    if not text:
        return []
    return [s for s in re.split(r"[,\s]+", text) if s]


def _enum_by_driver(hive: Hive, control_set: str) -> dict[str, tuple[str, str | None]]:
    """Map ``{NET}\\NNNN`` (upper) to (Enum instance path, Service) over every bus."""
    out: dict[str, tuple[str, str | None]] = {}
    for bus, dev, inst, node in classes.enum_instances(hive, control_set):
        driver = hive.get_str(node, "Driver")
        if driver and driver.upper().startswith(classes.NET):
            out[driver.upper()] = (f"{bus}\\{dev}\\{inst}", hive.get_str(node, "Service"))
    return out


def physical_nics(hive: Hive, control_set: str) -> list[Nic]:
    """Every hardware network adapter in ``control_set`` with its captured settings."""
    cls = hive.node(f"{control_set}\\Control\\Class\\{classes.NET}")
    if cls is None:
        return []
    by_driver = _enum_by_driver(hive, control_set)
    tcpip = hive.node(f"{control_set}\\Services\\Tcpip\\Parameters\\Interfaces")
    netbt = hive.node(f"{control_set}\\Services\\NetBT\\Parameters\\Interfaces")
    network = hive.node(f"{control_set}\\Control\\Network\\{classes.NET}")
    nics: list[Nic] = []
    for key_name, key in hive.iter_children(cls):
        if not key_name.isdigit():
            continue  # "Properties", "Configuration"
        hwid = hive.get_str(key, "MatchingDeviceId")
        guid = hive.get_str(key, "NetCfgInstanceId")
        if not guid or not _is_physical(hwid, hive.get_int(key, "Characteristics")):
            continue
        nic = Nic(
            guid=guid,
            description=hive.get_str(key, "DriverDesc"),
            hardware_id=hwid,
            class_key=key_name,
        )
        enum_hit = by_driver.get(f"{classes.NET}\\{key_name}".upper())
        if enum_hit:
            nic.enum_instance, nic.driver_service = enum_hit
        if not nic.driver_service:
            nic.driver_service = hive.get_str(hive.node("Ndi", key), "Service")
        mac = hive.get_str(key, "NetworkAddress")
        if mac and _MAC_RE.match(mac.replace("-", "").replace(":", "")):
            raw = mac.replace("-", "").replace(":", "").lower()
            nic.mac = ":".join(raw[i : i + 2] for i in range(0, 12, 2))
        if network is not None:
            nic.connection_name = hive.get_str(hive.node(f"{guid}\\Connection", network), "Name")
        iface = hive.node(guid, tcpip) if tcpip is not None else None
        if iface is not None:
            dhcp = hive.get_int(iface, "EnableDHCP")
            nic.dhcp = None if dhcp is None else bool(dhcp)
            nic.ip_addresses = _addresses(hive.get_list(iface, "IPAddress"))
            nic.subnet_masks = _addresses(hive.get_list(iface, "SubnetMask"))[
                : len(nic.ip_addresses)
            ]
            nic.gateways = _addresses(hive.get_list(iface, "DefaultGateway"))
            nic.gateway_metrics = [
                m for m in hive.get_list(iface, "DefaultGatewayMetric") if m.strip()
            ]
            nic.dns_servers = _split_servers(hive.get_str(iface, "NameServer"))
            nic.dns_suffix = hive.get_str(iface, "Domain") or None
            nic.dhcp_ip_address = hive.get_str(iface, "DhcpIPAddress") or None
        if netbt is not None:
            nic.wins_servers = _addresses(
                hive.get_list(hive.node(f"Tcpip_{guid}", netbt), "NameServerList")
            )
        nics.append(nic)
    return nics


def kept_connection_names(system, cs: str, dropped: list) -> list[str]:
    """Connection names of the adapters that stay (software ones): never the new NIC."""
    gone = {n.guid.upper() for n in dropped}
    net = system.node(f"{cs}\\Control\\Network\\{classes.NET}")
    names = []
    if net is None:
        return names
    for guid, node in system.iter_children(net):
        if guid.upper() in gone:
            continue
        name = system.get_str(system.node("Connection", node), "Name")
        if name and not any(c in name for c in '"%\r\n^&|<>!'):
            names.append(name)
    return names
