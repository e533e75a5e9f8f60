"""The bad-input corpus (tests/corpus.py) under pytest: one test per case.

Each case asserts the whole promise at once (exit code, one error line with the
case's words, no traceback, source unchanged, nothing left at the output), so a
failure lists every way the case went wrong.  ``python -m tests.corpus`` prints
the same cases as a table.
"""

from __future__ import annotations

import pytest

from tests.corpus import CASES, Corpus, run_case


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Shared inputs: the broken guests are built once, in one writable appliance."""
    return Corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(case, corpus: Corpus, tmp_path) -> None:
    row = run_case(case, corpus, tmp_path)
    assert row.ok, f"{case.name}: exit {row.code} ({row.message}): " + "; ".join(row.problems)


def test_case_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
