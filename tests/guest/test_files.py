"""guest/files.py: what can be told without an appliance — Windows spellings of guest
paths, failed appliance calls turned into absent files or ConversionErrors, and the
remembered paths that save round trips.

The handle is a real libguestfs handle that was never launched: every call raises the
RuntimeError a failing appliance call raises, so each test sees exactly what the module
does when the appliance says no (and that a remembered path asks nothing at all)."""

from __future__ import annotations

from pathlib import Path

import guestfs
import pytest

from p2vimage.errors import ConversionError
from p2vimage.guest import files


@pytest.fixture
def g() -> guestfs.GuestFS:
    return guestfs.GuestFS(python_return_dict=True)


def test_windows_path() -> None:
    assert files.windows_path("/WINDOWS/system32/drivers") == "\\WINDOWS\\system32\\drivers"
    assert files.windows_path("/") == "\\"
    assert files.windows_path("boot.ini") == "boot.ini"


def test_failed_lookups_are_absent_files(g) -> None:
    assert files.resolve(g, "/WINDOWS/system32") is None
    assert files.list_dir(g, "/WINDOWS") == []


def test_failed_writes_are_conversion_errors_naming_the_guest_path(g, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"cannot create \\WINDOWS\\Drivers\\VirtIO "
                                              "in the guest"):
        files.ensure_dir(g, "/WINDOWS/Drivers/VirtIO")
    small = tmp_path / "small.inf"
    small.write_bytes(b"[Version]\r\n")
    with pytest.raises(ConversionError, match=r"cannot write \\WINDOWS\\inf\\oem9.inf in the "
                                              "guest"):
        files.upload(g, small, "/WINDOWS/inf/oem9.inf")
    big = tmp_path / "big.cab"  # above WRITE_MAX: sent with upload, same error
    with open(big, "wb") as f:
        f.truncate(files.WRITE_MAX + 1)
    with pytest.raises(ConversionError, match=r"cannot write \\big.cab"):
        files.upload(g, big, "/big.cab")
    with pytest.raises(ConversionError, match="cannot create"):
        files.resolve_for_write(g, "/WINDOWS/new/file.sys")


def test_download_makes_the_local_folder_first(g, tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "system"
    with pytest.raises(RuntimeError):
        files.download(g, "/WINDOWS/system32/config/system", dest)
    assert dest.parent.is_dir() and not dest.exists()


def test_remembered_paths_ask_the_appliance_nothing(g) -> None:
    """Once remembered, a path (any spelling) resolves without a call: the never-launched
    handle would fail any call it got."""
    assert getattr(g, "_p2v_known_paths", None) is None  # off unless the owner opts in
    files.remember(g)
    g._p2v_known_paths.paths["/windows/system32"] = "/WINDOWS/system32"
    assert files.resolve(g, "/Windows/System32") == "/WINDOWS/system32"
    assert files.ensure_dir(g, "/WINDOWS/SYSTEM32") == "/WINDOWS/system32"
    assert files.resolve_for_write(g, "/windows/system32") == "/WINDOWS/system32"
    assert files.list_dir(g, "/windows/system32") == []  # listing it is a call: it fails
    files.forget(g)
    assert files.resolve(g, "/Windows/System32") is None  # asked again: the call fails
    files.forget(None)  # a job without a handle forgets nothing, quietly


def test_forget_leaves_an_uncached_handle_uncached(g) -> None:
    files.forget(g)
    assert getattr(g, "_p2v_known_paths", None) is None
