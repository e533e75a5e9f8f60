"""errors.py: the exception classes, their exit codes, and the package's exports of them."""

from __future__ import annotations

import p2vimage
from p2vimage import errors


def test_exception_classes_carry_exit_codes() -> None:
    assert p2vimage.UsageError("x").exit_code == 2
    for cls in (
        p2vimage.SourceNotFoundError,
        p2vimage.SourceUnreadableError,
        p2vimage.UnsupportedFormatError,
        p2vimage.NoOperatingSystemError,
        p2vimage.MultipleRootsError,
        p2vimage.CorruptHiveError,
        p2vimage.CorruptImageError,
    ):
        assert issubclass(cls, p2vimage.BadInputError) and cls("x").exit_code == 3
    assert p2vimage.ConversionError("x").exit_code == 4
    assert p2vimage.NotReadyError("x").exit_code == 1
    assert p2vimage.Interrupted("x").exit_code == 130
    assert errors.EXIT_INTERRUPTED == 130
    # Temporary (exit 5): what a caller may retry, told apart by the exit code alone.
    for cls in (p2vimage.OutputBusyError, p2vimage.ApplianceError,
                p2vimage.InsufficientSpaceError):
        assert issubclass(cls, p2vimage.TemporaryError) and cls("x").exit_code == 5
        assert not issubclass(cls, (p2vimage.UsageError, p2vimage.ConversionError))
    assert errors.EXIT_TEMPORARY == 5


def test_write_errors_by_cause() -> None:
    """A failed output write: no room is temporary (exit 5), anything else exit 4."""
    import errno

    assert isinstance(errors.write_error("w", errno.ENOSPC), p2vimage.InsufficientSpaceError)
    assert isinstance(errors.write_error("w", errno.EDQUOT), p2vimage.InsufficientSpaceError)
    other = errors.write_error("w", errno.EIO)
    assert type(other) is p2vimage.ConversionError and other.exit_code == 4
    assert type(errors.write_error("w", None)) is p2vimage.ConversionError


def test_public_errors_are_listed_once() -> None:
    """The package exports every exception class of errors.py, from its one list."""
    for name in errors.__all__:
        assert getattr(p2vimage, name) is getattr(errors, name)
        assert name in p2vimage.__all__
    assert "TemporaryError" in errors.__all__
