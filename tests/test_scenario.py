"""Scripted sessions (odar.harness.scenario): the file format, the switchable wearer, and the player
pressing real gpiozero buttons on MockFactory pins in virtual time."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from odar.controls import Controls, Mode
from odar.drivers.emulated.clock import ScaledClock, VirtualClock
from odar.drivers.emulated.motion import Wearer
from odar.drivers.gpio import WearableButtons
from odar.errors import ConfigError
from odar.harness.data import SCENARIOS_DIR
from odar.harness.scenario import (
    MOTION_MEMORY,
    Faults,
    ScenarioError,
    ScenarioPlayer,
    SwitchableMotion,
    load_scenario,
    resolve_scenario,
)
from odar.service import Status

PINS = {"mode": 17, "class": 27, "start": 22}


def write_scenario(directory: Path, document: object, name: str = "s.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_the_demo_scenario_loads():
    scenario = load_scenario(SCENARIOS_DIR / "demo.yaml")
    assert (scenario.placement, scenario.seed) == ("wrist", 7)
    kinds = [step.kind for step in scenario.steps]
    assert kinds[0] == "activity" and scenario.steps[-1].value == "stop"
    assert kinds.count("press") >= 10
    until = next(step for step in scenario.steps if step.kind == "until")
    assert until.value == ("collected", 24) and until.timeout == 120.0


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"steps": [{"activity": "flying"}]}, "steps[0]: activity 'flying'"),
        ({"steps": [{"press": "power"}]}, "steps[0]: press 'power'"),
        ({"steps": [{"wait": 1}, {"wait": -1}]}, "steps[1]: wait: -1"),
        ({"steps": [{"until": {"collected": 3, "epochs": 2}}]}, "steps[0]: until: name one"),
        ({"steps": [{"until": {"epochs": 2, "timeout": 0}}]}, "until.timeout: 0"),
        ({"steps": [{"teleport": 1}]}, "steps[0]: unknown step 'teleport'"),
        ({"steps": [{"end": "explode"}]}, "steps[0]: end: 'explode'"),
        ({"steps": [{"wait": 1, "press": "mode"}]}, "steps[0]: expected one `kind: value`"),
        ({"steps": []}, "steps: expected a non-empty list"),
        ({"steps": [{"wait": 1}], "extra": 1}, "unknown key(s) ['extra']"),
        ({"wearer": {"placement": "ankle"}, "steps": [{"wait": 1}]}, "wearer.placement"),
        ({"wearer": {"seed": "x"}, "steps": [{"wait": 1}]}, "wearer.seed: 'x'"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_a_bad_scenario_names_the_file_and_the_step(tmp_path, document, complaint):
    path = write_scenario(tmp_path, document)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(path) in str(caught.value)
    assert complaint in str(caught.value)
    assert isinstance(caught.value, ConfigError)


def test_scenarios_resolve_as_paths_beside_the_config_or_built_in(tmp_path):
    beside = write_scenario(tmp_path, {"steps": [{"wait": 1}]}, "mine.yaml")
    (tmp_path / "scenarios").mkdir()
    named = write_scenario(tmp_path / "scenarios", {"steps": [{"wait": 1}]}, "walk.yaml")
    assert resolve_scenario("mine.yaml", tmp_path) == beside
    assert resolve_scenario(str(beside), Path("/")) == beside
    assert resolve_scenario("walk", tmp_path) == named
    assert resolve_scenario("demo", tmp_path) == SCENARIOS_DIR / "demo.yaml"
    with pytest.raises(ScenarioError, match=r"sensor\.emulated\.scenario: 'nowhere'"):
        resolve_scenario("nowhere", tmp_path)


def motion_of(activity: str = "sitting") -> SwitchableMotion:
    wearer = Wearer.random(np.random.default_rng(4), placements=["wrist"])
    return SwitchableMotion(wearer, activity, seed=4)


def test_switchable_motion_changes_activity_at_the_given_time():
    motion = motion_of("sitting")
    motion.switch(10.0, "walking")
    assert motion.activity_at(9.99) == "sitting"
    assert motion.activity_at(10.0) == "walking"
    assert motion.activity_between(2.0, 9.0) == "sitting"
    assert motion.activity_between(10.5, 20.0) == "walking"
    assert motion.activity_between(8.0, 12.0) is None
    times = np.arange(0.0, 20.0, 0.01)
    readings = motion.read(times)
    assert readings.shape == (len(times), 6)
    sitting = np.linalg.norm(readings[times < 10.0, :3], axis=1).std()
    walking = np.linalg.norm(readings[times >= 10.0, :3], axis=1).std()
    assert walking > 5 * sitting


def test_switchable_motion_forgets_activities_long_over_and_keeps_the_recent_ones():
    """Hours of a soak switch activity every minute: the motion keeps what a window or a bench
    can still ask about (MOTION_MEMORY), not every activity since the start."""
    motion = motion_of("sitting")
    for minute in range(1, 500):
        motion.switch(60.0 * minute, "walking" if minute % 2 else "sitting")
    assert motion.remembered <= MOTION_MEMORY / 60.0 + 2
    last = 60.0 * 499
    assert motion.activity_at(last + 1.0) == "walking"
    assert motion.activity_between(last - 60.0 + 1.0, last - 1.0) == "sitting"
    assert motion.activity_between(last - MOTION_MEMORY + 61.0, last - MOTION_MEMORY + 119.0) == (
        "walking" if (499 - MOTION_MEMORY / 60.0 + 1) % 2 else "sitting"
    )
    assert motion.read(np.array([last - 1.0, last + 1.0])).shape == (2, 6)


class Probe:
    """A daemon seen from the scenario: ready at once; samples of the selected class grow one a
    virtual second, epochs ten."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self.stop_requests = 0
        self.settled = False
        self.stopping = False

    def status(self) -> Status:
        now = self._clock.monotonic()
        return Status(
            mode=Mode.COLLECT,
            running=True,
            class_index=1,
            counts=(0, int(now)),
            epoch=int(10 * now),
            recent_losses=(1e-4,) if self.settled else (),  # a loss of ~0 has settled
            ready=True,
            stopping=False,
        )

    def request_stop(self) -> None:
        self.stop_requests += 1


