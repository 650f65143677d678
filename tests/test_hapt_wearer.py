"""``odar demo --wearer hapt:SUBJECT``: which recording each scenario step plays, and the
wearer option's checks (no download: recordings made here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from odar.drivers.emulated import hapt
from odar.errors import ConfigError
from odar.harness import hapt_wearer
from odar.harness.scenario import Scenario, Step


def _recording(index: int, level: float) -> hapt.Recording:
    # sitting (3) then walking (0), 100 samples each; every sample of the recording = level.
    labels = np.repeat([3, 0], 100)
    return hapt.Recording(2, index, np.full((200, 6), level, np.float32), labels)


def _scenario() -> Scenario:
    steps = (
        Step("activity", "sitting"),
        Step("activity", "walking"),
        Step("until", ("loss_settled", True), 60.0),
        Step("activity", "sitting"),
        Step("activity", "walking"),
    )
    return Scenario(Path("demo.yaml"), "wrist", 7, steps)


def test_collecting_steps_are_the_activities_before_training():
    assert hapt_wearer.collecting_steps(_scenario()) == 2


def test_collect_steps_play_the_first_recording_and_later_steps_the_other():
    motion = hapt_wearer.RecordingMotion(_recording(0, 1.0), _recording(1, 2.0), 2, "sitting")
    times = np.array([0.5])
    assert motion.read(times)[0, 0] == 1.0  # before any step
    for t, activity, level in [(10, "sitting", 1.0), (20, "walking", 1.0),
                               (30, "sitting", 2.0), (40, "walking", 2.0)]:  # fmt: skip
        motion.switch(t, activity)
        assert motion.read(np.array([t + 0.5]))[0, 0] == level
        assert motion.activity_at(t + 0.5) == activity


def test_the_wearer_must_be_a_held_out_subject():
    assert hapt_wearer.parse_subject("hapt:2") == 2
    with pytest.raises(ConfigError, match="not one of UCI's held-out"):
        hapt_wearer.parse_subject("hapt:1")
    with pytest.raises(ConfigError, match="expected hapt:SUBJECT"):
        hapt_wearer.parse_subject("bob")
