"""The emulated wearable: the daemon's devices on the register-level MPU6050 emulator and
gpiozero's MockFactory, worn by a scripted wearer (:mod:`odar.harness.scenario`).

``odar run`` builds it for ``sensor.backend: emulated`` (the systemd tests), as do the demo,
``odar bench daemon`` and the tests. The daemon gets the same :class:`~odar.wearable.Wearable`
as on real hardware and cannot tell which it drives.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin, PinState

from odar.config import Config
from odar.drivers.clock import Clock
from odar.drivers.emulated.clock import ScaledClock
from odar.drivers.emulated.host_stalls import HostStallWatch
from odar.drivers.emulated.motion import Wearer
from odar.harness import sensor_rig
from odar.harness.scenario import (
    Faults,
    Scenario,
    ScenarioPlayer,
    SwitchableMotion,
    ThreadFaults,
    load_scenario,
    resolve_scenario,
)
from odar.harness.sensor_rig import EmulatedSensor
from odar.service import Daemon
from odar.wearable import Wearable, assemble_wearable

_log = logging.getLogger(__name__)

#: State changes each mock pin remembers. gpiozero's MockPin keeps every one (~90 bytes
#: each): the motor's pulses over hours of a soak grow memory that real pins never use.
PIN_HISTORY = 10_000


class BoundedHistoryPin(MockPWMPin):
    """gpiozero's MockPWMPin, remembering only its last :data:`PIN_HISTORY` state changes
    (enough for any pattern a test asserts on)."""

    states: collections.deque[PinState]

    def clear_states(self) -> None:
        super().clear_states()  # a list holding the present state, timed from now
        self.states = collections.deque(self.states, maxlen=PIN_HISTORY)


@dataclass
class EmulatedWearable:
    """The wearable the daemon drives, and what only the emulated one has: the chip, the
    scripted wearer and its scenario, the mock pins."""

    wearable: Wearable
    sensor: EmulatedSensor
    motion: SwitchableMotion
    scenario: Scenario
    pin_factory: MockFactory
    config: Config
    #: The daemon's probe: hangs or fails its threads when the scenario says so.
    thread_faults: ThreadFaults = dataclasses.field(default_factory=ThreadFaults)
    #: The interpreter's switch interval while :meth:`run` ran (None: it has not).
    switch_interval_s: float | None = None
    #: Above speed 1, whether :meth:`run` counts host stalls at speed 1 (False: ``speed``
    #: times over, as before session 8; the bench's ``--host-stalls-charged``).
    count_host_stalls_once: bool = True
    #: The watch :meth:`run` used (None: speed 1, not asked for, or not yet run).
    host_stalls: HostStallWatch | None = None
    #: SCHED_FIFO priority of the scenario's thread (None: time-sharing; the bench's choice).
    scenario_realtime_priority: int | None = None
    #: The player :meth:`run` last used (None: not yet run).
    scenario_player: ScenarioPlayer | None = None

    @classmethod
    def open(
        cls,
        config: Config,
        config_dir: Path,
        wearer_motion: Callable[[Scenario], SwitchableMotion] | None = None,
    ) -> EmulatedWearable:
        """The wearer and chip of ``sensor.emulated`` (its scenario looked up beside the
        config, in *config_dir*), on a clock ``sensor.emulated.speed`` times real time.
        *wearer_motion* replaces the simulated wearer (e.g. a recorded person)."""
        emulated = config.sensor.emulated
        scenario = load_scenario(resolve_scenario(emulated.scenario, config_dir))
        seed = emulated.seed if emulated.seed is not None else scenario.seed
        if wearer_motion is not None:
            motion = wearer_motion(scenario)
        else:
            # Noise and bias stay (the emulated chip has none of its own); saturation and
            # quantisation are the chip's job at the configured full scale.
            wearer = dataclasses.replace(
                Wearer.random(np.random.default_rng(seed), placements=[scenario.placement]),
                accel_range_g=None,
                gyro_range_dps=None,
            )
            first = next((s.value for s in scenario.steps if s.kind == "activity"), "sitting")
            motion = SwitchableMotion(wearer, first, seed)
        clock = ScaledClock(emulated.speed)
        # Looked up on the module at call time, so a test can hand the wearable another chip.
        sensor = sensor_rig.build_emulated_sensor(config.sensor.settings, motion, clock)
        factory = MockFactory(pin_class=BoundedHistoryPin)
        wearable = assemble_wearable(config, sensor.bus, clock, factory, emulated.speed)
        wearable.release = factory.reset
        return cls(wearable, sensor, motion, scenario, factory, config)

    def press_pins(self) -> dict[str, MockPin]:
        """The buttons' pins, by the scenario's button names: drive_low() is a finger on it."""
        pins = self.config.pins
        return {
            "mode": self.pin_factory.pin(pins.mode_button),
            "class": self.pin_factory.pin(pins.class_button),
            "start": self.pin_factory.pin(pins.start_button),
        }

    def player(self, daemon: Daemon) -> ScenarioPlayer:
        """The scenario played on this wearable against *daemon*, from its READY=1."""
        return ScenarioPlayer(
            self.scenario,
            self.motion,
            self.wearable.clock,
            self.press_pins(),
            daemon,
            Faults(
                disconnect=lambda seconds: self.sensor.disconnect(seconds),
                stall=lambda seconds: self.sensor.bus.inject_stall(seconds),
                hang=self.thread_faults.hang,
                fail=self.thread_faults.fail,
            ),
            realtime_priority=self.scenario_realtime_priority,
        )

    def run(self, daemon: Daemon) -> int:
        """``daemon.run()`` (*daemon* built on :attr:`wearable`) with the scenario playing."""
        player = self.scenario_player = self.player(daemon)
        player.start()
        try:
            speed = self.config.sensor.emulated.speed
            with (
                interpreter_slice_scaled(speed),
                host_stalls_counted_once(
                    self.wearable.clock, enabled=self.count_host_stalls_once
                ) as self.host_stalls,
            ):
                self.switch_interval_s = sys.getswitchinterval()
                return daemon.run()
        finally:
            player.cancel()


@contextlib.contextmanager
def interpreter_slice_scaled(speed: float) -> Iterator[None]:
    """The interpreter's switch interval divided by ``speed`` while the world runs faster.

    A thread that wants the GIL waits for the holder's slice to end: up to 5 ms, as on the
    wearable at speed 1, but ``speed`` times that in the world's time above it (50 ms at
    speed 10, over half of what the FIFO holds at 1 kHz; session 7 traced sensor reads that
    waited so long and overflowed it)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(previous / max(1.0, speed))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@contextlib.contextmanager
def host_stalls_counted_once(
    clock: Clock, *, enabled: bool = True
) -> Iterator[HostStallWatch | None]:
    """On a :class:`ScaledClock` above speed 1, real time in which the host runs none of our
    threads counted once in the world's time, not ``speed`` times
    (:mod:`odar.drivers.emulated.host_stalls`: the wearable has no hypervisor). Where the
    watchers cannot run at SCHED_FIFO this says so and the stalls count ``speed`` times over."""
    if not enabled or not isinstance(clock, ScaledClock) or clock.speed <= 1.0:
        yield None
        return
    watch = HostStallWatch()
    if not watch.start():
        _log.warning(
            "host stalls count %g times over in the world's time (%s): at high rates a "
            "stall of the host may overflow the emulated FIFO",
            clock.speed,
            watch.refusal,
        )
        yield None
        return
    with watch:
        clock.count_host_stalls(watch)
        try:
            yield watch
        finally:
            clock.count_host_stalls(None)


def run_emulated(config: Config, config_path: Path) -> int:
    """``odar run`` on the emulated wearable."""
    world = EmulatedWearable.open(config, config_path.resolve().parent)
    return world.run(
        Daemon(config, world.wearable, config_path=config_path, probe=world.thread_faults)
    )
