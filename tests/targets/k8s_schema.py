"""A strict checker for Kubernetes manifests, driven by KubeVirt's and CDI's OpenAPI specs.

The specs (``../shared/realdata/targets/{kubevirt,cdi}-swagger.json.gz``, Swagger 2.0)
use a small part of JSON schema: ``$ref``, ``type`` (one or a list), ``properties``,
``required``, ``items``, ``additionalProperties`` (maps), ``enum``, ``format`` and
``nullable``; that is all this checker implements, plus what plain validation misses:

* **unknown keys**: no definition sets ``additionalProperties: false`` (the API server
  prunes or ignores unknown fields), so a misspelt field would pass; here every key must
  be a property of its definition;
* **values named only in prose**: most value sets are in the field descriptions
  ("supported values: virtio, sata, scsi, usb.", "One of: e1000, ...", a list of
  ``- "Always": ...``); when a description has such a list, a string value must be in it.
  ``prose_checked`` records which fields were checked that way;
* other rules a description states: "Must be a DNS_LABEL", "Must be a value greater or
  equal N", "an integer value > 0", and the ``Quantity`` grammar written out in its
  definition's description;
* ``x-kubernetes-list-map-keys``: the items of such a list are unique by those keys.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import REALDATA

KUBEVIRT = REALDATA / "targets" / "kubevirt-swagger.json.gz"
CDI = REALDATA / "targets" / "cdi-swagger.json.gz"

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# KubeVirt's spec calls it k8s.io.apimachinery.pkg.api.resource.Quantity, CDI's resource.Quantity
_QUANTITY_SUFFIX = "resource.Quantity"
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}
_INT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def quantity_regex(description: str) -> re.Pattern[str]:
    """The Quantity grammar of its own description, as a regex.

    ``<quantity> ::= <signedNumber><suffix>``; ``<binarySI> ::= Ki | Mi | Gi | Ti | Pi |
    Ei``; ``<decimalSI> ::= m | "" | k | M | G | T | P | E``; ``<decimalExponent> ::= "e"
    <signedNumber> | "E" <signedNumber>``; numbers ``<digits> | <digits>.<digits> |
    <digits>. | .<digits>`` with an optional sign.  The suffix lists are read from the
    text, so a changed grammar changes the check.
    """
    binary = re.search(r"<binarySI>\s*::=\s*([^\n(]+)", description)
    decimal = re.search(r"<decimalSI>\s*::=\s*([^\n(<]+)", description)
    assert binary and decimal, "the Quantity description no longer states its grammar"
    binary_si = [s.strip() for s in binary.group(1).split("|") if s.strip()]
    decimal_si = [s.strip() for s in decimal.group(1).split("|")
                  if s.strip() and s.strip() != '""']
    number = r"[+-]?(\d+|\d+\.\d+|\d+\.|\.\d+)"
    suffix = "|".join(map(re.escape, binary_si + decimal_si)) + rf"|[eE]{number}"
    return re.compile(rf"{number}(?:{suffix})?")


def prose_values(description: str) -> list[str] | None:
    """The values a field description enumerates in prose, or None if it lists none."""
    text = " ".join(description.split())
    m = re.search(r"(?:[Ss]upported values|One of):?\s+([^.]+)\.", text)
    if m and ":" not in m.group(1):
        return [v.strip(" `'\"") for v in m.group(1).split(",") if v.strip(" `'\"")]
    if re.search(r"allowed values:", text):
        found = re.findall(r'- "(\w+)":', text)
        return found or None
    return None


class OpenApi:
    """One swagger document's definitions and a strict checker returning error strings."""

    def __init__(self, path: Path) -> None:
        with gzip.open(path) as f:
            self.doc = json.load(f)
        self.definitions: dict[str, dict[str, Any]] = self.doc["definitions"]
        self.prose_checked: set[str] = set()
        quantities = [n for n in self.definitions if n.endswith(_QUANTITY_SUFFIX)]
        assert len(quantities) == 1, quantities
        self.quantity_name = quantities[0]
        self.quantity = quantity_regex(self.definitions[self.quantity_name]["description"])

    def group_version_of(self, definition: str) -> str:
        """``group/version`` of the collection a POST of ``definition`` goes to
        (``/apis/GROUP/VERSION/namespaces/{namespace}/PLURAL``)."""
        for path, ops in self.doc["paths"].items():
            post = ops.get("post") if isinstance(ops, dict) else None
            for param in (post or {}).get("parameters", []):
                if (param.get("in") == "body"
                        and param.get("schema", {}).get("$ref") == f"#/definitions/{definition}"):
                    m = re.match(r"/apis/([^/]+)/([^/]+)/namespaces/", path)
                    assert m, path
                    return f"{m.group(1)}/{m.group(2)}"
        raise KeyError(definition)

    def namespace_pattern(self, definition: str) -> re.Pattern[str] | None:
        """The ``{namespace:REGEX}`` pattern the POST path of ``definition`` states, if any."""
        for path, ops in self.doc["paths"].items():
            post = ops.get("post") if isinstance(ops, dict) else None
            for param in (post or {}).get("parameters", []):
                if param.get("schema", {}).get("$ref") == f"#/definitions/{definition}":
                    m = re.search(r"\{namespace:([^}]+)\}", path)
                    return re.compile(m.group(1)) if m else None
        return None

    def errors(self, value: Any, definition: str) -> list[str]:
        out: list[str] = []
        self._check(value, {"$ref": f"#/definitions/{definition}"}, definition, out, None)
        return out

    def _resolve(self, schema: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        name = None
        while "$ref" in schema:
            ref = schema["$ref"]
            assert ref.startswith("#/definitions/"), ref
            name = ref.removeprefix("#/definitions/")
            schema = self.definitions[name]
        return schema, name

    def _check(self, value: Any, schema: dict[str, Any], path: str, out: list[str],
               field: str | None) -> None:
        """``field``: ``Definition.property`` the value sits in (for prose rules)."""
        description = schema.get("description", "")
        schema, name = self._resolve(schema)
        if name == self.quantity_name:
            if not self.quantity.fullmatch(str(value)):
                out.append(f"{path}: {value!r} is not a Quantity")
            return
        if value is None:
            if not schema.get("nullable"):
                out.append(f"{path}: null")
            return
        types = schema.get("type")
        types = [types] if isinstance(types, str) else (types or [])
        if types and not any(self._is(value, t) for t in types):
            out.append(f"{path}: {value!r} is not {'/'.join(types)}")
            return
        if "enum" in schema and value not in schema["enum"]:
            out.append(f"{path}: {value!r} not in {schema['enum']}")
        if isinstance(value, int) and schema.get("format") in _INT_RANGE:
            low, high = _INT_RANGE[schema["format"]]
            if not low <= value <= high:
                out.append(f"{path}: {value} outside {schema['format']}")
        self._prose_rules(value, description or schema.get("description", ""), path, out, field)
        if isinstance(value, dict):
            self._check_object(value, schema, name, path, out)
        elif isinstance(value, list):
            items = schema.get("items", {})
            for i, item in enumerate(value):
                self._check(item, items, f"{path}[{i}]", out, field)
            keys = schema.get("x-kubernetes-list-map-keys")
            if keys:
                seen = [tuple(item.get(k) for k in keys) for item in value]
                if len(seen) != len(set(seen)):
                    out.append(f"{path}: items not unique by {keys}")

    def _check_object(self, value: dict[str, Any], schema: dict[str, Any], name: str | None,
                      path: str, out: list[str]) -> None:
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}: required {key!r} missing")
        for key, item in value.items():
            if props is not None and key in props:
                self._check(item, props[key], f"{path}.{key}", out, f"{name}.{key}")
            elif isinstance(extra, dict):
                self._check(item, extra, f"{path}.{key}", out, None)
            else:
                out.append(f"{path}: unknown field {key!r} ({name or 'object'} has "
                           f"{sorted(props or [])})")

    @staticmethod
    def _is(value: Any, kind: str) -> bool:
        if kind in ("integer", "number") and isinstance(value, bool):
            return False
        return isinstance(value, _PY_TYPES.get(kind, (object,)))

    def _prose_rules(self, value: Any, description: str, path: str, out: list[str],
                     field: str | None) -> None:
        if isinstance(value, str):
            allowed = prose_values(description)
            if allowed:
                if field:
                    self.prose_checked.add(field)
                if value not in allowed:
                    out.append(f"{path}: {value!r} not among the documented {allowed}")
            if "Must be a DNS_LABEL" in description and not (
                    len(value) <= 63 and DNS_LABEL.fullmatch(value)):
                out.append(f"{path}: {value!r} is not a DNS label")
        elif isinstance(value, int) and not isinstance(value, bool):
            m = re.search(r"[Mm]ust be a value greater or equal (\d+)", description)
            if m and value < int(m.group(1)):
                out.append(f"{path}: {value} < {m.group(1)}")
            if "integer value > 0" in description and value <= 0:
                out.append(f"{path}: {value} is not > 0")
