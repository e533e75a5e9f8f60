"""An nbdkit Python plugin: a disk read over one ssh channel with ``dd``, any size.

Loaded by ``nbdkit python`` (Debian ``nbdkit-plugin-python``), never imported by
p2vimage.  ``nbdkit ssh`` (SFTP) takes the export size from ``stat``, which is 0 for
a block device such as ``/dev/sda`` and cannot be overridden (nbdkit 1.32 has no
``size=`` and no filter that enlarges an export while passing reads through), so ssh
sources are read this way instead, files and block devices alike:

- ``open`` starts the OpenSSH client (``arg=`` parameters, in order, are its argv; the
  last one is the remote command, a ``sh`` loop that answers each ``OFFSET COUNT``
  line with exactly COUNT bytes from ``dd`` followed by ``K``, or ends the channel on
  a read error);
- ``pread`` sends one line and reads the answer from the one channel of the
  connection (no per-request ssh or channel set-up);
- any failure (EOF, a missing ``K``, no byte for ``timeout=`` seconds) raises EIO
  and kills the channel: nbdkit's retry filter then reopens the plugin, which starts
  a fresh ssh.

Read-only by construction: there is no ``pwrite``/``trim``/``zero``, and the remote
command only ever runs ``dd if=``.  The size comes from ``size=`` (asked with
``blockdev --getsize64`` or ``stat`` over ssh before nbdkit starts).
"""

import errno
import os
import select
import signal
import subprocess

import nbdkit  # type: ignore[import-not-found]  # provided by nbdkit's python plugin

API_VERSION = 2

_args: list[str] = []
_size = -1
_timeout = 120.0


def config(key: str, value: str) -> None:
    global _size, _timeout
    if key == "arg":
        _args.append(value)
    elif key == "size":
        _size = int(value)
    elif key == "timeout":
        _timeout = float(value)
    else:
        raise RuntimeError(f"unknown parameter {key}")


def config_complete() -> None:
    if not _args or _size < 0:
        raise RuntimeError("arg= (the ssh command) and size= are required")


def thread_model() -> int:
    return nbdkit.THREAD_MODEL_SERIALIZE_REQUESTS  # one channel per connection


def _pdeathsig() -> None:
    import ctypes

    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


def open(readonly: bool) -> dict:  # noqa: A001 - the name nbdkit calls
    proc = subprocess.Popen(_args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=None, bufsize=0, start_new_session=True,
                            preexec_fn=_pdeathsig)
    return {"proc": proc, "broken": False}


def get_size(h: dict) -> int:
    return _size


def can_write(h: dict) -> bool:
    return False


def can_multi_conn(h: dict) -> bool:
    return True  # read-only: every connection sees the same bytes


def _fail(h: dict, why: str) -> None:
    h["broken"] = True
    _stop(h["proc"])
    nbdkit.set_error(errno.EIO)
    raise RuntimeError(why)


def _read_exactly(h: dict, view: memoryview) -> None:
    fd = h["proc"].stdout.fileno()
    got = 0
    while got < len(view):
        ready, _, _ = select.select([fd], [], [], _timeout)
        if not ready:
            _fail(h, f"no data from the source for {_timeout:.0f} s")
        n = os.readv(fd, [view[got:]])
        if n == 0:
            code = h["proc"].poll()
            _fail(h, "the ssh channel closed" + (f" (exit {code})" if code is not None else ""))
        got += n


def pread(h: dict, buf: bytearray, offset: int, flags: int) -> None:
    if h["broken"]:
        _fail(h, "the ssh channel failed earlier")
    try:
        h["proc"].stdin.write(f"{offset} {len(buf)}\n".encode())
    except OSError as exc:
        _fail(h, f"writing to ssh: {exc}")
    _read_exactly(h, memoryview(buf))
    trailer = bytearray(1)
    _read_exactly(h, memoryview(trailer))
    if trailer != b"K":
        _fail(h, "the source answered out of step (a short read)")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def close(h: dict) -> None:
    _stop(h["proc"])
