"""The libvirt domain of a converted guest, from the inspection and the plan's choices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import choices, libvirt_xml
from .inspection import Inspection
from .options import ConvertOptions
from .plan import Plan
from .windows import leftovers


def build_domain(insp: Inspection, plan: Plan, opts: ConvertOptions,
                 disks: list[Path]) -> tuple[Any, list[str]]:
    """The domain element and libvirt_xml's warnings (validated by the caller)."""
    return libvirt_xml.build_domain(domain_spec(insp, plan, opts, disks))


def domain_spec(insp: Inspection, plan: Plan, opts: ConvertOptions,
                disks: list[Path]) -> libvirt_xml.DomainSpec:
    """The VM this conversion describes, for libvirt (and the other targets' writers)."""
    bus = choices.XML_BUS[plan.device("disk bus") or "ide"]
    mem = opts.memory_mib or choices.default_memory_mib(insp.arch, insp.is_nt5)
    spec = libvirt_xml.DomainSpec(
        name=opts.name or insp.hostname or "p2v-windows",
        memory_mib=mem,
        vcpus=opts.vcpus or choices.DEFAULT_VCPUS,
        arch=insp.arch or "x86",
        machine=plan.device("machine") or "pc",
        firmware=insp.firmware or "bios",
        disks=[libvirt_xml.DiskSpec(str(d.resolve()), opts.format, bus) for d in disks],
        nic_model=plan.device("nic model"),
        mac=plan.device("mac"),
        smbios=leftovers.read_smbios(Path(opts.smbios)) if opts.smbios else None,
        network=opts.network,
        localtime=not insp.real_time_is_universal,
        uniprocessor_hal=bool(insp.hal and insp.hal.multiprocessor is False),
        virtio_transitional=plan.device("machine") == "q35" and (
            insp.is_nt5 or not all(plan.virtio.modern_ids.values() if plan.virtio else ())
        ),
        # The ISO rides along as a CD-ROM (guest tools, later driver updates) when it
        # served this guest; a disc with nothing for it would only confuse.
        cdrom=str(opts.virtio_win.resolve())
        if opts.virtio_win is not None and opts.virtio_win.is_file() and plan.virtio else None,
        balloon=plan.device("memballoon") == "virtio",
    )
    return spec
