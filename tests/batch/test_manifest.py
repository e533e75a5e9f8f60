"""Batch manifests: YAML and CSV rows become convert argument lists, every bad row named.

No appliance: validation is pure.  The bad-manifest corpus below is the contract: each
case must fail as a whole (nothing is returned), and every error must name its row.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from p2vimage.batch import manifest
from p2vimage.batch.manifest import ManifestError
from p2vimage.errors import EXIT_USAGE, UsageError
from tests.conftest import P2VIMAGE


def write(tmp_path: Path, text: str, name: str = "fleet.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_yaml_rows_take_defaults_and_resolve_paths(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        defaults:
          output-dir: vms
          virtio-win: /srv/virtio-win.iso
          memory: 2G
        machines:
          - name: filesrv01
            source: captures/filesrv01.img
            host: hv07
          - name: dc01
            sources: [/srv/dc01-disk1.img, /srv/dc01-disk2.img]
            output: /srv/out/dc01.qcow2
            memory: 4096
            keep-nics: true
            ip: ["LAN=10.0.0.5/24,gw=10.0.0.1"]
        """)
    m = manifest.load(path)
    a, b = m.machines
    assert a.name == "filesrv01" and a.host == "hv07" and a.row == "machines[0] (filesrv01)"
    assert a.sources == (str(tmp_path / "captures/filesrv01.img"),)
    assert a.output == tmp_path / "vms" / "filesrv01.qcow2"  # {output-dir}/{name}.qcow2
    assert a.workdir == tmp_path
    assert "--memory=2G" in a.options and "--virtio-win=/srv/virtio-win.iso" in a.options
    assert "--name=filesrv01" in a.options
    assert b.sources == ("/srv/dc01-disk1.img", "/srv/dc01-disk2.img")
    assert b.output == Path("/srv/out/dc01.qcow2") and b.host is None
    assert "--memory=4096" in b.options and "--keep-nics" in b.options
    assert "--ip=LAN=10.0.0.5/24,gw=10.0.0.1" in b.options
    argv = b.convert_argv(dry_run=True)
    assert argv[:4] == ["convert", "/srv/dc01-disk1.img", "/srv/dc01-disk2.img", "-o"]
    assert "--dry-run" in argv and "--json" in argv


