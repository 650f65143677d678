"""``odar bench soak``: hours of the daemon's life in one run, watching what must not grow.

The real daemon (:class:`odar.service.Daemon`) on the emulated wearable, ``--speed`` times
faster than real time, goes through one cycle every virtual hour: collect each class for
``--collect-seconds``, train for ``--train-seconds``, infer for the rest of the hour across
alternating sitting and walking. At the end of every virtual hour it prints what a long-lived
service must keep bounded: the process's resident memory, its threads and open file
descriptors, the sample store's size, the bytes the daemon logged (what the journal would
receive), and the objects a full collection of the cycle collector would walk (what start
built is frozen: :mod:`odar.gc_pauses`). After the first hour (artifacts loaded, caches warm,
the store's first records) the resident memory must stay flat:
``rss_growth_after_first_hour_mib`` is the largest minus the smallest reading from hour 1 on,
against :data:`RSS_FLAT_MIB`.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import logging
import os
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from odar import heap
from odar.config import load_config
from odar.harness.bench.daemon import GarbageCollectionMeter, bench_config, current_rss_kib
from odar.harness.demo import DEMO_CONFIG
from odar.harness.emulated_wearable import EmulatedWearable
from odar.journal import StderrFormatter
from odar.service import SAMPLES_FILE, Daemon, Inferred, Observer

HOUR = 3600.0
#: After the first hour, resident memory may move by at most this much (MiB).
RSS_FLAT_MIB = 5.0
#: Virtual seconds per activity while inferring.
INFER_SEGMENT = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hours", type=float, default=8.0, help="virtual hours (default 8)")
    parser.add_argument("--speed", type=float, default=20.0, help="virtual seconds per second")
    parser.add_argument(
        "--collect-seconds",
        type=float,
        default=60.0,
        help="virtual seconds of collecting each class, every hour",
    )
    parser.add_argument(
        "--train-seconds", type=float, default=120.0, help="virtual seconds of training, hourly"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEMO_CONFIG,
        help="configuration whose artifacts, sensor and logging settings are used",
    )
    parser.add_argument(
        "--hour-seconds",
        type=float,
        default=HOUR,
        help="virtual seconds in one 'hour' of the cycle (shorter only to try the bench out)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the emulated wearer")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")


class CountingStream:
    """Where the log lines go instead of a terminal: counts their bytes (journald's share)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0
        self.lines = 0

    def write(self, text: str) -> int:
        data = len(text.encode("utf-8"))
        with self._lock:
            self.bytes += data
            self.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        pass


def count_logging() -> CountingStream:
    """Every INFO-and-above line the daemon logs, formatted as journald would get it."""
    stream = CountingStream()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(StderrFormatter(to_journal=True))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return stream


def soak_scenario(args: argparse.Namespace) -> dict[str, Any]:
    collect, train = args.collect_seconds, args.train_seconds
    # `set`, not blind presses: at speed 20 on a busy machine a press can be taken in late or
    # lost to the buttons' bounce time, and a blind sequence then stays out of step for hours.
    hour: list[dict[str, Any]] = [
        {"activity": "sitting"},
        {"set": {"mode": "collect", "class": 0, "running": True}},
        {"wait": collect},
        {"set": {"running": False}},
        {"activity": "walking"},
        {"set": {"class": 1, "running": True}},
        {"wait": collect},
        {"set": {"running": False}},
        {"set": {"mode": "train", "running": True}},
        {"wait": train},
        # Training may have stopped by itself (its loss settled): then nothing is pressed.
        {"set": {"running": False}},
        {"set": {"mode": "infer", "running": True}},
    ]
    back = [{"set": {"mode": "collect", "running": False}}]
    busy = sum(step.get("wait", 0.0) for step in hour + back)
    infer = args.hour_seconds - busy
    if infer <= 0:
        raise SystemExit("odar bench soak: collecting and training must leave time in the hour")
    segments = max(1, round(infer / INFER_SEGMENT))
    for index in range(segments):
        hour += [
            {"activity": "walking" if index % 2 else "sitting"},
            {"wait": infer / segments},
        ]
    hour += back
    hours = max(1, round(args.hours))
    return {
        "description": "odar bench soak: collect, train, infer, every virtual hour",
        "wearer": {"placement": "wrist", "seed": args.seed},
        "steps": hour * hours + [{"end": "stop"}],
    }


def process_threads() -> int | None:
    """Threads of this process as the kernel counts them (TFLite's pool included)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclasses.dataclass
class Reading:
    hour: int
    real_seconds: float
    rss_mib: float | None
    threads: int | None
    python_threads: int
    fds: int
    store_bytes: int
    journal_bytes: int
    journal_lines: int
    samples: int
    epochs: int
    inferred: int
    #: What a full collection would walk now (the objects not frozen at start) and how many are
    #: frozen (odar.gc_pauses): the first must not grow with the hours.
    gc_walked_objects: int
    gc_frozen_objects: int


class HourlyMeter(threading.Thread):
    """Reads the figures at READY (hour 0) and at the end of every virtual hour after it."""

    def __init__(
        self, daemon: Daemon, journal: CountingStream, hours: int, hour: float, counter: Any
    ) -> None:
        super().__init__(name="bench-soak-meter", daemon=True)
        self._hour = hour
        self._daemon = daemon
        self._journal = journal
        self._hours = hours
        self._counter = counter
        self.readings: list[Reading] = []
        self._real_start = time.monotonic()

    def run(self) -> None:
        daemon = self._daemon
        while daemon.ready_at is None:
            if daemon.signals.stop_requested:
                return
            time.sleep(0.05)
        clock = daemon.wearable.clock
        for hour in range(self._hours + 1):
            moment = daemon.ready_at + hour * self._hour - (1.0 if hour == self._hours else 0.0)
            while (left := moment - clock.monotonic()) > 0:
                if daemon.status().stopping:
                    return
                clock.sleep(min(left, 60.0))
            self.readings.append(self.read(hour))
            print(render_reading(self.readings[-1]), flush=True)

    def read(self, hour: int) -> Reading:
        daemon = self._daemon
        rss = current_rss_kib()
        store = daemon.config.state_dir / SAMPLES_FILE
        status = daemon.status()
        return Reading(
            hour=hour,
            real_seconds=round(time.monotonic() - self._real_start, 1),
            rss_mib=rss / 1024 if rss is not None else None,
            threads=process_threads(),
            python_threads=threading.active_count(),
            fds=open_fds(),
            store_bytes=store.stat().st_size if store.exists() else 0,
            journal_bytes=self._journal.bytes,
            journal_lines=self._journal.lines,
            samples=sum(status.counts),
            epochs=status.epoch,
            inferred=self._counter.count,
            gc_walked_objects=len(gc.get_objects()),
            gc_frozen_objects=gc.get_freeze_count(),
        )


class InferCounter(Observer):
    """Counts inferred windows (the soak checks that Infer ran every hour)."""

    def __init__(self) -> None:
        self.count = 0

    def inferred(self, inferred: Inferred) -> None:
        self.count += 1


def render_reading(r: Reading) -> str:
    rss = "n/a" if r.rss_mib is None else f"{r.rss_mib:7.1f}"
    return (
        f"hour {r.hour:2d} ({r.real_seconds:7.1f} s real): RSS {rss} MiB, threads {r.threads} "
        f"({r.python_threads} Python), fds {r.fds}, store {r.store_bytes / 2**20:6.2f} MiB "
        f"({r.samples} samples), journal {r.journal_bytes / 1024:8.1f} KiB "
        f"({r.journal_lines} lines), epochs {r.epochs}, inferred {r.inferred}, "
        f"the collector walks {r.gc_walked_objects} objects ({r.gc_frozen_objects} frozen)"
    )


def summarise(readings: list[Reading], args: argparse.Namespace, status: int) -> dict[str, Any]:
    later = [r.rss_mib for r in readings if r.hour >= 1 and r.rss_mib is not None]
    growth = max(later) - min(later) if len(later) >= 2 else None
    per_hour = [
        {
            "hour": b.hour,
            "store_bytes": b.store_bytes - a.store_bytes,
            "journal_bytes": b.journal_bytes - a.journal_bytes,
        }
        for a, b in itertools.pairwise(readings)
    ]
    return {
        "hours": args.hours,
        "speed": args.speed,
        "exit_status": status,
        "readings": [dataclasses.asdict(r) for r in readings],
        "growth_per_hour": per_hour,
        "rss_growth_after_first_hour_mib": growth,
        "rss_flat": growth is not None and growth <= RSS_FLAT_MIB,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def collection_figures(
    collections: GarbageCollectionMeter, readings: list[Reading]
) -> dict[str, Any]:
    """Every collection while the sensor streamed (and apart, those before), and how much more
    a full one walked at the end than after the first hour."""
    later = [r.gc_walked_objects for r in readings if r.hour >= 1]
    return {
        "by_generation": collections.figures(),
        "at_start_by_generation": collections.figures(at_start=True),
        "walked_objects_growth_after_first_hour": later[-1] - later[0] if later else None,
    }


def run(args: argparse.Namespace) -> int:
    if not args.speed > 0 or not args.hours >= 1:
        raise SystemExit("odar bench soak: --speed must be > 0 and --hours >= 1")
    # As `odar run` does before anything else (the emulated wearable's threads included).
    heap.tune_malloc()
    journal = count_logging()
    base = load_config(args.config)
    print(
        f"odar bench soak: {round(args.hours)} virtual hours at speed {args.speed:g} "
        f"(about {round(args.hours) * args.hour_seconds / args.speed / 60:.1f} real minutes)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="odar-soak-") as scratch:
        scenario = Path(scratch) / "soak.yaml"
        scenario.write_text(yaml.safe_dump(soak_scenario(args)), encoding="utf-8")
        config = bench_config(base, scenario, Path(scratch) / "state", args.speed, args.seed)
        world = EmulatedWearable.open(config, args.config.resolve().parent)
        counter = InferCounter()
        daemon = Daemon(config, world.wearable, observer=counter)
        meter = HourlyMeter(daemon, journal, round(args.hours), args.hour_seconds, counter)
        meter.start()
        with GarbageCollectionMeter(streaming=lambda: daemon.ready_at is not None) as collections:
            status = world.run(daemon)
        meter.join(timeout=5.0)
        report = summarise(meter.readings, args, status)
        report["garbage_collections"] = collection_figures(collections, meter.readings)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        growth = report["rss_growth_after_first_hour_mib"]
        shown = "n/a" if growth is None else f"{growth:.2f} MiB"
        print(
            f"RSS after the first hour moved by {shown} (flat means <= {RSS_FLAT_MIB:g} MiB: "
            f"{'yes' if report['rss_flat'] else 'no'}); peak RSS {report['peak_rss_mib']:.1f} "
            f"MiB; exit status {status}"
        )
        collected = report["garbage_collections"]
        oldest = collected["by_generation"]["2"]
        print(
            f"generation-2 collections: {oldest['count']}, longest {oldest['max_ms']:.2f} ms; "
            f"a full collection walked {collected['walked_objects_growth_after_first_hour']} "
            "more objects at the end than after the first hour"
        )
    return status
