"""Per-thread heartbeats (odar.heartbeat): who counts as silent, and when a wait is progress."""

from __future__ import annotations

from odar.heartbeat import Heartbeats, ThreadPulse


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_thread_that_stops_beating_is_named_with_its_silence():
    now = FakeTime()
    beats = Heartbeats(now)
    sensor, windows = beats.register("odar-sensor"), beats.register("odar-windows")
    now.now += 2.0
    sensor.beat()
    windows.beat()
    assert beats.stale(1.0) == {}
    now.now += 0.5
    sensor.beat()
    now.now += 1.0
    assert beats.stale(1.0) == {"odar-windows": 1.5}


def test_a_correct_wait_counts_as_progress_for_as_long_as_it_lasts():
    now = FakeTime()
    beats = Heartbeats(now)
    trainer = beats.register("odar-trainer")
    with trainer.waiting():
        now.now += 3600.0
        assert beats.stale(1.0) == {}
    assert beats.stale(1.0) == {}  # leaving the wait is a beat
    now.now += 2.0
    assert beats.stale(1.0) == {"odar-trainer": 2.0}


def test_a_retired_thread_is_not_waited_for_and_an_unwatched_pulse_does_nothing():
    now = FakeTime()
    beats = Heartbeats(now)
    beats.register("odar-trainer")
    beats.retire("odar-trainer")
    now.now += 10.0
    assert beats.stale(1.0) == {}
    ThreadPulse(beats, "never-registered").beat()
    assert beats.stale(1.0) == {}
    alone = ThreadPulse()
    alone.beat()
    with alone.waiting():
        pass
