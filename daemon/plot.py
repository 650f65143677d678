"""``odar plot FILE.png``: the loss curve of the last training run as an image.

Read from the state directory (``last-training.json``, kept by the daemon at the end of each
run, so it works after the service has stopped). Needs matplotlib, which odar does not depend
on: ``pip install matplotlib`` (or ``apt install python3-matplotlib`` for a system Python).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odar.config import load_config
from odar.errors import StateError
from odar.status_file import TRAINING_RUN_FILE, read_json

DEFAULT_CONFIG = Path("/etc/odar/odar.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE.png", help="the image to write")
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="the daemon's configuration; its state directory holds the last run",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="read this state directory instead"
    )


def run(args: argparse.Namespace) -> int:
    state_dir = args.state_dir if args.state_dir is not None else load_config(args.config).state_dir
    path = state_dir / TRAINING_RUN_FILE
    try:
        run_record = read_json(path, "record of a training run")
    except StateError as error:
        if not path.exists():
            raise StateError(f"{path}: no training run recorded yet (train once first)") from None
        raise error from None
    losses = run_record.get("losses") or []
    if not losses:
        raise StateError(f"{path}: the last training run has no epochs")
    try:
        import matplotlib
    except ImportError:
        print(
            "odar: odar plot needs matplotlib, which is not installed: "
            "pip install matplotlib (or apt install python3-matplotlib)",
            file=sys.stderr,
        )
        return 1
    matplotlib.use("Agg")
    from matplotlib import pyplot

    first = int(run_record.get("first_epoch", 1))
    figure, axes = pyplot.subplots(figsize=(8, 4.5))
    axes.plot(range(first, first + len(losses)), losses)
    axes.set_xlabel("epoch")
    axes.set_ylabel("training loss (cross-entropy)")
    reason = run_record.get("finish_reason") or "stopped"
    axes.set_title(f"odar: last training run ({len(losses)} epochs, ended: {reason})")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    try:
        figure.savefig(args.file)
    except OSError as error:
        raise StateError(f"{args.file}: cannot write the image: {error.strerror}") from None
    finally:
        pyplot.close(figure)
    print(f"{args.file}: {len(losses)} epochs, last loss {losses[-1]:.4f}")
    return 0
