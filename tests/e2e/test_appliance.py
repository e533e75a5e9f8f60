"""The appliance on this host: launch accounting and the KVM -> TCG fallback for real."""

from __future__ import annotations

import logging
import os

import pytest

from fixtures.images import DEMO
from p2vimage.guest.appliance import Job
from p2vimage.sources.image import open_source


def test_real_launch_accounting(images, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """With no backend settings, the library decides; exactly one appliance runs."""
    monkeypatch.delenv("LIBGUESTFS_BACKEND_SETTINGS", raising=False)
    kvm_usable = os.path.exists("/dev/kvm")
    with caplog.at_level(logging.WARNING, logger="p2vimage"), Job(
        [open_source(images[DEMO])]
    ) as job:
        job.launch()
        assert job.g.inspect_os() == ["/dev/sda1"]
        stats = job.stats
    assert stats.appliance_launches == 1
    fell_back = stats.launch_attempts == 2
    assert fell_back == any("retrying once with TCG" in r.message for r in caplog.records)
    if fell_back:
        assert stats.accelerator == "tcg" and stats.fallback_reason
    if not kvm_usable:
        # libguestfs itself uses TCG when there is no /dev/kvm: no failed first try.
        assert not fell_back


def test_user_backend_settings_honoured(images, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
    with Job([open_source(images[DEMO])]) as job:
        job.launch()
        assert "force_tcg" in job.g.get_backend_settings()
        assert (job.stats.launch_attempts, job.stats.appliance_launches) == (1, 1)
        assert job.stats.accelerator == "tcg"


def test_writable_job_uses_overlay(images) -> None:
    """A writable job writes into its overlay; the source file is untouched."""
    from tests.conftest import sha256

    src = images[DEMO]
    before = sha256(src)
    with Job([open_source(src)], writable=True) as job:
        system = job.hive("SYSTEM")
        node = system.ensure_key("ControlSet001\\Services\\p2vtest")
        system.set_value(node, "Start", 4, 3)
        job.commit_hives()
        overlay = job.overlays[0]
        assert overlay.exists() and overlay.stat().st_size > 0
        job.g.umount_all()
        job.g.mount_ro("/dev/sda1", "/")
        assert job.g.exists(job.hive("SYSTEM").guest_path)
    assert sha256(src) == before
