"""libvirt domain XML for a converted Windows guest.

The XML is the only thing a user needs besides the disk image(s): ``virsh define`` it and
start the guest.  Every choice below is driven by what the *guest* can use without a
driver installed after the first boot, because a converted physical machine must boot
and reach the network with the drivers it already has (plus those p2vimage staged):

* **machine** ``pc`` (i440fx) for NT 5.x: its PIIX3 IDE controller is matched by the
  in-box ``intelide``/``pciide`` drivers (KB314082), and its conventional PCI slots
  expose virtio devices with the *legacy* IDs (1AF4:1000/1001/1002), the only ones the
  XP/2003 virtio drivers know.  ``q35`` is fine from NT 6.1 on; there, PCIe slots expose
  the modern IDs only, so guests whose drivers know only legacy IDs get
  ``virtio-transitional`` models (libvirt then places them on conventional PCI).
  q35 has no IDE at all, so IDE disks become SATA (AHCI) there, with a warning when the
  guest is NT 5.x, which has no in-box AHCI driver.
* **clock** ``localtime``: Windows keeps the hardware clock in local time unless
  ``RealTimeIsUniversal`` is set, so a UTC RTC would shift the guest's clock by the time
  zone offset at every boot.
* **timers**: Windows counts time from timer interrupts, and a vCPU that is not
  scheduled misses them.  ``rtc tickpolicy='catchup'`` re-injects missed RTC ticks so the
  clock does not fall behind; ``pit tickpolicy='delay'`` delivers late PIT ticks late
  instead of bunching or dropping them (HALs that use the PIT as their tick would
  otherwise drift or run ahead); ``hpet present='no'`` because Windows prefers an HPET
  when it sees one and QEMU's emulated HPET is slow and drifts under load.  These are the
  settings libosinfo/virt-manager use for every Windows guest.
* **memballoon** ``none`` unless a balloon driver was staged: libvirt adds a virtio
  balloon by default, which without a driver is an "unknown PCI device" (and a Found New
  Hardware wizard on XP/2003) and cannot be used by the host anyway.
* **USB tablet** on a UHCI controller: an absolute pointer keeps the mouse in step with
  VNC/SPICE without grabbing; UHCI (PIIX3 on pc, the ICH9 companions on q35) has an
  in-box driver on every Windows since 2000, unlike xHCI (Windows 8+).
* **VGA** (QEMU's standard VGA with VBE): every Windows drives it with its in-box
  VGA/VBE driver; QXL or virtio-gpu need drivers NT 5.x does not have.

Everything is checked by libvirt itself: ``validate_with_libvirt`` runs the RNG schema
validator (``virt-xml-validate``) and ``check_with_libvirt_parser`` runs libvirt's real
domain parser through the ``test:///default`` driver (no daemon, nothing persists).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
import uuid as uuidlib
from decimal import Decimal, InvalidOperation
from pathlib import Path

from lxml import etree

from . import choices
from .deps import require_program
from .errors import ConversionError, UsageError
from .options import parse_mac
from .targets.vmspec import DiskSpec, DomainSpec

__all__ = [
    "DiskSpec",
    "DomainSpec",
    "sanitise_name",
    "build_domain",
    "to_xml_bytes",
    "parse_network",
    "parse_memory",
    "parse_mac",
    "validate_with_libvirt",
    "check_with_libvirt_parser",
    "NAME_MAX",
]

DISK_BUSES = ("virtio", "ide", "sata", "scsi")
DISK_FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vpc", "vhdx")
ARCHES = {"x86": "i686", "x64": "x86_64"}
FIRMWARES = ("bios", "uefi")
NIC_MODELS = ("virtio", "e1000", "rtl8139")
CPU_MODES = ("host-passthrough", "host-model")

#: Longest domain name :func:`sanitise_name` returns (see there for why).
NAME_MAX = 64
_NAME_FALLBACK = "p2v-windows"

# Target device prefixes: libvirt derives the controller address from the name, and
# SATA and SCSI disks share the "sd" namespace (a duplicated target is refused).
_PREFIX = {"virtio": "vd", "ide": "hd", "sata": "sd", "scsi": "sd"}
_IDE_SLOTS = 4  # one IDE controller: 2 channels x master/slave (hda..hdd)

# Entry names libvirt's schema (domaincommon.rng, sysinfo-*-name) allows per section.
_SMBIOS_KEYS: dict[str, tuple[str, ...]] = {
    "bios": ("vendor", "version", "date", "release"),
    "system": ("manufacturer", "product", "version", "serial", "uuid", "sku", "family"),
    "baseBoard": ("manufacturer", "product", "version", "serial", "asset", "location"),
    "chassis": ("manufacturer", "version", "serial", "asset", "sku"),
}
# libvirt refuses any other BIOS date shape ("Invalid BIOS 'date' format").
_BIOS_DATE = re.compile(r"^(0[1-9]|1[0-2])/(0[1-9]|[12][0-9]|3[01])/(\d{2}|\d{4})$")
_RELEASE = re.compile(r"^\d{1,3}\.\d{1,3}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# --- names and option parsing ----------------------------------------------------------


def sanitise_name(name: str) -> str:
    """Return a libvirt-safe domain name: ASCII letters, digits and ``-_.``; 1..64 chars.

    libvirt itself only refuses ``/``, but the name ends up in many places that are
    stricter: file names (``/etc/libvirt/qemu/NAME.xml``, ``/var/log/libvirt/qemu/NAME.log``,
    NVRAM files), the systemd-machined scope and machine name (hostname-like, at most 64
    characters), AppArmor/SELinux labels, and the shell command lines users type.  So:
    accented letters are reduced to their ASCII base (``Séville`` -> ``Seville``), every
    other run of unsafe characters becomes one ``-``, the name must start and end with a
    letter or digit (a leading ``-`` reads as an option to ``virsh``, a leading ``.`` hides
    the file), it is cut to 64 characters, and an empty result becomes ``p2v-windows``.
    The function is idempotent.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_name)
    cleaned = cleaned.strip("-._")[:NAME_MAX].rstrip("-._")
    return cleaned or _NAME_FALLBACK


