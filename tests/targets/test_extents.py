"""The range arithmetic of the two-pass copy (``targets/extents.py``), checked byte by
byte against Python sets on random ranges."""

from __future__ import annotations

import random

from p2vimage.targets.extents import intersect, subtract, total, union

N = 80


def _bytes(ranges: list[tuple[int, int]]) -> set[int]:
    out: set[int] = set()
    for off, n in ranges:
        out |= set(range(off, off + n))
    return out


def _random_ranges(rng: random.Random) -> list[tuple[int, int]]:
    out = []
    for _ in range(rng.randint(0, 6)):
        off = rng.randint(0, N - 1)
        out.append((off, min(rng.randint(0, 12), N - off)))
    return out


def _canonical(ranges: list[tuple[int, int]]) -> bool:
    """Sorted, no empty range, and no two that touch (they would have been merged)."""
    return all(n > 0 for _, n in ranges) and all(
        a[0] + a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_union_intersect_subtract_match_sets() -> None:
    rng = random.Random(17)
    for _ in range(3000):
        a, b = _random_ranges(rng), _random_ranges(rng)
        sa, sb = _bytes(a), _bytes(b)
        for got, want in ((union(a, b), sa | sb), (intersect(a, b), sa & sb),
                          (subtract(a, b), sa - sb)):
            assert _bytes(got) == want, (a, b, got)
            assert _canonical(got), got
            assert total(got) == len(want)


def test_two_pass_identity() -> None:
    """What the second pass copies plus what the first copied and the edits kept is the
    edited disk's plan; what it zeroes is outside that plan."""
    rng = random.Random(3)
    for _ in range(2000):
        first, final, written = (_random_ranges(rng) for _ in range(3))
        again = union(subtract(final, first), intersect(written, final))
        stale = subtract(first, final)
        kept = subtract(intersect(first, final), written)
        assert _bytes(again) | _bytes(kept) == _bytes(final)
        assert not _bytes(again) & _bytes(kept)
        assert not _bytes(stale) & _bytes(final)

