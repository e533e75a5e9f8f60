"""Windows INF files: the small part of the syntax a driver's INF uses, read defensively.

INF files come from media we do not control (and ``drvindex.inf`` from the guest), so the
reader never raises on junk: unknown lines are skipped, missing sections are empty.

What is understood, and why it matters offline (Plug and Play is not there to do it):

* sections (same-named ones merge; names are case-insensitive), ``;`` comments outside
  quotes, ``\\`` line continuation, ``%strkey%`` substitution from ``[Strings]`` (``%%`` is
  a literal ``%``);
* ``[Version]``: Class, ClassGUID, Provider, DriverVer, CatalogFile;
* ``[Manufacturer]`` and its *decorated* models sections (``NTx86``, ``NTamd64.6.3`` ...):
  which hardware IDs the driver claims on which architecture and Windows version — the
  test of whether a package fits the guest and the devices we give it;
* an install section's ``CopyFiles``, ``AddReg`` and its ``.Services`` ``AddService``
  entries with the service-install section (type, start, group, binary, AddReg), which is
  what must be written into the registry by hand to make a driver boot-start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .regf import REG_BINARY, REG_DWORD, REG_EXPAND_SZ, REG_MULTI_SZ, REG_SZ

# --- low-level syntax -----------------------------------------------------------------------


def strip_comment(line: str) -> str:
    """Cut a ``;`` comment that is not inside double quotes."""
    quoted = False
    for pos, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            return line[:pos]
    return line


def split_key(line: str) -> tuple[str | None, str]:
    """``key = value`` -> (key, value); (None, line) when there is no unquoted ``=``."""
    quoted = False
    for pos, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "=" and not quoted:
            return line[:pos], line[pos + 1 :]
    return None, line


def unquote(text: str) -> str:
    return text.strip().replace('"', "").strip()


def split_fields(text: str) -> list[str]:
    """Comma-separated fields, quotes respected (and removed), blanks kept as ``""``."""
    fields, cur, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            fields.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    fields.append("".join(cur).strip())
    return [f.replace('"', "") for f in fields]


def sections(text: str) -> dict[str, list[str]]:
    """INF text -> {lower-cased section name: [logical lines]}; same-named sections merge."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    pending = ""
    for physical in text.lstrip("\ufeff").splitlines():
        line = pending + strip_comment(physical).strip()
        pending = ""
        if line.endswith("\\"):  # line continuation
            pending = line[:-1]
            continue
        if not line:
            continue
        if line.startswith("["):
            end = line.find("]")
            if end > 0:
                current = out.setdefault(line[1:end].strip().lower(), [])
                continue
        if current is not None:
            current.append(line)
    if pending and current is not None:
        current.append(pending)
    return out


