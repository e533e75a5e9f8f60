"""The host copy's request pools (python3-libnbd 1.14 never frees aio buffers, so pools
are kept and reused by the next copy of the process)."""

from __future__ import annotations

import pytest

from p2vimage.blockio.nbd import libnbd
from p2vimage.targets import hostcopy


def test_request_pools_are_reused_only_at_their_own_sizes(monkeypatch) -> None:
    """A pool made while requests were 64 KiB (a test's setting) must not serve 4 MiB
    requests later in the same process (found by CI: is_zero past a short buffer)."""
    nbd = libnbd()
    monkeypatch.setattr(hostcopy, "_idle_pools", [])
    monkeypatch.setattr(hostcopy, "REQUEST", 64 << 10)
    small = hostcopy._take_pool(nbd)
    hostcopy._give_back(small)
    monkeypatch.setattr(hostcopy, "REQUEST", 4 << 20)
    big = hostcopy._take_pool(nbd)
    assert big is not small and len(big.arrays[0]) == 4 << 20
    buf, view = big.buffer(0, 94208)
    assert len(buf) == len(view) == 94208 and buf.is_zero(65536, 28672)
    hostcopy._give_back(big)
    assert hostcopy._take_pool(nbd) is big  # same sizes: reused
    monkeypatch.setattr(hostcopy, "REQUEST", 64 << 10)
    assert hostcopy._take_pool(nbd) is small
    with pytest.raises(ValueError, match="does not fit"):
        small.buffer(0, 1 << 20)
