"""Collect mode: every gap-free window becomes a labelled sample on disk as it arrives."""

from __future__ import annotations

import logging

import numpy as np

from odar.errors import StateWriteError
from odar.journal import RateLimiter, log_event
from odar.sample_store import SampleStore
from odar.windows import Window

_log = logging.getLogger(__name__)


class Collector:
    def __init__(
        self,
        samples: SampleStore,
        class_names: tuple[str, ...],
        logger: logging.Logger = _log,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._samples = samples
        self._class_names = class_names
        self._log = logger
        #: One line per window at most this often (None: every window); a stop logs the counts.
        self._limiter = limiter

    def collect(self, window: Window, features: np.ndarray, class_index: int) -> bool:
        """Append one sample; a failed write is logged and the window dropped (returns False)."""
        try:
            self._samples.append(class_index, features, window.samples, window.t_start)
        except StateWriteError as error:
            if self._allowed():
                self._log.error("sample not stored: %s%s", error, self._not_shown())
            return False
        if not self._allowed():
            return True
        counts = self._samples.counts()
        log_event(
            self._log,
            f"collected {self._class_names[class_index]}: "
            + ", ".join(f"{n} {name}" for name, n in zip(self._class_names, counts, strict=True))
            + self._not_shown(),
            mode="collect",
            class_name=self._class_names[class_index],
            counts=list(counts),
        )
        return True

    def _allowed(self) -> bool:
        return self._limiter is None or self._limiter.allow()

    def _not_shown(self) -> str:
        skipped = self._limiter.take_suppressed() if self._limiter is not None else 0
        return f" ({skipped} windows not shown)" if skipped else ""
