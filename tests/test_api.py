"""The public API as its users call it: every example of docs/api.md, run in order.

The examples run in one namespace, in a directory holding what they name (the demo
capture, a virtio-win ISO, its hives, a Clonezilla directory), with ``str`` and ``Path``
arguments, from the main thread and from a worker thread, with a progress callback and a
cancel: three appliance launches in all (inspect, convert, check).  The README's Python
example must be one of them, word for word, so it is run too.  Afterwards the namespace
the examples leave is checked against the outputs on disk.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest

import p2vimage
from fixtures import clonezilla as cz
from fixtures import profiles, virtio_iso
from fixtures.images import DEMO, build_hives
from p2vimage import interrupt

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)

pytestmark = pytest.mark.appliance


def blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


@pytest.fixture(scope="module")
def examples(images, tmp_path_factory) -> dict:
    """The doc's examples run in a directory of their own; their namespace and outputs."""
    work = tmp_path_factory.mktemp("api-doc")
    os.symlink(images[DEMO], work / "server.img")
    virtio_iso.build_iso("current", work / "virtio-win.iso")
    system, software = build_hives(profiles.PROFILES[DEMO], tmp_path_factory.mktemp("hives"))
    (work / "SYSTEM").write_bytes(Path(system).read_bytes())
    (work / "SOFTWARE").write_bytes(Path(software).read_bytes())
    os.symlink(cz.clonezilla_dir("winxp-x86", "gz", "300kB"), work / "2012-04-19-img")
    namespace: dict = {"__name__": "api_doc"}
    old = Path.cwd()
    os.chdir(work)
    try:
        for i, code in enumerate(blocks(API_DOC)):
            exec(compile(code, f"{API_DOC.name} block {i + 1}", "exec"), namespace)
    finally:
        os.chdir(old)
    return {"ns": namespace, "dir": work}


def test_every_readme_python_example_is_run_from_the_api_doc() -> None:
    doc = API_DOC.read_text()
    readme = blocks(ROOT / "README.md")
    assert readme, "the README shows the Python API"
    for code in readme:
        assert code in doc, "README's Python example must be in docs/api.md, verbatim"


def test_doc_examples_leave_typed_results_matching_the_outputs(examples) -> None:
    ns, work = examples["ns"], examples["dir"]
    report = ns["report"]
    assert isinstance(report, p2vimage.ConversionReport)
    assert isinstance(report.inspection, p2vimage.Inspection)
    assert isinstance(report.plan, p2vimage.Plan)
    assert isinstance(report.devices, p2vimage.Devices)
    assert isinstance(report.virtio, p2vimage.VirtioSummary)
    # The JSON beside the output is the report's to_dict(), typed objects flattened.
    on_disk = json.loads((work / "server.json").read_text())
    assert on_disk == json.loads(json.dumps(report.to_dict(), default=str))
    assert on_disk["plan"]["virtio"] == on_disk["virtio"]
    assert on_disk["inspection"]["product_name"] == profiles.DEMO_2003.product_name
    # Paths given as Path came back as the outputs, relative as given.
    assert report.outputs == ["server.qcow2"] and report.xml == "server.xml"
    assert (work / "check.junit.xml").read_bytes().startswith(b"<?xml")
    assert isinstance(ns["result"], p2vimage.RestoreResult)
    assert ns["retry"] is False
    # The progress callback saw the copy run to its end, bytes only.
    assert ns["seen"][-1].done == ns["seen"][-1].total
    # The cancelled restore left nothing; the other one wrote its disk.
    assert not (work / "disk.qcow2").exists() and not (work / "disk.qcow2.partial").exists()
    assert ns["cancel"].is_set() and not interrupt.received() and ns["stopped"]
    assert not (work / "never.qcow2").exists()
    # check from a worker thread with Path arguments, its phases reported as steps
    assert ns["result"] is not None and all(p.unit == "steps" for p in ns["steps"])
    assert isinstance(ns["hive_check"], p2vimage.CheckReport)