def test_csv_has_the_same_keys_as_columns(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        name,source,sources,output,host,memory,keep-nics,driver-file
        web01,/srv/web01.img,,/srv/vms/web01.qcow2,hv01,2G,yes,
        db01,,/srv/db01-a.img;/srv/db01-b.img,/srv/vms/db01.qcow2,,,no,/srv/a.sys;/srv/b.sys
        ,,,,,,,
        """, "fleet.csv")
    web, db = manifest.load(path).machines
    assert web.row == "line 2 (web01)" and web.host == "hv01"
    assert "--keep-nics" in web.options and "--memory=2G" in web.options
    assert db.sources == ("/srv/db01-a.img", "/srv/db01-b.img") and db.host is None
    assert "--keep-nics" not in db.options
    drivers = [o for o in db.options if o.startswith("--driver-file")]
    assert drivers == ["--driver-file=/srv/a.sys", "--driver-file=/srv/b.sys"]


def test_csv_saved_by_a_spreadsheet_with_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "fleet.csv"
    path.write_bytes(b"\xef\xbb\xbfname,source,output\r\nweb01,/srv/w.img,/srv/w.qcow2\r\n")
    (web,) = manifest.load(path).machines
    assert web.name == "web01" and web.output == Path("/srv/w.qcow2")


def test_every_convert_option_is_a_key() -> None:
    """The keys come from convert's parser: its long options, without --dry-run."""
    keys = set(manifest.option_keys())
    assert {"virtio-win", "memory", "bus", "nic", "keep-nics", "driver-file", "ip",
            "ssh-identity", "force", "overwrite", "to", "vmid", "iso", "agent", "pvc",
            "storage-class"} <= keys
    assert "dry-run" not in keys and "json" not in keys and "help" not in keys


def test_target_options_are_keys_checked_per_row(tmp_path: Path) -> None:
    """``--to`` and its options, as convert takes them: proxmox's iso and agent,
    kubevirt's storage-class (CSV too)."""
    path = write(tmp_path, """\
        defaults: {output-dir: /o}
        machines:
          - {name: a, source: /x.img, to: proxmox, vmid: 120, iso: "local:iso/v.iso",
             agent: true}
          - {name: b, source: /y.img, to: kubevirt, pvc: caps, storage-class: ceph-rbd,
             bus: sata}
        """)
    a, b = manifest.load(path).machines
    assert {"--to=proxmox", "--vmid=120", "--iso=local:iso/v.iso", "--agent"} <= set(a.options)
    assert {"--to=kubevirt", "--pvc=caps", "--storage-class=ceph-rbd"} <= set(b.options)
    csv = write(tmp_path, """\
        name,source,output,to,vmid,agent,iso
        c,/x.img,/o/c.qcow2,proxmox,121,yes,local:iso/v.iso
        """, "fleet.csv")
    (c,) = manifest.load(csv).machines
    assert "--agent" in c.options and "--iso=local:iso/v.iso" in c.options


# (manifest text, file suffix, fragments every one of which must be in the error)
BAD = {
    "unknown option": ("""\
        machines:
          - {name: a, source: /x.img, output-dir: /o, memroy: 2G}
        """, ".yaml", ["machines[0] (a): unknown option(s) memroy"]),
    "bad memory": ("""\
        defaults: {output-dir: /o}
        machines:
          - {name: a, source: /x.img}
          - {name: b, source: /y.img, memory: 2GB}
        """, ".yaml", ["machines[1] (b): ambiguous memory size '2GB'"]),
    "bad choice and vcpus": ("""\
        defaults: {output-dir: /o}
        machines:
          - {name: a, source: /x.img, bus: nvme}
          - {name: b, source: /y.img, vcpus: 0}
        """, ".yaml", ["machines[0] (a): argument --bus: invalid choice: 'nvme'",
                       "machines[1] (b): "]),
    "duplicate name": ("""\
        defaults: {output-dir: /o}
        machines:
          - {name: a, source: /x.img}
          - {name: a, source: /y.img, output: /p/a.qcow2}
        """, ".yaml", ["machines[1] (a): duplicate name 'a' (also machines[0] (a))"]),
    "duplicate output": ("""\
        machines:
          - {name: a, source: /x.img, output: /o/same.qcow2}
          - {name: b, source: /y.img, output: /o/../o/same.qcow2, output-dir: /z}
        """, ".yaml", ["machines[1] (b): duplicate output /o/same.qcow2"]),
    "no output": ("""\
        machines:
          - {name: a, source: /x.img}
        """, ".yaml", ["machines[0] (a): no output"]),
    "no source": ("""\
        machines:
          - {name: a, output: /o/a.qcow2}
          - {name: b, source: /x, sources: [/y], output: /o/b.qcow2}
        """, ".yaml", ["machines[0] (a): give exactly one of source and sources",
                       "machines[1] (b): give exactly one of"]),
    "bad name": ("""\
        defaults: {output-dir: /o}
        machines:
          - {name: "../etc", source: /x.img}
          - {source: /y.img}
        """, ".yaml", ["machines[0] (../etc): name:", "machines[1]: name:"]),
    "bad mac and flag": ("""\
        defaults: {output-dir: /o}
        machines:
          - {name: a, source: /x.img, mac: "ff:ff:ff:ff:ff:ff"}
          - {name: b, source: /x.img, keep-nics: maybe}
        """, ".yaml", ["machines[0] (a): bad MAC address", "machines[1] (b): keep-nics:"]),
    "dry-run refused": ("""\
        machines:
          - {name: a, source: /x.img, output: /o/a.qcow2, dry-run: true}
        """, ".yaml", ["machines[0] (a): unknown option(s) dry-run (dry runs are 'batch plan')"]),
    "per-row key in defaults": ("""\
        defaults: {output: /o/x.qcow2}
        machines:
          - {name: a, source: /x.img}
        """, ".yaml", ["defaults: 'output' is per machine"]),
    "bad uri": ("""\
        machines:
          - {name: a, source: "ftp://u:hunter2secret@h/x.img", output: /o/a.qcow2}
        """, ".yaml", ["machines[0] (a): ftp://u:…@h/x.img: unsupported source URI"]),
    "target option of another target": ("""\
        defaults: {output-dir: /o}
        machines:
          - {name: a, source: /x.img, to: proxmox, vmid: 120, storage-class: fast}
          - {name: b, source: /y.img, to: kubevirt, pvc: p, agent: true}
          - {name: c, source: /z.img, iso: "local:iso/v.iso"}
        """, ".yaml", ["machines[0] (a): --storage-class: not an option of --to proxmox",
                       "machines[1] (b): --agent: not an option of --to kubevirt",
                       "machines[2] (c): --iso: not an option of --to local"]),
    "not yaml": ("machines: [\n", ".yaml", ["not valid YAML at line 2"]),
    "no machines": ("defaults: {}\n", ".yaml", ["machines: expected a non-empty list"]),
    "row not a mapping": ("machines: [a.img]\n", ".yaml", ["machines[0]: expected a mapping"]),
    "top-level typo": ("machine: []\n", ".yaml", ["unknown top-level key 'machine'"]),
    "csv bad cells": ("""\
        name,source,output,vcpus,size
        a,/x.img,/o/a.qcow2,two,
        b,/y.img,/o/b.qcow2,,12Q
        c,/z.img,/o/c.qcow2,,,extra
        """, ".csv", ["line 4: more cells than header columns"]),
    "csv bad values": ("""\
        name,source,output,vcpus,size
        a,/x.img,/o/a.qcow2,two,
        b,/y.img,/o/b.qcow2,,12Q
        """, ".csv", ["line 2 (a): argument --vcpus: invalid int value: 'two'",
                      "line 3 (b): --size '12Q': not a size"]),
    "csv header only": ("name,source,output\n", ".csv", ["no machines"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_manifest_corpus(tmp_path: Path, case: str) -> None:
    text, suffix, fragments = BAD[case]
    path = write(tmp_path, text, "fleet" + suffix)
    with pytest.raises(ManifestError) as info:
        manifest.load(path)
    err = info.value
    assert err.exit_code == EXIT_USAGE
    message = str(err)
    assert "\n" not in message and message.startswith(f"{path}: invalid manifest")
    for fragment in fragments:
        assert any(fragment in e for e in err.errors), (fragment, err.errors)
    # every error names its row (or the part of the file that is wrong)
    for e in err.errors:
        assert e.startswith(("machines[", "line ", "defaults", "unknown top-level",
                             "not valid YAML", "machines:", "no machines", "empty CSV")), e
    assert "hunter2secret" not in message


def test_unreadable_manifest_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the manifest"):
        manifest.load(tmp_path / "missing.yaml")


def test_only_names_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        defaults: {output-dir: /o}
        machines: [{name: a, source: /x.img}, {name: b, source: /y.img}]
        """)
    m = manifest.load(path)
    assert [x.name for x in m.select(["b"])] == ["b"]
    with pytest.raises(UsageError, match="no machine named zz"):
        m.select(["b", "zz"])


def test_cli_refuses_a_bad_manifest_before_anything_starts(tmp_path: Path) -> None:
    """Exit 2, one line naming the row, and no state directory made."""
    path = write(tmp_path, """\
        defaults: {output-dir: out}
        machines:
          - {name: a, source: /nonexistent/a.img}
          - {name: b, source: /nonexistent/b.img, nic: token-ring}
        """)
    state = tmp_path / "state"
    r = subprocess.run([str(P2VIMAGE), "batch", "run", str(path), "--state", str(state)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT_USAGE, r.stderr
    assert r.stderr.count("\n") == 1 and "machines[1] (b)" in r.stderr
    assert not state.exists() and not (tmp_path / "out").exists()
