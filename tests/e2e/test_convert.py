"""End-to-end conversion of the demo (Windows Server 2003 SP2 x86) profile.

Everything is read back from the *output* disk, never from the overlay.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest
from lxml import etree

import p2vimage
from fixtures import profiles
from fixtures.images import DEMO
from p2vimage.check import check_job, domain
from p2vimage.formats.pe import read_pe, version_str
from p2vimage.guest.appliance import Job
from p2vimage.sources.image import open_source
from p2vimage.windows.geometry import seabios_heads
from tests.conftest import P2VIMAGE, origin_bytes, plan_of, private_tmpdir, run_cli, sha256

SIZE = 2 << 30  # grown from the 1 GiB capture, as the 2012 procedure grows the disk


@pytest.fixture(scope="module")
def converted(images, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("convert")
    src = images[DEMO]
    before = sha256(src)
    r = run_cli("convert", str(src), "-o", str(out / "filesrv.qcow2"), "--size", "2G", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert sha256(src) == before
    disk = out / "filesrv.qcow2"
    # One appliance: the output (sda) read back and checked, then the source (sdb) checked.
    with Job([open_source(disk), open_source(src)], root="/dev/sda1") as job:
        job.mount_root()
        system = job.hive("SYSTEM")
        reg = {}
        for cs in ("ControlSet001", "ControlSet002"):
            reg[cs] = {
                "AutoReboot": system.raw(system.node(f"{cs}\\Control\\CrashControl"),
                                         "AutoReboot"),
                "intelppm": system.raw(system.node(f"{cs}\\Services\\intelppm"), "Start"),
            }
        boot = job.g.pread_device("/dev/sda1", 512, 0)
        total = struct.unpack_from("<Q", boot, 0x28)[0]
        backup = job.g.pread_device("/dev/sda1", 512, total * 512)
        size = job.g.blockdev_getsize64("/dev/sda")
        parts = job.g.part_list("/dev/sda")
        drivers, origins = {}, {}
        tmp = tmp_path_factory.mktemp("convert-readback")
        for f in (f for f in doc["plan"]["files"] if f["step"] == "ide-drivers"):
            name = f["guest_path"].rsplit("/", 1)[1]
            drivers[name] = job.g.read_file(f"/WINDOWS/system32/drivers/{name}")
            origins[name] = origin_bytes(job.g, f["origin"], name, tmp)
        xml = out / "filesrv.xml"
        checks = {"output": check_job(job, image=str(disk), facts=domain.read_domain(xml),
                                      xml=str(xml))}
        job.use_root("/dev/sdb1")
        checks["source"] = check_job(job, image=str(src), bus="ide")
    assert sha256(src) == before
    return {"checks": checks, "dir": out, "doc": doc, "disk": disk, "reg": reg, "boot": boot,
            "backup": backup, "size": size, "parts": parts, "stderr": r.stderr, "drivers": drivers,
            "origins": origins}


def test_outputs_and_report(converted) -> None:
    out, doc = converted["dir"], converted["doc"]
    assert sorted(p.name for p in out.iterdir()) == ["filesrv.json", "filesrv.qcow2",
                                                      "filesrv.xml"]
    assert doc["appliance_launches"] == 1
    assert json.loads((out / "filesrv.json").read_text()) == doc
    assert doc["inspection"]["product_name"] == profiles.DEMO_2003.product_name
    steps = {e["step"] for e in doc["plan"]["registry"]}
    assert steps == {"crash-autoreboot", "intelppm", "mergeide-cddb", "mergeide-services",
                     "disable-nic-driver"}
    assert all(e["changed"] for e in doc["plan"]["registry"]
               if e["step"] in ("crash-autoreboot", "intelppm"))
    assert {d["what"]: d["value"] for d in doc["plan"]["devices"]} == {
        "machine": "pc", "disk bus": "ide", "nic model": "rtl8139"
    }
    # No --virtio-win is not an error: the fallback is stated with its reason.
    reasons = {d["what"]: d["reason"] for d in doc["plan"]["devices"]}
    assert reasons["disk bus"].startswith("no --virtio-win given")
    assert reasons["nic model"].startswith("no --virtio-win")
    assert list(doc["phases"]) == ["launch", "inspect", "plan", "apply", "check", "bitmap",
                                   "copy"]
    # The in-session check (issue 18 item 5): the edited guest with the XML's devices.
    assert doc["check"]["ready"] is True and doc["check"]["bus"] == "ide"
    assert doc["devices"] == {
        "name": "FILESRV01", "machine": "pc", "firmware": "bios", "bus": "ide",
        "disk_model": None, "nic": "rtl8139", "nic_model": "rtl8139", "mac": None,
        "memory_mib": 1024, "vcpus": 2, "clock": "localtime",
        "balloon": False}
    (disk,) = doc["copy"]  # the host copy of the one disk: used NTFS data + the rest
    assert disk["ntfs_bytes"] > 0 and disk["bytes_read"] == doc["bytes_read"] > 0
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json",
                                      str(converted["disk"])], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["format"] == "qcow2" and "backing-filename" not in info


def test_ide_drivers_on_output(converted) -> None:
    """As the 2012 procedure found on this machine: intelide.sys (and a newer atapi.sys) in
    sp2.cab, the rest only in driver.cab; bytes equal cabextract's."""
    want = {"atapi.sys": ("sp2.cab", "5.2.3790.3959"), "intelide.sys": ("sp2.cab", "5.2.3790.3959"),
            "pciide.sys": ("driver.cab", "5.2.3790.0"), "pciidex.sys": ("driver.cab", "5.2.3790.0")}
    files = {f["guest_path"].rsplit("/", 1)[1]: f for f in converted["doc"]["plan"]["files"]
             if f["step"] == "ide-drivers"}
    assert sorted(files) == sorted(want)
    for name, (cab, version) in want.items():
        f = files[name]
        assert f["action"] == "write" and f["changed"] is True
        assert f["origin"].endswith(f"Driver Cache\\i386\\{cab} ({name})"), f["origin"]
        assert version_str(read_pe(converted["drivers"][name]).file_version) == version
        assert converted["drivers"][name] == converted["origins"][name]


