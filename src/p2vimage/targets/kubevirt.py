"""KubeVirt output: a ``VirtualMachine`` and the CDI ``DataVolume`` s that import its disks.

The VM is the :class:`~.vmspec.DomainSpec` the libvirt XML renders, in KubeVirt's API
(``kubevirt.io/v1``); each disk is a ``DataVolume`` (``cdi.kubevirt.io/v1beta1``) that CDI
fills from an HTTP(S) URL of the converted image (qcow2 or raw: CDI converts) or by
cloning a PVC that already holds it, and the VM waits for them.  Where KubeVirt differs:

* **No IDE bus**: KubeVirt emulates virtio, SATA, SCSI and USB disks only.  A guest
  prepared for IDE has no boot driver for anything else, so it is refused (convert it
  with ``--bus sata``, ``virtio-blk`` or ``virtio-scsi``) rather than moved to SATA.
* **Machine q35**: KubeVirt's default ``emulatedMachines`` (``q35*``, ``pc-q35*``)
  refuse i440fx.  A guest planned for ``pc`` gets ``useVirtioTransitional`` so its
  virtio devices also show the legacy IDs that older virtio-win drivers (NT 5.x) know;
  a cluster that allows i440fx can ask for ``machine="pc"``.
* **Clock**: KubeVirt has no "local time" offset, only a named zone: a guest that keeps
  its RTC in local time needs ``timezone`` (an IANA name), else it starts in UTC and is
  off by the zone's offset until Windows syncs.  Timers as in the libvirt XML (RTC
  catch-up, PIT delay, no HPET), plus the Hyper-V clock on NT 6.1+.
* **Hyper-V enlightenments** (relaxed timing, virtual APIC, spinlock retries) on NT 6.1
  and later, which know them: on shared nodes a vCPU can stall long enough for
  Windows' clock watchdog to bug-check (0x101) without "relaxed".
* **Firmware**: BIOS, or EFI without Secure Boot (a converted machine's boot chain need
  not be signed; KubeVirt's Secure Boot also needs SMM).  The SMBIOS system UUID and
  serial carry over.
* **Devices left out**: the memory balloon unless its driver was staged, and KubeVirt's
  default serial console, a virtio-serial port that is an unknown device (a Found New
  Hardware wizard on XP/2003) without vioserial; VNC stays.  The NIC goes on the pod
  network (masquerade, DHCP inside the guest) or, with ``network``, on a Multus network
  (bridge binding: the guest keeps its addresses on that LAN).
"""

from __future__ import annotations

import re
import unicodedata
import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import UsageError
from ..inspection.version import WindowsVersion
from ..options import parse_mac
from .vmspec import DomainSpec

__all__ = ["DiskSource", "KubevirtVM", "kubevirt_name", "kubevirt_vm", "to_yaml"]

RUN_STRATEGIES = ("Halted", "Always", "Manual", "RerunOnFailure", "Once")
_BUSES = {"virtio": "virtio", "sata": "sata", "scsi": "scsi"}
_NICS = ("virtio", "e1000", "rtl8139")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # RFC 1123 label (DNS_LABEL)
# RFC 1123 subdomain (DNS_SUBDOMAIN): what a StorageClass's name must be.
_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                        r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_TIMEZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*")
_MACHINE = re.compile(r"q35|pc|pc-(q35|i440fx)-[a-z0-9][a-z0-9.+_-]*")
_NAME_FALLBACK = "p2v-windows"
_MIB = 1024 * 1024


@dataclass(frozen=True)
class DiskSource:
    """Where CDI gets one disk image from.

    ``url``: an ``http://`` or ``https://`` URL of the image.  ``pvc``: ``NAME`` or
    ``NAMESPACE/NAME`` of a PVC that holds it (cloned; without a namespace, the VM's).
    ``size``: the disk's virtual size in bytes; required with a URL (CDI sizes the new
    volume before it reads the image), optional for a clone (the source's size).
    """

    url: str | None = None
    pvc: str | None = None
    size: int | None = None


