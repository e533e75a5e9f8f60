"""The report of a conversion: what was read, planned, changed and written — typed.

:class:`ConversionReport` is what ``p2vimage.convert`` returns: the
:class:`~p2vimage.inspection.Inspection`, the :class:`~p2vimage.plan.Plan` with its
changes (each marked changed or not by apply), the VM's :class:`Devices` as the
domain XML has them, the virtio media used, the in-session readiness check, the
warnings, and the copy's numbers.  :meth:`ConversionReport.to_dict` is the JSON
written beside the outputs and printed by ``--json``; the CLI's text comes from
:meth:`ConversionReport.summary_lines`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .check.domain import DomainFacts, facts_of
from .check.report import CheckReport
from .destinations import TargetReport
from .inspection import Inspection
from .plan import Plan, VirtioSummary
from .targets.hostcopy import DiskCopy


@dataclass(frozen=True)
class Devices(DomainFacts):
    """The virtual machine as its domain XML describes it: what ``check --xml`` reads
    (:class:`~p2vimage.check.domain.DomainFacts`: machine, firmware, bus, models, vCPUs,
    clock) and the rest of the VM (name, MAC, memory, balloon)."""

    name: str
    mac: str | None
    memory_mib: int
    balloon: bool

    @classmethod
    def of(cls, dom: etree._Element) -> Devices:
        mac = dom.find("devices/interface/mac")
        balloon = dom.find("devices/memballoon")
        return cls(
            **dataclasses.asdict(facts_of(dom)),
            name=dom.findtext("name") or "",
            mac=mac.get("address") if mac is not None else None,
            memory_mib=int(dom.findtext("memory") or 0),  # written in MiB
            balloon=balloon is not None and balloon.get("model") != "none",
        )


@dataclass
class ConversionReport:
    sources: list[str]
    outputs: list[str]  # empty for a dry run
    xml: str | None
    report: str | None
    dry_run: bool
    inspection: Inspection
    plan: Plan
    devices: Devices
    warnings: list[str]
    appliance_launches: int
    launch_attempts: int
    bytes_read: int
    bytes_written: int
    # Bytes read from network sources (ssh://, nbd://, http://), retries included; None
    # when every source is a local file or directory.
    network_bytes_read: int | None = None
    phases: dict[str, float] = field(default_factory=dict)
    # The check of the edited guest with these devices, run after apply in the same
    # appliance session (None for a dry run: nothing was applied).
    check: CheckReport | None = None
    # Per output disk: bytes read and written by the host copy, seconds, MiB/s, and the
    # NTFS volumes copied whole because their bitmap could not be trusted.
    copy: list[DiskCopy] = field(default_factory=list)
    # Where the guest landed (``--to``) and everything created there; a dry run has the
    # documents it would write.  None only in reports made before targets existed.
    target: TargetReport | None = None

    @property
    def virtio(self) -> VirtioSummary | None:
        """What the virtio step took from ``--virtio-win`` (None when it staged nothing)."""
        return self.plan.virtio

    @property
    def ready(self) -> bool:
        """The in-session check found no error (True for a dry run, which is not checked)."""
        return self.check is None or self.check.ready

    def to_dict(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        plain.update(
            inspection=self.inspection.to_dict(),
            plan=self.plan.to_dict(),
            devices=dataclasses.asdict(self.devices),
            check=self.check.to_dict() if self.check is not None else None,
            copy=[c.to_dict() for c in self.copy],
            virtio=dataclasses.asdict(self.virtio) if self.virtio is not None else None,
            target=dataclasses.asdict(self.target) if self.target is not None else None,
        )
        return plain

    def summary_lines(self) -> list[str]:
        lines = self.plan.render()
        d = self.devices
        lines.append(f"VM:           {d.name}: {d.machine}, {d.firmware}, disk on {d.bus}, "
                     f"NIC {d.nic or 'none'}, {d.memory_mib} MiB, {d.vcpus} vCPU(s)")
        if self.dry_run:
            lines.append("Dry run: nothing was written.")
        else:
            lines += [f"Output disk:  {o}" for o in self.outputs]
            if self.xml is not None:
                lines.append(f"Domain XML:   {self.xml}")
            if self.report is not None:
                lines.append(f"Report:       {self.report}")
        t = self.target
        if t is not None and t.kind != "local":
            lines.append(f"Target:       {t.kind} ({t.where})"
                         + (f", domain type {t.domain_type}" if t.domain_type else "")
                         + (", started" if t.started else ""))
            lines += [f"Created:      {c}" for c in t.created]
        if self.check is not None and not self.check.ready:
            lines += [f"NOT READY:    {f.id}: {f.message}" for f in self.check.findings
                      if f.severity == "error"]
        lines += [f"Warning:      {w}" for w in self.warnings]
        lines.append(
            f"Appliance launches: {self.appliance_launches}; "
            + ", ".join(f"{k} {v:.1f}s" for k, v in self.phases.items())
        )
        return lines
