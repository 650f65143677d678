"""VirtualClock and ScaledClock: virtual time for tests, scaled real time for demos."""

from __future__ import annotations

import threading

import pytest

from odar.drivers.clock import Clock
from odar.drivers.emulated import clock as clock_module
from odar.drivers.emulated.clock import ScaledClock, VirtualClock
from odar.errors import EmulationError, OdarError


def use_as_clock(clock: Clock) -> float:
    clock.sleep(0.5)
    return clock.monotonic()


def test_virtual_clock_starts_where_asked_and_sleep_advances_at_once() -> None:
    clock = VirtualClock(start=10.0)
    assert clock.monotonic() == 10.0
    clock.sleep(2.5)
    assert clock.monotonic() == 12.5
    assert use_as_clock(clock) == 13.0


def test_virtual_clock_ignores_non_positive_sleep_like_system_clock() -> None:
    clock = VirtualClock()
    clock.sleep(0.0)
    clock.sleep(-3.0)
    assert clock.monotonic() == 0.0


def test_virtual_clock_advance_moves_forward_and_refuses_going_back() -> None:
    clock = VirtualClock()
    clock.advance(1.25)
    assert clock.monotonic() == 1.25
    with pytest.raises(EmulationError, match="seconds=-1"):
        clock.advance(-1.0)
    with pytest.raises(ValueError):
        clock.advance(float("nan"))
    assert issubclass(EmulationError, OdarError)
    assert clock.monotonic() == 1.25


def test_virtual_clock_loses_no_sleep_across_threads() -> None:
    clock = VirtualClock()
    threads_count, sleeps = 8, 2000

    def sleeper() -> None:
        for _ in range(sleeps):
            clock.sleep(1.0)

    threads = [threading.Thread(target=sleeper) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.monotonic() == threads_count * sleeps


class FakeRealTime:
    """Stands in for the time module so ScaledClock is tested without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_scaled_clock_runs_speed_times_faster_than_real_time(monkeypatch) -> None:
    fake = FakeRealTime()
    monkeypatch.setattr(clock_module, "time", fake)
    clock = ScaledClock(20.0, start=5.0)
    assert clock.monotonic() == 5.0
    fake.now += 0.5
    assert clock.monotonic() == pytest.approx(5.0 + 0.5 * 20.0)


def test_scaled_clock_sleep_really_sleeps_seconds_over_speed(monkeypatch) -> None:
    fake = FakeRealTime()
    monkeypatch.setattr(clock_module, "time", fake)
    clock = ScaledClock(50.0)
    before = clock.monotonic()
    clock.sleep(2.0)
    clock.sleep(0.0)
    assert fake.slept == [pytest.approx(0.04)]
    assert clock.monotonic() - before == pytest.approx(2.0)


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan")])
def test_scaled_clock_rejects_a_speed_that_is_not_positive(speed: float) -> None:
    with pytest.raises(EmulationError, match="speed"):
        ScaledClock(speed)


def test_scaled_clock_stands_still_while_paused_and_counts_the_pause(monkeypatch) -> None:
    fake = FakeRealTime()
    monkeypatch.setattr(clock_module, "time", fake)
    clock = ScaledClock(10.0)
    fake.now += 0.1
    assert clock.monotonic() == pytest.approx(1.0)
    with clock.paused():
        fake.now += 2.0  # the emulation computing: no time for the world
        assert clock.monotonic() == pytest.approx(1.0)
        with clock.paused():  # nested: the clock resumes when the outer pause ends
            fake.now += 1.0
        assert clock.monotonic() == pytest.approx(1.0)
    fake.now += 0.05
    assert clock.monotonic() == pytest.approx(1.5)
    assert clock.paused_seconds == pytest.approx(3.0)


def test_scaled_clock_sleep_lets_the_asked_world_time_pass_across_a_pause() -> None:
    clock = ScaledClock(1.0)
    slept: list[float] = []

    def sleeper() -> None:
        before = clock.monotonic()
        clock.sleep(0.02)
        slept.append(clock.monotonic() - before)

    with clock.paused():
        thread = threading.Thread(target=sleeper)
        thread.start()
        thread.join(timeout=0.2)
        # 0.2 s of real time, none of it the world's: the sleeper is still asleep.
        assert thread.is_alive()
    thread.join(timeout=5.0)
    assert not thread.is_alive()
    assert slept[0] >= 0.02


def test_scaled_clock_refuses_a_sleep_inside_its_own_pause() -> None:
    clock = ScaledClock(10.0)
    with clock.paused(), pytest.raises(EmulationError, match="paused"):
        clock.sleep(0.1)
    clock.sleep(0.001)  # the pause is over
    assert clock.paused_seconds > 0
