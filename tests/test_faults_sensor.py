"""The sensor misbehaving under the running daemon (emulated chip, real driver, real threads).

tests/test_sensor_faults.py covers the driver and the window cutter alone; here the whole
daemon must ride the faults out: it stays up, marks the gap, never cuts a window across it,
keeps pinging the watchdog while the driver recovers, and streams again afterwards.

Behaviour verified for a chip answering garbage: at start-up a WHO_AM_I that is no MPU-6050
is reported as no sensor (naming bus and address; the daemon stays up); mid-run,
garbage samples flow through without stopping anything, and a chip that stops identifying as
an MPU-6050 keeps the driver in logged recovery attempts (the daemon stays up) until the real
chip answers again.
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import pytest
from conftest import Watcher, wait_until
from faults_support import RecordingNotifier

#: Real seconds between watchdog pings the daemon is asked for.
PING_S = 0.05


class Observed(Watcher):
    """What passes through a running daemon's sensor path, recorded as it happens."""

    def gap_blocks_after(self, t: float) -> list[tuple[float, float, int, bool]]:
        with self.lock:
            return [b for b in self.blocks if b[3] and b[0] >= t]

    def windows_after(self, t: float) -> list[tuple[float, float, np.ndarray]]:
        with self.lock:
            return [w for w in self.windows if w[0] > t]


def start_watched(start_daemon, config_writer, speed: float = 20.0):
    notifier = RecordingNotifier(interval=PING_S)
    path = config_writer.write({"sensor": {"emulated": {"speed": speed}}})
    seen = Observed()
    running = start_daemon(path, notifier=notifier, watch=seen)
    return running, notifier, seen


def assert_outage_ridden_out(running, notifier, seen, start, end, real_from, real_to):
    """The checks every outage shares; times: virtual [start, end], real [real_from, real_to]."""
    daemon = running.daemon
    assert running.thread.is_alive() and not running.outcome, "the daemon stopped"
    assert daemon.wearable.sensor.counters.recoveries >= 1
    # The first block after the outage carries the gap mark.
    marked = seen.gap_blocks_after(end - 1.0)
    assert marked, "no block after the outage is marked as a gap"
    # No window reaches across the outage, and none has a hole inside.
    period = 1.0 / daemon.wearable.sensor.actual_rate_hz
    with seen.lock:
        windows = list(seen.windows)
    for t_start, t_end, stamps in windows:
        assert not (t_start < end and t_end > start), f"window {t_start:.2f}-{t_end:.2f} spans it"
        steps = np.diff(stamps)
        assert np.all(steps < 1.5 * period * daemon.decimation), "a hole inside a window"
    # The watchdog heard from the daemon throughout the recovery (a hang, not speed).
    pings = [t for t in notifier.times_of("WATCHDOG") if real_from <= t <= real_to]
    assert len(pings) >= 2, "no watchdog pings while the sensor was away"
    edges = [real_from, *pings, real_to]
    longest = max(b - a for a, b in itertools.pairwise(edges))
    assert longest < 5.0, f"{longest:.1f} real seconds without a watchdog ping while recovering"


def run_outage(running, seen, seconds: float, power_loss: bool) -> tuple[float, float, float]:
    """Disconnect the chip; wait for recovery and a window after it. (start, end, real_start)."""
    clock, sensor = running.daemon.wearable.clock, running.daemon.wearable.sensor
    recoveries = sensor.counters.recoveries
    real_start = time.monotonic()
    start = clock.monotonic()
    running.world.sensor.disconnect(seconds, power_loss=power_loss)
    end = start + seconds
    wait_until(lambda: sensor.counters.recoveries > recoveries, "the driver to recover")
    wait_until(lambda: seen.windows_after(end), "a window after the outage", limit=120)
    return start, end, real_start


@pytest.mark.parametrize("power_loss", [False, True], ids=["loose-wire", "brown-out"])
def test_the_sensor_gone_for_seconds_leaves_a_marked_gap_and_a_resumed_stream(
    power_loss, start_daemon, config_writer
):
    running, notifier, seen = start_watched(start_daemon, config_writer)
    wait_until(lambda: seen.windows, "a first window")
    start, end, real_start = run_outage(running, seen, 3.0, power_loss)
    assert_outage_ridden_out(running, notifier, seen, start, end, real_start, time.monotonic())
    assert running.stop() == 0


