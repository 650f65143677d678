"""What the sensor thread waited for before each FIFO overflow, from the kernel's scheduler
trace, for ``odar bench daemon --sched-trace``.

At speed 10 the FIFO at 1 kHz holds about 8 ms of real time, so a read a few ms late on a
busy host overflows it. Whether that lateness was the sensor thread's own work, a CPU it
waited for, or the GIL held by another thread of ours that the kernel had preempted for
some other process (priority inversion: the sensor thread is SCHED_FIFO, the others are not)
decides what would help: less work, a core of its own, or a reader in a process of its own.
ftrace's ``sched_switch`` and ``sched_wakeup`` events (``/sys/kernel/tracing``, clock
``mono``, which is ``time.monotonic()``) tell them apart:

    running      the sensor thread was on a CPU
    waiting_cpu  it was runnable and no CPU ran it
    ours_ran     it slept while another thread of ours ran (a read's wire time, the window
                 thread holding the GIL, ...)
    ours_preempted
                 it slept while no thread of ours ran and at least one was runnable: a
                 thread of ours was kept off its CPU by others, the signature of a
                 preempted GIL holder when the sensor thread is waiting for the GIL
    asleep       it slept and no thread of ours wanted a CPU (a planned sleep, wire time)

For each overflow the figures cover ``before_s`` of real time before the driver logged it,
with what else ran on each CPU meanwhile. Needs root and tracefs; the trace is the
machine's, so it holds other processes' names, which the report names too.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odar.errors import EmulationError

TRACEFS = Path("/sys/kernel/tracing")
EVENTS = ("sched:sched_switch", "sched:sched_wakeup")
#: Per CPU; a 60 s run at speed 10 wrote ~75 MB of text on two CPUs (session 11).
BUFFER_KB = 131072
#: Real time before each overflow's log line that is explained.
BEFORE_S = 0.030

_LINE = re.compile(r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+\S+\s+(?P<ts>[\d.]+): "
                   r"(?P<event>sched_switch|sched_wakeup): (?P<rest>.*)$")  # fmt: skip
_SWITCH = re.compile(r"prev_comm=(.*) prev_pid=(\d+) prev_prio=(\d+) prev_state=(\S+) ==> "
                     r"next_comm=(.*) next_pid=(\d+) next_prio=(\d+)")  # fmt: skip
_WAKEUP = re.compile(r"comm=(.*) pid=(\d+) prio=(\d+) target_cpu=(\d+)")


@dataclass(frozen=True)
class Switch:
    at: float
    cpu: int
    prev_tid: int
    prev_runnable: bool
    next_tid: int


@dataclass(frozen=True)
class Wakeup:
    at: float
    tid: int


@dataclass
class Trace:
    events: list[Switch | Wakeup] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)


def parse(lines: Iterable[str]) -> Trace:
    """The switches and wake-ups of an ftrace text dump, with each task's name."""
    trace = Trace()
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            continue
        at, cpu, rest = float(match["ts"]), int(match["cpu"]), match["rest"]
        if match["event"] == "sched_switch":
            switch = _SWITCH.search(rest)
            if switch is None:
                continue
            prev_comm, prev, _, state, next_comm, nxt, _ = switch.groups()
            trace.names[int(prev)], trace.names[int(nxt)] = prev_comm, next_comm
            trace.events.append(Switch(at, cpu, int(prev), state.startswith("R"), int(nxt)))
        else:
            wakeup = _WAKEUP.search(rest)
            if wakeup is not None:
                trace.names[int(wakeup[2])] = wakeup[1]
                trace.events.append(Wakeup(at, int(wakeup[2])))
    return trace


RUNNING, RUNNABLE, ASLEEP = "running", "runnable", "asleep"


