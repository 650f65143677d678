"""``odar bench daemon``: latency, CPU, memory and start-up of the daemon on the emulated wearable.

One run of the real daemon (:class:`odar.service.Daemon`) in this process, driven by a
scripted session: idle (Collect, stopped) for a baseline, collect both classes, train
briefly, then infer across alternating sitting and walking for ``--infer-seconds``. The
world runs ``--speed`` times faster than real time (a :class:`ScaledClock`). What each figure
means is in :data:`DEFINITIONS`, which the JSON repeats under ``definitions``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from odar.config import Config, load_config
from odar.drivers.emulated.bus import HostJitter
from odar.drivers.emulated.clock import ScaledClock
from odar.drivers.emulated.mpu6050 import PARTS_BY_WHO_AM_I, GroundTruth
from odar.drivers.mpu6050 import SensorBlock, si_scale
from odar.engine import Engine
from odar.harness.bench.latency_stages import STAGES, StageTrace, stage_figures
from odar.harness.bench.sched_trace import OverflowMoments, SchedulerTrace
from odar.harness.bench.sensor import WireSnapshot, add_adapter_argument, today_poll_interval_s
from odar.harness.data import DEMO_CONFIG, with_artifacts
from odar.harness.demo import DemoRecorder
from odar.harness.emulated_wearable import EmulatedWearable
from odar.harness.scenario import SwitchableMotion
from odar.heartbeat import ThreadPulse
from odar.journal import setup_logging
from odar.notifier import SystemdNotifier
from odar.realtime import SENSOR_THREAD, daemon_thread_priority
from odar.service import Daemon, Inferred
from odar.windows import Window

DEFINITIONS = {
    "sensor_thread_realtime": (
        "whether the daemon's sensor thread ran at SCHED_FIFO (sensor.realtime_priority, as "
        "odar run does with the real sensor; odar.realtime); false: time-sharing, by "
        "--time-sharing or because this process may not (not root, no RLIMIT_RTPRIO)"
    ),
    "threads_realtime": (
        "by thread, whether it ran at SCHED_FIFO: the sensor thread at "
        "sensor.realtime_priority, the daemon's others (the main loop, the window and trainer "
        "threads, the motor's and LED's) and the scenario's odar-scenario one below "
        "(odar.realtime); false: time-sharing, by "
        "--time-sharing, --only-sensor-thread-realtime or because this process may not"
    ),
    "latency": (
        "per inferred window: the clock time when the motor was told (or would have been) "
        "minus window.t_end, the timestamp of the window's last sensor sample. It holds the "
        "sample's wait in the FIFO until the next read (up to the driver's 0.1 s poll), the "
        "ring buffer and window cutter, the bottleneck and the head. virtual_seconds are on "
        "the emulated world's clock; real_seconds = virtual_seconds / speed, the wall time it "
        "took in this run. At speed 1 (--speed 1) the two are the same and are what the "
        "wearable's user feels (at speed S the FIFO wait shrinks S-fold in real time while "
        "the compute does not, so compute shows up S times larger in virtual seconds)"
    ),
    "cpu_seconds_per_sensor_second": (
        "process CPU time (time.process_time: every thread, user + system) divided by the "
        "virtual seconds of sensor data that passed. `infer` spans the first to the last "
        "inferred window; `idle` is the same run's baseline, the daemon stopped in Collect "
        "(the emulated chip and bus, the driver, the ring buffer and the window cutter still "
        "run, nothing is inferred). In this process the emulator's cost is part of both "
        "figures; `infer_minus_idle` is infer mode's own cost (bottleneck, head, motor, "
        "logging). Per sensor second the figures do not depend on --speed. *_by_thread: "
        "the same from each thread's own CPU clock (odar-sensor: driver and emulated chip; "
        "odar-windows: window cutter, and in infer mode bottleneck and head; MainThread: the "
        "signal loop; others: gpiozero, motor, scenario, this bench's meter), which the rest "
        "of a shared machine does not disturb"
    ),
    "memory": (
        "peak_rss_mib: resource.getrusage(RUSAGE_SELF).ru_maxrss, the process's peak resident "
        "set (at least the VmRSS read below: the kernel's high-water mark can lag it); "
        "current_rss_mib: VmRSS from /proc/self/status at the end of the infer phase. "
        "Both include the emulator and this bench (a few MiB). "
        "training_process_peak_rss_mib: RUSAGE_CHILDREN's ru_maxrss after the run, the peak "
        "resident set of the largest child that ended: the training process "
        "(odar.training_process; the host stall watchers above speed 1 are a quarter of its "
        "size), which the unit's MemoryHigh= and MemoryMax= count with the daemon's"
    ),
    "sensor": (
        "the driver's counters over the whole run, the faults injected, and, from the idle "
        "meter's start (READY=1 + 1 virtual s) to the end, the stream's own bus traffic: "
        "bus_transactions_per_second (one STOP each) per virtual second and bus_bytes_per_sample "
        "(address and data bytes on the wire, as odar bench sensor counts them) per sample "
        "delivered; adapter: the kernel I2C driver the emulated bus behaved as; "
        "status_with_count: INT_STATUS read in the same transaction as FIFO_COUNT"
    ),
    "host_lateness": (
        "a bench thread sleeping 10 ms at a time, in real time, all through the run: how much "
        "later than asked it woke (p50, p99, max; wake-ups more than 25 ms late), and the "
        "1-minute load average at the end. The sensor thread wakes the same way: at 1 kHz an "
        "MPU-6050's FIFO holds 81 ms at +5 %, so a host this late overflows it"
    ),
    "garbage_collections": (
        "the interpreter's garbage collections while the sensor streamed (from READY=1, sent "
        "once the first samples are in), by generation: how many, and the longest in real ms. A "
        "collection holds the GIL throughout: a sensor read due meanwhile waits for it. What "
        "start built is frozen out of them (odar.gc_pauses)"
    ),
    "garbage_collections_at_start": (
        "the same before READY=1: the daemon's start, with its one full collection "
        "before the sensor streams (odar.gc_pauses), which delays no read"
    ),
    "emulator_paused_share": (
        "the share of the run's real time the emulated chip spent computing the samples due, "
        "not counted as the world's time (ScaledClock.paused: a chip does it in silicon)"
    ),
    "host_stalls": (
        "above speed 1: per CPU, the stalls a watcher process pinned to it at the top "
        "SCHED_FIFO priority saw (wake-ups over 0.25 ms late: the kernel or the hypervisor ran "
        "none of our threads), their time less 0.05 ms each and the longest; counted_once_ms: "
        "the real time the world's clock ran at speed 1 for them (odar.drivers.emulated."
        "host_stalls; the wearable has no hypervisor)"
    ),
    "interpreter_switch_interval_ms": (
        "sys.getswitchinterval() during the run: the default (5 ms) divided by --speed above "
        "speed 1 (EmulatedWearable.run, for every world that runs faster), so that the wait "
        "for the GIL is as long in the world's time as at speed 1"
    ),
    "latency_stages": (
        "with --stages, per inferred window whose last sample the chip's ground truth "
        "matched, on the world's clock, p50 / p99 / max ms of: "
        + "; ".join(f"{name}: {what}" for name, what in STAGES.items())
        + ". truth: every delivered sample looked up in the chip's record (misaligned: "
        "matches no sample the chip took; settling: taken while the gyro settled)"
    ),
    "sched_trace": (
        "with --sched-trace (root, ftrace), per FIFO overflow, the real ms before the driver "
        "logged it (before_ms) split by what the sensor thread did: running, waiting_cpu "
        "(runnable, no CPU), ours_ran (asleep while another thread of ours ran), "
        "ours_preempted (asleep while none of ours ran and one was runnable: a preempted "
        "GIL holder), asleep (nothing of ours wanted a CPU); others_on_cpu_ms: the other "
        "processes that ran meanwhile. overrun: events the kernel dropped (harness.bench."
        "sched_trace)"
    ),
    "startup": (
        "real seconds to READY=1: process_start_to_ready from the kernel's start time of this "
        "process (includes the Python and numpy/TFLite imports), daemon_to_ready from "
        "the emulated wearable and the Daemon being built (wearable opened, artifacts checked "
        "and loaded, stores opened; then Daemon.run(): sensor probed and started, first "
        "samples read); READY=1 is the notifier's call"
    ),
}

#: Samples of each class collected before training (at least the artifacts' train batch).
COLLECT_PER_CLASS = 12
#: Epochs the bench trains before inferring: enough to separate sitting from walking.
TRAIN_EPOCHS = 80
#: Virtual seconds at the start of the baseline and before its end that are left out.
BASELINE_MARGIN = 1.0
#: Virtual seconds between reads of VmRSS while inferring (a file read on the window thread).
RSS_EVERY = 5.0
#: Virtual seconds per activity while inferring.
INFER_SEGMENT = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--config",
        type=Path,
        default=DEMO_CONFIG,
        help="configuration whose artifacts and sensor settings are used (default: the demo's)",
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=None,
        help="the artifacts directory (default: the config's if present, else the installed "
        "ones named by /etc/odar/odar.yaml, else /opt/odar/artifacts)",
    )
    parser.add_argument("--speed", type=float, default=10.0, help="virtual seconds per second")
    parser.add_argument(
        "--infer-seconds", type=float, default=120.0, help="virtual seconds of infer mode"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=30.0, help="virtual seconds of the idle baseline"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the emulated wearer")
    parser.add_argument(
        "--train-epochs",
        type=int,
        default=TRAIN_EPOCHS,
        help=f"epochs trained before inferring (default {TRAIN_EPOCHS}); more keep the trainer "
        "busy beside the sensor for longer",
    )
    parser.add_argument("--verbose", action="store_true", help="the daemon's info lines on stderr")
    parser.add_argument(
        "--rate", type=float, default=None, help="sensor rate, Hz (default: config)"
    )
    parser.add_argument(
        "--chip-clock", type=float, default=0.0, help="chip clock error (0.05: 5 %% fast)"
    )
    parser.add_argument("--jitter", action="store_true", help="host jitter before transactions")
    parser.add_argument(
        "--part", type=lambda t: int(t, 0), default=0x68, help="WHO_AM_I of the emulated part"
    )
    parser.add_argument(
        "--silent-reset-every", type=float, default=0.0, help="a brown-out every S virtual s"
    )
    parser.add_argument(
        "--stall-every", type=float, default=0.0, help="a 330 ms host stall every S virtual s"
    )
    add_adapter_argument(parser)
    parser.add_argument(
        "--time-sharing",
        action="store_true",
        help="leave the sensor thread time-sharing (by default it takes SCHED_FIFO at "
        "sensor.realtime_priority as with the real sensor, where permitted)",
    )
    parser.add_argument(
        "--only-sensor-thread-realtime",
        action="store_true",
        help="leave the daemon's other threads and the scenario's time-sharing (by default they "
        "take SCHED_FIFO one below the sensor thread; for comparison with sessions before 13)",
    )
    parser.add_argument(
        "--host-stalls-charged",
        action="store_true",
        help="above speed 1, charge the world speed times over for real time in which the host "
        "ran none of our threads (by default it counts once: EmulatedWearable.run)",
    )
    parser.add_argument(
        "--baseline-loop",
        action="store_true",
        help="run the daemon a second time with the sensor loop it had before, for comparison",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="split window-to-motor latency into its stages against the chip's ground truth "
        "(keeps every sample in memory: the memory figures grow)",
    )
    parser.add_argument(
        "--sched-trace",
        action="store_true",
        help="record the kernel's scheduler events (ftrace; root) and explain each FIFO "
        "overflow: what the sensor thread did and waited for in the 30 ms before it",
    )
    parser.add_argument(
        "--threads-only", action="store_true", help="only the 1-vs-2-threads bottleneck timing"
    )
    parser.add_argument(
        "--threads-windows",
        type=int,
        default=300,
        help="windows timed through the bottleneck with 1 and with 2 interpreter threads "
        "(0 skips it)",
    )


class TimingNotifier(SystemdNotifier):
    """The real notifier (a no-op without NOTIFY_SOCKET) that also notes when READY=1 went."""

    def __init__(self) -> None:
        super().__init__()
        self.ready_real: float | None = None

    def ready(self) -> bool:
        if self.ready_real is None:
            self.ready_real = time.monotonic()
        return super().ready()


@dataclasses.dataclass(frozen=True)
class CpuMark:
    """Virtual time, process CPU time and CPU time per live thread (by name) at one moment."""

    virtual: float
    process: float
    threads: dict[str, float]

    @classmethod
    def now(cls, virtual: float) -> CpuMark:
        return cls(virtual, time.process_time(), thread_cpu_seconds())

    def per_sensor_second(self, later: CpuMark) -> tuple[float, float, dict[str, float]] | None:
        """(sensor seconds, process CPU per sensor second, per thread) from here to *later*."""
        span = later.virtual - self.virtual
        if span <= 0:
            return None
        threads = {
            name: (later.threads[name] - self.threads[name]) / span
            for name in sorted(self.threads.keys() & later.threads.keys())
        }
        return span, (later.process - self.process) / span, threads


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds each live thread has used, from its POSIX per-thread CPU clock."""
    seconds: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            seconds[thread.name] = seconds.get(thread.name, 0.0) + time.clock_gettime(clock)
        except (OSError, ProcessLookupError):
            continue  # it ended between enumerate() and here
    return seconds


