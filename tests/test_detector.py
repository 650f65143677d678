"""Infer mode's decision (odar.detector): P(trigger class) > threshold, strictly, drives the motor.

The motor is the real VibrationMotor on a MockFactory pin; the head is the real inference
artifact, with parameters chosen so that its output probabilities are known in advance.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from conftest import pulses_on

from odar.detector import Detector
from odar.drivers.emulated.clock import VirtualClock
from odar.drivers.gpio import VibrationMotor
from odar.engine import Engine
from odar.haptics import detection_pattern
from odar.journal import RateLimiter
from odar.param_store import HeadState
from odar.trainer import LatestHead

MOTOR_PIN = 18


@pytest.fixture(scope="module")
def engine(artifacts_dir) -> Engine:
    return Engine.load(artifacts_dir, num_threads=1)


def params_giving(engine: Engine, trigger_probability: float) -> dict[str, np.ndarray]:
    """A head whose hidden layer is silent, so its output is softmax(output_bias):
    P(Class B) is *trigger_probability* for every input."""
    params = {
        name: np.zeros(shape, np.float32) for name, shape in engine.manifest.parameters.items()
    }
    logit = math.log(trigger_probability / (1.0 - trigger_probability))
    params["output_bias"] = np.array([0.0, logit], np.float32)
    return params


@pytest.fixture
def motor(mock_factory):
    with VibrationMotor(MOTOR_PIN, speed=100.0, pin_factory=mock_factory) as motor:
        yield motor


def make_detector(engine: Engine, motor: VibrationMotor, params=None) -> Detector:
    params = params if params is not None else params_giving(engine, 0.5)
    return Detector(
        engine.head,
        LatestHead(HeadState(params), trained=True),
        engine.manifest.classes,
        "Class B",
        0.75,
        lambda: motor.play(detection_pattern(0.3)),
        RateLimiter(1000.0, VirtualClock()),
    )


def motor_pulses(motor: VibrationMotor, mock_factory) -> int:
    assert motor.wait(5.0)
    return pulses_on(mock_factory.pin(MOTOR_PIN))


@pytest.mark.parametrize(
    ("p_trigger", "pulses"),
    [(0.74, 0), (0.75, 0), (0.7500001, 1), (0.76, 1), (1.0, 1), (0.0, 0)],
)
def test_the_motor_pulses_only_strictly_above_the_threshold(
    engine, motor, mock_factory, p_trigger, pulses
):
    detector = make_detector(engine, motor)
    detection = detector.judge(np.array([1.0 - p_trigger, p_trigger]))
    assert detection.triggered is bool(pulses)
    assert motor_pulses(motor, mock_factory) == pulses


def test_float32_probabilities_from_the_head_are_judged_the_same(engine, motor, mock_factory):
    detector = make_detector(engine, motor)
    for p_trigger, expected in ((0.74, False), (0.75, False), (0.76, True)):
        probabilities = np.array([1.0 - p_trigger, p_trigger], np.float32)
        assert detector.judge(probabilities).triggered is expected
    assert motor_pulses(motor, mock_factory) == 1


@pytest.mark.parametrize(("p_trigger", "pulses"), [(0.74, 0), (0.76, 1)])
def test_detect_runs_the_inference_artifact_and_pulses_above_the_threshold(
    engine, motor, mock_factory, p_trigger, pulses
):
    detector = make_detector(engine, motor, params_giving(engine, p_trigger))
    features = np.random.default_rng(0).normal(size=engine.manifest.feature_size)
    detection = detector.detect(features)
    assert detection.probabilities[1] == pytest.approx(p_trigger, abs=1e-5)
    assert detection.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert detection.triggered is bool(pulses)
    assert motor_pulses(motor, mock_factory) == pulses


def test_the_other_class_never_triggers_and_retune_moves_the_trigger(engine, motor, mock_factory):
    detector = make_detector(engine, motor)
    assert not detector.judge(np.array([0.95, 0.05])).triggered
    detector.retune("Class A", 0.9)
    assert detector.trigger_index == 0 and detector.threshold == 0.9
    assert detector.judge(np.array([0.95, 0.05])).triggered
    assert not detector.judge(np.array([0.05, 0.95])).triggered
    assert motor_pulses(motor, mock_factory) == 1


def test_an_unknown_trigger_class_is_refused(engine, motor):
    with pytest.raises(ValueError, match="Class Z"):
        Detector(
            engine.head,
            LatestHead(HeadState(params_giving(engine, 0.5)), trained=True),
            engine.manifest.classes,
            "Class Z",
            0.75,
            lambda: None,
            RateLimiter(1.0, VirtualClock()),
        )


def test_probability_lines_are_logged_with_fields_and_rate_limited(engine, motor, caplog):
    caplog.set_level(logging.INFO, logger="odar.detector")
    clock = VirtualClock()
    detector = Detector(
        engine.head,
        LatestHead(HeadState(params_giving(engine, 0.5)), trained=True),
        engine.manifest.classes,
        "Class B",
        0.75,
        lambda: None,
        RateLimiter(1.0, clock),
    )
    for _ in range(5):
        detector.judge(np.array([0.2, 0.8]))
    clock.advance(1.0)
    detector.judge(np.array([0.9, 0.1]))
    lines = [r for r in caplog.records if r.name == "odar.detector"]
    assert [r.getMessage() for r in lines] == [
        "P: Class A 0.20, Class B 0.80 -> motor",
        "P: Class A 0.90, Class B 0.10",
    ]
    assert lines[0].ODAR_TRIGGERED == "1" and lines[1].ODAR_TRIGGER_PROBABILITY == "0.1"
