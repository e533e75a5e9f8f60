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
from .sources.image import open_source

__all__ = ["inspect", "inspect_job", "restore_clonezilla", "RestoreResult"]


def inspect(
    path: str | os.PathLike[str],
    *,
    source_format: str | None = None,
    root: str | None = None,
    cancel: interrupt.Cancel | threading.Event | None = None,
) -> Inspection:
    """Inspect a disk image read-only and describe the Windows installation on it.

    ``cancel`` stops this call only (:class:`~p2vimage.errors.Interrupted`)."""
    with interrupt.job(cancel):
        src = open_source(path, source_format)
        with Job([src], writable=False, root=root) as job:
            insp = inspect_job(job)
            interrupt.check()
    insp.appliance_launches = job.stats.appliance_launches
    insp.launch_attempts = job.stats.launch_attempts
    return insp
