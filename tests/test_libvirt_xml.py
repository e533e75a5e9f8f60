"""libvirt domain XML: element shapes per guest type, checked by libvirt's own tools.

Every generated document goes through ``virt-xml-validate FILE domain`` (libvirt's RNG
schema) and ``virsh -c test:///default define FILE`` (libvirt's real parser, no daemon).
The test driver keeps nothing between virsh invocations, so the round trip runs
``define`` and ``dumpxml`` in one virsh command line.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from p2vimage.errors import ConversionError, UsageError
from p2vimage.libvirt_xml import (
    NAME_MAX,
    DiskSpec,
    DomainSpec,
    _dev_name,
    build_domain,
    check_with_libvirt_parser,
    parse_mac,
    parse_memory,
    parse_network,
    sanitise_name,
    to_xml_bytes,
    validate_with_libvirt,
)

VIRTIO_ISO = "/var/lib/libvirt/images/virtio-win.iso"


# --- helpers ----------------------------------------------------------------------------


def write(tmp_path: Path, spec: DomainSpec) -> tuple[etree._Element, list[str], Path]:
    """Build ``spec``, write it to tmp, and re-read it (assertions see the file's bytes)."""
    elem, warnings = build_domain(spec)
    path = tmp_path / f"{elem.findtext('name')}.xml"
    path.write_bytes(to_xml_bytes(elem))
    return etree.parse(str(path)).getroot(), warnings, path


def libvirt_accepts(path: Path) -> etree._Element:
    """Schema-validate and define ``path`` with libvirt; return libvirt's dumpxml of it."""
    proc = subprocess.run(
        ["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout

    proc = subprocess.run(
        ["virsh", "-c", "test:///default", "define", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr

    name = etree.parse(str(path)).findtext("name")
    proc = subprocess.run(
        ["virsh", "-q", "-c", "test:///default", f"define '{path}'; dumpxml '{name}'"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    dumped = etree.fromstring(proc.stdout.encode())
    assert dumped.findtext("name") == name
    # The library's own helpers agree.
    validate_with_libvirt(path)
    assert etree.fromstring(check_with_libvirt_parser(path).encode()).findtext("name") == name
    return dumped


def one(root: etree._Element, xpath: str) -> etree._Element | str:
    found = root.xpath(xpath)
    assert len(found) == 1, f"{xpath}: {found!r}"
    return found[0]


def assert_windows_clock(root: etree._Element, offset: str) -> None:
    assert one(root, "/domain/clock/@offset") == offset
    assert one(root, "/domain/clock/timer[@name='rtc']/@tickpolicy") == "catchup"
    assert one(root, "/domain/clock/timer[@name='pit']/@tickpolicy") == "delay"
    assert one(root, "/domain/clock/timer[@name='hpet']/@present") == "no"
    assert len(root.xpath("/domain/clock/timer")) == 3


def assert_common_devices(root: etree._Element) -> None:
    assert one(root, "/domain/@type") == "kvm"
    assert one(root, "/domain/features/acpi") is not None
    assert one(root, "/domain/features/apic") is not None
    assert one(root, "/domain/devices/input[@type='tablet']/@bus") == "usb"
    assert one(root, "/domain/devices/video/model/@type") == "vga"
    # Per-device boot order only: <os><boot> together with it is refused by libvirt.
    assert root.xpath("/domain/os/boot") == []
    assert len(root.xpath("/domain/devices/disk/boot")) == 1


# --- guest types ----------------------------------------------------------------------------


def test_2003_x86_i440fx_virtio_blk_nic_cdrom_balloon(tmp_path: Path) -> None:
    spec = DomainSpec(
        name="srv2003",
        memory_mib=2048,
        vcpus=2,
        arch="x86",
        machine="pc",
        firmware="bios",
        disks=[DiskSpec("/srv/vm/srv2003.qcow2", "qcow2", "virtio")],
        nic_model="virtio",
        mac="00-1A-2B-3C-4D-5E",
        network="network=default",
        cdrom=VIRTIO_ISO,
        balloon=True,
    )
    root, warnings, path = write(tmp_path, spec)
    assert warnings == []
    assert_common_devices(root)

    assert one(root, "/domain/name/text()") == "srv2003"
    assert one(root, "/domain/memory/@unit") == "MiB"
    assert one(root, "/domain/memory/text()") == "2048"
    assert one(root, "/domain/currentMemory/text()") == "2048"
    assert one(root, "/domain/vcpu/text()") == "2"
    assert one(root, "/domain/cpu/topology/@sockets") == "1"
    assert one(root, "/domain/cpu/topology/@cores") == "2"
    assert one(root, "/domain/os/type/@arch") == "i686"
    assert one(root, "/domain/os/type/@machine") == "pc"
    assert one(root, "/domain/os/type/text()") == "hvm"
    assert root.xpath("/domain/os/@firmware") == []
    assert one(root, "/domain/features/pae") is not None
    assert_windows_clock(root, "localtime")

    disk = one(root, "/domain/devices/disk[@device='disk']")
    assert disk.get("model") is None  # conventional PCI: plain virtio is transitional
    assert one(disk, "target/@dev") == "vda"
    assert one(disk, "target/@bus") == "virtio"
    assert one(disk, "driver/@type") == "qcow2"
    assert one(disk, "source/@file") == "/srv/vm/srv2003.qcow2"
    assert one(disk, "boot/@order") == "1"

    cd = one(root, "/domain/devices/disk[@device='cdrom']")
    assert one(cd, "target/@bus") == "ide"
    assert one(cd, "target/@dev") == "hda"
    assert one(cd, "source/@file") == VIRTIO_ISO
    assert one(cd, "driver/@type") == "raw"
    assert one(cd, "readonly") is not None

    assert one(root, "/domain/devices/interface/@type") == "network"
    assert one(root, "/domain/devices/interface/source/@network") == "default"
    assert one(root, "/domain/devices/interface/model/@type") == "virtio"
    assert one(root, "/domain/devices/interface/mac/@address") == "00:1a:2b:3c:4d:5e"
    assert one(root, "/domain/devices/memballoon/@model") == "virtio"
    assert one(root, "/domain/devices/controller[@type='usb']/@model") == "piix3-uhci"

    dumped = libvirt_accepts(path)
    assert one(dumped, "/domain/os/type/@machine") == "pc"
    assert one(dumped, "/domain/os/type/@arch") == "i686"
    assert one(dumped, "/domain/devices/interface/model/@type") == "virtio"
    assert one(dumped, "/domain/devices/interface/mac/@address") == "00:1a:2b:3c:4d:5e"
    assert one(dumped, "/domain/devices/memballoon/@model") == "virtio"
    assert one(dumped, "/domain/clock/@offset") == "localtime"


def test_xp_ide_rtl8139_uniprocessor_hal_gets_one_vcpu(tmp_path: Path) -> None:
    spec = DomainSpec(
        name="xp-desk",
        memory_mib=parse_memory("512M"),
        vcpus=4,
        arch="x86",
        machine="pc",
        disks=[DiskSpec("/srv/vm/xp.raw", "raw", "ide")],
        nic_model="rtl8139",
        mac=None,
        network="bridge=br0",
        uniprocessor_hal=True,
    )
    root, warnings, path = write(tmp_path, spec)
    assert warnings == ["uniprocessor HAL: 1 vCPU instead of 4"]
    assert_common_devices(root)
    assert one(root, "/domain/vcpu/text()") == "1"
    assert one(root, "/domain/cpu/topology/@cores") == "1"
    assert one(root, "/domain/memory/text()") == "512"
    assert one(root, "/domain/os/type/@arch") == "i686"
    assert one(root, "/domain/features/pae") is not None
    assert_windows_clock(root, "localtime")

    assert one(root, "/domain/devices/disk/target/@dev") == "hda"
    assert one(root, "/domain/devices/disk/target/@bus") == "ide"
    assert one(root, "/domain/devices/disk/driver/@type") == "raw"
    assert one(root, "/domain/devices/interface/@type") == "bridge"
    assert one(root, "/domain/devices/interface/source/@bridge") == "br0"
    assert one(root, "/domain/devices/interface/model/@type") == "rtl8139"
    assert root.xpath("/domain/devices/interface/mac") == []  # libvirt makes one up
    assert one(root, "/domain/devices/memballoon/@model") == "none"

    dumped = libvirt_accepts(path)
    assert one(dumped, "/domain/vcpu/text()") == "1"
    assert one(dumped, "/domain/devices/interface/model/@type") == "rtl8139"
    assert one(dumped, "/domain/devices/memballoon/@model") == "none"
    assert one(dumped, "/domain/devices/disk/target/@bus") == "ide"


def test_2003_x64_q35_transitional_models_and_sata_fallback(tmp_path: Path) -> None:
    spec = DomainSpec(
        name="srv2003x64",
        memory_mib=parse_memory("4GiB"),
        vcpus=2,
        arch="x64",
        machine="q35",
        disks=[
            DiskSpec("/srv/vm/sys.qcow2"),
            DiskSpec("/srv/vm/data.qcow2", bus="ide"),
        ],
        nic_model="virtio",
        mac="52:54:00:aa:bb:cc",
        virtio_transitional=True,
        cdrom=VIRTIO_ISO,
        balloon=True,
    )
    root, warnings, path = write(tmp_path, spec)
    assert "q35 has no IDE: disk /srv/vm/data.qcow2 attached to SATA instead" in warnings
    assert any("no in-box AHCI driver" in w for w in warnings)
    assert_common_devices(root)

    assert one(root, "/domain/memory/text()") == "4096"
    assert one(root, "/domain/os/type/@arch") == "x86_64"
    assert one(root, "/domain/os/type/@machine") == "q35"
    assert root.xpath("/domain/features/pae") == []
    assert_windows_clock(root, "localtime")

    sys_disk = one(root, "/domain/devices/disk[target/@dev='vda']")
    assert sys_disk.get("model") == "virtio-transitional"
    assert one(sys_disk, "target/@bus") == "virtio"
    assert one(sys_disk, "boot/@order") == "1"
    data = one(root, "/domain/devices/disk[@device='disk'][target/@bus='sata']")
    assert one(data, "target/@dev") == "sda"
    assert data.get("model") is None
    cd = one(root, "/domain/devices/disk[@device='cdrom']")
    assert one(cd, "target/@bus") == "sata"  # no IDE on q35
    assert one(cd, "target/@dev") == "sdb"
    assert root.xpath("//target[@bus='ide']") == []

    assert one(root, "/domain/devices/interface/model/@type") == "virtio-transitional"
    assert one(root, "/domain/devices/memballoon/@model") == "virtio-transitional"
    assert {c.get("model") for c in root.xpath("/domain/devices/controller[@type='usb']")} == {
        "ich9-ehci1",
        "ich9-uhci1",
        "ich9-uhci2",
        "ich9-uhci3",
    }

    dumped = libvirt_accepts(path)
    assert one(dumped, "/domain/os/type/@machine") == "q35"
    assert one(dumped, "/domain/devices/disk[target/@dev='vda']/@model") == "virtio-transitional"
    assert one(dumped, "/domain/devices/interface/model/@type") == "virtio-transitional"
    assert one(dumped, "/domain/devices/memballoon/@model") == "virtio-transitional"


def test_2019_x64_uefi_q35_virtio_scsi_realtime_is_universal(tmp_path: Path) -> None:
    spec = DomainSpec(
        name="srv2019",
        memory_mib=8192,
        vcpus=4,
        arch="x64",
        machine="q35",
        firmware="uefi",
        disks=[DiskSpec("/srv/vm/c.qcow2", bus="scsi"), DiskSpec("/srv/vm/d.raw", "raw", "scsi")],
        nic_model="e1000",
        mac="0A:00:27:00:00:01",
        network="network=lan",
        localtime=False,
        virtio_scsi=True,
    )
    root, warnings, path = write(tmp_path, spec)
    assert warnings == []
    assert_common_devices(root)
    assert one(root, "/domain/os/@firmware") == "efi"
    assert root.xpath("/domain/os/loader") == []  # firmware auto-selection
    assert one(root, "/domain/os/type/@arch") == "x86_64"
    assert one(root, "/domain/os/type/@machine") == "q35"
    assert root.xpath("/domain/features/pae") == []
    assert_windows_clock(root, "utc")

    assert root.xpath("/domain/devices/disk/target/@dev") == ["sda", "sdb"]
    assert root.xpath("/domain/devices/disk/target/@bus") == ["scsi", "scsi"]
    assert root.xpath("/domain/devices/disk/driver/@type") == ["qcow2", "raw"]
    assert one(root, "/domain/devices/controller[@type='scsi']/@model") == "virtio-scsi"
    assert one(root, "/domain/devices/interface/model/@type") == "e1000"
    assert one(root, "/domain/devices/interface/source/@network") == "lan"
    assert one(root, "/domain/devices/interface/mac/@address") == "0a:00:27:00:00:01"
    assert one(root, "/domain/devices/memballoon/@model") == "none"
    assert root.xpath("/domain/devices/disk[@device='cdrom']") == []

    dumped = libvirt_accepts(path)
    assert one(dumped, "/domain/os/@firmware") == "efi"
    assert one(dumped, "/domain/os/type/@machine") == "q35"
    assert one(dumped, "/domain/clock/@offset") == "utc"
    assert one(dumped, "/domain/devices/controller[@type='scsi']/@model") == "virtio-scsi"


def test_several_disks_named_in_order_and_only_the_first_boots(tmp_path: Path) -> None:
    spec = DomainSpec(
        name="two-disks",
        memory_mib=1024,
        arch="x64",
        disks=[
            DiskSpec("/srv/vm/sys.qcow2"),
            DiskSpec("/srv/vm/data1.qcow2"),
            DiskSpec("/srv/vm/data2.raw", "raw", "sata"),
            DiskSpec("/srv/vm/data3.raw", "raw", "scsi"),
            DiskSpec("/srv/vm/old.raw", "raw", "ide"),
        ],
        cdrom=VIRTIO_ISO,
    )
    root, warnings, path = write(tmp_path, spec)
    assert warnings == []
    targets = root.xpath("/domain/devices/disk/target")
    assert [(t.get("dev"), t.get("bus")) for t in targets] == [
        ("vda", "virtio"),
        ("vdb", "virtio"),
        ("sda", "sata"),
        ("sdb", "scsi"),  # SATA and SCSI share the sd namespace
        ("hda", "ide"),
        ("hdb", "ide"),  # the CD-ROM
    ]
    assert one(root, "/domain/devices/disk[boot]/target/@dev") == "vda"
    assert root.xpath("/domain/devices/interface") == []  # nic_model None: no NIC
    dumped = libvirt_accepts(path)
    assert len(dumped.xpath("/domain/devices/disk")) == 6


def test_smbios_strings_for_oem_guest(tmp_path: Path) -> None:
    smbios = {
        "bios": {"vendor": "Dell Inc.", "version": "A07", "date": "03/14/2006", "release": "1.7"},
        "system": {
            "manufacturer": "Dell Inc.",
            "product": "PowerEdge 2850",
            "serial": "7XK9P1J",
            "uuid": "4C4C4544-0042-3510-8052-B4C04F4A4D31",
            "family": "",  # unset DMI strings are skipped
        },
    }
    spec = DomainSpec(
        name="oem",
        memory_mib=1024,
        arch="x86",
        disks=[DiskSpec("/srv/vm/oem.qcow2", bus="ide")],
        nic_model="e1000",
        smbios=smbios,
    )
    root, warnings, path = write(tmp_path, spec)
    assert warnings == []
    assert one(root, "/domain/sysinfo/@type") == "smbios"
    assert one(root, "/domain/os/smbios/@mode") == "sysinfo"
    assert one(root, "/domain/sysinfo/bios/entry[@name='vendor']/text()") == "Dell Inc."
    assert one(root, "/domain/sysinfo/bios/entry[@name='date']/text()") == "03/14/2006"
    assert one(root, "/domain/sysinfo/system/entry[@name='product']/text()") == "PowerEdge 2850"
    assert one(root, "/domain/sysinfo/system/entry[@name='serial']/text()") == "7XK9P1J"
    assert root.xpath("/domain/sysinfo/system/entry[@name='family']") == []
    uuid = "4c4c4544-0042-3510-8052-b4c04f4a4d31"
    assert one(root, "/domain/sysinfo/system/entry[@name='uuid']/text()") == uuid
    assert one(root, "/domain/uuid/text()") == uuid  # libvirt requires them equal

    dumped = libvirt_accepts(path)
    assert one(dumped, "/domain/uuid/text()") == uuid
    assert one(dumped, "/domain/os/smbios/@mode") == "sysinfo"
    assert one(dumped, "/domain/sysinfo/system/entry[@name='serial']/text()") == "7XK9P1J"


@pytest.mark.parametrize(
    "smbios, message",
    [
        ({"bios": {"date": "2006-03-14"}}, "mm/dd/yy"),
        ({"bios": {"release": "one"}}, "major.minor"),
        ({"system": {"colour": "red"}}, "entry 'colour'"),
        ({"processor": {"version": "x"}}, "section 'processor'"),
        ({"system": {"uuid": "not-a-uuid"}}, "uuid"),
        ({"system": {"product": "bad\x01value"}}, "control characters"),
    ],
)
def test_bad_smbios_is_a_usage_error(smbios: dict, message: str) -> None:
    spec = DomainSpec(name="x", memory_mib=512, disks=[DiskSpec("/a.qcow2")], smbios=smbios)
    with pytest.raises(UsageError, match=re.escape(message)):
        build_domain(spec)


# --- other build behaviour ------------------------------------------------------------------


def test_name_is_sanitised_with_a_warning_and_paths_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = DomainSpec(
        name="  Bürorechner / Séville (XP)  ",
        memory_mib=512,
        arch="x86",
        disks=[DiskSpec("out/sys.qcow2")],
        cdrom="virtio-win.iso",
    )
    root, warnings, path = write(tmp_path, spec)
    assert one(root, "/domain/name/text()") == "Burorechner-Seville-XP"
    assert warnings == [
        "domain name '  Bürorechner / Séville (XP)  ' changed to 'Burorechner-Seville-XP' "
        "(libvirt-safe)"
    ]
    assert one(root, "/domain/devices/disk[@device='disk']/source/@file") == str(
        tmp_path / "out" / "sys.qcow2"
    )
    assert one(root, "/domain/devices/disk[@device='cdrom']/source/@file") == str(
        tmp_path / "virtio-win.iso"
    )
    libvirt_accepts(path)


def test_block_device_disk(tmp_path: Path) -> None:
    spec = DomainSpec(name="blk", memory_mib=512, disks=[DiskSpec("/dev/vg0/win", "raw")])
    root, _, path = write(tmp_path, spec)
    disk = one(root, "/domain/devices/disk")
    assert disk.get("type") == "block"
    assert one(disk, "source/@dev") == "/dev/vg0/win"
    libvirt_accepts(path)


def test_large_memory_on_x86_and_uefi_x86_warn(tmp_path: Path) -> None:
    spec = DomainSpec(
        name="big32",
        memory_mib=8192,
        arch="x86",
        firmware="uefi",
        disks=[DiskSpec("/a.qcow2", bus="sata")],
        machine="q35",
    )
    root, warnings, path = write(tmp_path, spec)
    assert any("most 32-bit Windows editions use at most 4 GiB" in w for w in warnings)
    assert any("ovmf-ia32" in w for w in warnings)
    assert one(root, "/domain/features/pae") is not None
    libvirt_accepts(path)


def test_pc_ignores_transitional_flag_and_cpu_mode_none(tmp_path: Path) -> None:
    spec = DomainSpec(
        name="pc-legacy",
        memory_mib=512,
        arch="x86",
        machine="pc",
        disks=[DiskSpec("/a.qcow2")],
        nic_model="virtio",
        virtio_transitional=True,
        balloon=True,
        cpu_mode=None,
    )
    root, warnings, path = write(tmp_path, spec)
    assert warnings == []
    assert root.xpath("//@model[. = 'virtio-transitional']") == []
    assert one(root, "/domain/devices/interface/model/@type") == "virtio"
    assert root.xpath("/domain/cpu/@mode") == []
    libvirt_accepts(path)


def test_too_many_ide_devices_is_a_conversion_error() -> None:
    disks = [DiskSpec(f"/d{i}.raw", "raw", "ide") for i in range(4)]
    spec = DomainSpec(name="ide", memory_mib=512, disks=disks)
    build_domain(spec)  # four fit
    spec.cdrom = "/x.iso"
    with pytest.raises(ConversionError, match="4 slots"):
        build_domain(spec)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"arch": "arm64"}, "architecture"),
        ({"machine": "isapc"}, "machine type"),
        ({"firmware": "coreboot"}, "firmware"),
        ({"nic_model": "ne2k_pci"}, "NIC model"),
        ({"disks": []}, "at least one disk"),
        ({"disks": [DiskSpec("/a.img", "qcow2", "floppy")]}, "disk bus"),
        ({"disks": [DiskSpec("/a.img", "iso")]}, "disk format"),
        ({"disks": [DiskSpec("")]}, "empty path"),
        ({"vcpus": 0}, "vCPU"),
        ({"memory_mib": 0}, "memory"),
        ({"network": "default"}, "network=NAME"),
        ({"mac": "ff:ff:ff:ff:ff:ff"}, "multicast"),
        ({"cpu_mode": "custom"}, "CPU mode"),
    ],
)
def test_bad_spec_is_a_usage_error(change: dict, message: str) -> None:
    fields = {"name": "x", "memory_mib": 512, "disks": [DiskSpec("/a.qcow2")], **change}
    with pytest.raises(UsageError, match=re.escape(message)):
        build_domain(DomainSpec(**fields))


def test_to_xml_bytes_is_pretty_utf8_with_declaration() -> None:
    elem, _ = build_domain(
        DomainSpec(
            name="x",
            memory_mib=512,
            disks=[DiskSpec("/a.qcow2")],
            smbios={"system": {"manufacturer": "Señor PC"}},
        )
    )
    data = to_xml_bytes(elem)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<domain type=\"kvm\">\n")
    assert b"\n  <name>x</name>\n" in data
    assert "Señor PC".encode() in data
    assert etree.fromstring(data).findtext("name") == "x"


def test_dev_names_follow_libvirt_beyond_z() -> None:
    assert [_dev_name("vd", i) for i in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == [
        "vda",
        "vdb",
        "vdz",
        "vdaa",
        "vdab",
        "vdaz",
        "vdba",
        "vdzz",
        "vdaaa",
    ]


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("WIN2003-SRV", "WIN2003-SRV"),
        ("my server", "my-server"),
        ("a/b\\c", "a-b-c"),
        ("--.x.--", "x"),
        ("", "p2v-windows"),
        ("///", "p2v-windows"),
        ("日本語", "p2v-windows"),
        ("x" * 100, "x" * NAME_MAX),
        ("a" * 63 + "-b", "a" * 63),
        ("srv_01.corp", "srv_01.corp"),
    ],
)
def test_sanitise_name(raw: str, expected: str) -> None:
    assert sanitise_name(raw) == expected


@given(st.text())
def test_sanitise_name_always_safe_and_idempotent(raw: str) -> None:
    name = sanitise_name(raw)
    assert re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?", name)
    assert 1 <= len(name) <= NAME_MAX
    assert sanitise_name(name) == name


# --- option parsing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("network=default", ("network", "default")),
        ("bridge=br0", ("bridge", "br0")),
        (" network = lan-10 ", ("network", "lan-10")),
        ("Bridge=virbr1", ("bridge", "virbr1")),
    ],
)
def test_parse_network(text: str, expected: tuple[str, str]) -> None:
    assert parse_network(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "default",
        "br0",
        "network=",
        "bridge=",
        "nic=br0",
        "=br0",
        "bridge=a/b",
        "network=my net",
        "bridge=averyveryverylongbridge",
        "bridge=br0:1",
        "bridge=..",
        "",
    ],
)
def test_parse_network_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_network(text)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("bad network")


