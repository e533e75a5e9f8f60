"""Count libguestfs appliance launches of a command, exactly.

"Refused before any appliance" used to be asserted as "ended within N seconds", which a
loaded CI machine (two xdist workers beside TCG appliances) can break, and which a fast
KVM host could pass with an appliance launched.  libguestfs starts the hypervisor named
by ``$LIBGUESTFS_HV``; here that is a wrapper that appends a line to the file named by
``$P2VIMAGE_TEST_LAUNCH_LOG`` and runs the real qemu, so the appliance itself is as
usual and every launch (a capability probe included) leaves a line.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path

LOG_ENV = "P2VIMAGE_TEST_LAUNCH_LOG"


def wrapper(directory: Path) -> Path:
    """Write the hypervisor wrapper into ``directory`` (once per test session)."""
    real = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
    path = directory / "qemu-system-x86_64"
    path.write_text("#!/bin/sh\n"
                    f'[ -n "${LOG_ENV}" ] && echo "$$ $*" >> "${LOG_ENV}"\n'
                    f'exec {shlex.quote(real)} "$@"\n')
    path.chmod(0o755)
    return path


class LaunchWatch:
    """``watch.env()`` for the command; ``watch.count`` after it: appliance starts seen."""

    def __init__(self, hv: Path, directory: Path | None = None) -> None:
        self.hv = hv
        self.log = Path(tempfile.mkdtemp(prefix="launches-", dir=directory)) / "log"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return {**(base or {}), "LIBGUESTFS_HV": str(self.hv), LOG_ENV: str(self.log)}

    @property
    def count(self) -> int:
        try:
            return len(self.log.read_text().splitlines())
        except FileNotFoundError:
            return 0


def self_test() -> None:
    """The wrapper runs the real qemu: ``qemu-system-x86_64 --version`` through it."""
    import subprocess

    with tempfile.TemporaryDirectory() as d:
        w = LaunchWatch(wrapper(Path(d)), Path(d))
        out = subprocess.run([str(w.hv), "--version"], env={**os.environ, **w.env()},
                             capture_output=True, text=True, check=True).stdout
        assert "QEMU emulator" in out and w.count == 1
