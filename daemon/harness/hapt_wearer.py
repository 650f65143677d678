"""A real person as the demo's wearer (``odar demo --wearer hapt:SUBJECT``): one of UCI HAPT's
held-out subjects, replayed through the register-level MPU6050 emulator.

The scenario's activity steps up to the first training step (collecting) play the subject's
first recording; every later step (inferring) plays their other recording, so the head is
judged on data it was not trained on. Each step loops the longest stretch of its activity in
that recording (:class:`odar.drivers.emulated.hapt.ActivityLoop`).
"""

from __future__ import annotations

from odar.drivers.emulated import hapt
from odar.drivers.emulated.motion import Wearer
from odar.errors import ConfigError
from odar.harness.scenario import Scenario, SwitchableMotion

PREFIX = "hapt:"


def parse_subject(text: str) -> int:
    """``hapt:SUBJECT`` -> SUBJECT, one of UCI's held-out test subjects."""
    if not text.startswith(PREFIX) or not text[len(PREFIX) :].isdigit():
        raise ConfigError(f"--wearer {text!r}: expected hapt:SUBJECT, e.g. hapt:2")
    subject = int(text[len(PREFIX) :])
    if subject not in hapt.TEST_SUBJECTS:
        raise ConfigError(
            f"--wearer {text!r}: subject {subject} is not one of UCI's held-out test subjects "
            f"({', '.join(map(str, hapt.TEST_SUBJECTS))}); the base pretrained on the others"
        )
    return subject


def collecting_steps(scenario: Scenario) -> int:
    """How many activity steps come before the scenario first waits for training."""
    count = 0
    for step in scenario.steps:
        if step.kind == "until" and step.value[0] == "loss_settled":
            return count
        count += step.kind == "activity"
    return count


class RecordingMotion(SwitchableMotion):
    """SwitchableMotion over a real person's two recordings instead of a simulated wearer."""

    def __init__(
        self, collect: hapt.Recording, infer: hapt.Recording, collect_steps: int, activity: str
    ) -> None:
        self._recordings = (collect, infer)
        self._collect_steps = collect_steps
        self._switches = -1  # the first stream is the one before any step
        super().__init__(Wearer(), activity, seed=0)

    def _stream(self, activity: str) -> hapt.ActivityLoop:  # type: ignore[override]
        recording = self._recordings[0 if self._switches < self._collect_steps else 1]
        self._switches += 1
        return hapt.ActivityLoop(recording, activity)


def recording_motion(subject: int, scenario: Scenario) -> tuple[RecordingMotion, dict]:
    """The wearer for *scenario*, and what the demo's summary says about it."""
    recordings = [r for r in hapt.load() if r.subject == subject]
    if len(recordings) < 2:
        raise ConfigError(f"HAPT subject {subject} has fewer than two recordings")
    collect, infer = recordings[0], recordings[1]
    activities = [s.value for s in scenario.steps if s.kind == "activity"]
    steps = collecting_steps(scenario)
    for index, activity in enumerate(activities):
        hapt.ActivityLoop(collect if index < steps else infer, activity)  # checks it exists
    motion = RecordingMotion(collect, infer, steps, activities[0] if activities else "sitting")
    about = {
        "source": "UCI HAPT (Reyes-Ortiz et al., Neurocomputing 2016, CC BY 4.0)",
        "subject": subject,
        "collect_recording": collect.index,
        "infer_recording": infer.index,
    }
    return motion, about
