"""``odar watch``: a live view for an ssh session: the loss curve of the training run as a
chart, the last class probabilities as bars, and the status lines, redrawn every second from
the daemon's status file. Ctrl-C leaves.

The chart is drawn by plotext (pure Python, no compiler needed on a Pi).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from typing import Any

from odar.errors import StateError
from odar.status_cli import (
    EXIT_NOT_RUNNING,
    add_location_arguments,
    read_status,
    render,
    status_path,
)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_location_arguments(parser)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between redraws")
    parser.add_argument(
        "--frames",
        type=int,
        default=0,
        help="stop after this many redraws (0: until Ctrl-C)",
    )


def frame(status: dict[str, Any], width: int, height: int) -> str:
    """One screen: the status lines, the loss chart and the probability bars."""
    import plotext as plt

    parts = [render(status)]
    training = status.get("training", {})
    losses = training.get("losses") or []
    chart_height = max(8, height - 18)
    if losses:
        first = int(training.get("first_epoch", 1))
        plt.clf()
        plt.theme("clear")
        plt.plotsize(width, chart_height)
        plt.plot(list(range(first, first + len(losses))), losses, marker="braille")
        plt.title(f"training loss, run {training.get('run')} (last {len(losses)} epochs)")
        plt.xlabel("epoch")
        parts.append(plt.build())
    else:
        parts.append("loss: no training in this run of the daemon yet")
    probabilities = status.get("probabilities")
    if probabilities:
        names = list(probabilities["by_class"])
        values = [float(probabilities["by_class"][name]) for name in names]
        plt.clf()
        plt.theme("clear")
        plt.plotsize(width, 2 * len(names) + 4)
        plt.bar(names, values, orientation="horizontal", width=0.3)
        plt.xlim(0.0, 1.0)
        plt.title(
            f"P(class); the motor pulses when P({probabilities.get('trigger_class')}) > "
            f"{probabilities.get('threshold')}"
        )
        parts.append(plt.build())
    text = "\n".join(parts)
    return text if sys.stdout.isatty() else _ANSI.sub("", text)


def run(args: argparse.Namespace) -> int:
    path = status_path(args)
    shown = 0
    try:
        while True:
            size = shutil.get_terminal_size((100, 40))
            try:
                screen = frame(read_status(path), size.columns - 1, size.lines)
            except StateError as error:
                if shown == 0:
                    print(f"odar: {error}", file=sys.stderr)
                    return EXIT_NOT_RUNNING
                screen = f"odar: {error}"
            if sys.stdout.isatty():
                sys.stdout.write(CLEAR_SCREEN)
            print(screen, flush=True)
            shown += 1
            if args.frames and shown >= args.frames:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
