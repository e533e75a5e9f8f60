"""Fixture cache keys: an edited profile rebuilds its own image only."""

from __future__ import annotations

from dataclasses import replace

from fixtures import images, profiles


def test_keys_are_stable_and_distinct() -> None:
    keys = {name: spec.key() for name, spec in images.SPECS.items()}
    assert keys == {name: spec.key() for name, spec in images.SPECS.items()}
    assert len(set(keys.values())) == len(keys)


def test_editing_one_profile_changes_only_its_key() -> None:
    before = {name: spec.key() for name, spec in images.SPECS.items()}
    edited = replace(profiles.WIN2000, hostname="RENAMED")
    (spec,) = images.windows_images(edited)
    assert spec.name == "win2000-x86" and spec.key() != before["win2000-x86"]
    # Every other image keeps its key (nothing else depends on that profile's data).
    for name, other in images.SPECS.items():
        if name != "win2000-x86":
            assert other.key() == before[name]


def test_real_hive_is_part_of_the_key() -> None:
    """The same profile on another real hive gets another key (hive name and bytes hashed)."""
    (spec,) = images.windows_images(profiles.WINXP)
    assert spec.key() == images.SPECS["winxp-x86"].key()
    other = replace(profiles.WINXP, base_system_hive=profiles.WIN7.base_system_hive)
    (spec2,) = images.windows_images(other)
    assert spec2.key() != spec.key()
