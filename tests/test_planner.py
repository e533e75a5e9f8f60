"""The pipeline's shape: one step signature, one table of choices, as the code states it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from p2vimage import choices, cli, planner
from p2vimage.errors import UsageError
from p2vimage.options import ConvertOptions

STEP_PARAMS = ["plan", "insp", "guest"]


def test_every_step_has_the_one_signature() -> None:
    assert planner.STEPS, "the planner runs no step"
    for step in planner.STEPS:
        params = list(inspect.signature(step).parameters)
        assert params == STEP_PARAMS, (planner.step_name(step), params)
    names = [planner.step_name(s) for s in planner.STEPS]
    assert len(set(names)) == len(names)
    # the virtio packages are chosen before the bus, which depends on them
    assert names.index("virtio.stage.select_packages") < names.index("windows.hardware.choose_bus")


def _planning_functions():
    """Every function of windows/ and virtio/ whose first parameter is the plan."""
    for pkg in ("p2vimage.windows", "p2vimage.virtio"):
        mod = importlib.import_module(pkg)
        for info in pkgutil.iter_modules(mod.__path__):
            module = importlib.import_module(f"{pkg}.{info.name}")
            for name, fn in inspect.getmembers(module, inspect.isfunction):
                if fn.__module__ != module.__name__:
                    continue
                params = list(inspect.signature(fn).parameters)
                if params and params[0] == "plan":
                    yield f"{module.__name__}.{name}", params


def test_no_planning_function_takes_more_than_three_parameters() -> None:
    found = dict(_planning_functions())
    assert "p2vimage.windows.mergeide.plan_mergeide" in found
    too_many = {name: p for name, p in found.items() if len(p) > 3}
    assert too_many == {}


def test_the_cli_offers_exactly_the_table() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    opts = {a.dest: a for a in sub["convert"]._actions}
    assert tuple(opts["format"].choices) == choices.FORMATS
    assert tuple(opts["bus"].choices) == (choices.AUTO, *choices.BUSES)
    assert tuple(opts["nic"].choices) == (choices.AUTO, *choices.NICS)
    check = {a.dest: a for a in sub["check"]._actions}
    assert tuple(check["bus"].choices) == choices.BUSES
    assert tuple(check["nic"].choices) == choices.NICS


@pytest.mark.parametrize(("firmware", "ready", "machine", "bus"), [
    ("bios", set(), "pc", "ide"),
    ("uefi", set(), "q35", "sata"),
    ("bios", {"viostor"}, "pc", "virtio-blk"),
    ("uefi", {"vioscsi"}, "q35", "virtio-scsi"),
    ("bios", {"viostor", "vioscsi"}, "pc", "virtio-blk"),
])
def test_picks(firmware: str, ready: set[str], machine: str, bus: str) -> None:
    assert choices.machine_for(firmware) == machine
    assert choices.pick_bus(machine, ready) == bus


def test_vcpu_limits_are_the_machine_types() -> None:
    choices.check_vcpus(255, "pc")
    choices.check_vcpus(288, "q35")
    with pytest.raises(UsageError, match="between 1 and 255 on pc"):
        choices.check_vcpus(256, "pc")
    with pytest.raises(UsageError, match="between 1 and 288"):
        ConvertOptions(vcpus=289).check_values()
    with pytest.raises(UsageError, match="--bus floppy: use one of auto, ide"):
        ConvertOptions(bus="floppy").check_values()
