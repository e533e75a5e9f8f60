"""Proxmox VE output: every key and value against PVE's published API schema.

The schema is PVE's own (``pve-qemu-api.json``, see ``pve_schema.py`` for how it is
read); ostype is checked against the schema's description of each value, the device
choices against the libvirt XML rendered from the same spec, and the ``qm`` script by
running it against stand-ins for ``qm``/``pvesm`` that log every call.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from p2vimage import libvirt_xml
from p2vimage.errors import ConversionError, UsageError
from p2vimage.inspection import Inspection
from p2vimage.inspection.version import WindowsVersion
from p2vimage.targets.proxmox import ProxmoxVM, proxmox_vm, pve_name, pve_ostype
from p2vimage.targets.vmspec import DiskSpec, DomainSpec
from tests.targets import fake_pve
from tests.targets.pve_schema import PveSchema


@pytest.fixture(scope="module")
def schema() -> PveSchema:
    return PveSchema()


def version(name: str, major: int, minor: int, build: int | None, kind: str) -> WindowsVersion:
    return WindowsVersion(product_name=name, major=major, minor=minor, build=build,
                          product_type=kind)


# (release, version, the word the schema's description of the chosen ostype must contain)
FAMILIES = [
    ("2000", version("Microsoft Windows 2000", 5, 0, 2195, "ServerNT"), "2000"),
    ("XP", version("Microsoft Windows XP", 5, 1, 2600, "WinNT"), "XP"),
    ("XP x64", version("Microsoft Windows XP", 5, 2, 3790, "WinNT"), "XP"),
    ("2003", version("Microsoft Windows Server 2003", 5, 2, 3790, "ServerNT"), "2003"),
    ("2003 R2 DC", version("Microsoft Windows Server 2003 R2", 5, 2, 3790, "LanmanNT"), "2003"),
    ("Vista", version("Windows Vista (TM) Business", 6, 0, 6002, "WinNT"), "Vista"),
    ("2008", version("Windows Server (R) 2008 Standard", 6, 0, 6003, "ServerNT"), "2008"),
    ("7", version("Windows 7 Professional", 6, 1, 7601, "WinNT"), "7"),
    # NT 6.1: the schema names only the client ("Windows 7"); PVE's GUI lists win7 as
    # "7/2008r2" (pve-manager Utils.js kvm_ostypes), and 2012 R2 sits with 8 likewise.
    ("2008 R2", version("Windows Server 2008 R2 Standard", 6, 1, 7601, "ServerNT"), "7"),
    ("8", version("Windows 8 Pro", 6, 2, 9200, "WinNT"), "8"),
    ("2012", version("Windows Server 2012 Standard", 6, 2, 9200, "ServerNT"), "2012"),
    ("8.1", version("Windows 8.1 Pro", 6, 3, 9600, "WinNT"), "8"),
    ("2012 R2", version("Windows Server 2012 R2 Standard", 6, 3, 9600, "ServerNT"), "2012r2"),
    ("10", version("Windows 10 Pro", 10, 0, 19045, "WinNT"), "10"),
    ("2016", version("Windows Server 2016 Standard", 10, 0, 14393, "ServerNT"), "2016"),
    ("2019", version("Windows Server 2019 Datacenter", 10, 0, 17763, "ServerNT"), "2019"),
    # Windows 11 still calls itself "Windows 10" in ProductName: the build decides.
    ("11", version("Windows 10 Pro", 10, 0, 22631, "WinNT"), "11"),
    ("11, no build", version("Windows 11 Pro", 10, 0, None, "WinNT"), "11"),
    ("2022", version("Windows Server 2022 Standard", 10, 0, 20348, "ServerNT"), "2022"),
    ("2025", version("Windows Server 2025 Standard", 10, 0, 26100, "ServerNT"), "2025"),
]


def ostype_descriptions(schema: PveSchema) -> dict[str, str]:
    """``{"win8": "Microsoft Windows 8/2012/2012r2", ...}`` from the schema's own text."""
    text = schema.create["ostype"]["verbose_description"]
    return dict(re.findall(r"^(\w+);;\s*(.+?)\s*$", text, re.M))


