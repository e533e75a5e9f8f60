"""``convert --to``: what a conversion does at its target, beside the local pipeline.

:class:`Landing` is opened by ``convert`` before any work and follows the conversion:

* **before any work** (:meth:`Landing.__init__`): the target's values checked by the
  target's own writer (``proxmox_vm`` / ``kubevirt_vm`` on a stand-in VM), the libvirt
  host connected, its pool found, an explicit name checked free; then
  :meth:`check_space` against the pool (the bound the local space check uses);
* **after the plan** (:meth:`after_plan`, still before any copy): the VM rendered for
  the target (a KubeVirt guest on IDE is refused here), a libvirt name from the
  guest's hostname checked free; a dry run ends here with the documents in the report;
* **after the local outputs are complete** (:meth:`finish`): the Proxmox/KubeVirt files
  written into their claimed ``.partial`` s, or the disks uploaded into the libvirt pool
  and the domain defined (and started); :meth:`undo` removes what was created there if
  the conversion fails after that.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from . import libvirt_xml
from .destinations import (
    KubevirtTarget,
    LibvirtTarget,
    ProxmoxTarget,
    TargetReport,
)
from .domain import domain_spec
from .errors import UsageError
from .inspection import Inspection
from .inspection.version import WindowsVersion
from .options import ConvertOptions
from .plan import Plan
from .progress import ProgressCallback
from .targets.atomic import AtomicOutputs
from .targets.kubevirt import DiskSource, kubevirt_vm
from .targets.libvirt_pool import Landed, LibvirtHost, VolumeUpload
from .targets.proxmox import proxmox_vm
from .targets.vmspec import DiskSpec, DomainSpec
from .uris import redact

__all__ = ["Landing", "extra_outputs"]


def extra_outputs(opts: ConvertOptions) -> list[Path]:
    """The files a target adds beside the output disk (claimed with the others)."""
    t = opts.target
    parent = opts.output.parent
    if isinstance(t, ProxmoxTarget):
        return [parent / f"{t.vmid}.conf", parent / f"{t.vmid}.qm.sh"]
    if isinstance(t, KubevirtTarget):
        return [opts.output.with_suffix(".kubevirt.yaml")]
    return []


def volume_names(name: str, fmt: str, disks: int) -> list[str]:
    """The volumes of domain ``name``: ``NAME.qcow2``, ``NAME-2.qcow2`` ... (``.img``
    for raw)."""
    ext = "qcow2" if fmt == "qcow2" else "img"
    return [f"{name}{'' if i == 0 else f'-{i + 1}'}.{ext}" for i in range(disks)]


class Landing:
    """The target side of one conversion (see the module's docstring)."""

    def __init__(self, opts: ConvertOptions, disks: int) -> None:
        self.opts = opts
        self.target = opts.target
        self.disks = disks
        self.report = TargetReport(kind=self.target.kind)
        self.documents: dict[Path, str] = {}
        self.host: LibvirtHost | None = None
        self.pool: Any = None
        self.landed: Landed | None = None
        self._spec: DomainSpec | None = None
        t = self.target
        if isinstance(t, ProxmoxTarget):
            self.report.where = f"Proxmox VE storage {t.storage}, VMID {t.vmid}"
            proxmox_vm(_STAND_IN, WindowsVersion(), vmid=t.vmid, storage=t.storage,
                       bridge=t.bridge, iso=t.iso, agent=t.agent)
        elif isinstance(t, KubevirtTarget):
            self.report.where = f"KubeVirt namespace {t.namespace or '(current)'}"
            if opts.bus == "ide":
                raise UsageError("KubeVirt has no IDE bus: convert with --bus sata, "
                                 "virtio-blk or virtio-scsi")
            if t.image_url is not None and not t.image_url.endswith("/") and disks > 1:
                raise UsageError(f"--image-url {t.image_url}: {disks} disks need a base URL "
                                 "ending in '/' (each disk's file name is appended)")
            kubevirt_vm(_STAND_IN, WindowsVersion(), sources=self._sources([1 << 30]),
                        **self._kubevirt_args())
        elif isinstance(t, LibvirtTarget):
            self.report.where = f"{redact(t.uri)} pool {t.pool}"
            self.host = LibvirtHost(t.uri)
            try:
                self.pool = self.host.pool(t.pool)
                explicit = t.name or opts.name
                if explicit is not None:
                    self._check_names(libvirt_xml.sanitise_name(explicit))
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        if self.host is not None:
            self.host.close()

    def __enter__(self) -> Landing:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- before the copy ----------------------------------------------------------------

    def check_space(self, needed: int) -> None:
        """The pool must hold what the local output disks may take."""
        if self.host is not None and not self.opts.dry_run:
            self.host.check_space(self.pool, needed)

    def after_plan(self, insp: Inspection, plan: Plan, outs: list[Path],
                   sizes: list[int]) -> None:
        """Render the VM for the target (errors now, before any copy)."""
        t = self.target
        opts = self.opts
        if isinstance(t, LibvirtTarget) and t.name is not None:
            opts = dataclasses.replace(opts, name=t.name)
        spec = domain_spec(insp, plan, opts, outs)
        self._spec = spec
        if isinstance(t, ProxmoxTarget):
            pve = proxmox_vm(spec, insp, vmid=t.vmid, storage=t.storage, bridge=t.bridge,
                             iso=t.iso, agent=t.agent)
            conf, script = extra_outputs(self.opts)
            self.documents = {conf: pve.config_text(), script: pve.qm_script()}
            self.report.warnings += pve.warnings
        elif isinstance(t, KubevirtTarget):
            kv = kubevirt_vm(spec, insp, sources=self._sources(sizes, outs),
                             **self._kubevirt_args())
            (yaml_path,) = extra_outputs(self.opts)
            self.documents = {yaml_path: kv.to_yaml()}
            self.report.warnings += kv.warnings
        elif isinstance(t, LibvirtTarget):
            assert self.host is not None
            self.report.domain_type, note = self.host.domain_type(
                t.domain_type, libvirt_xml.ARCHES.get(spec.arch, spec.arch))
            if note is not None:
                self.report.warnings.append(note)
            elem, _ = libvirt_xml.build_domain(self._libvirt_spec([d.path for d in spec.disks]))
            elem.set("type", self.report.domain_type)
            name = elem.findtext("name") or ""
            self._check_names(name)
            self.documents = {Path(f"{name}.xml"): libvirt_xml.to_xml_bytes(elem).decode()}
        self.report.documents = {p.name: text for p, text in self.documents.items()}

    def _check_names(self, name: str) -> None:
        assert self.host is not None
        self.host.check_free(self.pool, name,
                             volume_names(name, self.opts.format, self.disks),
                             overwrite=self.opts.overwrite)

    # -- after the local outputs ----------------------------------------------------------

    def finish(self, atomic: AtomicOutputs, outs: list[Path], local: list[Path],
               progress: ProgressCallback | None = None) -> None:
        """Write the target's files into their partials, or land the guest on libvirt
        (from the finished local disks ``outs``, read at their partial paths).  ``local``
        are the local files the conversion keeps (named first in the report's list)."""
        t = self.target
        self.report.created = [f"file {p}" for p in local]
        if isinstance(t, (ProxmoxTarget, KubevirtTarget)):
            for path, text in self.documents.items():
                partial = atomic.partial(path)
                partial.write_text(text)
                if path.suffix == ".sh":
                    partial.chmod(0o755)
                self.report.created.append(f"file {path}")
        elif isinstance(t, LibvirtTarget):
            assert self.host is not None and self._spec is not None
            name = next(iter(self.documents)).stem
            uploads = [VolumeUpload(atomic.partial(o), self.opts.format, v)
                       for o, v in zip(outs, volume_names(name, self.opts.format, len(outs)),
                                       strict=True)]

            def xml(paths: list[str]) -> str:
                elem, _ = libvirt_xml.build_domain(self._libvirt_spec(paths))
                elem.set("type", self.report.domain_type or "kvm")
                return libvirt_xml.to_xml_bytes(elem).decode()

            self.landed = self.host.land(self.pool, name, uploads, xml,
                                         overwrite=self.opts.overwrite, start=t.start,
                                         progress=progress)
            self.report.created += [f"volume {t.pool}/{u.name} {p}"
                                    for u, p in zip(uploads, self.landed.paths, strict=True)]
            self.report.created.append(f"domain {name}")
            self.report.started = self.landed.started
            self.report.documents = {f"{name}.xml": self.landed.xml}

    def undo(self) -> None:
        """Remove what :meth:`finish` created on a libvirt host (a later step failed)."""
        if self.landed is not None:
            self.landed.undo()
            self.landed = None
            self.report.created = []

    # -- helpers ------------------------------------------------------------------------

    def _libvirt_spec(self, paths: list[str]) -> DomainSpec:
        """The spec with the volumes' paths, the ISO only where the host has it, and no
        host CPU model under TCG (which cannot pass the host's CPU through)."""
        assert self._spec is not None and self.host is not None
        spec = self._spec
        cdrom = spec.cdrom
        if cdrom is not None and not self.host.has_file(cdrom):
            where = "on" if self.host.is_local else "in a storage pool at"
            note = (f"the ISO {cdrom} is not {where} {self.host.display}: the domain has "
                    "no CD-ROM")
            if note not in self.report.warnings:
                self.report.warnings.append(note)
            cdrom = None
        return dataclasses.replace(
            spec, cdrom=cdrom,
            disks=[dataclasses.replace(d, path=p) for d, p in zip(spec.disks, paths,
                                                                   strict=True)],
            cpu_mode=None if self.report.domain_type == "qemu" else spec.cpu_mode)

    def _kubevirt_args(self) -> dict[str, Any]:
        t = self.target
        assert isinstance(t, KubevirtTarget)
        return dict(namespace=t.namespace, machine=t.machine, network=t.network,
                    timezone=t.timezone, storage_class=t.storage_class,
                    run_strategy=t.run_strategy)

    def _sources(self, sizes: list[int], outs: list[Path] | None = None) -> list[DiskSource]:
        t = self.target
        assert isinstance(t, KubevirtTarget)
        found = []
        for i, size in enumerate(sizes):
            if t.pvc is not None:
                found.append(DiskSource(pvc=t.pvc if i == 0 else f"{t.pvc}-{i + 1}"))
            else:
                assert t.image_url is not None
                url = t.image_url
                if url.endswith("/"):
                    url += outs[i].name if outs is not None else "disk"
                found.append(DiskSource(url=url, size=size))
        return found


# A VM with nothing unusual, on which the target writers check the target's own values
# before any work (a bad VMID, storage, namespace, URL fails here, not after the copy).
_STAND_IN = DomainSpec(name="p2v-check", memory_mib=1024, machine="q35", nic_model="e1000",
                       disks=[DiskSpec("/p2v-check.qcow2", "qcow2", "sata")])