@pytest.mark.parametrize(
    "text, mib",
    [
        ("2048", 2048),
        ("2G", 2048),
        ("512M", 512),
        ("4GiB", 4096),
        ("1.5g", 1536),
        ("768MiB", 768),
        (" 8 GiB ", 8192),
        ("1T", 1048576),
    ],
)
def test_parse_memory(text: str, mib: int) -> None:
    assert parse_memory(text) == mib


@pytest.mark.parametrize(
    "text, message",
    [
        ("0", "more than zero"),
        ("0G", "more than zero"),
        ("", "expected"),
        ("lots", "expected"),
        ("-1G", "expected"),
        ("2X", "unit"),
        ("512K", "unit"),
        ("4GB", "ambiguous"),
        ("1.3M", "whole number"),
        ("2 G B", "expected"),
    ],
)
def test_parse_memory_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_memory(text)


@pytest.mark.parametrize(
    "text, mac",
    [
        ("52:54:00:12:34:56", "52:54:00:12:34:56"),
        ("00-1A-2B-3C-4D-5E", "00:1a:2b:3c:4d:5e"),
        ("001a2b3c4d5e", "00:1a:2b:3c:4d:5e"),
        (" 0:1a:2b:3c:4d:5 ", "00:1a:2b:3c:4d:05"),
    ],
)
def test_parse_mac(text: str, mac: str) -> None:
    assert parse_mac(text) == mac


