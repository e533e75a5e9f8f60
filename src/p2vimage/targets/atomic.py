"""Outputs that appear whole or not at all, and that one job at a time may write.

Everything is written to ``NAME.partial`` beside the destination and renamed
only when the whole job succeeded; on any error, Ctrl-C or SIGTERM the
partial files are removed.  After SIGKILL at most a ``.partial`` remains,
never a file at the final path.

Two jobs (threads of one process, or processes) naming the same output must
not write the same ``.partial``: the second would truncate or delete the
first's file.  So a job *claims* each ``.partial`` when it is created — before
any appliance starts — by opening it and taking an exclusive ``flock`` on it,
held until commit or discard.  A second claim fails at once with
:class:`OutputBusyError` and touches nothing; the first finishes intact.  A
``.partial`` left by a killed job carries no lock (the kernel drops it with
the process), so it is taken over and truncated, as before.  Every writer of
a ``.partial`` (our sparse writer, ``qemu-img convert``, ``write_bytes``) opens
it in place, so the locked inode is the one that is renamed at commit.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import OutputBusyError, UsageError


def partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def _claim(dest: Path) -> int:
    """Create/open ``dest.partial`` locked and empty; the fd holds the lock."""
    p = partial_path(dest)
    while True:
        try:
            fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise UsageError(f"{dest}: cannot create {p}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusyError(
                f"{dest} is being written by another conversion right now ({p.name} is "
                "locked); wait for it to finish or choose another output"
            ) from None
        # Its previous owner may have renamed or removed the file between our open and
        # our lock: then we hold a lock on an orphan and must start again.
        try:
            st = os.stat(p, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        mine = os.fstat(fd)
        if st is not None and (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            os.ftruncate(fd, 0)  # a stale .partial from a killed run
            return fd
        os.close(fd)


class AtomicOutputs:
    """A set of destinations committed together, claimed by this job from creation on.

    Use as a context manager around the whole job: on leaving it without
    :meth:`commit` (an error, an interrupt, a dry run) the claimed ``.partial``
    files are removed and the locks released.
    """

    def __init__(self, destinations: list[Path], *, overwrite: bool) -> None:
        self.destinations = [Path(d) for d in destinations]
        for d in self.destinations:
            if not d.parent.is_dir():
                raise UsageError(f"{d}: the directory {d.parent} does not exist")
            if not os.access(d.parent, os.W_OK):
                raise UsageError(f"{d}: the directory {d.parent} is not writable")
            if d.is_dir():
                raise UsageError(f"{d} is a directory")
        self.committed = False
        self._fds: dict[Path, int] = {}
        try:
            for d in self.destinations:
                self._fds[d] = _claim(d)
            # Checked after the claim: a job that committed ``d`` just before is seen here.
            for d in self.destinations:
                if (d.exists() or d.is_symlink()) and not overwrite:
                    raise UsageError(f"{d} already exists (use --overwrite to replace it)")
        except BaseException:
            self.discard()
            raise

    def partial(self, dest: Path) -> Path:
        return partial_path(Path(dest))

    def commit(self) -> None:
        for d in self.destinations:
            p = self.partial(d)
            if d in self._fds and p.exists():
                os.replace(p, d)
        self.committed = True
        self._release()

    def discard(self) -> None:
        """Remove our ``.partial`` files (only those we hold the lock of) and unlock."""
        for d in self._fds:
            try:
                self.partial(d).unlink()
            except FileNotFoundError:
                pass
        self._release()

    def _release(self) -> None:
        for fd in self._fds.values():
            os.close(fd)  # drops the flock
        self._fds.clear()

    def __enter__(self) -> AtomicOutputs:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self.committed:
            self.discard()

    def __del__(self) -> None:
        # A caller that forgot the context manager still releases its locks.
        if getattr(self, "_fds", None):
            self.discard()
