"""The corpus's SIGINT/SIGTERM cases: each command stopped in a known phase."""

from __future__ import annotations

import pytest

from tests.corpus import Case, Corpus
from tests.e2e.test_corpus import SIGNALS, check_case, params


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("corpus-signals"))


@pytest.mark.parametrize("case", params(SIGNALS))
def test_interrupted(case: Case, corpus: Corpus, tmp_path) -> None:
    check_case(case, corpus, tmp_path)
