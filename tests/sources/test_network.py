"""Network sources (issue 20), against real servers the tests start: an ``sshd`` on a
loopback port with its own host key and a key made here, ``qemu-nbd -r``, and a threaded
HTTP server that honours ``Range``.  No appliance: every case here ends before one would
start (``SourceSet`` is what ``convert`` opens first)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import p2vimage
from p2vimage.errors import ConversionError, SourceUnreachableError
from p2vimage.sources import network
from p2vimage.sources.prepare import SourceSet
from p2vimage.sources.uri import parse, redact
from tests.sources.netservers import RangeHTTPServer, Sshd, nbdkit_processes, qemu_nbd

MiB = 1 << 20


def _mbr_image(path: Path, size: int = 8 * MiB) -> Path:
    """A raw disk with an MBR and one partition, random bytes in it (every byte counts)."""
    data = bytearray(os.urandom(size))
    data[446:510] = bytes(64)
    data[446:462] = bytes([0, 0, 0, 0, 0x07, 0, 0, 0]) + (2048).to_bytes(4, "little") + \
        (size // 512 - 2048).to_bytes(4, "little")
    data[510:512] = b"\x55\xaa"
    path.write_bytes(bytes(data))
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_back(source: p2vimage.sources.image.SourceImage, dest: Path) -> bytes:
    """The source's bytes as qemu reads them through its local handle (the NBD backing)."""
    subprocess.run(["qemu-img", "convert", "-f", source.format, "-O", "raw", str(source.path),
                    str(dest)], check=True, capture_output=True)
    return dest.read_bytes()


@pytest.fixture(autouse=True)
def _no_stray_nbdkit() -> Iterator[None]:
    yield
    assert nbdkit_processes(os.getpid()) == [], "an nbdkit was left running"


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch) -> None:
    monkeypatch.setattr(network, "RETRIES", 3)
    monkeypatch.setattr(network, "RETRY_DELAY", 1)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> Iterator[Sshd]:
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    return _mbr_image(tmp_path_factory.mktemp("served") / "disk.img")


@pytest.fixture(scope="module")
def http(served: Path) -> Iterator[RangeHTTPServer]:
    server = RangeHTTPServer(served.parent).start()
    yield server
    server.stop()


# -- URIs ---------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "fields"), [
    ("ssh://root@srv:2222/dev/sda", dict(scheme="ssh", user="root", host="srv", port=2222,
                                         path="/dev/sda")),
    ("ssh://srv/srv/images/a%20b.img", dict(user=None, port=None, path="/srv/images/a b.img")),
    ("nbd://10.0.0.5/disk", dict(scheme="nbd", host="10.0.0.5", port=None, path="disk")),
    ("nbd://10.0.0.5:10810", dict(port=10810, path="")),
    ("nbd+unix:///exp?socket=/run/q.sock", dict(socket="/run/q.sock", path="exp")),
    ("https://h.example/a.qcow2?X-Amz-Signature=abcdef0123456789",
     dict(scheme="https", host="h.example", display="https://h.example/a.qcow2?…")),
])
def test_parse(uri: str, fields: dict) -> None:
    spec = parse(uri)
    for k, v in fields.items():
        assert getattr(spec, k) == v, k


@pytest.mark.parametrize(("uri", "cls", "fragment"), [
    ("ftp://h/a.img", p2vimage.UnsupportedFormatError, "unsupported source URI scheme 'ftp'"),
    ("ssh://h", p2vimage.UnsupportedFormatError, "no path"),
    ("ssh:///dev/sda", p2vimage.UnsupportedFormatError, "no host"),
    ("ssh://h:99999/dev/sda", p2vimage.UnsupportedFormatError, "malformed"),
    ("ssh://root:hunter2@h/dev/sda", p2vimage.UsageError, "passwords in ssh:// URIs"),
    ("nbd+unix:///e", p2vimage.UnsupportedFormatError, "socket"),
    ("nbd+unix://h/e?socket=/s", p2vimage.UnsupportedFormatError, "takes no host"),
    ("nbd://u@h/e", p2vimage.UnsupportedFormatError, "no user"),
])
def test_bad_uris_are_one_line_errors(uri: str, cls: type, fragment: str) -> None:
    with pytest.raises(cls) as e:
        SourceSet([uri], None)
    assert fragment in str(e.value) and "\n" not in str(e.value)
    assert "hunter2" not in str(e.value)


