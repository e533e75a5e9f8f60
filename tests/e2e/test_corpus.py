"""The bad-input corpus (tests/corpus.py) under pytest, one test per case.

Each case asserts the whole promise at once (exit code, one error line with the
case's words, no traceback, source unchanged, nothing left at the output), so a
failure lists every way the case went wrong.  ``python -m tests.corpus`` prints
the same cases as a table.  The cases are split over three test files (inputs
refused before the appliance, broken guests, signals) so that pytest-xdist's
``--dist loadfile`` can spread them over its workers.
"""

from __future__ import annotations

import pytest

from tests.corpus import CASES, Case, Corpus, run_case

PRE_LAUNCH = [c for c in CASES if not c.appliance and not c.signal]
SIGNALS = [c for c in CASES if c.signal]
GUESTS = [c for c in CASES if c.appliance and not c.signal]


def params(cases: list[Case]) -> list:
    return [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else [])
            for c in cases]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Shared inputs: the broken guests are built once per module, in one appliance."""
    return Corpus(tmp_path_factory.mktemp("corpus"))


def check_case(case: Case, corpus: Corpus, tmp_path) -> None:
    row = run_case(case, corpus, tmp_path)
    assert row.ok, f"{case.name}: exit {row.code} ({row.message}): " + "; ".join(row.problems)


@pytest.mark.parametrize("case", params(PRE_LAUNCH))
def test_refused_before_the_appliance(case: Case, corpus: Corpus, tmp_path) -> None:
    check_case(case, corpus, tmp_path)


def test_every_case_is_run_by_one_of_the_corpus_files() -> None:
    assert len(PRE_LAUNCH) + len(SIGNALS) + len(GUESTS) == len(CASES)
    assert len({c.name for c in CASES}) == len(CASES)  # names are the test ids
