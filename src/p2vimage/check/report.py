"""What ``check`` found, as data: findings grouped by the check that produced them.

A *check* is one question (does the boot storage have a driver? is every boot-start
driver file there?); a *finding* is one answer worth reporting, with a stable id a
pipeline can match on, a severity, one line for a human and the evidence (registry
key paths, guest file paths) to go and look.  Only ``error`` findings make an image
"not ready"; warnings are things that boot but will bite later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lxml import etree

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass
class Finding:
    id: str
    severity: str
    message: str
    evidence: list[str] = field(default_factory=list)


@dataclass
class CheckResult:
    """One check: ``skipped`` says why it did not apply (then it has no findings)."""

    id: str
    title: str
    findings: list[Finding] = field(default_factory=list)
    skipped: str | None = None

    def add(self, fid: str, severity: str, message: str, evidence: list[str] | None = None
            ) -> Finding:
        f = Finding(fid, severity, message, list(evidence or ()))
        self.findings.append(f)
        return f

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "skipped"
        sev = {f.severity for f in self.findings}
        return "failed" if ERROR in sev else "warning" if WARNING in sev else "passed"


@dataclass
class CheckReport:
    image: str
    bus: str
    nic: str
    machine: str
    vcpus: int | None
    xml: str | None
    guest: dict[str, Any]
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [f for c in self.checks for f in c.findings]

    @property
    def ready(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def ids(self, severity: str | None = None) -> list[str]:
        """Finding ids (of one severity), in report order: what tests and pipelines match."""
        return [f.id for f in self.findings if severity is None or f.severity == severity]

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "ready": self.ready,
            "bus": self.bus,
            "nic": self.nic,
            "machine": self.machine,
            "vcpus": self.vcpus,
            "xml": self.xml,
            "guest": self.guest,
            "checks": [{**asdict(c), "status": c.status} for c in self.checks],
            "counts": {s: len(self.ids(s)) for s in SEVERITIES},
        }

    def summary_lines(self) -> list[str]:
        g = self.guest
        verdict = "READY" if self.ready else "NOT READY"
        lines = [
            f"{self.image}: {verdict} to boot on {self.bus} (machine {self.machine}, "
            f"NIC {self.nic})",
            f"Guest: {g.get('product_name') or 'unknown'} {g.get('version') or ''} "
            f"{g.get('arch') or ''}".rstrip(),
        ]
        for c in self.checks:
            if c.skipped is not None:
                lines.append(f"  [skip] {c.title}: {c.skipped}")
                continue
            lines.append(f"  [{c.status[:4]}] {c.title}")
            for f in c.findings:
                lines.append(f"      {f.severity}: {f.message} [{f.id}]")
                lines.extend(f"        - {e}" for e in f.evidence[:5])
                if len(f.evidence) > 5:
                    lines.append(f"        - ... {len(f.evidence) - 5} more")
        counts = ", ".join(f"{len(self.ids(s))} {s}(s)" for s in SEVERITIES)
        lines.append(f"Result: {verdict} ({counts})")
        return lines

    def to_junit(self) -> bytes:
        """JUnit XML: one testcase per check, errors as <failure>, warnings in system-out.

        The attributes are the common subset Jenkins, GitLab and GitHub reporters read.
        """
        failures = sum(1 for c in self.checks if c.status == "failed")
        skipped = sum(1 for c in self.checks if c.status == "skipped")
        suites = etree.Element("testsuites", name="p2vimage check")
        suite = etree.SubElement(
            suites, "testsuite", name=f"p2vimage check {self.bus}",
            tests=str(len(self.checks)), failures=str(failures), errors="0",
            skipped=str(skipped), time="0",
        )
        props = etree.SubElement(suite, "properties")
        for k, v in (("image", self.image), ("bus", self.bus), ("nic", self.nic),
                     ("machine", self.machine), ("ready", str(self.ready).lower())):
            etree.SubElement(props, "property", name=k, value=_xml_safe(v))
        for c in self.checks:
            case = etree.SubElement(suite, "testcase", name=c.id, classname="p2vimage.check",
                                    time="0")
            if c.skipped is not None:
                etree.SubElement(case, "skipped", message=c.skipped)
                continue
            errors = [f for f in c.findings if f.severity == ERROR]
            if errors:
                fail = etree.SubElement(case, "failure", message=_xml_safe(errors[0].message),
                                        type=errors[0].id)
                fail.text = "\n".join(_finding_text(f) for f in errors)
            others = [f for f in c.findings if f.severity != ERROR]
            if others:
                etree.SubElement(case, "system-out").text = "\n".join(
                    _finding_text(f) for f in others
                )
        return etree.tostring(suites, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _finding_text(f: Finding) -> str:
    return _xml_safe("\n".join([f"{f.severity}: {f.message} [{f.id}]",
                                *(f"  {e}" for e in f.evidence)]))


_XML_BAD = dict.fromkeys(i for i in range(32) if i not in (9, 10, 13))


def _xml_safe(text: str) -> str:
    """Registry-derived text can hold control characters XML 1.0 cannot carry."""
    return text.translate(_XML_BAD)