def test_a_cancel_of_one_job_does_not_stop_another(tmp_path: Path) -> None:
    """Two restores in two threads; cancelling one leaves the other to finish."""
    src = cz.clonezilla_dir("winxp-x86", "gz", "300kB")
    stop = p2vimage.Cancel()
    errors: dict[str, BaseException] = {}
    results: dict[str, p2vimage.RestoreResult] = {}

    def run(name: str, cancel: p2vimage.Cancel | None) -> None:
        def progress(p: p2vimage.Progress) -> None:
            if cancel is not None and p.done:
                cancel.cancel("stopped by the test")
        try:
            results[name] = p2vimage.restore_clonezilla(
                src, tmp_path / f"{name}.raw", progress=progress, cancel=cancel)
        except p2vimage.P2VError as exc:
            errors[name] = exc

    threads = [threading.Thread(target=run, args=("stopped", stop)),
               threading.Thread(target=run, args=("kept", None))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(errors.get("stopped"), p2vimage.Interrupted), errors
    assert str(errors["stopped"]).startswith("stopped by the test")
    assert "kept" in results and not errors.get("kept")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.raw"]


def test_a_library_call_installs_no_signal_handler(tmp_path: Path) -> None:
    import signal
    import sys

    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.excepthook)
    seen: list[tuple] = []

    def progress(p: p2vimage.Progress) -> None:
        seen.append((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM),
                     sys.excepthook))

    src = cz.clonezilla_dir("winxp-x86", "gz", "300kB")
    p2vimage.restore_clonezilla(str(src), str(tmp_path / "d.raw"), progress=progress)
    assert seen and all(s == before for s in seen)


def test_cancel_and_progress_are_checked_before_any_work(tmp_path: Path) -> None:
    src = cz.clonezilla_dir("winxp-x86", "gz", "300kB")
    with pytest.raises(p2vimage.UsageError, match="cancel: a p2vimage.Cancel"):
        p2vimage.restore_clonezilla(src, tmp_path / "a.raw", cancel="yes")  # type: ignore
    with pytest.raises(p2vimage.UsageError, match="progress: a callable"):
        p2vimage.restore_clonezilla(src, tmp_path / "b.raw", progress=True)  # type: ignore
    with pytest.raises(p2vimage.UsageError, match="progress: a callable"):
        p2vimage.convert(str(tmp_path / "none.img"), tmp_path / "c.qcow2", progress=1)
    with pytest.raises(p2vimage.UsageError, match="source-format"):
        p2vimage.convert(str(tmp_path / "none.img"), tmp_path / "d.qcow2",
                         source_format="bogus")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kw, message", [
    ({"dry_run": "yes"}, "dry_run: True or False"),
    ({"name": 7}, "name: a string"),
    ({"memory_mib": -1}, "memory: a positive whole number"),
    ({"bus": "floppy"}, "--bus floppy"),
    ({"ip": [1]}, "ip: strings"),
    ({"ip": 5}, "ip: a string or a list"),
    ({"driver_files": 3}, "driver_files: a path or a list"),
    ({"colour": "red"}, "unknown option(s) colour"),
])
def test_bad_values_are_usage_errors_before_any_work(tmp_path: Path, kw: dict,
                                                     message: str) -> None:
    missing = tmp_path / "no-such.img"  # never opened: the values are refused first
    with pytest.raises(p2vimage.UsageError, match=re.escape(message)):
        p2vimage.convert(str(missing), tmp_path / "out.qcow2", **kw)
    assert list(tmp_path.iterdir()) == []


def test_source_must_be_a_path(tmp_path: Path) -> None:
    with pytest.raises(p2vimage.UsageError, match="source: a path"):
        p2vimage.convert(42, tmp_path / "out.qcow2")  # type: ignore[arg-type]


def _hinted_types(tp: object, seen: set[type]) -> None:
    """Every p2vimage class reachable from ``tp`` through type hints, into ``seen``."""
    import inspect
    import typing

    for arg in typing.get_args(tp):
        _hinted_types(arg, seen)
    if inspect.isclass(tp) and tp.__module__.startswith("p2vimage.") and tp not in seen:
        seen.add(tp)
        for hint in typing.get_type_hints(tp).values():  # raises on an unresolvable name
            _hinted_types(hint, seen)


def test_every_public_type_resolves_its_type_hints() -> None:
    """Serializers and schema generators call typing.get_type_hints on the report's
    dataclasses, all the way down: every name in every annotation must resolve (the
    plan names its upper layers' types under TYPE_CHECKING only; the package binds
    them)."""
    import inspect
    import typing

    seen: set[type] = set()
    for name in p2vimage.__all__:
        obj = getattr(p2vimage, name)
        if inspect.isfunction(obj):
            for hint in typing.get_type_hints(obj).values():
                _hinted_types(hint, seen)
        else:
            _hinted_types(obj, seen)
    names = {t.__name__ for t in seen}
    assert {"ConversionReport", "Plan", "NetworkSummary", "PlanContext", "Nic",
            "VendorService", "VirtioMedia", "Inspection", "CheckReport"} <= names