@pytest.fixture
def rig(mock_factory):
    """Real buttons on mock pins counting presses, a virtual clock, a probe, fault log."""
    presses: list[str] = []
    buttons = WearableButtons(*PINS.values(), pin_factory=mock_factory)
    buttons.bind(*(lambda name=name: presses.append(name) for name in PINS))
    clock = VirtualClock()
    faults: list[tuple[str, float]] = []
    yield {
        "presses": presses,
        "clock": clock,
        "probe": Probe(clock),
        "pins": {name: mock_factory.pin(number) for name, number in PINS.items()},
        "faults": Faults(
            disconnect=lambda s: faults.append(("disconnect", s)),
            stall=lambda s: faults.append(("stall", s)),
        ),
        "fault_log": faults,
        "motion": motion_of(),
    }
    buttons.close()


def play(tmp_path: Path, rig: dict, steps: list[dict]) -> ScenarioPlayer:
    scenario = load_scenario(write_scenario(tmp_path, {"steps": steps}))
    player = ScenarioPlayer(
        scenario, rig["motion"], rig["clock"], rig["pins"], rig["probe"], rig["faults"]
    )
    player.start()
    assert player.finished.wait(30.0)
    return player


def test_the_player_presses_buttons_switches_activity_and_injects_faults(tmp_path, rig):
    play(
        tmp_path,
        rig,
        [
            {"press": "start"},
            {"wait": 2.5},
            {"activity": "walking"},
            {"press": "class"},
            {"disconnect": 1.5},
            {"stall": 30},
            {"press": "mode"},
            {"end": "stop"},
        ],
    )
    assert rig["presses"] == ["start", "class", "mode"]
    assert rig["fault_log"] == [("disconnect", 1.5), ("stall", 30.0)]
    # A press holds the button 0.1 s and lets go for 0.1 s: the switch came at 2.7 s.
    assert rig["motion"].activity_at(2.69) == "sitting"
    assert rig["motion"].activity_at(2.71) == "walking"
    assert rig["probe"].stop_requests == 1
    assert all(pin.state == 1 for pin in rig["pins"].values())  # every button released


