"""Register a boot driver package in ``DriverDatabase`` (Windows 8 / 2012 and later).

From Windows 8 on, the kernel no longer reads the CriticalDeviceDatabase: a device found
at boot gets its driver from ``SYSTEM\\DriverDatabase``, which ``pnputil``/setup fill when a
package is imported into the driver store.  The registration written here is modelled on
the real third-party entries of the Windows 10 SYSTEM hive in ``../shared/realdata``
(``oem2.inf`` -> ``dellrbtn.inf_amd64_f97e65ab5ad63c31``):

* ``DriverInfFiles\\oemN.inf``: default = [package], ``Active`` = package, ``Configurations``;
* ``DriverPackages\\<package>``: default = ``oemN.inf``, ``Version`` (48 bytes: flags, class
  GUID, driver date FILETIME, driver version), ``Provider``, ``InfName``, ``OemPath``,
  ``ImportDate``, ``SignerScore``, ``StatusFlags``; ``Configurations\\<install section>``
  (``Service``, ``ConfigScope`` 7, ``ConfigFlags`` 0), ``Descriptors\\PCI\\<id>``
  (``Configuration``, ``Manufacturer``, ``Description``) and ``Strings``;
* ``DeviceIds\\PCI\\<id>``: ``oemN.inf`` = 01 ff 00 00 (REG_BINARY, as in the real hive);
* ``OemInfMap``: the bitmap of used ``oemN`` numbers (most significant bit first) gets the
  new number; the package files go to ``System32\\DriverStore\\FileRepository\\<package>`` and
  the INF is also copied to ``%SystemRoot%\\INF\\oemN.inf``, so ``pnputil /e`` lists it.

The package name is well formed — ``<inf>.inf_<arch>_<16 hex digits>`` — because a
malformed one (virt-v2v wrote one) breaks ``pnputil /e`` and in-place upgrades.  The hash
part is derived from the INF's bytes, and a second run finds and reuses the registration,
so re-running changes nothing.
"""

from __future__ import annotations

import datetime
import hashlib
import posixpath
import re
import struct
import uuid

from ..formats.regf import REG_BINARY, REG_DWORD, REG_MULTI_SZ, REG_SZ
from ..guest.registry import Hive
from ..guest.view import GuestView
from ..plan import FileWrite, Plan
from .select import Package

STEP = "virtio-driverdatabase"
ROOT = "DriverDatabase"
PACKAGE_NAME = re.compile(r"^[a-z0-9_.-]+\.inf_(x86|amd64|arm64)_[0-9a-f]{16}$")
_ARCH_DIR = {"x86": "x86", "x64": "amd64", "arm64": "arm64"}
_DEVICE_ID_VALUE = bytes.fromhex("01ff0000")
_SIGNER_SCORE_OEM = 0x0D000005  # as the real third-party package in the Windows 10 hive
_STATUS_FLAGS = 0x12


def package_name(inf_name: str, arch: str, inf_bytes: bytes) -> str:
    stem = inf_name.lower()
    return f"{stem}_{_ARCH_DIR[arch]}_{hashlib.sha256(inf_bytes).hexdigest()[:16]}"


def _filetime(date: str | None) -> int:
    """``MM/DD/YYYY`` -> FILETIME (100 ns since 1601); 0 when unparsable."""
    try:
        month, day, year = (int(x) for x in (date or "").split("/"))
        when = datetime.datetime(year, month, day, tzinfo=datetime.UTC)
    except (ValueError, TypeError):
        return 0
    epoch = datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)
    return int((when - epoch).total_seconds()) * 10_000_000


def version_blob(
    class_guid: str | None, date: str | None, version: tuple[int, ...] | None
) -> bytes:
    """The 48-byte ``DriverPackages\\<pkg>\\Version`` value."""
    guid = uuid.UUID(class_guid).bytes_le if class_guid else bytes(16)
    v = (list(version or ()) + [0, 0, 0, 0])[:4]
    packed = (v[0] << 48) | (v[1] << 32) | (v[2] << 16) | v[3]
    return (bytes.fromhex("00ff0900") + bytes(4) + guid + struct.pack("<Q", _filetime(date))
            + struct.pack("<Q", packed) + bytes(8))


def _used_oem_numbers(system: Hive) -> tuple[set[int], bytes]:
    used: set[int] = set()
    files = system.node(f"{ROOT}\\DriverInfFiles")
    if files is not None:
        for name in system.child_names(files):
            m = re.fullmatch(r"oem(\d+)\.inf", name, re.I)
            if m:
                used.add(int(m.group(1)))
    raw = system.raw(system.node(ROOT), "OemInfMap")
    bitmap = raw.data if raw is not None else b""
    for i, byte in enumerate(bitmap):
        for bit in range(8):
            if byte & (0x80 >> bit):
                used.add(i * 8 + bit)
    return used, bitmap


def _existing(system: Hive, inf_name: str, arch: str) -> tuple[str, str] | None:
    """(oemN.inf, package) of an earlier registration of this INF (a re-run)."""
    files = system.node(f"{ROOT}\\DriverInfFiles")
    if files is None:
        return None
    prefix = f"{inf_name.lower()}_{_ARCH_DIR[arch]}_"
    for name, node in system.iter_children(files):
        active = system.get_str(node, "Active") or ""
        if re.fullmatch(r"oem\d+\.inf", name, re.I) and active.lower().startswith(prefix):
            return name, active
    return None


