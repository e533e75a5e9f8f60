"""Choose the virtio-win driver packages that fit a guest, whatever the media's layout.

Real media used several layouts over the years; instead of one pattern per layout, every
INF on the media is classified by its *last two folders*: an OS code and an architecture, in
either order.  That covers ``<Driver>/<os>/<arch>/`` (ISO since 2015, and the RPM's
``drivers/by-driver/``), ``<arch>/<os>/`` (the ISO's flat tree, ``drivers/by-os/``), and the
≤2014 ``WXP/X86``, ``WNET/AMD64``, ``WLH``, ``WIN7``, ``WIN8`` folders with NetKVM under
``XP/`` and ``VISTA/``.  The driver is the INF's file name (``viostor.inf``...).

For each driver the guest's OS codes are tried in preference order (its own version first,
then the sibling client/server build, then older builds the INF rules still allow; never a
newer OS's build), per-driver folders before flat copies.  A candidate is accepted only when
its INF's decorated models section, for the guest's architecture and NT version, claims the
device QEMU will present, and its ``.sys`` is a PE of the guest's machine type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..formats import inf as inf_mod
from ..formats.pe import PEError, read_pe, version_str
from ..inspection import Inspection
from .media import VirtioMedia

#: Driver key -> (INF stem, legacy/transitional PCI ID, modern PCI ID).
DRIVERS: dict[str, tuple[str, str, str]] = {
    "viostor": ("viostor", "PCI\\VEN_1AF4&DEV_1001", "PCI\\VEN_1AF4&DEV_1042"),
    "vioscsi": ("vioscsi", "PCI\\VEN_1AF4&DEV_1004", "PCI\\VEN_1AF4&DEV_1048"),
    "netkvm": ("netkvm", "PCI\\VEN_1AF4&DEV_1000", "PCI\\VEN_1AF4&DEV_1041"),
    "balloon": ("balloon", "PCI\\VEN_1AF4&DEV_1002", "PCI\\VEN_1AF4&DEV_1045"),
    "vioserial": ("vioser", "PCI\\VEN_1AF4&DEV_1003", "PCI\\VEN_1AF4&DEV_1043"),
    "viorng": ("viorng", "PCI\\VEN_1AF4&DEV_1005", "PCI\\VEN_1AF4&DEV_1044"),
}

_ARCH = {"x86": "x86", "i386": "x86", "amd64": "x64", "x64": "x64", "arm64": "arm64"}
_OS_ALIASES = {
    "wxp": "xp", "wnet": "2k3", "wlh": "2k8", "vista": "2k8", "win7": "w7", "win8": "w8",
    "win8.1": "w8.1", "win10": "w10", "win11": "w11", "2k8r2": "2k8r2", "2k12r2": "2k12r2",
    # the RPM's flat drivers/<arch>/<Win...>/ folders
    "winxp": "xp", "win2003": "2k3", "win2008": "2k8", "win2008r2": "2k8r2", "win2012": "2k12",
    "win2012r2": "2k12r2", "win2016": "2k16", "win2019": "2k19", "win2022": "2k22",
    "win2025": "2k25", "win81": "w8.1",
}
_OS_CODES = {
    "xp", "2k3", "2k8", "2k8r2", "w7", "w8", "2k12", "w8.1", "2k12r2", "w10", "2k16", "2k19",
    "2k22", "w11", "2k25",
}


def _os_token(name: str) -> str | None:
    t = name.lower().replace("_", ".")
    t = _OS_ALIASES.get(t, t)
    return t if t in _OS_CODES else None


def classify(path: str) -> tuple[str, str, bool] | None:
    """(os code, arch, per-driver folder?) of an INF path, or None when it is not in an
    ``<os>/<arch>`` or ``<arch>/<os>`` folder."""
    dirs = path.split("/")[:-1]
    if len(dirs) < 2:
        return None
    a, b = dirs[-2], dirs[-1]
    if b.lower() in _ARCH and _os_token(a):
        os_code, arch, per_driver = _os_token(a), _ARCH[b.lower()], len(dirs) >= 3
    elif a.lower() in _ARCH and _os_token(b):
        os_code, arch, per_driver = _os_token(b), _ARCH[a.lower()], False
    else:
        return None
    assert os_code is not None
    if os_code == "xp" and arch == "x64":  # the old NetKVM XP/AMD64 folder: the Wnet build
        os_code = "2k3"
    return os_code, arch, per_driver


def os_preference(major: int, minor: int, build: int | None, server: bool,
                  arch: str) -> list[str]:
    """The media OS codes that may serve this Windows, best first (empty: none exist)."""
    v = (major, minor)
    if v < (5, 1):
        return []  # Windows 2000: no virtio-win release ever supported it
    if v == (5, 1):
        return ["xp"]
    if v == (5, 2):  # 2003, and XP x64 (the 2003 kernel)
        return ["2k3"] if arch == "x64" else ["2k3", "xp"]
    if v == (6, 0):
        return ["2k8"]
    if v == (6, 1):
        return ["2k8r2", "w7"] if server else ["w7", "2k8r2"]
    nt62 = ["2k12", "w8"] if server else ["w8", "2k12"]
    if v == (6, 2):
        return nt62
    nt63 = (["2k12r2", "w8.1"] if server else ["w8.1", "2k12r2"]) + nt62
    if v == (6, 3):
        return nt63
    b = build or 0
    if server:
        servers = [c for c, first in (("2k25", 26100), ("2k22", 20348), ("2k19", 17763),
                                      ("2k16", 0)) if b >= first]
        return servers + ["w10"] + nt63
    return (["w11"] if b >= 22000 else []) + ["w10"] + nt63


@dataclass
class Package:
    """One chosen driver package: its folder on the media and what its INF says."""

    driver: str  # key of DRIVERS
    folder: str  # relative path on the media
    inf_path: str
    os_code: str
    inf: inf_mod.Inf
    model: inf_mod.Model
    files: list[str]  # every file of the folder (relative paths on the media)
    sys_file: str | None
    sys_version: str | None
    service: inf_mod.Service | None
    modern: bool  # the INF claims the modern (non-transitional) PCI ID too


@dataclass
class Selection:
    packages: dict[str, Package] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)  # "folder: reason"
    available: list[str] = field(default_factory=list)  # what the media has, "os/arch"


def choose(
    media: VirtioMedia, *, major: int, minor: int, build: int | None, server: bool,
    arch: str, drivers: tuple[str, ...] = tuple(DRIVERS),
) -> Selection:
    sel = Selection()
    prefs = os_preference(major, minor, build, server, arch)
    by_folder: dict[str, list[str]] = {}
    for rel in media.list():
        by_folder.setdefault(rel.rsplit("/", 1)[0] if "/" in rel else "", []).append(rel)
    infs = []
    for rel in media.list():
        if not rel.lower().endswith(".inf"):
            continue
        cls = classify(rel)
        if cls is None:
            continue
        infs.append((rel, *cls))
    sel.available = sorted({f"{o}/{a}" for _r, o, a, _p in infs})
    version = (major, minor)
    for key in drivers:
        stem, legacy_id, modern_id = DRIVERS[key]
        cands = [
            (prefs.index(o), 0 if per else 1, rel, o)
            for rel, o, a, per in infs
            if a == arch and o in prefs and rel.rsplit("/", 1)[-1].lower() == f"{stem}.inf"
        ]
        for _rank, _flat, rel, os_code in sorted(cands):
            folder = rel.rsplit("/", 1)[0]
            why = _check(media, rel, arch, version, legacy_id)
            if isinstance(why, str):
                sel.rejected.append(f"{folder}: {why}")
                continue
            info, model, sys_file, sys_version = why
            services = info.services(model.install, arch)
            sel.packages[key] = Package(
                driver=key, folder=folder, inf_path=rel, os_code=os_code, inf=info,
                model=model, files=package_files(info, rel, by_folder.get(folder, [])),
                sys_file=sys_file,
                sys_version=sys_version, service=services[0] if services else None,
                modern=info.claims(arch, version, modern_id) is not None,
            )
            break
    return sel


def package_files(info: inf_mod.Inf, inf_rel: str, folder_files: list[str]) -> list[str]:
    """The files of *this* package in its folder: the INF, its catalog and what
    ``[SourceDisksFiles*]`` lists (co-installers included).  A flat ``<arch>/<os>/`` folder
    holds several drivers, so the folder alone would drag the others along."""
    names = {inf_rel.rsplit("/", 1)[-1].lower()}
    if info.catalog:
        names.add(info.catalog.lower())
    for section, lines in info.sections.items():
        if not section.startswith("sourcedisksfiles"):
            continue
        for line in lines:
            key, _value = inf_mod.split_key(line)
            name = inf_mod.unquote(info.subst(key if key is not None else line))
            if name:
                names.add(name.lower())
    for section in info.sections:  # CopyFiles targets, for INFs without SourceDisksFiles
        for k, v in info.entries(section):
            if k is not None and k.lower() == "copyfiles":
                for item in inf_mod.split_fields(info.subst(v)):
                    if item.startswith("@"):
                        names.add(item[1:].lower())
                    else:
                        for kk, vv in info.entries(item):
                            first = inf_mod.split_fields(info.subst(vv if kk is None else kk))
                            if first and first[0]:
                                names.add(first[0].lower())
    chosen = [f for f in folder_files if f.rsplit("/", 1)[-1].lower() in names]
    return sorted(chosen or folder_files)


def _check(media: VirtioMedia, rel: str, arch: str, version: tuple[int, int], device: str):
    """Why an INF folder does not fit (a string), or (inf, model, sys path, sys version)."""
    info = inf_mod.parse(inf_mod.decode(media.read(rel)))
    model = info.claims(arch, version, device)
    if model is None:
        return f"its INF claims no {device} for {arch} on NT {version[0]}.{version[1]}"
    folder = rel.rsplit("/", 1)[0]
    sys_names = [f for f in info.copy_files(model.install, arch) if f.lower().endswith(".sys")]
    sys_file, sys_version = None, None
    for name in sys_names:
        real = media.find(f"{folder}/{name}")
        if real is None:
            return f"{name} named by the INF is missing"
        try:
            pe = read_pe(media.read(real))
        except PEError as exc:
            return f"{name} is not a valid PE file ({exc})"
        if pe.arch != arch:
            return f"{name} is {pe.arch}, the guest is {arch}"
        if sys_file is None:
            sys_file = real
            sys_version = version_str(pe.file_version) if pe.file_version else None
    return info, model, sys_file, sys_version


def no_driver_message(insp: Inspection, driver: str | None, media: VirtioMedia | None,
                      selection: Selection | None) -> str:
    """Why the media cannot serve this guest: what it needs, what the media has."""
    guest = f"{insp.product_name or 'Windows'} {insp.arch or ''}".strip()
    if media is None:
        return f"--bus needs the {driver} driver: give the virtio-win media with --virtio-win"
    needs = os_preference(
        insp.major or 0, insp.minor or 0, insp.build,
        (insp.product_type or "WinNT").lower() != "winnt", insp.arch or "x86",
    )
    arch = insp.arch or "x86"
    want = ", ".join(f"{o}/{arch}" for o in needs) or "none: no virtio-win release supports it"
    has = ", ".join(selection.available) if selection and selection.available else "none"
    what = f"no {driver}" if driver else "no drivers"
    extra = ""
    if selection and selection.rejected:
        extra = f"; rejected: {'; '.join(selection.rejected)}"
    return (f"{media.path} has {what} for {guest} (it needs {want}; the media has {has})"
            + extra)
