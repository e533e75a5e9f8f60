"""guest/disks.py: the appliance's disk names and the host-side facts of its disks."""

from __future__ import annotations

from p2vimage.guest.disks import device_name, disk_index, disk_of


def test_disk_names_follow_linux() -> None:
    assert [device_name(i) for i in (0, 1, 25, 26, 27, 701, 702)] == [
        "/dev/sda", "/dev/sdb", "/dev/sdz", "/dev/sdaa", "/dev/sdab", "/dev/sdzz", "/dev/sdaaa"]
    for i in range(800):
        assert disk_index(device_name(i)) == i
    assert disk_of("/dev/sdab12") == "/dev/sdab"
    assert disk_of("/dev/sda") is None and disk_of("/dev/mapper/ldm_vol_x") is None
    assert disk_index("/dev/vda") is None