class BenchRecorder(DemoRecorder):
    """The demo's counts per true activity, plus CPU marks at the first and latest window,
    and with ``stages`` the moments that split each window's latency."""

    def __init__(self, motion: SwitchableMotion, stages: StageTrace | None = None) -> None:
        super().__init__(motion)
        self.first: CpuMark | None = None
        self.last: CpuMark | None = None
        self.rss_kib: int | None = None
        self._rss_read_at = float("-inf")
        self.stages = stages

    def block_read(self, block: SensorBlock) -> None:
        if self.stages is not None:
            self.stages.block_read(block)

    def window_cut(self, window: Window) -> None:
        if self.stages is not None:
            self.stages.window_cut(window)

    def inferred(self, inferred: Inferred) -> None:
        if self.stages is not None:
            self.stages.inferred(inferred.window, inferred.decided_at)
        super().inferred(inferred)
        mark = CpuMark.now(inferred.decided_at)
        if self.first is None:
            self.first = mark
        self.last = mark
        if inferred.decided_at - self._rss_read_at >= RSS_EVERY:
            self.rss_kib = current_rss_kib()
            self._rss_read_at = inferred.decided_at


class IdleMeter(threading.Thread):
    """Process CPU time over a span of virtual time while the daemon sits idle."""

    def __init__(self, daemon: Daemon, seconds: float, bus: Any) -> None:
        super().__init__(name="bench-idle-meter", daemon=True)
        self._daemon = daemon
        self._bus = bus
        self._seconds = seconds
        self.start_mark: CpuMark | None = None
        self.end_mark: CpuMark | None = None
        #: The bus and the driver's samples where the meter starts: the stream's own traffic
        #: is counted from there on (the start-up's configuration writes are not).
        self.bus_start: tuple[float, WireSnapshot, int] | None = None

    def run(self) -> None:
        while self._daemon.ready_at is None:
            if self._daemon.signals.stop_requested:
                return
            time.sleep(0.01)
        clock = self._daemon.wearable.clock
        begin = self._daemon.ready_at + BASELINE_MARGIN
        end = self._daemon.ready_at + self._seconds - BASELINE_MARGIN
        self._wait_for(clock, begin)
        self.start_mark = CpuMark.now(clock.monotonic())
        self.bus_start = (
            clock.monotonic(),
            WireSnapshot.of(self._bus),
            self._daemon.wearable.sensor.counters.samples,
        )
        self._wait_for(clock, end)
        self.end_mark = CpuMark.now(clock.monotonic())

    @staticmethod
    def _wait_for(clock: Any, moment: float) -> None:
        # Sleep on the world's clock rather than poll: the meter must not add to what it meters.
        while (left := moment - clock.monotonic()) > 0:
            clock.sleep(left)