def _timelines(trace: Trace) -> tuple[dict[int, list[tuple[float, float, str]]],
                                      dict[int, list[tuple[float, float, int]]]]:  # fmt: skip
    """Each task's (from, to, state) and each CPU's (from, to, task)."""
    states: dict[int, list[tuple[float, float, str]]] = collections.defaultdict(list)
    cpus: dict[int, list[tuple[float, float, int]]] = collections.defaultdict(list)
    state: dict[int, tuple[float, str]] = {}
    on_cpu: dict[int, tuple[float, int]] = {}

    def become(tid: int, at: float, new: str) -> None:
        if tid in state:
            since, old = state[tid]
            states[tid].append((since, at, old))
        state[tid] = (at, new)

    events = sorted(trace.events, key=lambda e: e.at)
    for event in events:
        if isinstance(event, Switch):
            missed = on_cpu.get(event.cpu)
            if missed is not None and missed[1] != event.prev_tid:
                # The switch to prev is not in the trace (seen here after a wake-up on an
                # idle CPU): it ran from its wake-up, or from the CPU's last switch if later.
                since, tid = missed
                woken = state.get(event.prev_tid)
                began = since
                if woken is not None and woken[1] == RUNNABLE:
                    began = max(since, woken[0])
                cpus[event.cpu].append((since, began, tid))
                on_cpu[event.cpu] = (began, event.prev_tid)
                become(event.prev_tid, began, RUNNING)
            if event.cpu in on_cpu:
                since, tid = on_cpu[event.cpu]
                cpus[event.cpu].append((since, event.at, tid))
            on_cpu[event.cpu] = (event.at, event.next_tid)
            become(event.prev_tid, event.at, RUNNABLE if event.prev_runnable else ASLEEP)
            become(event.next_tid, event.at, RUNNING)
        elif state.get(event.tid, (0.0, ASLEEP))[1] != RUNNING:
            become(event.tid, event.at, RUNNABLE)
    # What was under way when the trace ended lasted at least until its last event.
    end = events[-1].at if events else 0.0
    for tid in list(state):
        become(tid, end, ASLEEP)
    for cpu, (since, tid) in on_cpu.items():
        cpus[cpu].append((since, end, tid))
    return states, cpus


def _within(spans: list[Any], start: float, end: float) -> list[Any]:
    return [span for span in spans if span[1] > start and span[0] < end]


def explain(
    trace: Trace,
    ours: set[int],
    sensor: int,
    moments: Iterable[float],
    before_s: float = BEFORE_S,
    thread_names: dict[int, str] | None = None,
) -> list[dict[str, Any]]:
    """For each moment (``time.monotonic()``), the ``before_s`` before it: the sensor thread's
    time by the kinds in the module docstring (ms), which of our threads ran or were kept
    off a CPU meanwhile (by ``thread_names``, else id), and the tasks that ran most on each
    CPU while it was not running. ``ours`` are the process's thread ids, ``sensor`` among
    them."""
    names = thread_names or {}
    all_states, all_cpus = _timelines(trace)
    others = ours - {sensor}
    reports = []
    for moment in moments:
        start = moment - before_s
        states = {tid: _within(spans, start, moment) for tid, spans in all_states.items()}
        cpus = {cpu: _within(spans, start, moment) for cpu, spans in all_cpus.items()}
        kinds = dict.fromkeys(
            ("running", "waiting_cpu", "ours_ran", "ours_preempted", "asleep"), 0.0
        )
        foreign: dict[str, float] = collections.defaultdict(float)
        by_thread: dict[str, dict[str, float]] = {
            "ours_ran": collections.defaultdict(float),
            "ours_preempted": collections.defaultdict(float),
        }
        for a, b, state in states.get(sensor, []):
            a, b = max(a, start), min(b, moment)
            if b <= a:
                continue
            if state == RUNNING:
                kinds["running"] += b - a
                continue
            if state == RUNNABLE:
                kinds["waiting_cpu"] += b - a
            else:
                for lo, hi, kind, tids in _sleep_kinds(states, others, a, b):
                    kinds[kind] += hi - lo
                    for tid in tids:
                        by_thread[kind][names.get(tid, str(tid))] += hi - lo
            for spans in cpus.values():
                for c0, c1, tid in spans:
                    if tid not in ours and tid != 0:
                        took = max(0.0, min(b, c1) - max(a, c0))
                        if took > 0:
                            foreign[f"{trace.names.get(tid, '?')}:{tid}"] += took
        reports.append(
            {
                "at": round(moment, 6),
                "ms": {kind: round(seconds * 1e3, 3) for kind, seconds in kinds.items()},
                **{
                    f"{kind}_by_thread_ms": {
                        name: round(seconds * 1e3, 3) for name, seconds in _most(threads)
                    }
                    for kind, threads in by_thread.items()
                },
                "others_on_cpu_ms": {
                    task: round(seconds * 1e3, 3) for task, seconds in _most(foreign, 4)
                },
            }
        )
    return reports


def _most(seconds: dict[str, float], n: int | None = None) -> list[tuple[str, float]]:
    return sorted(seconds.items(), key=lambda item: -item[1])[:n]


