"""The report of a conversion: what was read, planned, changed and written."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .plan import Plan


@dataclass
class ConversionReport:
    sources: list[str]
    outputs: list[str]
    xml: str | None
    report: str | None
    dry_run: bool
    inspection: dict[str, Any]
    plan: dict[str, Any]
    warnings: list[str]
    appliance_launches: int
    launch_attempts: int
    bytes_read: int
    bytes_written: int
    phases: dict[str, float] = field(default_factory=dict)
    virtio: dict[str, Any] | None = None
    # Per output disk: bytes read and written by the host copy, seconds, MiB/s, and the
    # NTFS volumes copied whole because their bitmap could not be trusted.
    copy: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_lines(self, plan: Plan | None = None) -> list[str]:
        lines = []
        if plan is not None:
            lines += plan.render()
        if self.dry_run:
            lines.append("Dry run: nothing was written.")
        else:
            lines += [f"Output disk:  {o}" for o in self.outputs]
            lines.append(f"Domain XML:   {self.xml}")
            lines.append(f"Report:       {self.report}")
        lines += [f"Warning:      {w}" for w in self.warnings]
        lines.append(
            f"Appliance launches: {self.appliance_launches}; "
            + ", ".join(f"{k} {v:.1f}s" for k, v in self.phases.items())
        )
        return lines


def make_report(sources, outs, xml, report_path, dry, insp, plan, extra_warnings, job, phases,
            written, copy_stats=()) -> ConversionReport:
    r = ConversionReport(
        sources=[s.describe(sum(t.origin == s.origin for t in sources) > 1) for s in sources],
        outputs=[str(o) for o in outs],
        xml=str(xml) if xml else None,
        report=str(report_path) if report_path else None,
        dry_run=dry,
        inspection=insp.to_dict(),
        plan=plan.to_dict(),
        warnings=[*plan.warnings, *extra_warnings,
                  *(w for c in copy_stats for w in c["warnings"])],
        appliance_launches=job.stats.appliance_launches,
        launch_attempts=job.stats.launch_attempts,
        bytes_read=sum(c["bytes_read"] for c in copy_stats),
        bytes_written=written,
        phases={k: round(v, 3) for k, v in phases.items()},
        copy=list(copy_stats),
    )
    r.virtio = plan.virtio
    r._plan = plan  # type: ignore[attr-defined]
    return r
