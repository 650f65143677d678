"""The host stall watch: real watcher processes, a stall made by stopping one (SIGSTOP)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import pytest
from conftest import may_take_sched_fifo

from odar.drivers.emulated.clock import ScaledClock
from odar.drivers.emulated.host_stalls import (
    STALL_THRESHOLD_S,
    WATCH_PERIOD_S,
    WATCHER_SILENT_S,
    HostStallWatch,
)
from odar.errors import EmulationError


@contextlib.contextmanager
def watching() -> Iterator[HostStallWatch | None]:
    """A started watch, stopped after; None where SCHED_FIFO is refused (start() said so)."""
    watch = HostStallWatch()
    if not may_take_sched_fifo():
        assert watch.start() is False and "SCHED_FIFO" in (watch.refusal or "")
        yield None
        return
    with watch:
        assert watch.start(), watch.refusal
        yield watch


def stall(pid: int, seconds: float) -> None:
    os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds)
    os.kill(pid, signal.SIGCONT)


def test_watch_refuses_a_cpu_it_cannot_take_and_says_so() -> None:
    watch = HostStallWatch(cpus=[4095])
    assert watch.start() is False
    assert "4095" in (watch.refusal or "")
    assert watch.figures() == {"watching": False, "refusal": watch.refusal}


def test_watch_counts_a_stopped_watcher_as_a_stall_of_its_cpu() -> None:
    with watching() as watch:
        if watch is None:
            return
        first = watch.pids[0]
        before = watch.totals(time.monotonic())
        os.kill(first, signal.SIGSTOP)
        time.sleep(0.06)
        # Still stopped: the stall under way already counts (a watcher overdue).
        during = watch.totals(time.monotonic())
        assert during[0] - before[0] >= 0.05
        os.kill(first, signal.SIGCONT)
        time.sleep(0.05)
        after = watch.totals(time.monotonic())
        figures = watch.figures()
    cpu = str(watch.cpus[0])
    assert figures["cpus"][cpu]["stalls"] >= 1
    assert figures["cpus"][cpu]["longest_ms"] >= 60 - WATCH_PERIOD_S * 1e3
    # What the watcher published takes over from what was counted while it was overdue.
    assert after[0] - before[0] >= 0.06 - WATCH_PERIOD_S - STALL_THRESHOLD_S
    assert after[0] - before[0] < 0.06 + 0.04


def test_scaled_clock_counts_a_watched_stall_at_speed_one() -> None:
    with watching() as watch:
        if watch is None:
            return
        clock = ScaledClock(10.0)
        clock.count_host_stalls(watch)
        real_before, virtual_before = time.monotonic(), clock.monotonic()
        stall(watch.pids[-1], 0.1)
        real_after, virtual_after = time.monotonic(), clock.monotonic()
    # ~0.1 s of the real time at speed 1, the rest at speed 10.
    assert clock.stall_seconds >= 0.1 - WATCH_PERIOD_S - STALL_THRESHOLD_S
    elapsed = real_after - real_before
    expected = (elapsed - clock.stall_seconds) * 10 + clock.stall_seconds
    assert virtual_after - virtual_before == pytest.approx(expected, abs=0.01)
    assert virtual_after - virtual_before < elapsed * 10 - 0.8


def test_a_watcher_that_died_is_an_error_not_a_stall_for_good() -> None:
    with watching() as watch:
        if watch is None:
            return
        os.kill(watch.pids[0], signal.SIGKILL)
        time.sleep(WATCHER_SILENT_S + 0.1)
        with pytest.raises(EmulationError, match=f"CPU {watch.cpus[0]} has not woken"):
            watch.totals(time.monotonic())