def test_the_sensor_gone_for_minutes_keeps_the_daemon_and_the_watchdog_alive(
    start_daemon, config_writer
):
    running, notifier, seen = start_watched(start_daemon, config_writer, speed=60.0)
    wait_until(lambda: seen.windows, "a first window")
    start, end, real_start = run_outage(running, seen, 180.0, power_loss=False)
    # Three virtual minutes of backoff: the retries are capped, so recovery is prompt.
    assert seen.gap_blocks_after(end - 1.0)[0][0] < end + 5.0
    streamed = sum(size for first, _, size, _ in seen.blocks if first > end)
    assert streamed >= 100, "the stream did not resume after the outage"
    assert_outage_ridden_out(running, notifier, seen, start, end, real_start, time.monotonic())
    # Collecting still works after the long outage.
    running.collect(class_index=0, samples=1)
    assert running.stop() == 0


def _chip(monkeypatch, who_am_i: int) -> None:
    """The emulated wearable gets a chip that answers WHO_AM_I with *who_am_i*."""
    import odar.harness.sensor_rig as rig

    build = rig.build_emulated_sensor

    def build_with_chip(*args, **kwargs):
        return build(*args, **{**kwargs, "who_am_i": who_am_i})

    monkeypatch.setattr(rig, "build_emulated_sensor", build_with_chip)


def test_a_clone_chip_runs_the_daemon_with_a_warning(
    monkeypatch, start_daemon, config_writer, caplog
):
    _chip(monkeypatch, 0x70)
    with caplog.at_level(logging.WARNING, logger="odar"):
        running = start_daemon()
    warnings = [r.getMessage() for r in caplog.records if "WHO_AM_I is 0x70" in r.getMessage()]
    assert warnings and "bus 1 address 0x68" in warnings[0] and "MPU-6500" in warnings[0]
    running.collect(class_index=0, samples=2)
    assert running.counts()[0] >= 2
    assert running.stop() == 0


@pytest.mark.parametrize("who_am_i", [0x00, 0x12, 0xFF])
def test_a_chip_answering_garbage_at_start_is_reported_naming_bus_and_address(
    who_am_i, monkeypatch, start_daemon, config_writer
):
    _chip(monkeypatch, who_am_i)
    path = config_writer.write({"sensor": {"bus": 3, "address": 0x69}})
    # Not an MPU-6050 is no sensor: a state the daemon reports (odar.sensor_presence).
    running = start_daemon(path)
    message = running.daemon.sensor.missing
    assert "bus 3 address 0x69" in message and f"reads {who_am_i:#04x}" in message
    assert running.stop() == 0
    # Nothing stays claimed: the pins and the state files serve the next start.
    monkeypatch.undo()
    running = start_daemon(config_writer.write())
    assert running.stop() == 0


def test_garbage_samples_mid_run_flow_through_without_stopping_anything(
    start_daemon, config_writer
):
    running, _, seen = start_watched(start_daemon, config_writer)
    chip = running.world.sensor.chip
    clock = running.daemon.wearable.clock
    start = clock.monotonic()
    chip.inject_garbage(5.0, seed=1)
    wait_until(lambda: seen.windows_after(start + 6.0), "windows after the garbage")
    assert running.thread.is_alive() and not running.daemon.wearable.sensor.recovering
    running.collect(class_index=1, samples=1)
    assert running.stop() == 0


def test_a_chip_that_stops_being_an_mpu6050_mid_run_is_retried_until_it_is_one_again(
    start_daemon, config_writer, caplog
):
    running, notifier, seen = start_watched(start_daemon, config_writer)
    chip, sensor = running.world.sensor.chip, running.daemon.wearable.sensor
    clock = running.daemon.wearable.clock
    with caplog.at_level(logging.DEBUG, logger="odar.drivers.mpu6050"):
        chip.inject_who_am_i(0x12)
        real_start, start = time.monotonic(), clock.monotonic()
        running.world.sensor.disconnect(0.5)
        wait_until(
            lambda: sum("reads 0x12" in r.getMessage() for r in caplog.records) >= 3,
            "three refused recovery attempts",
        )
        assert sensor.recovering and running.thread.is_alive()
        chip.inject_who_am_i(0x68)
        end = clock.monotonic()
        wait_until(lambda: not sensor.recovering, "recovery once the chip is an MPU-6050")
        wait_until(lambda: seen.windows_after(end), "a window after the recovery")
    errors = [r for r in caplog.records if "I2C error" in r.getMessage()]
    assert errors and "bus 1 address 0x68" in errors[0].getMessage()
    assert_outage_ridden_out(running, notifier, seen, start, end, real_start, time.monotonic())
    assert running.stop() == 0
