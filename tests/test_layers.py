"""The package's layers, enforced: every import in ``src/p2vimage`` points down, never up.

Layers, bottom to top (a module may import its own layer, the layers below it, and the
base):

  base        errors, plan, options, choices, deps, interrupt, progress, destinations
              (the typed ``--to`` targets an option holds); formats/
              (byte-format readers);
              blockio/ (disk images opened on the host: both the input side, a
              Clonezilla restore and guest/disks.py, and the output side, targets/,
              read and write through it, so it can be neither)
  sources     sources/ (bytes in: image files, Clonezilla directories)
  guest       guest/ (the libguestfs appliance job and its views)
  inspection  inspection/ (what the guest is, read from its hives)
  steps       windows/, virtio/, check/ (one layer: they may import each other)
  targets     targets/ (output disks, host copy, atomic outputs, space)
  top         convert, api, cli, libvirt_xml, restore, __init__, __main__ and any other
              top-level module, and the batch/ package (a fleet driving the CLI and the
              API: it imports cli, cli imports it): nothing below imports them

Besides: ``formats/`` imports nothing of ours outside ``formats/`` (not even errors:
its modules raise their own exceptions and callers translate), and only top-level
modules import the public facade and front ends (``api``, ``cli``, ``convert``).

Every ``import`` and ``from ... import`` counts, also inside functions; only imports
under ``if TYPE_CHECKING:`` are left out: they never run, and they let the plan (base)
name the types of the virtio media its context carries without importing them.  A new
package under ``src/p2vimage`` must be given a layer here (a new top-level *module* is
top by default).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "p2vimage"
SRC = Path(__file__).resolve().parents[1] / "src"

# (layer name, top-level names of the package in it), bottom to top; "top" is the rest.
LAYERS: list[tuple[str, frozenset[str]]] = [
    ("base", frozenset({"errors", "plan", "options", "choices", "deps", "interrupt",
                        "progress", "formats", "blockio", "destinations", "uris"})),
    ("sources", frozenset({"sources"})),
    ("guest", frozenset({"guest"})),
    ("inspection", frozenset({"inspection"})),
    ("steps", frozenset({"windows", "virtio", "check"})),
    ("targets", frozenset({"targets"})),
]
TOP = "top"
TOP_PACKAGES = frozenset({"batch"})  # packages placed on the top layer with the front ends
RANK = {name: i for i, (name, _) in enumerate(LAYERS)} | {TOP: len(LAYERS)}
SELF_CONTAINED = "formats"  # imports nothing of ours outside itself
FACADE = ("api", "cli", "convert")  # imported by top-level modules only


def layer_of(module: str) -> str:
    """The layer of a dotted module name of the package (``p2vimage.x.y``)."""
    parts = module.split(".")
    assert parts[0] == PACKAGE, module
    if len(parts) == 1 or parts[1] in TOP_PACKAGES:
        return TOP  # the package's __init__, or a package on top
    for name, members in LAYERS:
        if parts[1] in members:
            return name
    return TOP


def _top(module: str) -> str:
    """The top-level name a module belongs to: ``p2vimage.formats.pe`` -> ``formats``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def modules(src: Path) -> dict[str, Path]:
    """Every module of the package under ``src``, by dotted name (a package by its own
    name, for its ``__init__.py``)."""
    found = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """``(imported module of ours, line)`` for every import in the file, at any depth.

    ``from pkg import name`` imports the module ``pkg.name`` when there is one, else
    ``pkg`` itself (the name is an attribute of it).
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block)
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names
                    if a.name == PACKAGE or a.name.startswith(PACKAGE + ".")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                if not base or not base[0]:
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond "
                                         "the package")
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub if sub in known else target, node.lineno))
    return list(dict.fromkeys(out))  # one edge per module and line


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def offences(src: Path) -> list[str]:
    """Every import that breaks a rule, as ``importer -> imported`` with where and why."""
    found = modules(src)
    known = set(found)
    bad = []
    for module, path in found.items():
        here = layer_of(module)
        for target, line in imports(module, path, known):
            there = layer_of(target)
            where = f"{path.relative_to(src)}:{line}"
            if _top(module) == SELF_CONTAINED and _top(target) != SELF_CONTAINED:
                bad.append(f"{module} -> {target}  ({where}: formats/ imports nothing "
                           "else of ours)")
            elif _top(target) in FACADE and len(target.split(".")) == 2 and here != TOP:
                bad.append(f"{module} -> {target}  ({where}: only top-level modules import "
                           f"{_top(target)})")
            elif RANK[there] > RANK[here]:
                bad.append(f"{module} -> {target}  ({where}: {here} imports {there}, a "
                           "layer above it)")
    return bad


def _describe(bad: list[str]) -> str:
    order = " < ".join(name for name, _ in LAYERS) + f" < {TOP}"
    return (f"{len(bad)} import(s) against the layering ({order}; see tests/test_layers.py):"
            "\n  " + "\n  ".join(bad))


def test_package_imports_follow_the_layers() -> None:
    bad = offences(SRC)
    assert not bad, _describe(bad)


def test_every_subpackage_has_a_layer() -> None:
    """A new package must be placed on purpose (only top-level *modules* default to top),
    and the table names nothing the package no longer has."""
    root = SRC / PACKAGE
    placed = {m for _, members in LAYERS for m in members} | TOP_PACKAGES
    packages = {p.parent.name for p in root.glob("*/__init__.py")}
    assert packages <= placed, f"give these packages a layer in LAYERS: {packages - placed}"
    present = packages | {p.stem for p in root.glob("*.py")}
    assert placed <= present, f"LAYERS names what the package lacks: {placed - present}"


def test_the_walk_sees_the_whole_package() -> None:
    found = modules(SRC)
    assert {"p2vimage", "p2vimage.api", "p2vimage.formats.pe",
            "p2vimage.sources.clonezilla.restore", "p2vimage.inspection"} <= set(found)
    cli = {t for t, _ in imports("p2vimage.cli", found["p2vimage.cli"], set(found))}
    assert {"p2vimage.api", "p2vimage.check", "p2vimage.convert"} <= cli  # also in functions


# --- the checker itself ------------------------------------------------------------------


@pytest.mark.parametrize(("module", "layer"), [
    ("p2vimage.sources.clonezilla.restore", "sources"),
    ("p2vimage.sources", "sources"),
    ("p2vimage.formats.pe", "base"),
    ("p2vimage.blockio.nbd", "base"),
    ("p2vimage.errors", "base"),
    ("p2vimage.plan", "base"),
    ("p2vimage.guest.appliance", "guest"),
    ("p2vimage.inspection", "inspection"),
    ("p2vimage.inspection.nics", "inspection"),
    ("p2vimage.windows.mergeide", "steps"),
    ("p2vimage.virtio.stage", "steps"),
    ("p2vimage.check", "steps"),
    ("p2vimage.targets.hostcopy", "targets"),
    ("p2vimage.convert", "top"),
    ("p2vimage.restore", "top"),
    ("p2vimage.some_new_pipeline", "top"),
    ("p2vimage.batch", "top"),
    ("p2vimage.batch.manifest", "top"),
    ("p2vimage", "top"),
])
def test_layer_of(module: str, layer: str) -> None:
    assert layer_of(module) == layer


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_offences_on_a_fake_package(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "__init__.py": "from .api import f\n",
        "api.py": "from .guest import a\nfrom .windows.b import g\n",
        "errors.py": "",
        "formats/__init__.py": "",
        "formats/x.py": "from ..errors import E\nfrom . import y\n",
        "formats/y.py": "",
        "sources/__init__.py": "",
        "sources/s.py": "import p2vimage.guest.a\n",
        "sources/deep/__init__.py": "",
        "sources/deep/d.py": "from ...formats import x\nfrom ... import errors\n",
        "guest/__init__.py": "",
        "guest/a.py": "def f():\n    from ..windows import b\n",
        "windows/__init__.py": "",
        "windows/b.py": "from .. import api\nfrom ..check import c\nfrom ..inspection import i\n",
        "check/__init__.py": "",
        "check/c.py": "from p2vimage.formats.y import Y\n",
        "inspection.py": "",
        # annotations only: never imported at run time, so not an edge
        "plan.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                   "    from .windows.b import g\nelse:\n    from .check.c import Y\n",
    })
    bad = offences(src)
    pairs = sorted(b.split("  (")[0] for b in bad)
    assert pairs == [
        "p2vimage.formats.x -> p2vimage.errors",
        "p2vimage.guest.a -> p2vimage.windows.b",
        "p2vimage.plan -> p2vimage.check.c",
        "p2vimage.sources.s -> p2vimage.guest.a",
        "p2vimage.windows.b -> p2vimage.api",
    ], bad
    assert any("guest/a.py:2" in b for b in bad)  # the function-local import, by line
    assert any("only top-level modules import api" in b for b in bad)
    assert "formats.x -> p2vimage.errors" in _describe(bad)
