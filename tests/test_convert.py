"""``convert``'s options as a library caller gives them: ``str`` paths, a
``ConvertOptions`` object, keywords over it, and mistakes refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

import p2vimage
from p2vimage import ConvertOptions, UsageError
from p2vimage.convert import make_options


def test_str_paths_become_paths() -> None:
    o = make_options("out/vm.qcow2", virtio_win="/srv/virtio-win.iso", xml="vm.xml",
                     report="vm.json", smbios="dmi.txt", driver_files=["atapi.sys"])
    assert o.output == Path("out/vm.qcow2")
    assert (o.virtio_win, o.xml, o.report, o.smbios) == (
        Path("/srv/virtio-win.iso"), Path("vm.xml"), Path("vm.json"), Path("dmi.txt"))
    assert o.driver_files == [Path("atapi.sys")]


def test_options_object_with_keywords_over_it() -> None:
    base = ConvertOptions(bus="ide", memory_mib=1024, virtio_win="/srv/v.iso")
    o = make_options(Path("vm.qcow2"), base, memory_mib=2048)
    assert (o.bus, o.memory_mib, o.virtio_win, o.output) == (
        "ide", 2048, Path("/srv/v.iso"), Path("vm.qcow2"))
    assert base.memory_mib == 1024  # the caller's object is not changed


def test_single_values_where_lists_are_expected() -> None:
    o = make_options("vm.qcow2", ip="Local Area Connection=10.0.0.5/24", driver_files="x.sys")
    assert o.ip == ["Local Area Connection=10.0.0.5/24"]
    assert o.driver_files == [Path("x.sys")]


@pytest.mark.parametrize(("kw", "fragment"), [
    ({"virtio": "/srv/v.iso"}, "unknown option(s) virtio"),
    ({"xml": 42}, "xml: a path"),
    ({"options": "fast"}, "options: a ConvertOptions"),
])
def test_mistakes_are_usage_errors_before_any_work(tmp_path: Path, kw: dict,
                                                   fragment: str) -> None:
    missing = tmp_path / "no-such-image.img"  # never opened: the options fail first
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(").replace(")", r"\)")) \
            as err:
        p2vimage.convert(str(missing), str(tmp_path / "vm.qcow2"), **kw)
    assert err.value.exit_code == 2
    assert list(tmp_path.iterdir()) == []
