"""The corpus's broken guests (hives, cabinets, NTFS state), built in one writable launch."""

from __future__ import annotations

import pytest

from tests.corpus import Case, Corpus
from tests.e2e.test_corpus import GUESTS, check_case, params


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("corpus-guests"))


@pytest.mark.parametrize("case", params(GUESTS))
def test_broken_guest(case: Case, corpus: Corpus, tmp_path) -> None:
    check_case(case, corpus, tmp_path)