def current_rss_kib() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def process_age_seconds() -> float | None:
    """Real seconds since the kernel started this process (/proc/self/stat field 22)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as uptime:
            since_boot = float(uptime.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return since_boot - started


def bench_scenario(
    idle_seconds: float, infer_seconds: float, seed: int, train_epochs: int = TRAIN_EPOCHS
) -> dict[str, Any]:
    segments = max(1, round(infer_seconds / INFER_SEGMENT))
    infer_steps: list[dict[str, Any]] = []
    for index in range(segments):
        infer_steps += [
            {"activity": "walking" if index % 2 else "sitting"},
            {"wait": infer_seconds / segments},
        ]
    collect = {"until": {"collected": COLLECT_PER_CLASS, "timeout": 300}}
    return {
        "description": "odar bench daemon: idle baseline, collect, train briefly, infer",
        "wearer": {"placement": "wrist", "seed": seed},
        "steps": [
            {"activity": "sitting"},
            {"wait": idle_seconds},
            {"press": "start"},
            collect,
            {"press": "start"},
            {"press": "class"},
            {"activity": "walking"},
            {"press": "start"},
            collect,
            {"press": "start"},
            {"press": "mode"},
            {"press": "start"},
            {"until": {"epochs": train_epochs, "timeout": max(600, train_epochs)}},
            {"press": "start"},
            {"press": "mode"},
            {"activity": "sitting"},
            {"press": "start"},
            *infer_steps,
            {"press": "start"},
            {"end": "stop"},
        ],
    }


def bench_config(
    base: Config,
    scenario: Path,
    state_dir: Path,
    speed: float,
    seed: int,
    time_sharing: bool = False,
) -> Config:
    emulated = dataclasses.replace(
        base.sensor.emulated, scenario=str(scenario), speed=speed, seed=seed
    )
    # At every speed: at speed 10 and 1 kHz the sensor thread, the emulated chip's computing
    # included, takes about a third of a core, and time-sharing lost samples where SCHED_FIFO
    # lost none (docs/sensor-figures.md, session 7).
    priority = None if time_sharing else base.sensor.realtime_priority
    sensor = dataclasses.replace(
        base.sensor, backend="emulated", emulated=emulated, realtime_priority=priority
    )
    paths = dataclasses.replace(base.paths, state_dir=state_dir)
    # The bench trains a fixed number of epochs and stops with the button.
    training = dataclasses.replace(base.training, stop_when="never")
    return dataclasses.replace(base, sensor=sensor, paths=paths, training=training)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run(args: argparse.Namespace) -> int:
    setup_logging("info" if args.verbose else "warning")
    if (
        not args.speed > 0
        or args.infer_seconds <= 0
        or args.idle_seconds <= 3 * BASELINE_MARGIN
        or args.train_epochs < 1
    ):
        raise SystemExit(
            "odar bench daemon: --speed and --infer-seconds must be > 0, --train-epochs >= 1, "
            f"--idle-seconds > {3 * BASELINE_MARGIN:g}"
        )
    if args.sched_trace:
        SchedulerTrace().check()
    base = with_artifacts(load_config(args.config), args.artifacts)
    if args.rate is not None:
        sensor = dataclasses.replace(base.sensor, rate_hz=args.rate)
        base = dataclasses.replace(base, sensor=sensor)
    if args.threads_only:
        threads = time_threads(base, max(1, args.threads_windows))
        print(json.dumps(threads, indent=2) if args.json else render_threads(threads))
        return 0
    report = run_once(args, base, BenchDaemon)
    if args.baseline_loop:
        report["today_loop"] = run_once(args, base, TodaysLoopDaemon)
    if args.threads_windows > 0:
        report["threads"] = time_threads(base, args.threads_windows)
    status = report["exit_status"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
        if "today_loop" in report:
            print(render(report["today_loop"]).replace("odar bench daemon", "today's loop"))
        if "threads" in report:
            print(render_threads(report["threads"]))
    return status


def run_once(
    args: argparse.Namespace, base: Config, daemon_type: type[BenchDaemon]
) -> dict[str, Any]:
    """One run of the daemon (or of the bench's copy with the old sensor loop)."""
    with tempfile.TemporaryDirectory(prefix="odar-bench-") as scratch:
        scenario = Path(scratch) / "bench.yaml"
        scenario.write_text(
            yaml.safe_dump(
                bench_scenario(args.idle_seconds, args.infer_seconds, args.seed, args.train_epochs)
            ),
            encoding="utf-8",
        )
        config = bench_config(
            base,
            scenario,
            Path(scratch) / "state",
            args.speed,
            args.seed,
            time_sharing=args.time_sharing,
        )
        age_at_run = process_age_seconds()
        run_called = time.monotonic()
        world = EmulatedWearable.open(config, args.config.resolve().parent)
        world.count_host_stalls_once = not args.host_stalls_charged
        if not args.only_sensor_thread_realtime:
            # The wearer's motion takes no CPU on a wearable: the thread that emulates it must
            # not hold the GIL from the sensor thread while another process has its CPU.
            world.scenario_realtime_priority = daemon_thread_priority(
                config.sensor.realtime_priority
            )
        unkind = make_unkind(world, args)
        stages = None
        if args.stages:
            truth = GroundTruth()
            bus_trace: list[tuple[float, float, float, float, float]] = []
            world.sensor.chip.truth, world.sensor.bus.trace = truth, bus_trace
            stages = StageTrace(world.wearable.clock, truth, bus_trace)
        recorder = BenchRecorder(world.motion, stages)
        notifier = TimingNotifier()
        daemon = daemon_type(config, world.wearable, notifier=notifier, observer=recorder)
        daemon.only_sensor_thread_realtime = args.only_sensor_thread_realtime
        idle = IdleMeter(daemon, args.idle_seconds, world.sensor.bus)
        idle.start()
        unkind.start()
        host = HostLatenessMeter()
        host.start()
        collections = GarbageCollectionMeter(streaming=lambda: daemon.ready_at is not None)
        tracer: SchedulerTrace | None = None
        overflows = OverflowMoments()
        with contextlib.ExitStack() as measuring:
            measuring.enter_context(collections)
            if args.sched_trace:
                tracer = measuring.enter_context(SchedulerTrace())
                measuring.enter_context(overflows)
            status = world.run(daemon)
        unkind.stop.set()
        host.stop.set()
        wall = time.monotonic() - run_called
        idle.join(timeout=1.0)
        report = summarise(daemon, recorder, notifier, idle, args, run_called, age_at_run)
        report["threads_realtime"] = threads_realtime(daemon, world)
        report["wall_seconds"] = round(wall, 2)
        report["exit_status"] = status
        report["sensor"] = sensor_figures(daemon, world, unkind, idle.bus_start)
        report["host_lateness"] = host.figures()
        report["garbage_collections"] = collections.figures()
        report["garbage_collections_at_start"] = collections.figures(at_start=True)
        if stages is not None:
            times = stages.window_times(si_scale(config.sensor.settings))
            report["latency_stages"] = stage_figures(times) if times is not None else None
            report["truth"] = stages.truth_summary
        report["interpreter_switch_interval_ms"] = (world.switch_interval_s or 0.0) * 1e3
        clock = world.wearable.clock
        paused = clock.paused_seconds if isinstance(clock, ScaledClock) else 0.0
        # The real time the emulated chip's computing took, not counted as the world's.
        report["emulator_paused_share"] = paused / wall
        report["host_stalls"] = host_stall_figures(world)
        if tracer is not None:
            report["sched_trace"] = overflows.report(tracer)
    return report


def host_stall_figures(world: EmulatedWearable) -> dict[str, Any]:
    """What the host stall watch saw, and the real time counted once in the world's time."""
    watch = world.host_stalls
    if watch is None:
        if world.config.sensor.emulated.speed <= 1:
            return {"watching": False, "why": "speed 1"}
        why = "--host-stalls-charged or not permitted (see log)"
        return {"watching": False, "why": why}
    clock = world.wearable.clock
    counted = clock.stall_seconds if isinstance(clock, ScaledClock) else 0.0
    return {**watch.figures(), "counted_once_ms": round(counted * 1e3, 3)}


class GarbageCollectionMeter:
    """Every collection of the interpreter's cycle collector while in the ``with`` block. With
    ``streaming`` (called in the collector's callback, so it must take no lock), those while
    it says False are kept apart in :attr:`at_start`: the daemon's start, with its collection
    before the sensor streams (:mod:`odar.gc_pauses`)."""

    def __init__(self, streaming: Callable[[], bool] | None = None) -> None:
        self._streaming = streaming
        self._started = 0.0  # collections never overlap: the collector holds the GIL
        self._during_stream = True
        self.pauses: list[tuple[int, float]] = []  # (generation, real seconds)
        self.at_start: list[tuple[int, float]] = []

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
            self._during_stream = self._streaming is None or self._streaming()
        else:
            kept = self.pauses if self._during_stream else self.at_start
            kept.append((info["generation"], now - self._started))

    def __enter__(self) -> GarbageCollectionMeter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def figures(self, at_start: bool = False) -> dict[str, dict[str, float]]:
        by_generation: dict[str, dict[str, float]] = {}
        for generation in range(3):
            pauses = [
                seconds
                for gen, seconds in (self.at_start if at_start else self.pauses)
                if gen == generation
            ]
            by_generation[str(generation)] = {
                "count": len(pauses),
                "max_ms": max(pauses, default=0.0) * 1e3,
            }
        return by_generation


class HostLatenessMeter(threading.Thread):
    """How late this process's threads wake on this machine while the daemon runs: sleeps of
    HOST_PROBE_S, each one's overshoot in real time. At 1 kHz the FIFO holds ~81 ms: a host
    that leaves the sensor thread unscheduled for longer overflows it whatever the loop."""

    def __init__(self) -> None:
        super().__init__(name="bench-host-lateness", daemon=True)
        self.stop = threading.Event()
        self.overshoots: list[float] = []

    def run(self) -> None:
        while not self.stop.is_set():
            before = time.monotonic()
            time.sleep(HOST_PROBE_S)
            self.overshoots.append(time.monotonic() - before - HOST_PROBE_S)

    def figures(self) -> dict[str, Any]:
        late = np.asarray(self.overshoots) * 1e3
        if not late.size:
            return {"sleeps": 0}
        return {
            "sleeps": int(late.size),
            "p50_ms": float(np.percentile(late, 50)),
            "p99_ms": float(np.percentile(late, 99)),
            "max_ms": float(late.max()),
            "over_25_ms": int(np.count_nonzero(late > 25.0)),
            "load_average_1min_at_end": os.getloadavg()[0],
        }


class Unkindness(threading.Thread):
    """Silent resets and host stalls on the world's clock, while the daemon runs."""

    def __init__(self, world: EmulatedWearable, reset_every: float, stall_every: float) -> None:
        super().__init__(name="bench-unkindness", daemon=True)
        self.world = world
        self.reset_every, self.stall_every = reset_every, stall_every
        self.stop = threading.Event()
        self.resets = self.stalls = 0

    def run(self) -> None:
        if self.reset_every <= 0 and self.stall_every <= 0:
            return
        clock = self.world.wearable.clock
        begin = clock.monotonic()
        next_reset = begin + self.reset_every if self.reset_every > 0 else float("inf")
        next_stall = begin + self.stall_every if self.stall_every > 0 else float("inf")
        while not self.stop.is_set():
            now = clock.monotonic()
            if now >= next_reset:
                self.world.sensor.chip.brown_out()
                self.resets += 1
                next_reset += self.reset_every
            if now >= next_stall:
                self.world.sensor.bus.inject_stall(STALL_SECONDS)
                self.stalls += 1
                next_stall += self.stall_every
            clock.sleep(
                min(next_reset, next_stall) - now if min(next_reset, next_stall) > now else 0.01
            )


#: Real seconds each host-lateness probe sleeps.
HOST_PROBE_S = 0.010

#: The host stall of the issue's fault scenario.
STALL_SECONDS = 0.330


def make_unkind(world: EmulatedWearable, args: argparse.Namespace) -> Unkindness:
    """The chip and host of the arguments: clock error, jitter, part; faults on a thread."""
    chip, bus = world.sensor.chip, world.sensor.bus
    chip.clock_offset = args.chip_clock
    bus.adapter = args.adapter
    if args.jitter:
        bus.jitter = HostJitter(seed=args.seed)
    if args.part != chip.peek(0x75):
        chip.inject_who_am_i(args.part)
        chip.fifo_capacity = PARTS_BY_WHO_AM_I[args.part][1]
    return Unkindness(world, args.silent_reset_every, args.stall_every)


def sensor_figures(
    daemon: Daemon,
    world: EmulatedWearable,
    unkind: Unkindness,
    bus_start: tuple[float, WireSnapshot, int] | None,
) -> dict[str, Any]:
    counters = daemon.wearable.sensor.counters
    stream: dict[str, Any] = {}
    if bus_start is not None:
        began, wire, samples = bus_start
        now, span = WireSnapshot.of(world.sensor.bus), world.wearable.clock.monotonic() - began
        delivered = counters.samples - samples
        stream = {
            "stream_virtual_seconds": span,
            "bus_transactions_per_second": (now.transactions - wire.transactions) / span,
            "bus_bytes_per_sample": (now.wire_bytes - wire.wire_bytes) / max(1, delivered),
        }
    return {
        "adapter": world.sensor.bus.adapter,
        "status_with_count": daemon.wearable.sensor.status_with_count,
        **stream,
        "chip_clock_offset": world.sensor.chip.clock_offset,
        "jitter": world.sensor.bus.jitter is not None,
        "part": f"{world.sensor.chip.peek(0x75):#04x}",
        "fifo_bytes": world.sensor.chip.fifo_capacity,
        **{
            k: getattr(counters, k)
            for k in (
                "samples",
                "lost",
                "gaps",
                "overflows",
                "resets_detected",
                "misalignments",
                "i2c_errors",
            )
        },
        "silent_resets_injected": unkind.resets,
        "stalls_injected": unkind.stalls,
        "chip_fifo_bytes_lost": world.sensor.chip.fifo_bytes_lost,
        "read_mode": daemon.wearable.sensor.read_mode,
    }


def threads_realtime(daemon: BenchDaemon, world: EmulatedWearable) -> dict[str, bool]:
    scheduled = daemon.threads_realtime
    player = world.scenario_player
    if player is not None and player.realtime is not None:
        scheduled["odar-scenario"] = player.realtime
    return scheduled


class BenchDaemon(Daemon):
    """The daemon with its threads scheduled as with the real sensor (odar.realtime): the
    sensor thread at SCHED_FIFO sensor.realtime_priority, the others one below, unless
    :func:`bench_config` set it to null for --time-sharing (or :attr:`only_sensor_thread_realtime`
    keeps the others time-sharing, as before session 13). The product keeps the emulated
    backend time-sharing (its chip computes inside each read, a third of a core at speed 10 and
    1 kHz, which a demo should not take at real-time priority); the bench wants the real
    thing."""

    #: --only-sensor-thread-realtime: the daemon's other threads time-sharing.
    only_sensor_thread_realtime: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._threads_realtime: dict[str, bool] = {}
        self._threads_realtime_lock = threading.Lock()

    @property
    def threads_realtime(self) -> dict[str, bool]:
        """Whether each of the daemon's threads got SCHED_FIFO, by name (the main loop's
        thread as "main loop"), once it has started."""
        with self._threads_realtime_lock:
            return dict(self._threads_realtime)

    @property
    def sensor_thread_realtime(self) -> bool | None:
        """Whether the sensor thread got SCHED_FIFO (None: the thread has not started)."""
        return self.threads_realtime.get(SENSOR_THREAD)

    def _scheduled(self, name: str, realtime: bool) -> None:
        with self._threads_realtime_lock:
            self._threads_realtime[name] = realtime

    def _realtime_scheduling(self) -> bool:
        return True

    def _thread_priority(self, name: str) -> int | None:
        if self.only_sensor_thread_realtime and name != SENSOR_THREAD:
            return None
        return super()._thread_priority(name)


class TodaysLoopDaemon(BenchDaemon):
    """The daemon with the sensor loop it had before odar.sensor_reader: read, append, then
    sleep the old poll interval (min(0.1 s, half an MPU-6050 FIFO)), in a thread scheduled as
    the product's (odar.realtime). For comparison only."""

    def _sensor_loop(self) -> None:
        sensor, clock = self.wearable.sensor, self.wearable.clock
        interval = today_poll_interval_s(sensor.actual_rate_hz)
        pulse = ThreadPulse(self.heartbeats, "odar-sensor")
        while not self._halt.is_set():
            block = sensor.read()
            if len(block) or block.gap:
                self.ring.append(block)
            if len(block) or sensor.recovering:
                pulse.beat()
            clock.sleep(interval)


def time_threads(base: Config, windows: int) -> dict[str, Any]:
    """The bottleneck on the same windows with 1 and 2 interpreter threads, interleaved so
    both see the same machine load: per-window wall time percentiles in ms."""
    rng = np.random.default_rng(0)
    engines = {n: Engine.load(base.paths.artifacts_dir, n) for n in (1, 2)}
    shape = engines[1].bottleneck.window_shape
    batch = rng.normal(0.0, 1.0, size=(windows, *shape)).astype(np.float32)
    times: dict[int, list[float]] = {1: [], 2: []}
    for window in batch:
        for n, engine in engines.items():
            started = time.perf_counter()
            engine.bottleneck.features(window)
            times[n].append(time.perf_counter() - started)
    return {
        f"{n}_thread{'s' if n > 1 else ''}": {
            "windows": windows,
            "p50_ms": float(np.percentile(t, 50) * 1e3),
            "p99_ms": float(np.percentile(t, 99) * 1e3),
            "max_ms": float(np.max(t) * 1e3),
        }
        for n, t in times.items()
    }


def render_threads(threads: dict[str, Any]) -> str:
    lines = ["bottleneck per window, interleaved on this machine:"]
    for name, t in threads.items():
        lines.append(
            f"  {name}: p50 {t['p50_ms']:.3f} ms, p99 {t['p99_ms']:.3f} ms, "
            f"max {t['max_ms']:.3f} ms over {t['windows']} windows"
        )
    return "\n".join(lines)


def summarise(
    daemon: BenchDaemon,
    recorder: BenchRecorder,
    notifier: TimingNotifier,
    idle: IdleMeter,
    args: argparse.Namespace,
    run_called: float,
    age_at_run: float | None,
) -> dict[str, Any]:
    latencies = recorder.latencies
    virtual = {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies) if latencies else None,
    }
    real = {k: (v / args.speed if v is not None else None) for k, v in virtual.items()}
    infer = (
        recorder.first.per_sensor_second(recorder.last)
        if recorder.first is not None and recorder.last is not None
        else None
    )
    baseline = (
        idle.start_mark.per_sensor_second(idle.end_mark)
        if idle.start_mark is not None and idle.end_mark is not None
        else None
    )
    infer_cpu = infer[1] if infer else None
    idle_cpu = baseline[1] if baseline else None
    ready_after_run = notifier.ready_real - run_called if notifier.ready_real is not None else None
    rss = recorder.rss_kib if recorder.rss_kib is not None else current_rss_kib()
    windows = dict(recorder.windows)
    return {
        "speed": args.speed,
        "sensor_rate_hz": daemon.config.sensor.rate_hz,
        "hop_samples": daemon.config.inference.hop_samples,
        "runtime": daemon.engine.runtime.name,
        "num_threads": daemon.config.runtime.num_threads,
        "sensor_thread_realtime": daemon.sensor_thread_realtime,
        "latency": {
            "windows": len(latencies),
            "virtual_seconds": virtual,
            "real_seconds": real,
        },
        "cpu_seconds_per_sensor_second": {
            "infer": infer_cpu,
            "idle": idle_cpu,
            "infer_minus_idle": (
                infer_cpu - idle_cpu if infer_cpu is not None and idle_cpu is not None else None
            ),
            "infer_sensor_seconds": infer[0] if infer else None,
            "idle_sensor_seconds": baseline[0] if baseline else None,
            "infer_by_thread": infer[2] if infer else None,
            "idle_by_thread": baseline[2] if baseline else None,
        },
        "memory": {
            # The kernel's high-water mark can lag a VmRSS read: the peak is at least that.
            "peak_rss_mib": max(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss if rss is not None else 0
            )
            / 1024,
            "current_rss_mib": rss / 1024 if rss is not None else None,
            "training_process_peak_rss_mib": (
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 or None
            ),
        },
        "startup": {
            "process_start_to_ready_seconds": (
                age_at_run + ready_after_run
                if age_at_run is not None and ready_after_run is not None
                else None
            ),
            "daemon_to_ready_seconds": ready_after_run,
        },
        "inference": {
            "windows": windows,
            "motor_pulses": {a: recorder.pulses.get(a, 0) for a in windows},
        },
        "epochs": daemon.latest.get().epoch,
        "definitions": DEFINITIONS,
    }


