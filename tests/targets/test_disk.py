"""targets/disk.py: the order and names of the output disks."""

from __future__ import annotations

from pathlib import Path


def test_output_order_puts_the_system_disk_first(tmp_path: Path) -> None:
    """Output k is source order[k]: the system disk first, the others in their own order;
    a Clonezilla directory's disks are named in the report, image files as given."""
    from p2vimage.sources.image import SourceImage
    from p2vimage.targets.disk import output_paths, system_first

    assert system_first(1, 0) == [0]
    assert system_first(3, 0) == [0, 1, 2]
    assert system_first(3, 1) == [1, 0, 2]
    assert system_first(3, 2) == [2, 0, 1]
    assert output_paths(tmp_path / "vm.qcow2", 3)[1:] == [tmp_path / "vm-2.qcow2",
                                                          tmp_path / "vm-3.qcow2"]
    cz = SourceImage(tmp_path / "r.raw", "raw", 1, 0, True, origin=tmp_path / "img", disk="sdb")
    assert cz.describe(True) == f"{tmp_path / 'img'} (sdb)"
    assert cz.describe(False) == str(tmp_path / "img")
    plain = SourceImage(tmp_path / "a.img", "raw", 1, 0, True)
    assert plain.describe(True) == str(tmp_path / "a.img")
