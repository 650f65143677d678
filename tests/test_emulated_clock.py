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


class FakeStalls:
    """A host stall source whose per-CPU totals the test sets."""

    def __init__(self, cpus: int) -> None:
        self.stalled = [0.0] * cpus

    def totals(self, now: float) -> tuple[float, ...]:
        return tuple(self.stalled)


def clock_told_of_stalls(monkeypatch, cpus: int) -> tuple[FakeRealTime, FakeStalls, ScaledClock]:
    """A clock at speed 10 on fake real time, told of host stalls on ``cpus`` fake CPUs."""
    fake = FakeRealTime()
    monkeypatch.setattr(clock_module, "time", fake)
    stalls = FakeStalls(cpus)
    clock = ScaledClock(10.0)
    clock.count_host_stalls(stalls)
    return fake, stalls, clock


def test_scaled_clock_counts_a_host_stall_at_speed_one(monkeypatch) -> None:
    fake, stalls, clock = clock_told_of_stalls(monkeypatch, 2)
    fake.now += 0.1
    stalls.stalled[1] += 0.02  # 20 ms of the 100 ms, CPU 1 taken away
    # 80 ms at speed 10 and 20 ms at speed 1.
    assert clock.monotonic() == pytest.approx(0.8 + 0.02)
    fake.now += 0.1
    stalls.stalled[0] += 0.015  # both CPUs in one stretch: the longer counts
    stalls.stalled[1] += 0.03
    assert clock.monotonic() == pytest.approx(0.82 + 0.7 + 0.03)
    assert clock.stall_seconds == pytest.approx(0.05)
    clock.count_host_stalls(None)
    fake.now += 0.1
    stalls.stalled[0] += 0.05
    assert clock.monotonic() == pytest.approx(1.55 + 1.0)


def test_scaled_clock_takes_no_more_from_a_stall_than_the_time_between_readings(
    monkeypatch,
) -> None:
    fake, stalls, clock = clock_told_of_stalls(monkeypatch, 1)
    fake.now += 0.01
    stalls.stalled[0] += 0.05  # told of late: the clock never stands still or steps back
    assert clock.monotonic() == pytest.approx(0.01)
    fake.now += 0.01
    assert clock.monotonic() == pytest.approx(0.01 + 0.1)


def test_scaled_clock_counts_nothing_of_a_stall_while_paused(monkeypatch) -> None:
    fake, stalls, clock = clock_told_of_stalls(monkeypatch, 1)
    with clock.paused():
        fake.now += 0.02
        stalls.stalled[0] += 0.01
    fake.now += 0.01
    assert clock.monotonic() == pytest.approx(0.1)
    assert clock.stall_seconds == 0.0


class StallBetween:
    """One host stall over the real times [start, end)."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end

    def totals(self, now: float) -> tuple[float, ...]:
        return (min(max(now - self.start, 0.0), self.end - self.start),)


def test_scaled_clock_sleep_lets_the_asked_world_time_pass_across_a_stall(monkeypatch) -> None:
    fake = FakeRealTime()
    monkeypatch.setattr(clock_module, "time", fake)
    clock = ScaledClock(10.0)
    clock.count_host_stalls(StallBetween(fake.now + 0.005, fake.now + 0.015))
    clock.sleep(0.2)
    # 20 ms of real sleep hold a 10 ms stall: 0.1 s + 0.01 s of the world's time. The rest,
    # 0.09 s, is 9 ms more of real sleep.
    assert fake.slept == [pytest.approx(0.02), pytest.approx(0.009)]
    assert clock.monotonic() == pytest.approx(0.2)
    assert clock.stall_seconds == pytest.approx(0.01)
