"""A checker for Proxmox VE VM configs, driven by PVE's published API schema.

The schema (``../shared/realdata/targets/pve-qemu-api.json``, extracted from pve-docs'
``apidata.js``) describes the VM-create call: one property per config key.  Plain JSON
schema validation would miss most of what matters, so this follows PVE's own checker
(pve-common ``PVE::JSONSchema``):

* indexed keys: ``virtio0`` is the property ``virtio[n]``; the index range is only in the
  description ("n is 0 to 15"), so it is read from there;
* scalars as Perl sees them: booleans ``0``/``1``, ``is_integer``/``is_number``, ``enum``,
  ``pattern`` anchored (``m/^$pattern$/``; ``(?^:...)`` is Perl's flag group, unwrapped),
  ``minimum``/``maximum``, ``minLength``/``maxLength``;
* property strings (``format`` a dict): ``parse_property_string``'s rules, i.e. split on
  ``,``, ``k=v`` or a bare first value for the ``default_key``, ``alias`` and
  ``keyAlias`` (``virtio=MAC`` is ``model=virtio,macaddr=MAC``), unknown and duplicated
  sub-keys refused, non-optional sub-keys required, and every sub-value checked again;
* named formats (``format`` a string): the schema names them but does not define them.
  The few our writers emit are transcribed below from PVE's sources, each with where it
  comes from; hash formats that are not in the file (``pve-qm-boot``, ``pve-vm-cpu-conf``,
  ``pve-qm-smbios1``) take their sub-keys from the property's own ``typetext``.  A format
  not listed here is an error, so a new key cannot pass unchecked.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from tests.conftest import REALDATA

SCHEMA = REALDATA / "targets" / "pve-qemu-api.json"
_CREATE = ("/nodes/{node}/qemu", "POST")
_CONFIG = "/nodes/{node}/qemu/{vmid}/config"

# pve-common src/PVE/JSONSchema.pm and pve-storage src/PVE/Storage/Plugin.pm.
_ID = r"[a-z][a-z0-9\-\_\.]*[a-z0-9]"  # parse_id (storage IDs), parse_volume_id
_DNS_LABEL = r"([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)"  # pve_verify_dns_name
_FORMAT_RE = {
    "dns-name": re.compile(rf"({_DNS_LABEL}\.)*{_DNS_LABEL}"),
    "mac-addr": re.compile(r"[a-f0-9][02468ace](?::[a-f0-9]{2}){5}", re.I),  # unicast only
    # parse_bridge_id: Perl's \w on a byte string is ASCII
    "pve-bridge-id": re.compile(r"[-_.A-Za-z0-9]+"),
    "pve-storage-id": re.compile(_ID, re.I),
    "pve-volume-id": re.compile(rf"({_ID}):(.+)", re.I),
    "disk-size": re.compile(r"(\d+(\.\d+)?)([KMGT])?"),  # parse_size
    "urlencoded": re.compile(r"[-%a-zA-Z0-9_.!~*'()]*"),
    "pve-vmid": re.compile(r"[1-9][0-9]{2,8}"),
}
_UUID = re.compile(r"[a-fA-F0-9]{8}(-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}")  # qemu-server smbios1


def perl_regex(pattern: str) -> str:
    """A schema pattern for Python's ``re``: Perl's ``(?^:X)`` (default flags) is ``(?:X)``."""
    return re.sub(r"\(\?\^[a-z]*:", "(?:", pattern)


class PveSchema:
    """PVE's VM config schema and a checker that returns error strings (empty: valid)."""

    def __init__(self, path: Path = SCHEMA) -> None:
        self.doc = json.loads(path.read_text())
        paths = self.doc["paths"]
        self.create: dict[str, dict[str, Any]] = (
            paths[_CREATE[0]]["info"][_CREATE[1]]["parameters"]["properties"])
        self.stored: dict[str, dict[str, Any]] = (
            paths[_CONFIG]["info"]["GET"]["returns"]["properties"])
        self.update: dict[str, dict[str, Any]] = (
            paths[_CONFIG]["info"]["PUT"]["parameters"]["properties"])
        # Arguments of the call that are never config keys (vmid, node, storage, ...).
        self.api_only = set(self.create) - set(self.stored)

    # -- keys -----------------------------------------------------------------------

    @cached_property
    def index_ranges(self) -> dict[str, range]:
        """``{"virtio[n]": range(0, 16), ...}`` from the descriptions ("n is 0 to 15")."""
        out = {}
        for name, prop in self.create.items():
            m = re.search(r"\(n is (\d+) to (\d+)\)", prop.get("description", ""))
            if name.endswith("[n]") and m:
                out[name] = range(int(m.group(1)), int(m.group(2)) + 1)
        return out

    def property_name(self, key: str, props: dict[str, dict[str, Any]]) -> tuple[str | None, str]:
        """The schema property for a config key, or None and why not."""
        if key in props:
            return key, ""
        m = re.fullmatch(r"([a-z_-]+?)(\d+)", key)
        if not m or f"{m.group(1)}[n]" not in props:
            return None, f"{key}: not a property of the schema"
        name, index = f"{m.group(1)}[n]", int(m.group(2))
        allowed = self.index_ranges.get(name)
        if allowed is not None and index not in allowed:
            return None, (f"{key}: index {index} out of range {allowed.start}.."
                          f"{allowed.stop - 1} ({name})")
        return name, ""

    def valid_drive_name(self, key: str) -> bool:
        """qemu-server's is_valid_drivename: an in-range disk slot or efidisk0/tpmstate0."""
        name, _ = self.property_name(key, self.create)
        return name in ("ide[n]", "sata[n]", "scsi[n]", "virtio[n]", "efidisk0", "tpmstate0")

    # -- whole configs and calls ----------------------------------------------------

    def config_errors(self, text: str) -> list[str]:
        """Errors of a ``VMID.conf`` text: each ``key: value`` line up to ``[snapshot]``."""
        errors, seen = [], set()
        for number, line in enumerate(text.splitlines(), 1):
            if line.startswith("["):
                break
            if not line.strip() or line.startswith("#"):
                continue
            # qemu-server's parse_vm_config
            m = re.fullmatch(r"([a-z][a-z_\-]*\d*):\s*(.+?)\s*", line)
            if not m:
                errors.append(f"line {number}: not a 'key: value' line: {line!r}")
                continue
            key, value = m.groups()
            if key in seen:
                errors.append(f"line {number}: {key} given twice")
            seen.add(key)
            if key in self.api_only:
                errors.append(f"{key}: an API argument, not a config key")
                continue
            errors += self.value_errors(key, value, self.stored)
        return errors

    def value_errors(self, key: str, value: str, props: dict[str, dict[str, Any]]) -> list[str]:
        """Errors of one ``key``/``value`` against ``props`` (create, stored or update)."""
        name, why = self.property_name(key, props)
        if name is None:
            return [why]
        errors: list[str] = []
        # The stored-config returns lack only ``typetext``: take it from the create call.
        prop = {"typetext": self.create.get(name, {}).get("typetext", ""), **props[name]}
        self._check(prop, value, key, errors, props)
        return errors

    def command_errors(self, args: list[str], props: dict[str, dict[str, Any]]) -> list[str]:
        """Errors of ``qm create|set VMID --key value ...`` arguments (after the VMID)."""
        errors: list[str] = []
        if len(args) % 2:
            return [f"odd option list {args!r}"]
        for opt, value in zip(args[::2], args[1::2], strict=True):
            if not opt.startswith("--"):
                errors.append(f"{opt!r}: not an option")
                continue
            errors += self.value_errors(opt[2:], value, props)
        return errors

    # -- values ---------------------------------------------------------------------

    def _check(self, prop: dict[str, Any], value: str, path: str, errors: list[str],
               props: dict[str, dict[str, Any]]) -> None:
        kind = prop.get("type")
        if kind == "boolean" and value not in ("0", "1"):
            errors.append(f"{path}: boolean {value!r} is not 0 or 1")
        elif kind == "integer" and not re.fullmatch(r"[+-]?\d+", value):
            errors.append(f"{path}: {value!r} is not an integer")
        elif kind == "number" and not re.fullmatch(
                r"[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?", value):
            errors.append(f"{path}: {value!r} is not a number")
        if kind in ("integer", "number") and re.fullmatch(r"[+-]?[\d.]+", value):
            number = float(value)
            if "minimum" in prop and number < float(prop["minimum"]):
                errors.append(f"{path}: {value} < minimum {prop['minimum']}")
            if "maximum" in prop and number > float(prop["maximum"]):
                errors.append(f"{path}: {value} > maximum {prop['maximum']}")
        if "enum" in prop and value not in prop["enum"]:
            errors.append(f"{path}: {value!r} not in {prop['enum']}")
        if "pattern" in prop and not re.fullmatch(perl_regex(prop["pattern"]), value):
            errors.append(f"{path}: {value!r} does not match {prop['pattern']!r}")
        if "maxLength" in prop and len(value) > int(prop["maxLength"]):
            errors.append(f"{path}: longer than {prop['maxLength']}")
        if "minLength" in prop and len(value) < int(prop["minLength"]):
            errors.append(f"{path}: shorter than {prop['minLength']}")
        fmt = prop.get("format")
        if isinstance(fmt, dict):
            self._check_property_string(fmt, value, path, errors, props)
        elif isinstance(fmt, str):
            self._check_named(fmt, prop, value, path, errors, props)

    def _check_property_string(self, fmt: dict[str, Any], data: str, path: str,
                               errors: list[str], props: dict[str, dict[str, Any]]) -> None:
        """parse_property_string, then check_object on the result: a sub-key that is
        not optional must be there (a ``default`` does not excuse it), each value valid."""
        parsed = self._parse_property_string(fmt, data, path, errors)
        for key, sub in fmt.items():
            if sub.get("alias"):
                continue
            if key in parsed:
                self._check(sub, parsed[key], f"{path}.{key}", errors, props)
            elif not sub.get("optional"):
                errors.append(f"{path}: required sub-key {key!r} missing")

    @staticmethod
    def _parse_property_string(fmt: dict[str, Any], data: str, path: str,
                               errors: list[str]) -> dict[str, str]:
        """pve-common's parse_property_string: ``k=v`` items or a bare default-key value."""
        parsed: dict[str, str] = {}
        default_key = next((k for k, v in fmt.items() if v.get("default_key")), None)
        for part in data.split(","):
            if not part.strip():
                errors.append(f"{path}: empty item in {data!r}")
                continue
            m = re.fullmatch(r"([^=]+)=(.+)", part, re.S)
            if m:
                key, value = m.groups()
                sub = fmt.get(key)
                if sub and sub.get("alias"):
                    if sub.get("keyAlias"):
                        if sub["keyAlias"] in parsed:
                            errors.append(f"{path}: {sub['keyAlias']} given twice")
                        parsed[sub["keyAlias"]] = key
                    key = sub["alias"]
                    sub = fmt.get(key)
                if not sub:
                    errors.append(f"{path}: unknown sub-key {key!r}")
                    continue
                if key in parsed:
                    errors.append(f"{path}: sub-key {key!r} given twice")
                parsed[key] = value
            elif "=" not in part and default_key is not None and default_key not in parsed:
                parsed[default_key] = part
            else:
                errors.append(f"{path}: item {part!r} has no key")
        return parsed

    def _check_named(self, fmt: str, prop: dict[str, Any], value: str, path: str,
                     errors: list[str], props: dict[str, dict[str, Any]]) -> None:
        if fmt in _FORMAT_RE:
            if not _FORMAT_RE[fmt].fullmatch(value):
                errors.append(f"{path}: {value!r} is not a valid {fmt}")
        elif fmt in ("pve-volume-id-or-qm-path", "pve-volume-id-or-absolute-path"):
            # qemu-server verify_volume_id_or_qm_path / _or_absolute_path
            special = fmt.endswith("qm-path") and value in ("none", "cdrom")
            if not (special or value.startswith("/") or _FORMAT_RE["pve-volume-id"].fullmatch(
                    value)):
                errors.append(f"{path}: {value!r} is not a volume ID or path")
        elif fmt in ("pve-qm-boot", "pve-vm-cpu-conf", "pve-qm-smbios1"):
            self._check_typetext_format(fmt, prop, value, path, errors, props)
        else:
            errors.append(f"{path}: no check for PVE format {fmt!r} (add one)")

    def _check_typetext_format(self, fmt: str, prop: dict[str, Any], value: str, path: str,
                               errors: list[str], props: dict[str, dict[str, Any]]) -> None:
        """A hash format the file does not define: sub-keys from ``typetext``
        (``[[key=]<...>]`` is the default key, ``[,key=<...>]`` the others)."""
        found = re.findall(r"\[,?(\[)?([A-Za-z0-9_-]+)=\]?<", prop["typetext"])
        if not found:
            errors.append(f"{path}: no sub-keys in typetext {prop['typetext']!r}")
            return
        sub_fmt = {key: {"optional": 1, "default_key": int(bool(bracket)), "type": "string"}
                   for bracket, key in found}
        count = len(errors)
        items = self._parse_property_string(sub_fmt, value, path, errors)
        if len(errors) > count:
            return
        if fmt == "pve-qm-boot":
            # qemu-server verify_bootdev over the ;-list
            for dev in items.get("order", "").split(";"):
                special = dev.startswith(("efidisk", "tpmstate"))
                ok = (self.valid_drive_name(dev) and not special) or (
                    re.fullmatch(r"(net|usb|hostpci)\d+", dev)
                    and self.property_name(dev, props)[0] is not None)
                if not ok:
                    errors.append(f"{path}.order: invalid boot device {dev!r}")
            if "legacy" in items and not re.fullmatch(r"[acdn]{1,4}", items["legacy"]):
                errors.append(f"{path}.legacy: {items['legacy']!r}")
        elif fmt == "pve-qm-smbios1":
            for key, item in items.items():
                if key == "uuid":
                    if not _UUID.fullmatch(item):
                        errors.append(f"{path}.uuid: {item!r} is not a UUID")
                elif key == "base64":
                    if item not in ("0", "1"):
                        errors.append(f"{path}.base64: {item!r} is not 0 or 1")
                elif items.get("base64") == "1":
                    try:
                        base64.b64decode(item, validate=True)
                    except binascii.Error:
                        errors.append(f"{path}.{key}: {item!r} is not base64")
        elif fmt == "pve-vm-cpu-conf":
            cputype = items.get("cputype", "")
            # qemu-server CPUConfig: a built-in model name or custom-NAME
            if not re.fullmatch(r"(custom-)?[A-Za-z0-9][A-Za-z0-9_.+-]*", cputype):
                errors.append(f"{path}.cputype: {cputype!r}")
