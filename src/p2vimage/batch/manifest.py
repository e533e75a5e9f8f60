"""A fleet's manifest: one row per machine, every row checked before anything starts.

YAML (``defaults:`` plus ``machines:``) or CSV (a header row; inventories live in
spreadsheets).  A row's keys are ``convert``'s long options without the dashes, taken
from the CLI's own ``convert`` parser (so a new convert option is a manifest key at
once), plus ``name`` (the machine's id, also its domain name), ``source``/``sources``,
``host`` (where an engine should run it), ``output-dir`` and ``output`` (default
``{output-dir}/{name}.{format}``).

A row is turned into the ``convert`` argument list the engine will run, parsed by the
same parser and checked by :meth:`ConvertOptions.check_values`, so a value the command
would refuse is refused here, naming its row.  Nothing starts until every row is valid:
a fleet that fails on machine 200 of 300 for a typo is a wasted night.  Relative paths
are relative to the manifest's directory (the engines run ``convert`` there).
"""

from __future__ import annotations

import argparse
import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .. import cli
from ..errors import P2VError, UsageError
from ..options import make_options
from ..sources import uri

# Keys of a row that are not convert options, and convert options a manifest may not set
# (the batch decides them: --dry-run is `batch plan`'s, --json/--debug/--verbose its own).
OWN_KEYS = ("name", "source", "sources", "host", "output-dir", "output")
REFUSED = frozenset({"dry-run", "help"})
DEFAULTS_ONLY_PER_ROW = frozenset({"name", "source", "sources", "output"})
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$")
CSV_LIST_SEP = ";"  # several values in one CSV cell (sources, ip, driver-file)
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off", ""}


class ManifestError(UsageError):
    """An invalid manifest (exit 2): ``errors`` has one line per problem, each naming
    its row; the message is all of them on one line."""

    def __init__(self, path: Path, errors: list[str]) -> None:
        self.path = path
        self.errors = errors
        super().__init__(f"{path}: invalid manifest ({len(errors)} error(s)): "
                         + "; ".join(errors))


class _RowParser(argparse.ArgumentParser):
    """``convert``'s parser, raising instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def convert_parser() -> argparse.ArgumentParser:
    p = _RowParser(prog="convert", add_help=False)
    cli.add_convert_arguments(p)
    return p


def option_keys() -> dict[str, argparse.Action]:
    """Manifest key -> the convert option's argparse action, e.g. ``virtio-win``."""
    keys = {}
    for action in convert_parser()._actions:  # argparse has no public list of them
        for opt in action.option_strings:
            if opt.startswith("--") and opt[2:] not in REFUSED:
                keys[opt[2:]] = action
    return keys


@dataclass(frozen=True)
class Machine:
    """One valid row: what an engine needs to run its conversion, paths only."""

    name: str
    row: str  # where it came from, for messages: "machines[3]" or "line 4"
    sources: tuple[str, ...]  # absolute paths or URIs, as convert takes them
    output: Path
    host: str | None
    options: tuple[str, ...]  # convert's option arguments (no sources, no -o)
    workdir: Path  # the manifest's directory: relative option paths are relative to it
    secrets: tuple[str, ...] = field(default=(), repr=False)  # never written anywhere

    def convert_argv(self, *, dry_run: bool = False) -> list[str]:
        """The ``p2vimage`` arguments of this machine's conversion (with ``--json``)."""
        return ["convert", *self.sources, "-o", str(self.output), *self.options,
                *(["--dry-run"] if dry_run else []), "--json", "-v"]

    @property
    def display_sources(self) -> list[str]:
        """The sources fit for a message or a ledger line (URIs redacted)."""
        return [uri.redact(s) if uri.is_uri(s) else s for s in self.sources]

    def scrub(self, text: str) -> str:
        """``text`` with every secret of this machine's sources replaced by ``…``."""
        for s in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(s, "…")
        return text


@dataclass(frozen=True)
class Manifest:
    path: Path
    machines: tuple[Machine, ...]

    def by_name(self) -> dict[str, Machine]:
        return {m.name: m for m in self.machines}

    def select(self, only: Iterable[str] | None) -> list[Machine]:
        """The machines named in ``only`` (all when None); an unknown name is a
        UsageError, so a typo in ``--only`` never silently runs nothing."""
        if only is None:
            return list(self.machines)
        wanted = [n for n in only if n]
        unknown = [n for n in wanted if n not in self.by_name()]
        if unknown:
            raise UsageError(f"--only: no machine named {', '.join(unknown)} in {self.path}")
        return [m for m in self.machines if m.name in wanted]