def _sleep_kinds(
    states: dict[int, list[tuple[float, float, str]]], others: set[int], start: float, end: float
) -> Iterator[tuple[float, float, str, list[int]]]:
    """Split a sleep of the sensor thread by what the rest of our threads did meanwhile, with
    the threads that ran (or, where none ran, were runnable)."""
    cuts = {start, end}
    for tid in others:
        for a, b, _ in states.get(tid, []):
            cuts.update(t for t in (a, b) if start < t < end)
    edges = sorted(cuts)
    for lo, hi in itertools.pairwise(edges):
        middle = 0.5 * (lo + hi)
        now = {
            tid: state
            for tid in others
            for a, b, state in states.get(tid, [])
            if a <= middle < b and state != ASLEEP
        }
        running = [tid for tid, state in now.items() if state == RUNNING]
        if running:
            yield lo, hi, "ours_ran", running
        elif now:
            yield lo, hi, "ours_preempted", list(now)
        else:
            yield lo, hi, "asleep", []


class SchedulerTrace:
    """ftrace's scheduler events recorded while the context is open (root, tracefs)."""

    def __init__(self, root: Path = TRACEFS, buffer_kb: int = BUFFER_KB) -> None:
        self.root = root
        self.buffer_kb = buffer_kb
        self.text = ""
        #: Events the kernel dropped for want of buffer (0: the trace is whole).
        self.overrun = 0

    def _write(self, name: str, value: str) -> None:
        (self.root / name).write_text(value + "\n")

    def check(self) -> None:
        """Raise EmulationError saying what is missing unless tracing can start (mounts
        tracefs where it is not): call before a run, not after its threads have started."""
        if os.geteuid() != 0:
            raise EmulationError("--sched-trace needs root: ftrace is the kernel's")
        if not (self.root / "trace").exists():
            subprocess.run(["mount", "-t", "tracefs", "nodev", str(self.root)], capture_output=True)
            if not (self.root / "trace").exists():
                raise EmulationError(
                    f"--sched-trace: no tracefs at {self.root} and it would not mount "
                    f"(mount -t tracefs nodev {self.root})"
                )

    def __enter__(self) -> SchedulerTrace:
        self.check()
        self._write("tracing_on", "0")
        self._write("trace", "")
        self._write("trace_clock", "mono")
        self._write("buffer_size_kb", str(self.buffer_kb))
        self._write("set_event", " ".join(EVENTS))
        self._write("tracing_on", "1")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._write("tracing_on", "0")
        with contextlib.suppress(OSError):
            self.text = (self.root / "trace").read_text()
            self.overrun = sum(
                int(line.split()[1])
                for stats in (self.root / "per_cpu").glob("cpu*/stats")
                for line in stats.read_text().splitlines()
                if line.startswith("overrun:")
            )
        self._write("set_event", "")
        self._write("trace", "")


class OverflowMoments(logging.Handler):
    """Notes when the driver logs a FIFO overflow (``time.monotonic()``, ftrace's ``mono``),
    from which thread (the sensor thread reads), and the process's threads then."""

    def __init__(self, logger: str = "odar.drivers.mpu6050") -> None:
        super().__init__(logging.WARNING)
        self._logger = logging.getLogger(logger)
        self.moments: list[tuple[float, int]] = []  # (when, the logging thread's id)
        self.our_tids: set[int] = set()
        self.thread_names: dict[int, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if "FIFO overflow" not in record.getMessage():
            return
        self.moments.append((time.monotonic(), threading.get_native_id()))
        with contextlib.suppress(OSError):
            self.our_tids.update(int(tid) for tid in os.listdir("/proc/self/task"))
        self.thread_names.update(
            (thread.native_id, thread.name)
            for thread in threading.enumerate()
            if thread.native_id is not None
        )

    def __enter__(self) -> OverflowMoments:
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._logger.removeHandler(self)

    def report(self, trace: SchedulerTrace, before_s: float = BEFORE_S) -> dict[str, Any]:
        """The bench's ``sched_trace``: each overflow explained from the trace."""
        if not self.moments:
            return {"overrun": trace.overrun, "overflows": []}
        parsed = parse(trace.text.splitlines())
        by_thread: dict[int, list[float]] = collections.defaultdict(list)
        for at, sensor in self.moments:
            by_thread[sensor].append(at)
        explained = sorted(
            (
                report | {"sensor_tid": sensor}
                for sensor, moments in by_thread.items()
                for report in explain(
                    parsed, self.our_tids, sensor, moments, before_s, self.thread_names
                )
            ),
            key=lambda report: report["at"],
        )
        return {"overrun": trace.overrun, "before_ms": before_s * 1e3, "overflows": explained}
