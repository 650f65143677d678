"""SIGTERM and SIGINT become an orderly stop, SIGHUP a reload, all handled on the main thread."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class SignalRequests:
    """Flags the handlers set and the main loop takes; ``wait`` wakes on any of them."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stop = False
        self._reload = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Only the main thread may install handlers; elsewhere (tests) requests come by call."""
        if threading.current_thread() is not threading.main_thread():
            return
        for number, handler in (
            (signal.SIGTERM, self._on_stop),
            (signal.SIGINT, self._on_stop),
            (signal.SIGHUP, self._on_reload),
        ):
            self._previous[number] = signal.signal(number, handler)

    def uninstall(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.request_reload()

    def request_stop(self) -> None:
        with self._lock:
            self._stop = True
        self._wake.set()

    def request_reload(self) -> None:
        with self._lock:
            self._reload = True
        self._wake.set()

    @property
    def stop_requested(self) -> bool:
        with self._lock:
            return self._stop

    def take_reload(self) -> bool:
        with self._lock:
            requested, self._reload = self._reload, False
            return requested

    def wait(self, timeout: float) -> None:
        self._wake.wait(timeout)
        self._wake.clear()
