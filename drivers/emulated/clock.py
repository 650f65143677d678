"""Clocks for emulated runs: virtual time for tests and benches, scaled real time for demos.

Both satisfy :class:`odar.drivers.clock.Clock`, so the driver and the emulated chip share one
notion of time and a test never waits for the wall clock.
"""

from __future__ import annotations

import threading
import time

from odar.errors import EmulationError


class VirtualClock:
    """Time that moves only when someone sleeps or advances it.

    ``sleep`` returns at once after moving time forward, so 600 virtual seconds of sensor
    traffic cost only the CPU time of the code under test. One clock is shared by every
    thread that uses it: a sleep in any thread moves time for all of them.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        # Like SystemClock, a non-positive sleep is a no-op rather than an error.
        if seconds > 0:
            with self._lock:
                self._now += seconds

    def advance(self, seconds: float) -> None:
        """Move time forward by *seconds* (>= 0); a monotonic clock never goes back."""
        if not seconds >= 0:  # also rejects NaN
            raise EmulationError(f"VirtualClock.advance: seconds={seconds!r} must be >= 0")
        with self._lock:
            self._now += seconds

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.monotonic():.6f})"


class ScaledClock:
    """Real time sped up: virtual = start + real elapsed * speed.

    For multi-threaded runs (the daemon demo) where threads really block, but faster than
    the wall clock. ``sleep(s)`` really sleeps ``s / speed`` seconds.
    """

    def __init__(self, speed: float, *, start: float = 0.0) -> None:
        if not speed > 0:
            raise EmulationError(f"ScaledClock: speed={speed!r} must be > 0")
        self.speed = float(speed)
        self._start = float(start)
        self._real_origin = time.monotonic()

    def monotonic(self) -> float:
        return self._start + (time.monotonic() - self._real_origin) * self.speed

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speed)

    def __repr__(self) -> str:
        return f"ScaledClock(speed={self.speed}, now={self.monotonic():.6f})"
