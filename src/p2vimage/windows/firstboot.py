"""Re-apply a static IP address on the converted guest's first boot, with no shipped binary.

Mechanism: a **computer startup script of the local Group Policy object** (every Windows
from 2000 on has one, in ``%SystemRoot%\\System32\\GroupPolicy``).  Why this one:

* it runs as LocalSystem, at startup, before the logon screen, with no user
  (TechNet, "Scripts overview for GPMC": startup scripts "run as Local System");
* it needs nothing but files: ``gpt.ini`` (the GPO's version and the client-side extensions
  it uses), ``Machine\\Scripts\\scripts.ini`` (UTF-16LE with a BOM, ``[Startup]``
  ``<n>CmdLine``/``<n>Parameters`` keys: [MS-GPSCR] 2.2.2) and the script itself in
  ``Machine\\Scripts\\Startup``; the computer version is the low 16 bits of ``Version`` and
  must grow for the engine to re-read the GPO ([MS-GPOL] 3.3.5.4; Group Policy team blog,
  "Understanding the GPO version number"); the Scripts extension is listed in
  ``gPCMachineExtensionNames`` as ``[{42B5FAAE-6536-11D2-AE5A-0000F87571E3}
  {40B6664F-4972-11D1-A7CA-0000F87571E3}]`` ([MS-GPSCR] 1.9);
* startup scripts run synchronously and may take up to 600 s by default (Scripts.admx,
  "Specify maximum wait time for Group Policy scripts"), which bounds one boot's wait.

``RunOnce`` was rejected (it runs at an administrator's logon, not at boot) and so was a
service (it needs a service binary such as rhsrvany, which we would have to ship).

The script (plain ``cmd``, no PowerShell: 2000/XP/2003 have none) waits for Plug and Play to
have installed the new adapter (``netsh interface ip show config`` lists it), renames it to
the old connection name, sets the addresses, gateway, DNS and WINS with ``netsh``, logs
everything to ``%SystemRoot%\\p2vimage-firstboot.log``, gives up after a bounded number of
boots, and removes itself (and the ``scripts.ini`` it created) when done.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

from ..errors import UsageError
from ..formats import inf as inf_mod
from ..guest.view import GuestView
from ..inspection import Inspection
from ..inspection.nics import Nic, kept_connection_names
from ..plan import FileWrite, FirstbootSummary, Plan

SCRIPTS_CSE = "{42B5FAAE-6536-11D2-AE5A-0000F87571E3}{40B6664F-4972-11D1-A7CA-0000F87571E3}"
SCRIPT_NAME = "p2vimage-firstboot.cmd"
LOG = "%SystemRoot%\\p2vimage-firstboot.log"  # what the script logs to (in the report too)
GPO_DIR = "System32/GroupPolicy"  # under the system root
MAX_BOOTS = 5
WAIT_ROUNDS = 60  # x 5 s: 5 minutes per boot, inside the 600 s script limit


@dataclass
class IpSettings:
    """What to apply to the new adapter (from a dropped NIC, or from ``--ip``)."""

    connection: str
    addresses: list[tuple[str, str]]  # (address, mask)
    gateways: list[tuple[str, int]] = field(default_factory=list)  # (gateway, metric)
    dns: list[str] = field(default_factory=list)
    wins: list[str] = field(default_factory=list)
    source: str = "captured"
    dns_suffix: str | None = None  # netsh on 2000/XP/2003 cannot set it per connection


def from_nic(nic: Nic) -> IpSettings | None:
    if not nic.static:
        return None
    masks = nic.subnet_masks + ["255.255.255.0"] * len(nic.ip_addresses)
    metrics = [int(m) if m.strip().isdigit() else 1 for m in nic.gateway_metrics]
    return IpSettings(
        connection=nic.connection_name or "Local Area Connection",
        addresses=list(zip(nic.ip_addresses, masks, strict=False)),
        gateways=[(gw, metrics[i] if i < len(metrics) and metrics[i] else 1)
                  for i, gw in enumerate(nic.gateways)],
        dns=list(nic.dns_servers),
        wins=list(nic.wins_servers),
        dns_suffix=nic.dns_suffix,
    )


def _ip(text: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise UsageError(f"--ip: {what} {text!r} is not an IPv4 address") from None


def parse_ip_option(text: str) -> IpSettings:
    """``CONN=ADDR/PREFIX[,gw=GW][,dns=D1][,dns=D2][,wins=W]`` (several ``ADDR/PREFIX``
    may follow, comma separated)."""
    conn, sep, rest = text.partition("=")
    if not sep or not conn.strip() or not rest.strip():
        raise UsageError(f"--ip {text!r}: use CONN=ADDR/PREFIX[,gw=GW][,dns=DNS][,wins=WINS]")
    out = IpSettings(connection=conn.strip(), addresses=[], source="--ip")
    for part in (p.strip() for p in rest.split(",") if p.strip()):
        key, _, value = part.partition("=")
        key = key.lower()
        if key == "gw" and value:
            out.gateways.append((_ip(value, "gateway"), 1))
        elif key == "dns" and value:
            out.dns.append(_ip(value, "DNS server"))
        elif key == "wins" and value:
            out.wins.append(_ip(value, "WINS server"))
        elif "/" in part and not _:
            try:
                iface = ipaddress.IPv4Interface(part)
            except ValueError:
                raise UsageError(f"--ip {text!r}: {part!r} is not ADDR/PREFIX") from None
            out.addresses.append((str(iface.ip), str(iface.netmask)))
        else:
            raise UsageError(f"--ip {text!r}: cannot understand {part!r}")
    if not out.addresses:
        raise UsageError(f"--ip {text!r}: no ADDR/PREFIX given")
    return out


def _q(text: str) -> str:
    """A value safe inside ``"..."`` in cmd (no quotes, percent signs or line breaks)."""
    if re.search(r'["%\r\n^&|<>!]', text):
        raise UsageError(f"connection name {text!r} has characters a cmd script cannot quote")
    return text


def script(settings: IpSettings, *, keep_names: list[str], owns_scripts_ini: bool,
           rename: bool = True, max_boots: int = MAX_BOOTS,
           wait_rounds: int = WAIT_ROUNDS) -> str:
    """The startup script (CRLF line ends, ASCII)."""
    conn = _q(settings.connection)
    # Plain cmd as Windows 2000 understands it: %-expansion in labels (no blocks that need
    # delayed expansion), ping as the sleep (no timeout.exe before Vista).
    lines = [
        "@echo off",
        "rem p2vimage first-boot network settings (written offline by p2vimage convert).",
        "rem Runs as a local Group Policy computer startup script; see docs/network.md.",
        "setlocal EnableExtensions",
        f'set "LOG={LOG}"',
        'set "COUNTER=%~dp0p2vimage-firstboot.count"',
        'set "NETSH=netsh"',
        'if defined P2V_NETSH set "NETSH=%P2V_NETSH%"',
        'set "PAUSE5=ping -n 6 127.0.0.1"',
        'if defined P2V_PAUSE set "PAUSE5=%P2V_PAUSE%"',
        f'set "CONN={conn}"',
        f"set MAXBOOTS={max_boots}",
        f"set ROUNDS={wait_rounds}",
        "set BOOT=0",
        'if exist "%COUNTER%" set /p BOOT=<"%COUNTER%"',
        "set /a BOOT=%BOOT%+1",
        '>"%COUNTER%" echo %BOOT%',
        '>>"%LOG%" echo [%DATE% %TIME%] p2vimage first boot: attempt %BOOT% of %MAXBOOTS%',
        "if %BOOT% GTR %MAXBOOTS% goto giveup",
        "set ROUND=0",
        ":wait",
        'set "IFACE="',
        "for /f \"tokens=*\" %%A in ('%NETSH% interface ip show config ^| "
        "find \"Configuration for interface\"') do call :consider %%A",
        "if defined IFACE goto found",
        "set /a ROUND=%ROUND%+1",
        "if %ROUND% GEQ %ROUNDS% goto notyet",
        "%PAUSE5% >nul",
        "goto wait",
        ":consider",
        "rem %* is: Configuration for interface \"NAME\"",
        "if defined IFACE goto :eof",
        'set "LINE=%*"',
        'set "NAME=%LINE:*interface =%"',
        'set NAME=%NAME:"=%',
        'if /i "%NAME:~0,8%"=="Loopback" goto :eof',
    ]
    for keep in keep_names:
        lines.append(f'if /i "%NAME%"=="{_q(keep)}" goto :eof')
    lines += [
        'set "IFACE=%NAME%"',
        "goto :eof",
        ":found",
        '>>"%LOG%" echo [%DATE% %TIME%] new adapter: "%IFACE%"',
    ]
    if rename:
        lines += [
            'if /i "%IFACE%"=="%CONN%" goto named',
            'call :run interface set interface name="%IFACE%" newname="%CONN%"',
            "if errorlevel 1 goto failed",
            ":named",
        ]
    else:
        lines.append('set "CONN=%IFACE%"')
    (addr, mask), *more = settings.addresses
    gw = settings.gateways[0] if settings.gateways else None
    first = f'call :run interface ip set address name="%CONN%" static {addr} {mask}'
    first += f" {gw[0]} {gw[1]}" if gw else " none"
    lines += [first, "if errorlevel 1 goto failed"]
    for a, m in more:
        lines += [f'call :run interface ip add address name="%CONN%" {a} {m}',
                  "if errorlevel 1 goto failed"]
    for g, metric in settings.gateways[1:]:
        lines += [f'call :run interface ip add address name="%CONN%" gateway={g} '
                  f"gwmetric={metric}", "if errorlevel 1 goto failed"]
    for i, d in enumerate(settings.dns):
        cmd = (f'call :run interface ip set dns name="%CONN%" static {d}' if i == 0 else
               f'call :run interface ip add dns name="%CONN%" {d} index={i + 1}')
        lines += [cmd, "if errorlevel 1 goto failed"]
    for i, w in enumerate(settings.wins):
        cmd = (f'call :run interface ip set wins name="%CONN%" static {w}' if i == 0 else
               f'call :run interface ip add wins name="%CONN%" {w} index={i + 1}')
        lines += [cmd, "if errorlevel 1 goto failed"]
    lines += [
        '>>"%LOG%" echo [%DATE% %TIME%] done: settings applied to "%CONN%"',
        "goto cleanup",
        ":notyet",
        '>>"%LOG%" echo [%DATE% %TIME%] no new network adapter yet; trying again at the '
        'next boot',
        "exit /b 1",
        ":failed",
        '>>"%LOG%" echo [%DATE% %TIME%] netsh failed; trying again at the next boot',
        "exit /b 1",
        ":giveup",
        '>>"%LOG%" echo [%DATE% %TIME%] giving up after %MAXBOOTS% boots; set the address '
        'by hand',
        ":cleanup",
        'del "%COUNTER%" >nul 2>&1',
    ]
    if owns_scripts_ini:
        lines.append('del "%~dp0..\\scripts.ini" >nul 2>&1')
    lines += [
        '>>"%LOG%" echo [%DATE% %TIME%] first-boot script removed',
        # One line: cmd reads it whole, so exit runs although the file is gone.
        'del "%~f0" >nul 2>&1 & exit /b 0',
        ":run",
        '>>"%LOG%" echo [%DATE% %TIME%] netsh %*',
        '%NETSH% %* 1>>"%LOG%" 2>&1',
        "goto :eof",
    ]
    return "\r\n".join(lines) + "\r\n"


# --- the local GPO files -------------------------------------------------------------------


def gpt_ini(existing: str | None) -> str:
    """``gpt.ini`` with the computer version bumped and the Scripts extension listed."""
    lines = (existing or "[General]\r\ngPCFunctionalityVersion=2\r\nVersion=0\r\n").splitlines()
    out, version_seen, ext_seen = [], False, False
    for line in lines:
        key, sep, value = line.partition("=")
        k = key.strip().lower()
        if sep and k == "version":
            try:
                v = int(value.strip())
            except ValueError:
                v = 0
            user, machine = v >> 16, (v & 0xFFFF) + 1
            out.append(f"Version={(user << 16) | (machine & 0xFFFF)}")
            version_seen = True
        elif sep and k == "gpcmachineextensionnames":
            exts = value.strip()
            if SCRIPTS_CSE.upper() not in exts.upper():
                pairs = re.findall(r"\[[^\]]*\]", exts) + [f"[{SCRIPTS_CSE}]"]
                exts = "".join(sorted(pairs, key=str.upper))
            out.append(f"gPCMachineExtensionNames={exts}")
            ext_seen = True
        else:
            out.append(line)
    if not version_seen:
        out.append("Version=1")
    if not ext_seen:
        out.append(f"gPCMachineExtensionNames=[{SCRIPTS_CSE}]")
    return "\r\n".join(out) + "\r\n"


def scripts_ini(existing: str | None) -> tuple[str, bool]:
    """(``scripts.ini`` text with our startup entry, whether we added the entry anew)."""
    text = existing or ""
    if SCRIPT_NAME.lower() in text.lower():
        return text, False
    indexes = [int(m) for m in re.findall(r"(?im)^\s*(\d+)CmdLine\s*=", text)]
    n = max(indexes) + 1 if indexes else 0
    entry = f"{n}CmdLine={SCRIPT_NAME}\r\n{n}Parameters=\r\n"
    if re.search(r"(?im)^\s*\[Startup\]", text):
        text = re.sub(r"(?im)^(\s*\[Startup\][^\r\n]*\r?\n)", lambda m: m.group(1) + entry,
                      text, count=1)
    else:
        text = (text.rstrip("\r\n") + "\r\n" if text.strip() else "") + "[Startup]\r\n" + entry
    return text, True


def encode_utf16(text: str) -> bytes:
    return b"\xff\xfe" + text.encode("utf-16-le")


def plan_firstboot(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """The local-GPO startup script that puts the static address on the new adapter
    (after :func:`~p2vimage.windows.nic_removal.plan_network`, whose NICs it reads)."""
    assert plan.network is not None and plan.context is not None
    opts = plan.context.options
    nics = plan.network.nics
    bootable = guest.control_sets
    settings = None
    if opts.ip:
        wanted = parse_ip_option(opts.ip[0])
        names = [n.connection_name for n in nics if n.connection_name]
        if not any(wanted.connection.lower() == n.lower() for n in names):
            raise UsageError(
                f"--ip {opts.ip[0]}: no connection named {wanted.connection!r} "
                f"(the physical NICs: {', '.join(repr(n) for n in names) or 'none'})"
            )
        settings = wanted
        if len(opts.ip) > 1:
            plan.warnings.append("--ip: the guest gets one NIC; only the first mapping is used")
    else:
        static = [s for s in (from_nic(n) for n in nics) if s is not None]
        if static:
            settings = static[0]
            for other in static[1:]:
                plan.warnings.append(
                    f"network: {other.connection} also had a static address "
                    f"({other.addresses[0][0]}); the guest gets one NIC, so it is not re-applied"
                )
    if settings is None or opts.no_firstboot:
        plan.network.firstboot = None
        if settings is not None:
            plan.warnings.append(
                f"--no-firstboot: set {settings.addresses[0][0]} on the new adapter by hand"
            )
        return
    if opts.keep_nics:
        plan.warnings.append(
            "--keep-nics: the hidden physical adapter keeps its address, so it is not "
            "re-applied to the new one"
        )
        plan.network.firstboot = None
        return
    if settings.dns_suffix:
        plan.warnings.append(
            f"network: the connection DNS suffix {settings.dns_suffix!r} is not re-applied "
            "(netsh cannot set it); set it in the adapter's advanced TCP/IP settings"
        )
    sr = insp.system_root or "/WINDOWS"
    gpo = f"{sr}/{GPO_DIR}"
    gpt_path, ini_path = f"{gpo}/gpt.ini", f"{gpo}/Machine/Scripts/scripts.ini"
    gpt_bytes, ini_bytes = guest.read_all(gpt_path), guest.read_all(ini_path)
    gpt_old = inf_mod.decode(gpt_bytes) if gpt_bytes is not None else None
    ini_old = inf_mod.decode(ini_bytes) if ini_bytes is not None else None
    ini_text, _added = scripts_ini(ini_old)
    kept = kept_connection_names(guest.system, bootable[0], nics) if bootable else []
    major, minor = insp.major, insp.minor
    text = script(settings, keep_names=kept, owns_scripts_ini=ini_bytes is None,
                  rename=(major, minor) != (5, 0))
    outputs = [
        (gpt_path, gpt_ini(gpt_old).encode("ascii", "replace"),
         "local GPO version bumped, Scripts extension listed ([MS-GPOL] 3.3.5.4)"),
        (ini_path, encode_utf16(ini_text),
         "[Startup] entry for the first-boot script ([MS-GPSCR] 2.2.2)"),
        (f"{gpo}/Machine/Scripts/Startup/{SCRIPT_NAME}", text.encode("ascii"),
         f"re-applies {settings.addresses[0][0]} to the new adapter at startup, then "
         "removes itself"),
    ]
    work = plan.context.workdir / "firstboot"
    work.mkdir(parents=True, exist_ok=True)
    for guest_path, data, why in outputs:
        local = work / guest_path.rsplit("/", 1)[1]
        local.write_bytes(data)
        plan.files.append(FileWrite(
            step="firstboot", guest_path=guest_path, action="write", origin="generated",
            version=None, machine=None, sha256=hashlib.sha256(data).hexdigest(),
            size=len(data), reason=why, local=str(local),
        ))
    plan.network.firstboot = FirstbootSummary(
        connection=settings.connection, addresses=settings.addresses,
        gateways=settings.gateways, dns=settings.dns, wins=settings.wins,
        source=settings.source, keep_names=kept, log=LOG)
