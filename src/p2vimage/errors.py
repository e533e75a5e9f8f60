"""Exceptions, one class per failure a user or a calling tool must tell apart.

Every exception carries the CLI exit code of its family, so the command line
front end never has to guess: ``exit_code`` is the contract documented in the
README (0 success, 1 not ready, 2 usage, 3 bad input, 4 conversion impossible,
5 temporary failure, 130 interrupted).

Exit 5 is the one a caller may retry: the same command can succeed later without any
change to its input or options (another job releases the output, space is made, the
appliance launches next time).  1, 2, 3 and 4 are permanent for the given input;
fleets and other tools decide on retries from the exit code alone.
"""

from __future__ import annotations

import errno as _errno

EXIT_OK = 0
EXIT_NOT_READY = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_CONVERSION = 4
EXIT_TEMPORARY = 5
EXIT_INTERRUPTED = 130


class P2VError(Exception):
    """Base of every error p2vimage raises on purpose.

    The message is one line a user can act on; it never needs a traceback.
    """

    exit_code = EXIT_CONVERSION


# --- exit 2: usage -----------------------------------------------------------


class UsageError(P2VError):
    """An option or argument that cannot be right (also raised by the library)."""

    exit_code = EXIT_USAGE


# --- exit 3: bad input ---------------------------------------------------------


class BadInputError(P2VError):
    """The input cannot be used: missing, unreadable, unsupported, not Windows, corrupt."""

    exit_code = EXIT_BAD_INPUT


class SourceNotFoundError(BadInputError):
    """The source path does not exist."""


class SourceUnreadableError(BadInputError):
    """The source exists but cannot be read (permissions, a directory, I/O error)."""


class UnsupportedFormatError(BadInputError):
    """The source is not a disk image format we can read, or is empty/truncated."""


class NoOperatingSystemError(BadInputError):
    """The disk holds no Windows installation (no OS at all, or another OS)."""


class MultipleRootsError(BadInputError):
    """Several Windows installations were found and ``--root`` did not choose one."""


class CorruptHiveError(BadInputError):
    """A registry hive cannot be opened or lacks what every Windows hive has."""


class CorruptImageError(BadInputError):
    """The disk or a filesystem on it is damaged in a way that stops the work."""


class CouldNotCheckError(BadInputError):
    """``check`` could not run to the end (appliance failure, missing package, a bug):
    exit 3, so a pipeline tells "not ready" (1) from "unknown" (3)."""


# --- exit 4: the conversion cannot be done -------------------------------------


class ConversionError(P2VError):
    """The input is fine but the requested result cannot be produced."""

    exit_code = EXIT_CONVERSION


class MissingDependencyError(P2VError):
    """A system package this machine lacks; the message names the Debian package."""

    exit_code = EXIT_CONVERSION


# --- exit 5: temporary: the same command may succeed later ----------------------


class TemporaryError(P2VError):
    """A failure of the moment, not of the input: retrying the same command may work."""

    exit_code = EXIT_TEMPORARY


class OutputBusyError(TemporaryError):
    """Another conversion (thread or process) is writing the same output right now.

    The other job is left alone and finishes intact; once it has, the output exists
    (``--overwrite`` replaces it) or is free again.
    """


class ApplianceError(TemporaryError):
    """The libguestfs appliance could not be started (with KVM, nor with TCG)."""


class InsufficientSpaceError(TemporaryError):
    """A filesystem the job writes to has less free space than the job needs.

    Raised by the up-front check, before the appliance starts or a byte is written,
    and when a filesystem fills up mid-copy (ENOSPC, EDQUOT): one class for "no room"
    whenever it is found.  The input is fine: the same command succeeds once space is
    made.
    """

    def __init__(self, message: str, *, filesystem: str = "", needed: int = 0,
                 available: int = 0) -> None:
        super().__init__(message)
        self.filesystem = filesystem
        self.needed = needed
        self.available = available


class SourceUnreachableError(TemporaryError):
    """A network source (``ssh://``, ``nbd://``, ``http(s)://``) cannot be reached, or
    stopped answering after its bounded retries: the host may be back later."""


class TargetUnreachableError(TemporaryError):
    """The target host (a libvirt URI) cannot be reached or refused the connection."""


def write_error(message: str, errnum: int | None) -> P2VError:
    """The error for a failed write of an output: no room on its filesystem
    (ENOSPC, EDQUOT) is :class:`InsufficientSpaceError`, anything else
    :class:`ConversionError`."""
    if errnum in (_errno.ENOSPC, _errno.EDQUOT):
        return InsufficientSpaceError(message)
    return ConversionError(message)


# --- exit 1: check found the image not ready ------------------------------------


class NotReadyError(P2VError):
    """``check`` ran to the end and found error-severity findings."""

    exit_code = EXIT_NOT_READY


class Interrupted(P2VError):
    """The job was interrupted (SIGINT/SIGTERM); partial outputs were removed."""

    exit_code = EXIT_INTERRUPTED


__all__ = [
    "EXIT_OK",
    "EXIT_NOT_READY",
    "EXIT_USAGE",
    "EXIT_BAD_INPUT",
    "EXIT_CONVERSION",
    "EXIT_TEMPORARY",
    "EXIT_INTERRUPTED",
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
    "TemporaryError",
    "SourceUnreachableError",
    "TargetUnreachableError",
    "NotReadyError",
    "Interrupted",
]
