"""The daemon (odar.service) on the emulated wearable: every control path, the refusals, the
persistence rules, bad input, reload and the service manager's protocol.

Presses go through gpiozero's MockFactory pins into the real Button objects; the motor's
output pin is read back from the mock pin's state history. See conftest.py for the fixtures.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (
    REPO,
    WAIT_LIMIT,
    ConfigWriter,
    RunningDaemon,
    Watcher,
    launch_daemon,
    may_take_sched_fifo,
    pulses_on,
    run_in_thread,
    scheduling_of,
    wait_until,
)
from faults_support import artifact_facts

from odar.config import load_config
from odar.controls import Mode
from odar.engine import head_binding
from odar.errors import ConfigError
from odar.haptics import REFUSED, STARTED, STOPPED, class_pattern, mode_pattern
from odar.manifest import MANIFEST_NAME, load_manifest, sha256_of
from odar.param_store import HeadState, ParamStore, encode_head_state
from odar.sample_store import SampleStore
from odar.service import CONTROLS_FILE, PARAMS_FILE, SAMPLES_FILE, Inferred

EX_CONFIG = 78
#: Epochs the shared trained head gets: enough to separate sitting from walking.
TRAINING_EPOCHS = 150


def batch_size(running: RunningDaemon) -> int:
    return running.daemon.engine.manifest.train_batch_size


def collect_both_classes(running: RunningDaemon) -> None:
    """Class A while sitting, Class B while walking, a train batch of each."""
    running.switch_activity("sitting")
    running.collect(0, batch_size(running))
    running.switch_activity("walking")
    running.collect(1, batch_size(running))


def train_until(running: RunningDaemon, epochs: int) -> None:
    """From Collect (stopped): to Train, start, wait for *epochs*, stop."""
    controls = running.daemon.controls
    while controls.mode is not Mode.TRAIN:
        running.press("mode")
    running.press("start")
    wait_until(lambda: running.daemon.status().epoch >= epochs, f"{epochs} epochs")
    running.press("start")
    wait_until(lambda: not running.daemon.trainer.running, "the trainer to stop")


@pytest.fixture(scope="module")
def trained_state(tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path) -> Path:
    """A state directory with both classes collected and a trained head (made once)."""
    directory = tmp_path_factory.mktemp("trained")
    path = ConfigWriter(directory, artifacts_dir).write()
    running = launch_daemon(path)
    try:
        collect_both_classes(running)
        train_until(running, TRAINING_EPOCHS)
    finally:
        assert running.stop() == 0
    return directory / "state"


@pytest.fixture
def trained_config(trained_state: Path, config_writer: ConfigWriter, tmp_path: Path) -> Path:
    """A config whose state directory is a private copy of the trained one."""
    state = tmp_path / "state"
    shutil.copytree(trained_state, state)
    return config_writer.write(state_dir=state)


# ---------------------------------------------------------------------------- control paths


def test_mode_press_cycles_collect_train_infer_with_its_pattern(start_daemon, tmp_path):
    running = start_daemon()
    controls = running.daemon.controls
    assert controls.mode is Mode.COLLECT
    for expected in (Mode.TRAIN, Mode.INFER, Mode.COLLECT):
        pattern, pulses = running.press_and_feel("mode")
        assert controls.mode is expected
        assert pattern == mode_pattern(expected)
        assert (
            pulses
            == pattern.pulses
            == 1 + {Mode.COLLECT: 1, Mode.TRAIN: 2, Mode.INFER: 3}[expected]
        )
    assert running.motor_pin.state == 0


def test_what_start_built_is_frozen_out_of_the_cycle_collector_until_the_daemon_stops(
    start_daemon,
):
    """A generation-2 collection while streaming walks only what came after the start."""
    running = start_daemon()
    built_at_start = running.daemon.controls

    def walked_by_the_collector() -> bool:
        return any(obj is built_at_start for obj in gc.get_objects())

    assert gc.get_freeze_count() > 0
    assert not walked_by_the_collector()
    assert running.stop() == 0
    assert gc.get_freeze_count() == 0
    assert walked_by_the_collector()


def test_class_press_selects_the_next_class_only_in_collect_while_stopped(start_daemon, caplog):
    caplog.set_level(logging.INFO)
    running = start_daemon()
    controls = running.daemon.controls
    pattern, pulses = running.press_and_feel("class")
    assert (controls.class_index, pattern, pulses) == (1, class_pattern(1), 2)
    pattern, pulses = running.press_and_feel("class")
    assert (controls.class_index, pattern, pulses) == (0, class_pattern(0), 1)

    running.press_and_feel("start")
    pattern, pulses = running.press_and_feel("class")
    assert (controls.class_index, pattern, pulses) == (0, REFUSED, REFUSED.pulses)
    running.press_and_feel("start")
    running.press_and_feel("mode")
    pattern, _ = running.press_and_feel("class")
    assert pattern == REFUSED and controls.class_index == 0
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("stop before changing the class" in m for m in refusals)
    assert any("the class is chosen in Collect mode" in m for m in refusals)


def test_start_stop_in_collect_stores_samples_of_the_selected_class(start_daemon):
    running = start_daemon()
    running.press("class")
    pattern, pulses = running.press_and_feel("start")
    assert (pattern, pulses) == (STARTED, 2)
    wait_until(lambda: running.counts()[1] >= 3, "3 samples of Class B")
    pattern, pulses = running.press_and_feel("start")
    assert (pattern, pulses) == (STOPPED, 1)
    # At most the window being processed at the press lands after it.
    at_stop = running.counts()
    clock = running.daemon.wearable.clock
    later = clock.monotonic() + 3.0  # six hops of 0.5 virtual seconds
    wait_until(lambda: clock.monotonic() > later, "3 virtual seconds")
    settled = running.counts()
    assert settled[0] == 0 and at_stop[1] <= settled[1] <= at_stop[1] + 1
    wait_until(lambda: clock.monotonic() > later + 3.0, "3 more virtual seconds")
    assert running.counts() == settled

    stored = running.daemon.samples.load()
    assert len(stored) == settled[1]
    assert set(stored.labels.tolist()) == {1}
    assert stored.windows.shape == (len(stored), 400, 6)
    assert np.all(np.diff(stored.timestamps) > 0)
    # The emulated wrist feels gravity: |a| near 9.8 m/s^2 in a sitting window.
    magnitude = np.linalg.norm(stored.windows[0][:, :3], axis=1).mean()
    assert 8.0 < magnitude < 11.5


def test_train_is_refused_until_every_class_has_a_batch_then_runs_and_saves(start_daemon, caplog):
    caplog.set_level(logging.INFO)
    running = start_daemon()
    running.collect(0, batch_size(running))
    running.press("mode")
    pattern, pulses = running.press_and_feel("start")
    assert (pattern, pulses) == (REFUSED, 6)
    assert not running.daemon.controls.running and not running.daemon.trainer.running
    warning = [r for r in caplog.records if r.levelno == logging.WARNING and "refused" in r.msg]
    assert warning and "every class needs at least the train batch size" in warning[-1].msg
    assert f"counts [{running.counts()[0]}, 0]" in warning[-1].msg

    running.press("mode")
    running.press("mode")  # back to Collect
    running.switch_activity("walking")
    running.collect(1, batch_size(running))
    running.press("mode")
    pattern, _ = running.press_and_feel("start")
    assert pattern == STARTED
    wait_until(lambda: running.daemon.status().epoch >= 5, "5 epochs")
    pattern, _ = running.press_and_feel("start")
    assert pattern == STOPPED
    wait_until(lambda: not running.daemon.trainer.running, "the trainer to stop")
    saved = ParamStore(
        running.daemon.config.state_dir / PARAMS_FILE, running.daemon.engine.head_binding
    ).load()
    assert saved is not None
    current = running.daemon.latest.get()
    assert saved.epoch == current.epoch >= 5
    for name, array in current.params.items():
        np.testing.assert_array_equal(saved.params[name], array)
    losses = running.daemon.trainer.losses
    assert losses[-1] < losses[0]


def test_collect_is_refused_with_the_rattle_and_a_reason_when_the_reserve_is_not_free(
    start_daemon, config_writer, caplog
):
    running = start_daemon(config_writer.write({"storage": {"reserve_free_mib": 1_048_576}}))
    pattern, _ = running.press_and_feel("start")
    assert pattern == REFUSED
    status = running.daemon.status()
    assert not status.running and status.counts == (0, 0)
    text = running.daemon.status_text()
    assert "collect stopped" in text and "collect refused: the disk is nearly full" in text
    assert "storage.reserve_free_mib 1048576" in text
    assert any("collect refused" in r.getMessage() for r in caplog.records)


def test_collect_stops_with_the_rattle_when_the_store_reaches_its_cap(start_daemon, config_writer):
    running = start_daemon(config_writer.write({"storage": {"max_samples_mib": 1}}))
    record = running.daemon.samples.layout.record_dtype().itemsize
    fits = (2**20 - running.daemon.samples.size_bytes()) // record
    running.press("start")
    wait_until(lambda: not running.daemon.status().running, "Collect to stop at the cap")
    assert sum(running.counts()) == fits
    assert running.patterns[-1] == REFUSED
    assert "the sample store is full" in running.daemon.status_text()
    assert running.daemon.samples.size_bytes() <= 2**20


def test_infer_is_refused_without_a_trained_head(start_daemon, caplog):
    caplog.set_level(logging.INFO)
    running = start_daemon()
    running.press("mode")
    running.press("mode")
    pattern, pulses = running.press_and_feel("start")
    assert (pattern, pulses) == (REFUSED, 6)
    assert running.daemon.controls.mode is Mode.INFER and not running.daemon.controls.running
    assert any("no trained head" in r.getMessage() for r in caplog.records)


def test_infer_pulses_the_motor_on_the_trigger_class_only(start_daemon, trained_config):
    running = start_daemon(trained_config)
    inferred = running.watch.inferences
    assert running.daemon.controls.mode is Mode.TRAIN  # restored from controls.json
    running.switch_activity("sitting")
    running.press("mode")
    pattern, _ = running.press_and_feel("start")
    assert pattern == STARTED
    running.motor_pin.clear_states()
    wait_until(lambda: len(inferred) >= 6, "6 sitting windows")
    sitting = list(inferred)
    assert sum(i.detection.triggered for i in sitting) <= 1
    assert pulses_on(running.motor_pin) == sum(i.detection.triggered for i in sitting)

    switched = running.daemon.wearable.clock.monotonic()
    running.switch_activity("walking")

    def walking() -> list[Inferred]:
        return [i for i in inferred if i.window.t_start > switched]

    wait_until(lambda: len(walking()) >= 6, "6 walking windows")
    triggered = sum(i.detection.triggered for i in walking()[:6])
    assert triggered >= 5
    assert pulses_on(running.motor_pin) >= 1
    trigger = running.daemon.detector.trigger_index
    assert all(
        (i.detection.probabilities[trigger] > 0.75) == i.detection.triggered for i in inferred
    )


def test_mode_and_class_survive_a_restart(start_daemon, config_writer):
    path = config_writer.write()
    first = start_daemon(path)
    first.press("class")
    first.press("mode")
    assert first.stop() == 0
    saved = yaml.safe_load((first.daemon.config.state_dir / CONTROLS_FILE).read_text())
    assert saved == {"mode": "train", "class_index": 1}

    second = start_daemon(path)
    controls = second.daemon.controls
    assert (controls.mode, controls.class_index, controls.running) == (Mode.TRAIN, 1, False)


# ---------------------------------------------------------------------------- persistence


def test_parameters_saved_at_stop_request_and_loaded_at_start(start_daemon, trained_config):
    first = start_daemon(trained_config)
    assert first.daemon.latest.trained
    loaded_epoch = first.daemon.status().epoch
    assert loaded_epoch >= TRAINING_EPOCHS
    first.press("start")  # Train (restored) resumes from the saved epoch
    wait_until(lambda: first.daemon.status().epoch >= loaded_epoch + 3, "3 more epochs")
    assert first.stop() == 0  # what SIGTERM does, mid-training
    final = first.daemon.latest.get()
    assert final.epoch >= loaded_epoch + 3

    second = start_daemon(trained_config)
    resumed = second.daemon.latest.get()
    assert second.daemon.latest.trained and resumed.epoch == final.epoch
    for group in ("params", "optimizer"):
        before, after = getattr(final, group), getattr(resumed, group)
        assert sorted(before) == sorted(after)
        for name in before:
            np.testing.assert_array_equal(after[name], before[name])
    second.press("start")
    wait_until(lambda: second.daemon.status().epoch > final.epoch, "an epoch after resuming")
    assert second.daemon.trainer.losses[0] < 0.5  # carried on, not a fresh random head


def test_a_corrupt_parameter_file_is_moved_aside_and_training_starts_fresh(
    start_daemon, trained_config, caplog
):
    caplog.set_level(logging.INFO)
    state = trained_config.parent / "state"
    params = state / PARAMS_FILE
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0xFF
    params.write_bytes(bytes(data))

    running = start_daemon(trained_config)
    assert not running.daemon.latest.trained and running.daemon.status().epoch == 0
    aside = list(state.glob(f"{PARAMS_FILE}.bad-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bytes(data)
    assert not params.exists()
    assert any("checksum mismatch" in r.getMessage() for r in caplog.records)
    running.press("start")  # in Train: the samples are there, the head starts from initialize
    wait_until(lambda: running.daemon.status().epoch >= 1, "a first epoch")
    assert running.daemon.trainer.losses[0] > 0.3  # a random head's loss on two classes


def test_parameters_saved_for_other_artifacts_are_refused(start_daemon, trained_config, caplog):
    caplog.set_level(logging.INFO)
    params = trained_config.parent / "state" / PARAMS_FILE
    good = ParamStore(params, manifest_hash_of(trained_config)).load()
    assert good is not None
    params.write_bytes(encode_head_state(good, "f" * 64))

    running = start_daemon(trained_config)
    assert not running.daemon.latest.trained
    assert list(params.parent.glob(f"{PARAMS_FILE}.bad-*"))
    assert any("trained for artifacts 'fff" in r.getMessage() for r in caplog.records)


def manifest_hash_of(config_path: Path) -> str:
    """What the head saved for *config_path*'s artifacts is bound to."""
    return head_binding(load_manifest(load_config(config_path).paths.artifacts_dir))


