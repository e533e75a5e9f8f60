"""Proxmox VE output: the VM config (``/etc/pve/qemu-server/VMID.conf``) and a ``qm`` script.

A PVE VM is one ``key: value`` file whose keys are the parameters of PVE's VM-create API
call, so one dict serves both renderings: :meth:`ProxmoxVM.config_text` (the file, for
review or to place by hand) and :meth:`ProxmoxVM.qm_script` (``qm create`` with every key,
``qm importdisk`` of each image into the storage, ``qm set`` to attach what was imported).

The device choices are the :class:`~.vmspec.DomainSpec`'s, the same the libvirt XML
renders, in PVE's words:

* **ostype** from the Windows version, as PVE's own schema describes each value:
  ``w2k`` 2000, ``wxp`` XP, ``w2k3`` 2003, ``wvista`` Vista, ``w2k8`` 2008, ``win7`` 7,
  ``win8`` 8/2012/2012 R2, ``win10`` 10/2016/2019, ``win11`` 11/2022/2025.  2008 R2 is NT
  6.1, Windows 7's server: ``win7``, as PVE's GUI lists it ("7/2008r2").  10, 11 and
  Server 2016..2025 all say 10.0: the build tells them apart.  ostype is more than a label:
  PVE derives the Hyper-V enlightenments and the HPET/PIT settings of a Windows guest from
  it, and the ones for ``win7`` and later need NT 6.1.
* **machine** ``pc`` or ``q35``; **bios** ``seabios`` or ``ovmf``, the latter with an
  ``efidisk0`` for the UEFI variables (the 4 MiB OVMF, no pre-enrolled Secure Boot keys:
  a converted machine's boot chain need not be signed).
* **disks** on the chosen bus: ``virtioN`` (virtio-blk), ``scsiN`` on a ``virtio-scsi-pci``
  controller (``scsihw``), ``sataN``, ``ideN``; IDE on q35 becomes SATA as in the libvirt
  XML.  The system disk is the only boot device (``boot: order=``).
* **net0**: the NIC model and the chosen MAC (else PVE makes one up) on a bridge: the
  spec's ``bridge=NAME``, else ``vmbr0``.
* **cores**/**sockets**: every vCPU a core of one socket (client and Standard editions of
  Windows license sockets); **memory** in MiB; **balloon** ``0`` unless a balloon driver
  was staged (PVE adds a virtio balloon by default, an unknown device without its driver).
* **localtime** ``1`` unless the guest keeps its RTC in UTC; **tablet** ``1`` (absolute
  USB pointer); **agent** as asked (p2vimage installs no guest agent); **vga** ``std``;
  **cpu** ``host`` for host-passthrough; **smbios1** from the spec's SMBIOS system strings.

Nothing here talks to a PVE node: the tests check every key and value against PVE's
published API schema.
"""

from __future__ import annotations

import base64
import re
import shlex
import unicodedata
import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConversionError, UsageError
from ..inspection.version import WindowsVersion
from ..options import parse_mac
from .vmspec import DomainSpec

__all__ = ["DEFAULT_BRIDGE", "ProxmoxVM", "proxmox_vm", "pve_ostype", "pve_name"]

DEFAULT_BRIDGE = "vmbr0"
VMID_MIN, VMID_MAX = 100, 999_999_999  # PVE's pve-vmid
_NAME_FALLBACK = "p2v-windows"
# Disk slots per bus, from the schema's key descriptions ("n is 0 to 15", ...).
_SLOTS = {"virtio": 16, "scsi": 31, "sata": 6, "ide": 4}
_NICS = ("virtio", "e1000", "rtl8139")
# pve-common's ID rules: storage IDs (parse_id), bridges (parse_bridge_id), volume IDs.
_STORAGE_ID = re.compile(r"[a-z][a-z0-9_.-]*[a-z0-9]", re.IGNORECASE)
_BRIDGE_ID = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_VOLUME_ID = re.compile(r"[a-z][a-z0-9_.-]*[a-z0-9]:[^,\s]+", re.IGNORECASE)
_SERVER_TYPES = ("ServerNT", "LanmanNT")
_SMBIOS1_KEYS = ("manufacturer", "product", "version", "serial", "sku", "family")


