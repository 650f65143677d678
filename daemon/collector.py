"""Collect mode: every gap-free window becomes a labelled sample on disk as it arrives."""

from __future__ import annotations

import logging

import numpy as np

from odar.errors import StateWriteError
from odar.journal import log_event
from odar.sample_store import SampleStore
from odar.windows import Window

_log = logging.getLogger(__name__)


class Collector:
    def __init__(
        self,
        samples: SampleStore,
        class_names: tuple[str, ...],
        logger: logging.Logger = _log,
    ) -> None:
        self._samples = samples
        self._class_names = class_names
        self._log = logger

    def collect(self, window: Window, features: np.ndarray, class_index: int) -> bool:
        """Append one sample; a failed write is logged and the window dropped (returns False)."""
        try:
            self._samples.append(class_index, features, window.samples, window.t_start)
        except StateWriteError as error:
            self._log.error("sample not stored: %s", error)
            return False
        counts = self._samples.counts()
        log_event(
            self._log,
            f"collected {self._class_names[class_index]}: "
            + ", ".join(f"{n} {name}" for name, n in zip(self._class_names, counts, strict=True)),
            mode="collect",
            class_name=self._class_names[class_index],
            counts=list(counts),
        )
        return True