def parse_network(text: str) -> tuple[str, str]:
    """Parse ``network=NAME`` or ``bridge=NAME`` into ``("network"|"bridge", NAME)``.

    A bridge name is a Linux interface name (at most 15 characters, no ``/``, ``:`` or
    white space, not ``.``/``..``); a libvirt network name may not contain ``/``.
    """
    kind, sep, value = text.strip().partition("=")
    kind = kind.strip().lower()
    value = value.strip()
    if not sep or kind not in ("network", "bridge"):
        raise UsageError(
            f"bad network {text!r}: expected network=NAME (a libvirt network) "
            "or bridge=NAME (a host bridge)"
        )
    if not value:
        raise UsageError(f"bad network {text!r}: the {kind} name is empty")
    if _CONTROL.search(value) or any(ch.isspace() for ch in value) or "/" in value:
        raise UsageError(f"bad network {text!r}: the {kind} name may not contain '/' or spaces")
    if kind == "bridge" and (len(value) > 15 or ":" in value or value in (".", "..")):
        raise UsageError(
            f"bad network {text!r}: a bridge name is a Linux interface name "
            "(at most 15 characters, no ':')"
        )
    return kind, value


_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_MEMORY_UNITS = {
    "": 1,
    "m": 1,
    "mi": 1,
    "mib": 1,
    "g": 1024,
    "gi": 1024,
    "gib": 1024,
    "t": 1024 * 1024,
    "ti": 1024 * 1024,
    "tib": 1024 * 1024,
}