def test_redact_hides_passwords_and_presigned_queries() -> None:
    assert redact("https://u:pw@h/a.img?sig=SECRET") == "https://u:…@h/a.img?…"
    assert redact("nbd+unix:///e?socket=/s") == "nbd+unix:///e?socket=/s"
    spec = parse("https://u:pw-secret@h/a.img?sig=SECRETSECRET")
    assert "pw-secret" not in spec.scrub(f"failed {spec.url} with pw-secret")
    assert "SECRETSECRET" not in spec.scrub(f"failed {spec.url}")


def test_open_source_refuses_a_uri_with_a_pointer() -> None:
    from p2vimage.sources.image import open_source

    with pytest.raises(p2vimage.UsageError, match="SourceSet"):
        open_source("ssh://h/dev/sda")


# -- ssh ------------------------------------------------------------------------------


def test_ssh_file_reads_exactly_and_read_only(sshd: Sshd, served: Path, tmp_path: Path) -> None:
    before, mtime = _digest(served), served.stat().st_mtime_ns
    with SourceSet([sshd.uri(served)], None, **sshd.keywords) as ss:
        src, ns = ss.sources[0], ss.network[0]
        assert (src.virtual_size, ns.remote_kind) == (served.stat().st_size, "file")
        assert src.origin == sshd.uri(served)
        assert "-r" in ns.command and "--filter=retry" in ns.command
        assert _read_back(src, tmp_path / "back.raw") == served.read_bytes()
        # A write request is refused by nbdkit itself, before any plugin sees it.
        import nbd

        for sock in (ns.socket, ns.cache_socket):  # the copy's, and the appliance's cache
            h = nbd.NBD()
            h.connect_unix(str(sock))
            assert h.is_read_only()
            with pytest.raises(nbd.Error, match="write"):
                h.pwrite(b"x" * 512, 0)
            h.shutdown()
        assert ss.network_bytes_read()[0] >= served.stat().st_size
        # The host copy reads the direct export, the appliance the cached one.
        assert src.copy_path is not None and src.copy_path != src.path
    assert (_digest(served), served.stat().st_mtime_ns) == (before, mtime)
    assert ss.network_bytes_read()[0] >= served.stat().st_size  # kept after close


