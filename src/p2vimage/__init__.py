"""p2vimage: turn a disk image of a physical Windows machine into a KVM guest, offline.

Public API::

    import p2vimage
    info = p2vimage.inspect("server.img")          # -> Inspection
    info = p2vimage.inspect_hives("SYSTEM")         # bare hive files, no disk
    report = p2vimage.check("out.qcow2", bus="virtio-blk")   # -> CheckReport (.ready)
    p2vimage.restore_clonezilla("2012-04-19-img", "disk.raw")  # Clonezilla directory

Every deliberate failure is a :class:`P2VError` subclass carrying ``exit_code``.
"""

from .api import inspect, restore_clonezilla
from .check import CheckReport, check
from .convert import ConversionReport, ConvertOptions, convert
from .errors import (
    ApplianceError,
    BadInputError,
    ConversionError,
    CorruptHiveError,
    CorruptImageError,
    CouldNotCheckError,
    InsufficientSpaceError,
    Interrupted,
    MissingDependencyError,
    MultipleRootsError,
    NoOperatingSystemError,
    NotReadyError,
    OutputBusyError,
    P2VError,
    SourceNotFoundError,
    SourceUnreadableError,
    UnsupportedFormatError,
    UsageError,
)
from .inspection import Inspection, inspect_hives
from .progress import Progress

__version__ = "0.1.0"

__all__ = [
    "inspect",
    "restore_clonezilla",
    "convert",
    "check",
    "CheckReport",
    "ConversionReport",
    "ConvertOptions",
    "inspect_hives",
    "Inspection",
    "Progress",
    "P2VError",
    "UsageError",
    "OutputBusyError",
    "BadInputError",
    "SourceNotFoundError",
    "SourceUnreadableError",
    "UnsupportedFormatError",
    "NoOperatingSystemError",
    "MultipleRootsError",
    "CorruptHiveError",
    "CorruptImageError",
    "CouldNotCheckError",
    "ConversionError",
    "ApplianceError",
    "InsufficientSpaceError",
    "MissingDependencyError",
    "NotReadyError",
    "Interrupted",
]