def parse_memory(text: str) -> int:
    """Parse a memory size into MiB: ``2048`` (MiB), ``512M``, ``2G``, ``1.5G``, ``4GiB``.

    Units are binary (M/MiB, G/GiB, T/TiB, case-insensitive); a bare number is MiB.
    ``MB``/``GB`` are refused rather than guessed: libvirt reads them as powers of 1000,
    most people mean powers of 1024.  The result must be a whole, non-zero number of MiB.
    """
    m = _MEMORY.match(text)
    if m is None:
        raise UsageError(f"bad memory size {text!r}: expected e.g. 2048, 512M, 2G or 4GiB")
    number, unit = m.group(1), m.group(2).lower()
    if unit in ("mb", "gb", "tb"):
        raise UsageError(
            f"ambiguous memory size {text!r}: use binary units M/MiB or G/GiB "
            f"(e.g. {number}{unit[0].upper()})"
        )
    if unit not in _MEMORY_UNITS:
        raise UsageError(f"bad memory unit in {text!r}: use M/MiB or G/GiB (or a number of MiB)")
    try:
        mib = Decimal(number) * _MEMORY_UNITS[unit]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise UsageError(f"bad memory size {text!r}") from exc
    if mib != mib.to_integral_value():
        raise UsageError(f"bad memory size {text!r}: not a whole number of MiB")
    if mib <= 0:
        raise UsageError(f"bad memory size {text!r}: must be more than zero")
    return int(mib)




# --- building the domain ---------------------------------------------------------------


def _dev_name(prefix: str, index: int) -> str:
    """libvirt's disk naming: 0 -> a, 25 -> z, 26 -> aa (as in virDiskNameToIndex)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str):
    elem = etree.SubElement(parent, tag, attrs)
    if text is not None:
        elem.text = text
    return elem


def _check_choice(what: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"bad {what} {value!r}: expected one of {', '.join(choices)}")


def check_smbios(smbios: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Public form of the SMBIOS check: raise UsageError before any work is done."""
    return _check_smbios(smbios)


