"""Fuzz the Windows-side readers: cabinets, INF, PE, NTFS, registry, images, ISO, user files.

Bounded for ``make test`` by the ``fuzz-ci`` hypothesis profile (derandomized, no database);
``P2VIMAGE_FUZZ_PROFILE=fuzz-long`` runs many more examples.  ``benchmarks/fuzz.py`` runs
the same targets for a given number of minutes.
"""

from __future__ import annotations

import pytest

from tests.fuzz import targets_windows
from tests.fuzz.harness import TARGETS, ci_settings

NAMES = sorted(n for n, t in TARGETS.items() if t.run.__module__ == targets_windows.__name__)


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name: str) -> None:
    TARGETS[name].hypothesis_test(ci_settings())()