def test_common_nt5_registry_changes_on_output(converted) -> None:
    for cs, values in converted["reg"].items():
        assert values["AutoReboot"].type == 4 and values["AutoReboot"].value == 0, cs
        assert values["intelppm"].type == 4 and values["intelppm"].value == 4, cs


def test_boot_sector_geometry_and_size(converted) -> None:
    boot, backup = converted["boot"], converted["backup"]
    spt, heads, hidden = struct.unpack_from("<HHI", boot, 0x18)
    assert converted["size"] == SIZE
    assert (spt, heads) == (63, seabios_heads(SIZE)) == (63, 128)
    assert hidden == profiles.DEMO_2003.part_start  # never moved
    assert converted["parts"][0]["part_start"] == profiles.DEMO_2003.part_start * 512
    assert backup == boot


def test_seabios_reports_the_boot_sector_geometry(converted, tmp_path: Path) -> None:
    """Boot the output under qemu (TCG) with SeaBIOS' debug console: same LCHS heads/sectors."""
    log = tmp_path / "seabios.log"
    proc = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "64", "-display", "none",
         "-nodefaults", "-serial", "none",
         "-drive", f"file={converted['disk']},format=qcow2,if=ide,snapshot=on",
         "-chardev", f"file,path={log},id=dbg", "-device", "isa-debugcon,iobase=0x402,chardev=dbg"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        match = None
        while time.monotonic() < deadline and match is None:
            time.sleep(0.5)
            text = log.read_text(errors="replace") if log.exists() else ""
            match = re.search(r"LCHS=(\d+)/(\d+)/(\d+)", text)
    finally:
        proc.kill()
        proc.wait()
    assert match, "SeaBIOS printed no drive geometry"
    spt, heads = struct.unpack_from("<HH", converted["boot"], 0x18)
    assert (int(match.group(2)), int(match.group(3))) == (heads, spt)