@pytest.mark.parametrize(("release", "ver", "word"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_ostype_is_the_value_the_schema_describes_for_the_release(
        schema: PveSchema, release: str, ver: WindowsVersion, word: str) -> None:
    ostype = pve_ostype(ver)
    assert ostype in schema.create["ostype"]["enum"]
    described = ostype_descriptions(schema)[ostype]
    assert described.startswith("Microsoft Windows "), described
    releases = described.removeprefix("Microsoft Windows ").lower().split("/")
    assert word.lower() in releases, (release, ostype, described)


def test_ostype_of_an_unknown_or_pre_2000_windows_is_other(schema: PveSchema) -> None:
    assert pve_ostype(WindowsVersion()) == "other"
    assert pve_ostype(version("Windows NT 4.0", 4, 0, 1381, "WinNT")) == "other"
    vm = proxmox_vm(spec(), WindowsVersion(), vmid=100, storage="local-lvm")
    assert vm.config["ostype"] == "other" and "ostype other" in " ".join(vm.warnings)
    assert schema.config_errors(vm.config_text()) == []


def test_an_inspection_serves_as_the_version() -> None:
    insp = Inspection(product_name="Windows Server 2019", major=10, minor=0, build=17763,
                      product_type="ServerNT", arch="x64")
    assert pve_ostype(insp) == "win10"


# --- the config against the schema ---------------------------------------------------


def spec(**kw) -> DomainSpec:
    base = DomainSpec(
        name="SRV2003",
        memory_mib=2048,
        vcpus=2,
        disks=[DiskSpec("/srv/out/SRV2003.qcow2", "qcow2", "virtio")],
        nic_model="virtio",
        mac="52:54:00:12:34:56",
    )
    return replace(base, **kw)


BUSES = ("virtio", "ide", "sata", "scsi")
FIRMWARES = ("bios", "uefi")
MACS = ("52-54-00-AB-CD-EF", None)
CASES = [(bus, fw, mac, FAMILIES[(i * 3 + j) % len(FAMILIES)])
         for i, bus in enumerate(BUSES) for j, (fw, mac) in enumerate(
             (fw, mac) for fw in FIRMWARES for mac in MACS)]


def case_spec(bus: str, firmware: str, mac: str | None, ver: WindowsVersion) -> DomainSpec:
    """As convert builds it: q35 for UEFI, i440fx for BIOS; a data disk on the same bus."""
    nt5 = (ver.major or 0) < 6
    return spec(
        firmware=firmware,
        machine="q35" if firmware == "uefi" else "pc",
        arch="x86" if nt5 else "x64",
        disks=[DiskSpec("/srv/out/sys.qcow2", "qcow2", bus),
               DiskSpec("/srv/out/data.raw", "raw", bus)],
        nic_model="rtl8139" if nt5 else "virtio",
        mac=mac,
        virtio_scsi=bus == "scsi",
        localtime=firmware == "bios",
        virtio_transitional=nt5 and firmware == "uefi",
    )


@pytest.mark.parametrize(("bus", "firmware", "mac", "family"), CASES,
                         ids=[f"{b}-{f}-{'mac' if m else 'nomac'}-{fam[0]}"
                              for b, f, m, fam in CASES])
def test_config_keys_and_values_are_valid_for_pve(
        schema: PveSchema, bus: str, firmware: str, mac: str | None, family) -> None:
    release, ver, _ = family
    vm = proxmox_vm(case_spec(bus, firmware, mac, ver), ver, vmid=4242, storage="local-lvm",
                    iso="local:iso/virtio-win-0.1.271.iso")
    assert schema.config_errors(vm.config_text()) == []
    config = vm.config
    assert config["ostype"] == pve_ostype(ver)
    assert config["bios"] == ("ovmf" if firmware == "uefi" else "seabios")
    assert ("efidisk0" in config) == (firmware == "uefi")
    key = "sata" if bus == "ide" and firmware == "uefi" else bus  # q35 has no IDE
    assert [k for k, _ in vm.disks] == [f"{key}0", f"{key}1"]
    assert config["boot"] == f"order={key}0"
    assert ("scsihw" in config) == (bus == "scsi")
    model, _, rest = config["net0"].partition(",")
    assert rest == "bridge=vmbr0"
    assert model == (f"{case_spec(bus, firmware, mac, ver).nic_model}=52:54:00:AB:CD:EF"
                     if mac else case_spec(bus, firmware, mac, ver).nic_model)
    assert config["localtime"] == ("1" if firmware == "bios" else "0")
    assert (config["sockets"], config["cores"], config["memory"]) == ("1", "2", "2048")
    assert (config["tablet"], config["agent"], config["balloon"]) == ("1", "0", "0")


def test_every_emitted_key_is_a_stored_config_key_not_an_api_argument(
        schema: PveSchema) -> None:
    seen: set[str] = set()
    for bus, fw, mac, (_, ver, _) in CASES:
        seen |= set(proxmox_vm(case_spec(bus, fw, mac, ver), ver, vmid=100,
                               storage="local-lvm").config)
    for key in seen:
        assert schema.property_name(key, schema.stored)[0] is not None, key
        assert key not in schema.api_only


def test_smbios_strings_balloon_cpu_and_hal(schema: PveSchema) -> None:
    smbios = {"system": {"manufacturer": "Hewlett-Packard", "product": "ProLiant DL380 G5",
                         "serial": "CZ,J=7", "uuid": "34313236-3935-5A43-4A37-3130304E4E4E",
                         "family": ""}}
    vm = proxmox_vm(spec(smbios=smbios, balloon=True, cpu_mode=None, uniprocessor_hal=True,
                         vcpus=4), FAMILIES[3][1], vmid=100, storage="local-lvm")
    assert schema.config_errors(vm.config_text()) == []
    assert vm.config["smbios1"].startswith("base64=1,manufacturer=SGV3bGV0dC1QYWNrYXJk,")
    assert "uuid=34313236-3935-5a43-4a37-3130304e4e4e" in vm.config["smbios1"]
    assert "family" not in vm.config["smbios1"]
    assert "balloon" not in vm.config and "cpu" not in vm.config
    assert vm.config["cores"] == "1"
    assert proxmox_vm(spec(), FAMILIES[3][1], vmid=100, storage="x1").config["cpu"] == "host"


def test_name_is_made_a_dns_name_with_a_warning(schema: PveSchema) -> None:
    vm = proxmox_vm(spec(name="Séville_DC 01$"), FAMILIES[3][1], vmid=100, storage="s1")
    assert vm.config["name"] == "Seville-DC-01"
    assert any("changed to 'Seville-DC-01'" in w for w in vm.warnings)
    assert schema.config_errors(vm.config_text()) == []
    for name in ("Séville_DC 01$", "-x-", "", "ÄÖÜ", "a" * 80, "web.example.com"):
        once = pve_name(name)
        assert pve_name(once) == once
        assert schema.value_errors("name", once, schema.stored) == [], name


def test_bridge_from_the_spec_an_argument_or_vmbr0(schema: PveSchema) -> None:
    ver = FAMILIES[7][1]
    assert proxmox_vm(spec(network="bridge=vmbr1"), ver, vmid=100,
                      storage="s1").config["net0"].endswith(",bridge=vmbr1")
    vm = proxmox_vm(spec(network="network=lan"), ver, vmid=100, storage="s1")
    assert vm.config["net0"].endswith(",bridge=vmbr0")
    assert any("no Proxmox VE counterpart" in w for w in vm.warnings)
    vm = proxmox_vm(spec(), ver, vmid=100, storage="s1", bridge="vmbr2")
    assert vm.config["net0"].endswith(",bridge=vmbr2") and vm.warnings == []
    assert "net0" not in proxmox_vm(spec(nic_model=None), ver, vmid=100, storage="s1").config


def test_cdrom_needs_a_pve_volume(schema: PveSchema) -> None:
    ver = FAMILIES[7][1]
    vm = proxmox_vm(spec(cdrom="/srv/virtio-win.iso"), ver, vmid=100, storage="s1")
    assert not any(v.endswith("media=cdrom") for v in vm.config.values())
    assert any("CD-ROM /srv/virtio-win.iso left out" in w for w in vm.warnings)
    vm = proxmox_vm(spec(disks=[DiskSpec("/a.raw", "raw", "ide")]), ver, vmid=100,
                    storage="s1", iso="local:iso/virtio-win.iso")
    assert vm.config["ide1"] == "local:iso/virtio-win.iso,media=cdrom"
    assert schema.config_errors(vm.config_text()) == []


# --- the same choices as the libvirt XML ---------------------------------------------


@pytest.mark.parametrize(("bus", "firmware", "mac", "family"), CASES[::3])
def test_device_choices_equal_the_libvirt_xml(bus, firmware, mac, family) -> None:
    _, ver, _ = family
    s = case_spec(bus, firmware, mac, ver)
    dom, _ = libvirt_xml.build_domain(s)
    vm = proxmox_vm(s, ver, vmid=100, storage="local-lvm")
    xml_buses = [t.get("bus") for t in dom.findall("devices/disk[@device='disk']/target")]
    assert [re.sub(r"\d+$", "", k) for k, _ in vm.disks] == xml_buses
    xml_nic = dom.find("devices/interface/model").get("type").removesuffix("-transitional")
    assert vm.config["net0"].split(",")[0].split("=")[0] == xml_nic
    assert vm.config["machine"] == dom.find("os/type").get("machine")
    assert (vm.config["bios"] == "ovmf") == (dom.find("os").get("firmware") == "efi")
    assert (vm.config["localtime"] == "1") == (dom.find("clock").get("offset") == "localtime")
    mac_elem = dom.find("devices/interface/mac")
    assert (mac_elem is None) == (mac is None)
    if mac_elem is not None:
        assert vm.config["net0"].split(",")[0].split("=")[1].lower() == mac_elem.get("address")


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("vmid", [99, 1_000_000_000, True, "100", -1])
def test_vmid_outside_pves_range_is_refused(schema: PveSchema, vmid) -> None:
    with pytest.raises(UsageError, match="bad VMID"):
        proxmox_vm(spec(), FAMILIES[7][1], vmid=vmid, storage="local-lvm")
    limits = schema.create["vmid"]
    assert (limits["minimum"], limits["maximum"]) == (100, 999_999_999)  # as the check


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"storage": "1local"}, "storage ID"),
    ({"storage": "local lvm"}, "storage ID"),
    ({"storage": ""}, "storage ID"),
    ({"iso": "/srv/virtio-win.iso"}, "ISO volume"),
    ({"iso": "local:iso/a.iso,media=disk"}, "ISO volume"),
    ({"bridge": "vmbr0,firewall=1"}, "bridge"),
    ({"bridge": "a-very-long-bridge"}, "bridge"),
])
def test_bad_arguments_are_one_line_usage_errors(kwargs, match) -> None:
    args = {"vmid": 100, "storage": "local-lvm", **kwargs}
    with pytest.raises(UsageError, match=match) as err:
        proxmox_vm(spec(), FAMILIES[7][1], **args)
    assert "\n" not in str(err.value) and err.value.exit_code == 2