def _check_smbios(smbios: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Validate SMBIOS strings against what libvirt accepts; return the non-empty ones."""
    canonical = {k.lower(): k for k in _SMBIOS_KEYS}
    out: dict[str, dict[str, str]] = {}
    for section, entries in smbios.items():
        sect = canonical.get(section.lower())
        if sect is None:
            raise UsageError(
                f"bad SMBIOS section {section!r}: expected one of {', '.join(_SMBIOS_KEYS)}"
            )
        for key, raw in entries.items():
            if key not in _SMBIOS_KEYS[sect]:
                raise UsageError(
                    f"bad SMBIOS {sect} entry {key!r}: expected one of "
                    f"{', '.join(_SMBIOS_KEYS[sect])}"
                )
            value = str(raw).strip()
            if not value:
                continue  # nothing to copy (unset DMI strings are common)
            if _CONTROL.search(value):
                raise UsageError(f"bad SMBIOS {sect} {key}: contains control characters")
            if sect == "bios" and key == "date" and not _BIOS_DATE.match(value):
                raise UsageError(
                    f"bad SMBIOS bios date {value!r}: libvirt wants mm/dd/yy or mm/dd/yyyy"
                )
            if sect == "bios" and key == "release" and not _RELEASE.match(value):
                raise UsageError(f"bad SMBIOS bios release {value!r}: expected major.minor")
            if sect == "system" and key == "uuid":
                try:
                    value = str(uuidlib.UUID(value))
                except ValueError as exc:
                    raise UsageError(f"bad SMBIOS system uuid {value!r}") from exc
            out.setdefault(sect, {})[key] = value
    return out


def _disk(
    devices: etree._Element,
    *,
    device: str,
    path: str,
    fmt: str,
    dev: str,
    bus: str,
    model: str | None = None,
    boot: bool = False,
) -> None:
    attrs = {"type": "file", "device": device}
    source_attr = "file"
    if path.startswith("/dev/") and device == "disk":
        attrs["type"], source_attr = "block", "dev"
    if model:
        attrs["model"] = model
    disk = _sub(devices, "disk", **attrs)
    _sub(disk, "driver", name="qemu", type=fmt)
    _sub(disk, "source", **{source_attr: path})
    _sub(disk, "target", dev=dev, bus=bus)
    if device == "cdrom":
        _sub(disk, "readonly")
    if boot:
        # Per-device boot order, never <os><boot dev=.../>: libvirt refuses both together.
        _sub(disk, "boot", order="1")


def build_domain(spec: DomainSpec) -> tuple[etree._Element, list[str]]:
    """Build the ``<domain type='kvm'>`` element for ``spec``; return it and warnings.

    Warnings are one-line messages for the user (the XML is still usable):
    the name was changed, a uniprocessor HAL got 1 vCPU instead of N, IDE moved to SATA
    on q35, and combinations that define fine but may not run as hoped.
    Raises UsageError for a value that cannot be right and ConversionError when the
    requested devices do not fit the machine (more than four IDE devices).

    Why some of the less obvious elements:

    * vCPUs are all cores of **one socket**: client and Standard editions of Windows
      license a number of *sockets* (XP Home 1, XP Pro/7 Pro 2, 2003 Standard 4) and
      QEMU's older default topology makes every vCPU a socket, so a 4-vCPU XP Home guest
      would use one.  (Windows 2000 counts cores as processors: its limits still apply.)
    * **pae** is set for 32-bit guests: XP SP2+/2003 SP1+ boot the PAE kernel whenever the
      CPU offers NX, and PAE is needed for memory above 4 GiB on the editions that allow it.
    * **cpu host-passthrough** by default: the installation was made on a real CPU; the
      generic qemu64 model lacks instructions that later 64-bit Windows checks for.
    * **pm**: S3/S4 inside a converted guest resume unreliably under QEMU; they are off.
    * **SMBIOS strings** (``<sysinfo type='smbios'>`` + ``<smbios mode='sysinfo'/>``) let
      software that reads the manufacturer/product/serial (OEM tools, asset inventory,
      some OEM licensing checks) see the physical machine's values.  Windows' own OEM
      activation of NT 6.x (SLP 2.x) also needs the ACPI SLIC table, which is not added.
      A ``system`` ``uuid`` becomes the domain's UUID (libvirt requires them equal).
    """
    warnings: list[str] = []

    # -- validate -------------------------------------------------------------------
    _check_choice("architecture", spec.arch, tuple(ARCHES))
    _check_choice("machine type", spec.machine, choices.MACHINES)
    _check_choice("firmware", spec.firmware, FIRMWARES)
    if spec.nic_model is not None:
        _check_choice("NIC model", spec.nic_model, NIC_MODELS)
    if spec.cpu_mode is not None:
        _check_choice("CPU mode", spec.cpu_mode, CPU_MODES)
    if isinstance(spec.memory_mib, bool) or not isinstance(spec.memory_mib, int):
        raise UsageError(f"bad memory {spec.memory_mib!r}: expected a whole number of MiB")
    if spec.memory_mib <= 0:
        raise UsageError(f"bad memory {spec.memory_mib} MiB: must be more than zero")
    if isinstance(spec.vcpus, bool) or not isinstance(spec.vcpus, int) or spec.vcpus < 1:
        raise UsageError(f"bad vCPU count {spec.vcpus!r}: must be at least 1")
    if not spec.disks:
        raise UsageError("a domain needs at least one disk (the system disk)")
    for disk in spec.disks:
        if not disk.path:
            raise UsageError("a disk has an empty path")
        _check_choice("disk bus", disk.bus, DISK_BUSES)
        _check_choice("disk format", disk.format, DISK_FORMATS)
    net_kind, net_name = parse_network(spec.network)
    mac = parse_mac(spec.mac) if spec.mac else None
    smbios = _check_smbios(spec.smbios) if spec.smbios else {}

    name = sanitise_name(spec.name)
    if name != spec.name:
        warnings.append(f"domain name {spec.name!r} changed to {name!r} (libvirt-safe)")

    vcpus = spec.vcpus
    if spec.uniprocessor_hal and vcpus > 1:
        warnings.append(f"uniprocessor HAL: 1 vCPU instead of {vcpus}")
        vcpus = 1

    q35 = spec.machine == "q35"
    # On pc a plain "virtio" device is already transitional (conventional PCI); only on
    # q35's PCIe slots must legacy-only drivers ask for the transitional model.
    transitional = spec.virtio_transitional and q35
    virtio_model = "virtio-transitional" if transitional else "virtio"

    if spec.arch == "x86" and spec.memory_mib > 4096:
        warnings.append(
            f"{spec.memory_mib} MiB for a 32-bit guest: most 32-bit Windows editions use at "
            "most 4 GiB"
        )
    if spec.firmware == "uefi" and spec.arch == "x86":
        warnings.append(
            "UEFI for a 32-bit guest needs an IA32 OVMF build (Debian package ovmf-ia32)"
        )

    # -- domain -----------------------------------------------------------------------
    dom = etree.Element("domain", type="kvm")
    _sub(dom, "name", name)
    if "uuid" in smbios.get("system", {}):
        _sub(dom, "uuid", smbios["system"]["uuid"])
    _sub(dom, "memory", str(spec.memory_mib), unit="MiB")
    _sub(dom, "currentMemory", str(spec.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(vcpus), placement="static")

    if smbios:
        sysinfo = _sub(dom, "sysinfo", type="smbios")
        for section in _SMBIOS_KEYS:
            if section in smbios:
                sect = _sub(sysinfo, section)
                for key, value in smbios[section].items():
                    _sub(sect, "entry", value, name=key)

    os_attrs = {"firmware": "efi"} if spec.firmware == "uefi" else {}
    os_elem = _sub(dom, "os", **os_attrs)
    _sub(os_elem, "type", "hvm", arch=ARCHES[spec.arch], machine=spec.machine)
    if smbios:
        _sub(os_elem, "smbios", mode="sysinfo")

    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if spec.arch == "x86":
        _sub(features, "pae")

    cpu = _sub(dom, "cpu", mode=spec.cpu_mode) if spec.cpu_mode else _sub(dom, "cpu")
    _sub(cpu, "topology", sockets="1", cores=str(vcpus), threads="1")

    clock = _sub(dom, "clock", offset="localtime" if spec.localtime else "utc")
    _sub(clock, "timer", name="rtc", tickpolicy="catchup")
    _sub(clock, "timer", name="pit", tickpolicy="delay")
    _sub(clock, "timer", name="hpet", present="no")

    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")

    pm = _sub(dom, "pm")
    _sub(pm, "suspend-to-mem", enabled="no")
    _sub(pm, "suspend-to-disk", enabled="no")

    # -- devices ----------------------------------------------------------------------
    devices = _sub(dom, "devices")
    used: dict[str, int] = {}  # target prefix -> next index

    def next_dev(bus: str) -> str:
        prefix = _PREFIX[bus]
        index = used.get(prefix, 0)
        if bus == "ide" and index >= _IDE_SLOTS:
            raise ConversionError(
                "too many IDE devices: the IDE controller has 4 slots (hda..hdd); "
                "use another bus for data disks or drop the CD-ROM"
            )
        used[prefix] = index + 1
        return _dev_name(prefix, index)

    sata_for_legacy = False
    for i, disk in enumerate(spec.disks):
        bus = disk.bus
        if bus == "ide" and q35:
            warnings.append(f"q35 has no IDE: disk {disk.path} attached to SATA instead")
            bus = "sata"
        if bus == "sata" and spec.virtio_transitional:
            sata_for_legacy = True
        _disk(
            devices,
            device="disk",
            path=os.path.abspath(disk.path),
            fmt=disk.format,
            dev=next_dev(bus),
            bus=bus,
            model="virtio-transitional" if bus == "virtio" and transitional else None,
            boot=i == 0,
        )
    if spec.cdrom:
        cd_bus = "sata" if q35 else "ide"
        if cd_bus == "sata" and spec.virtio_transitional:
            sata_for_legacy = True
        _disk(
            devices,
            device="cdrom",
            path=os.path.abspath(spec.cdrom),
            fmt="raw",
            dev=next_dev(cd_bus),
            bus=cd_bus,
        )
    if sata_for_legacy:
        warnings.append(
            "SATA (AHCI) on a guest whose drivers know only legacy virtio IDs (NT 5.x): "
            "Windows XP/2003 have no in-box AHCI driver, those devices stay invisible"
        )

    if spec.virtio_scsi:
        # The SCSI controller's plain model is "virtio-scsi" ("virtio" is not a value there).
        scsi_model = "virtio-transitional" if transitional else "virtio-scsi"
        _sub(devices, "controller", type="scsi", index="0", model=scsi_model)

    # USB host controller with an in-box driver on every Windows (see module docstring).
    if q35:
        _sub(devices, "controller", type="usb", index="0", model="ich9-ehci1")
        for n, port in ((1, "0"), (2, "2"), (3, "4")):
            companion = _sub(devices, "controller", type="usb", index="0", model=f"ich9-uhci{n}")
            _sub(companion, "master", startport=port)
    else:
        _sub(devices, "controller", type="usb", index="0", model="piix3-uhci")

    if spec.nic_model is not None:
        iface = _sub(devices, "interface", type=net_kind)
        if mac:
            _sub(iface, "mac", address=mac)
        _sub(iface, "source", **{net_kind: net_name})
        _sub(iface, "model", type=virtio_model if spec.nic_model == "virtio" else spec.nic_model)

    _sub(devices, "input", type="tablet", bus="usb")
    _sub(devices, "graphics", type="vnc", port="-1", autoport="yes")
    video = _sub(devices, "video")
    _sub(video, "model", type="vga", heads="1", primary="yes")
    if spec.balloon:
        _sub(devices, "memballoon", model=virtio_model)
    else:
        _sub(devices, "memballoon", model="none")
    return dom, warnings


def to_xml_bytes(elem: etree._Element) -> bytes:
    """Serialise ``elem`` as pretty-printed UTF-8 with an XML declaration."""
    return etree.tostring(elem, pretty_print=True, xml_declaration=True, encoding="UTF-8")


# --- checking with libvirt ---------------------------------------------------------------


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def validate_with_libvirt(xml_path: str | os.PathLike[str]) -> None:
    """Check ``xml_path`` against libvirt's RNG schema with ``virt-xml-validate``.

    Raises ConversionError carrying the validator's message when the document is not a
    valid domain, MissingDependencyError when ``virt-xml-validate`` is not installed.
    The schema catches shapes libvirt's parser lets through (a relative disk path, say).
    """
    program = require_program("virt-xml-validate")
    proc = subprocess.run(
        [program, os.fspath(xml_path), "domain"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        detail = _one_line(proc.stderr + "\n" + proc.stdout) or f"exit {proc.returncode}"
        raise ConversionError(f"libvirt schema rejects {os.fspath(xml_path)}: {detail}")


def _virsh_quote(word: str) -> str:
    """Quote one argument for virsh's own command parser (not a shell)."""
    if "'" not in word:
        return f"'{word}'"
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_with_libvirt_parser(
    xml_path: str | os.PathLike[str], uri: str = "test:///default"
) -> str:
    """Define ``xml_path`` with libvirt's real domain parser and return libvirt's dumpxml.

    The ``test:///default`` driver needs no daemon and keeps nothing: every ``virsh``
    invocation starts from a fresh in-memory host, so define and dumpxml must run in
    one invocation.  It catches what the schema cannot (a per-device ``<boot>`` together
    with ``<os><boot>``, duplicated targets, a bad BIOS date, a multicast MAC) but knows
    nothing about QEMU machine types (it accepts IDE on q35): use both checks.
    Raises ConversionError with virsh's message on failure.
    """
    program = require_program("virsh")
    try:
        tree = etree.parse(os.fspath(xml_path))
    except (OSError, etree.XMLSyntaxError) as exc:
        raise ConversionError(f"cannot read domain XML {os.fspath(xml_path)}: {exc}") from exc
    name = tree.findtext("name") or ""
    with tempfile.TemporaryDirectory(prefix="p2vimage-virsh-") as tmp:
        # A private copy with a plain name keeps the virsh command line trivially quoted.
        copy = Path(tmp) / "domain.xml"
        shutil.copyfile(xml_path, copy)
        script = f"define {_virsh_quote(str(copy))}; dumpxml {_virsh_quote(name)}"
        proc = subprocess.run(
            [program, "-q", "-c", uri, script],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if proc.returncode != 0:
        detail = _one_line(proc.stderr) or f"exit {proc.returncode}"
        raise ConversionError(f"libvirt refuses {os.fspath(xml_path)}: {detail}")
    return proc.stdout
