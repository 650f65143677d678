"""``odar status``: what the running daemon is doing, from its status file.

Mode, class, samples per class, training epoch and loss, the last class probabilities and the
sensor's health (measured rate, gaps, FIFO overflows, I2C errors). ``--json`` prints the file
itself for scripts. Exit 0 while odar runs, 3 when it does not (as ``systemctl status``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from odar.config import load_config
from odar.errors import StateError
from odar.status_file import STATUS_FILE, read_json

DEFAULT_CONFIG = Path("/etc/odar/odar.yaml")
EXIT_NOT_RUNNING = 3


def add_location_arguments(parser: argparse.ArgumentParser) -> None:
    """--config / --status-file, shared by status, watch and plot."""
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="the daemon's configuration; its paths.runtime_dir holds the status file",
    )
    parser.add_argument(
        "--status-file",
        type=Path,
        default=None,
        help="read this status file instead of the one the configuration names",
    )


def status_path(args: argparse.Namespace) -> Path:
    if args.status_file is not None:
        return args.status_file
    return load_config(args.config).runtime_dir / STATUS_FILE


def read_status(path: Path) -> dict[str, Any]:
    """The status document; :class:`StateError` saying odar is not running when absent."""
    try:
        return read_json(path, "status file")
    except StateError as error:
        if not path.exists():
            raise StateError(
                f"odar is not running (no status file at {path}); `systemctl status odar` says why"
            ) from None
        raise error from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_location_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the status file as JSON")


def run(args: argparse.Namespace) -> int:
    path = status_path(args)
    try:
        status = read_status(path)
    except StateError as error:
        print(f"odar: {error}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(render(status))
    return 0 if process_alive(status.get("pid")) else EXIT_NOT_RUNNING


def process_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _number(value: object, spec: str, missing: str = "-") -> str:
    return format(value, spec) if isinstance(value, int | float) else missing


def render(status: dict[str, Any], now: float | None = None) -> str:
    """The status as the lines a person reads."""
    now = time.time() if now is None else now
    age = now - float(status.get("time", now))
    stale = "" if process_alive(status.get("pid")) else "  (STALE: that process is gone)"
    counts = status.get("counts", {})
    lines = [
        f"odar {status.get('version', '?')}, pid {status.get('pid')}, "
        f"updated {age:.1f} s ago{stale}",
        f"mode:        {status.get('mode')}, {'running' if status.get('running') else 'stopped'}",
        f"class:       {status.get('class')}",
        "samples:     " + ", ".join(f"{name} {n}" for name, n in counts.items()),
    ]
    loss = status.get("loss")
    settled = " (settled)" if status.get("loss_settled") else ""
    lines.append(
        f"training:    epoch {status.get('epoch')}"
        + (f", last loss {_number(loss, '.4f')}{settled}" if loss is not None else "")
        + (", training now" if status.get("training", {}).get("running") else "")
    )
    probabilities = status.get("probabilities")
    if probabilities:
        shown = ", ".join(
            f"{name} {_number(p, '.2f')}" for name, p in probabilities["by_class"].items()
        )
        ago = now - float(probabilities.get("at", now))
        lines.append(f"last P:      {shown} ({ago:.1f} s ago)")
    else:
        lines.append("last P:      none yet (Infer has not run since start)")
    sensor = status.get("sensor", {})
    lines.append(
        f"sensor:      {_number(sensor.get('rate_hz'), '.1f', '?')} Hz measured "
        f"(configured {_number(sensor.get('configured_rate_hz'), 'g')}), "
        f"{sensor.get('gaps', '?')} gaps ({sensor.get('lost', '?')} samples lost), "
        f"{sensor.get('overflows', '?')} FIFO overflows, {sensor.get('i2c_errors', '?')} I2C "
        "errors" + ("; NOT ANSWERING, retrying" if sensor.get("recovering") else "")
    )
    if sensor.get("problem"):
        lines.append(f"sensor now:  {sensor['problem']}")
    return "\n".join(lines)
