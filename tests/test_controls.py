"""The mode machine: each press's outcome, refusals, persistence, and storms of presses."""

from __future__ import annotations

import json
import logging
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from odar import controls as controls_module
from odar.controls import (
    Controls,
    EventKind,
    Mode,
    Position,
    Refusal,
    Run,
    decode_controls_state,
    load_controls_state,
)
from odar.errors import StateError, StateWriteError

BATCH = 4


def make(counts=(0, 0), **options) -> Controls:
    return Controls(len(counts), BATCH, lambda: counts, **options)


def test_starts_in_collect_class_zero_stopped():
    controls = make()
    assert (controls.mode, controls.class_index, controls.running) == (Mode.COLLECT, 0, False)


def test_mode_button_cycles_collect_train_infer():
    controls = make()
    modes = [controls.press_mode().mode for _ in range(4)]
    assert modes == [Mode.TRAIN, Mode.INFER, Mode.COLLECT, Mode.TRAIN]


def test_mode_press_while_running_stops_then_switches():
    controls = make()
    assert controls.press_start_stop().kind is EventKind.STARTED
    event = controls.press_mode()
    assert event.kind is EventKind.MODE_SELECTED and event.stopped
    assert (event.mode, event.running, controls.running) == (Mode.TRAIN, False, False)
    assert not controls.press_mode().stopped


def test_class_button_cycles_classes_in_collect_while_stopped():
    controls = make(counts=(0, 0, 0))
    indices = [controls.press_class().class_index for _ in range(4)]
    assert indices == [1, 2, 0, 1]


def test_class_press_is_refused_while_running_and_outside_collect():
    controls = make()
    controls.press_start_stop()
    event = controls.press_class()
    assert (event.kind, event.refusal, event.class_index) == (
        EventKind.REFUSED,
        Refusal.CLASS_WHILE_RUNNING,
        0,
    )
    controls.press_mode()
    event = controls.press_class()
    assert event.refusal is Refusal.CLASS_OUTSIDE_COLLECT
    assert controls.class_index == 0


def test_train_start_is_refused_until_every_class_has_a_batch():
    counts = [BATCH, BATCH - 1]
    controls = Controls(2, BATCH, lambda: counts)
    controls.press_mode()
    event = controls.press_start_stop()
    assert event.refusal is Refusal.NOT_ENOUGH_SAMPLES
    assert event.class_counts == (BATCH, BATCH - 1)
    assert "every class needs" in event.describe() and "[4, 3]" in event.describe()
    assert not controls.running
    counts[1] = BATCH
    assert controls.press_start_stop().kind is EventKind.STARTED
    assert controls.press_start_stop().kind is EventKind.STOPPED


def test_infer_start_is_refused_without_a_head():
    available = [False]
    controls = make(head_available=lambda: available[0])
    controls.press_mode()
    controls.press_mode()
    assert controls.press_start_stop().refusal is Refusal.NO_HEAD
    available[0] = True
    assert controls.press_start_stop().running


def test_stop_for_another_reason():
    controls = make()
    assert controls.stop() is None
    controls.press_start_stop()
    event = controls.stop()
    assert event is not None and event.kind is EventKind.STOPPED and not controls.running


def test_events_read_well_in_the_log():
    controls = make(counts=(0, 0))
    assert controls.press_class().describe(["Class A", "Class B"]) == "class Class B selected"
    assert controls.press_start_stop().describe(["Class A", "Class B"]) == (
        "collect started (Class B)"
    )
    assert controls.press_mode().describe() == "stopped; mode train"


def test_mode_and_class_survive_a_restart_running_does_not(tmp_path):
    path = tmp_path / "controls.json"
    controls = make(counts=(0, 0, 0), state_path=path)
    controls.press_class()
    controls.press_class()
    controls.press_start_stop()
    controls.press_mode()
    controls.press_start_stop()
    assert json.loads(path.read_text()) == {"mode": "train", "class_index": 2}
    restarted = make(counts=(0, 0, 0), state_path=path)
    assert (restarted.mode, restarted.class_index, restarted.running) == (Mode.TRAIN, 2, False)


def test_a_class_beyond_new_artifacts_falls_back_to_class_zero(tmp_path):
    path = tmp_path / "controls.json"
    path.write_text('{"mode": "infer", "class_index": 4}')
    assert load_controls_state(path, num_classes=2) == (Mode.INFER, 0)


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe", b"[1]", b'{"mode": "sleep", "class_index": 0}', b'{"mode": "train"}'],
)
def test_a_bad_state_file_is_moved_aside(tmp_path, caplog, content):
    path = tmp_path / "controls.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert load_controls_state(path, num_classes=2) == (Mode.COLLECT, 0)
    assert not path.exists()
    (aside,) = tmp_path.glob("controls.json.bad-*")
    assert aside.read_bytes() == content
    assert "controls.json" in caplog.text and "moved to" in caplog.text


def test_a_failed_save_is_logged_and_the_press_still_counts(tmp_path, monkeypatch, caplog):
    def full(path, data):
        raise StateWriteError(28, f"cannot save {path}: No space left on device")

    monkeypatch.setattr(controls_module, "write_atomically", full)
    controls = make(state_path=tmp_path / "controls.json")
    assert controls.press_mode().mode is Mode.TRAIN
    assert "No space left" in caplog.text


