"""Stand-ins for Proxmox VE's ``qm`` and ``pvesm``, to run the generated script here.

They keep a VM config in a JSON file the way a PVE node would for these calls: ``qm
create`` writes the given keys (refusing a VMID that exists), ``qm importdisk`` allocates
``STORAGE:vm-VMID-disk-N`` and records it as ``unused0``, ``qm set`` moves a volume from
``unused0`` to its key or allocates ``STORAGE:SIZE`` (the EFI disk), ``qm config`` prints
the config, ``qm destroy`` removes it.  Every call is logged with its arguments, so a
test can check each ``--key value`` against PVE's schema and the final config against
the one p2vimage wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_QM = r'''
import json, os, re, sys

state_path, log_path = os.environ["FAKE_PVE_STATE"], os.environ["FAKE_PVE_LOG"]
with open(log_path, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
try:
    with open(state_path) as f:
        state = json.load(f)
except FileNotFoundError:
    state = {"config": None, "next_disk": 0, "destroyed": False}


def save():
    with open(state_path, "w") as f:
        json.dump(state, f)


def allocate(storage, vmid):
    volume = f"{storage}:vm-{vmid}-disk-{state['next_disk']}"
    state["next_disk"] += 1
    return volume


command, vmid, args = sys.argv[1], sys.argv[2], sys.argv[3:]
pairs = list(zip(args[::2], args[1::2]))
exists = state["config"] is not None or os.environ.get("FAKE_QM_EXISTS") == vmid
if command == "status":
    if not exists:
        print(f"Configuration file 'nodes/pve/qemu-server/{vmid}.conf' does not exist",
              file=sys.stderr)
        sys.exit(2)
    print("status: stopped")
elif command == "create":
    if exists:
        print(f"unable to create VM {vmid} - VM {vmid} already exists", file=sys.stderr)
        sys.exit(255)
    state["config"] = {k[2:]: v for k, v in pairs}
elif command == "importdisk":
    source, storage = args[0], args[1]
    if os.environ.get("FAKE_QM_FAIL_IMPORT") or not os.path.isfile(source):
        print(f"import of {source} failed", file=sys.stderr)
        sys.exit(1)
    volume = allocate(storage, vmid)
    state["config"]["unused0"] = volume
    print(f"Successfully imported disk as 'unused0:{volume}'")
elif command == "set":
    for key, value in pairs:
        key = key[2:]
        volume, _, rest = value.partition(",")
        m = re.fullmatch(r"([^:]+):(\d+)", volume)
        if m:  # STORAGE:SIZE allocates a new volume
            volume = allocate(m.group(1), vmid)
        if state["config"].get("unused0") == volume:
            del state["config"]["unused0"]
        state["config"][key] = volume + ("," + rest if rest else "")
elif command == "config":
    for key, value in sorted(state["config"].items()):
        print(f"{key}: {value}")
elif command == "destroy":
    state["config"], state["destroyed"] = None, True
else:
    sys.exit(f"fake qm: unknown command {command}")
save()
'''

_PVESM = r'''
import os, sys
# pvesm status --storage ID
if sys.argv[1:3] != ["status", "--storage"] or sys.argv[3] in os.environ.get(
        "FAKE_PVESM_MISSING", "").split():
    sys.exit(1)
print(f"Name Type Status\n{sys.argv[3]} lvmthin active")
'''


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[list[str]]
    state: dict


def install(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in (("qm", _QM), ("pvesm", _PVESM)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)


def run_script(script: str, tmp: Path, **env: str) -> Run:
    """Run ``script`` with ``sh`` against the fakes; ``env`` sets FAKE_* switches."""
    bin_dir = tmp / "fake-bin"
    install(bin_dir)
    state, log = tmp / "pve-state.json", tmp / "pve-calls.jsonl"
    for path in (state, log):
        path.unlink(missing_ok=True)
    (tmp / "vm.sh").write_text(script)
    proc = subprocess.run(
        ["sh", str(tmp / "vm.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_PVE_STATE": str(state),
             "FAKE_PVE_LOG": str(log), **env},
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    final = json.loads(state.read_text()) if state.exists() else {"config": None}
    return Run(proc.returncode, proc.stdout, proc.stderr, calls, final)


__all__ = ["Run", "install", "run_script"]
