"""Host stalls: real time in which the host runs none of our threads on a CPU, watched so that a
faster world can count it at speed 1.

A :class:`~odar.drivers.emulated.clock.ScaledClock` at speed S charges the world S seconds for
each real second. A virtual machine's hypervisor, or the host's kernel, now and then takes a
CPU from every thread on it: on the 2-core firecracker VM of session 8, a real-time probe alone
on an idle machine saw both CPUs stop together for 15 ms once in 90 s, and one CPU at a time
for 2-7.5 ms several times a minute (docs/sensor-figures.md, session 8). At speed 10 the 15 ms
is 150 ms of the world's time, twice what the FIFO holds at 1 kHz, whatever the daemon does.
The wearable has no hypervisor, and its own kernel's hiccups are what a run at speed 1
measures. So above speed 1 the clock counts a host stall at speed 1, as
:func:`odar.harness.emulated_wearable.interpreter_slice_scaled` keeps a wait for the GIL as long
as on the wearable.

Told from the daemon's own slowness: one watcher process per CPU, pinned to it at the top
SCHED_FIFO priority, sleeping :data:`WATCH_PERIOD_S` at a time. Nothing of ours can delay it (it
is above the sensor thread, in a process of its own, so it waits for no GIL), so a wake-up late
by more than :data:`STALL_THRESHOLD_S` is the kernel or the hypervisor. Each watcher publishes
in shared memory when it last woke and the stall time it counted (each such lateness less
:data:`WAKE_LATENESS_S`); :meth:`HostStallWatch.totals` adds a stall still under way (a watcher
overdue), so a thread that runs first after a stall of the whole machine sees it counted.

Run ``python -m odar.drivers.emulated.host_stalls SECONDS`` to watch this machine on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import mmap
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from odar.errors import EmulationError

#: How long a watcher sleeps: of a stall that begins in a sleep, only what outlasts it counts.
WATCH_PERIOD_S = 0.001
#: A wake-up later than this is a stall: 99.8 % of a SCHED_FIFO thread's 1 ms sleeps here
#: woke within 0.2 ms (p50 0.045 ms, p99 0.14 ms; session 8) ...
STALL_THRESHOLD_S = 0.00025
#: ... and counts all but this, the lateness of every wake-up.
WAKE_LATENESS_S = 0.00005
#: A watcher that has not woken for this long is gone, not stalled: the clock would otherwise
#: run at speed 1 for good.
WATCHER_SILENT_S = 1.0
#: How long start() waits for the watchers to take their CPUs.
START_TIMEOUT_S = 5.0

# One slot of float64 cells per watcher. SEQ is odd while the watcher writes (a sequence lock).
SEQ, STATE, HEARTBEAT, STALLED, COUNT, LONGEST = range(6)
CELLS = 6
#: Run as ``python -m`` for each watcher (``__name__`` is ``__main__`` when run so itself).
WATCHER_MODULE = "odar.drivers.emulated.host_stalls"
STARTING, WATCHING, REFUSED = 0.0, 1.0, -1.0


@dataclass(frozen=True)
class WatcherSlot:
    """What one watcher has published (real seconds)."""

    state: float
    heartbeat: float
    stalled: float
    count: int
    longest: float


def _read_slot(cells: memoryview[float], slot: int) -> WatcherSlot:
    base = slot * CELLS
    give_up = time.monotonic() + WATCHER_SILENT_S
    while True:
        before = cells[base + SEQ]
        if not before % 2:  # even: no write under way
            values = WatcherSlot(
                cells[base + STATE],
                cells[base + HEARTBEAT],
                cells[base + STALLED],
                int(cells[base + COUNT]),
                cells[base + LONGEST],
            )
            if cells[base + SEQ] == before:
                return values
        if time.monotonic() > give_up:
            raise EmulationError(
                f"host stall watcher {slot} stopped in the middle of publishing (for "
                f"{WATCHER_SILENT_S} s): the world's clock cannot be told its stalls"
            )


def watch(fd: int, slot: int, cpu: int, priority: int) -> int:
    """A watcher's loop (in its own process): on ``cpu`` at SCHED_FIFO ``priority``, until the
    process that started it ends."""
    cells = memoryview(mmap.mmap(fd, 0)).cast("d")
    base = slot * CELLS
    try:
        os.sched_setaffinity(0, {cpu})
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError:
        cells[base + STATE] = REFUSED
        return 1
    gc.disable()  # a collection here would be a stall of our own
    parent = os.getppid()
    monotonic, sleep = time.monotonic, time.sleep
    stalled = longest = 0.0
    count = 0
    heartbeat = monotonic()
    cells[base + HEARTBEAT] = heartbeat
    cells[base + STATE] = WATCHING
    wakes = 0
    while True:
        sleep(WATCH_PERIOD_S)
        now = monotonic()
        # From the last wake-up, so a stall between two sleeps counts too.
        late = now - heartbeat - WATCH_PERIOD_S
        if late > STALL_THRESHOLD_S:
            stalled += late - WAKE_LATENESS_S
            count += 1
            longest = max(longest, late)
        cells[base + SEQ] += 1
        cells[base + STALLED] = stalled
        cells[base + COUNT] = count
        cells[base + LONGEST] = longest
        cells[base + HEARTBEAT] = now
        cells[base + SEQ] += 1
        heartbeat = now
        wakes += 1
        if wakes % 1000 == 0 and os.getppid() != parent:
            return 0


class HostStallWatch:
    """One watcher process per CPU this process may run on. ``start()`` says whether they
    watch (False, with :attr:`refusal` saying why, where SCHED_FIFO is refused: a watcher that
    the daemon's own threads could delay would count their slowness as the host's)."""

    def __init__(self, cpus: list[int] | None = None) -> None:
        self.cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
        self.refusal: str | None = None
        #: Whether start() succeeded (the figures stay readable after stop()).
        self.watching = False
        self._fd: int | None = None
        self._cells: memoryview[float] | None = None
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> bool:
        if not hasattr(os, "SCHED_FIFO"):
            self.refusal = "no SCHED_FIFO on this platform"
            return False
        priority = os.sched_get_priority_max(os.SCHED_FIFO)
        try:
            cells = self._spawn(priority)
        except OSError as error:  # a sandbox without memfd_create, a process limit
            self.refusal = f"the watchers could not be started: {error}"
            self.stop()
            return False
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            states = [_read_slot(cells, slot).state for slot in range(len(self.cpus))]
            if REFUSED in states:
                self.refusal = (
                    f"the watchers could not take CPUs {self.cpus} at SCHED_FIFO priority "
                    f"{priority}"
                )
                break
            if all(state == WATCHING for state in states):
                self.watching = True
                return True
            if any(process.poll() is not None for process in self._processes):
                self.refusal = "a watcher process ended at start"
                break
            time.sleep(0.01)
        else:
            self.refusal = f"the watchers did not start within {START_TIMEOUT_S} s"
        self.stop()
        return False

    def _spawn(self, priority: int) -> memoryview[float]:
        """The shared cells, and a watcher process started for each CPU."""
        fd = self._fd = os.memfd_create("odar-host-stalls")
        os.ftruncate(fd, len(self.cpus) * CELLS * 8)
        cells = self._cells = memoryview(mmap.mmap(fd, 0)).cast("d")
        for slot, cpu in enumerate(self.cpus):
            self._processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        WATCHER_MODULE,
                        "--fd",
                        str(fd),
                        "--slot",
                        str(slot),
                        "--cpu",
                        str(cpu),
                        "--priority",
                        str(priority),
                    ],
                    pass_fds=(fd,),
                    stdin=subprocess.DEVNULL,
                )
            )
        return cells

    def totals(self, now: float) -> tuple[float, ...]:
        """Each CPU's stall time so far (real seconds, each stall less WAKE_LATENESS_S),
        including one under way at real time ``now`` (``time.monotonic()``)."""
        if self._cells is None:
            raise EmulationError("HostStallWatch.totals before start()")
        totals = []
        for slot, cpu in enumerate(self.cpus):
            seen = _read_slot(self._cells, slot)
            overdue = now - seen.heartbeat - WATCH_PERIOD_S
            if overdue > WATCHER_SILENT_S:
                ended = self._processes[slot].poll() if slot < len(self._processes) else None
                raise EmulationError(
                    f"the host stall watcher of CPU {cpu} has not woken for {overdue:.1f} s "
                    f"(exit status {ended}): the world's clock cannot be told its stalls"
                )
            under_way = overdue - WAKE_LATENESS_S if overdue > STALL_THRESHOLD_S else 0.0
            totals.append(seen.stalled + under_way)
        return tuple(totals)

    def figures(self) -> dict[str, Any]:
        """Per CPU: stalls seen, their total (as counted) and the longest, in ms."""
        if self._cells is None or not self.watching:
            return {"watching": False, "refusal": self.refusal}
        slots = [_read_slot(self._cells, slot) for slot in range(len(self.cpus))]
        return {
            "watching": True,
            "cpus": {
                str(cpu): {
                    "stalls": seen.count,
                    "counted_ms": round(seen.stalled * 1e3, 3),
                    "longest_ms": round(seen.longest * 1e3, 3),
                }
                for cpu, seen in zip(self.cpus, slots, strict=True)
            },
        }

    @property
    def pids(self) -> list[int]:
        """The watchers' process ids, by CPU."""
        return [process.pid for process in self._processes]

    def stop(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5.0)
        self._processes = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        # The figures stay readable: the mapping outlives the file.

    def __enter__(self) -> HostStallWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m odar.drivers.emulated.host_stalls",
        description="Watch this machine's CPUs for host stalls for SECONDS and print them.",
    )
    parser.add_argument("seconds", type=float, nargs="?")
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--slot", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--priority", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fd is not None:
        return watch(args.fd, args.slot, args.cpu, args.priority)
    if args.seconds is None:
        parser.error("SECONDS is needed")
    stalls = HostStallWatch()
    if not stalls.start():
        print(f"host stalls not watched: {stalls.refusal}", file=sys.stderr)
        return 1
    with stalls:
        time.sleep(args.seconds)
        print(json.dumps(stalls.figures(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