def test_a_storm_of_presses_from_threads_leaves_a_consistent_persisted_state(tmp_path):
    path = tmp_path / "controls.json"
    controls = make(counts=(BATCH, BATCH, BATCH), state_path=path)
    presses = [controls.press_mode, controls.press_class, controls.press_start_stop]
    errors: list[BaseException] = []

    def storm(seed: int) -> None:
        chooser = random.Random(seed)
        try:
            for _ in range(300):
                chooser.choice(presses)()
        except BaseException as error:  # any exception is a failure of the machine
            errors.append(error)

    threads = [threading.Thread(target=storm, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    saved = json.loads(path.read_text())
    assert saved == {"mode": controls.mode.value, "class_index": controls.class_index}
    assert 0 <= controls.class_index < 3


class ButtonStorm(RuleBasedStateMachine):
    """Random presses against a model of the documented rules."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = [0, 0, 0]
        self.head = False
        self.controls = Controls(3, BATCH, lambda: self.counts, head_available=lambda: self.head)
        self.mode, self.class_index, self.running = Mode.COLLECT, 0, False

    @rule()
    def mode(self):
        event = self.controls.press_mode()
        assert event.stopped == self.running
        self.mode, self.running = self.mode.next(), False
        assert event.kind is EventKind.MODE_SELECTED

    @rule()
    def klass(self):
        event = self.controls.press_class()
        if self.mode is Mode.COLLECT and not self.running:
            self.class_index = (self.class_index + 1) % 3
            assert event.kind is EventKind.CLASS_SELECTED
        else:
            assert event.kind is EventKind.REFUSED

    @rule()
    def start_stop(self):
        event = self.controls.press_start_stop()
        if self.running:
            self.running = False
            assert event.kind is EventKind.STOPPED
            return
        allowed = {
            Mode.COLLECT: True,
            Mode.TRAIN: min(self.counts) >= BATCH,
            Mode.INFER: self.head,
        }[self.mode]
        self.running = allowed
        assert event.kind is (EventKind.STARTED if allowed else EventKind.REFUSED)

    @precondition(lambda self: self.running and self.mode is Mode.COLLECT)
    @rule()
    def collect_a_sample(self):
        self.counts[self.class_index] += 1

    @rule(available=st.booleans())
    def head_changes(self, available):
        self.head = available

    @invariant()
    def machine_matches_model(self):
        state = (self.controls.mode, self.controls.class_index, self.controls.running)
        assert state == (self.mode, self.class_index, self.running)


ButtonStorm.TestCase.settings = settings(max_examples=60, stateful_step_count=80, deadline=None)
test_button_storm = ButtonStorm.TestCase


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100) | st.text(max_size=60).map(str.encode))
def test_random_state_files_give_only_our_error_or_a_valid_selection(data):
    try:
        mode, class_index = decode_controls_state(data, num_classes=3, source="controls.json")
    except StateError:
        return
    assert isinstance(mode, Mode) and 0 <= class_index < 3


def test_snapshot_is_one_moment_and_every_start_is_a_new_run_at_the_press_position():
    positions = iter([Position(10, 1.0), Position(25, 2.5), Position(40, 4.0), Position(55, 5.5)])
    controls = make(position=lambda: next(positions))
    before = controls.snapshot()
    assert (before.mode, before.class_index, before.running, before.run) == (
        Mode.COLLECT,
        0,
        False,
        None,
    )
    started = controls.press_start_stop()
    first = controls.snapshot().run
    assert started.run_id == first.id and first.going
    assert (first.mode, first.class_index, first.start) == (Mode.COLLECT, 0, Position(10, 1.0))
    controls.press_start_stop()
    stopped = controls.snapshot()
    assert not stopped.running and stopped.run.stop == Position(25, 2.5)
    assert stopped.run.id == first.id and not stopped.run.going
    controls.press_class()
    controls.press_start_stop()
    second = controls.snapshot().run
    assert second.id != first.id and second.class_index == 1 and second.start.seq == 40
    # A mode press ends the run where it happened; the run keeps the mode it ran in.
    controls.press_mode()
    ended = controls.snapshot()
    assert ended.mode is Mode.TRAIN and ended.run.mode is Mode.COLLECT
    assert ended.run.stop == Position(55, 5.5)
    # The snapshot taken before is untouched: immutable, replaced whole.
    assert before.run is None and stopped.run.class_index == 0


@pytest.mark.parametrize(
    ("t_start", "t_end", "stop", "owned"),
    [
        (2.0, 6.0, None, True),
        (1.999, 6.0, None, False),  # begins before the start press
        (2.0, 6.0, 6.5, True),
        (2.0, 6.5, 6.5, False),  # ends at the stop press
    ],
)
def test_a_run_owns_only_windows_wholly_between_its_presses(t_start, t_end, stop, owned):
    run = Run(1, Mode.COLLECT, 0, Position(0, 2.0), None if stop is None else Position(0, stop))
    assert run.owns(t_start, t_end) is owned
