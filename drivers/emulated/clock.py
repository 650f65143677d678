"""Clocks for emulated runs: virtual time for tests and benches, scaled real time for demos.

Both satisfy :class:`odar.drivers.clock.Clock`, so the driver and the emulated chip share one
notion of time and a test never waits for the wall clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

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


class StallSource(Protocol):
    """Real time the host ran none of our threads (:class:`~odar.drivers.emulated.host_stalls.
    HostStallWatch`): per CPU, never decreasing, at real time ``now``."""

    def totals(self, now: float) -> tuple[float, ...]: ...


class ScaledClock:
    """Real time sped up: virtual time runs ``speed`` times faster than real time, except while
    paused (it stands still) and through host stalls it is told of (it runs at speed 1).

    For multi-threaded runs (the daemon demo) where threads really block, but faster than
    the wall clock. ``sleep(s)`` really sleeps ``s / speed`` seconds, and longer if the clock
    is paused or slowed meanwhile.

    ``paused()`` stops virtual time for every thread while the emulation computes what
    hardware does in no time: the emulated chip working out the wearer's motion for the
    samples due takes about a millisecond of Python a transaction, which a chip does in
    silicon. Counted, it would be the wearer's time ``speed`` times over (10 ms at speed 10,
    an eighth of what the FIFO holds at 1 kHz), and a transaction would last that long.
    ``paused_seconds`` is the real time not counted, for benches to print.

    ``count_host_stalls(watch)`` makes real time in which the host ran none of our threads
    (a hypervisor's or kernel's stall, :mod:`odar.drivers.emulated.host_stalls`) count once,
    not ``speed`` times: the wearable has no hypervisor. Where several CPUs stall in one
    stretch, the longest counts. ``stall_seconds`` is the real time so counted.
    """

    def __init__(self, speed: float, *, start: float = 0.0) -> None:
        if not speed > 0:
            raise EmulationError(f"ScaledClock: speed={speed!r} must be > 0")
        self.speed = float(speed)
        # A lock, not a published tuple: a reader between a pause's start and its reading
        # of the real time would see time step back when the pause ends.
        self._lock = threading.Lock()
        # Virtual time is integrated from one reading to the next: what slows it (a stall)
        # is known only as a total so far.
        self._real_at = time.monotonic()
        self._virtual_at = float(start)
        self._paused_at: float | None = None
        self._pausing: dict[int, int] = {}  # thread ident -> pauses it holds
        self._stalls: StallSource | None = None
        self._stalled_at: tuple[float, ...] = ()
        # Pauses ended and stalls counted: a sleeper's real sleep may have fallen short.
        self._slowdowns = 0
        self._running = threading.Event()
        self._running.set()
        self.paused_seconds = 0.0
        self.stall_seconds = 0.0

    def monotonic(self) -> float:
        with self._lock:
            return self._advance(time.monotonic())

    def _advance(self, real: float) -> float:
        """Virtual time at real time ``real`` (under the lock)."""
        if self._paused_at is not None:
            return self._virtual_at
        elapsed = real - self._real_at
        if elapsed <= 0:
            return self._virtual_at
        stalled = 0.0
        if self._stalls is not None:
            totals = self._noted_stalls(real)
            stalled = min(
                elapsed,
                max((t - t0 for t, t0 in zip(totals, self._stalled_at, strict=True)), default=0.0),
            )
            self._stalled_at = totals
            if stalled > 0:
                self.stall_seconds += stalled
                self._slowdowns += 1
        self._virtual_at += elapsed * self.speed - stalled * max(0.0, self.speed - 1.0)
        self._real_at = real
        return self._virtual_at

    def _noted_stalls(self, real: float) -> tuple[float, ...]:
        assert self._stalls is not None
        # Never back: a total read just before its watcher publishes can be a hair high.
        return tuple(
            max(t, t0) for t, t0 in zip(self._stalls.totals(real), self._stalled_at, strict=True)
        )

    @property
    def stall_source(self) -> StallSource | None:
        """What tells this clock of host stalls (None: they count ``speed`` times)."""
        return self._stalls

    def count_host_stalls(self, stalls: StallSource | None) -> None:
        """From now, count the host stalls ``stalls`` reports at speed 1 (None: stop)."""
        with self._lock:
            real = time.monotonic()
            self._advance(real)
            self._stalls = stalls
            self._stalled_at = stalls.totals(real) if stalls is not None else ()

    def sleep(self, seconds: float) -> None:
        if not seconds > 0:
            return
        with self._lock:
            pausing = threading.get_ident() in self._pausing
        if pausing:
            raise EmulationError("ScaledClock.sleep inside paused(): time would never move")
        until = self.monotonic() + seconds
        while True:
            self._running.wait()
            with self._lock:
                slowdowns_before = self._slowdowns
                remaining = until - self._advance(time.monotonic())
            if remaining <= 0:
                return
            time.sleep(remaining / self.speed)
            with self._lock:
                self._advance(time.monotonic())
                # Not slowed throughout: the real sleep was the whole of it (no float chasing).
                if self._slowdowns == slowdowns_before and self._paused_at is None:
                    return

    def paused(self) -> _Pause:
        """A context in which virtual time stands still for every thread (until the last of
        nested or concurrent pauses ends)."""
        return _Pause(self)

    def _pause(self) -> None:
        with self._lock:
            me = threading.get_ident()
            self._pausing[me] = self._pausing.get(me, 0) + 1
            if self._paused_at is None:
                real = time.monotonic()
                self._advance(real)
                self._running.clear()
                self._paused_at = real

    def _resume(self) -> None:
        with self._lock:
            me = threading.get_ident()
            self._pausing[me] -= 1
            if not self._pausing[me]:
                del self._pausing[me]
            if not self._pausing and self._paused_at is not None:
                real = time.monotonic()
                self.paused_seconds += real - self._paused_at
                self._real_at = real
                if self._stalls is not None:  # a stall while paused took nothing more
                    self._stalled_at = self._noted_stalls(real)
                self._paused_at = None
                self._slowdowns += 1
                self._running.set()

    def __repr__(self) -> str:
        return f"ScaledClock(speed={self.speed}, now={self.monotonic():.6f})"


class _Pause:
    __slots__ = ("_clock",)

    def __init__(self, clock: ScaledClock) -> None:
        self._clock = clock

    def __enter__(self) -> None:
        self._clock._pause()

    def __exit__(self, *exc_info: object) -> None:
        self._clock._resume()


def computing_takes_no_time(clock: object) -> Callable[[], AbstractContextManager[None]]:
    """A context for the emulation's own computing: on a :class:`ScaledClock` virtual time
    stands still in it (:meth:`ScaledClock.paused`), elsewhere it changes nothing."""
    return clock.paused if isinstance(clock, ScaledClock) else nullcontext