def test_ssh_block_device_has_its_real_size(sshd: Sshd, served: Path, tmp_path: Path) -> None:
    """SFTP stat says 0 for a block device; the size must come from the source."""
    dev = subprocess.run(["losetup", "--find", "--show", "-r", str(served)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        with SourceSet([sshd.uri(dev)], None, **sshd.keywords) as ss:
            src = ss.sources[0]
            assert ss.network[0].remote_kind == "block"
            assert src.virtual_size == served.stat().st_size
            assert _read_back(src, tmp_path / "back.raw") == served.read_bytes()
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@pytest.mark.parametrize(("case", "cls", "fragment"), [
    ("wrong key", p2vimage.SourceUnreadableError, "refused our ssh keys"),
    ("host key changed", p2vimage.SourceUnreadableError, "does NOT match"),
    ("host key unknown", p2vimage.SourceUnreadableError, "not in known_hosts"),
    ("no such path", p2vimage.SourceNotFoundError, "no such file or device"),
    ("a directory", p2vimage.UnsupportedFormatError, "not a disk"),
    ("not a disk image", p2vimage.UnsupportedFormatError, "gzip"),
])
def test_ssh_bad_input_is_exit_3_in_one_line(sshd: Sshd, served: Path, tmp_path: Path,
                                             case: str, cls: type, fragment: str) -> None:
    path, kw = served, dict(sshd.keywords)
    if case == "wrong key":
        kw["ssh_identity"] = sshd.other_key
    elif case == "host key changed":
        kw["ssh_known_hosts"] = sshd.wrong_known_hosts
    elif case == "host key unknown":
        kw["ssh_known_hosts"] = sshd.empty_known_hosts
    elif case == "no such path":
        path = tmp_path / "missing.img"
    elif case == "a directory":
        path = tmp_path
    else:
        path = tmp_path / "disk.img.gz"
        path.write_bytes(b"\x1f\x8b\x08" + bytes(4096))
    with pytest.raises(cls) as e:
        SourceSet([sshd.uri(path)], None, **kw)
    assert e.value.exit_code == 3
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_unreachable_host_is_exit_5(sshd: Sshd, tmp_path: Path) -> None:
    from tests.sources.netservers import free_port

    uri = f"ssh://root@127.0.0.1:{free_port()}/dev/sda"
    with pytest.raises(SourceUnreachableError) as e:
        SourceSet([uri], None, **sshd.keywords)
    assert e.value.exit_code == 5 and "\n" not in str(e.value)
    # And from the command line, before anything else: exit 5, one line on stderr.
    proc = subprocess.run([sys.executable, "-m", "p2vimage", "convert", uri, "-o",
                           str(tmp_path / "out.qcow2"), "--ssh-identity",
                           str(sshd.client_key), "--ssh-known-hosts", str(sshd.known_hosts)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 5, proc.stderr
    assert "cannot reach 127.0.0.1" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_ssh_session_killed_mid_read_is_retried(sshd: Sshd, served: Path) -> None:
    import nbd

    with SourceSet([sshd.uri(served)], None, **sshd.keywords) as ss:
        ns = ss.network[0]
        h = nbd.NBD()
        h.connect_unix(str(ns.socket))
        assert bytes(h.pread(MiB, 0)) == served.read_bytes()[:MiB]
        sessions = sshd.session_pids()
        assert sessions, "no ssh session to kill"
        killed = 0
        for pid in sessions:  # the connection drops: sshd's per-connection processes die
            with contextlib.suppress(ProcessLookupError):  # an earlier session just ended
                os.kill(pid, 9)
                killed += 1
        assert killed, "every ssh session had ended before it could be killed"
        assert bytes(h.pread(MiB, 4 * MiB)) == served.read_bytes()[4 * MiB:5 * MiB]
        h.shutdown()
        assert ns.failed_reads() >= 1 and not ns.failed_for_good()


# -- nbd ------------------------------------------------------------------------------


def test_nbd_unix_from_qemu_nbd(served: Path, tmp_path: Path) -> None:
    sock = tmp_path / "q.sock"
    with qemu_nbd(served, sock):
        with SourceSet([f"nbd+unix:///disk?socket={sock}"], None) as ss:
            assert ss.sources[0].virtual_size == served.stat().st_size
            assert _read_back(ss.sources[0], tmp_path / "back.raw") == served.read_bytes()
            assert "-r" in ss.network[0].command
        with pytest.raises(p2vimage.SourceNotFoundError, match="no export named 'nope'"):
            SourceSet([f"nbd+unix:///nope?socket={sock}"], None)
    with pytest.raises(p2vimage.SourceNotFoundError, match="no NBD server socket"):
        SourceSet([f"nbd+unix:///disk?socket={sock}"], None)


def test_no_room_for_the_appliance_cache_is_refused_before_any_appliance(
        served: Path, tmp_path: Path, monkeypatch) -> None:
    """The read cache lives under TMPDIR: a filesystem without room for it is a
    one-line InsufficientSpaceError (exit 5), not I/O errors in the appliance later."""
    import shutil

    free = shutil.disk_usage(tmp_path).free
    monkeypatch.setattr(network, "CACHE_MIN", free + (1 << 30))
    sock = tmp_path / "q.sock"
    with qemu_nbd(served, sock), pytest.raises(p2vimage.InsufficientSpaceError,
                                               match="read cache") as e:
        SourceSet([f"nbd+unix:///disk?socket={sock}"], None)
    assert e.value.exit_code == 5 and "\n" not in str(e.value)
    assert nbdkit_processes(os.getpid()) == []


# -- http ------------------------------------------------------------------------------


def test_http_raw_and_qcow2(http: RangeHTTPServer, served: Path, tmp_path: Path) -> None:
    qcow2 = served.parent / "disk.qcow2"
    if not qcow2.exists():
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(served),
                        str(qcow2)], check=True)
    with SourceSet([http.url("disk.img"), http.url("disk.qcow2")], None) as ss:
        raw, q = ss.sources
        assert (raw.virtual_size, q.virtual_size) == (served.stat().st_size,) * 2
        assert _read_back(raw, tmp_path / "a.raw") == served.read_bytes()
        assert _read_back(q, tmp_path / "b.raw") == served.read_bytes()
    assert {m for m, _, _ in http.requests} <= {"HEAD", "GET"}  # never a write


def test_http_errors_and_credentials(http: RangeHTTPServer, served: Path) -> None:
    with pytest.raises(p2vimage.SourceNotFoundError, match="not found"):
        SourceSet([http.url("missing.img")], None)
    secret = "pw-Zq81x"
    uri = http.url("missing.img").replace("http://", f"http://bob:{secret}@") + "?sig=S3CR3TS1G"
    with pytest.raises(p2vimage.SourceNotFoundError) as e:
        SourceSet([uri], None)
    assert secret not in str(e.value) and "S3CR3TS1G" not in str(e.value)
    ns = network.NetworkSource(uri.replace("missing", "disk"))
    try:
        ns.open()
        assert not any(secret in a for a in ns.command)  # from a 0600 file instead
    finally:
        ns.close()


def test_http_failed_reads_are_retried(http: RangeHTTPServer, served: Path) -> None:
    import nbd

    with SourceSet([http.url("disk.img")], None) as ss:
        ns = ss.network[0]
        h = nbd.NBD()
        h.connect_unix(str(ns.socket))
        http.fail_next = 3  # dropped connections (libcurl itself retries some once)
        assert bytes(h.pread(MiB, 2 * MiB)) == served.read_bytes()[2 * MiB:3 * MiB]
        h.shutdown()
        assert http.fail_next == 0
        assert ns.failed_reads() >= 1 and not ns.failed_for_good()


def test_source_gone_for_good_is_exit_5_with_bytes(http: RangeHTTPServer, served: Path) -> None:
    import nbd

    http.fail_always = False
    try:
        with pytest.raises(SourceUnreachableError) as e, \
                SourceSet([http.url("disk.img")], None) as ss:
            h = nbd.NBD()
            h.connect_unix(str(ss.network[0].socket))
            h.pread(MiB, 0)
            http.fail_always = True
            try:
                h.pread(MiB, MiB)
            except nbd.Error as exc:  # what a copy would turn into exit 4
                raise ConversionError(f"reading the source: {exc}") from None
    finally:
        http.fail_always = False
    assert e.value.exit_code == 5
    assert "stopped answering" in str(e.value) and "bytes read" in str(e.value)


def test_watchdog_calls_back_once_a_source_is_gone(http: RangeHTTPServer, served: Path,
                                                   monkeypatch) -> None:
    import threading

    import nbd

    monkeypatch.setattr(network, "RETRIES", 1)
    monkeypatch.setattr(network, "GONE_MARGIN", 0.5)
    called = threading.Event()
    try:
        with SourceSet([http.url("disk.img")], None) as ss, \
                ss.watch(lambda ns: called.set(), interval=0.1):
            ns = ss.network[0]
            h = nbd.NBD()
            h.connect_unix(str(ns.socket))
            h.pread(MiB, 0)
            time.sleep(2.5)  # working reads, then quiet: not gone
            assert not called.is_set() and not ns.gone()
            http.fail_always = True
            with pytest.raises(nbd.Error):
                h.pread(MiB, 4 * MiB)
            assert called.wait(10) and ns.gone()
            h.shutdown()
    finally:
        http.fail_always = False
