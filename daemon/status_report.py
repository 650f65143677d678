"""What the daemon publishes about itself beyond STATUS=: the status file (``odar status``,
``odar watch``) and the last training run's loss curve (``odar plot``).

Built from :meth:`odar.service.Daemon.status` and the parts' read-only counters; written on
every state change and once a second by the daemon's main loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from odar import __version__
from odar.status_file import (
    RUN_LOSSES,
    SCHEMA,
    STATUS_LOSSES,
    TRAINING_RUN_FILE,
    StatusWriter,
    write_json,
)

_log = logging.getLogger(__name__)


#: Sensor-clock seconds over which the rate is measured.
RATE_WINDOW = 2.0


class SensorRate:
    """Samples per second of the sensor's clock, over the last RATE_WINDOW or more."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None
        self.rate_hz: float | None = None

    def update(self, now: float, samples: int) -> float | None:
        if self._last is not None and now - self._last[0] >= RATE_WINDOW:
            self.rate_hz = (samples - self._last[1]) / (now - self._last[0])
            self._last = (now, samples)
        elif self._last is None:
            self._last = (now, samples)
        return self.rate_hz


class StatusReport:
    """The status file of one daemon, and its last training run kept in the state dir."""

    def __init__(self, daemon: Any) -> None:
        self._daemon = daemon
        self._writer = StatusWriter(daemon.config.runtime_dir, lambda text: _log.warning(text))
        self._rate = SensorRate()
        self._lock = threading.Lock()
        #: (runs, epoch) of the last recorded training run.
        self._recorded: tuple[int, int] | None = None
        #: Set by the window thread in Infer: (wall time, probabilities by class index).
        self.last_probabilities: tuple[float, tuple[float, ...]] | None = None

    @property
    def path(self) -> Any:
        return self._writer.path

    def document(self) -> dict[str, Any]:
        daemon = self._daemon
        status = daemon.status()
        names = list(daemon.class_names)
        first_epoch, losses = daemon.trainer.run_history()
        shown = losses[-STATUS_LOSSES:]
        sensor = daemon.wearable.sensor
        counters = getattr(sensor, "counters", None)
        clock_now = daemon.wearable.clock.monotonic()
        with self._lock:
            rate = self._rate.update(clock_now, counters.samples) if counters else None
        probabilities = None
        if self.last_probabilities is not None:
            at, values = self.last_probabilities
            probabilities = {
                "at": at,
                "by_class": dict(zip(names, values, strict=True)),
                "trigger_class": names[daemon.detector.trigger_index],
                "threshold": daemon.detector.threshold,
            }
        return {
            "time": time.time(),
            "pid": os.getpid(),
            "version": __version__,
            "ready": status.ready,
            "stopping": status.stopping,
            "mode": status.mode.value,
            "running": status.running,
            "class": names[status.class_index],
            "classes": names,
            "counts": dict(zip(names, status.counts, strict=True)),
            "epoch": status.epoch,
            "loss": status.loss,
            "loss_settled": status.loss_settled,
            "training": {
                "running": daemon.trainer.running,
                "run": daemon.trainer.runs,
                "first_epoch": first_epoch + len(losses) - len(shown),
                "losses": shown,
            },
            "probabilities": probabilities,
            "sensor": {
                "rate_hz": rate,
                "configured_rate_hz": daemon.config.sensor.rate_hz,
                "recovering": bool(getattr(sensor, "recovering", False)),
                # What is wrong with the sensor now (no chip, not answering), or None.
                "problem": daemon.sensor.problem,
                **(
                    {
                        "samples": counters.samples,
                        "gaps": counters.gaps,
                        "lost": counters.lost,
                        "overflows": counters.overflows,
                        "i2c_errors": counters.i2c_errors,
                        "recoveries": counters.recoveries,
                    }
                    if counters is not None
                    else {}
                ),
            },
            "state_dir": str(daemon.config.state_dir),
        }

    def write(self) -> None:
        self._writer.write(self.document())
        self._record_training_run()

    def close(self) -> None:
        """At shutdown: keep the last run's curve, and no status file of a stopped daemon."""
        self._record_training_run()
        self._writer.remove()

    def _record_training_run(self) -> None:
        """Once a run is over, its loss curve goes to the state dir for ``odar plot``."""
        trainer = self._daemon.trainer
        if trainer.running or trainer.runs == 0:
            return
        first_epoch, losses = trainer.run_history()
        key = (trainer.runs, first_epoch + len(losses))
        with self._lock:
            if key == self._recorded:
                return
            self._recorded = key
        path = self._daemon.config.state_dir / TRAINING_RUN_FILE
        document = {
            "schema": SCHEMA,
            "time": time.time(),
            "first_epoch": first_epoch + max(0, len(losses) - RUN_LOSSES),
            "losses": losses[-RUN_LOSSES:],
            "finish_reason": trainer.finish_reason,
            "classes": list(self._daemon.class_names),
            "counts": list(self._daemon.samples.counts()),
        }
        try:
            write_json(path, document, mode=0o644)
        except OSError as error:
            _log.warning("cannot keep the training run's losses in %s: %s", path, error)