def test_domain_xml(converted) -> None:
    xml = converted["dir"] / "filesrv.xml"
    root = etree.parse(str(xml)).getroot()
    assert root.findtext("name") == profiles.DEMO_2003.hostname
    assert root.find("os/type").get("arch") == "i686"
    assert root.find("os/type").get("machine").startswith("pc")
    assert root.find("features/pae") is not None
    assert root.find("clock").get("offset") == "localtime"
    timers = {t.get("name"): t.attrib for t in root.findall("clock/timer")}
    assert timers["rtc"]["tickpolicy"] == "catchup" and timers["hpet"]["present"] == "no"
    assert timers["pit"]["tickpolicy"] == "delay"
    disk = root.find("devices/disk[@device='disk']")
    assert disk.find("target").get("bus") == "ide"
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.find("source").get("file") == str(converted["disk"].resolve())
    assert root.find("devices/interface/model").get("type") == "rtl8139"
    assert root.find("devices/memballoon").get("model") == "none"
    assert root.find("devices/input[@type='tablet']") is not None
    assert int(root.findtext("vcpu")) == 2  # multiprocessor HAL
    subprocess.run(["virt-xml-validate", str(xml), "domain"], check=True, capture_output=True)
    r = subprocess.run(["virsh", "-c", "test:///default", "define", str(xml)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_second_run_changes_nothing(converted, tmp_path: Path) -> None:
    """Converting the converted disk again plans the same edits and changes none."""
    report = p2vimage.convert(converted["disk"], tmp_path / "again.qcow2",
                              size=SIZE)
    assert report.appliance_launches == 1
    # (typed: the report's Plan, its changes marked by apply)
    assert report.plan.registry and not any(e.changed for e in report.plan.registry)
    assert not any(b.changed for b in report.plan.boot_sectors)
    # The IDE drivers written the first time are now the installed, newest copies: kept.
    assert len(plan_of(report)["files"]) == 4
    assert all(f["action"] == "keep" and f["changed"] is False for f in plan_of(report)["files"])


def test_dry_run_writes_nothing(images, tmp_path: Path) -> None:
    r = run_cli("convert", str(images[DEMO]), "-o", str(tmp_path / "x.qcow2"), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "Plan:" in r.stdout and "AutoReboot" in r.stdout and "Dry run" in r.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--memory", "lots"], "memory"),
        (["--vcpus", "0"], "--vcpus"),
        (["--network", "wifi"], "network"),
        (["--size", "12Q"], "--size"),
        (["--smbios", "/nonexistent/dmi.txt"], "--smbios"),
        (["--mac", "zz:11"], "MAC"),
        (["--ip", "LAN=1.2.3.4"], "--ip"),
        (["--ip", "LAN=1.2.3.4/8", "--no-firstboot"], "contradict"),
        (["--driver-file", "/nonexistent/pciidex.sys"], "no such file"),
        (["--driver-file", "/etc/hostname"], "not a file this conversion stages"),
    ],
)
def test_bad_options_exit_2_before_launch(images, tmp_path: Path, args, fragment,
                                         launch_watch) -> None:
    r = run_cli("convert", str(images[DEMO]), "-o", str(tmp_path / "x.qcow2"), *args,
                env=launch_watch.env())
    assert r.returncode == 2 and fragment in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == []
    assert launch_watch.count == 0  # refused before any appliance


def test_output_errors(images, tmp_path: Path) -> None:
    src = images[DEMO]
    r = run_cli("convert", str(src), "-o", str(tmp_path / "missing" / "x.qcow2"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run_cli("convert", str(src), "-o", str(src))
    assert r.returncode == 2 and "source image itself" in r.stderr
    existing = tmp_path / "x.qcow2"
    existing.write_bytes(b"keep me")
    r = run_cli("convert", str(src), "-o", str(existing))
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert existing.read_bytes() == b"keep me"


def test_size_smaller_than_partitions(images, tmp_path: Path) -> None:
    r = run_cli("convert", str(images[DEMO]), "-o", str(tmp_path / "x.qcow2"), "--size", "512M")
    assert r.returncode == 2 and "end of the last partition" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_interrupted_convert_leaves_nothing(images, tmp_path: Path) -> None:
    src = images[DEMO]
    before = sha256(src)
    for sig, delay in ((signal.SIGINT, 3), (signal.SIGTERM, 12)):
        proc = subprocess.Popen(
            [str(P2VIMAGE), "convert", str(src), "-o", str(tmp_path / "x.qcow2")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
        )
        time.sleep(delay)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=180)
        if proc.returncode == 0:
            # Finished before the signal: the outputs are whole; start again.
            for p in tmp_path.iterdir():
                p.unlink()
            continue
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert list(tmp_path.iterdir()) == [], err
    assert sha256(src) == before
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_two_disk_machine(images, tmp_path: Path) -> None:
    """Several SOURCEs are one machine: OUT and OUT-2, both disks in the XML."""
    sys_disk, data_disk = images["win2003-x86-2disk"], images["win2003-x86-2disk-disk2"]
    report = p2vimage.convert([sys_disk, data_disk], tmp_path / "two.qcow2")
    assert report.outputs == [str(tmp_path / "two.qcow2"), str(tmp_path / "two-2.qcow2")]
    assert report.appliance_launches == 1
    root = etree.parse(report.xml).getroot()
    sources = [d.find("source").get("file") for d in root.findall("devices/disk[@device='disk']")]
    assert sources == [str((tmp_path / n).resolve()) for n in ("two.qcow2", "two-2.qcow2")]
    with Job([open_source(tmp_path / "two-2.qcow2")]) as job:
        job.launch()
        job.g.mount_ro("/dev/sda1", "/")
        assert job.g.cat("/Shares/Finance/budget-2012.txt").startswith("Q1 42")


def test_full_output_filesystem_leaves_nothing(images, tmp_path: Path) -> None:
    """An output filesystem that fills up *mid-copy*: exit 4, nothing left behind.

    The tmpfs is big enough for the up-front space check; once the check has passed (the
    job's overlay exists in its private TMPDIR, so the appliance is on its way) another
    writer fills the filesystem, as a second job or a log would, and the copy hits ENOSPC.
    """
    mnt = tmp_path / "small"
    mnt.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(mnt)], check=True)
    try:
        proc = subprocess.Popen(
            [str(P2VIMAGE), "convert", str(images[DEMO]), "-o", str(mnt / "x.qcow2")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **private_tmpdir(work)},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(work.glob("p2vimage-*/overlay-0.qcow2")):
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        assert list(work.glob("p2vimage-*/overlay-0.qcow2")), "the job never started"
        filler = mnt / "other-job.bin"
        with open(filler, "wb", buffering=0) as f:  # all of it (the copy writes beside us)
            chunk = bytes(1 << 20)
            try:
                while True:
                    f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        _out, err = proc.communicate(timeout=600)
        assert proc.returncode == 5, err  # InsufficientSpaceError: temporary
        last = err.strip().splitlines()[-1]
        assert last.startswith("p2vimage: error: ") and "No space left" in last, err
        assert "Traceback" not in err
        filler.unlink()
        assert list(mnt.iterdir()) == []
        assert list(work.iterdir()) == []  # overlay, thin copy, appliance files: all gone
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("where", ["output", "tmpdir"])
def test_too_little_space_refused_up_front(images, tmp_path: Path, where: str,
                                           launch_watch) -> None:
    """Too small an output filesystem, or TMPDIR: InsufficientSpaceError (exit 5) in one
    line naming the filesystem, needed and available bytes; nothing launched or written."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    out = (mnt if where == "output" else tmp_path) / "x.qcow2"
    work = mnt / "work" if where == "tmpdir" else tmp_path / "work"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        work.mkdir()
        r = run_cli("convert", str(images[DEMO]), "-o", str(out), "--json",
                    env=launch_watch.env(private_tmpdir(work)))
        assert launch_watch.count == 0  # refused before any appliance
        assert r.returncode == 5, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        err = json.loads(r.stdout)["error"]
        assert err["type"] == "InsufficientSpaceError" and err["exit_code"] == 5
        m = re.search(r"mounted at (\S+) for (.*): (\d+) bytes .* needed, (\d+) bytes",
                      err["message"])
        assert m, err["message"]
        assert m.group(1) == str(mnt)
        assert ("x.qcow2" in m.group(2)) == (where == "output")
        assert ("work directory" in m.group(2)) == (where == "tmpdir")
        assert int(m.group(3)) > int(m.group(4)) > 0
        assert int(m.group(4)) <= 2 << 20
        assert list(work.iterdir()) == []  # no overlay, no appliance directory
        assert not list(out.parent.glob("x.*"))  # no output, no .partial
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    # The library raises the same class, with the figures as attributes.
    mnt2 = tmp_path / "small2"
    mnt2.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt2)], check=True)
    try:
        with pytest.raises(p2vimage.InsufficientSpaceError) as exc:
            p2vimage.convert(images[DEMO], mnt2 / "y.qcow2")
        assert exc.value.filesystem == str(mnt2) and exc.value.exit_code == 5
        assert exc.value.needed > exc.value.available
        assert list(mnt2.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt2)], check=True)


def test_sigkill_leaves_at_most_partial(images, tmp_path: Path) -> None:
    """After SIGKILL nothing is ever at the final path (a .partial may remain)."""
    # Raw output: the thin copy writes straight into x.img.partial for seconds.
    proc = subprocess.Popen(
        [str(P2VIMAGE), "convert", str(images[DEMO]), "-o", str(tmp_path / "x.img"),
         "--format", "raw"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # The .partial exists (claimed, empty) from the start; wait for the copy's first data.
    partial = tmp_path / "x.img.partial"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (partial.exists() and
                                               partial.stat().st_blocks > 0):
        time.sleep(0.05)
        if proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    names = {p.name for p in tmp_path.iterdir()}
    if names == {"x.img", "x.xml", "x.json"}:
        pytest.fail("the conversion finished before SIGKILL; the test proved nothing")
    assert names and names <= {"x.img.partial", "x.xml.partial", "x.json.partial"}, names


def test_check_before_and_after(converted) -> None:
    """The captured 2003 server is not ready for QEMU's IDE (no PIIX3 entry, RAID-BIOS
    geometry); the converted guest is ready on what its own domain XML gives it."""
    src, out = converted["checks"]["source"], converted["checks"]["output"]
    assert not src.ready
    assert src.ids("error")[0] == "storage.no-driver" and src.ids("error")[-1] == "nt5.geometry"
    assert "PIIX3" in src.findings[0].message
    assert out.ready, "\n".join(out.summary_lines())
    assert (out.bus, out.machine, out.nic) == ("ide", "pc", "rtl8139")
    assert [c.status for c in out.checks if c.id == "domain-xml"] == ["passed"]


@pytest.mark.slow
@pytest.mark.appliance
def test_image_files_keep_the_users_order_with_a_warning(images, tmp_path: Path) -> None:
    """Image files are the user's order (the machine may have booted from another disk than
    Windows'): data disk first stays first, and the report says Windows is on source 2."""
    sys_disk, data_disk = images["win2003-x86-2disk"], images["win2003-x86-2disk-disk2"]
    r = run_cli("convert", str(data_disk), str(sys_disk), "-o", str(tmp_path / "x.qcow2"),
                "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["sources"] == [str(data_disk), str(sys_disk)]
    assert [w for w in doc["warnings"] if "boot) disk" in w] == [
        f"Windows is on source 2 ({sys_disk}), but the first source becomes the VM's first "
        "(boot) disk; list the system disk first unless the machine booted from the other one"]
    assert os.listdir(tmp_path) == []