def decode(data: bytes) -> str:
    """INF bytes: UTF-16 with a BOM, UTF-8 with a BOM, else the ANSI code page."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", errors="replace")
    if data[:3] == b"\xef\xbb\xbf":
        return data[3:].decode("utf-8", errors="replace")
    return data.decode("cp1252", errors="replace")


# --- the driver model --------------------------------------------------------------------------

_ARCH_TOKENS = {"x86": "x86", "amd64": "x64", "arm64": "arm64", "ia64": "ia64", "arm": "arm"}
_DECORATION = re.compile(r"^nt(x86|amd64|arm64|ia64|arm)?(?:\.(\d+)(?:\.(\d+))?)?", re.I)


@dataclass(frozen=True)
class Decoration:
    """A models-section decoration: ``NTamd64.6.3`` = x64, Windows 8.1 (NT 6.3) and later."""

    arch: str | None  # None: undecorated or ``NT`` alone (x86 only, per the INF rules)
    major: int = 0
    minor: int = 0
    text: str = ""

    def applies(self, arch: str, version: tuple[int, int]) -> bool:
        if self.arch is None:
            return arch == "x86"
        return self.arch == arch and (self.major, self.minor) <= version

    @property
    def specificity(self) -> tuple[int, int, int]:
        return (1 if self.arch else 0, self.major, self.minor)


def parse_decoration(text: str) -> Decoration:
    m = _DECORATION.match(text.strip())
    if not text.strip() or not m:
        return Decoration(None, text=text)
    arch = _ARCH_TOKENS.get((m.group(1) or "").lower())
    return Decoration(arch, _version_part(m.group(2)), _version_part(m.group(3)), text)


def _version_part(digits: str | None) -> int:
    """A decoration's major/minor; past 9 digits (int() refuses 4300+) a version no Windows
    has, so the decoration applies to none."""
    if not digits:
        return 0
    return int(digits) if len(digits) <= 9 else 10**9


@dataclass(frozen=True)
class Model:
    """One device line: description, install section, hardware ID then compatible IDs."""

    description: str
    install: str
    ids: tuple[str, ...]


@dataclass(frozen=True)
class RegValue:
    """One ``AddReg`` line relative to its root (``HKR``: the service or device key)."""

    root: str
    subkey: str
    name: str
    type: int | None  # None: create the key only
    value: object


@dataclass(frozen=True)
class Service:
    name: str
    flags: int
    type: int | None
    start: int | None
    error_control: int | None
    binary: str | None  # as written: %12%\viostor.sys
    group: str | None
    addreg: tuple[RegValue, ...] = ()


@dataclass
class Inf:
    """A parsed INF; methods answer the questions the virtio step asks."""

    sections: dict[str, list[str]]
    strings: dict[str, str] = field(default_factory=dict)

    # -- helpers ----------------------------------------------------------------------------
    def subst(self, text: str) -> str:
        def repl(m: re.Match[str]) -> str:
            key = m.group(1)
            if not key:
                return "%"
            return self.strings.get(key.lower(), m.group(0))

        return re.sub(r"%([^%]*)%", repl, text)

    def entries(self, section: str) -> list[tuple[str | None, str]]:
        """(key, value) pairs of a section, ``%strings%`` substituted."""
        out = []
        for line in self.sections.get(section.lower(), []):
            key, value = split_key(line)
            out.append((unquote(self.subst(key)) if key is not None else None, value))
        return out

    def value(self, section: str, key: str) -> str | None:
        for k, v in self.entries(section):
            if k is not None and k.lower() == key.lower():
                return unquote(self.subst(v))
        return None

    def _list(self, section: str, key: str) -> list[str]:
        out = []
        for k, v in self.entries(section):
            if k is not None and k.lower() == key.lower():
                out += [f for f in split_fields(self.subst(v)) if f]
        return out

    # -- [Version] ----------------------------------------------------------------------------
    @property
    def class_name(self) -> str | None:
        return self.value("version", "Class")

    @property
    def class_guid(self) -> str | None:
        g = self.value("version", "ClassGUID")
        return g.upper() if g else None

    @property
    def provider(self) -> str | None:
        return self.value("version", "Provider")

    @property
    def catalog(self) -> str | None:
        for key in ("CatalogFile", "CatalogFile.NT", "CatalogFile.NTx86", "CatalogFile.NTamd64"):
            v = self.value("version", key)
            if v:
                return v
        return None

    @property
    def driver_ver(self) -> tuple[str | None, tuple[int, ...] | None]:
        """(date ``MM/DD/YYYY``, version tuple) from ``DriverVer``."""
        raw = self.value("version", "DriverVer")
        if not raw:
            return None, None
        parts = [p.strip() for p in raw.split(",")]
        version = None
        if len(parts) > 1:
            try:
                version = tuple(int(x) for x in parts[1].split("."))
            except ValueError:
                version = None
        return parts[0] or None, version

    # -- models ----------------------------------------------------------------------------
    def models(self, arch: str, version: tuple[int, int]) -> list[Model]:
        """Device lines that apply to ``arch`` (``x86``/``x64``) on NT ``version``: for each
        manufacturer, the most specific applicable decoration, as Windows chooses."""
        out: list[Model] = []
        for _key, value in self.entries("manufacturer"):
            fields = split_fields(self.subst(value))
            if not fields or not fields[0]:
                continue
            base, decorations = fields[0], [parse_decoration(d) for d in fields[1:] if d]
            candidates = [(d, f"{base}.{d.text}") for d in decorations]
            candidates.append((Decoration(None), base))
            usable = [
                (d, name) for d, name in candidates
                if d.applies(arch, version) and name.lower() in self.sections
            ]
            if not usable:
                continue
            _d, section = max(usable, key=lambda x: x[0].specificity)
            for k, v in self.entries(section):
                if k is None:
                    continue
                f = split_fields(self.subst(v))
                if len(f) >= 2 and f[0]:
                    out.append(Model(k, f[0], tuple(x.upper() for x in f[1:] if x)))
        return out

    def claims(self, arch: str, version: tuple[int, int], device_id: str) -> Model | None:
        """The model line whose hardware or compatible IDs include ``device_id`` (a prefix
        form like ``PCI\\VEN_1AF4&DEV_1001`` matches longer IDs of that device)."""
        want = device_id.upper()
        for m in self.models(arch, version):
            if any(i == want or i.startswith(want + "&") for i in m.ids):
                return m
        return None

    # -- install sections ------------------------------------------------------------------
    def _decorated(self, install: str, suffix: str, arch: str) -> str | None:
        token = {"x86": "ntx86", "x64": "ntamd64", "arm64": "ntarm64"}.get(arch, "nt")
        for name in (f"{install}.{token}{suffix}", f"{install}.nt{suffix}", f"{install}{suffix}"):
            if name.lower() in self.sections:
                return name
        return None

    def copy_files(self, install: str, arch: str) -> list[str]:
        """File names an install section copies (``CopyFiles`` sections or ``@file``)."""
        sect = self._decorated(install, "", arch)
        if sect is None:
            return []
        out: list[str] = []
        for item in self._list(sect, "CopyFiles"):
            if item.startswith("@"):
                out.append(item[1:])
                continue
            for k, v in self.entries(item):
                name = split_fields(self.subst(v if k is None else k))[0]
                if name:
                    out.append(name)
        return out

    def services(self, install: str, arch: str) -> list[Service]:
        sect = self._decorated(install, ".services", arch)
        if sect is None:
            return []
        out = []
        for k, v in self.entries(sect):
            if k is None or k.lower() != "addservice":
                continue
            f = split_fields(self.subst(v))
            if len(f) < 3 or not f[0]:
                continue
            inst = f[2]
            out.append(
                Service(
                    name=f[0],
                    flags=_int(f[1]) or 0,
                    type=_int(self.value(inst, "ServiceType")),
                    start=_int(self.value(inst, "StartType")),
                    error_control=_int(self.value(inst, "ErrorControl")),
                    binary=self.value(inst, "ServiceBinary"),
                    group=self.value(inst, "LoadOrderGroup"),
                    addreg=tuple(r for s in self._list(inst, "AddReg") for r in self.addreg(s)),
                )
            )
        return out

    def addreg(self, section: str) -> list[RegValue]:
        out = []
        for line in self.sections.get(section.lower(), []):
            f = split_fields(self.subst(line))
            if len(f) < 2 or not f[0]:
                continue
            root, subkey = f[0].upper(), f[1]
            name = f[2] if len(f) > 2 else ""
            flags = _int(f[3]) if len(f) > 3 and f[3] else 0
            data = f[4:]
            reg = _reg_value(flags or 0, data)
            if reg is None:
                continue
            vtype, value = reg
            out.append(RegValue(root, subkey, name, vtype, value))
        return out


_FLG_KEYONLY = 0x10
_FLG_APPEND = 0x8
_FLG_NOCLOBBER = 0x2
_FLG_DELVAL = 0x4


def _reg_value(flags: int, data: list[str]) -> tuple[int | None, object] | None:
    if flags & _FLG_KEYONLY:
        return None, None
    if flags & (_FLG_DELVAL | _FLG_APPEND):
        return None  # not used by the drivers we stage; ignore rather than guess
    kind = flags & 0xFFFF0001
    if kind == 0x00010001:
        return REG_DWORD, _int(data[0]) if data else 0
    if kind == 0x00020000:
        return REG_EXPAND_SZ, data[0] if data else ""
    if kind == 0x00010000:
        return REG_MULTI_SZ, [d for d in data if d]
    if kind == 0x00000001:
        try:
            return REG_BINARY, bytes(int(b, 16) for b in data if b)
        except ValueError:
            return None
    if kind == 0:
        return REG_SZ, data[0] if data else ""
    return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    t = text.strip()
    try:
        return int(t, 0)
    except ValueError:
        try:
            return int(t, 16) if t.lower().startswith("0x") else int(t)
        except ValueError:
            return None


def parse(text: str) -> Inf:
    """Parse INF text (never raises)."""
    secs = sections(text if isinstance(text, str) else "")
    inf = Inf(secs)
    strings: dict[str, str] = {}
    for name in ("strings", "strings.0409"):
        for line in secs.get(name, []):
            k, v = split_key(line)
            if k is not None:
                strings.setdefault(unquote(k).lower(), unquote(v))
    inf.strings = strings
    return inf
