"""``p2vimage batch``: convert a fleet of captured machines from one manifest.

The pieces, bottom to top: :mod:`.manifest` (the rows, all validated before anything
starts), :mod:`.ledger` (the state directory: an append-only event log plus each
machine's committed report, from which "done" is re-derived), :mod:`.engine` (a pool of
``p2vimage convert`` subprocesses with retries by exit code) and :mod:`.command` (the
CLI's ``batch`` subcommands).  Every conversion runs in its own process: a crash, a hang
or a leak in one machine's appliance never takes the fleet down, and stopping one is a
signal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import BatchResult

__all__ = ["run"]


def run(manifest: Any, state: Any, **kw: Any) -> BatchResult:
    """Convert every machine of ``manifest`` not yet done in ``state``; see
    :func:`p2vimage.batch.engine.run` for the keywords."""
    from .engine import run as _run

    return _run(manifest, state, **kw)
