"""Command-line front end: one place for exit codes, error lines, --json and --debug.

Conventions for every command (the README has the table):
  0 success / ready, 1 ``check`` found the image not ready, 2 usage error,
  3 bad input, 4 the conversion could not be done, 5 temporary (retry may work),
  130 interrupted.
Errors print one line ``p2vimage: error: ...`` on stderr; ``--debug`` adds the
traceback.  ``--json`` prints exactly one JSON document on stdout, also on
error (``{"error": {...}}``), so pipelines never parse prose.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__, api, choices, interrupt
from .errors import (
    EXIT_CONVERSION,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    P2VError,
    UsageError,
)
from .progress import Progress

PROG = "p2vimage"


class InternalError(P2VError):
    """An unexpected exception: a bug, reported in one line like any other error."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USAGE)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--debug", action="store_true", help="show tracebacks and libguestfs details")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def _ssh(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ssh-identity", metavar="FILE", help="private key for ssh:// sources")
    p.add_argument("--ssh-known-hosts", metavar="FILE",
                   help="known_hosts file for ssh:// sources (default: ~/.ssh/known_hosts)")


def add_convert_arguments(c: argparse.ArgumentParser) -> None:
    """``convert``'s own arguments (not --json/--debug/--verbose).  Batch manifests take
    their columns from here too, so a new convert option is a manifest key at once."""
    c.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="disk image(s); several = one machine with several disks")
    c.add_argument("-o", "--output", metavar="OUT",
                   help="output disk (further disks: OUT-2, OUT-3, ...); optional with "
                   "--to libvirt (then made in a scratch directory)")
    c.add_argument("--to", default="local", metavar="TARGET",
                   help="where the guest lands: local (default: the files), "
                   "libvirt[:URI] (a volume in --pool and a defined domain; URI default "
                   "qemu:///system), proxmox (VMID.conf + VMID.qm.sh beside OUT), "
                   "kubevirt (OUT.kubevirt.yaml)")
    c.add_argument("--pool", metavar="NAME", help="libvirt storage pool (default: default)")
    c.add_argument("--start", action="store_true", help="libvirt: start the domain")
    c.add_argument("--domain-type", choices=("auto", "kvm", "qemu"),
                   help="libvirt: kvm, or qemu (TCG) where KVM does not work (default auto: "
                   "kvm when the host offers it)")
    c.add_argument("--vmid", type=int, metavar="N", help="proxmox: the new VM's ID")
    c.add_argument("--storage", metavar="ID",
                   help="proxmox: storage to import the disks into (default: local-lvm)")
    c.add_argument("--bridge", metavar="NAME", help="proxmox: bridge (default: vmbr0)")
    c.add_argument("--iso", metavar="VOLID",
                   help="proxmox: an ISO already on the node, as a PVE volume ID (e.g. "
                   "local:iso/virtio-win.iso), attached as a CD-ROM")
    c.add_argument("--agent", action="store_true",
                   help="proxmox: enable the QEMU guest agent channel (p2vimage installs "
                   "no agent)")
    c.add_argument("--namespace", metavar="NS", help="kubevirt: namespace of the objects")
    c.add_argument("--image-url", metavar="URL",
                   help="kubevirt: where the output disk will be served (a URL ending in '/' "
                   "gets the file name appended)")
    c.add_argument("--pvc", metavar="NAME", help="kubevirt: clone the disk from this PVC")
    c.add_argument("--storage-class", metavar="NAME",
                   help="kubevirt: storage class of the DataVolumes' PVCs (default: the "
                   "cluster's)")
    c.add_argument("--timezone", metavar="ZONE",
                   help="kubevirt: IANA time zone of a guest whose clock keeps local time")
    c.add_argument("--format", default="qcow2", choices=choices.FORMATS)
    c.add_argument("--size", metavar="SIZE", help="grow the system disk to SIZE (e.g. 21G)")
    c.add_argument("--source-format", metavar="FMT")
    _ssh(c)
    c.add_argument("--name", metavar="NAME", help="libvirt domain name (default: hostname)")
    c.add_argument("--memory", metavar="SIZE", help="guest memory, e.g. 2G or 2048 (MiB)")
    c.add_argument("--vcpus", type=int, metavar="N")
    c.add_argument("--bus", default=choices.AUTO, choices=(choices.AUTO, *choices.BUSES))
    c.add_argument("--nic", default=choices.AUTO, choices=(choices.AUTO, *choices.NICS))
    c.add_argument("--network", default="network=default",
                   metavar="network=NAME|bridge=NAME")
    c.add_argument("--virtio-win", metavar="ISO|DIR",
                   help="virtio-win ISO or directory: boot on virtio-blk, NIC on virtio")
    c.add_argument("--driver-file", action="append", metavar="PATH",
                   help="a driver file (e.g. pciidex.sys) the guest lacks; repeatable")
    c.add_argument("--keep-nics", action="store_true",
                   help="keep the physical NICs' registry entries (default: drop them)")
    c.add_argument("--keep-mac", action="store_true",
                   help="give the new NIC the physical NIC's recorded MAC")
    c.add_argument("--mac", metavar="MAC", help="MAC address of the new NIC")
    c.add_argument("--ip", action="append", metavar="CONN=ADDR/PREFIX,gw=...,dns=...",
                   help="static address for the new NIC (default: the captured one)")
    c.add_argument("--no-firstboot", action="store_true",
                   help="do not re-apply the static address at the first boot")
    c.add_argument("--smbios", metavar="FILE",
                   help="SMBIOS strings of the physical machine (dmidecode -t 0,1 or JSON)")
    c.add_argument("--disable-vendor-services", action="store_true",
                   help="set hardware vendors' agents (RAID, teaming, monitoring) to Start=4")
    c.add_argument("--xml", metavar="OUT.xml", help="domain XML path (default: OUT.xml)")
    c.add_argument("--report", metavar="OUT.json", help="report path (default: OUT.json)")
    c.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    c.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    c.add_argument("--force", action="store_true",
                   help="write the outputs even when the check of the converted guest finds "
                   "it not ready (the findings go in the report)")
    c.add_argument("--root", metavar="DEV")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Turn a disk image of a physical Windows machine into a KVM guest, offline.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "inspect",
        help="describe the Windows installation on a disk image (read-only)",
        description="Describe the Windows installation on a disk image. The image is "
        "opened read-only; its bytes never change.",
    )
    p.add_argument("image", metavar="IMAGE", help="disk image: raw/dd, qcow2, vmdk, vhd, vhdx")
    p.add_argument(
        "--source-format",
        metavar="FMT",
        help="format of IMAGE (default: detected; a disk with an MBR is always raw)",
    )
    p.add_argument("--root", metavar="DEV", help="which Windows to use when there are several")
    _ssh(p)
    _common(p)
    p.set_defaults(func=cmd_inspect)

    c = sub.add_parser(
        "convert",
        help="convert a captured disk image into a KVM guest (disk, libvirt XML, report)",
        description="Convert the disk image(s) of a physical Windows machine into a KVM "
        "guest. The sources are never written: changes go to an overlay and a new output.",
    )
    add_convert_arguments(c)
    _common(c)
    c.set_defaults(func=cmd_convert)

    k = sub.add_parser(
        "check",
        help="will an image boot on KVM, on which devices? (read-only, for CI)",
        description="Check, without booting, whether a disk image will boot on KVM with "
        "the given disk bus and NIC. Read-only: the image's bytes never change. "
        "Exit 0 ready, 1 not ready, 3 could not check.",
    )
    k.add_argument("image", metavar="IMAGE", help="disk image (a converted output or a capture)")
    k.add_argument("--bus", choices=choices.BUSES,
                   help="disk bus to evaluate (default: from --xml, else virtio-blk when "
                   "viostor is boot-start, else ide / sata on UEFI)")
    k.add_argument("--nic", choices=choices.NICS,
                   help="NIC model to evaluate (default: from --xml, else as convert picks)")
    k.add_argument("--xml", metavar="DOMAIN.xml",
                   help="libvirt domain: evaluate its devices and check it agrees with the guest")
    k.add_argument("--vcpus", type=int, metavar="N", help="vCPUs the VM will have")
    k.add_argument("--junit", metavar="FILE", help="also write JUnit XML (one testcase per check)")
    k.add_argument("--source-format", metavar="FMT")
    k.add_argument("--root", metavar="DEV")
    _ssh(k)
    _common(k)
    k.set_defaults(func=cmd_check)

    r = sub.add_parser(
        "restore-clonezilla",
        help="rebuild a disk image from a Clonezilla image directory (no VM, no CD boot)",
        description="Rebuild the disks of a Clonezilla image directory (ocs-sr savedisk) as "
        "sparse raw or qcow2 files: partition table (MBR or GPT), boot code, then every "
        "partition's used blocks, checksums verified. The directory is only read. Several "
        "disks go to OUT, OUT-2, OUT-3 … in the order of the image's 'disk' file.",
    )
    r.add_argument("directory", metavar="DIR", help="Clonezilla image directory")
    r.add_argument("-o", "--output", required=True, metavar="OUT", help="output disk image")
    r.add_argument("--format", default="raw", choices=choices.FORMATS)
    r.add_argument("--disk", metavar="NAME",
                   help="only this disk of the image (e.g. sda; default: every disk)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    _common(r)
    r.set_defaults(func=cmd_restore_clonezilla)

    from .batch import command as batch_command  # (here: batch's modules import this one)

    batch_command.add_parser(sub, _common)
    return parser


# Options of the synopsis whose step is not built yet: refused, never silently ignored.
_NOT_YET: dict[str, tuple[str, str]] = {}


def cmd_convert(args: argparse.Namespace) -> tuple[int, Any, list[str]]:
    from .convert import convert

    for attr, (flag, topic) in _NOT_YET.items():
        if getattr(args, attr):
            raise UsageError(f"{flag}: not available yet in this version ({topic} step)")
    kwargs = convert_kwargs(args)
    if args.output is None and kwargs["target"].kind != "libvirt":
        raise UsageError(f"-o/--output is needed for --to {kwargs['target'].kind}")
    report = convert(args.sources, args.output, progress=_bar(args), **kwargs)
    return EXIT_OK, report.to_dict(), report.summary_lines()


def convert_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options of :func:`p2vimage.convert` from parsed ``convert`` arguments
    (sizes and memory parsed, ``--to`` and its options as a typed target): one mapping
    for the command and for batch manifests."""
    from . import libvirt_xml
    from .options import parse_size

    return dict(
        target=target_of(args),
        format=args.format,
        size=parse_size(args.size) if args.size else None,
        source_format=args.source_format,
        ssh_identity=args.ssh_identity,
        ssh_known_hosts=args.ssh_known_hosts,
        name=args.name,
        memory_mib=libvirt_xml.parse_memory(args.memory) if args.memory else None,
        vcpus=args.vcpus,
        bus=args.bus,
        nic=args.nic,
        network=args.network,
        xml=Path(args.xml) if args.xml else None,
        report=Path(args.report) if args.report else None,
        dry_run=args.dry_run,
        overwrite=args.overwrite,
        root=args.root,
        driver_files=[Path(f) for f in args.driver_file or ()],
        virtio_win=Path(args.virtio_win) if args.virtio_win else None,
        keep_nics=args.keep_nics,
        keep_mac=args.keep_mac,
        mac=args.mac,
        ip=list(args.ip or ()),
        no_firstboot=args.no_firstboot,
        smbios=Path(args.smbios) if args.smbios else None,
        disable_vendor_services=args.disable_vendor_services,
        force=args.force,
    )


def target_of(args: argparse.Namespace) -> Any:
    """``--to`` and the target options of ``convert`` as a typed target (UsageError for
    an option of another target, or a missing one)."""
    from .destinations import parse_to

    return parse_to(args.to, pool=args.pool, start=args.start, domain_type=args.domain_type,
                    vmid=args.vmid, storage=args.storage, bridge=args.bridge,
                    iso=args.iso, agent=args.agent, namespace=args.namespace,
                    image_url=args.image_url, pvc=args.pvc,
                    storage_class=args.storage_class, timezone=args.timezone)


def _bar(args: argparse.Namespace) -> TerminalProgress | None:
    """The progress line, on a terminal and without --json."""
    return TerminalProgress() if not args.json and sys.stderr.isatty() else None


class TerminalProgress:
    """The copy's line on a terminal, drawn from the library's Progress values."""

    def __call__(self, p: Progress) -> None:
        if p.unit != "bytes":
            sys.stderr.write(f"\r{p.phase} ({p.done}/{p.total})   "
                             + ("\n" if p.done >= p.total else ""))
            sys.stderr.flush()
            return
        mib = 1 << 20
        eta = f", {p.eta:,.0f} s left" if p.eta is not None and p.done < p.total else ""
        sys.stderr.write(f"\r{p.phase}: {p.done / mib:,.0f} of {p.total / mib:,.0f} MiB "
                         f"({p.rate / mib:,.0f} MiB/s{eta})   ")
        if p.done >= p.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def cmd_check(args: argparse.Namespace) -> tuple[int, Any, list[str]]:
    from .check import check
    from .errors import EXIT_NOT_READY, CouldNotCheckError
    from .targets.atomic import AtomicOutputs

    # The JUnit path is validated (and claimed) before the (slow) appliance launch.
    junit = AtomicOutputs([Path(args.junit)], overwrite=True) if args.junit else None
    with junit or contextlib.nullcontext():
        try:
            report = check(args.image, bus=args.bus, nic=args.nic, xml=args.xml,
                           vcpus=args.vcpus, source_format=args.source_format, root=args.root,
                           ssh_identity=args.ssh_identity,
                           ssh_known_hosts=args.ssh_known_hosts)
        except (P2VError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug: "could not check" (3), not "not ready"
            raise CouldNotCheckError(
                f"could not check {args.image}: internal error: {type(exc).__name__}: {exc} "
                "(rerun with --debug and report it)") from exc
        if junit is not None:
            junit.partial(Path(args.junit)).write_bytes(report.to_junit())
            junit.commit()
    return (EXIT_OK if report.ready else EXIT_NOT_READY), report.to_dict(), report.summary_lines()


def cmd_inspect(args: argparse.Namespace) -> tuple[int, Any, list[str]]:
    insp = api.inspect(args.image, source_format=args.source_format, root=args.root,
                       ssh_identity=args.ssh_identity, ssh_known_hosts=args.ssh_known_hosts)
    return EXIT_OK, insp.to_dict(), insp.summary_lines()


def cmd_restore_clonezilla(args: argparse.Namespace) -> tuple[int, Any, list[str]]:
    result = api.restore_clonezilla(args.directory, args.output, format=args.format,
                                    disk=args.disk, overwrite=args.overwrite,
                                    progress=_bar(args))
    return EXIT_OK, result.to_dict(), result.summary_lines()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format=f"{PROG}: %(message)s",
        stream=sys.stderr,
    )
    # SIGTERM unwinds like Ctrl-C, so every ``finally`` cleans up partial outputs.
    func: Callable[[argparse.Namespace], tuple[int, Any, list[str]]] = args.func
    try:
        with interrupt.handling_signals():
            code, doc, lines = func(args)
            interrupt.check()
    except KeyboardInterrupt:
        return _fail(args, interrupt.as_error(), EXIT_INTERRUPTED)
    except P2VError as exc:
        return _fail(args, exc, exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - a bug must still end in one line
        wrapped = InternalError(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)"
        )
        return _fail(args, wrapped, EXIT_CONVERSION)
    if args.json:
        json.dump(doc, sys.stdout, indent=2, sort_keys=False, default=str)
        sys.stdout.write("\n")
    else:
        for line in lines:
            print(line)
    return code


def _fail(args: argparse.Namespace, exc: BaseException, code: int) -> int:
    if getattr(args, "debug", False):
        traceback.print_exc()
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    sys.stderr.write(f"{PROG}: error: {message}\n")
    if getattr(args, "json", False):
        doc = {"error": {"type": type(exc).__name__, "message": message, "exit_code": code}}
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
    return code


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
