"""The virtual hardware the guest gets: machine type, disk bus and NIC model.

The picks follow the one table in :mod:`p2vimage.choices` (``check`` assumes the same);
what the user asked for wins, and a request the guest cannot boot with is refused here,
before anything is written.  The bus depends on the virtio packages chosen for this
guest (:func:`p2vimage.virtio.stage.select_packages` runs first).
"""

from __future__ import annotations

from .. import choices
from ..errors import ConversionError, UsageError
from ..guest.view import GuestView
from ..inspection import Inspection
from ..plan import Plan
from ..virtio import select as virtio_select


def choose_machine(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """q35 for UEFI, i440fx otherwise."""
    machine = choices.machine_for(insp.firmware)
    if machine == "q35":
        why = "UEFI guest: OVMF firmware on q35"
    elif insp.is_nt5:
        why = ("NT 5.x: i440fx, whose PIIX3 IDE has an in-box driver and whose PCI slots "
               "expose the legacy virtio IDs the XP/2003 drivers know")
    else:
        why = "BIOS guest: i440fx"
    plan.choose("machine", machine, why)
    assert plan.context is not None
    choices.check_vcpus(plan.context.options.vcpus, machine)


def _packages(plan: Plan) -> dict[str, virtio_select.Package]:
    assert plan.context is not None
    sel = plan.context.selection
    return sel.packages if sel is not None else {}


def choose_bus(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """virtio-blk when viostor is staged or already boot-start (virtio-scsi when only
    vioscsi is), else the machine's emulated controller: :func:`choices.pick_bus`, as
    ``check`` applies it."""
    ctx = plan.context
    assert ctx is not None
    machine = plan.device("machine") or "pc"
    packages = _packages(plan)
    staged = {name for name, p in packages.items() if p.service is not None}
    # As check assumes: a boot driver the guest already starts at boot counts too (a
    # former VM's capture, or an output converted before).
    installed = {d for d in choices.BOOT_DRIVER.values() if guest.service_start(d) == 0}
    ready = staged | installed
    bus = ctx.options.bus
    if bus == choices.AUTO:
        bus = choices.pick_bus(machine, ready)
        driver = choices.BOOT_DRIVER.get(bus)
        if driver in staged:
            plan.choose("disk bus", bus, f"{driver} staged from {packages[driver].folder}")
        elif driver is not None:
            plan.choose("disk bus", bus, f"{driver} is already a boot-start driver of the "
                        "guest")
        else:
            note = ("no --virtio-win given" if ctx.media is None
                    else f"{ctx.media.path} has no usable viostor for this guest")
            plan.choose("disk bus", bus, f"{note}: emulated controller")
    else:
        if bus == "ide" and machine == "q35":
            raise UsageError("--bus ide: a UEFI guest runs on q35, which has no IDE; use sata")
        plan.choose("disk bus", bus, "requested with --bus")
    boot_driver = choices.BOOT_DRIVER.get(bus)
    if boot_driver is not None and boot_driver not in ready:
        raise ConversionError(virtio_select.no_driver_message(insp, boot_driver, ctx.media,
                                                              ctx.selection))
    if bus == "sata" and insp.is_nt5:
        plan.warnings.append(
            "Windows 2000/XP/2003 have no in-box AHCI driver: the guest will not boot "
            "on sata unless the machine's own driver supports QEMU's ICH9 AHCI"
        )


def choose_nic(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """virtio when NetKVM is staged for Plug and Play or already installed (as ``check``
    assumes), else the in-box model."""
    ctx = plan.context
    assert ctx is not None
    packages = _packages(plan)
    nic = ctx.options.nic
    installed = guest.service_start("netkvm") is not None
    if nic == choices.AUTO:
        nic = choices.pick_nic(insp.is_nt5, "netkvm" in packages or installed)
        if nic == "virtio" and "netkvm" in packages:
            plan.choose("nic model", nic,
                        f"NetKVM staged from {packages['netkvm'].folder} for Plug and Play")
        elif nic == "virtio":
            plan.choose("nic model", nic, "NetKVM is already installed in the guest")
        else:
            plan.choose(
                "nic model", nic,
                ("no virtio network driver staged" if ctx.media is not None
                 else "no --virtio-win")
                + "; in-box driver on "
                + ("Windows 2000/XP/2003" if insp.is_nt5 else "Windows 7 and later"),
            )
    else:
        if nic == "virtio" and "netkvm" not in packages and not installed:
            plan.warnings.append("--nic virtio: no NetKVM driver staged; the guest has none")
        plan.choose("nic model", nic, "requested with --nic")
    if ctx.media is not None and not packages:
        plan.warnings.append(virtio_select.no_driver_message(insp, None, ctx.media,
                                                             ctx.selection)
                             + "; the guest uses emulated devices")
