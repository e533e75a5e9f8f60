"""Connecting to an NBD server we just started: its socket file exists a moment before
it listens, and such a refused connection must be tried again (CI found the retry
never happened: libnbd's ``Error.errno`` is the errno's name, not its number)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from p2vimage.blockio.blockdev import reason
from p2vimage.blockio.nbd import connect_started, errno_of, libnbd, listening


def test_errno_of_a_refused_connection_is_the_number(tmp_path: Path) -> None:
    nbd = libnbd()
    sock = tmp_path / "bound.sock"
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(sock))  # bound, not listening: what connect sees before listen()
        with pytest.raises(nbd.Error) as e:
            nbd.NBD().connect_unix(str(sock))
    assert errno_of(e.value) == errno.ECONNREFUSED
    assert reason(e.value) == os.strerror(errno.ECONNREFUSED)
    assert errno_of(ValueError("no errno here")) is None


def test_a_refused_connection_to_a_starting_server_is_tried_again(tmp_path: Path) -> None:
    """A real nbdkit serves on ``real.sock``; the path we connect to refuses (bound, not
    listening) until, 0.3 s later, the server's socket is renamed onto it."""
    nbd = libnbd()
    real, path = tmp_path / "real.sock", tmp_path / "nbd.sock"
    proc = subprocess.Popen(["nbdkit", "-f", "-r", "-U", str(real), "memory", "1M"],
                            stdin=subprocess.DEVNULL)
    early = socket.socket(socket.AF_UNIX)
    try:
        while not real.exists():
            assert proc.poll() is None and time.sleep(0.01) is None
        early.bind(str(path))

        def listen_late() -> None:
            time.sleep(0.3)
            early.close()
            os.replace(real, path)

        t = threading.Thread(target=listen_late)
        t.start()
        start = time.monotonic()
        h = connect_started(nbd, path, proc, "test",
                            retry=lambda exc: errno_of(exc) == errno.ECONNREFUSED)
        t.join()
        assert time.monotonic() - start >= 0.25  # it waited through the refusals
        assert h.get_size() == 1 << 20
        h.shutdown()
    finally:
        early.close()
        proc.terminate()
        proc.wait(10)


def test_how_a_server_ended_is_said_in_words() -> None:
    from p2vimage.sources.network import _ended

    assert _ended(-9) == "killed by SIGKILL"
    assert _ended(1) == "exited with status 1"
    assert _ended(-200) == "killed by signal 200"


def test_a_socket_is_listening_only_after_listen(tmp_path: Path) -> None:
    """What the servers' start waits for: bound is not enough, listen() is."""
    sock = tmp_path / "s.sock"
    assert not listening(sock)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
        assert sock.exists() and not listening(sock)
        s.listen()
        assert listening(sock)
        assert not listening(tmp_path / "other.sock")
    proc = subprocess.Popen(["nbdkit", "-f", "-r", "-U", str(tmp_path / "n.sock"), "memory",
                             "1M"], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not listening(tmp_path / "n.sock"):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        h = libnbd().NBD()
        h.connect_unix(str(tmp_path / "n.sock"))  # no retry needed once it listens
        assert h.get_size() == 1 << 20
        h.shutdown()
    finally:
        proc.terminate()
        proc.wait(10)
