"""check/report.py: findings grouped by check, readiness, and the JSON/JUnit/text forms."""

from __future__ import annotations

import json

from lxml import etree

from p2vimage.check.report import ERROR, INFO, WARNING, CheckReport, CheckResult, Finding


def test_junit_has_one_testcase_per_check() -> None:
    r = CheckReport("x.img", "ide", "e1000", "pc", 2, None, {"product_name": "W"})
    a = CheckResult("boot-storage", "t1")
    a.add("storage.no-driver", "error", "no driver <&>", ["K\\1"])
    b = CheckResult("network", "t2")
    b.add("network.no-driver", "warning", "w")
    c = CheckResult("nt5-hal", "t3", skipped="NT 6")
    r.checks = [a, b, c, CheckResult("hygiene", "t4")]
    root = etree.fromstring(r.to_junit())
    suite = root.find("testsuite")
    assert [t.get("name") for t in suite.findall("testcase")] == [
        "boot-storage", "network", "nt5-hal", "hygiene"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    fail = suite.find("testcase[@name='boot-storage']/failure")
    assert fail.get("message") == "no driver <&>" and "K\\1" in fail.text
    assert "w [network.no-driver]" in suite.find("testcase[@name='network']/system-out").text
    assert suite.find("testcase[@name='nt5-hal']/skipped") is not None
    assert not r.ready and r.to_dict()["counts"] == {"error": 1, "warning": 1, "info": 0}


def _report() -> CheckReport:
    r = CheckReport("vm.img", "virtio-blk", "virtio", "pc", None, None,
                    {"product_name": "Microsoft Windows XP", "version": "5.1.2600",
                     "arch": "x86"})
    storage = CheckResult("boot-storage", "Boot storage driver for virtio-blk")
    storage.add("storage.no-driver", ERROR, "no driver", [f"K\\{i}" for i in range(8)])
    storage.add("storage.no-driver", WARNING, "no driver (LKG)")
    net = CheckResult("network", "Network")
    net.add("network.no-driver", WARNING, "no NIC driver")
    info = CheckResult("virtio-staging", "Virtio")
    info.add("virtio.note", INFO, "fyi")
    r.checks = [storage, net, info, CheckResult("nt5-hal", "HAL", skipped="NT 6"),
                CheckResult("hygiene", "Volumes")]
    return r


def test_status_follows_the_worst_severity() -> None:
    r = _report()
    assert [c.status for c in r.checks] == ["failed", "warning", "passed", "skipped", "passed"]
    assert r.ids() == ["storage.no-driver", "storage.no-driver", "network.no-driver",
                       "virtio.note"]
    assert r.ids(WARNING) == ["storage.no-driver", "network.no-driver"]
    assert r.ids(INFO) == ["virtio.note"]
    assert not r.ready
    r.checks[0].findings.pop(0)  # warnings and notes alone: ready
    assert r.ready and r.checks[0].status == "warning"
    f = r.checks[1].add("network.x", ERROR, "m", ("a", "b"))
    assert isinstance(f, Finding) and f.evidence == ["a", "b"] and not r.ready


def test_dict_is_json_with_statuses_and_counts() -> None:
    doc = json.loads(json.dumps(_report().to_dict()))
    assert (doc["ready"], doc["bus"], doc["vcpus"]) == (False, "virtio-blk", None)
    assert doc["counts"] == {"error": 1, "warning": 2, "info": 1}
    assert [(c["id"], c["status"]) for c in doc["checks"]] == [
        ("boot-storage", "failed"), ("network", "warning"), ("virtio-staging", "passed"),
        ("nt5-hal", "skipped"), ("hygiene", "passed")]
    assert doc["checks"][0]["findings"][0] == {
        "id": "storage.no-driver", "severity": "error", "message": "no driver",
        "evidence": [f"K\\{i}" for i in range(8)]}
    assert doc["checks"][3]["skipped"] == "NT 6"


def test_summary_lines() -> None:
    lines = _report().summary_lines()
    assert lines[0] == "vm.img: NOT READY to boot on virtio-blk (machine pc, NIC virtio)"
    assert lines[1] == "Guest: Microsoft Windows XP 5.1.2600 x86"
    assert "  [fail] Boot storage driver for virtio-blk" in lines
    assert "      error: no driver [storage.no-driver]" in lines
    # at most five pieces of evidence, then how many more
    at = lines.index("      error: no driver [storage.no-driver]")
    assert lines[at + 1 : at + 7] == [f"        - K\\{i}" for i in range(5)] + [
        "        - ... 3 more"]
    assert "  [warn] Network" in lines and "  [pass] Volumes" in lines
    assert "  [skip] HAL: NT 6" in lines
    assert lines[-1] == "Result: NOT READY (1 error(s), 2 warning(s), 1 info(s))"
    bare = CheckReport("x", "ide", "rtl8139", "pc", 1, None, {})
    assert bare.summary_lines() == ["x: READY to boot on ide (machine pc, NIC rtl8139)",
                                    "Guest: unknown",
                                    "Result: READY (0 error(s), 0 warning(s), 0 info(s))"]


def test_junit_carries_registry_text_safely() -> None:
    """Registry-derived text may hold control characters XML 1.0 cannot carry."""
    r = CheckReport("disk\x01.img", "ide", "e1000", "pc", 2, None, {})
    c = CheckResult("network", "Network")
    c.add("network.stale-static-ip", ERROR, "NIC \x07Realtek\x00 holds 10.0.0.5\ttab",
          ["Interfaces\\{G}\x1f"])
    r.checks = [c]
    suite = etree.fromstring(r.to_junit()).find("testsuite")
    fail = suite.find("testcase/failure")
    assert fail.get("message") == "NIC Realtek holds 10.0.0.5\ttab"
    assert fail.get("type") == "network.stale-static-ip"
    assert "Interfaces\\{G}" in fail.text and "\x1f" not in fail.text
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props == {"image": "disk.img", "bus": "ide", "nic": "e1000", "machine": "pc",
                     "ready": "false"}
    assert suite.get("name") == "p2vimage check ide"
