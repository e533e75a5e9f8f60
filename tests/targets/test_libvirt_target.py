"""``convert --to libvirt`` against a real libvirtd of the tests' own (tests/targets/libvirtd.py).

One daemon and one ``dir`` pool for the module.  The cases that need no appliance (the
target's checks before any work, an upload that fills the pool, a qemu+ssh connection and
its host-key check) run in ``make test``; the real conversions (volume read back, ``virsh
dumpxml`` through ``virt-xml-validate`` and ``check``, ``--start`` under TCG; the same
image landed again over qemu+ssh, through a loopback sshd, and compared) are slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from lxml import etree

import p2vimage
from p2vimage import interrupt
from p2vimage.destinations import LibvirtTarget
from p2vimage.errors import InsufficientSpaceError, UsageError
from p2vimage.targets.libvirt_pool import LibvirtHost, VolumeUpload, kvm_starts
from p2vimage.uris import redact
from tests.conftest import run_cli
from tests.readback import read_back
from tests.sources.netservers import Sshd, free_port
from tests.targets import libvirtd

POOL = "p2v"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[libvirtd.Daemon]:
    root = tmp_path_factory.mktemp("libvirtd")
    d = libvirtd.start(root / "state")
    try:
        conn = d.connect()
        libvirtd.dir_pool(conn, POOL, root / "pool")
        # The guests' NIC is on network 'default': an isolated one, its bridge in the
        # daemon's own network namespace.
        net = conn.networkDefineXML("<network><name>default</name>"
                                    "<bridge name='p2vbr0'/></network>")
        net.create()
        conn.close()
        yield d
    finally:
        d.stop()
    assert d.proc.poll() is not None


@pytest.fixture
def conn(daemon: libvirtd.Daemon) -> Iterator[libvirt.virConnect]:
    c = daemon.connect()
    yield c
    c.close()


def volumes(conn: libvirt.virConnect, pool: str = POOL) -> list[str]:
    p = conn.storagePoolLookupByName(pool)
    p.refresh(0)
    return sorted(p.listVolumes())


def domains(conn: libvirt.virConnect) -> list[str]:
    return sorted(d.name() for d in conn.listAllDomains(0))


def source(images: dict[str, Path]) -> Path:
    from fixtures.images import DEMO

    return images[DEMO]


# -- the target's checks, before any work (no appliance) ---------------------------------


def test_unreachable_uri_is_exit_5_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "g.qcow2"
    img = tmp_path / "src.img"
    img.write_bytes(b"\0" * 1024 * 1024)
    r = run_cli("convert", str(img), "-o", str(out), "--to",
                f"libvirt:qemu:///system?socket={tmp_path}/no-sock", "--json")
    assert r.returncode == 5, r.stderr
    assert r.stderr.count("\n") == 1 and "cannot connect to libvirt" in r.stderr
    assert json.loads(r.stdout)["error"]["type"] == "TargetUnreachableError"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.img"]


def test_missing_pool_is_exit_2(daemon: libvirtd.Daemon, tmp_path: Path) -> None:
    img = tmp_path / "src.img"
    img.write_bytes(b"\0" * 1024 * 1024)
    r = run_cli("convert", str(img), "--to", f"libvirt:{daemon.uri}", "--pool", "nope")
    assert r.returncode == 2, r.stderr
    assert "--pool nope: no such storage pool" in r.stderr and f"pools: {POOL}" in r.stderr


def test_existing_domain_or_volume_name_is_exit_2_and_untouched(
        daemon: libvirtd.Daemon, conn: libvirt.virConnect, tmp_path: Path) -> None:
    img = tmp_path / "src.img"
    img.write_bytes(b"\0" * 1024 * 1024)
    dom = conn.defineXML("<domain type='qemu'><name>taken</name><memory>65536</memory>"
                         "<os><type>hvm</type></os></domain>")
    pool = conn.storagePoolLookupByName(POOL)
    vol = pool.createXML("<volume><name>vtaken.qcow2</name><capacity>1048576</capacity>"
                         "<target><format type='qcow2'/></target></volume>", 0)
    try:
        for name, what in (("taken", "a domain named 'taken'"),
                           ("vtaken", "a volume named 'vtaken.qcow2'")):
            r = run_cli("convert", str(img), "--to", f"libvirt:{daemon.uri}", "--pool", POOL,
                        "--name", name)
            assert r.returncode == 2, r.stderr
            assert what in r.stderr and "--overwrite" in r.stderr
            assert r.stderr.count("\n") == 1
        assert conn.lookupByName("taken").XMLDesc(0) == dom.XMLDesc(0)
        assert "vtaken.qcow2" in volumes(conn)
    finally:
        dom.undefine()
        vol.delete(0)


def test_pool_too_small_is_refused_before_any_work(
        daemon: libvirtd.Daemon, conn: libvirt.virConnect, tmp_path: Path,
        images: dict[str, Path]) -> None:
    small = tmp_path / "small"
    libvirtd.small_filesystem(daemon, small, "2m")
    try:
        pool = libvirtd.dir_pool(conn, "tiny", small)
        work = tmp_path / "work"
        work.mkdir()
        r = run_cli("convert", str(source(images)), "--to", f"libvirt:{daemon.uri}",
                    "--pool", "tiny", "--name", "toolarge", "--json",
                    env={"TMPDIR": str(work)})
        assert r.returncode == 5, r.stderr
        assert "storage pool tiny" in r.stderr and "MiB free" in r.stderr
        assert json.loads(r.stdout)["error"]["type"] == "InsufficientSpaceError"
        assert volumes(conn, "tiny") == [] and "toolarge" not in domains(conn)
        assert list(work.iterdir()) == []  # no scratch output, no work directory left
        pool.destroy()
        pool.undefine()
    finally:
        libvirtd.unmount(daemon, small)


def test_a_pool_that_fills_up_mid_upload_keeps_nothing(
        daemon: libvirtd.Daemon, conn: libvirt.virConnect, tmp_path: Path) -> None:
    """The upload itself fails (the pool's filesystem is full after 4 MiB of 12): the
    volume is deleted and no domain is defined."""
    small = tmp_path / "small"
    libvirtd.small_filesystem(daemon, small, "4m")
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:  # 64 MiB, 12 MiB of it data: holes between
        f.truncate(64 << 20)
        for at in (1, 20, 40):
            f.seek(at << 20)
            f.write(os.urandom(4 << 20))
    try:
        libvirtd.dir_pool(conn, "fills", small)
        with LibvirtHost(daemon.uri) as host:
            pool = host.pool("fills")
            with pytest.raises(InsufficientSpaceError, match="filesystem is full"):
                host.land(pool, "filler", [VolumeUpload(disk, "raw", "filler.img")],
                          lambda paths: _tiny_domain("filler", paths[0]))
        assert volumes(conn, "fills") == []
        assert "filler" not in domains(conn)
        assert libvirtd.files_in(daemon, small) == []
        p = conn.storagePoolLookupByName("fills")
        p.destroy()
        p.undefine()
    finally:
        libvirtd.unmount(daemon, small)


def test_sparse_upload_sends_the_data_and_keeps_the_holes(
        daemon: libvirtd.Daemon, conn: libvirt.virConnect, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
        f.seek(30 << 20)
        f.write(os.urandom(3 << 20))
    seen: list[p2vimage.Progress] = []
    with LibvirtHost(daemon.uri) as host:
        landed = host.land(host.pool(POOL), "sparse", [VolumeUpload(disk, "raw", "sparse.img")],
                           lambda paths: _tiny_domain("sparse", paths[0]), progress=seen.append)
    # Only the data went over the stream: 3 MiB, the last report done == total.
    assert seen[-1].phase == "upload disk 1/1"
    assert seen[-1].done == seen[-1].total == 3 << 20
    try:
        path = Path(landed.paths[0])
        assert path.read_bytes() == disk.read_bytes()
        assert path.stat().st_blocks * 512 < 8 << 20  # the holes stayed holes
        xml = etree.fromstring(conn.lookupByName("sparse").XMLDesc(0).encode())
        assert xml.find("devices/disk/source").get("file") == str(path)
    finally:
        with LibvirtHost(daemon.uri) as host:
            host.remove(host.conn.lookupByName("sparse"),
                        [host.pool(POOL).storageVolLookupByName("sparse.img")])
    assert "sparse.img" not in volumes(conn) and "sparse" not in domains(conn)


def test_overwrite_replaces_the_domain_and_volume_and_start_failure_keeps_nothing(
        daemon: libvirtd.Daemon, conn: libvirt.virConnect, tmp_path: Path) -> None:
    old, new = tmp_path / "old.img", tmp_path / "new.img"
    old.write_bytes(b"o" * 65536)
    new.write_bytes(b"n" * 131072)
    with LibvirtHost(daemon.uri) as host:
        pool = host.pool(POOL)
        host.land(pool, "twice", [VolumeUpload(old, "raw", "twice.img")],
                  lambda paths: _tiny_domain("twice", paths[0]))
        with pytest.raises(UsageError, match="already exists"):
            host.check_free(pool, "twice", ["twice.img"], overwrite=False)
        landed = host.land(pool, "twice", [VolumeUpload(new, "raw", "twice.img")],
                           lambda paths: _tiny_domain("twice", paths[0]), overwrite=True)
        assert Path(landed.paths[0]).read_bytes() == new.read_bytes()
        assert domains(conn).count("twice") == 1
        # A domain that defines but cannot start (a second disk's file does not exist):
        # the volume goes, the domain is undefined.
        missing = ("<disk type='file' device='disk'><source file='/nonexistent/p2v.img'/>"
                   "<target dev='vdb' bus='virtio'/></disk></devices>")
        with pytest.raises(p2vimage.ConversionError, match="does not start"):
            host.land(pool, "nostart", [VolumeUpload(new, "raw", "nostart.img")],
                      lambda paths: _tiny_domain("nostart", paths[0]).replace(
                          "</devices>", missing), start=True)
        landed.undo()
    assert "twice" not in domains(conn) and "nostart" not in domains(conn)
    assert not {"twice.img", "nostart.img"} & set(volumes(conn))


def test_auto_domain_type_is_kvm_only_where_qemu_runs_with_it(
        daemon: libvirtd.Daemon) -> None:
    """Where /dev/kvm exists but QEMU aborts with it (nested KVM refusing an MSR, as on
    this project's build machines), ``auto`` is TCG, with a warning."""
    with LibvirtHost(daemon.uri) as host:
        assert host.domain_type("qemu", "x86_64") == ("qemu", None)
        kind, note = host.domain_type("auto", "x86_64")
    qemu = "/usr/bin/qemu-system-x86_64"
    works = os.path.exists("/dev/kvm") and kvm_starts(qemu)
    assert (kind, note is None) == (("kvm", True) if works else ("qemu", not os.path.exists(
        "/dev/kvm")))
    if note is not None:
        assert "fails with it on this host" in note


def test_a_cancel_mid_upload_keeps_nothing(
        daemon: libvirtd.Daemon, conn: libvirt.virConnect, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.write(os.urandom(16 << 20))
    cancel = p2vimage.Cancel()
    with LibvirtHost(daemon.uri) as host, interrupt.job(cancel), \
            pytest.raises(p2vimage.Interrupted):
        host.land(host.pool(POOL), "cancelled", [VolumeUpload(disk, "raw", "cancelled.img")],
                  lambda paths: _tiny_domain("cancelled", paths[0]),
                  progress=lambda _p: cancel.set())
    assert "cancelled.img" not in volumes(conn) and "cancelled" not in domains(conn)


def test_the_iso_is_referenced_only_where_the_host_has_it(
        daemon: libvirtd.Daemon, tmp_path: Path) -> None:
    iso = tmp_path / "virtio-win.iso"
    iso.write_bytes(b"\0" * 2048)
    with LibvirtHost(daemon.uri) as host:
        assert host.is_local
        assert host.has_file(str(iso)) and not host.has_file(str(tmp_path / "gone.iso"))
    for uri, local in (("qemu:///system", True), ("qemu+unix:///system", True),
                       ("qemu+ssh://kvm1/system", False), ("qemu+tcp://10.0.0.2/system", False),
                       ("qemu://kvm1/system", False)):
        host = LibvirtHost.__new__(LibvirtHost)
        host.uri = uri
        assert host.is_local is local, uri


def test_target_options_are_checked_before_any_work() -> None:
    with pytest.raises(UsageError, match="--pool"):
        p2vimage.convert("x.img", LibvirtTarget(pool="a/b"))
    with pytest.raises(UsageError, match="domain-type"):
        p2vimage.convert("x.img", LibvirtTarget(domain_type="xen"))
    with pytest.raises(UsageError, match="output path is needed for --to proxmox"):
        p2vimage.convert("x.img", p2vimage.ProxmoxTarget(vmid=100))


def _tiny_domain(name: str, path: str) -> str:
    return (f"<domain type='qemu'><name>{name}</name><memory>65536</memory>"
            "<os><type>hvm</type></os><devices><disk type='file' device='disk'>"
            f"<driver name='qemu' type='raw'/><source file='{path}'/>"
            "<target dev='vda' bus='virtio'/></disk></devices></domain>")


# -- a real conversion ---------------------------------------------------------------------


@dataclass(frozen=True)
class Landing:
    """A conversion landed on the module's daemon: its local output and its report."""

    out: Path
    doc: dict


@pytest.fixture(scope="module")
def landed_locally(daemon: libvirtd.Daemon, tmp_path_factory: pytest.TempPathFactory,
                   images: dict[str, Path]) -> Landing:
    """The demo image converted ``--to libvirt`` (local URI), started under TCG and
    stopped again: one conversion for the module, the reference of the qemu+ssh one."""
    out = tmp_path_factory.mktemp("landed") / "local.qcow2"
    r = run_cli("convert", str(source(images)), "-o", str(out), "--to",
                f"libvirt:{daemon.uri}", "--pool", POOL, "--name", "landed",
                "--domain-type", "qemu", "--start", "--json")
    assert r.returncode == 0, r.stderr
    # Started under TCG: running now; stopped before anything reads its disk.
    assert daemon.virsh("domstate", "landed").stdout.strip() == "running"
    daemon.virsh("destroy", "landed")
    return Landing(out, json.loads(r.stdout))


def same_disk(a: str | Path, b: str | Path) -> None:
    """``a`` and ``b`` hold the same guest-visible bytes."""
    cmp = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", str(a), str(b)],
                         capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


def dumped_domain(virsh: Callable[..., subprocess.CompletedProcess], name: str,
                  tmp_path: Path) -> tuple[Path, etree._Element]:
    """The domain as libvirt holds it (``virsh dumpxml --inactive``), checked by
    ``virt-xml-validate`` against libvirt's schema."""
    dumped = tmp_path / f"{name}.dumped.xml"
    dumped.write_text(virsh("dumpxml", name, "--inactive").stdout)
    subprocess.run(["virt-xml-validate", str(dumped), "domain"], check=True,
                   capture_output=True)
    return dumped, etree.parse(str(dumped)).getroot()


@pytest.mark.slow
def test_convert_to_libvirt_lands_the_guest(
        daemon: libvirtd.Daemon, conn: libvirt.virConnect, tmp_path: Path,
        images: dict[str, Path], landed_locally: Landing) -> None:
    out, doc = landed_locally.out, landed_locally.doc
    target = doc["target"]
    vol = conn.storagePoolLookupByName(POOL).storageVolLookupByName("landed.qcow2")
    assert target["kind"] == "libvirt" and target["started"] is True
    assert target["domain_type"] == "qemu"
    assert target["where"] == f"{daemon.uri} pool {POOL}"
    assert target["created"] == [f"file {out}", f"file {out.with_suffix('.xml')}",
                                 f"file {out.with_suffix('.json')}",
                                 f"volume {POOL}/landed.qcow2 {vol.path()}", "domain landed"]
    # The volume holds what the local output holds (guest-visible bytes).
    same_disk(out, vol.path())
    # The domain as libvirt holds it: valid, on the volume, TCG, the devices convert chose.
    dumped, dom = dumped_domain(daemon.virsh, "landed", tmp_path)
    assert dom.get("type") == "qemu"
    assert dom.find("devices/disk/source").get("file") == vol.path()
    local = etree.parse(str(out.with_suffix(".xml"))).getroot()
    for path in ("os/type", "devices/disk/target", "devices/interface/model"):
        assert dom.find(path).attrib.items() >= local.find(path).attrib.items(), path
    assert doc["devices"]["name"] == "landed"
    checked = p2vimage.check(vol.path(), xml=str(dumped))
    assert checked.ready, checked.summary_lines()
    # The same name again: exit 2, the landed guest untouched.
    again = run_cli("convert", str(source(images)), "--to", f"libvirt:{daemon.uri}",
                    "--pool", POOL, "--name", "landed")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert conn.lookupByName("landed").XMLDesc(0)
    assert volumes(conn) == ["landed.qcow2"]


@pytest.mark.slow
def test_dry_run_to_libvirt_checks_the_host_and_creates_nothing(
        daemon: libvirtd.Daemon, conn: libvirt.virConnect, images: dict[str, Path]) -> None:
    before = (volumes(conn), domains(conn))
    report = p2vimage.convert(source(images), LibvirtTarget(uri=daemon.uri, pool=POOL,
                                                            name="dry", domain_type="qemu"),
                              dry_run=True)
    t = report.target
    assert t.kind == "libvirt" and t.created == [] and not t.started
    assert report.outputs == [] and report.xml is None and report.report is None
    dom = etree.fromstring(t.documents["dry.xml"].encode())
    assert dom.findtext("name") == "dry" and dom.get("type") == "qemu"
    assert dom.find("cpu").get("mode") is None  # no host CPU model under TCG
    assert (volumes(conn), domains(conn)) == before


# -- a remote host: qemu+ssh -----------------------------------------------------------------
#
# The "remote" host is the module's daemon reached through a loopback sshd (the network
# sources' tests/sources/netservers.py): ssh runs ``nc -U SOCKET`` there (proxy=netcat,
# Debian's netcat-openbsd) to the daemon's own socket (socket=; virt-ssh-helper, the
# other proxy, only knows the default sockets).  libvirt 9.0's plain ssh transport has
# no known_hosts= (only its libssh/libssh2 transports do) and relaxes host-key checking
# only when the URI says no_verify=1: ssh checks the host key against the user's
# known_hosts.  The tests, which must not touch ~/.ssh, name their own ssh (command=)
# reading a known_hosts made at test time.

REMOTE_POOL = "remote"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    try:
        yield server
    finally:
        server.stop()


def ssh_uri(daemon: libvirtd.Daemon, sshd: Sshd, known_hosts: Path | None = None, *,
            port: int | None = None) -> str:
    """``qemu+ssh://root@127.0.0.1:PORT/system?...`` to the module's daemon, the host key
    checked against ``known_hosts`` (default: the one naming the sshd's key)."""
    known_hosts = known_hosts or sshd.known_hosts
    ssh = sshd.dir / f"ssh-{known_hosts.name}"
    ssh.write_text("#!/bin/sh\nexec ssh -o GlobalKnownHostsFile=/dev/null "
                   f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes "
                   '"$@"\n')
    ssh.chmod(0o755)
    return (f"qemu+ssh://root@127.0.0.1:{port or sshd.port}/system"
            f"?socket={daemon.root}/sock/libvirt-sock&proxy=netcat"
            f"&keyfile={sshd.client_key}&command={ssh}")


def test_qemu_ssh_reaches_the_daemon_only_with_its_host_key(
        daemon: libvirtd.Daemon, sshd: Sshd) -> None:
    with LibvirtHost(ssh_uri(daemon, sshd)) as host:
        assert not host.is_local
        assert host.pool(POOL).name() == POOL
    for known_hosts in (sshd.wrong_known_hosts, sshd.empty_known_hosts):
        with pytest.raises(UsageError) as e:  # not temporary: a fleet must not retry it
            LibvirtHost(ssh_uri(daemon, sshd, known_hosts))
        assert "Host key verification failed" in str(e.value), known_hosts.name
        assert e.value.exit_code == 2
        assert "\n" not in str(e.value)


def test_unreachable_ssh_host_is_exit_5_in_one_line_at_once(
        daemon: libvirtd.Daemon, sshd: Sshd, tmp_path: Path) -> None:
    img = tmp_path / "src.img"
    img.write_bytes(b"\0" * 1024 * 1024)
    uri = ssh_uri(daemon, sshd, port=free_port())  # nothing listens there
    started = time.monotonic()
    r = run_cli("convert", str(img), "-o", str(tmp_path / "g.qcow2"), "--to",
                f"libvirt:{uri}", "--json")
    took = time.monotonic() - started
    assert r.returncode == 5, r.stderr
    assert r.stderr.count("\n") == 1 and f"cannot connect to libvirt at {uri}" in r.stderr
    assert "Connection refused" in r.stderr
    assert json.loads(r.stdout)["error"]["type"] == "TargetUnreachableError"
    assert took < 15, took
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.img"]


def test_a_password_in_the_uri_is_refused_and_never_shown(tmp_path: Path) -> None:
    img = tmp_path / "src.img"
    img.write_bytes(b"\0" * 1024)
    r = run_cli("convert", str(img), "--to",
                "libvirt:qemu+ssh://root:hunter2@kvm1.example/system?keyfile=/k", "--json")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "passwords in libvirt URIs" in r.stderr
    assert "qemu+ssh://root:…@kvm1.example/system?keyfile=/k" in r.stderr
    assert "hunter2" not in r.stdout + r.stderr
    assert redact("qemu+ssh://u:p:w@h:22/system") == "qemu+ssh://u:…@h:22/system"
    for plain in ("qemu:///system", "qemu+ssh://root@h/system?keyfile=/a:b@c",
                  "qemu+ssh://h/system"):
        assert redact(plain) == plain


def test_a_remote_host_has_a_file_only_in_a_pool(
        daemon: libvirtd.Daemon, sshd: Sshd, conn: libvirt.virConnect, tmp_path: Path) -> None:
    """Over qemu+ssh the ISO is looked for in the host's pools (the API sees no other
    file there), also one copied in after the pool was last refreshed."""
    isos = tmp_path / "isos"
    pool = libvirtd.dir_pool(conn, "isos", isos)
    try:
        iso = isos / "virtio-win.iso"
        iso.write_bytes(b"\0" * 2048)  # after the pool's start: libvirt does not know it yet
        elsewhere = tmp_path / "elsewhere.iso"
        elsewhere.write_bytes(b"\0" * 2048)
        with LibvirtHost(ssh_uri(daemon, sshd)) as host:
            assert host.has_file(str(iso))
            assert not host.has_file(str(elsewhere))  # on that filesystem, in no pool
    finally:
        pool.destroy()
        pool.undefine()


@pytest.mark.slow
def test_convert_to_libvirt_over_ssh_lands_the_guest(
        daemon: libvirtd.Daemon, sshd: Sshd, conn: libvirt.virConnect, tmp_path: Path,
        images: dict[str, Path], landed_locally: Landing) -> None:
    """The demo image ``--to libvirt:qemu+ssh://...``: the volume in the remote pool holds
    the conversion's output and reads back as the local landing's guest; the domain
    libvirt defined there is on it."""
    pool = libvirtd.dir_pool(conn, REMOTE_POOL, tmp_path / "remote-pool")
    uri = ssh_uri(daemon, sshd)
    try:
        out = tmp_path / "viassh.qcow2"
        r = run_cli("convert", str(source(images)), "-o", str(out), "--to", f"libvirt:{uri}",
                    "--pool", REMOTE_POOL, "--name", "viassh", "--domain-type", "qemu",
                    "--json")
        assert r.returncode == 0, r.stderr
        target = json.loads(r.stdout)["target"]
        with LibvirtHost(uri) as remote:  # read back over the same transport
            vol = remote.pool(REMOTE_POOL).storageVolLookupByName("viassh.qcow2")
            path = vol.path()
            assert vol.info()[1] == 1 << 30  # the guest's 1 GiB disk
        assert target["kind"] == "libvirt" and target["domain_type"] == "qemu"
        assert redact(uri) == uri and target["where"] == f"{uri} pool {REMOTE_POOL}"
        assert target["created"][-2:] == [f"volume {REMOTE_POOL}/viassh.qcow2 {path}",
                                          "domain viassh"]
        assert volumes(conn, REMOTE_POOL) == ["viassh.qcow2"]
        same_disk(out, path)  # the upload over ssh is exact
        # ... and the guest is the one the local landing converted (two conversions
        # differ in NTFS metadata, not in what the guest reads).
        ours, reference = read_back([Path(path), landed_locally.out], tmp_path)
        assert ours == reference

        def virsh(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(["virsh", "-c", uri, *args], capture_output=True,
                                  text=True, check=True, timeout=120)

        _, dom = dumped_domain(virsh, "viassh", tmp_path)
        assert dom.get("type") == "qemu"
        assert dom.find("devices/disk/source").get("file") == path
        assert etree.fromstring(target["documents"]["viassh.xml"].encode()).find(
            "devices/disk/source").get("file") == path
    finally:
        if "viassh" in domains(conn):
            conn.lookupByName("viassh").undefine()
        for name in volumes(conn, REMOTE_POOL):
            pool.storageVolLookupByName(name).delete(0)
        pool.destroy()
        pool.undefine()