def test_impossible_specs() -> None:
    ver = FAMILIES[7][1]
    with pytest.raises(UsageError, match="at least 16"):
        proxmox_vm(spec(memory_mib=8), ver, vmid=100, storage="s1")
    with pytest.raises(UsageError, match="at least one disk"):
        proxmox_vm(spec(disks=[]), ver, vmid=100, storage="s1")
    with pytest.raises(UsageError, match="NIC model"):
        proxmox_vm(spec(nic_model="vmxnet3"), ver, vmid=100, storage="s1")
    with pytest.raises(UsageError, match="disk bus"):
        proxmox_vm(spec(disks=[DiskSpec("/a", bus="usb")]), ver, vmid=100, storage="s1")
    with pytest.raises(UsageError, match="machine/firmware"):
        proxmox_vm(spec(machine="microvm"), ver, vmid=100, storage="s1")
    with pytest.raises(UsageError, match="machine/firmware"):
        proxmox_vm(spec(firmware="efi"), ver, vmid=100, storage="s1")
    with pytest.raises(UsageError, match="uuid"):
        proxmox_vm(spec(smbios={"system": {"uuid": "nope"}}), ver, vmid=100, storage="s1")
    ide = [DiskSpec(f"/d{i}.raw", "raw", "ide") for i in range(4)]
    with pytest.raises(ConversionError, match="too many IDE"):
        proxmox_vm(spec(disks=ide), ver, vmid=100, storage="s1", iso="local:iso/v.iso")
    virtio = [DiskSpec(f"/d{i}.raw") for i in range(17)]
    with pytest.raises(ConversionError, match="virtio0..virtio15"):
        proxmox_vm(spec(disks=virtio), ver, vmid=100, storage="s1")