class SlowToSwitch(SwitchableMotion):
    """A motion whose activity switch takes ``seconds`` of real time, holding the
    interpreter as numpy does (a busy loop, not a sleep); it reads ``clock`` at both ends."""

    def __init__(self, clock: ScaledClock, seconds: float) -> None:
        super().__init__(Wearer(), "sitting", seed=3)
        self.clock, self.seconds = clock, seconds
        self.world_during: tuple[float, float] | None = None

    def switch(self, t: float, activity: str) -> None:
        began = self.clock.monotonic()
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass
        super().switch(t, activity)
        self.world_during = (began, self.clock.monotonic())


def test_an_activity_switch_takes_none_of_the_worlds_time_on_a_scaled_clock(tmp_path, rig):
    # At speed 10, 50 ms of real computing would be half a second of the world's: a FIFO at
    # 1 kHz holds 85 ms. The switch happens with the world's time standing still.
    clock = ScaledClock(10.0)
    scenario = load_scenario(write_scenario(tmp_path, {"steps": [{"activity": "walking"}]}))
    motion = SlowToSwitch(clock, 0.05)
    player = ScenarioPlayer(scenario, motion, clock, rig["pins"], Probe(clock), rig["faults"])
    player.start()
    assert player.finished.wait(30.0)
    assert motion.world_during is not None
    began, ended = motion.world_during
    assert ended == began, "the switch took the world's time (0.5 s of it without the pause)"
    assert clock.paused_seconds >= 0.05
    assert motion.activity_at(clock.monotonic()) == "walking"


def test_until_waits_for_the_daemon_and_gives_up_at_its_timeout(tmp_path, rig, caplog):
    caplog.set_level(logging.WARNING, logger="odar.harness.scenario")
    play(tmp_path, rig, [{"until": {"collected": 5}}, {"until": {"epochs": 80}}])
    # Samples reach 5 at 5 virtual seconds, epochs 80 at 8 (the probe counts from the clock).
    assert 8.0 <= rig["clock"].monotonic() <= 8.5
    play(tmp_path, rig, [{"until": {"loss_settled": True, "timeout": 7}}, {"end": "idle"}])
    assert any("until loss_settled True timed out" in r.getMessage() for r in caplog.records)
    assert rig["probe"].stop_requests == 0


def test_cancel_ends_a_long_wait(tmp_path, rig):
    scenario = load_scenario(write_scenario(tmp_path, {"steps": [{"wait": 1e9}]}))
    clock = rig["clock"]
    player = ScenarioPlayer(
        scenario, rig["motion"], clock, rig["pins"], rig["probe"], rig["faults"]
    )
    player.start()
    player.cancel()
    assert player.finished.wait(30.0)
    assert clock.monotonic() < 1e9


def test_hang_and_fail_steps_reach_the_daemons_probe(tmp_path):
    from odar.harness.scenario import InjectedFault, ThreadFaults

    scenario = load_scenario(
        write_scenario(tmp_path, {"steps": [{"hang": "windows"}, {"fail": "sensor"}]})
    )
    assert [(s.kind, s.value) for s in scenario.steps] == [
        ("hang", "odar-windows"),
        ("fail", "odar-sensor"),
    ]
    probe = ThreadFaults()
    probe("odar-sensor")  # nothing asked for: returns
    probe.fail("odar-sensor")
    with pytest.raises(InjectedFault, match="odar-sensor"):
        probe("odar-sensor")
    probe("odar-sensor")  # once


def test_hang_names_a_daemon_thread(tmp_path):
    wrong = r"hang: 'trainer' is not one of \['sensor', 'windows'\]"
    with pytest.raises(ScenarioError, match=wrong):
        load_scenario(write_scenario(tmp_path, {"steps": [{"hang": "trainer"}]}))


class ControlsProbe:
    """A daemon seen from the scenario whose mode, class and running come from real
    :class:`Controls` behind the real buttons; it loses the presses it is told to lose (a
    starved daemon that took an earlier press in too late)."""

    def __init__(self, buttons: WearableButtons, lose: set[int], batch_size: int = 1) -> None:
        self.controls = Controls(2, batch_size, lambda: (5, 5))
        self.stopping = False
        self.presses = 0
        self._lose = lose
        handlers = {
            "mode": self.controls.press_mode,
            "class": self.controls.press_class,
            "start": self.controls.press_start_stop,
        }
        buttons.bind(*(lambda name=name: self._pressed(handlers[name]) for name in PINS))

    def _pressed(self, handler) -> None:
        self.presses += 1
        if self.presses not in self._lose:
            handler()

    def status(self) -> Status:
        snapshot = self.controls.snapshot()
        return Status(
            mode=snapshot.mode,
            running=snapshot.running,
            class_index=snapshot.class_index,
            counts=(5, 5),
            epoch=0,
            recent_losses=(),
            ready=True,
            stopping=False,
        )

    def request_stop(self) -> None:
        self.stopping = True


