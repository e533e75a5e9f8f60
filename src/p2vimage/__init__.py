"""p2vimage: turn a disk image of a physical Windows machine into a KVM guest, offline.

Public API (docs/api.md has the whole of it, with examples a test runs)::

    import p2vimage
    info = p2vimage.inspect("server.img")                   # -> Inspection
    report = p2vimage.convert("server.img", "server.qcow2")  # -> ConversionReport
    result = p2vimage.check("server.qcow2", xml="server.xml")   # -> CheckReport (.ready)
    p2vimage.restore_clonezilla("2012-04-19-img", "disk.raw")  # -> RestoreResult

Every call takes ``str`` or ``os.PathLike`` paths, works the same from any thread,
takes ``cancel=`` (a :class:`Cancel` that stops that call only) and, for long work,
``progress=`` (a callable given :class:`Progress` values).  Every deliberate failure
is a :class:`P2VError` subclass carrying ``exit_code``; :class:`TemporaryError`
(exit 5) is the family a caller may retry.
"""

import logging as _logging

from . import errors as _errors
from .api import RestoreResult, inspect, restore_clonezilla
from .check import CheckReport, check, check_hives
from .convert import ConversionReport, ConvertOptions, convert
from .destinations import (
    KubevirtTarget,
    LibvirtTarget,
    LocalTarget,
    ProxmoxTarget,
    TargetReport,
)
from .errors import *  # noqa: F403 - every exception class and exit code, listed once there
from .inspection import Inspection, inspect_hives
from .interrupt import Cancel
from .plan import (
    BootSectorEdit,
    Change,
    FileWrite,
    FirstbootSummary,
    KeyDelete,
    NetworkSummary,
    Plan,
    RegistryEdit,
    VirtioSummary,
)
from .progress import Progress
from .report import Devices

__version__ = "0.1.0"


def _bind_plan_annotations() -> None:
    """Give the plan's module the names its annotations use from the layers above.

    The plan is base-layer data; it names the inspection's and the steps' types only
    under ``TYPE_CHECKING`` so its imports point down.  Once every layer is loaded
    (here), binding those names lets ``typing.get_type_hints`` (and the dataclass
    tools built on it: serializers, schema generators) resolve every public type."""
    from . import plan
    from .inspection.nics import Nic
    from .virtio.media import VirtioMedia
    from .virtio.select import Selection
    from .windows.leftovers import VendorService

    for cls in (Nic, VirtioMedia, Selection, VendorService):
        vars(plan).setdefault(cls.__name__, cls)


_bind_plan_annotations()

# The library logs to the "p2vimage" logger and never prints: without this, an
# application that configured no logging would get warnings on stderr (logging.lastResort).
_logging.getLogger("p2vimage").addHandler(_logging.NullHandler())

__all__ = [
    "LocalTarget",
    "LibvirtTarget",
    "ProxmoxTarget",
    "KubevirtTarget",
    "TargetReport",
    "inspect",
    "restore_clonezilla",
    "convert",
    "check",
    "check_hives",
    "CheckReport",
    "RestoreResult",
    "Cancel",
    "Plan",
    "Devices",
    "VirtioSummary",
    "NetworkSummary",
    "FirstbootSummary",
    "Change",
    "RegistryEdit",
    "KeyDelete",
    "BootSectorEdit",
    "FileWrite",
    "ConversionReport",
    "ConvertOptions",
    "inspect_hives",
    "Inspection",
    "Progress",
    *_errors.__all__,
]
