"""check/guest.py: the checks' view — where a service's driver file is, and whether a
file can be this guest's kernel driver (PE images made by ``fixtures.pe``)."""

from __future__ import annotations

import struct
from pathlib import Path

import guestfs
import pytest

from fixtures.pe import MACHINE_AMD64, MACHINE_I386, build_pe
from p2vimage.check.guest import CheckView
from p2vimage.guest.registry import Hive
from tests.check.files_view import files_view

XP = "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"
DRIVERS = "/WINDOWS/system32/drivers"


@pytest.fixture(scope="module")
def x86_sys() -> bytes:
    return build_pe(MACHINE_I386)


@pytest.fixture(scope="module")
def amd64_sys() -> bytes:
    return build_pe(MACHINE_AMD64)


def _machine(pe: bytes, machine: int) -> bytes:
    """The same image with another COFF machine field."""
    (lfanew,) = struct.unpack_from("<I", pe, 0x3C)
    return pe[: lfanew + 4] + struct.pack("<H", machine) + pe[lfanew + 6 :]


@pytest.mark.parametrize(("root", "image_path", "expected"), [
    (None, None, "/WINDOWS/System32/drivers/atapi.sys"),  # the kernel's default
    ("/WINNT", "System32\\DRIVERS\\atapi.sys", "/WINNT/System32/DRIVERS/atapi.sys"),
    ("/WINNT", "\\SystemRoot\\system32\\drivers\\atapi.sys", "/WINNT/system32/drivers/atapi.sys"),
    ("/WINDOWS", "%SystemRoot%\\system32\\a.sys", "/WINDOWS/system32/a.sys"),
    ("/WINDOWS", "\\??\\C:\\drivers\\a.sys", "/drivers/a.sys"),  # the system volume's root
])
def test_driver_path(real_hives: dict[str, Path], root, image_path, expected) -> None:
    view = CheckView(Hive(real_hives[XP]), None, ["ControlSet001"], root)
    assert view.driver_path(image_path, "atapi") == expected


def test_pe_problem(real_hives: dict[str, Path], x86_sys: bytes, amd64_sys: bytes) -> None:
    hive = Hive(real_hives[XP])
    view = files_view(hive, ["ControlSet001"], {
        f"{DRIVERS}/x86.sys": x86_sys,
        f"{DRIVERS}/amd64.sys": amd64_sys,
        f"{DRIVERS}/arm.sys": _machine(x86_sys, 0x1C4),
        f"{DRIVERS}/text.sys": b"this is not a driver\r\n" * 10,
        f"{DRIVERS}/empty.sys": b"",
    })
    assert view.pe_problem(f"{DRIVERS}/X86.SYS") is None
    assert view.pe_problem(f"{DRIVERS}/amd64.sys") == "built for x64, the guest is x86"
    assert view.pe_problem(f"{DRIVERS}/arm.sys") == "built for 0x1c4, the guest is x86"
    assert view.pe_problem(f"{DRIVERS}/text.sys").startswith("not a PE file: no 'MZ'")
    assert view.pe_problem(f"{DRIVERS}/empty.sys").startswith("not a PE file")
    assert view.pe_problem(f"{DRIVERS}/missing.sys") == "cannot be read"
    view.arch = "x64"
    assert view.pe_problem(f"{DRIVERS}/amd64.sys") is None
    assert view.pe_problem(f"{DRIVERS}/x86.sys") == "built for x86, the guest is x64"
    view.arch = None  # architecture unknown: any PE image will do
    assert view.pe_problem(f"{DRIVERS}/arm.sys") is None


def test_pe_problem_when_the_appliance_cannot_read(real_hives: dict[str, Path]) -> None:
    g = guestfs.GuestFS(python_return_dict=True)  # never launched: every call fails
    view = CheckView(Hive(real_hives[XP]), None, ["ControlSet001"], "/WINDOWS", g=g, arch="x86")
    assert view.pe_problem(f"{DRIVERS}/atapi.sys") == "cannot be read"
