"""``convert --to proxmox|kubevirt|local``: options, files beside the output, the report.

The target options are refused before any work (exit 2, one line, nothing written).
Dry runs of fixture profiles and one real conversion give the PVE config and the
KubeVirt manifests, checked against the published schemas (tests/targets/pve_schema.py,
k8s_schema.py) and against the libvirt XML of the same conversion: same bus, NIC,
machine, firmware, clock.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from lxml import etree

import p2vimage
from p2vimage.destinations import (
    KubevirtTarget,
    LibvirtTarget,
    LocalTarget,
    ProxmoxTarget,
    as_target,
    parse_to,
)
from p2vimage.errors import UsageError
from tests.conftest import run_cli
from tests.targets import fake_pve
from tests.targets.k8s_schema import CDI, KUBEVIRT, OpenApi
from tests.targets.pve_schema import PveSchema
from tests.targets.same_choices import pve_config, same_choices_as_xml

# The report's bus (convert's word) as the libvirt XML, PVE and KubeVirt name it.
XML_BUS = {"virtio-blk": "virtio", "virtio-scsi": "scsi", "ide": "ide", "sata": "sata"}


# -- --to and its options ---------------------------------------------------------------


def test_parse_to_gives_typed_targets() -> None:
    assert parse_to("local") == LocalTarget()
    assert parse_to("libvirt") == LibvirtTarget(uri="qemu:///system", pool="default")
    assert parse_to("libvirt:qemu+ssh://h/system", pool="vms", start=True) == LibvirtTarget(
        uri="qemu+ssh://h/system", pool="vms", start=True)
    assert parse_to("proxmox", vmid=120, storage="tank") == ProxmoxTarget(120, "tank")
    assert parse_to("kubevirt", pvc="img", namespace="vms") == KubevirtTarget(
        namespace="vms", pvc="img")
    assert parse_to("proxmox", vmid=120, iso="local:iso/v.iso", agent=True) == ProxmoxTarget(
        120, iso="local:iso/v.iso", agent=True)
    assert parse_to("kubevirt", pvc="img", storage_class="ceph-rbd") == KubevirtTarget(
        pvc="img", storage_class="ceph-rbd")
    assert as_target("local") == LocalTarget() and as_target(None) == LocalTarget()


@pytest.mark.parametrize(("to", "kw", "match"), [
    ("vmware", {}, "expected one of local, libvirt"),
    ("proxmox:x", {"vmid": 100}, "only libvirt takes a URI"),
    ("proxmox", {}, "--to proxmox needs --vmid"),
    ("proxmox", {"vmid": 120, "pool": "x"}, "--pool: not an option of --to proxmox"),
    ("local", {"vmid": 120}, "--vmid: not an option of --to local"),
    ("kubevirt", {}, "--image-url URL .* or --pvc NAME"),
    ("kubevirt", {"pvc": "a", "image_url": "http://x/"}, "--image-url URL .* or --pvc"),
    ("libvirt:nouri", {}, "not a libvirt URI"),
    ("libvirt", {"domain_type": "xen"}, "--domain-type 'xen'"),
    ("kubevirt", {"pvc": "a", "iso": "local:iso/v.iso"}, "--iso: not an option of --to kub"),
    ("local", {"agent": True}, "--agent: not an option of --to local"),
    ("proxmox", {"vmid": 120, "storage_class": "fast"},
     "--storage-class: not an option of --to proxmox"),
])
def test_parse_to_refuses(to: str, kw: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        parse_to(to, **kw)


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "proxmox", "--vmid", "5"], "bad VMID 5"),
    (["--to", "proxmox", "--vmid", "120", "--storage", "9bad"], "storage ID '9bad'"),
    (["--to", "proxmox", "--vmid", "120", "--bridge", "br 0"], "bridge"),
    (["--to", "kubevirt", "--image-url", "ftp://x/"], "bad image URL"),
    (["--to", "kubevirt", "--pvc", "a", "--namespace", "Bad_NS"], "bad namespace"),
    (["--to", "kubevirt", "--pvc", "a", "--bus", "ide"], "KubeVirt has no IDE bus"),
    (["--to", "kubevirt", "--pvc", "a", "--timezone", "not a zone"], "bad time zone"),
    # --iso/--agent are proxmox's, --storage-class kubevirt's; their values are checked too
    (["--to", "kubevirt", "--pvc", "a", "--iso", "local:iso/v.iso"],
     "--iso: not an option of --to kubevirt"),
    (["--to", "libvirt:qemu:///system", "--agent"], "--agent: not an option of --to libvirt"),
    (["--agent"], "--agent: not an option of --to local"),
    (["--to", "proxmox", "--vmid", "120", "--storage-class", "fast"],
     "--storage-class: not an option of --to proxmox"),
    (["--to", "proxmox", "--vmid", "120", "--iso", "/srv/virtio-win.iso"], "bad ISO volume"),
    (["--to", "kubevirt", "--pvc", "a", "--storage-class", "Fast_SSD"], "bad storage class"),
])
def test_bad_target_values_are_exit_2_before_any_work(
        tmp_path: Path, args: list[str], message: str) -> None:
    img = tmp_path / "src.img"
    img.write_bytes(b"\0" * 1024 * 1024)
    r = run_cli("convert", str(img), "-o", str(tmp_path / "out.qcow2"), *args, "--json")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and r.stderr.count("\n") == 1
    assert json.loads(r.stdout)["error"]["exit_code"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.img"]


def test_an_output_path_is_needed_except_for_libvirt(tmp_path: Path) -> None:
    img = tmp_path / "src.img"
    img.write_bytes(b"\0" * 1024)
    r = run_cli("convert", str(img), "--to", "proxmox", "--vmid", "120")
    assert r.returncode == 2 and "-o/--output is needed for --to proxmox" in r.stderr
    with pytest.raises(UsageError, match="output is a target and target= is given"):
        p2vimage.convert(str(img), LibvirtTarget(), target="local")


# -- what the targets get, against the schemas and the libvirt XML ------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["win2000-x86", "win7-x64"])  # win2019: the KubeVirt one
def test_dry_run_to_proxmox_of_fixture_profiles(images: dict[str, Path], tmp_path: Path,
                                                name: str) -> None:
    out = tmp_path / "vm.qcow2"
    report = p2vimage.convert(images[name], out, dry_run=True,
                              target=ProxmoxTarget(vmid=4242, storage="local-lvm"))
    docs = report.target.documents
    assert sorted(docs) == ["4242.conf", "4242.qm.sh"] and report.target.created == []
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing
    assert PveSchema().config_errors(docs["4242.conf"]) == []
    # The dry run's devices are those of the domain XML it would write.
    d = report.devices
    conf = pve_config(docs["4242.conf"])
    assert conf["machine"] == d.machine and conf["cores"] == str(d.vcpus)
    assert conf["bios"] == ("ovmf" if d.firmware == "uefi" else "seabios")
    assert conf["boot"] == f"order={XML_BUS[d.bus]}0"
    assert conf["memory"] == str(d.memory_mib)


@pytest.mark.slow
def test_dry_run_cli_to_proxmox_with_an_iso_and_the_agent(images: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """``--iso`` and ``--agent`` from the command line reach the VM config."""
    from fixtures.images import DEMO

    r = run_cli("convert", str(images[DEMO]), "-o", str(tmp_path / "vm.qcow2"), "--to",
                "proxmox", "--vmid", "4243", "--iso", "local:iso/virtio-win-0.1.271.iso",
                "--agent", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    text = doc["target"]["documents"]["4243.conf"]
    assert PveSchema().config_errors(text) == []
    conf = pve_config(text)
    assert conf["agent"] == "1"
    (cdrom,) = [k for k, v in conf.items() if v.endswith(",media=cdrom")]
    assert conf[cdrom] == "local:iso/virtio-win-0.1.271.iso,media=cdrom"
    script = doc["target"]["documents"]["4243.qm.sh"]  # qm create gets them too
    assert "--agent 1" in script and f"--{cdrom} local:iso/virtio-win-0.1.271.iso" in script
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_dry_run_to_kubevirt_of_a_uefi_profile(images: dict[str, Path], tmp_path: Path) -> None:
    r = run_cli("convert", str(images["win2019-x64"]), "-o", str(tmp_path / "vm.qcow2"),
                "--to", "kubevirt", "--image-url", "https://img.example.org/p2v/",
                "--namespace", "migrated", "--timezone", "Europe/Berlin",
                "--storage-class", "ceph-rbd", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    dv, vm = yaml.safe_load_all(doc["target"]["documents"]["vm.kubevirt.yaml"])
    assert OpenApi(KUBEVIRT).errors(vm, "v1.VirtualMachine") == []
    assert OpenApi(CDI).errors(dv, "v1beta1.DataVolume") == []
    assert dv["spec"]["source"]["http"]["url"] == "https://img.example.org/p2v/vm.qcow2"
    assert dv["spec"]["storage"]["storageClassName"] == "ceph-rbd"
    dev = doc["devices"]
    domain = vm["spec"]["template"]["spec"]["domain"]
    assert domain["devices"]["disks"][0]["disk"]["bus"] == XML_BUS[dev["bus"]]
    assert domain["devices"]["interfaces"][0]["model"] == dev["nic_model"]
    assert ("efi" in domain["firmware"]["bootloader"]) == (dev["firmware"] == "uefi")
    assert domain["clock"]["timezone"] == "Europe/Berlin"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_real_conversion_to_proxmox_writes_config_and_script(
        images: dict[str, Path], tmp_path: Path) -> None:
    from fixtures.images import DEMO

    out = tmp_path / "srv.qcow2"
    r = run_cli("convert", str(images[DEMO]), "-o", str(out), "--to", "proxmox",
                "--vmid", "310", "--storage", "local-lvm", "--bridge", "vmbr1", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    conf, script = tmp_path / "310.conf", tmp_path / "310.qm.sh"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "310.conf", "310.qm.sh", "srv.json", "srv.qcow2", "srv.xml"]
    assert doc["target"]["created"] == [f"file {p}" for p in (
        out, tmp_path / "srv.xml", tmp_path / "srv.json", conf, script)]
    assert json.loads((tmp_path / "srv.json").read_text())["target"] == doc["target"]
    text = conf.read_text()
    assert text == doc["target"]["documents"]["310.conf"]
    assert PveSchema().config_errors(text) == []
    config = pve_config(text)
    assert "bridge=vmbr1" in config["net0"] and config["ostype"] == "w2k3"
    same_choices_as_xml(etree.parse(str(tmp_path / "srv.xml")).getroot(), config, None)
    assert script.stat().st_mode & 0o111
    # The script, run against stand-ins for qm/pvesm, creates that VM from that image.
    run = fake_pve.run_script(script.read_text(), tmp_path / "pve")
    assert run.returncode == 0, run.stderr
    assert [c[:3] for c in run.calls if c[0] == "importdisk"] == [
        ["importdisk", "310", str(out)]]
