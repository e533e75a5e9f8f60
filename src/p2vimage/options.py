"""The options of a conversion, as one typed object (:class:`ConvertOptions`).

Callers give paths as ``str`` or any ``os.PathLike``; they are kept as ``Path``.  An
unknown option, or a value of the wrong kind, is a :class:`~p2vimage.errors.UsageError`
before any work starts: the CLI, the Python API and batch manifests share these checks.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import choices
from .destinations import Target, as_target
from .errors import UsageError


@dataclass
class ConvertOptions:
    """Every option of :func:`convert` (the CLI's long options, underscored).

    Paths may be given as ``str`` or any ``os.PathLike``; they are kept as ``Path``.
    ``output`` is normally given to :func:`convert` itself.
    """

    output: Path = Path()
    format: str = "qcow2"
    size: int | None = None
    source_format: str | None = None
    name: str | None = None
    memory_mib: int | None = None
    vcpus: int | None = None
    bus: str = "auto"
    nic: str = "auto"
    network: str = "network=default"
    xml: Path | None = None
    report: Path | None = None
    dry_run: bool = False
    overwrite: bool = False
    root: str | None = None
    driver_files: list[Path] = field(default_factory=list)
    virtio_win: Path | None = None
    keep_nics: bool = False
    keep_mac: bool = False
    mac: str | None = None
    ip: list[str] = field(default_factory=list)
    no_firstboot: bool = False
    smbios: Path | None = None
    disable_vendor_services: bool = False
    # Write the outputs even when the in-session check finds the guest not ready (the
    # findings are in the report); without it such a conversion is a ConversionError.
    force: bool = False
    # Network sources (ssh://): a private key to use, a known_hosts file to check the
    # host key against (default: the user's agent, ~/.ssh keys and known_hosts).
    ssh_identity: Path | None = None
    ssh_known_hosts: Path | None = None
    # Where the guest lands (``--to``): a LocalTarget (the default; ``"local"`` is
    # accepted), LibvirtTarget, ProxmoxTarget or KubevirtTarget (p2vimage.destinations).
    target: Target | str = "local"

    def __post_init__(self) -> None:
        for name in ("output", "xml", "report", "virtio_win", "smbios", "ssh_identity",
                     "ssh_known_hosts"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, _as_path(value, name))
        if self.driver_files is None:
            self.driver_files = []
        if self.ip is None:
            self.ip = []
        if not isinstance(self.driver_files, (str, os.PathLike, list, tuple)):
            raise UsageError("driver_files: a path or a list of paths")
        if not isinstance(self.ip, (str, list, tuple)):
            raise UsageError("ip: a string or a list of strings")
        if isinstance(self.driver_files, (str, os.PathLike)):
            self.driver_files = [self.driver_files]  # type: ignore[list-item]
        self.driver_files = [_as_path(f, "driver_files") for f in self.driver_files]
        if isinstance(self.ip, str):
            self.ip = [self.ip]
        self.ip = list(self.ip)
        self.target = as_target(self.target)

    def check_values(self) -> None:
        """The choices and numbers that need no guest: a UsageError naming the option."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise UsageError(f"{f.name}: True or False, not {value!r}")
            if f.type == "str | None" and value is not None and not isinstance(value, str):
                raise UsageError(f"{f.name}: a string, not {type(value).__name__}")
            if f.type == "str" and not isinstance(value, str):
                raise UsageError(f"{f.name}: a string, not {type(value).__name__}")
        if not all(isinstance(x, str) for x in self.ip):
            raise UsageError("ip: strings like 'Local Area Connection=10.0.0.5/24,gw=10.0.0.1'")
        choices.check_choice("format", self.format, choices.FORMATS)
        choices.check_choice("bus", self.bus, choices.BUSES, auto=True)
        choices.check_choice("nic", self.nic, choices.NICS, auto=True)
        choices.check_vcpus(self.vcpus)
        if self.mac is not None:
            parse_mac(self.mac)
        self.target = as_target(self.target)
        self.target.check()
        for name in ("size", "memory_mib"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value <= 0):
                raise UsageError(f"{name.replace('_mib', '')}: a positive whole number, "
                                 f"not {value!r}")


def _as_path(value: Any, name: str) -> Path:
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise UsageError(f"{name}: a path (str or os.PathLike), not {type(value).__name__}")


def make_options(output: str | os.PathLike[str], options: ConvertOptions | None = None,
                 **kw: Any) -> ConvertOptions:
    """``options`` (or the defaults) with ``output`` and the keyword options applied; an
    unknown option is a UsageError naming it."""
    known = {f.name for f in dataclasses.fields(ConvertOptions)}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise UsageError(f"convert(): unknown option(s) {', '.join(unknown)} "
                         f"(see ConvertOptions)")
    base = options if options is not None else ConvertOptions()
    if not isinstance(base, ConvertOptions):
        raise UsageError(f"options: a ConvertOptions, not {type(base).__name__}")
    return dataclasses.replace(base, output=_as_path(output, "output"), **kw)


def parse_size(text: str) -> int:
    """``12G``, ``512M``, ``+1G`` is not accepted: sizes are absolute, binary units, bytes."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    mult = 1
    if t and t[-1] in units:
        mult, t = units[t[-1]], t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise UsageError(f"--size {text!r}: not a size (e.g. 20G, 40960M)") from None
    size = int(value * mult)
    if size <= 0 or size % 512:
        raise UsageError(f"--size {text!r}: must be positive and a multiple of 512 bytes")
    return size


_MAC_SEP = re.compile(r"^[0-9A-Fa-f]{1,2}([:-])(?:[0-9A-Fa-f]{1,2}\1){4}[0-9A-Fa-f]{1,2}$")
_MAC_BARE = re.compile(r"^[0-9A-Fa-f]{12}$")


def parse_mac(text: str) -> str:
    """Validate a MAC address and return it as lower-case ``aa:bb:cc:dd:ee:ff``.

    Accepts ``:`` or ``-`` separators (Windows prints ``00-11-22-33-44-55``) or 12 bare
    hex digits.  Refuses multicast addresses (low bit of the first octet; broadcast is
    one) and the all-zero address: libvirt requires a unicast MAC for a NIC.
    """
    s = text.strip()
    if _MAC_SEP.match(s):
        octets = [int(part, 16) for part in re.split(r"[:-]", s)]
    elif _MAC_BARE.match(s):
        octets = [int(s[i : i + 2], 16) for i in range(0, 12, 2)]
    else:
        raise UsageError(
            f"bad MAC address {text!r}: expected six hex octets like 52:54:00:12:34:56"
        )
    if octets[0] & 1:
        raise UsageError(f"bad MAC address {text!r}: multicast, a NIC needs a unicast address")
    if not any(octets):
        raise UsageError(f"bad MAC address {text!r}: the all-zero address is not usable")
    return ":".join(f"{o:02x}" for o in octets)