def register(plan: Plan, guest: GuestView, pkg: Package) -> str:
    """Plan the registration and the driver-store files; return the ``oemN.inf`` name."""
    assert plan.context is not None and plan.context.media is not None
    media, workdir = plan.context.media, plan.context.workdir
    system, arch, systemroot = guest.system, guest.arch or "x86", guest.system_root or "/Windows"
    inf_name = pkg.inf_path.rsplit("/", 1)[-1].lower()
    inf_bytes = media.read(pkg.inf_path)
    found = _existing(system, inf_name, arch)
    if found:
        oem, name = found
    else:
        used, _ = _used_oem_numbers(system)
        n = next(i for i in range(len(used) + 1) if i not in used)
        oem, name = f"oem{n}.inf", package_name(inf_name, arch, inf_bytes)
    assert PACKAGE_NAME.match(name.lower()), name
    number = int(oem[3:-4])
    _used, bitmap = _used_oem_numbers(system)
    blob = bytearray(bitmap)
    if len(blob) <= number // 8:
        blob += bytes(number // 8 + 1 - len(blob))
    blob[number // 8] |= 0x80 >> (number % 8)

    info = pkg.inf
    install = pkg.model.install
    service = pkg.service.name if pkg.service else ""
    date, version = info.driver_ver
    why = "Windows 8+ match boot devices through DriverDatabase, not the CDDB"

    def put(key: str, vname: str, vtype: int, value: object) -> None:
        plan.set_value(STEP, "SYSTEM", None, f"{ROOT}\\{key}" if key else ROOT, vname, vtype,
                       value, why)

    put("", "OemInfMap", REG_BINARY, bytes(blob))
    put(f"DriverInfFiles\\{oem}", "", REG_MULTI_SZ, [name])
    put(f"DriverInfFiles\\{oem}", "Active", REG_SZ, name)
    put(f"DriverInfFiles\\{oem}", "Configurations", REG_MULTI_SZ, [install])
    pk = f"DriverPackages\\{name}"
    put(pk, "", REG_SZ, oem)
    put(pk, "Version", REG_BINARY, version_blob(info.class_guid, date, version))
    put(pk, "Provider", REG_SZ, info.provider or "")
    put(pk, "InfName", REG_SZ, inf_name)
    put(pk, "OemPath", REG_SZ, "C:\\Windows\\Drivers\\VirtIO")
    put(pk, "ImportDate", REG_BINARY, struct.pack("<Q", _filetime(date)))
    put(pk, "SignerScore", REG_DWORD, _SIGNER_SCORE_OEM)
    put(pk, "StatusFlags", REG_DWORD, _STATUS_FLAGS)
    put(f"{pk}\\Configurations\\{install}", "Service", REG_SZ, service)
    put(f"{pk}\\Configurations\\{install}", "ConfigScope", REG_DWORD, 7)
    put(f"{pk}\\Configurations\\{install}", "ConfigFlags", REG_DWORD, 0)
    models = [m for m in info.models(arch, (10, 0)) if m.install.lower() == install.lower()]
    ids = [i for m in models for i in m.ids if i.startswith("PCI\\")] or list(pkg.model.ids)
    strings: dict[str, str] = {}
    for m in models or [pkg.model]:
        for dev_id in m.ids:
            if not dev_id.startswith("PCI\\"):
                continue
            put(f"{pk}\\Descriptors\\{dev_id}", "Configuration", REG_SZ, install)
            put(f"{pk}\\Descriptors\\{dev_id}", "Manufacturer", REG_SZ, "%vendor%")
            put(f"{pk}\\Descriptors\\{dev_id}", "Description", REG_SZ, "%devicedesc%")
            strings["devicedesc"] = m.description
    strings["vendor"] = info.provider or ""
    for k, v in strings.items():
        put(f"{pk}\\Strings", k, REG_SZ, v)
    for dev_id in dict.fromkeys(ids):
        put(f"DeviceIds\\{dev_id}", oem, REG_BINARY, _DEVICE_ID_VALUE)

    # The files: the package in the driver store, and the oemN.inf copy pnputil lists.
    store = posixpath.join(systemroot, "System32", "DriverStore", "FileRepository", name)
    folder = pkg.folder
    for rel in pkg.files:
        base = rel.rsplit("/", 1)[-1]
        if not base.lower().endswith((".inf", ".sys", ".cat")):
            continue
        data = media.read(rel)
        local = workdir / "driverstore" / name / base
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        plan.files.append(FileWrite(
            step=STEP, guest_path=posixpath.join(store, base.lower()), action="write",
            origin=f"{media.path}:{rel}", version=pkg.sys_version if base.lower().endswith(
                ".sys") else None, machine=arch if base.lower().endswith(".sys") else None,
            sha256=hashlib.sha256(data).hexdigest(), size=len(data),
            reason=f"driver store copy of {folder} (the package DriverDatabase names)",
            local=str(local),
        ))
    local_inf = workdir / "driverstore" / oem
    local_inf.write_bytes(inf_bytes)
    plan.files.append(FileWrite(
        step=STEP, guest_path=posixpath.join(systemroot, "INF", oem), action="write",
        origin=f"{media.path}:{pkg.inf_path}", version=None, machine=None,
        sha256=hashlib.sha256(inf_bytes).hexdigest(), size=len(inf_bytes),
        reason="the oemN.inf copy that pnputil /e enumerates", local=str(local_inf),
    ))
    return oem
