"""``odar demo``: the daemon itself on the emulated wearable, driven by a scripted session.

The scenario (``daemon/harness/data/scenarios/demo.yaml``, shipped in the package) presses
the real gpiozero buttons on the mock pin factory: collect Class A while the wearer sits,
Class B while they walk, train until the loss settles, then infer across alternating
activities. The summary counts, per true activity of the emulated wearer, the windows
inferred and the motor pulses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from odar.config import load_config
from odar.harness.data import DEMO_CONFIG, with_artifacts
from odar.harness.emulated_wearable import EmulatedWearable
from odar.harness.scenario import Scenario, SwitchableMotion
from odar.journal import setup_logging
from odar.service import Daemon, Inferred, Observer

#: Target of the demo: the motor fires on nearly every walking window, hardly ever sitting.
WALKING_PULSE_TARGET = 0.90
SITTING_PULSE_LIMIT = 0.05


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="end with one JSON summary")
    parser.add_argument(
        "--config", type=Path, default=DEMO_CONFIG, help="demo configuration (the shipped one)"
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=None,
        help="the artifacts directory (default: the config's if present, else the installed "
        "ones named by /etc/odar/odar.yaml, else /opt/odar/artifacts)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep the learnt state here (default: a fresh temporary directory)",
    )
    parser.add_argument("--speed", type=float, default=None, help="virtual seconds per second")
    parser.add_argument("--quiet", action="store_true", help="only warnings on stderr")
    parser.add_argument(
        "--wearer",
        help="hapt:SUBJECT: a real held-out person of UCI HAPT instead of the simulated wearer "
        "(collects on one of their recordings, infers on the other)",
    )


class DemoRecorder(Observer):
    """Counts inferred windows and motor pulses by what the emulated wearer was really doing."""

    def __init__(self, motion: SwitchableMotion) -> None:
        self._motion = motion
        self._lock = threading.Lock()
        self.windows: Counter[str] = Counter()
        self.pulses: Counter[str] = Counter()
        self.latencies: list[float] = []

    def inferred(self, inferred: Inferred) -> None:
        truth = self._motion.activity_between(inferred.window.t_start, inferred.window.t_end)
        key = truth if truth is not None else "transition"
        with self._lock:
            self.windows[key] += 1
            if inferred.detection.triggered:
                self.pulses[key] += 1
            self.latencies.append(inferred.decided_at - inferred.window.t_end)


def run(args: argparse.Namespace) -> int:
    setup_logging("warning" if args.quiet else "info")
    config = with_artifacts(load_config(args.config), args.artifacts)
    emulated = config.sensor.emulated
    if args.speed is not None:
        emulated = dataclasses.replace(emulated, speed=args.speed)
    sensor = dataclasses.replace(config.sensor, backend="emulated", emulated=emulated)
    with tempfile.TemporaryDirectory(prefix="odar-demo-") as scratch:
        state_dir = args.state_dir if args.state_dir is not None else Path(scratch)
        paths = dataclasses.replace(config.paths, state_dir=state_dir.resolve())
        config = dataclasses.replace(config, sensor=sensor, paths=paths)
        about: dict[str, Any] = {}
        wearer_motion = None if args.wearer is None else _recorded_wearer(args.wearer, about)
        world = EmulatedWearable.open(config, args.config.resolve().parent, wearer_motion)
        recorder = DemoRecorder(world.motion)
        daemon = Daemon(config, world.wearable, observer=recorder, seed=emulated.seed)
        started = time.monotonic()
        status = world.run(daemon)
        wall = time.monotonic() - started
        summary = summarise(daemon, recorder, wall)
        if about:
            summary["wearer"] = about
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(render(summary))
    return status


def _recorded_wearer(text: str, about: dict[str, Any]) -> Callable[[Scenario], SwitchableMotion]:
    """``--wearer hapt:SUBJECT``: the motion of that person; *about* gets what it is."""
    from odar.harness import hapt_wearer

    subject = hapt_wearer.parse_subject(text)

    def motion(scenario: Scenario) -> SwitchableMotion:
        recorded, facts = hapt_wearer.recording_motion(subject, scenario)
        about.update(facts)
        return recorded

    return motion


def summarise(daemon: Daemon, recorder: DemoRecorder, wall_seconds: float) -> dict[str, Any]:
    first_loss, last_loss = daemon.trainer.first_loss, daemon.trainer.last_loss
    counts = daemon.samples.counts()
    windows = dict(recorder.windows)
    pulses = {activity: recorder.pulses.get(activity, 0) for activity in windows}
    rates = {a: pulses[a] / n for a, n in windows.items() if n}
    latencies = sorted(recorder.latencies)
    return {
        "windows_collected": {
            name: int(n) for name, n in zip(daemon.class_names, counts, strict=True)
        },
        "epochs": daemon.latest.get().epoch,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "inference_windows": windows,
        "motor_pulses": pulses,
        "pulse_rate": rates,
        "meets_targets": bool(
            first_loss is not None
            and last_loss is not None
            and last_loss < 0.5 * first_loss
            and rates.get("walking", 0.0) >= WALKING_PULSE_TARGET
            and rates.get("sitting", 1.0) <= SITTING_PULSE_LIMIT
        ),
        "window_to_decision_seconds_p50": latencies[len(latencies) // 2] if latencies else None,
        "virtual_seconds": daemon.wearable.clock.monotonic(),
        "wall_seconds": round(wall_seconds, 2),
        "runtime": daemon.engine.runtime.name,
    }


def render(summary: dict[str, Any]) -> str:
    lines = ["", "odar demo summary", "-----------------"]
    collected = ", ".join(f"{n} {name}" for name, n in summary["windows_collected"].items())
    lines.append(f"collected: {collected}")
    if summary["first_loss"] is not None:
        lines.append(
            f"trained {summary['epochs']} epochs: loss {summary['first_loss']:.4f} -> "
            f"{summary['last_loss']:.4f}"
        )
    for activity, n in sorted(summary["inference_windows"].items()):
        pulses = summary["motor_pulses"].get(activity, 0)
        lines.append(f"infer while {activity}: motor on {pulses} of {n} windows")
    lines.append(
        f"{summary['virtual_seconds']:.0f} virtual seconds in {summary['wall_seconds']} s; "
        + ("targets met" if summary["meets_targets"] else "TARGETS NOT MET")
    )
    return "\n".join(lines)