def test_the_sample_store_survives_a_restart_and_retrains_the_head(start_daemon, trained_config):
    state = trained_config.parent / "state"
    (state / PARAMS_FILE).unlink()
    running = start_daemon(trained_config)
    assert min(running.counts()) >= batch_size(running)
    assert not running.daemon.latest.trained
    pattern, _ = running.press_and_feel("start")
    assert pattern == STARTED
    wait_until(lambda: running.daemon.status().epoch >= 30, "30 epochs")
    running.press("start")
    losses = running.daemon.trainer.losses
    assert losses[-1] < 0.5 * losses[0]


def test_a_torn_tail_in_the_sample_store_loses_at_most_one_record(start_daemon, trained_config):
    store = trained_config.parent / "state" / SAMPLES_FILE
    running = start_daemon(trained_config)
    before = running.daemon.samples.load()
    record = running.daemon.samples.layout.record_dtype().itemsize
    assert running.stop() == 0
    with open(store, "r+b") as file:  # a power cut halfway through the last record
        file.truncate(store.stat().st_size - record // 2)

    again = start_daemon(trained_config)
    after = again.daemon.samples.load()
    assert len(after) == len(before) - 1
    np.testing.assert_array_equal(after.labels, before.labels[:-1])
    np.testing.assert_array_equal(after.windows, before.windows[:-1])


# ---------------------------------------------------------------------------- bad input


def test_a_trigger_class_the_artifacts_lack_is_a_config_error(start_daemon, config_writer):
    path = config_writer.write({"inference": {"trigger_class": "Class Z"}})
    with pytest.raises(ConfigError, match=r"inference\.trigger_class: 'Class Z'"):
        start_daemon(path)


def odar_command(*arguments: str) -> list[str]:
    """``odar ARGS``; ``odar run`` with --allow-root, as CI runs the tests as root."""
    if arguments[:1] == ("run",):
        arguments = ("run", "--allow-root", *arguments[1:])
    return [sys.executable, "-m", "odar.cli", *arguments]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"inference": {"threshold": 1.5}}, "inference.threshold"),
        ({"inference": {"trigger_class": "Class Z"}}, "inference.trigger_class"),
        ({"sensor": {"rate_hz": 150}}, "sensor.rate_hz"),
    ],
)
def test_odar_run_with_a_bad_config_exits_78_naming_the_key(config_writer, overrides, key):
    path = config_writer.write(overrides)
    result = subprocess.run(
        odar_command("run", "--config", str(path)),
        capture_output=True,
        text=True,
        timeout=WAIT_LIMIT,
        cwd=REPO,
    )
    assert result.returncode == EX_CONFIG, result.stderr
    assert key in result.stderr