def pve_ostype(version: WindowsVersion) -> str:
    """PVE's ``ostype`` for a Windows version (``other`` when it is not known)."""
    major, minor = version.major, version.minor
    if major is None or minor is None:
        return "other"
    server = _is_server(version)
    if major == 5:
        # 5.2 is Server 2003 (R2, Home Server) and XP Professional x64 Edition.
        return {0: "w2k", 1: "wxp"}.get(minor, "w2k3" if server else "wxp")
    if major == 6:
        if minor == 0:
            return "w2k8" if server else "wvista"
        return {1: "win7", 2: "win8", 3: "win8"}.get(minor, "win10")
    if major >= 10:
        return "win11" if _is_win11_generation(version, server) else "win10"
    return "other"  # NT 4 and older


def _is_server(version: WindowsVersion) -> bool:
    if version.product_type:
        return version.product_type in _SERVER_TYPES
    return "server" in (version.product_name or "").lower()


def _is_win11_generation(version: WindowsVersion, server: bool) -> bool:
    """11, Server 2022 and 2025: first builds 22000 (client) and 20348 (server).

    The build decides: Windows 11's ProductName still says "Windows 10"."""
    if version.build is not None:
        return version.build >= (20348 if server else 22000)
    return bool(re.search(r"Windows 1[1-9]|Server 20(2[2-9]|[3-9]\d)", version.product_name or ""))


