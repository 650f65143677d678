"""Button storms on the running daemon: thousands of random presses and holds.

The presses go through the daemon's real gpiozero Buttons on the MockFactory (the finger is
``pin.drive_low()``; gpiozero runs the daemon's handler before it returns), while the sensor,
window, trainer and haptics threads run. After every press the daemon must be in the state
the rules in odar.controls give for the state before it, and:

- exactly one mode, a class index in range;
- running only where allowed: Train needs train_batch_size samples of every class, Infer a
  trained head;
- the trainer is asked to run if and only if the mode is Train and running (a request: the
  press does not wait for the trainer thread);
- controls.json decodes to the current mode and class;
- every press is confirmed by exactly one haptic pattern.

tests/test_controls.py checks the same rules on the bare Controls class with a model and
from several threads; here the whole daemon is in the loop.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass

from conftest import wait_until
from faults_support import artifact_facts, prefill_samples

from odar.controls import Mode, decode_controls_state
from odar.service import CONTROLS_FILE, SAMPLES_FILE

EVENTS = 2500
BUTTONS = ("mode", "class", "start")
#: Real seconds a finger may rest on a button, or the wearer wait between presses (at the
#: test speed of 20, 0.06 real seconds are more than a window's hop).
HOLD_S = (0.0, 0.004)
DWELL_S = (0.02, 0.08)
#: Now and then the wearer collects for longer than a window (4 virtual s = 0.2 real s): a run
#: owns only windows that lie wholly within it.
LONG_DWELL_S = (0.25, 0.35)


@dataclass(frozen=True)
class Before:
    mode: Mode
    class_index: int
    running: bool
    train_allowed: bool
    infer_allowed: bool


def expected_after(button: str, before: Before, num_classes: int) -> tuple[Mode, int, bool]:
    """(mode, class, running) the documented rules give for one press."""
    mode, klass, running = before.mode, before.class_index, before.running
    if button == "mode":
        return mode.next(), klass, False
    if button == "class":
        if mode is Mode.COLLECT and not running:
            return mode, (klass + 1) % num_classes, running
        return mode, klass, running
    if running:
        return mode, klass, False
    allowed = {
        Mode.COLLECT: True,
        Mode.TRAIN: before.train_allowed,
        Mode.INFER: before.infer_allowed,
    }[mode]
    return mode, klass, allowed


def _confirmations(running) -> int:
    """Patterns the motor was given to confirm presses (detection pulses are not among them)."""
    return len(running.patterns)


def test_thousands_of_random_presses_and_holds_keep_the_daemon_consistent(
    config_writer, start_daemon, artifacts_dir
):
    facts = artifact_facts(artifacts_dir)
    state = config_writer.directory / "state"
    state.mkdir()
    batch = facts.manifest.train_batch_size
    # Class 1 is two samples short of a batch: Train is refused until the storm collects them.
    prefill_samples(state / SAMPLES_FILE, facts, per_class=[batch, batch - 2])
    path = config_writer.write({"training": {"save_every_seconds": 5}})
    running = start_daemon(path)
    daemon = running.daemon
    controls, num_classes = daemon.controls, facts.manifest.num_classes
    rng = random.Random(55)
    virtual_start = daemon.wearable.clock.monotonic()
    seen: Counter[str] = Counter()

    for event in range(EVENTS):
        button = rng.choice(BUTTONS)
        counts = daemon.samples.counts()
        before = Before(
            controls.mode,
            controls.class_index,
            controls.running,
            train_allowed=min(counts) >= batch,
            infer_allowed=daemon.latest.trained,
        )
        played = _confirmations(running)
        pin = running.pin(button)
        pin.drive_low()  # the daemon's handler runs here, in this thread
        if rng.random() < 0.3:
            time.sleep(rng.uniform(*HOLD_S))  # a hold is still one press
        pin.drive_high()

        where = f"event {event} ({button} from {before})"
        state_now = (controls.mode, controls.class_index, controls.running)
        assert state_now == expected_after(button, before, num_classes), where
        assert controls.mode in Mode and 0 <= controls.class_index < num_classes, where
        if controls.running and controls.mode is Mode.TRAIN:
            assert min(daemon.samples.counts()) >= batch, where
        if controls.running and controls.mode is Mode.INFER:
            assert daemon.latest.trained, where
        training = controls.mode is Mode.TRAIN and controls.running
        assert daemon.trainer.requested == training, where
        saved = decode_controls_state(
            (state / CONTROLS_FILE).read_bytes(), num_classes, CONTROLS_FILE
        )
        assert saved == (controls.mode, controls.class_index), where
        assert _confirmations(running) == played + 1, f"{where}: not one haptic confirmation"
        assert running.thread.is_alive(), where

        changed = state_now != (before.mode, before.class_index, before.running)
        if button == "start" and changed:
            outcome = "started" if controls.running else "stopped"
        else:
            outcome = "done" if changed else "refused"
        seen[f"{button} in {before.mode.value}: {outcome}"] += 1
        if controls.running and rng.random() < 0.5:
            long = controls.mode is Mode.COLLECT and rng.random() < 0.2
            # Let windows be collected, epochs be trained.
            time.sleep(rng.uniform(*(LONG_DWELL_S if long else DWELL_S)))

    print(f"\n{EVENTS} presses: {dict(sorted(seen.items()))}")
    minutes = (daemon.wearable.clock.monotonic() - virtual_start) / 60
    print(f"over {minutes:.1f} virtual minutes; samples {daemon.samples.counts()}, ", end="")
    print(f"epochs {daemon.latest.get().epoch}")
    # The storm reached every rule: every mode was started and stopped, Train was refused
    # before the samples were there and Infer before a head existed, the class changed in
    # Collect and was refused elsewhere and while running.
    for mode in Mode:
        assert seen[f"start in {mode.value}: started"] > 0, dict(seen)
        assert seen[f"start in {mode.value}: stopped"] > 0, dict(seen)
    assert seen["start in train: refused"] > 0 and seen["start in infer: refused"] > 0
    assert seen["class in collect: done"] > 0 and seen["class in collect: refused"] > 0
    assert seen["class in train: refused"] > 0 and seen["class in infer: refused"] > 0
    wait_until(lambda: daemon.wearable.motor.wait(0.05), "the motor to go quiet")
    assert running.stop() == 0