# ---------------------------------------------------------------------------- reload, signals


def test_reload_applies_a_new_threshold_and_refuses_a_bad_config(
    start_daemon, config_writer, caplog, restore_root_logging
):
    caplog.set_level(logging.INFO)
    path = config_writer.write()
    running = start_daemon(path)
    detector = running.daemon.detector
    assert detector.threshold == 0.75

    config_writer.write({"inference": {"threshold": 0.9, "pulse_seconds": 0.5}})
    running.daemon.signals.request_reload()
    wait_until(lambda: detector.threshold == 0.9, "the new threshold")
    assert running.daemon.pulse_seconds == 0.5

    config_writer.write({"inference": {"threshold": 0.9, "hop_samples": "many"}})
    running.daemon.signals.request_reload()
    wait_until(
        lambda: any("reload refused" in r.getMessage() for r in caplog.records), "the refusal"
    )
    refusal = next(r.getMessage() for r in caplog.records if "reload refused" in r.getMessage())
    assert "inference.hop_samples" in refusal
    assert detector.threshold == 0.9 and running.daemon.config.inference.hop_samples == 50


class NotifySocket:
    """Where systemd would listen: a datagram socket in a short directory."""

    def __init__(self, directory: Path) -> None:
        self.path = str(directory / "notify")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self.path)
        self._socket.settimeout(WAIT_LIMIT)
        self.messages: list[str] = []

    def until(self, wanted: str) -> str:
        """Receive until a message containing *wanted* arrives; return that message."""
        while True:
            message = self._socket.recv(65536).decode()
            self.messages.append(message)
            if wanted in message:
                return message

    def close(self) -> None:
        self._socket.close()