@dataclass
class KubevirtVM:
    """The manifests :func:`kubevirt_vm` renders, as dicts, and one-line warnings."""

    vm: dict[str, Any]
    data_volumes: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    def documents(self) -> list[dict[str, Any]]:
        """The DataVolumes, then the VM (``kubectl apply -f`` creates them in order)."""
        return [*self.data_volumes, self.vm]

    def to_yaml(self) -> str:
        return to_yaml(self.documents())


def to_yaml(documents: Sequence[dict[str, Any]]) -> str:
    """A multi-document YAML stream (safe dump: plain types only, keys in our order)."""
    return yaml.safe_dump_all(list(documents), sort_keys=False, explicit_start=True,
                              default_flow_style=False)


def kubevirt_name(name: str) -> str:
    """An object name KubeVirt takes for a VM: an RFC 1123 label (lower-case letters,
    digits, inner ``-``, at most 63), since the VM's name is also its pod's host name.

    Accents are reduced to their base letter, letters lower-cased, every other run of
    characters becomes one ``-``; ``p2v-windows`` when nothing is left.  Idempotent.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:63].rstrip("-")
    return cleaned or _NAME_FALLBACK


def kubevirt_vm(
    spec: DomainSpec,
    version: WindowsVersion,
    *,
    sources: Sequence[DiskSource],
    namespace: str | None = None,
    machine: str = "q35",
    network: str | None = None,
    timezone: str | None = None,
    storage_class: str | None = None,
    run_strategy: str = "Halted",
) -> KubevirtVM:
    """Render ``spec`` as a KubeVirt VM whose disks CDI imports from ``sources``.

    ``version`` (the inspection's Windows version) decides the Hyper-V enlightenments.
    ``sources`` has one :class:`DiskSource` per disk of the spec, in order.
    ``namespace``: set on every object (else ``kubectl``'s current one).  ``machine``:
    the QEMU machine type (``q35``; ``pc`` only where the cluster allows i440fx).
    ``network``: a Multus NetworkAttachmentDefinition (``NAME`` or ``NAMESPACE/NAME``)
    instead of the pod network.  ``timezone``: the IANA zone of a local-time RTC.
    ``storage_class``: the StorageClass of the DataVolumes' PVCs (else the cluster's
    default).  ``run_strategy``: ``Halted`` (start it with ``virtctl start``) or another of
    KubeVirt's.  Raises UsageError for what KubeVirt cannot run or would refuse.
    """
    warnings: list[str] = []
    if namespace is not None and not _LABEL.fullmatch(namespace):
        raise UsageError(f"bad namespace {namespace!r}: a DNS label (lower-case letters, "
                         "digits, '-', at most 63)")
    if not spec.disks:
        raise UsageError("a VM needs at least one disk (the system disk)")
    if spec.firmware not in ("bios", "uefi"):
        raise UsageError(f"bad firmware {spec.firmware!r}: expected bios or uefi")
    if len(sources) != len(spec.disks):
        raise UsageError(f"{len(spec.disks)} disk(s) but {len(sources)} import source(s)")
    if not _MACHINE.fullmatch(machine):
        raise UsageError(f"bad machine type {machine!r}: expected q35, pc, pc-q35-VERSION "
                         "or pc-i440fx-VERSION")
    if run_strategy not in RUN_STRATEGIES:
        raise UsageError(f"bad run strategy {run_strategy!r}: expected one of "
                         f"{', '.join(RUN_STRATEGIES)}")
    if storage_class is not None and not _SUBDOMAIN.fullmatch(storage_class):
        raise UsageError(f"bad storage class {storage_class!r}: a Kubernetes object name "
                         "(lower-case letters, digits, '-', '.', at most 253)")
    if timezone is not None and not _TIMEZONE.fullmatch(timezone):
        raise UsageError(f"bad time zone {timezone!r}: expected an IANA name like "
                         "Europe/Berlin")
    if spec.nic_model is not None and spec.nic_model not in _NICS:
        raise UsageError(f"bad NIC model {spec.nic_model!r}: expected one of {', '.join(_NICS)}")
    for disk in spec.disks:
        if disk.bus == "ide":
            raise UsageError(f"KubeVirt has no IDE bus (disk {disk.path}): convert with "
                             "--bus sata, virtio-blk or virtio-scsi")
        if disk.bus not in _BUSES:
            raise UsageError(f"bad disk bus {disk.bus!r}: KubeVirt has virtio, sata, scsi")

    name = kubevirt_name(spec.name)
    if name != spec.name:
        warnings.append(f"VM name {spec.name!r} changed to {name!r} (Kubernetes name)")
    i440fx = machine == "pc" or machine.startswith("pc-i440fx")
    if i440fx:
        warnings.append(f"machine {machine}: KubeVirt's default emulatedMachines (q35*, "
                        "pc-q35*) refuse it unless the cluster allows it")
    elif spec.machine == "pc":
        warnings.append("the guest was planned for i440fx (pc): KubeVirt runs it on q35, "
                        "virtio devices transitional")
    nt5 = version.major is not None and version.major < 6
    nt61 = version.major is not None and (version.major, version.minor or 0) >= (6, 1)

    data_volumes, disks, volumes = [], [], []
    for i, (disk, source) in enumerate(zip(spec.disks, sources, strict=True)):
        suffix = f"-disk{i}"
        dv_name = name[: 63 - len(suffix)].rstrip("-") + suffix
        data_volumes.append(_data_volume(dv_name, source, namespace, storage_class))
        entry: dict[str, Any] = {"name": f"disk{i}", "disk": {"bus": _BUSES[disk.bus]}}
        if i == 0:
            entry["bootOrder"] = 1
        disks.append(entry)
        volumes.append({"name": f"disk{i}", "dataVolume": {"name": dv_name}})
        if disk.bus == "sata" and nt5 and not i440fx:
            warnings.append(f"SATA (AHCI) disk {disk.path} on NT 5.x: Windows XP/2003 have "
                            "no in-box AHCI driver")
    if spec.cdrom:
        warnings.append(f"CD-ROM {spec.cdrom} left out: add it as a containerDisk or PVC "
                        "volume if the guest needs it")

    devices: dict[str, Any] = {
        "disks": disks,
        "inputs": [{"name": "tablet", "type": "tablet", "bus": "usb"}],
        "autoattachMemBalloon": spec.balloon,
        "autoattachSerialConsole": False,
    }
    virtio_used = spec.nic_model == "virtio" or spec.balloon or any(
        d.bus in ("virtio", "scsi") for d in spec.disks)
    if virtio_used and not i440fx and (spec.virtio_transitional or spec.machine == "pc"):
        devices["useVirtioTransitional"] = True
    networks: list[dict[str, Any]] = []
    if spec.nic_model is None:
        devices["autoattachPodInterface"] = False
    else:
        iface: dict[str, Any] = {"name": "default", "model": spec.nic_model}
        if network is None:
            iface["masquerade"] = {}
            networks.append({"name": "default", "pod": {}})
        else:
            _check_network(network)
            iface["bridge"] = {}
            networks.append({"name": "default", "multus": {"networkName": network}})
        if spec.mac:
            iface["macAddress"] = parse_mac(spec.mac)
        devices["interfaces"] = [iface]

    vcpus = 1 if spec.uniprocessor_hal else spec.vcpus
    cpu: dict[str, Any] = {"sockets": 1, "cores": vcpus, "threads": 1}
    if spec.cpu_mode:
        cpu["model"] = spec.cpu_mode

    timer: dict[str, Any] = {
        "rtc": {"tickPolicy": "catchup"},
        "pit": {"tickPolicy": "delay"},
        "hpet": {"present": False},
    }
    features: dict[str, Any] = {"acpi": {}, "apic": {}}
    if nt61:
        features["hyperv"] = {"relaxed": {}, "vapic": {}, "spinlocks": {"spinlocks": 8191}}
        timer["hyperv"] = {}
    if not spec.localtime:
        clock: dict[str, Any] = {"utc": {}}
    elif timezone is not None:
        clock = {"timezone": timezone}
    else:
        clock = {"utc": {}}
        warnings.append("the guest keeps its RTC in local time and no time zone was given: "
                        "its clock starts in UTC")
    clock["timer"] = timer

    firmware: dict[str, Any] = {
        "bootloader": {"efi": {"secureBoot": False}} if spec.firmware == "uefi"
        else {"bios": {}},
    }
    if spec.firmware == "uefi" and spec.arch == "x86":
        warnings.append("UEFI for a 32-bit guest: KubeVirt's OVMF is 64-bit only")
    system = {k.lower(): str(v).strip() for k, v in
              ((spec.smbios or {}).get("system") or {}).items()}
    if system.get("uuid"):
        try:
            firmware["uuid"] = str(uuidlib.UUID(system["uuid"]))
        except ValueError as exc:
            raise UsageError(f"bad SMBIOS system uuid {system['uuid']!r}") from exc
    if system.get("serial"):
        firmware["serial"] = system["serial"]

    domain = {
        "machine": {"type": machine},
        "cpu": cpu,
        "memory": {"guest": f"{spec.memory_mib}Mi"},
        "firmware": firmware,
        "clock": clock,
        "features": features,
        "devices": devices,
    }
    vm = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": _metadata(name, namespace),
        "spec": {
            "runStrategy": run_strategy,
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": name}},
                "spec": {"domain": domain, "networks": networks, "volumes": volumes},
            },
        },
    }
    return KubevirtVM(vm=vm, data_volumes=data_volumes, warnings=warnings)


def _metadata(name: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _check_network(network: str) -> None:
    parts = network.split("/")
    if len(parts) > 2 or not all(_LABEL.fullmatch(p) for p in parts):
        raise UsageError(f"bad Multus network {network!r}: expected NAME or NAMESPACE/NAME "
                         "(DNS labels)")


def _data_volume(name: str, source: DiskSource, namespace: str | None,
                 storage_class: str | None) -> dict[str, Any]:
    """A DataVolume importing one disk (the storage API: CDI adds the file system's
    overhead and picks access and volume modes from the storage profile)."""
    if (source.url is None) == (source.pvc is None):
        raise UsageError("each disk needs exactly one import source: a URL or a PVC")
    storage: dict[str, Any] = {}
    if source.size is not None:
        if isinstance(source.size, bool) or not isinstance(source.size, int) or source.size <= 0:
            raise UsageError(f"bad disk size {source.size!r}: a number of bytes")
        storage["resources"] = {"requests": {"storage": f"{-(-source.size // _MIB)}Mi"}}
    if storage_class is not None:
        storage["storageClassName"] = storage_class
    if source.url is not None:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", source.url):
            raise UsageError(f"bad image URL {source.url!r}: expected http:// or https://")
        if source.size is None:
            raise UsageError(f"the size of {source.url} is needed: CDI sizes the volume "
                             "before it reads the image")
        dv_source: dict[str, Any] = {"http": {"url": source.url}}
    else:
        assert source.pvc is not None
        pvc_ns, _, pvc_name = source.pvc.rpartition("/")
        pvc_ns = pvc_ns or namespace or ""
        if not pvc_ns:
            raise UsageError(f"PVC {source.pvc!r}: give its namespace (NAMESPACE/NAME) or "
                             "a namespace for the VM")
        if not (_LABEL.fullmatch(pvc_ns) and re.fullmatch(
                r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", pvc_name)):
            raise UsageError(f"bad PVC {source.pvc!r}: expected NAME or NAMESPACE/NAME")
        dv_source = {"pvc": {"namespace": pvc_ns, "name": pvc_name}}
    return {
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": _metadata(name, namespace),
        "spec": {"source": dv_source, "storage": storage},
    }
