"""What a fleet run leaves for people and CI: per-machine check JUnit, the run's JUnit
(one testcase per machine) and secret scrubbing of everything written."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from lxml import etree

from ..check.report import CheckReport, CheckResult, Finding


def check_junit(report: dict[str, Any]) -> bytes | None:
    """The JUnit of a conversion report's in-session check (None for no check), rebuilt
    from the report's JSON so the batch driver needs nothing but the child's output."""
    check = report.get("check")
    if not isinstance(check, dict):
        return None
    results = [CheckResult(c["id"], c["title"],
                           [Finding(f["id"], f["severity"], f["message"],
                                    list(f.get("evidence") or ())) for f in c["findings"]],
                           c.get("skipped")) for c in check.get("checks", ())]
    rebuilt = CheckReport(check["image"], check["bus"], check["nic"], check["machine"],
                          check.get("vcpus"), check.get("xml"), check.get("guest") or {},
                          results)
    return rebuilt.to_junit()


def batch_junit(results: Iterable[Any], name: str = "p2vimage batch") -> bytes:
    """One testcase per machine: converted passes, failed is a <failure> with its one-line
    reason, not run (interrupted, or skipped as failed before) is <skipped>."""
    results = list(results)
    failures = sum(1 for r in results if r.state == "failed")
    skipped = sum(1 for r in results if r.state not in ("done", "failed"))
    suites = etree.Element("testsuites", name=name)
    suite = etree.SubElement(suites, "testsuite", name=name, tests=str(len(results)),
                             failures=str(failures), errors="0", skipped=str(skipped),
                             time=f"{sum(r.elapsed for r in results):.1f}")
    for r in results:
        case = etree.SubElement(suite, "testcase", name=r.name, classname="p2vimage.batch",
                                time=f"{r.elapsed:.1f}")
        if r.state == "failed":
            fail = etree.SubElement(case, "failure", message=_safe(r.message or ""),
                                    type=r.error_type or f"exit {r.exit_code}")
            fail.text = _safe(f"exit code {r.exit_code} after {r.attempts} attempt(s): "
                              f"{r.message}")
        elif r.state != "done":
            etree.SubElement(case, "skipped", message=_safe(r.message or r.state))
        out = [f"host: {r.host}", f"attempts: {r.attempts}"]
        if r.output:
            out.append(f"output: {r.output}")
        etree.SubElement(case, "system-out").text = _safe("\n".join(out))
    return etree.tostring(suites, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _safe(text: str) -> str:
    """XML 1.0 cannot carry control characters: drop them."""
    return "".join(c for c in text if c in "\t\n\r" or ord(c) >= 0x20)


def scrub_json(doc: Any, scrub: Callable[[str], str]) -> Any:
    """``doc`` with every string passed through ``scrub`` (keys too)."""
    return json.loads(scrub(json.dumps(doc, default=str)))
