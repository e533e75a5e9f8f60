"""docs/batch.md's examples: every manifest in it validates, every Python block runs.

The Python blocks run in order, in one namespace, in an empty directory (their captures
do not exist, so every conversion fails before an appliance starts); the README's table
of ``batch run`` exit codes must be the doc's; the ``emit-k8s`` example's output is what
the command prints for the doc's manifest.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from p2vimage.batch import manifest
from tests.conftest import P2VIMAGE

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "batch.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


@pytest.mark.parametrize("lang", ["yaml", "csv"])
def test_manifests_of_the_doc_validate(tmp_path: Path, lang: str) -> None:
    found = blocks(lang)
    assert found
    for i, text in enumerate(found):
        path = tmp_path / f"m{i}.{lang}"
        path.write_text(text)
        m = manifest.load(path)
        assert [x.name for x in m.machines] == ["filesrv01", "dc01"]
        assert m.machines[0].host == "hv07"


def test_python_examples_run(tmp_path: Path) -> None:
    namespace: dict = {"__name__": "batch_doc"}
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        for i, code in enumerate(blocks("python")):
            exec(compile(code, f"{DOC.name} block {i + 1}", "exec"), namespace)
    finally:
        os.chdir(old)
    assert namespace["failed"] == ["web01", "db01"]
    assert {m.error_type for m in namespace["result"].machines} == {"SourceNotFoundError"}
    assert (tmp_path / "state" / "ledger.jsonl").exists()


def test_emit_k8s_header_of_the_doc(tmp_path: Path) -> None:
    """The doc's split-by-host example is what ``emit-k8s`` prints for its manifest."""
    shown = next(b for b in blocks("console") if "--name wave-1" in b)
    path = tmp_path / "fleet.yaml"
    path.write_text(blocks("yaml")[0])
    r = subprocess.run([str(P2VIMAGE), "batch", "emit-k8s", str(path), "--state",
                        str(tmp_path / "state"), "--mount", "/", "--name", "wave-1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    want = shown.splitlines()[1:]
    assert r.stdout.splitlines()[:len(want)] == want


def test_readme_has_the_exit_code_table() -> None:
    def table(text: str) -> list[str]:
        start = text.index("| exit code of `batch run` |")
        return [ln for ln in text[start:].splitlines() if ln.startswith("|")][:6]

    doc_rows = table(DOC.read_text())
    assert [r.split("|")[1].strip() for r in doc_rows[2:]] == ["0", "1", "2", "130"]
    assert table((ROOT / "README.md").read_text()) == doc_rows