@pytest.mark.parametrize(
    "text, message",
    [
        ("01:00:5e:00:00:01", "multicast"),
        ("ff:ff:ff:ff:ff:ff", "multicast"),
        ("00:00:00:00:00:00", "all-zero"),
        ("52:54:00:12:34", "six hex octets"),
        ("52:54:00:12:34:5g", "six hex octets"),
        ("52:54-00:12:34:56", "six hex octets"),
        ("", "six hex octets"),
        ("52:54:00:12:34:56:78", "six hex octets"),
    ],
)
def test_parse_mac_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_mac(text)


@given(st.binary(min_size=6, max_size=6))
def test_parse_mac_round_trip(raw: bytes) -> None:
    text = "-".join(f"{b:02X}" for b in raw)
    if raw[0] & 1 or not any(raw):
        with pytest.raises(UsageError):
            parse_mac(text)
    else:
        assert parse_mac(text) == ":".join(f"{b:02x}" for b in raw)


# --- libvirt refuses broken documents -------------------------------------------------------


def _good_xml(tmp_path: Path) -> tuple[Path, bytes]:
    elem, _ = build_domain(DomainSpec(name="broken", memory_mib=512, disks=[DiskSpec("/a.img")]))
    return tmp_path / "broken.xml", to_xml_bytes(elem)


