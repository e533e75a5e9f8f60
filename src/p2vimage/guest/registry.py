"""Registry hives through hivex, with the lookups Windows itself performs.

Windows compares key and value names case-insensitively; hivex's
``node_get_child`` already does, and this module keeps every other lookup the
same way.  Values are decoded from their raw bytes (not with hivex's
``value_string``), because real hives contain REG_SZ data without a
terminator, odd lengths and wrong types, and a broken value must not stop an
inspection; the value types and their encoding are in :mod:`p2vimage.formats.regf`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import deps
from ..errors import CorruptHiveError
from ..formats.regf import decode_sz, decode_value, encode_value

_SAFE_HIVEX: type | None = None
_SAFE_HIVEX_LOCK = threading.Lock()


def _safe_hivex_class() -> type:
    """hivex.Hivex whose destructor tolerates a failed open.

    The binding's ``__del__`` touches ``self._o``, which a failed ``__init__``
    never set, and Python then prints an "Exception ignored" trace on stderr.
    Made once under a lock: conversions in several threads share the one class.
    """
    with _SAFE_HIVEX_LOCK:
        return _SAFE_HIVEX or _make_safe_hivex_class()


def _make_safe_hivex_class() -> type:
    global _SAFE_HIVEX
    if _SAFE_HIVEX is None:
        base = deps.hivex().Hivex

        class SafeHivex(base):  # type: ignore[misc, valid-type]
            def __del__(self) -> None:
                if hasattr(self, "_o"):
                    super().__del__()

        _SAFE_HIVEX = SafeHivex
    return _SAFE_HIVEX


@dataclass(frozen=True)
class Value:
    name: str
    type: int
    data: bytes

    @property
    def value(self) -> Any:
        return decode_value(self.type, self.data)


class Hive:
    """One open hive file.  Small, explicit: open, read/write, commit, close.

    ``path`` is a local file (hives are downloaded from the appliance, edited
    here with the full hivex API, and uploaded back once at commit time).
    """

    def __init__(self, path: str | os.PathLike[str], *, write: bool = False, name: str = ""):
        self.path = Path(path)
        self.name = name or self.path.name
        self.write = write
        try:
            self._h = _safe_hivex_class()(str(self.path), write=write)
            self._root = self._h.root()
        except (RuntimeError, OSError) as exc:
            raise CorruptHiveError(f"cannot open registry hive {self.name}: {exc}") from exc
        self.dirty = False

    # -- navigation ---------------------------------------------------------

    @property
    def root(self) -> int:
        return self._root

    def _err(self, what: str, exc: Exception) -> CorruptHiveError:
        return CorruptHiveError(f"registry hive {self.name} is corrupt ({what}): {exc}")

    def node(self, path: str, start: int | None = None) -> int | None:
        """Node at backslash-separated ``path`` below ``start`` (root), or None."""
        node = self._root if start is None else start
        for part in (p for p in path.split("\\") if p):
            try:
                node = self._h.node_get_child(node, part)
            except RuntimeError as exc:
                raise self._err(f"looking up {path}", exc) from exc
            if node is None:
                return None
        return node

    def children(self, node: int) -> list[int]:
        try:
            return list(self._h.node_children(node))
        except RuntimeError as exc:
            raise self._err("listing subkeys", exc) from exc

    def child_names(self, node: int) -> list[str]:
        return [self.node_name(c) for c in self.children(node)]

    def iter_children(self, node: int) -> Iterator[tuple[str, int]]:
        for c in self.children(node):
            yield self.node_name(c), c

    def node_name(self, node: int) -> str:
        return self._h.node_name(node)

    def path_of(self, node: int) -> str:
        parts = []
        while node != self._root:
            parts.append(self.node_name(node))
            if len(parts) > 512:  # Windows allows 512 levels; more is a parent-pointer loop
                raise CorruptHiveError(f"registry hive {self.name} is corrupt: a key's "
                                       "parent chain never reaches the root")
            try:
                node = self._h.node_parent(node)
            except RuntimeError as exc:
                raise self._err("following a key's parent", exc) from exc
        return "\\".join(reversed(parts))

    # -- values ---------------------------------------------------------------

    def values(self, node: int) -> dict[str, Value]:
        """All values of a key, by lower-cased name."""
        out: dict[str, Value] = {}
        try:
            for v in self._h.node_values(node):
                key = self._h.value_key(v)
                vtype, data = self._h.value_value(v)
                out[key.lower()] = Value(key, vtype, data)
        except RuntimeError as exc:
            raise self._err("reading values", exc) from exc
        return out

    def raw(self, node: int | None, name: str) -> Value | None:
        if node is None:
            return None
        return self.values(node).get(name.lower())

    def get(self, node: int | None, name: str, default: Any = None) -> Any:
        v = self.raw(node, name)
        return default if v is None else v.value

    def get_str(self, node: int | None, name: str) -> str | None:
        v = self.raw(node, name)
        if v is None:
            return None
        val = v.value
        if isinstance(val, list):
            return val[0] if val else ""
        if isinstance(val, bytes):
            return decode_sz(val)
        return str(val)

    def get_int(self, node: int | None, name: str) -> int | None:
        val = self.get(node, name)
        return val if isinstance(val, int) else None

    def get_list(self, node: int | None, name: str) -> list[str]:
        val = self.get(node, name)
        if val is None:
            return []
        if isinstance(val, list):
            return val
        if isinstance(val, str):
            return [val] if val else []
        return []

    # -- writing ------------------------------------------------------------

    def ensure_key(self, path: str, start: int | None = None) -> int:
        """Node at ``path``, creating missing keys (matching existing ones case-insensitively)."""
        node = self._root if start is None else start
        for part in (p for p in path.split("\\") if p):
            child = self._h.node_get_child(node, part)
            if child is None:
                child = self._h.node_add_child(node, part)
                self.dirty = True
            node = child
        return node

    def set_value(self, node: int, name: str, vtype: int, value: Any) -> bool:
        """Set one value, keeping the others; True when something changed."""
        data = encode_value(vtype, value)
        existing = self.raw(node, name)
        if existing is not None and existing.type == vtype and existing.data == data:
            return False
        keep_name = existing.name if existing is not None else name
        self._h.node_set_value(node, {"key": keep_name, "t": vtype, "value": data})
        self.dirty = True
        return True

    def delete_key(self, node: int) -> None:
        """Delete ``node`` and its subtree, after making sure the subtree is a tree.

        hivex deletes recursively in C: a subkey list pointing back at an ancestor
        (a damaged hive) would recurse until the process crashes.  The subtree is
        walked first, iteratively, with every key counted once.
        """
        self._check_subtree(node)
        try:
            self._h.node_delete_child(node)
        except RuntimeError as exc:
            raise self._err(f"deleting {self.path_of(node)}", exc) from exc
        self.dirty = True

    def _check_subtree(self, node: int, limit: int = 200_000) -> None:
        seen = {node}
        stack = [node]
        while stack:
            for child in self.children(stack.pop()):
                if child in seen:
                    raise CorruptHiveError(
                        f"registry hive {self.name} is corrupt: a cycle in the key tree "
                        f"below {self.path_of(node)}"
                    )
                seen.add(child)
                if len(seen) > limit:
                    raise CorruptHiveError(
                        f"registry hive {self.name} is corrupt: more than {limit} keys "
                        f"below {self.path_of(node)}"
                    )
                stack.append(child)

    def commit(self) -> None:
        if not self.write:
            raise RuntimeError("hive opened read-only")
        try:
            self._h.commit(None)
        except RuntimeError as exc:
            raise self._err("commit", exc) from exc
        self.dirty = False

    def close(self) -> None:
        self._h = None  # hivex closes the handle when the object is collected

    def __enter__(self) -> Hive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ControlSets:
    """SYSTEM ``Select``: which ControlSet00N each boot path uses.

    Offline there is no ``CurrentControlSet``; the boot loader uses ``Default``
    (and ``LastKnownGood`` on request), inspection tools report ``Current``.
    """

    current: int
    default: int
    last_known_good: int | None
    failed: int | None
    present: tuple[str, ...]

    @staticmethod
    def name(n: int) -> str:
        return f"ControlSet{n:03d}"

    def bootable(self) -> list[str]:
        """Every control set Windows may boot, existing ones only, without duplicates."""
        out: list[str] = []
        present = {p.lower(): p for p in self.present}
        for n in (self.current, self.default, self.last_known_good):
            if n is None or n <= 0:
                continue
            name = present.get(self.name(n).lower())
            if name and name not in out:
                out.append(name)
        return out


def read_control_sets(hive: Hive) -> ControlSets:
    select = hive.node("Select")
    if select is None:
        raise CorruptHiveError(f"SYSTEM hive {hive.name} has no Select key")
    current = hive.get_int(select, "Current")
    default = hive.get_int(select, "Default")
    if current is None and default is None:
        raise CorruptHiveError(f"SYSTEM hive {hive.name}: Select has no Current/Default value")
    present = tuple(
        n for n in hive.child_names(hive.root) if n.lower().startswith("controlset")
    )
    cs = ControlSets(
        current=current if current is not None else default,  # type: ignore[arg-type]
        default=default if default is not None else current,  # type: ignore[arg-type]
        last_known_good=hive.get_int(select, "LastKnownGood"),
        failed=hive.get_int(select, "Failed"),
        present=present,
    )
    if not cs.bootable():
        raise CorruptHiveError(
            f"SYSTEM hive {hive.name}: Select points at ControlSet{cs.current:03d}, "
            f"which does not exist (present: {', '.join(present) or 'none'})"
        )
    return cs