def test_the_checker_itself_rejects_what_pve_would(schema: PveSchema) -> None:
    """The examples of the schema's README, and the checks the README's sketch missed."""
    bad = {
        "ostype": "windows10", "sockets": "two", "frobnicate": "1", "vmid": "100",
        "virtio16": "local-lvm:vm-100-disk-1", "ide4": "local:iso/x.iso,media=cdrom",
        "net0": "virtio=BC:24:11:2A:3B:4C,bridge=vmbr0,tag=5000",
        "net1": "virtio=01:24:11:2A:3B:4C,bridge=vmbr0",  # multicast MAC
        "virtio0": "local-lvm:vm-100-disk-0,cache=fast",
        "memory": "8", "boot": "order=virtio0;efidisk0", "agent": "type=virtio",
        "machine": "pc-q36", "smbios1": "base64=1,serial=!!", "localtime": "yes",
        "efidisk0": "local-lvm:vm-100-disk-1,efitype=8m",
    }
    for key, value in bad.items():
        assert schema.config_errors(f"{key}: {value}\n"), (key, value)
    good = ("net0: virtio=BC:24:11:2A:3B:4C,bridge=vmbr0,firewall=1\n"
            "virtio0: local-lvm:vm-100-disk-0,iothread=1,size=32G\n"
            "ide2: local:iso/Win10_22H2.iso,media=cdrom,size=5824M\n"
            "boot: order=virtio0;ide2;net0\nmachine: pc-q35-8.1\n")
    assert schema.config_errors(good) == []