def test_unknown_bus_fails_validate_with_libvirt(tmp_path: Path) -> None:
    path, data = _good_xml(tmp_path)
    path.write_bytes(data.replace(b'bus="virtio"', b'bus="floppybus"'))
    with pytest.raises(ConversionError) as info:
        validate_with_libvirt(path)
    assert "fails to validate" in str(info.value)
    assert "\n" not in str(info.value)


def test_relative_disk_path_passes_the_parser_but_not_the_schema(tmp_path: Path) -> None:
    path, data = _good_xml(tmp_path)
    path.write_bytes(data.replace(b'file="/a.img"', b'file="a.img"'))
    check_with_libvirt_parser(path)  # test:///default lets it through ...
    with pytest.raises(ConversionError):
        validate_with_libvirt(path)  # ... the schema does not


def test_os_boot_with_device_boot_fails_the_parser(tmp_path: Path) -> None:
    path, data = _good_xml(tmp_path)
    path.write_bytes(data.replace(b"</type>", b'</type>\n    <boot dev="hd"/>'))
    validate_with_libvirt(path)  # schema-valid ...
    with pytest.raises(ConversionError, match="per-device boot elements"):
        check_with_libvirt_parser(path)  # ... but libvirt's parser refuses it


def test_multicast_mac_fails_both(tmp_path: Path) -> None:
    path, data = _good_xml(tmp_path)
    iface = (
        b'<interface type="network"><mac address="01:00:5e:00:00:01"/>'
        b'<source network="default"/></interface></devices>'
    )
    path.write_bytes(data.replace(b"</devices>", iface))
    with pytest.raises(ConversionError):
        validate_with_libvirt(path)
    with pytest.raises(ConversionError, match="unicast"):
        check_with_libvirt_parser(path)


def test_unreadable_xml_is_a_conversion_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.xml"
    path.write_text("<domain")
    with pytest.raises(ConversionError):
        check_with_libvirt_parser(path)
    with pytest.raises(ConversionError):
        validate_with_libvirt(tmp_path / "missing.xml")
