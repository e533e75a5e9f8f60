"""Run the planning steps, in order, into one :class:`~p2vimage.plan.Plan`.

Every step has the same shape, ``step(plan, insp, guest) -> None``: it reads the typed
inspection and the read-only guest view, and adds proposed changes, device choices and
warnings to the plan (options, virtio media and work directory are in
``plan.context``).  Steps decide for themselves whether they apply (the NT 5.x steps do
nothing on NT 6+), so the list below is the whole pipeline, in the order it runs.
Nothing here writes to the guest: :mod:`p2vimage.apply` does that, once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .guest.view import GuestView
from .inspection import Inspection
from .plan import Plan, PlanContext
from .virtio import stage as virtio_stage
from .windows import (
    common_nt5,
    emulated_storage,
    firstboot,
    geometry,
    hardware,
    ide_drivers,
    leftovers,
    mergeide,
    nic_removal,
)

Step = Callable[[Plan, Inspection, GuestView], None]
log = logging.getLogger("p2vimage")

STEPS: tuple[Step, ...] = (
    hardware.choose_machine,
    virtio_stage.select_packages,  # the bus depends on what the media has for this guest
    hardware.choose_bus,
    hardware.choose_nic,
    common_nt5.plan_autoreboot,
    common_nt5.plan_intelppm,
    geometry.plan_geometry,
    mergeide.plan_mergeide,  # KB314082: IDE is the NT 5.x fallback even on virtio
    ide_drivers.plan_ide_drivers,
    emulated_storage.plan_nt6_storage,
    virtio_stage.plan_virtio,
    nic_removal.plan_network,
    firstboot.plan_firstboot,
    leftovers.plan_vendor_services,
    leftovers.plan_oem,
)


def step_name(step: Step) -> str:
    """``windows.mergeide.plan_mergeide`` — how ``--dry-run --json`` and logs name it."""
    module = step.__module__.removeprefix("p2vimage.")
    return f"{module}.{step.__name__}"


def make_plan(insp: Inspection, guest: GuestView, context: PlanContext,
              steps: tuple[Step, ...] = STEPS) -> Plan:
    """Run ``steps`` in order on a new plan; a step's error stops the planning."""
    plan = Plan(context=context)
    for step in steps:
        log.debug("plan step %s", step_name(step))
        step(plan, insp, guest)
    return plan
