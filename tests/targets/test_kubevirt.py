"""KubeVirt output: the manifests against KubeVirt's and CDI's published OpenAPI specs.

``k8s_schema.py`` validates strictly (unknown fields refused, values the descriptions
enumerate in prose enforced, the Quantity grammar); the tests add what no schema says:
names and references agree (disk/volume, interface/network, DataVolume), the apiVersion
is the group/version the spec's paths serve, and the device choices equal the libvirt
XML's for the same spec.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from p2vimage import libvirt_xml
from p2vimage.errors import UsageError
from p2vimage.inspection.version import WindowsVersion
from p2vimage.targets.kubevirt import DiskSource, KubevirtVM, kubevirt_name, kubevirt_vm
from p2vimage.targets.vmspec import DiskSpec, DomainSpec
from tests.targets.k8s_schema import CDI, DNS_LABEL, KUBEVIRT, OpenApi
from tests.targets.test_proxmox import FAMILIES


@pytest.fixture(scope="module")
def kubevirt() -> OpenApi:
    return OpenApi(KUBEVIRT)


@pytest.fixture(scope="module")
def cdi() -> OpenApi:
    return OpenApi(CDI)


def spec(**kw) -> DomainSpec:
    base = DomainSpec(
        name="WIN7-PC",
        memory_mib=4096,
        vcpus=2,
        machine="q35",
        firmware="uefi",
        disks=[DiskSpec("/srv/out/sys.qcow2", "qcow2", "virtio")],
        nic_model="virtio",
        mac="52:54:00:12:34:56",
    )
    return replace(base, **kw)


URL = DiskSource(url="https://images.example.org/p2v/sys.qcow2", size=40 * 2**30 + 1)
PVC = DiskSource(pvc="images/win7-sys")


def check(vm: KubevirtVM, kubevirt: OpenApi, cdi: OpenApi) -> None:
    """Everything a cluster would check, and the cross-references it checks later."""
    assert kubevirt.errors(vm.vm, "v1.VirtualMachine") == []
    assert vm.vm["apiVersion"] == kubevirt.group_version_of("v1.VirtualMachine")
    assert vm.vm["kind"] == "VirtualMachine"
    for dv in vm.data_volumes:
        assert cdi.errors(dv, "v1beta1.DataVolume") == []
        # KubeVirt carries its own copy of CDI's DataVolumeSpec (for dataVolumeTemplates)
        assert kubevirt.errors(dv["spec"], "v1beta1.DataVolumeSpec") == []
        assert dv["apiVersion"] == cdi.group_version_of("v1beta1.DataVolume")
        assert dv["kind"] == "DataVolume"
    namespace_rule = cdi.namespace_pattern("v1beta1.DataVolume")
    for doc in vm.documents():
        meta = doc["metadata"]
        assert DNS_LABEL.fullmatch(meta["name"]) and len(meta["name"]) <= 63
        if "namespace" in meta:
            assert namespace_rule.fullmatch(meta["namespace"])
    template = vm.vm["spec"]["template"]["spec"]
    devices = template["domain"]["devices"]
    disk_names = [d["name"] for d in devices["disks"]]
    assert disk_names == [v["name"] for v in template["volumes"]]
    assert len(set(disk_names)) == len(disk_names)
    assert [v["dataVolume"]["name"] for v in template["volumes"]] == [
        dv["metadata"]["name"] for dv in vm.data_volumes]
    assert [i["name"] for i in devices.get("interfaces", [])] == [
        n["name"] for n in template["networks"]]
    assert [d["name"] for d in devices["disks"] if d.get("bootOrder") == 1] == ["disk0"]
    assert list(yaml.safe_load_all(vm.to_yaml())) == vm.documents()


BUSES = ("virtio", "sata", "scsi")
CASES = [(bus, fw, mac, src, FAMILIES[(i * 4 + j) % len(FAMILIES)])
         for i, bus in enumerate(BUSES)
         for j, (fw, mac, src) in enumerate(
             (fw, mac, src) for fw in ("bios", "uefi") for mac, src in
             (("02:00:00:00:00:01", URL), (None, PVC)))]


@pytest.mark.parametrize(("bus", "firmware", "mac", "source", "family"), CASES,
                         ids=[f"{b}-{f}-{'mac' if m else 'nomac'}-{'url' if s.url else 'pvc'}-"
                              f"{fam[0]}" for b, f, m, s, fam in CASES])
def test_manifests_are_valid_for_kubevirt_and_cdi(
        kubevirt: OpenApi, cdi: OpenApi, bus, firmware, mac, source, family) -> None:
    _, ver, _ = family
    s = spec(firmware=firmware, machine="q35" if firmware == "uefi" else "pc", mac=mac,
             disks=[DiskSpec("/srv/out/sys.qcow2", "qcow2", bus),
                    DiskSpec("/srv/out/data.raw", "raw", bus)],
             virtio_scsi=bus == "scsi", localtime=firmware == "bios")
    vm = kubevirt_vm(s, ver, sources=[source, source], namespace="p2v",
                     timezone="Europe/Paris", storage_class="ceph-rbd")
    check(vm, kubevirt, cdi)
    domain = vm.vm["spec"]["template"]["spec"]["domain"]
    assert [d["disk"]["bus"] for d in domain["devices"]["disks"]] == [bus, bus]
    assert ("efi" in domain["firmware"]["bootloader"]) == (firmware == "uefi")
    iface = domain["devices"]["interfaces"][0]
    assert iface.get("macAddress") == mac and iface["model"] == "virtio"
    assert domain["clock"].get("timezone") == ("Europe/Paris" if firmware == "bios" else None)
    assert ("utc" in domain["clock"]) == (firmware == "uefi")


def test_the_prose_rules_were_applied(kubevirt: OpenApi, cdi: OpenApi) -> None:
    """Plain validation accepts any string: the documented value lists must have been
    consulted for the fields whose values matter."""
    for bus, fw, mac, src, (_, ver, _) in CASES:
        s = spec(firmware=fw, disks=[DiskSpec("/a.qcow2", bus=bus)], mac=mac)
        check(kubevirt_vm(s, ver, sources=[src], namespace="p2v"), kubevirt, cdi)
    assert {"v1.DiskTarget.bus", "v1.Interface.model", "v1.Input.type", "v1.Input.bus",
            "v1.VirtualMachineSpec.runStrategy", "v1.RTCTimer.tickPolicy",
            "v1.PITTimer.tickPolicy"} <= kubevirt.prose_checked


@pytest.mark.parametrize("nic", ["virtio", "e1000", "rtl8139"])
def test_every_nic_model_p2vimage_picks_is_one_kubevirt_documents(
        kubevirt: OpenApi, cdi: OpenApi, nic: str) -> None:
    vm = kubevirt_vm(spec(nic_model=nic), FAMILIES[7][1], sources=[URL])
    check(vm, kubevirt, cdi)


def test_no_nic_means_no_pod_interface(kubevirt: OpenApi, cdi: OpenApi) -> None:
    vm = kubevirt_vm(spec(nic_model=None), FAMILIES[7][1], sources=[URL])
    check(vm, kubevirt, cdi)
    template = vm.vm["spec"]["template"]["spec"]
    assert template["networks"] == [] and "interfaces" not in template["domain"]["devices"]
    assert template["domain"]["devices"]["autoattachPodInterface"] is False


def test_multus_network_uses_bridge_binding(kubevirt: OpenApi, cdi: OpenApi) -> None:
    vm = kubevirt_vm(spec(), FAMILIES[7][1], sources=[URL], network="infra/lan-vlan20")
    check(vm, kubevirt, cdi)
    template = vm.vm["spec"]["template"]["spec"]
    assert template["networks"] == [{"name": "default",
                                     "multus": {"networkName": "infra/lan-vlan20"}}]
    assert template["domain"]["devices"]["interfaces"][0]["bridge"] == {}


# --- Windows-version dependent choices --------------------------------------------------


def test_hyperv_enlightenments_only_from_nt_6_1(kubevirt: OpenApi, cdi: OpenApi) -> None:
    for release, ver, _ in FAMILIES:
        vm = kubevirt_vm(spec(), ver, sources=[URL])
        check(vm, kubevirt, cdi)
        domain = vm.vm["spec"]["template"]["spec"]["domain"]
        nt61 = (ver.major, ver.minor) >= (6, 1)
        assert ("hyperv" in domain["features"]) == nt61, release
        assert ("hyperv" in domain["clock"]["timer"]) == nt61, release
        assert domain["features"]["acpi"] == {} and domain["features"]["apic"] == {}


def test_nt5_on_sata_is_warned(kubevirt: OpenApi, cdi: OpenApi) -> None:
    xp = FAMILIES[1][1]
    vm = kubevirt_vm(spec(disks=[DiskSpec("/a.qcow2", bus="sata")], machine="pc",
                          firmware="bios", arch="x86"), xp, sources=[URL])
    check(vm, kubevirt, cdi)
    assert any("no in-box AHCI driver" in w for w in vm.warnings)


# --- the same choices as the libvirt XML ---------------------------------------------


@pytest.mark.parametrize(("bus", "firmware", "mac", "source", "family"), CASES[::2])
def test_device_choices_equal_the_libvirt_xml(bus, firmware, mac, source, family) -> None:
    _, ver, _ = family
    s = spec(firmware=firmware, machine="q35", mac=mac, localtime=firmware == "bios",
             disks=[DiskSpec("/srv/out/sys.qcow2", "qcow2", bus)])
    dom, _ = libvirt_xml.build_domain(s)
    vm = kubevirt_vm(s, ver, sources=[source], namespace="p2v", timezone="Asia/Tokyo")
    domain = vm.vm["spec"]["template"]["spec"]["domain"]
    xml_buses = [t.get("bus") for t in dom.findall("devices/disk[@device='disk']/target")]
    assert [d["disk"]["bus"] for d in domain["devices"]["disks"]] == xml_buses
    xml_nic = dom.find("devices/interface/model").get("type").removesuffix("-transitional")
    assert domain["devices"]["interfaces"][0]["model"] == xml_nic
    assert domain["machine"]["type"] == dom.find("os/type").get("machine")
    assert ("efi" in domain["firmware"]["bootloader"]) == (
        dom.find("os").get("firmware") == "efi")
    assert ("timezone" in domain["clock"]) == (dom.find("clock").get("offset") == "localtime")
    xml_mac = dom.find("devices/interface/mac")
    assert domain["devices"]["interfaces"][0].get("macAddress") == (
        None if xml_mac is None else xml_mac.get("address"))
    timers = {t.get("name"): t.attrib for t in dom.findall("clock/timer")}
    assert domain["clock"]["timer"]["rtc"]["tickPolicy"] == timers["rtc"]["tickpolicy"]
    assert domain["clock"]["timer"]["pit"]["tickPolicy"] == timers["pit"]["tickpolicy"]
    assert domain["clock"]["timer"]["hpet"]["present"] is (timers["hpet"]["present"] == "yes")
    assert domain["cpu"]["cores"] == int(dom.find("cpu/topology").get("cores"))
    assert domain["devices"]["autoattachMemBalloon"] is (
        dom.find("devices/memballoon").get("model") != "none")


def test_i440fx_guest_runs_on_q35_with_transitional_virtio(
        kubevirt: OpenApi, cdi: OpenApi) -> None:
    s = spec(machine="pc", firmware="bios")
    vm = kubevirt_vm(s, FAMILIES[7][1], sources=[URL])
    check(vm, kubevirt, cdi)
    domain = vm.vm["spec"]["template"]["spec"]["domain"]
    assert domain["machine"]["type"] == "q35"
    assert domain["devices"]["useVirtioTransitional"] is True
    assert any("planned for i440fx" in w for w in vm.warnings)
    vm = kubevirt_vm(s, FAMILIES[7][1], sources=[URL], machine="pc")
    check(vm, kubevirt, cdi)
    domain = vm.vm["spec"]["template"]["spec"]["domain"]
    assert domain["machine"]["type"] == "pc"
    assert "useVirtioTransitional" not in domain["devices"]
    assert any("emulatedMachines" in w for w in vm.warnings)
    # nothing virtio: nothing to make transitional
    vm = kubevirt_vm(replace(s, nic_model="e1000", disks=[DiskSpec("/a", bus="sata")]),
                     FAMILIES[7][1], sources=[URL])
    assert "useVirtioTransitional" not in vm.vm["spec"]["template"]["spec"]["domain"]["devices"]


def test_localtime_without_a_zone_is_utc_with_a_warning(kubevirt: OpenApi, cdi: OpenApi) -> None:
    vm = kubevirt_vm(spec(localtime=True), FAMILIES[7][1], sources=[URL])
    check(vm, kubevirt, cdi)
    assert "utc" in vm.vm["spec"]["template"]["spec"]["domain"]["clock"]
    assert any("RTC in local time" in w for w in vm.warnings)


def test_smbios_ids_cpu_and_balloon(kubevirt: OpenApi, cdi: OpenApi) -> None:
    smbios = {"system": {"uuid": "34313236-3935-5A43-4A37-3130304E4E4E", "serial": "CZJ7"}}
    vm = kubevirt_vm(spec(smbios=smbios, uniprocessor_hal=True, vcpus=4, balloon=True,
                          cpu_mode="host-model"), FAMILIES[7][1], sources=[URL])
    check(vm, kubevirt, cdi)
    domain = vm.vm["spec"]["template"]["spec"]["domain"]
    assert domain["firmware"]["uuid"] == "34313236-3935-5a43-4a37-3130304e4e4e"
    assert domain["firmware"]["serial"] == "CZJ7"
    assert domain["cpu"] == {"sockets": 1, "cores": 1, "threads": 1, "model": "host-model"}
    assert domain["devices"]["autoattachMemBalloon"] is True
    assert "model" not in kubevirt_vm(spec(cpu_mode=None), FAMILIES[7][1],
                                      sources=[URL]).vm["spec"]["template"]["spec"][
        "domain"]["cpu"]
    with pytest.raises(UsageError, match="uuid"):
        kubevirt_vm(spec(smbios={"system": {"uuid": "x"}}), FAMILIES[7][1], sources=[URL])
    with pytest.raises(UsageError, match="firmware"):
        kubevirt_vm(spec(firmware="efi"), FAMILIES[7][1], sources=[URL])


# --- names and sources -----------------------------------------------------------------


def test_names_become_dns_labels(kubevirt: OpenApi, cdi: OpenApi) -> None:
    vm = kubevirt_vm(spec(name="SRV_2003 Files"), FAMILIES[3][1], sources=[URL] * 1)
    assert vm.vm["metadata"]["name"] == "srv-2003-files"
    assert any("changed to 'srv-2003-files'" in w for w in vm.warnings)
    long = "X" * 80
    vm = kubevirt_vm(spec(name=long, disks=[DiskSpec(f"/d{i}") for i in range(11)]),
                     FAMILIES[3][1], sources=[URL] * 11)
    check(vm, kubevirt, cdi)
    assert vm.data_volumes[10]["metadata"]["name"].endswith("-disk10")
    for name in ("SRV_2003 Files", "-x-", "", "ÄÖÜ", long, "web.example.com"):
        once = kubevirt_name(name)
        assert kubevirt_name(once) == once and DNS_LABEL.fullmatch(once) and len(once) <= 63


def test_data_volume_sources(kubevirt: OpenApi, cdi: OpenApi) -> None:
    vm = kubevirt_vm(spec(), FAMILIES[7][1], sources=[URL])
    dv = vm.data_volumes[0]["spec"]
    assert dv["source"] == {"http": {"url": URL.url}}
    assert dv["storage"]["resources"]["requests"]["storage"] == "40961Mi"  # rounded up
    vm = kubevirt_vm(spec(), FAMILIES[7][1], sources=[DiskSource(pvc="win7-sys")],
                     namespace="p2v")
    check(vm, kubevirt, cdi)
    assert vm.data_volumes[0]["spec"] == {
        "source": {"pvc": {"namespace": "p2v", "name": "win7-sys"}}, "storage": {}}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"namespace": "P2V"}, "namespace"),
    ({"namespace": "a" * 64}, "namespace"),
    ({"sources": []}, "import source"),
    ({"sources": [DiskSource(url="https://x/y.qcow2")]}, "size of"),
    ({"sources": [DiskSource(url="ftp://x/y.qcow2", size=1)]}, "http"),
    ({"sources": [DiskSource(url="https://x/y", pvc="a/b", size=1)]}, "exactly one"),
    ({"sources": [DiskSource()]}, "exactly one"),
    ({"sources": [DiskSource(pvc="sys")]}, "namespace"),
    ({"sources": [DiskSource(pvc="a/B_C")]}, "bad PVC"),
    ({"sources": [DiskSource(url="https://x/y", size=0)]}, "disk size"),
    ({"machine": "pc-i440fx 7.2"}, "machine type"),
    ({"machine": "virt"}, "machine type"),
    ({"run_strategy": "Sometimes"}, "run strategy"),
    ({"timezone": "Paris time"}, "time zone"),
    ({"network": "Lan"}, "Multus"),
    ({"network": "a/b/c"}, "Multus"),
])
def test_bad_arguments_are_one_line_usage_errors(kwargs, match) -> None:
    args = {"sources": [URL], **kwargs}
    with pytest.raises(UsageError, match=match) as err:
        kubevirt_vm(spec(), FAMILIES[7][1], **args)
    assert "\n" not in str(err.value) and err.value.exit_code == 2


def test_ide_is_refused_kubevirt_has_no_ide(kubevirt: OpenApi) -> None:
    with pytest.raises(UsageError, match="KubeVirt has no IDE bus.*--bus sata"):
        kubevirt_vm(spec(disks=[DiskSpec("/a.raw", "raw", "ide")]), FAMILIES[1][1],
                    sources=[URL])
    documented = kubevirt.definitions["v1.DiskTarget"]["properties"]["bus"]["description"]
    assert "ide" not in documented.lower()  # still true of the published spec


def test_the_checker_itself_rejects_what_kubevirt_would(kubevirt: OpenApi, cdi: OpenApi) -> None:
    vm = kubevirt_vm(spec(), FAMILIES[7][1], sources=[URL]).vm
    domain = vm["spec"]["template"]["spec"]["domain"]
    for path, value in [
        (("devices", "disks", 0, "disk", "bus"), "ide"),
        (("devices", "interfaces", 0, "model"), "vmxnet3"),
        (("cpu", "cores"), "two"),
        (("cpu", "cores"), 0),
        (("cpu", "socket"), 1),
        (("memory", "guest"), "4GB"),
        (("features", "hyperv", "spinlocks", "spinlocks"), 100),
        (("clock", "timer", "rtc", "tickPolicy"), "merge"),
        (("devices", "inputs", 0, "type"), "mouse"),
        (("devices", "disks", 0, "bootOrder"), 0),
        (("devices", "autoattachMemBalloon"), "no"),
    ]:
        bad = yaml.safe_load(yaml.safe_dump(vm))
        node = bad["spec"]["template"]["spec"]["domain"]
        for step in path[:-1]:
            node = node.setdefault(step, {}) if isinstance(step, str) else node[step]
        node[path[-1]] = value
        assert kubevirt.errors(bad, "v1.VirtualMachine"), (path, value)
    assert domain  # the original is untouched and valid
    assert kubevirt.errors(vm, "v1.VirtualMachine") == []
    bad = yaml.safe_load(yaml.safe_dump(vm))
    bad["spec"]["runStrategy"] = "Sometimes"
    bad["spec"]["template"]["spec"]["volumes"][0]["name"] = "Disk_0"
    assert len(kubevirt.errors(bad, "v1.VirtualMachine")) == 2
    dv = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
          "metadata": {"name": "x"}, "spec": {"source": {"http": {}}, "storage": {
              "resources": {"requests": {"storage": "lots"}}}}}
    assert len(cdi.errors(dv, "v1beta1.DataVolume")) == 2  # url required, bad Quantity


def test_to_yaml_is_a_safe_multi_document_stream() -> None:
    server_2022 = WindowsVersion(major=10, minor=0, build=20348, product_type="ServerNT")
    vm = kubevirt_vm(spec(disks=[DiskSpec("/a"), DiskSpec("/b")]), server_2022,
                     sources=[URL, URL])
    text = vm.to_yaml()
    assert text.count("\n---\n") + text.startswith("---\n") == 3
    assert [d["kind"] for d in yaml.safe_load_all(text)] == [
        "DataVolume", "DataVolume", "VirtualMachine"]
    assert "!!" not in text  # plain types only
