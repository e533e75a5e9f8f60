"""The device choices of a target's documents against the libvirt XML of the same conversion
(used by the ``--to`` tests and by every profile's conversion in ``tests/e2e``)."""

from __future__ import annotations

from lxml import etree

PVE_BUS = {"ide": "ide", "sata": "sata", "virtio": "virtio", "scsi": "scsi"}


def same_choices_as_xml(dom: etree._Element, pve: dict[str, str] | None,
                        kv: dict | None) -> None:
    """The target's bus, NIC, machine, firmware and clock are the domain XML's."""
    bus = dom.find("devices/disk[@device='disk']/target").get("bus")
    nic = dom.find("devices/interface/model")
    nic = nic.get("type").removesuffix("-transitional") if nic is not None else None
    machine = dom.find("os/type").get("machine")
    efi = dom.find("os").get("firmware") == "efi"
    localtime = dom.find("clock").get("offset") == "localtime"
    if pve is not None:
        assert pve["boot"] == f"order={PVE_BUS[bus]}0" and f"{PVE_BUS[bus]}0" in pve
        assert pve["net0"].split("=")[0].split(",")[0] == nic
        assert pve["machine"] == machine
        assert pve["bios"] == ("ovmf" if efi else "seabios")
        assert pve["localtime"] == ("1" if localtime else "0")
    if kv is not None:
        domain = kv["spec"]["template"]["spec"]["domain"]
        assert domain["devices"]["disks"][0]["disk"]["bus"] == bus
        assert domain["devices"]["interfaces"][0]["model"] == nic
        assert ("efi" in domain["firmware"]["bootloader"]) == efi
        assert domain["machine"]["type"] == "q35"  # KubeVirt's, whatever the XML's


def pve_config(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines())
