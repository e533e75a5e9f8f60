"""check/report.py: findings grouped by check, readiness, and the JSON/JUnit/text forms."""

from __future__ import annotations

from lxml import etree

from p2vimage.check.report import CheckReport, CheckResult


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