def pve_name(name: str) -> str:
    """A PVE VM name (its ``dns-name`` format): ASCII letters, digits and inner ``-``.

    Accents are reduced to their base letter, every other run of characters becomes one
    ``-`` (a NetBIOS name may hold ``_``, ``$`` or spaces), at most 63 characters (one DNS
    label), ``p2v-windows`` when nothing is left.  Idempotent.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", ascii_name).strip("-")[:63].rstrip("-")
    return cleaned or _NAME_FALLBACK


@dataclass
class ProxmoxVM:
    """A VM for a Proxmox VE node, rendered from a :class:`DomainSpec` by :func:`proxmox_vm`.

    ``config`` maps each config key to its value; the disk keys hold the volume names
    an LVM, LVM-thin, ZFS or Ceph storage gives imported disks (``STORAGE:vm-VMID-disk-N``;
    a directory storage names them ``STORAGE:VMID/vm-VMID-disk-N.FMT``, and the script
    reads the real name back).  ``disks`` pairs each disk key with its image (system disk
    first); ``warnings`` are one-line notes for the user.
    """

    vmid: int
    storage: str
    config: dict[str, str]
    disks: list[tuple[str, str]]
    warnings: list[str] = field(default_factory=list)

    def config_text(self) -> str:
        """The ``/etc/pve/qemu-server/VMID.conf`` text (keys sorted, as PVE writes them)."""
        return "".join(f"{key}: {self.config[key]}\n" for key in sorted(self.config))

    def qm_script(self, images: Sequence[str] | None = None) -> str:
        """A POSIX shell script to run as root on the PVE node: it creates the VM.

        ``images`` are the disk images' paths on the node (default: the spec's paths).
        Before anything is created it checks that the VMID is free (``qm status``), the
        storage exists and every image is a file, and exits 2 or 3 if not.  Then ``qm
        create`` with every key but the disks', ``qm importdisk`` of each image (PVE
        converts it into the storage's format) and ``qm set`` of the imported volume, read
        back as ``unused0`` from ``qm config``; then the EFI vars disk and the boot order.
        If a later step fails, the new VM is destroyed with the volumes it holds, so
        nothing is left behind (``qm create`` itself refuses a VMID in use anywhere in
        the cluster, so no one else's VM is touched).
        """
        paths = list(images) if images is not None else [path for _, path in self.disks]
        if len(paths) != len(self.disks):
            raise UsageError(f"{len(self.disks)} disk image(s) to import, {len(paths)} given")
        q, vmid, storage = shlex.quote, str(self.vmid), shlex.quote(self.storage)
        late = {key for key, _ in self.disks} | {"efidisk0", "boot"}
        create = [f"--{key} {q(value)}" for key, value in sorted(self.config.items())
                  if key not in late]
        lines = [
            "#!/bin/sh",
            f"# Creates Proxmox VE VM {vmid} ({self.config.get('name', '')}) from the disk"
            " image(s) p2vimage converted.",
            "# Run as root on the Proxmox VE node that holds the image(s).",
            "set -eu",
            "",
            f"if qm status {vmid} >/dev/null 2>&1; then",
            f"    echo 'p2vimage: VM {vmid} already exists: choose another VMID' >&2",
            "    exit 2",
            "fi",
            f"if ! pvesm status --storage {storage} >/dev/null 2>&1; then",
            f"    echo {q(f'p2vimage: no storage {self.storage} on this node')} >&2",
            "    exit 2",
            "fi",
        ]
        for path in paths:
            lines += [
                f"if [ ! -f {q(path)} ]; then",
                f"    echo {q(f'p2vimage: disk image {path} not found')} >&2",
                "    exit 3",
                "fi",
            ]
        lines += [
            "",
            f"qm create {vmid} \\\n    " + " \\\n    ".join(create),
            "",
            "cleanup() {",
            "    status=$?",
            '    if [ "$status" -ne 0 ]; then',
            f'        echo "p2vimage: failed (exit $status): destroying VM {vmid}" >&2',
            f"        qm destroy {vmid} --purge 1 >/dev/null 2>&1 || true",
            "    fi",
            "}",
            "trap cleanup EXIT",
            "trap 'exit 130' INT TERM",
            "",
            "import_disk() {  # KEY IMAGE",
            f'    qm importdisk {vmid} "$2" {storage}',
            f"    volume=$(qm config {vmid} | sed -n 's/^unused0: //p')",
            '    if [ -z "$volume" ]; then',
            '        echo "p2vimage: qm importdisk left no unused0 volume for $2" >&2',
            "        exit 4",
            "    fi",
            f'    qm set {vmid} "--$1" "$volume"',
            "}",
        ]
        lines += [f"import_disk {key} {q(path)}" for (key, _), path in zip(self.disks, paths,
                                                                         strict=True)]
        if "efidisk0" in self.config:
            # STORAGE:SIZE allocates a new volume (the size is ignored: PVE sizes EFI disks).
            lines.append(f"qm set {vmid} --efidisk0 {q(_efidisk(self.storage + ':1'))}")
        lines += [
            f"qm set {vmid} --boot {q(self.config['boot'])}",
            "",
            "trap - EXIT",
            f"echo 'p2vimage: VM {vmid} created; start it with: qm start {vmid}'",
        ]
        return "\n".join(lines) + "\n"


def _efidisk(volume: str) -> str:
    return f"{volume},efitype=4m,pre-enrolled-keys=0"


def proxmox_vm(
    spec: DomainSpec,
    version: WindowsVersion,
    *,
    vmid: int,
    storage: str,
    bridge: str | None = None,
    iso: str | None = None,
    agent: bool = False,
) -> ProxmoxVM:
    """Render ``spec`` (and the Windows ``version``, for ostype) as PVE VM ``vmid``.

    ``storage`` is the PVE storage the disks are imported into (``local-lvm``);
    ``bridge`` overrides the spec's network; ``iso`` is a PVE volume ID of an ISO already
    on the node (``local:iso/virtio-win.iso``), attached as a CD-ROM; ``agent`` enables
    the QEMU guest agent channel.  Raises UsageError for a value PVE would refuse and
    ConversionError when the disks do not fit the bus (as ``libvirt_xml`` does).
    """
    warnings: list[str] = []
    if isinstance(vmid, bool) or not isinstance(vmid, int) or not VMID_MIN <= vmid <= VMID_MAX:
        raise UsageError(f"bad VMID {vmid!r}: Proxmox VE uses {VMID_MIN}..{VMID_MAX}")
    if not _STORAGE_ID.fullmatch(storage or ""):
        raise UsageError(f"bad Proxmox VE storage ID {storage!r}: letters, digits, '-_.', "
                         "starting with a letter")
    if not spec.disks:
        raise UsageError("a VM needs at least one disk (the system disk)")
    if spec.machine not in ("pc", "q35") or spec.firmware not in ("bios", "uefi"):
        raise UsageError(f"bad machine/firmware {spec.machine}/{spec.firmware}: expected "
                         "pc or q35, bios or uefi")
    if spec.memory_mib < 16:
        raise UsageError(f"bad memory {spec.memory_mib} MiB: Proxmox VE needs at least 16")
    if spec.nic_model is not None and spec.nic_model not in _NICS:
        raise UsageError(f"bad NIC model {spec.nic_model!r}: expected one of {', '.join(_NICS)}")
    if iso is not None and not _VOLUME_ID.fullmatch(iso):
        raise UsageError(f"bad ISO volume {iso!r}: expected a PVE volume ID like "
                         "local:iso/virtio-win.iso")

    name = pve_name(spec.name)
    if name != spec.name:
        warnings.append(f"VM name {spec.name!r} changed to {name!r} (Proxmox VE DNS name)")
    ostype = pve_ostype(version)
    if ostype == "other":
        warnings.append("Windows version unknown: ostype other, without PVE's Windows "
                        "defaults (Hyper-V enlightenments, no HPET)")
    vcpus = 1 if spec.uniprocessor_hal else spec.vcpus
    q35 = spec.machine == "q35"
    config: dict[str, str] = {
        "name": name,
        "ostype": ostype,
        "machine": spec.machine,
        "bios": "ovmf" if spec.firmware == "uefi" else "seabios",
        "sockets": "1",
        "cores": str(vcpus),
        "memory": str(spec.memory_mib),
        "localtime": "1" if spec.localtime else "0",
        "tablet": "1",
        "agent": "1" if agent else "0",
        "vga": "std",
    }
    if not spec.balloon:
        config["balloon"] = "0"
    if spec.cpu_mode == "host-passthrough":
        config["cpu"] = "host"
    if spec.firmware == "uefi":
        if spec.arch == "x86":
            warnings.append("UEFI for a 32-bit guest: Proxmox VE's OVMF is 64-bit only")
        config["efidisk0"] = _efidisk(f"{storage}:vm-{vmid}-disk-{len(spec.disks)}")
    smbios1 = _smbios1(spec.smbios)
    if smbios1:
        config["smbios1"] = smbios1

    used: dict[str, int] = {}

    def slot(bus: str) -> str:
        index = used.get(bus, 0)
        if index >= _SLOTS[bus]:
            raise ConversionError(f"too many {bus.upper()} devices: Proxmox VE has "
                                  f"{bus}0..{bus}{_SLOTS[bus] - 1}")
        used[bus] = index + 1
        return f"{bus}{index}"

    disks: list[tuple[str, str]] = []
    for i, disk in enumerate(spec.disks):
        bus = disk.bus
        if bus not in _SLOTS:
            raise UsageError(f"bad disk bus {bus!r}: expected one of {', '.join(_SLOTS)}")
        if bus == "ide" and q35:
            warnings.append(f"q35 has no IDE: disk {disk.path} attached to SATA instead")
            bus = "sata"
        key = slot(bus)
        config[key] = f"{storage}:vm-{vmid}-disk-{i}"
        disks.append((key, disk.path))
    if used.get("scsi"):
        config["scsihw"] = "virtio-scsi-pci"
    if iso is not None:
        config[slot("sata" if q35 else "ide")] = f"{iso},media=cdrom"
    elif spec.cdrom:
        warnings.append(f"CD-ROM {spec.cdrom} left out: upload it to an ISO storage and "
                        "pass its volume ID (iso=)")

    if spec.nic_model is not None:
        net = spec.nic_model
        if spec.mac:
            net += "=" + parse_mac(spec.mac).upper()
        config["net0"] = f"{net},bridge={_bridge(spec.network, bridge, warnings)}"
    config["boot"] = f"order={disks[0][0]}"
    return ProxmoxVM(vmid=vmid, storage=storage, config=config, disks=disks, warnings=warnings)


def _bridge(network: str, bridge: str | None, warnings: list[str]) -> str:
    """The PVE bridge: the explicit one, else the spec's ``bridge=NAME``, else vmbr0
    (a libvirt network has no PVE counterpart; said so unless it is libvirt's default)."""
    if bridge is None:
        kind, _, value = network.partition("=")
        kind, value = kind.strip().lower(), value.strip()
        bridge = value if kind == "bridge" else DEFAULT_BRIDGE
        if kind != "bridge" and value != "default":
            warnings.append(f"libvirt network {value!r} has no Proxmox VE counterpart: "
                            f"net0 on bridge {DEFAULT_BRIDGE}")
    if not _BRIDGE_ID.fullmatch(bridge):
        raise UsageError(f"bad Proxmox VE bridge {bridge!r}: a Linux interface name "
                         "(letters, digits, '-_.', at most 15)")
    return bridge


def _smbios1(smbios: dict[str, dict[str, str]] | None) -> str | None:
    """SMBIOS type 1 (system) strings as PVE's ``smbios1``: base64 values, as PVE writes
    any value that is more than plain ASCII words (commas and '=' would break the list)."""
    system = {k.lower(): v for k, v in ((smbios or {}).get("system") or {}).items()}
    parts = []
    uuid = (system.get("uuid") or "").strip()
    for key in _SMBIOS1_KEYS:
        value = (system.get(key) or "").strip()
        if value:
            parts.append(f"{key}={base64.b64encode(value.encode()).decode('ascii')}")
    if parts:
        parts.insert(0, "base64=1")
    if uuid:
        try:
            parts.append(f"uuid={uuidlib.UUID(uuid)}")
        except ValueError as exc:
            raise UsageError(f"bad SMBIOS system uuid {uuid!r}") from exc
    text = ",".join(parts)
    if len(text) > 512:
        raise UsageError("SMBIOS system strings too long for Proxmox VE (smbios1 holds 512 "
                         "characters)")
    return text or None
