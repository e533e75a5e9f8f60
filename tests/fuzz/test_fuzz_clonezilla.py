"""Fuzz the Clonezilla readers: partclone, ntfsclone, decompression, metadata, restore.

Bounded for ``make test`` by the ``fuzz-ci`` hypothesis profile (derandomized, no database);
``P2VIMAGE_FUZZ_PROFILE=fuzz-long`` runs many more examples.  ``benchmarks/fuzz.py`` runs
the same targets for a given number of minutes.
"""

from __future__ import annotations

import pytest

from tests.fuzz import targets_clonezilla
from tests.fuzz.harness import TARGETS, ci_settings

NAMES = sorted(n for n, t in TARGETS.items() if t.run.__module__ == targets_clonezilla.__name__)


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name: str) -> None:
    TARGETS[name].hypothesis_test(ci_settings())()