# --- the qm script -------------------------------------------------------------------


def images(tmp_path: Path, vm: ProxmoxVM) -> list[str]:
    out = []
    for i, _ in enumerate(vm.disks):
        path = tmp_path / f"disk {i} 'it''s' $(id).qcow2"
        path.write_bytes(b"QFI\xfb")
        out.append(str(path))
    return out


@pytest.mark.parametrize(("bus", "firmware", "iso"), [
    ("scsi", "uefi", "local:iso/virtio-win.iso"), ("ide", "bios", None),
    ("virtio", "bios", "local:iso/virtio-win.iso"), ("sata", "uefi", None)])
def test_script_creates_exactly_the_config(
        tmp_path: Path, schema: PveSchema, bus, firmware, iso) -> None:
    ver = FAMILIES[9][1]
    vm = proxmox_vm(case_spec(bus, firmware, "52:54:00:00:00:01", ver), ver, vmid=104,
                    storage="local-lvm", iso=iso)
    paths = images(tmp_path, vm)
    run = fake_pve.run_script(vm.qm_script(paths), tmp_path)
    assert run.returncode == 0, run.stderr
    # every qm call with options, checked against the schema of the call it makes
    for argv in run.calls:
        command, vmid, args = argv[0], argv[1], argv[2:]
        assert vmid == "104"
        if command == "create":
            assert schema.command_errors(args, schema.create) == []
            assert not {a[2:] for a in args[::2]} & schema.api_only
        elif command == "set":
            assert schema.command_errors(args, schema.update) == []
        elif command == "importdisk":
            assert args[0] in paths and args[1] == "local-lvm"
    assert [c[0] for c in run.calls if c[0] == "importdisk"] == ["importdisk"] * len(paths)
    assert [c[2] for c in run.calls if c[0] == "importdisk"] == paths  # quoting survived
    # the VM the node ends up with is the config p2vimage wrote, key for key
    assert run.state["config"] == vm.config
    assert schema.config_errors(vm.config_text()) == []


def test_script_refuses_a_vmid_in_use_before_changing_anything(tmp_path: Path) -> None:
    vm = proxmox_vm(spec(), FAMILIES[9][1], vmid=104, storage="local-lvm")
    run = fake_pve.run_script(vm.qm_script(images(tmp_path, vm)), tmp_path,
                              FAKE_QM_EXISTS="104")
    assert run.returncode == 2 and "VM 104 already exists" in run.stderr
    assert [c[0] for c in run.calls] == ["status"]


def test_script_checks_storage_and_images_first(tmp_path: Path) -> None:
    vm = proxmox_vm(spec(), FAMILIES[9][1], vmid=104, storage="tank")
    run = fake_pve.run_script(vm.qm_script(images(tmp_path, vm)), tmp_path,
                              FAKE_PVESM_MISSING="tank")
    assert run.returncode == 2 and "no storage tank" in run.stderr
    assert [c[0] for c in run.calls] == ["status"]
    run = fake_pve.run_script(vm.qm_script([str(tmp_path / "gone.qcow2")]), tmp_path)
    assert run.returncode == 3 and "gone.qcow2 not found" in run.stderr
    assert [c[0] for c in run.calls] == ["status"]
    with pytest.raises(UsageError, match="1 disk image"):
        vm.qm_script(["/a", "/b"])


def test_a_failed_import_leaves_nothing_behind(tmp_path: Path) -> None:
    vm = proxmox_vm(spec(firmware="uefi", machine="q35"), FAMILIES[9][1], vmid=104,
                    storage="local-lvm")
    run = fake_pve.run_script(vm.qm_script(images(tmp_path, vm)), tmp_path,
                              FAKE_QM_FAIL_IMPORT="1")
    assert run.returncode != 0
    assert [c[0] for c in run.calls] == ["status", "create", "importdisk", "destroy"]
    assert run.state["config"] is None and run.state["destroyed"]
    assert "destroying VM 104" in run.stderr


def test_script_default_images_are_the_spec_paths() -> None:
    vm = proxmox_vm(spec(disks=[DiskSpec("/srv/out/my disk.qcow2")]), FAMILIES[9][1],
                    vmid=100, storage="local-lvm")
    assert "import_disk virtio0 '/srv/out/my disk.qcow2'" in vm.qm_script()
