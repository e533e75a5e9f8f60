"""Several conversions at once never share or corrupt each other's work.

Four conversions run together — in four threads of this process
(``p2vimage.convert``), then as four CLI processes — of two different guests
(so an output holding the other guest's data, or another job's edits, is
seen), while a fifth job aims at an output already being written and must be
refused at once, leaving the first to finish intact.  Every output is then
read back from its own disk, in one read-only appliance that also holds the
outputs of a sequential conversion of the same sources: the registry values
and the staged files' hashes must equal the plan and the sequential run's, the
boot sectors the sequential run's; the domain XML is valid and points at its
own disk; the report on disk is the one returned.  Sources keep their hashes,
and each round's private TMPDIR (job work directories, overlays, thin copies,
libguestfs' own files) ends empty.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lxml import etree

import p2vimage
from fixtures.images import DEMO
from p2vimage.guest.appliance import Job
from p2vimage.guest.registry import Hive
from p2vimage.sources.image import open_source
from tests.conftest import P2VIMAGE, private_tmpdir, run_cli, sha256

pytestmark = [pytest.mark.slow, pytest.mark.appliance]

GUESTS = [DEMO, "winxp-x86"]  # the smallest fixture images (a few MiB allocated each)
JOBS = [GUESTS[i % 2] for i in range(4)]


@pytest.fixture(scope="module")
def sequential(images, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Each guest converted alone, the reference for the parallel runs."""
    out = tmp_path_factory.mktemp("sequential")
    refs = {}
    for name in GUESTS:
        report = p2vimage.convert(images[name], out / f"{name}.qcow2")
        refs[name] = (out / f"{name}.qcow2", report.to_dict())
    return refs