def load(path: str | Path) -> Manifest:
    """Read and validate a manifest (``.csv`` is CSV, anything else YAML).

    Raises :class:`ManifestError` (exit 2) listing every bad row, or UsageError when the
    file cannot be read at all.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # (spreadsheets save CSV with a BOM)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the manifest ({exc})") from None
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _yaml_rows(path, text)
    return _validate(path, rows)


def _yaml_rows(path: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ManifestError(path, [f"not valid YAML{line}"]) from None
    if not isinstance(doc, dict):
        raise ManifestError(path, ["expected a mapping with 'machines:' (and 'defaults:')"])
    errors = [f"unknown top-level key {k!r} (expected defaults, machines)"
              for k in doc if k not in ("defaults", "machines")]
    defaults = doc.get("defaults") or {}
    machines = doc.get("machines")
    if not isinstance(defaults, dict):
        errors.append("defaults: expected a mapping of option: value")
        defaults = {}
    for key in sorted(set(defaults) & DEFAULTS_ONLY_PER_ROW, key=str):
        errors.append(f"defaults: {key!r} is per machine, not a default")
    if not isinstance(machines, list) or not machines:
        errors.append("machines: expected a non-empty list of machines")
        machines = []
    rows = []
    for i, entry in enumerate(machines):
        label = f"machines[{i}]"
        if not isinstance(entry, dict):
            errors.append(f"{label}: expected a mapping (name:, source:, ...)")
            continue
        rows.append((label, {**{k: v for k, v in defaults.items()
                               if k not in DEFAULTS_ONLY_PER_ROW}, **entry}))
    if errors:
        raise ManifestError(path, errors)
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames:
        raise ManifestError(path, ["empty CSV: expected a header row (name,source,...)"])
    rows = []
    for row in reader:
        label = f"line {reader.line_num}"
        if None in row:
            raise ManifestError(path, [f"{label}: more cells than header columns"])
        cells = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(cells.values()):
            continue  # a blank line of the spreadsheet
        rows.append((label, {k: v for k, v in cells.items() if v != ""}))
    if not rows:
        raise ManifestError(path, ["no machines: the CSV has a header but no rows"])
    return rows


def _validate(path: Path, rows: list[tuple[str, dict[str, Any]]]) -> Manifest:
    base = path.resolve().parent
    keys = option_keys()
    machines: list[Machine] = []
    errors: list[str] = []
    for label, row in rows:
        name = row.get("name")
        where = f"{label} ({name})" if isinstance(name, str) and name else label
        try:
            machines.append(_machine(where, row, base, keys))
        except P2VError as exc:
            errors.append(f"{where}: {exc}")
    seen_names: dict[str, str] = {}
    seen_outputs: dict[Path, str] = {}
    for m in machines:
        if m.name in seen_names:
            errors.append(f"{m.row}: duplicate name {m.name!r} (also {seen_names[m.name]})")
        seen_names.setdefault(m.name, m.row)
        if m.output in seen_outputs:
            errors.append(f"{m.row}: duplicate output {m.output} "
                          f"(also {seen_outputs[m.output]})")
        seen_outputs.setdefault(m.output, m.row)
    if errors:
        raise ManifestError(path, errors)
    return Manifest(path, tuple(machines))


def _machine(where: str, row: Mapping[str, Any], base: Path,
             keys: dict[str, argparse.Action]) -> Machine:
    unknown = [str(k) for k in row if k not in keys and k not in OWN_KEYS]
    if unknown:
        hint = " (dry runs are 'batch plan')" if "dry-run" in unknown else ""
        raise UsageError(f"unknown option(s) {', '.join(sorted(unknown))}{hint}")
    name = row.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise UsageError(f"name: letters, digits, '.', '_' or '-' (at most 63), "
                         f"not {name!r}")
    host = row.get("host")
    if host is not None and (not isinstance(host, str) or not HOST.match(host)):
        raise UsageError(f"host: a host name, not {host!r}")
    sources = _sources(row, base)
    fmt = row.get("format", "qcow2")
    if "output" in row:
        output = _path(row["output"], "output", base)
    elif "output-dir" in row:
        output = _path(row["output-dir"], "output-dir", base) / f"{name}.{fmt}"
    else:
        raise UsageError("no output: give output or output-dir (here or in defaults)")
    options = [f"--name={name}"]
    for key, value in row.items():
        if key in OWN_KEYS:
            continue
        options += _arguments(key, value, keys[key])
    argv = [*sources, "-o", str(output), *options]
    args = convert_parser().parse_args(argv)
    make_options(output, **cli.convert_kwargs(args)).check_values()
    secrets = tuple(s for src in sources if uri.is_uri(src) for s in uri.parse(src).secrets())
    return Machine(name=name, row=where, sources=tuple(sources), output=output, host=host,
                   options=tuple(options), workdir=base, secrets=secrets)


def _sources(row: Mapping[str, Any], base: Path) -> list[str]:
    if ("source" in row) == ("sources" in row):
        raise UsageError("give exactly one of source and sources")
    if "source" in row:
        given: Any = [row["source"]]
    else:
        given = row["sources"]
        if isinstance(given, str):
            given = [s.strip() for s in given.split(CSV_LIST_SEP) if s.strip()]
        if not isinstance(given, list) or not given:
            raise UsageError("sources: a non-empty list of images")
    out = []
    for s in given:
        if uri.is_uri(s):
            uri.parse(s)  # a malformed or unknown URI is refused here, redacted
            out.append(s)
        else:
            out.append(str(_path(s, "source", base)))
    return out


def _path(value: Any, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{key}: a path, not {value!r}")
    # resolved, so two spellings of one file (a/../a, a symlinked directory) are one output
    return (base / Path(value).expanduser()).resolve()


def _arguments(key: str, value: Any, action: argparse.Action) -> list[str]:
    """The command-line arguments for one manifest cell."""
    flag = f"--{key}"
    if action.nargs == 0:  # store_true
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            value = value.strip().lower() in _TRUE
        if not isinstance(value, bool):
            raise UsageError(f"{key}: true or false, not {value!r}")
        return [flag] if value else []
    if isinstance(action, argparse._AppendAction):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(CSV_LIST_SEP) if v.strip()]
        if not isinstance(value, list):
            raise UsageError(f"{key}: a value or a list of values, not {value!r}")
        return [f"{flag}={_scalar(key, v)}" for v in value]
    return [f"{flag}={_scalar(key, value)}"]


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(f"{key}: a single value, not {value!r}")
    return str(value)  # glued on as --key=value: a value starting with '-' stays a value
