"""inspection/hal.py: the HAL from ``Enum\\Root\\{ACPI_HAL,PCI_HAL}\\0000\\HardwareID``."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.hivebuild import build_hive, multi, sz
from p2vimage.guest.registry import Hive
from p2vimage.inspection.hal import HalInfo, read_hal

CS = "ControlSet001"
ACPI = f"{CS}\\Enum\\Root\\ACPI_HAL\\0000"
PCI = f"{CS}\\Enum\\Root\\PCI_HAL\\0000"


def _hive(tmp_path: Path, spec: dict, name: str = "SYSTEM") -> Hive:
    return Hive(build_hive(tmp_path / name, spec or {CS: {}}))


@pytest.mark.parametrize(("hwid", "hal", "mp"), [
    ("acpiapic_mp", "halmacpi.dll", True),
    ("acpiapic_up", "halaacpi.dll", False),
    ("acpipic_up", "halacpi.dll", False),
    ("mps_mp", "halmps.dll", True),
    ("mps_up", "halapic.dll", False),
    ("e_isa_up", "hal.dll", False),
    ("syspro_mp", "halsp.dll", True),
    ("acpiapic", "hal.dll", True),  # NT 6+
])
def test_each_known_hal(tmp_path: Path, hwid: str, hal: str, mp: bool) -> None:
    h = _hive(tmp_path, {ACPI: {"HardwareID": multi(hwid.upper(), "detected\\x")}})
    assert read_hal(h, CS) == HalInfo(hwid, hal, mp)  # lower-cased, first ID decides


def test_where_the_hal_is_found(tmp_path: Path) -> None:
    # ACPI_HAL wins over PCI_HAL
    both = _hive(tmp_path, {ACPI: {"HardwareID": multi("acpiapic_mp")},
                            PCI: {"HardwareID": multi("mps_up")}}, "a")
    assert read_hal(both, CS).hal == "halmacpi.dll"
    # an ACPI_HAL key without IDs falls through to PCI_HAL (a pre-ACPI machine)
    pci = _hive(tmp_path, {ACPI: {}, PCI: {"HardwareID": sz("MPS_MP")}}, "b")
    assert read_hal(pci, CS) == HalInfo("mps_mp", "halmps.dll", True)  # REG_SZ read as a list
    # an ID the table does not know: named, file and CPU count unknown
    odd = _hive(tmp_path, {ACPI: {"HardwareID": multi("acpiapic_xx")}}, "c")
    assert read_hal(odd, CS) == HalInfo("acpiapic_xx", None, None)
    assert read_hal(odd, "ControlSet002") is None


def test_no_hal_key(tmp_path: Path) -> None:
    assert read_hal(_hive(tmp_path, {}), CS) is None