def test_odar_run_speaks_sd_notify_reloads_on_sighup_and_saves_on_sigterm(
    config_writer, short_socket_dir
):
    batch = 10
    scenario = {
        "wearer": {"placement": "wrist", "seed": 2},
        "steps": [
            {"activity": "sitting"},
            {"press": "start"},
            {"until": {"collected": batch, "timeout": 120}},
            {"press": "start"},
            {"press": "class"},
            {"activity": "walking"},
            {"press": "start"},
            {"until": {"collected": batch, "timeout": 120}},
            {"press": "start"},
            {"press": "mode"},
            {"press": "start"},
            {"end": "idle"},
        ],
    }
    path = config_writer.write(scenario=scenario)
    manager = NotifySocket(short_socket_dir)
    environment = {
        **os.environ,
        "NOTIFY_SOCKET": manager.path,
        "WATCHDOG_USEC": "400000",
        "PYTHONPATH": str(REPO),
    }
    for inherited in ("WATCHDOG_PID", "JOURNAL_STREAM"):
        environment.pop(inherited, None)
    process = subprocess.Popen(
        odar_command("run", "--config", str(path)),
        env=environment,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert manager.until("READY=1") == "READY=1"
        status = manager.until("STATUS=")
        assert "collect" in status and "Class A 0" in status and "Class B 0" in status
        manager.until("WATCHDOG=1")
        training = manager.until("STATUS=train running")
        # How many windows land after the batch depends on when the scenario's stop press
        # comes (later on a busy machine); the STATUS must say what the store holds (below).
        counts = [int(n) for n in re.findall(r"Class [AB] (\d+)", training)]
        assert len(counts) == 2 and all(n >= batch for n in counts), training
        # The save at SIGTERM must hold a trained epoch: stop only once STATUS shows one.
        while not re.search(r"epoch [1-9]", training):
            training = manager.until("STATUS=")

        config_writer.write({"inference": {"threshold": 0.8}})
        process.send_signal(signal.SIGHUP)
        assert "RELOADING=1" in manager.until("RELOADING=1")
        manager.until("READY=1")
        process.send_signal(signal.SIGTERM)
        manager.until("STOPPING=1")
        _, stderr = process.communicate(timeout=WAIT_LIMIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        manager.close()
    assert process.returncode == 0, stderr
    assert "configuration reloaded" in stderr
    state_dir = path.parent / "state"
    layout = artifact_facts(config_writer.artifacts_dir).layout
    with SampleStore.open(state_dir / SAMPLES_FILE, layout) as store:
        assert list(store.counts()) == counts
    saved = ParamStore(state_dir / PARAMS_FILE, manifest_hash_of(path)).load()
    assert isinstance(saved, HeadState) and saved.epoch >= 1
    last_epoch = max(
        int(line.split("training stopped at epoch ")[1].split()[0])
        for line in stderr.splitlines()
        if "training stopped at epoch " in line
    )
    assert saved.epoch == last_epoch


def test_training_stops_by_itself_when_the_loss_settles_and_says_so(
    start_daemon, config_writer, caplog
):
    from odar import message_ids
    from odar.haptics import FINISHED

    running = start_daemon(config_writer.write({"training": {"stop_when": "settled"}}))
    collect_both_classes(running)
    while running.daemon.controls.mode is not Mode.TRAIN:
        running.press("mode")
    with caplog.at_level(logging.INFO, logger="odar"):
        running.press("start")
        wait_until(lambda: FINISHED in running.patterns, "the finished pattern")
    status = running.daemon.status()
    assert not status.running and status.mode is Mode.TRAIN
    assert status.loss_settled
    saved = running.daemon.param_store.load()
    assert saved is not None and saved.epoch == status.epoch
    finished = [
        r for r in caplog.records if getattr(r, "MESSAGE_ID", None) == message_ids.TRAINING_FINISHED
    ]
    assert len(finished) == 1
    assert "loss settled" in finished[0].getMessage()
    assert running.stop() == 0


# ---------------------------------------------------------------------------- press-exact runs

#: Model samples in a window, at the test's 100 Hz: its last sample 3.99 s after its first.
WINDOW_SPAN = 3.99


def test_fast_stop_class_start_never_labels_a_window_from_before_the_start(
    start_daemon, config_writer
):
    tries = 200
    running = start_daemon(config_writer.write())
    clock = running.daemon.wearable.clock
    running.press("start")
    wait_until(lambda: sum(running.counts()) >= 1, "a first sample")
    presses: list[tuple[float, float, int, int]] = []  # (stop, start, class, stored before)
    for _ in range(tries):
        stop_at = clock.monotonic()
        running.press("start")  # stop
        running.press("class")
        stored = sum(running.counts())
        start_at = clock.monotonic()
        running.press("start")
        presses.append((stop_at, start_at, running.daemon.controls.class_index, stored))
        wait_until(lambda stored=stored: sum(running.counts()) > stored, "a sample of this run")
    running.press("start")
    stored = running.daemon.samples.load()
    assert running.stop() == 0
    bled = []
    for index, (stop_at, start_at, klass, first) in enumerate(presses):
        end = presses[index + 1][3] if index + 1 < len(presses) else len(stored)
        previous_class = presses[index - 1][2] if index else 0
        for row in range(first, end):
            t_start, label = float(stored.timestamps[row]), int(stored.labels[row])
            this_run = label == klass and t_start >= start_at
            # A window of the run before that ended before its stop press, stored after it.
            run_before = label == previous_class and t_start + WINDOW_SPAN < stop_at
            if not (this_run or run_before):
                bled.append((index, row, label, klass, round(start_at - t_start, 3)))
    assert bled == [], f"{len(bled)} of {tries} starts stored a window from before the press"


def test_a_wearer_who_starts_walking_at_the_start_press_gets_only_walking_samples(
    start_daemon, config_writer
):
    running = start_daemon(config_writer.write())
    motion = running.world.motion
    running.switch_activity("sitting")
    clock = running.daemon.wearable.clock
    later = clock.monotonic() + 5.0
    wait_until(lambda: clock.monotonic() > later, "a window's worth of sitting")
    for klass in (0, 1):
        while running.daemon.controls.class_index != klass:
            running.press("class")
        running.switch_activity("walking" if klass else "running")
        running.press("start")  # at the same instant as the change of activity
        wait_until(lambda klass=klass: running.counts()[klass] >= 3, "3 samples")
        running.press("start")
        running.switch_activity("sitting")
        settle = clock.monotonic() + 5.0
        wait_until(lambda settle=settle: clock.monotonic() > settle, "the wearer sitting again")
    stored = running.daemon.samples.load()
    truths = [
        motion.activity_between(float(t), float(t) + WINDOW_SPAN) for t in stored.timestamps
    ]
    expected = ["walking" if label else "running" for label in stored.labels]
    assert len(stored) >= 6 and truths == expected, list(zip(truths, expected, strict=True))


def test_infer_decides_only_on_windows_after_the_start_press(start_daemon, trained_config):
    running = start_daemon(trained_config)
    inferred = running.watch.inferences
    motion = running.world.motion
    running.switch_activity("sitting")
    while running.daemon.controls.mode is not Mode.INFER:
        running.press("mode")
    clock = running.daemon.wearable.clock
    for _ in range(3):
        settle = clock.monotonic() + 5.0
        wait_until(lambda settle=settle: clock.monotonic() > settle, "a window of sitting")
        running.switch_activity("walking")
        pressed_at = clock.monotonic()
        running.press("start")
        seen = len(inferred)
        wait_until(lambda seen=seen: len(inferred) >= seen + 3, "3 inferred windows")
        running.press("start")
        stopped_at = clock.monotonic()
        running.switch_activity("sitting")
        for decision in inferred[seen:]:
            window = decision.window
            assert pressed_at <= window.t_start and window.t_end < stopped_at
            assert motion.activity_between(window.t_start, window.t_end) == "walking"


# ---------------------------------------------------------------------------- presses never wait


def press_in_thread(running: RunningDaemon, button: str) -> None:
    """Press on another thread and fail (instead of hanging) if the handler does not return."""
    presser = threading.Thread(target=running.press, args=(button,), daemon=True)
    presser.start()
    presser.join(WAIT_LIMIT)
    assert not presser.is_alive(), f"the {button} press blocked"


def test_stop_then_start_while_the_trainer_is_still_saving_trains_again(
    start_daemon, trained_config
):
    running = start_daemon(trained_config)
    daemon = running.daemon
    assert daemon.controls.mode is Mode.TRAIN
    release = threading.Event()
    saving = threading.Event()
    overlapping: list[int] = []
    inside = [0]
    real_save = daemon.param_store.save

    def slow_save(state: HeadState) -> None:
        inside[0] += 1
        overlapping.append(inside[0])
        saving.set()
        release.wait(WAIT_LIMIT)  # a save on a slow SD card, for as long as the test likes
        real_save(state)
        inside[0] -= 1

    daemon.param_store.save = slow_save
    loaded = daemon.status().epoch
    running.press("start")
    wait_until(lambda: daemon.status().epoch >= loaded + 3, "3 epochs")
    press_in_thread(running, "start")  # stop: the trainer thread saves...
    assert saving.wait(WAIT_LIMIT)
    # ...and the save is still being written: the stop press returned, and so does a start.
    press_in_thread(running, "start")
    assert daemon.controls.running
    epoch = daemon.status().epoch
    release.set()
    wait_until(lambda: daemon.status().epoch > epoch + 3, "training again after the save")
    assert daemon.controls.snapshot().running
    assert running.stop() == 0
    assert max(overlapping) == 1  # one save at a time, always


# ---------------------------------------------------------------------------- failures surface

EX_SOFTWARE = 70


def wait_for_exit(running: RunningDaemon) -> int:
    running.thread.join(WAIT_LIMIT)
    assert not running.thread.is_alive(), "the daemon did not stop after the failure"
    if "error" in running.outcome:
        raise running.outcome["error"]
    return running.outcome["status"]


def failure_records(caplog: pytest.LogCaptureFixture, thread: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and thread in r.getMessage() and r.exc_info is not None
    ]


def test_a_window_thread_exception_is_an_error_a_rattle_and_exit_70(start_daemon, caplog):
    caplog.set_level(logging.INFO)
    running = start_daemon()
    running.press("start")
    running.world.thread_faults.fail("odar-windows")
    assert wait_for_exit(running) == EX_SOFTWARE
    (record,) = failure_records(caplog, "odar-windows thread")
    assert record.exc_info[0].__name__ == "InjectedFault"  # the traceback goes with it
    assert REFUSED in running.patterns
    assert not running.daemon.controls.running
    assert "failed: odar-windows thread" in running.daemon.status_text()


def test_with_the_real_sensor_the_daemons_threads_are_real_time_and_training_is_not(
    trained_config,
):
    """``sensor.backend: real`` (here on the emulated wearable's bus): the sensor thread at
    sensor.realtime_priority, the main loop, window, trainer, motor and LED threads one below,
    the training process time-sharing; the thread that called run() gets its scheduling back.
    Where this process may not take SCHED_FIFO, every one stays time-sharing."""
    from odar.harness.emulated_wearable import EmulatedWearable
    from odar.service import Daemon

    trained = load_config(trained_config)
    # With an LED: its pattern thread, like the motor's, is started before run().
    emulated = dataclasses.replace(trained, pins=dataclasses.replace(trained.pins, led=23))
    config = dataclasses.replace(
        emulated, sensor=dataclasses.replace(emulated.sensor, backend="real")
    )
    world = EmulatedWearable.open(emulated, trained_config.parent)
    watch = Watcher()
    daemon = Daemon(config, world.wearable, config_path=trained_config, observer=watch, seed=5)
    running = run_in_thread(world, daemon, trained_config, watch, after=lambda: scheduling_of(0))
    try:
        running.wait_ready()
        running.press("start")
        wait_until(lambda: daemon.trainer.process.pid is not None, "the training process")
        threads = {t.name: t.native_id for t in threading.enumerate()}
        motor, led = daemon.wearable.motor.thread_name, daemon.wearable.led.thread_name
        seen = {
            name: scheduling_of(threads[name])
            for name in ("test-daemon", "odar-sensor", "odar-windows", "odar-trainer", motor, led)
        }
        child = scheduling_of(daemon.trainer.process.pid)
    finally:
        status = running.stop()
    sensor = config.sensor.realtime_priority
    assert sensor is not None
    if may_take_sched_fifo(sensor):
        assert seen == {
            "test-daemon": (os.SCHED_FIFO, sensor - 1),
            "odar-sensor": (os.SCHED_FIFO, sensor),
            "odar-windows": (os.SCHED_FIFO, sensor - 1),
            "odar-trainer": (os.SCHED_FIFO, sensor - 1),
            motor: (os.SCHED_FIFO, sensor - 1),  # started with the wearable, put there at run
            led: (os.SCHED_FIFO, sensor - 1),
        }
    else:
        assert set(seen.values()) == {(os.SCHED_OTHER, 0)}
    assert child == (os.SCHED_OTHER, 0)
    assert status == 0
    assert running.outcome["after"] == (os.SCHED_OTHER, 0)


def test_with_the_emulated_sensor_every_thread_is_time_sharing(start_daemon, caplog):
    """A demo at a world speed far above 1 must not take cores at real-time priority."""
    caplog.set_level(logging.INFO)
    running = start_daemon()
    seen = {t.name: scheduling_of(t.native_id) for t in threading.enumerate()}
    assert seen["odar-sensor"] == seen["odar-windows"] == (os.SCHED_OTHER, 0)
    assert seen["test-daemon"] == (os.SCHED_OTHER, 0)
    assert "threads: time-sharing (the emulated sensor)" in caplog.messages
    assert running.stop() == 0


def test_a_killed_training_process_stops_the_daemon_and_the_last_whole_epoch_is_saved(
    start_daemon, trained_config, caplog
):
    """As the OOM killer or a crash in the runtime would end it, mid-run."""
    caplog.set_level(logging.INFO)
    running = start_daemon(trained_config)
    daemon = running.daemon
    assert daemon.controls.mode is Mode.TRAIN
    loaded = daemon.latest.get().epoch
    running.press("start")
    wait_until(lambda: daemon.latest.get().epoch >= loaded + 2, "2 epochs in the child")
    pid = daemon.trainer.process.pid
    assert pid is not None and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    assert wait_for_exit(running) == EX_SOFTWARE
    (record,) = failure_records(caplog, "odar-trainer thread")
    assert "training process ended (killed by SIGKILL)" in record.getMessage()
    assert REFUSED in running.patterns
    status = daemon.status_text()
    assert "train running" not in status and "failed" in status
    assert not daemon.controls.running
    saved = ParamStore(
        trained_config.parent / "state" / PARAMS_FILE, daemon.engine.head_binding
    ).load()
    assert saved is not None and saved.epoch == daemon.latest.get().epoch > loaded


def test_a_flex_bound_train_head_is_refused_with_78(config_writer, tmp_path, artifacts_dir):
    seed = REPO.parent / "shared" / "seed-artifacts" / "train_head.tflite"
    if not seed.is_file():
        pytest.skip(f"{seed} is absent (the seed artifacts live in ../shared/seed-artifacts)")
    flex = tmp_path / "flex-artifacts"
    flex.mkdir()
    manifest = json.loads((artifacts_dir / MANIFEST_NAME).read_text())
    for name, entry in manifest["artifacts"].items():
        entry["file"] = str(seed if name == "train_head" else artifacts_dir / entry["file"])
        if name == "train_head":
            entry["sha256"], entry["bytes"] = sha256_of(seed), seed.stat().st_size
    (flex / MANIFEST_NAME).write_text(json.dumps(manifest))
    path = config_writer.write({"paths": {"artifacts_dir": str(flex)}})
    result = subprocess.run(
        odar_command("run", "--config", str(path)),
        capture_output=True,
        text=True,
        timeout=WAIT_LIMIT,
        cwd=REPO,
    )
    assert result.returncode == EX_CONFIG, result.stderr
    assert "Traceback" not in result.stderr
    assert "train_head.tflite" in result.stderr and "Flex delegate" in result.stderr


def test_shutdown_extends_systemds_limit_while_the_save_is_written(
    start_daemon, trained_config, short_socket_dir
):
    from odar.notifier import SystemdNotifier

    manager = NotifySocket(short_socket_dir)
    running = start_daemon(trained_config, notifier=SystemdNotifier(socket_path=manager.path))
    daemon = running.daemon
    release, saving = threading.Event(), threading.Event()
    real_save = daemon.param_store.save

    def slow_save(state: HeadState) -> None:
        saving.set()
        release.wait(WAIT_LIMIT)  # an SD card taking its time
        real_save(state)

    daemon.param_store.save = slow_save
    loaded = daemon.status().epoch
    running.press("start")  # Train, restored
    wait_until(lambda: daemon.status().epoch >= loaded + 3, "3 epochs")
    daemon.request_stop()
    try:
        assert saving.wait(WAIT_LIMIT)
        assert manager.until("EXTEND_TIMEOUT_USEC=").startswith("EXTEND_TIMEOUT_USEC=")
    finally:
        release.set()
    assert running.stop() == 0
    manager.close()
    assert "STOPPING=1" in manager.messages
    saved = daemon.param_store.load()
    assert saved is not None and saved.epoch == daemon.latest.get().epoch
