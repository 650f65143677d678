"""Infer mode: class probabilities per window; the motor pulses above the threshold."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from odar.head import Head
from odar.journal import RateLimiter, log_event
from odar.trainer import LatestHead

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuning:
    """Which class triggers and above what; a reload replaces it whole."""

    trigger_index: int
    threshold: float


@dataclass(frozen=True)
class Detection:
    probabilities: np.ndarray
    triggered: bool


class Detector:
    """``P(trigger_class) > threshold`` (strictly) fires *on_trigger* once per window."""

    def __init__(
        self,
        head: Head,
        latest: LatestHead,
        class_names: tuple[str, ...],
        trigger_class: str,
        threshold: float,
        on_trigger: Callable[[], None],
        limiter: RateLimiter,
        logger: logging.Logger = _log,
    ) -> None:
        if trigger_class not in class_names:
            # Config checks this against the manifest too; this guards direct construction.
            raise ValueError(f"trigger class {trigger_class!r} is not one of {class_names}")
        self._head = head
        self._latest = latest
        self._class_names = class_names
        self._tuning = Tuning(class_names.index(trigger_class), threshold)
        self._on_trigger = on_trigger
        self._limiter = limiter
        self._log = logger

    @property
    def trigger_index(self) -> int:
        return self._tuning.trigger_index

    @property
    def threshold(self) -> float:
        return self._tuning.threshold

    def retune(self, trigger_class: str, threshold: float) -> None:
        """Apply a reloaded configuration: one reference swapped, so a window never sees the
        new class with the old threshold."""
        self._tuning = Tuning(self._class_names.index(trigger_class), threshold)

    def detect(self, features: np.ndarray) -> Detection:
        probabilities = self._head.predict(self._latest.get().params, features)
        return self.judge(probabilities)

    def judge(self, probabilities: np.ndarray) -> Detection:
        tuning = self._tuning
        p = float(probabilities[tuning.trigger_index])
        triggered = p > tuning.threshold
        if triggered:
            self._on_trigger()
        if self._limiter.allow():
            shown = ", ".join(
                f"{name} {q:.2f}" for name, q in zip(self._class_names, probabilities, strict=True)
            )
            log_event(
                self._log,
                f"P: {shown}" + (" -> motor" if triggered else ""),
                mode="infer",
                probabilities=[float(q) for q in probabilities],
                trigger_probability=p,
                triggered=int(triggered),
            )
        return Detection(np.asarray(probabilities), triggered)