def _norm(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def _readback(g, disk: str, plan: dict, tmp: Path) -> dict:
    """What the conversion left on ``disk``: planned values, deletions, files, boot sector."""
    part = f"{disk}1"
    g.mount_ro(part, "/")
    try:
        hives = {}
        for name in {e["hive"] for e in plan["registry"]} | {d["hive"] for d in plan["deletions"]}:
            local = tmp / f"{disk.rsplit('/', 1)[1]}-{name}"
            g.download(g.case_sensitive_path(f"/windows/system32/config/{name.lower()}"),
                       str(local))
            hives[name] = Hive(local, name=name)
        values = {}
        for e in plan["registry"]:
            h = hives[e["hive"]]
            path = f"{e['control_set']}\\{e['key']}" if e["control_set"] else e["key"]
            v = h.raw(h.node(path), e["name"])
            value = v.data.hex() if v is not None and e["type"] == 3 else (
                _norm(v.value) if v is not None else None)
            values[f"{e['hive']}\\{path}\\{e['name']}"] = (v.type if v else None, value)
        gone = {}
        for d in plan["deletions"]:
            path = f"{d['control_set']}\\{d['key']}" if d["control_set"] else d["key"]
            gone[f"{d['hive']}\\{path}"] = hives[d["hive"]].node(path) is None
        files = {f["guest_path"]: g.checksum("sha256", g.case_sensitive_path(f["guest_path"]))
                 for f in plan["files"] if f["action"] == "write"}
    finally:
        g.umount_all()
    return {"values": values, "gone": gone, "files": files,
            "boot": g.pread_device(part, 512, 0)}


def _expected(plan: dict) -> dict:
    values = {}
    for e in plan["registry"]:
        path = f"{e['control_set']}\\{e['key']}" if e["control_set"] else e["key"]
        values[f"{e['hive']}\\{path}\\{e['name']}"] = (e["type"], _norm(e["value"]))
    gone = {f"{d['hive']}\\{d['control_set']}\\{d['key']}" if d["control_set"]
            else f"{d['hive']}\\{d['key']}": True for d in plan["deletions"]}
    files = {f["guest_path"]: f["sha256"] for f in plan["files"] if f["action"] == "write"}
    return {"values": values, "gone": gone, "files": files}


def _as_json(doc: dict) -> dict:
    return json.loads(json.dumps(doc, default=str))


def _verify(outputs: list[Path], docs: list[dict], sequential, tmp: Path) -> None:
    """Every parallel output against its plan and against the sequential conversion."""
    for out, doc, guest in zip(outputs, docs, JOBS, strict=True):
        doc, ref_doc = _as_json(doc), _as_json(sequential[guest][1])  # CLI docs are JSON
        assert doc["plan"] == ref_doc["plan"], out
        assert doc["inspection"] == ref_doc["inspection"], out
        assert doc["outputs"] == [str(out)] and doc["appliance_launches"] == 1
        assert json.loads(out.with_suffix(".json").read_text()) == doc  # the one returned
        xml = out.with_suffix(".xml")
        subprocess.run(["virt-xml-validate", str(xml), "domain"], check=True,
                       capture_output=True)
        root = etree.parse(str(xml)).getroot()
        assert root.findtext("name") == etree.parse(
            str(sequential[guest][0].with_suffix(".xml"))).getroot().findtext("name")
        assert [d.find("source").get("file")
                for d in root.findall("devices/disk[@device='disk']")] == [str(out.resolve())]
        assert sorted(p.name for p in out.parent.iterdir()
                      if p.name.startswith(out.stem + ".")) == sorted(
            [out.name, xml.name, out.with_suffix(".json").name])
    disks = [sequential[g][0] for g in GUESTS] + outputs
    with Job([open_source(d) for d in disks]) as job:
        job.launch()
        devs = job.g.list_devices()
        ref = {g: _readback(job.g, devs[i], sequential[g][1]["plan"], tmp)
               for i, g in enumerate(GUESTS)}
        for i, (out, guest) in enumerate(zip(outputs, JOBS, strict=True)):
            got = _readback(job.g, devs[len(GUESTS) + i], sequential[guest][1]["plan"], tmp)
            assert got == ref[guest], out
            want = _expected(sequential[guest][1]["plan"])
            assert {k: got[k] for k in want} == want, out
            assert got["values"] and got["files"], out  # the comparison compared something


def _leftovers(work: Path) -> list[str]:
    return sorted(str(p.relative_to(work)) for p in work.rglob("*"))


def test_four_conversions_in_threads(images, sequential, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for k, v in private_tmpdir(work).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(tempfile, "tempdir", str(work))  # gettempdir() caches its answer
    out = tmp_path / "out"
    out.mkdir()
    before = {g: sha256(images[g]) for g in GUESTS}
    env_before, cwd_before = dict(os.environ), os.getcwd()
    outputs = [out / f"t{i}.qcow2" for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(p2vimage.convert, images[g], o)
                   for g, o in zip(JOBS, outputs, strict=True)]
        # A fifth job on t0's output while t0 runs (--overwrite: the lock must be what
        # stops it): refused at once, from the main thread, touching nothing.
        partial = outputs[0].with_name(outputs[0].name + ".partial")
        deadline = time.monotonic() + 60
        while not partial.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        t0 = time.monotonic()
        with pytest.raises(p2vimage.OutputBusyError, match="being written by another"):
            p2vimage.convert(images[DEMO], outputs[0], overwrite=True)
        assert time.monotonic() - t0 < 10
        assert not futures[0].done() and partial.exists()
        docs = [f.result(timeout=1200).to_dict() for f in futures]
    # Nothing process-wide was touched: the KVM->TCG fallback (taken by every job on a host
    # whose KVM is unusable) is a setting of each job's own handle, never the environment.
    assert dict(os.environ) == env_before and os.getcwd() == cwd_before
    assert {g: sha256(images[g]) for g in GUESTS} == before
    assert _leftovers(work) == []
    _verify(outputs, docs, sequential, tmp_path)


def test_four_cli_processes(images, sequential, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, **private_tmpdir(work)}
    out = tmp_path / "out"
    out.mkdir()
    before = {g: sha256(images[g]) for g in GUESTS}
    outputs = [out / f"p{i}.qcow2" for i in range(4)]
    procs = [subprocess.Popen([str(P2VIMAGE), "convert", str(images[g]), "-o", str(o), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for g, o in zip(JOBS, outputs, strict=True)]
    try:
        partial = outputs[0].with_name(outputs[0].name + ".partial")
        deadline = time.monotonic() + 60
        while not partial.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        r = run_cli("convert", str(images[DEMO]), "-o", str(outputs[0]), "--overwrite",
                    env=private_tmpdir(work))
        assert r.returncode == 5, r.stderr  # OutputBusyError: temporary, retry later
        assert r.stderr.count("\n") == 1 and "being written by another conversion" in r.stderr
        assert procs[0].poll() is None and partial.exists()
        results = [p.communicate(timeout=1200) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr
    docs = [json.loads(stdout) for stdout, _ in results]
    assert {g: sha256(images[g]) for g in GUESTS} == before
    assert _leftovers(work) == []
    _verify(outputs, docs, sequential, tmp_path)


def test_request_stop_interrupts_worker_threads(images, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker threads install no signal handlers; the main thread stops them all with
    request_stop() (what it calls on Ctrl-C): each raises Interrupted and cleans up."""
    from p2vimage import interrupt

    work = tmp_path / "work"
    work.mkdir()
    for k, v in private_tmpdir(work).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    out = tmp_path / "out"
    out.mkdir()
    outputs = [out / f"s{i}.qcow2" for i in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(p2vimage.convert, images[g], o)
                       for g, o in zip(GUESTS, outputs, strict=True)]
            deadline = time.monotonic() + 60
            while len(list(work.glob("p2vimage-*/overlay-0.qcow2"))) < 2:
                assert time.monotonic() < deadline and not any(f.done() for f in futures)
                time.sleep(0.05)
            interrupt.request_stop()
            for f in futures:
                with pytest.raises(p2vimage.Interrupted):
                    f.result(timeout=600)
    finally:
        interrupt.clear_stop()
    assert list(out.iterdir()) == []
    assert _leftovers(work) == []
