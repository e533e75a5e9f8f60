"""docs/targets.md: its Python example runs, and what it makes is valid for the targets."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from tests.targets.k8s_schema import CDI, KUBEVIRT, OpenApi
from tests.targets.pve_schema import PveSchema

DOC = Path(__file__).resolve().parents[2] / "docs" / "targets.md"


def test_the_documented_example_runs_and_its_output_is_valid() -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M)
    assert len(blocks) == 1
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], str(DOC), "exec"), namespace)
    pve, kv = namespace["pve"], namespace["kv"]
    assert PveSchema().config_errors(pve.config_text()) == []
    assert pve.config["ostype"] == "win10" and pve.config["bios"] == "ovmf"
    assert "changed to 'FILESRV-01'" in pve.warnings[0]
    assert namespace["script"].startswith("#!/bin/sh\n")
    assert OpenApi(KUBEVIRT).errors(kv.vm, "v1.VirtualMachine") == []
    assert OpenApi(CDI).errors(kv.data_volumes[0], "v1beta1.DataVolume") == []
    text = out.getvalue()
    assert "ostype: win10" in text and "kind: VirtualMachine" in text
    assert "name: filesrv-01-disk0" in text


def test_every_documented_command_line_parses_to_its_target() -> None:
    """The ``sh`` examples, through the real parser and ``parse_to`` (no conversion: the
    target and its options as ``convert`` would get them)."""
    import shlex

    from p2vimage.cli import build_parser, target_of

    blocks = re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), re.S | re.M)
    lines = [ln for b in blocks for ln in b.splitlines() if ln.startswith("p2vimage ")]
    targets = []
    for line in lines:
        args = build_parser().parse_args(shlex.split(line)[1:])
        target = target_of(args)
        assert args.output is not None or target.kind == "libvirt", line
        targets.append(target)
    assert [t.kind for t in targets] == ["local", "libvirt", "libvirt", "proxmox", "kubevirt",
                                         "libvirt"]
    pve, kv, remote = targets[3], targets[4], targets[5]
    assert pve.iso == "local:iso/virtio-win.iso" and pve.agent is True
    assert kv.storage_class == "ceph-rbd"
    assert remote.uri.startswith("qemu+ssh://root@kvm1/system?keyfile=")
