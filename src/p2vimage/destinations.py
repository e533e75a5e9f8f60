"""Where a converted guest lands (``convert --to``): the typed target objects.

``convert`` always converts into local files first (the disk(s), the domain XML, the
report); the target says what happens next:

* :class:`LocalTarget` (``--to local``, the default): nothing more, today's behaviour.
* :class:`LibvirtTarget` (``--to libvirt[:URI]``): the disks become volumes of a libvirt
  storage pool (uploaded through libvirt's API, sparse) and the domain is defined there.
* :class:`ProxmoxTarget` (``--to proxmox``): ``VMID.conf`` and a ``qm`` script beside the
  output, for a Proxmox VE node.
* :class:`KubevirtTarget` (``--to kubevirt``): a ``VirtualMachine`` and its CDI
  ``DataVolume`` s as YAML beside the output.

The objects live in the base layer (with :mod:`.options`, which holds one) and check
only what needs nothing outside the process (:meth:`check`); the target modules under
``targets/`` check the rest before any copy.  :class:`TargetReport` is what the report
says about the target: its kind, where, and every file and object created there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError
from .uris import has_password, redact

__all__ = ["KINDS", "KubevirtTarget", "LibvirtTarget", "LocalTarget", "ProxmoxTarget",
           "Target", "TargetReport", "as_target", "parse_to"]

KINDS = ("local", "libvirt", "proxmox", "kubevirt")
DEFAULT_LIBVIRT_URI = "qemu:///system"
DOMAIN_TYPES = ("auto", "kvm", "qemu")
# libvirt refuses '/' in a domain or volume name; we also keep names to one shell word.
_LIBVIRT_NAME = re.compile(r"[A-Za-z0-9_.+-][A-Za-z0-9_.+:-]{0,199}")


@dataclass(frozen=True)
class LocalTarget:
    """The local files only (the default): disk(s), domain XML and report at the output."""

    kind = "local"

    def check(self) -> None:
        """Nothing to check: the output paths are checked with every conversion."""


@dataclass(frozen=True)
class LibvirtTarget:
    """A libvirt host: the disks become volumes of ``pool``, the domain is defined there.

    ``uri`` is any libvirt URI (``qemu:///system``, ``qemu+ssh://host/system``); ``name``
    names the domain and its volumes (default: ``--name``, else the guest's hostname).
    ``start`` boots the domain once defined.  ``domain_type`` ``auto`` asks the host:
    ``kvm`` when its capabilities offer KVM for the guest's architecture, else ``qemu``
    (TCG); give ``qemu`` where ``/dev/kvm`` exists but does not work (nested KVM that
    aborts).  An existing domain or volume of the same name is refused unless the
    conversion's ``overwrite`` is set.
    """

    uri: str = DEFAULT_LIBVIRT_URI
    pool: str = "default"
    name: str | None = None
    start: bool = False
    domain_type: str = "auto"

    kind = "libvirt"

    def check(self) -> None:
        if not isinstance(self.uri, str) or "://" not in self.uri:
            raise UsageError(f"--to libvirt:{self.uri}: not a libvirt URI (e.g. "
                             "qemu:///system, qemu+ssh://host/system)")
        if has_password(self.uri):
            # libvirt would pass "user:password" on as the ssh login name; refused here
            # so that a password never reaches a message, a log line or the report.
            raise UsageError(f"--to libvirt:{redact(self.uri)}: passwords in libvirt "
                             "URIs are not supported; use an SSH key (keyfile=, the agent "
                             "or ~/.ssh)")
        if not isinstance(self.pool, str) or not _LIBVIRT_NAME.fullmatch(self.pool):
            raise UsageError(f"--pool {self.pool!r}: not a storage pool name")
        if self.name is not None and (not isinstance(self.name, str)
                                      or not _LIBVIRT_NAME.fullmatch(self.name)):
            raise UsageError(f"--name {self.name!r}: not usable as a libvirt domain and "
                             "volume name (letters, digits, '_.+-:', no '/')")
        if not isinstance(self.start, bool):
            raise UsageError(f"start: True or False, not {self.start!r}")
        if self.domain_type not in DOMAIN_TYPES:
            raise UsageError(f"--domain-type {self.domain_type!r}: expected one of "
                             f"{', '.join(DOMAIN_TYPES)}")


@dataclass(frozen=True)
class ProxmoxTarget:
    """A Proxmox VE node: ``VMID.conf`` and ``VMID.qm.sh`` (``qm create`` / ``qm
    importdisk`` / ``qm set`` into ``storage``) written beside the output disk.

    ``bridge`` overrides the conversion's network (default ``bridge=NAME`` of it, else
    ``vmbr0``); ``iso`` is a PVE volume ID of an ISO on the node; ``agent`` enables the
    guest agent channel.  Values are checked by :func:`~p2vimage.targets.proxmox.proxmox_vm`.
    """

    vmid: int
    storage: str = "local-lvm"
    bridge: str | None = None
    iso: str | None = None
    agent: bool = False

    kind = "proxmox"

    def check(self) -> None:
        """The kinds of the values; their PVE rules are checked by ``proxmox_vm`` in the
        conversion's preflight, before any work."""
        if isinstance(self.vmid, bool) or not isinstance(self.vmid, int):
            raise UsageError(f"--vmid {self.vmid!r}: a whole number (100..999999999)")
        _strings(self, "storage", "bridge", "iso")
        if not isinstance(self.agent, bool):
            raise UsageError(f"agent: True or False, not {self.agent!r}")


@dataclass(frozen=True)
class KubevirtTarget:
    """A KubeVirt cluster: ``OUT.kubevirt.yaml`` beside the output, with a CDI
    ``DataVolume`` per disk and the ``VirtualMachine``.

    Each DataVolume imports its disk from ``image_url`` (the URL where the output disk
    will be served; a URL ending in ``/`` gets the disk's file name appended) or clones
    ``pvc`` (``NAME`` or ``NAMESPACE/NAME``; further disks ``NAME-2`` ...): one of them.
    The rest are :func:`~p2vimage.targets.kubevirt.kubevirt_vm`'s arguments.
    """

    namespace: str | None = None
    image_url: str | None = None
    pvc: str | None = None
    storage_class: str | None = None
    timezone: str | None = None
    network: str | None = None
    machine: str = "q35"
    run_strategy: str = "Halted"

    kind = "kubevirt"

    def check(self) -> None:
        """One import source, and strings; their KubeVirt rules are checked by
        ``kubevirt_vm`` in the conversion's preflight, before any work."""
        _strings(self, "namespace", "image_url", "pvc", "storage_class", "timezone",
                 "network", "machine", "run_strategy")
        if (self.image_url is None) == (self.pvc is None):
            raise UsageError("--to kubevirt needs one import source for the disks: "
                             "--image-url URL (where the output will be served) or --pvc NAME")


def _strings(target: object, *names: str) -> None:
    for name in names:
        value = getattr(target, name)
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{name}: a string, not {type(value).__name__}")


Target = LocalTarget | LibvirtTarget | ProxmoxTarget | KubevirtTarget
TARGET_TYPES = (LocalTarget, LibvirtTarget, ProxmoxTarget, KubevirtTarget)


def as_target(value: Any) -> Target:
    """A target object from a target object or a bare kind (``"local"``, ``"libvirt"``:
    the defaults of that kind; ``"proxmox"`` needs a VMID, so it is refused here)."""
    if isinstance(value, TARGET_TYPES):
        return value
    if value is None or value == "local":
        return LocalTarget()
    if value == "libvirt":
        return LibvirtTarget()
    if value in ("proxmox", "kubevirt"):
        raise UsageError(f"target {value!r} needs its options: give a "
                         f"{value.capitalize()}Target(...)")
    raise UsageError(f"target {value!r}: expected one of {', '.join(KINDS)} or a "
                     "LocalTarget/LibvirtTarget/ProxmoxTarget/KubevirtTarget")


def parse_to(text: str, **kw: Any) -> Target:
    """``--to`` and its options as a target: ``local``, ``libvirt``, ``libvirt:URI``,
    ``proxmox``, ``kubevirt``; ``kw`` are the options of that kind that were given
    (None = not given).  An option of another kind is a UsageError naming it."""
    kind, _, rest = text.partition(":")
    if kind not in KINDS:
        raise UsageError(f"--to {text!r}: expected one of local, libvirt[:URI], proxmox, "
                         "kubevirt")
    if rest and kind != "libvirt":
        raise UsageError(f"--to {text!r}: only libvirt takes a URI (libvirt:URI)")
    cls = {"local": LocalTarget, "libvirt": LibvirtTarget, "proxmox": ProxmoxTarget,
           "kubevirt": KubevirtTarget}[kind]
    fields = set(cls.__dataclass_fields__)
    given = {k: v for k, v in kw.items() if v is not None and v is not False}
    stray = sorted(set(given) - fields)
    if stray:
        flags = ", ".join("--" + s.replace("_", "-") for s in stray)
        raise UsageError(f"{flags}: not an option of --to {kind}")
    if kind == "libvirt" and rest:
        given["uri"] = rest
    if kind == "proxmox" and "vmid" not in given:
        raise UsageError("--to proxmox needs --vmid (the new VM's ID on the node)")
    target = cls(**given)
    target.check()
    return target


@dataclass
class TargetReport:
    """What a conversion did at its target: the report's ``target``.

    ``kind`` is the target's (``local``, ``libvirt``, ...); ``where`` the libvirt URI and
    pool, the PVE storage, or the output directory.  ``created`` lists every file and
    object created there, as ``"file /path"``, ``"volume POOL/NAME /path"``, ``"domain
    NAME"`` (empty for a dry run).  ``documents`` holds what was (or for a dry run would
    be) written for the target, by name: the PVE config and script, the KubeVirt YAML,
    the domain XML as defined.  ``started`` is True once a libvirt domain was started.
    """

    kind: str
    where: str = ""
    created: list[str] = field(default_factory=list)
    documents: dict[str, str] = field(default_factory=dict)
    domain_type: str | None = None
    started: bool = False
    warnings: list[str] = field(default_factory=list)
