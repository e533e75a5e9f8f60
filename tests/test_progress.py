"""progress: Meter throttles byte counts; Steps reports phases; Progress derives rates."""

from __future__ import annotations

from p2vimage.progress import Meter, Progress, Steps


def test_meter_reports_first_then_throttles_then_finishes() -> None:
    got: list[Progress] = []
    m = Meter(got.append, "copy disk 1/1", 100, interval=3600)
    m.add(10)
    m.add(20)  # within the interval: not reported
    m.finish()
    assert [(p.done, p.total) for p in got] == [(10, 100), (30, 100)]
    assert all(p.unit == "bytes" and p.phase == "copy disk 1/1" for p in got)


def test_meter_total_grows_to_what_was_done() -> None:
    got: list[Progress] = []
    m = Meter(got.append, "restore sda", 5)
    m.add(8)
    m.finish()
    assert got[-1].done == got[-1].total == 8


def test_steps_count_phases() -> None:
    got: list[Progress] = []
    s = Steps(got.append, "check", ("launch", "inspect", "checks"))
    s.next()
    s.next()
    s.next()
    s.finish()
    assert [(p.phase, p.done, p.total) for p in got] == [
        ("check: launch", 0, 3), ("check: inspect", 1, 3), ("check: checks", 2, 3),
        ("check: done", 3, 3)]
    assert all(p.unit == "steps" for p in got)


def test_rate_eta_fraction() -> None:
    p = Progress("x", 50, 200, seconds=2.0)
    assert (p.fraction, p.rate, p.eta) == (0.25, 25.0, 6.0)
    assert Progress("x", 0, 0).fraction == 1.0 and Progress("x", 0, 9).eta is None
