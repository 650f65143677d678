"""Clocks, injected wherever time matters, so that tests and benchmarks run in virtual time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What the driver and the daemon need of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let *seconds* pass."""
        ...


class SystemClock:
    """The real monotonic clock; what runs on the wearable."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
