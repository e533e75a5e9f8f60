"""The first-boot script's logic, run under Wine's ``cmd`` with a recording stand-in for
``netsh`` (no Windows can be booted here).  Covers success, an adapter that appears late,
a failing netsh (retry at the next boot), the boot limit, and self-removal; plus the local
GPO files (``gpt.ini``, ``scripts.ini``) the conversion writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from p2vimage.errors import UsageError
from p2vimage.formats import inf
from p2vimage.inspection.nics import Nic
from p2vimage.windows import firstboot

WINE = shutil.which("wine64") or "/usr/lib/wine/wine64"

FAKE_NETSH = r"""@echo off
>>"%FAKE_DIR%\calls.txt" echo %*
if /i "%~1 %~2 %~3 %~4"=="interface ip show config" goto show
if /i "%~3 %~4"=="%FAKE_FAIL%" exit /b 1
echo Ok.
exit /b 0
:show
set N=0
if exist "%FAKE_DIR%\shows.txt" set /p N=<"%FAKE_DIR%\shows.txt"
set /a N=%N%+1
>"%FAKE_DIR%\shows.txt" echo %N%
echo.
echo Configuration for interface "Loopback Pseudo-Interface 1"
echo Configuration for interface "VPN Client"
if %N% GTR %FAKE_APPEAR_AFTER% echo Configuration for interface "Local Area Connection"
exit /b 0
"""

SETTINGS = firstboot.IpSettings(
    connection="Local Area Connection 2",
    addresses=[("10.20.30.40", "255.255.255.0"), ("10.20.30.41", "255.255.255.0")],
    gateways=[("10.20.30.1", 1)],
    dns=["10.20.30.2", "10.20.30.3"],
    wins=["10.20.30.4"],
)


def _winpath(p: Path) -> str:
    return "Z:" + str(p).replace("/", "\\")


class Guest:
    """A fake %SystemRoot% with the GPO folders, the script and a netsh stand-in."""

    def __init__(self, root: Path, prefix: Path, *, owns_ini: bool = True, max_boots: int = 3,
                 rounds: int = 4) -> None:
        self.root = root
        self.startup = root / "System32/GroupPolicy/Machine/Scripts/Startup"
        self.startup.mkdir(parents=True)
        self.ini = self.startup.parent / "scripts.ini"
        self.ini.write_bytes(firstboot.encode_utf16(firstboot.scripts_ini(None)[0]))
        self.script = self.startup / firstboot.SCRIPT_NAME
        self.script.write_bytes(firstboot.script(
            SETTINGS, keep_names=["VPN Client"], owns_scripts_ini=owns_ini,
            max_boots=max_boots, wait_rounds=rounds).encode("ascii"))
        (root / "netsh.cmd").write_bytes(FAKE_NETSH.replace("\n", "\r\n").encode())
        self.prefix = prefix

    def boot(self, appear_after: int = 0, fail: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "WINEPREFIX": str(self.prefix), "WINEDEBUG": "-all",
               "DISPLAY": ""}
        sets = [f"FAKE_DIR={_winpath(self.root)}", f"FAKE_APPEAR_AFTER={appear_after}",
                f"P2V_NETSH={_winpath(self.root / 'netsh.cmd')}", "P2V_PAUSE=rem",
                f"SystemRoot={_winpath(self.root)}"]
        if fail:
            sets.append(f"FAKE_FAIL={fail}")
        (self.root / "shows.txt").unlink(missing_ok=True)
        line = "& ".join(f"set {s}" for s in sets) + f"& {_winpath(self.script)}"
        return subprocess.run([WINE, "cmd", "/c", line], env=env, capture_output=True,
                              timeout=120, check=False)

    @property
    def calls(self) -> list[str]:
        f = self.root / "calls.txt"
        return [c.strip() for c in f.read_text().splitlines()] if f.exists() else []

    @property
    def log(self) -> str:
        f = self.root / "p2vimage-firstboot.log"
        return f.read_text() if f.exists() else ""


EXPECTED_CALLS = [
    'interface set interface name="Local Area Connection" newname="Local Area Connection 2"',
    'interface ip set address name="Local Area Connection 2" static 10.20.30.40 '
    "255.255.255.0 10.20.30.1 1",
    'interface ip add address name="Local Area Connection 2" 10.20.30.41 255.255.255.0',
    'interface ip set dns name="Local Area Connection 2" static 10.20.30.2',
    'interface ip add dns name="Local Area Connection 2" 10.20.30.3 index=2',
    'interface ip set wins name="Local Area Connection 2" static 10.20.30.4',
]


@pytest.fixture(scope="module")
def wine_ready(tmp_path_factory) -> Path:
    """One Wine prefix for the module (creating one costs a few seconds)."""
    assert Path(WINE).exists(), "wine64 is needed (Debian package wine64; make test installs it)"
    return tmp_path_factory.mktemp("wineprefix")


def test_success_first_boot(wine_ready, tmp_path) -> None:
    g = Guest(tmp_path / "win", wine_ready)
    g.boot(appear_after=0)
    assert [c for c in g.calls if "show config" not in c] == EXPECTED_CALLS
    assert "attempt 1 of 3" in g.log and 'done: settings applied to "Local Area Connection 2"' \
        in g.log
    # The loopback and the software adapter that stays were never taken for the new NIC.
    assert 'new adapter: "Local Area Connection"' in g.log
    assert not g.script.exists() and not g.ini.exists()  # removed itself and its scripts.ini
    assert not (g.startup / "p2vimage-firstboot.count").exists()


def test_adapter_appears_late_then_next_boot(wine_ready, tmp_path) -> None:
    g = Guest(tmp_path / "win", wine_ready, rounds=4)
    g.boot(appear_after=10)  # not within this boot's 4 rounds
    assert sum("show config" in c for c in g.calls) == 4
    assert "no new network adapter yet" in g.log and g.script.exists()
    assert (g.startup / "p2vimage-firstboot.count").read_text().strip() == "1"
    g.boot(appear_after=2)  # next boot: appears after two polls
    assert [c for c in g.calls if "show config" not in c] == EXPECTED_CALLS
    assert "attempt 2 of 3" in g.log and not g.script.exists()


def test_failing_netsh_retries_and_boot_limit(wine_ready, tmp_path) -> None:
    g = Guest(tmp_path / "win", wine_ready, max_boots=2, owns_ini=False)
    for _ in range(2):
        g.boot(fail="set dns")
    assert g.log.count("netsh failed; trying again at the next boot") == 2
    assert g.script.exists()
    g.boot()  # third boot: over the limit, gives up without calling netsh again
    assert "giving up after 2 boots" in g.log
    assert g.calls.count('interface ip set dns name="Local Area Connection 2" static '
                         "10.20.30.2") == 2
    assert not g.script.exists()
    assert g.ini.exists()  # not ours to delete (it existed before the conversion)


def test_gpt_ini_and_scripts_ini() -> None:
    new = firstboot.gpt_ini(None)
    assert "Version=1" in new and f"gPCMachineExtensionNames=[{firstboot.SCRIPTS_CSE}]" in new
    # An existing LGPO: user version kept (high 16 bits), computer version + 1, extensions
    # merged and sorted.
    old = ("[General]\r\ngPCFunctionalityVersion=2\r\nVersion=65539\r\n"
           "gPCMachineExtensionNames=[{35378EAC-683F-11D2-A89A-00C04FBBCFA2}"
           "{0F6B957D-509E-11D1-A7CC-0000F87571E3}]\r\n")
    bumped = firstboot.gpt_ini(old)
    assert "Version=65540" in bumped
    assert ("gPCMachineExtensionNames=[{35378EAC-683F-11D2-A89A-00C04FBBCFA2}"
            "{0F6B957D-509E-11D1-A7CC-0000F87571E3}]"
            f"[{firstboot.SCRIPTS_CSE}]") in bumped
    text, added = firstboot.scripts_ini(None)
    assert added and text == ("[Startup]\r\n0CmdLine=p2vimage-firstboot.cmd\r\n"
                              "0Parameters=\r\n")
    existing = "[Startup]\r\n0CmdLine=inventory.cmd\r\n0Parameters=/q\r\n"
    merged, added = firstboot.scripts_ini(existing)
    assert added and "1CmdLine=p2vimage-firstboot.cmd" in merged and "0CmdLine=inventory" \
        in merged
    assert firstboot.scripts_ini(merged) == (merged, False)  # a re-run adds nothing
    data = firstboot.encode_utf16(text)
    assert data[:2] == b"\xff\xfe" and inf.decode(data) == text


def test_ip_option_and_captured_settings() -> None:
    s = firstboot.parse_ip_option("LAN=192.168.1.5/24,gw=192.168.1.1,dns=192.168.1.2,"
                                  "dns=192.168.1.3,wins=192.168.1.4")
    assert s.connection == "LAN" and s.addresses == [("192.168.1.5", "255.255.255.0")]
    assert s.gateways == [("192.168.1.1", 1)] and s.dns == ["192.168.1.2", "192.168.1.3"]
    for bad in ("LAN", "LAN=", "LAN=300.1.1.1/24", "LAN=10.0.0.1/24,gw=nope", "LAN=gw=1.2.3.4"):
        with pytest.raises(UsageError):
            firstboot.parse_ip_option(bad)
    nic = Nic(guid="{X}", description="d", hardware_id="pci\\x", class_key="0001",
              connection_name="Local Area Connection", dhcp=False,
              ip_addresses=["10.0.0.5"], subnet_masks=["255.0.0.0"], gateways=["10.0.0.1"],
              gateway_metrics=["0"], dns_servers=["10.0.0.2"], wins_servers=["10.0.0.3"])
    got = firstboot.from_nic(nic)
    assert got.addresses == [("10.0.0.5", "255.0.0.0")] and got.gateways == [("10.0.0.1", 1)]
    assert firstboot.from_nic(Nic(guid="{Y}", description=None, hardware_id=None,
                                  class_key="0002", dhcp=True)) is None
    with pytest.raises(UsageError):
        firstboot.script(firstboot.IpSettings('a"b', [("1.2.3.4", "255.0.0.0")]),
                         keep_names=[], owns_scripts_ini=True)
