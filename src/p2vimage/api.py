"""The public entry points that are not a pipeline module of their own.

:func:`inspect` opens a read-only job over an image and runs
:func:`p2vimage.inspection.inspect_job` on it; :func:`restore_clonezilla` is
:mod:`p2vimage.restore`'s.  (``convert`` and ``check`` live in their modules.)
"""

from __future__ import annotations

import os
import threading

from . import interrupt
from .guest.appliance import Job
from .inspection import Inspection, inspect_job
from .restore import RestoreResult, restore_clonezilla
from .sources.prepare import opened

__all__ = ["inspect", "inspect_job", "restore_clonezilla", "RestoreResult"]


def inspect(
    path: str | os.PathLike[str],
    *,
    source_format: str | None = None,
    root: str | None = None,
    cancel: interrupt.Cancel | threading.Event | None = None,
    ssh_identity: str | os.PathLike[str] | None = None,
    ssh_known_hosts: str | os.PathLike[str] | None = None,
) -> Inspection:
    """Inspect a disk image read-only and describe the Windows installation on it.

    ``path`` may be a network URI (``ssh://``, ``nbd://``, ``http(s)://``; the
    ``ssh_*`` keywords as for ``convert``).  ``cancel`` stops this call only
    (:class:`~p2vimage.errors.Interrupted`)."""
    with interrupt.job(cancel), opened(path, source_format, ssh_identity=ssh_identity,
                                       ssh_known_hosts=ssh_known_hosts) as src, \
            Job([src.source], writable=False, root=root) as job, src.watch(job.abort):
        insp = inspect_job(job)
        interrupt.check()
    insp.appliance_launches = job.stats.appliance_launches
    insp.launch_attempts = job.stats.launch_attempts
    return insp
