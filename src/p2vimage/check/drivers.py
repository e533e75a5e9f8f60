"""Virtio staging and the network: will PnP find drivers, and is the old network gone?

Drivers staged for PnP sit in ``%SystemRoot%\\Drivers\\VirtIO`` (where we and virt-v2v
put them) and are only found through ``DevicePath``; an INF there for another Windows
or architecture is silently ignored by Windows, so it is checked with the INF's own
decorated models, the way setupapi reads them.
"""

from __future__ import annotations

from ..formats import inf as inf_mod
from ..guest.files import windows_path
from ..inspection import nics as nics_mod
from ..virtio.stage import DEVICEPATH_ENTRY, STAGE_DIR
from . import devices, storage
from .guest import CheckView
from .report import WARNING, CheckResult

DEVICEPATH_KEY = "Microsoft\\Windows\\CurrentVersion"
VIRTIO_TITLE = "Virtio drivers staged for Plug and Play"
_INF_LIMIT = 4 << 20


def _stage_dir(view: CheckView) -> str:
    return view.join_root(*STAGE_DIR.split("\\"))


def _infs(view: CheckView, folder: str, needle: str | None = None) -> list[tuple[str, inf_mod.Inf]]:
    """INFs of a guest folder (recursively one level, as virtio staging lays them out);
    with ``needle`` only those whose text mentions it (cheap filter before parsing).
    Each folder is read from the guest once per view: several checks ask about it."""
    if folder not in view.inf_cache:
        texts = []
        for name in view.list_dir(folder):
            path = f"{folder}/{name}"
            if name.lower().endswith(".inf"):
                candidates = [path]
            elif view.is_dir(path):
                candidates = [f"{path}/{n}" for n in view.list_dir(path)
                              if n.lower().endswith(".inf")]
            else:
                continue
            for p in candidates:
                data = view.read_all(p, _INF_LIMIT)
                if data is not None:
                    text = inf_mod.decode(data)
                    texts.append((p, text, text.upper()))
        view.inf_cache[folder] = texts
    return [(p, inf_mod.parse(text)) for p, text, upper in view.inf_cache[folder]
            if not needle or needle.upper() in upper]


def staged_for(view: CheckView, dev: devices.Device) -> bool:
    """Whether a package staged for PnP claims ``dev`` for this Windows."""
    if not view.has_files:
        return False
    base = dev.base_id
    arch, ver = view.arch or "x86", view.version
    return any(info.claims(arch, ver, base) for _p, info in
               _infs(view, _stage_dir(view), needle=base.split("\\", 1)[1]))


def _device_path(view: CheckView) -> str | None:
    if view.software is None:
        return None
    return view.software.get_str(view.software.node(DEVICEPATH_KEY), "DevicePath")


def check_virtio_staging(view: CheckView, wanted: list[devices.Device]) -> CheckResult:
    res = CheckResult("virtio-staging", VIRTIO_TITLE)
    if not view.has_files:
        res.skipped = "no disk: only hives were given"
        return res
    folder = _stage_dir(view)
    staged = _infs(view, folder)
    where = windows_path(folder)
    if not staged:
        res.add("virtio.not-staged", WARNING,
                f"no driver packages in {where}: Plug and Play will find no virtio drivers "
                "(NIC, balloon) after the first boot", [where])
        return res
    arch, ver = view.arch or "x86", view.version
    for path, info in staged:
        if not info.models(arch, ver):
            res.add("virtio.package-wrong-os", WARNING,
                    f"{windows_path(path)} has no models for Windows "
                    f"{ver[0]}.{ver[1]} {arch}: Windows ignores it", [windows_path(path)])
    for dev in wanted:
        base = dev.base_id  # PCI\VEN_v&DEV_d
        if not any(info.claims(arch, ver, base) for _p, info in staged):
            res.add("virtio.device-not-staged", WARNING,
                    f"no staged package claims {dev.description} ({base}) for this Windows",
                    [where])
    dp = _device_path(view)
    ev = [f"HKLM\\SOFTWARE\\{DEVICEPATH_KEY}\\DevicePath"]
    if dp is None or DEVICEPATH_ENTRY.lower() not in dp.lower().split(";"):
        res.add("virtio.devicepath", WARNING,
                f"DevicePath does not list {DEVICEPATH_ENTRY}: PnP will not look there", ev)
    return res


def _driver_for(view: CheckView, dev: devices.Device) -> str | None:
    """Where Windows would find a driver for the NIC, or None."""
    if view.driver_database:
        m = storage.match_driver_database(view.system, dev.ids)
        if m is not None:
            return f"DriverDatabase\\DeviceIds\\{m[0]}"
    base = dev.base_id
    arch, ver = view.arch or "x86", view.version
    for folder in (_stage_dir(view), view.join_root("inf")):
        for path, info in _infs(view, folder, needle=base.split("\\", 1)[1]):
            if info.claims(arch, ver, base):
                return windows_path(path)
    return None


def check_network(view: CheckView, nic: str, dev: devices.Device) -> CheckResult:
    res = CheckResult("network", f"Network ({nic} NIC)")
    cs = view.control_sets[0]
    for n in nics_mod.physical_nics(view.system, cs):
        if n.dhcp or not n.ip_addresses:
            continue
        res.add("network.stale-static-ip", WARNING,
                f"the physical NIC {n.description or n.guid} still holds static "
                f"{', '.join(n.ip_addresses)}: the new NIC cannot take that address "
                "(\"already assigned to another adapter\")",
                [f"{cs}\\Services\\Tcpip\\Parameters\\Interfaces\\{n.guid}"])
    if view.has_files:
        found = _driver_for(view, dev)
        if found is None:
            res.add("network.no-driver", WARNING,
                    f"no driver for {dev.description}: the guest will boot without network",
                    [windows_path(_stage_dir(view)),
                     windows_path(view.join_root("inf"))])
    return res