def thread_figure(by_thread: dict[str, float] | None, name: str = "odar-windows") -> float | None:
    return by_thread.get(name) if by_thread else None


def render(report: dict[str, Any]) -> str:
    def number(value: float | None, unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value * scale:.{digits}f}{unit}"

    latency, cpu = report["latency"], report["cpu_seconds_per_sensor_second"]
    memory, startup = report["memory"], report["startup"]
    lines = [
        "",
        f"odar bench daemon (speed {report['speed']:g}, {report['sensor_rate_hz']:g} Hz, "
        f"hop {report['hop_samples']}, {report['runtime']}, sensor thread "
        f"{'SCHED_FIFO' if report['sensor_thread_realtime'] else 'time-sharing'})",
        f"window end -> motor decision over {latency['windows']} windows: "
        f"p50 {number(latency['virtual_seconds']['p50'], ' s')} "
        f"p99 {number(latency['virtual_seconds']['p99'], ' s')} virtual; "
        f"p50 {number(latency['real_seconds']['p50'], ' ms', 1000, 1)} "
        f"p99 {number(latency['real_seconds']['p99'], ' ms', 1000, 1)} real",
        f"CPU s per sensor s: infer {number(cpu['infer'], digits=4)}, "
        f"idle baseline {number(cpu['idle'], digits=4)}, "
        f"infer's own {number(cpu['infer_minus_idle'], digits=4)}; window thread: infer "
        f"{number(thread_figure(cpu['infer_by_thread']), digits=4)}, "
        f"idle {number(thread_figure(cpu['idle_by_thread']), digits=4)}",
        f"memory: peak RSS {number(memory['peak_rss_mib'], ' MiB', digits=1)}, "
        f"now {number(memory['current_rss_mib'], ' MiB', digits=1)}; training process "
        f"peak {number(memory.get('training_process_peak_rss_mib'), ' MiB', digits=1)}",
        f"READY=1 after {number(startup['process_start_to_ready_seconds'], ' s', digits=2)} "
        f"from process start, {number(startup['daemon_to_ready_seconds'], ' s', digits=2)} "
        "from building the Daemon",
        f"{report['epochs']} epochs trained; {report['wall_seconds']} s wall",
    ]
    host = report.get("host_lateness")
    if host and host.get("sleeps"):
        lines.append(
            f"host: 10 ms sleeps woke late by p50 {host['p50_ms']:.1f} ms, p99 "
            f"{host['p99_ms']:.1f} ms, max {host['max_ms']:.0f} ms ({host['over_25_ms']} over "
            f"25 ms); load average {host['load_average_1min_at_end']:.1f}"
        )
    if "emulator_paused_share" in report:
        lines.append(
            f"emulated chip's computing: {report['emulator_paused_share']:.1%} of real time, "
            "not counted as the world's; interpreter switch interval "
            f"{report['interpreter_switch_interval_ms']:.2f} ms"
        )
    stalls = report.get("host_stalls")
    if stalls and stalls.get("watching"):
        per_cpu = stalls["cpus"]
        lines.append(
            "host stalls (counted once in the world's time: "
            f"{stalls['counted_once_ms']:.1f} ms): "
            + ", ".join(
                f"CPU {cpu} {fig['stalls']} (longest {fig['longest_ms']:.1f} ms)"
                for cpu, fig in per_cpu.items()
            )
        )
    collected = report.get("garbage_collections")
    if collected:
        lines.append(
            "garbage collections while streaming: "
            + ", ".join(
                f"generation {gen} {fig['count']:.0f} (longest {fig['max_ms']:.1f} ms)"
                for gen, fig in collected.items()
            )
        )
    sensor = report.get("sensor")
    if sensor:
        lines.append(
            f"sensor: part {sensor['part']} ({sensor['fifo_bytes']}-byte FIFO), chip clock "
            f"{sensor['chip_clock_offset']:+.1%}, jitter {'on' if sensor['jitter'] else 'off'}, "
            f"{sensor['read_mode']} reads; {sensor['samples']} samples, {sensor['lost']} lost, "
            f"{sensor['gaps']} gaps, {sensor['overflows']} overflows; silent resets "
            f"{sensor['silent_resets_injected']} injected / {sensor['resets_detected']} "
            f"detected, stalls {sensor['stalls_injected']} injected"
        )
        if "bus_transactions_per_second" in sensor:
            lines.append(
                f"bus ({sensor['adapter']}, INT_STATUS "
                f"{'with every count' if sensor['status_with_count'] else 'on its own'}): "
                f"{sensor['bus_transactions_per_second']:.1f} transactions/s, "
                f"{sensor['bus_bytes_per_sample']:.2f} bytes/sample"
            )
    return "\n".join(lines)
