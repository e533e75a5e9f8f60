"""p2vimage: turn a disk image of a physical Windows machine into a KVM guest, offline.

Public API::

    import p2vimage
    info = p2vimage.inspect("server.img")          # -> Inspection
    info = p2vimage.inspect_hives("SYSTEM")         # bare hive files, no disk
    report = p2vimage.check("out.qcow2", bus="virtio-blk")   # -> CheckReport (.ready)
    p2vimage.restore_clonezilla("2012-04-19-img", "disk.raw")  # Clonezilla directory

Every deliberate failure is a :class:`P2VError` subclass carrying ``exit_code``;
:class:`TemporaryError` (exit 5) is the family a caller may retry.
"""

from . import errors as _errors
from .api import inspect, restore_clonezilla
from .check import CheckReport, check
from .convert import ConversionReport, ConvertOptions, convert
from .errors import *  # noqa: F403 - every exception class and exit code, listed once there
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
    *_errors.__all__,
]
