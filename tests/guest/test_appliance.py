"""The KVM -> TCG launch decision, as a unit (the handle is the unit's collaborator).

The end-to-end counterpart, with a real appliance on this host, is in
tests/e2e/test_appliance.py.
"""

from __future__ import annotations

import logging

import pytest

from p2vimage import ApplianceError
from p2vimage.guest.appliance import LaunchStats, launch_with_fallback

MSR_ABORT = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"


class Handle:
    """Records how it was configured; fails its launch when told to."""

    def __init__(self, settings: list[str] | None, fail: bool) -> None:
        self.settings = settings
        self.fail = fail
        self.closed = False
        self.verbose = True
        self._p2v_launch_errors = [MSR_ABORT] if fail else []

    def launch(self) -> None:
        if self.fail:
            raise RuntimeError("guestfs_launch failed.\nThis usually means ...")

    def set_verbose(self, v: bool) -> None:
        self.verbose = v

    def close(self) -> None:
        self.closed = True


def factory(failures: list[bool], made: list[Handle]):
    def new_handle(extra: list[str] | None) -> Handle:
        h = Handle(extra, failures[len(made)])
        made.append(h)
        return h

    return new_handle


def test_first_launch_succeeds() -> None:
    made: list[Handle] = []
    stats = LaunchStats()
    g = launch_with_fallback(factory([False], made), stats, env_settings="")
    assert g is made[0] and made[0].settings is None
    assert (stats.launch_attempts, stats.appliance_launches) == (1, 1)
    assert stats.fallback_reason is None
    assert g.verbose is False


def test_kvm_failure_retries_with_tcg(caplog: pytest.LogCaptureFixture) -> None:
    made: list[Handle] = []
    stats = LaunchStats()
    with caplog.at_level(logging.WARNING, logger="p2vimage"):
        g = launch_with_fallback(factory([True, False], made), stats, env_settings="")
    assert g is made[1]
    assert made[0].closed and not made[1].closed
    assert made[1].settings == ["force_tcg"]
    assert (stats.launch_attempts, stats.appliance_launches) == (2, 1)
    assert stats.accelerator == "tcg"
    assert stats.fallback_reason == MSR_ABORT
    assert any("retrying once with TCG" in r.message and MSR_ABORT in r.message
               for r in caplog.records)


def test_no_retry_when_user_forced_tcg() -> None:
    made: list[Handle] = []
    stats = LaunchStats()
    with pytest.raises(ApplianceError, match="failed to start"):
        launch_with_fallback(factory([True], made), stats, env_settings="force_tcg")
    assert len(made) == 1 and made[0].closed
    assert (stats.launch_attempts, stats.appliance_launches) == (1, 0)


def test_both_launches_fail() -> None:
    made: list[Handle] = []
    stats = LaunchStats()
    with pytest.raises(ApplianceError, match="with KVM .* and with TCG"):
        launch_with_fallback(factory([True, True], made), stats, env_settings="")
    assert all(h.closed for h in made)
    assert (stats.launch_attempts, stats.appliance_launches) == (2, 0)


_INTERRUPTING = """
import gc
import guestfs
from p2vimage.guest.appliance import _close_quietly, new_guestfs

real = guestfs.libguestfsmod


class InterruptedAsItReturns:
    \"\"\"The binding's C module, but {call} is followed by a KeyboardInterrupt (what
    Python does with a signal that arrived during the C call).\"\"\"

    def __getattr__(self, name):
        return getattr(real, name)

    def {call}(self, *args):
        getattr(real, "{call}")(*args)
        raise KeyboardInterrupt("SIGINT")


"""


def _child(call: str, body: str):
    """Run ``body`` in a child Python with the C ``call`` interrupted as it returns (a
    regression may abort the child: never the test run)."""
    import subprocess
    import sys
    import textwrap

    code = _INTERRUPTING.format(call=call) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)


def test_an_interrupt_as_close_returns_never_frees_the_handle_twice() -> None:
    """A real libguestfs handle whose C close is followed at once by a KeyboardInterrupt
    (what a Ctrl-C during a close does: Python runs the handler as the C call returns).
    The object must already be marked closed, or its ``__del__`` frees the C handle a
    second time and the process aborts (CI saw SIGABRT there)."""
    r = _child("close", '''
        g = guestfs.GuestFS(python_return_dict=True)
        guestfs.libguestfsmod = InterruptedAsItReturns()
        try:
            _close_quietly(g)
        except KeyboardInterrupt:
            print("interrupted")
        print("marked-closed" if g._o is None else "still-open")
        del g
        gc.collect()
        print("survived")
    ''')
    assert (r.returncode, r.stdout.split()) == (0, ["interrupted", "marked-closed",
                                                    "survived"]), r.stderr[-2000:]


def test_an_interrupt_as_the_handle_is_made_prints_nothing() -> None:
    """A KeyboardInterrupt as the C create returns (a Ctrl-C just as the launch phase
    begins): the half-made object must not print an AttributeError from ``__del__``."""
    r = _child("create", '''
        guestfs.libguestfsmod = InterruptedAsItReturns()
        try:
            new_guestfs(guestfs)
        except KeyboardInterrupt:
            print("interrupted")
        gc.collect()
        guestfs.libguestfsmod = real
        g = new_guestfs(guestfs)  # and an uninterrupted one is an ordinary handle
        print(g.get_backend() != "", g._o is not None)
        g.close()
    ''')
    assert (r.returncode, r.stdout.split(), r.stderr) == (0, ["interrupted", "True",
                                                              "True"], "")