@pytest.mark.parametrize("lose", [set(), {1}, {2, 3}, {1, 4, 5}])
def test_set_reaches_the_wanted_controls_though_presses_are_lost(
    tmp_path, mock_factory, lose, caplog
):
    buttons = WearableButtons(*PINS.values(), pin_factory=mock_factory)
    probe = ControlsProbe(buttons, lose)
    clock = VirtualClock()
    pins = {name: mock_factory.pin(number) for name, number in PINS.items()}
    seen = []
    steps = [
        {"set": {"class": 1, "running": True}},  # Collect, class 0, stopped: class, start
        {"set": {"mode": "train", "running": True}},  # mode (stops), start
        {"set": {"mode": "infer", "running": True}},  # mode (stops), start
        {"set": {"class": 0, "mode": "collect", "running": False}},  # mode, class
    ]
    caplog.set_level(logging.WARNING, logger="odar.harness.scenario")
    for step in steps:
        scenario = load_scenario(write_scenario(tmp_path, {"steps": [step]}))
        player = ScenarioPlayer(
            scenario, motion_of(), clock, pins, probe, Faults(lambda s: None, lambda s: None)
        )
        player.start()
        assert player.finished.wait(30.0)
        snapshot = probe.controls.snapshot()
        seen.append((snapshot.mode, snapshot.class_index, snapshot.running))
    buttons.close()
    assert seen == [
        (Mode.COLLECT, 1, True),
        (Mode.TRAIN, 1, True),
        (Mode.INFER, 1, True),
        (Mode.COLLECT, 0, False),
    ]
    # Eight presses do it; each lost one costs one more.
    assert probe.presses == 8 + len(lose)
    assert not [r for r in caplog.records if "timed out" in r.getMessage()]


def test_set_gives_up_at_its_timeout_when_the_daemon_refuses(tmp_path, mock_factory, caplog):
    buttons = WearableButtons(*PINS.values(), pin_factory=mock_factory)
    probe = ControlsProbe(buttons, lose=set(), batch_size=10)  # Train refuses to start
    clock = VirtualClock()
    pins = {name: mock_factory.pin(number) for name, number in PINS.items()}
    caplog.set_level(logging.WARNING, logger="odar.harness.scenario")
    scenario = load_scenario(
        write_scenario(
            tmp_path, {"steps": [{"set": {"mode": "train", "running": True, "timeout": 30}}]}
        )
    )
    player = ScenarioPlayer(
        scenario, motion_of(), clock, pins, probe, Faults(lambda s: None, lambda s: None)
    )
    player.start()
    assert player.finished.wait(30.0)
    buttons.close()
    assert probe.controls.mode is Mode.TRAIN and not probe.controls.running
    assert 30.0 <= clock.monotonic() <= 30.0 + 5.5
    # One mode press, then a start every confirm period (5 s) until the 30 s are up.
    assert 6 <= probe.presses <= 8
    assert any(
        "set mode train, running timed out (the daemon shows mode train, class 0, stopped)"
        in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"set": {}}, "set: name any of mode, class, running"),
        ({"set": {"timeout": 5}}, "set: name any of mode, class, running"),
        ({"set": {"mode": "sleep"}}, "set.mode: 'sleep' is not one of"),
        ({"set": {"class": -1}}, "set.class: -1 is not a class index"),
        ({"set": {"class": True}}, "set.class: True is not a class index"),
        ({"set": {"running": "yes"}}, "set.running: 'yes' is not true or false"),
        ({"set": {"running": True, "timeout": 0}}, "set.timeout: 0 is not seconds > 0"),
        ({"set": "train"}, "set: expected a mapping"),
    ],
)
def test_set_names_what_is_wrong(tmp_path, step, message):
    with pytest.raises(ScenarioError, match=re.escape(message)):
        load_scenario(write_scenario(tmp_path, {"steps": [step]}))
