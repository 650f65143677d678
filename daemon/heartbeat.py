"""Per-thread heartbeats: the watchdog is pinged only while every worker thread shows progress.

Each worker thread beats once per loop turn. A thread blocked where it should be (waiting for
samples, for a button press that starts training) says so with :meth:`ThreadPulse.waiting`:
a wait counts as progress for as long as it lasts. A thread stuck anywhere else (an I2C
transaction that never returns, a write that hangs) stops beating, the main thread stops
sending ``WATCHDOG=1`` and systemd restarts the service.

Real (not virtual) time: the watchdog is systemd's, on the host's clock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator


class Heartbeats:
    """The last beat of each registered thread, by name."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._waiting: dict[str, bool] = {}

    def register(self, name: str) -> ThreadPulse:
        with self._lock:
            self._last[name] = self._now()
            self._waiting[name] = False
        return ThreadPulse(self, name)

    def retire(self, name: str) -> None:
        """A thread that ended as it should is no longer waited for."""
        with self._lock:
            self._last.pop(name, None)
            self._waiting.pop(name, None)

    def beat(self, name: str) -> None:
        with self._lock:
            if name in self._last:
                self._last[name] = self._now()

    def _set_waiting(self, name: str, waiting: bool) -> None:
        with self._lock:
            if name in self._last:
                self._waiting[name] = waiting
                self._last[name] = self._now()

    def stale(self, max_age: float) -> dict[str, float]:
        """Threads (name -> seconds since their last beat) silent for more than *max_age*."""
        now = self._now()
        with self._lock:
            return {
                name: now - last
                for name, last in self._last.items()
                if not self._waiting[name] and now - last > max_age
            }


class ThreadPulse:
    """One thread's heartbeat; the no-argument form does nothing (a thread nobody watches)."""

    def __init__(self, beats: Heartbeats | None = None, name: str = "") -> None:
        self._beats = beats
        self.name = name

    def beat(self) -> None:
        if self._beats is not None:
            self._beats.beat(self.name)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a blocking wait that is this thread's correct idle state."""
        if self._beats is None:
            yield
            return
        self._beats._set_waiting(self.name, True)
        try:
            yield
        finally:
            self._beats._set_waiting(self.name, False)
