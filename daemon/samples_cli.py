"""``odar samples``: see and fix the collected samples.

  list            samples per class, with the first and last one's time (--all: every sample)
  delete-last     remove the most recent sample (as a long press of the class button does)
  delete ID...    remove samples by id (list --all shows the ids; later ones move up)
  clear CLASS     remove every sample of a class
  relabel ID CLASS
                  move a sample to another class
  export FILE     to FILE.csv or FILE.npz: raw windows, timestamps, class names, features
  import FILE     add the samples of an export (features recomputed if the artifacts differ)

Works whether odar runs or not: a running daemon makes the change itself (it notices at
once; the journal says so). Times are the sensor clock's seconds at the end of each window.
Retrain after a change: the head learnt from the old samples.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from odar import sample_edit, sample_requests
from odar.class_names import class_index, display_names
from odar.config import Config, load_config
from odar.errors import StateError
from odar.manifest import load_manifest, sha256_of
from odar.sample_store import Samples, SampleStore, StoreLayout
from odar.status_cli import process_alive
from odar.status_file import STATUS_FILE, read_json

DEFAULT_CONFIG = Path("/etc/odar/odar.yaml")
SAMPLES_FILE = "samples.odar"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="the daemon's configuration (its state directory holds the samples)",
    )
    formatter = parser.formatter_class
    actions = parser.add_subparsers(dest="samples_action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        return actions.add_parser(
            name, help=help_text, description=help_text, parents=[common],
            formatter_class=formatter,
        )  # fmt: skip

    listing = action("list", "samples per class with the first and last time")
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    listing.add_argument("--all", action="store_true", help="every sample with its id")
    action("delete-last", "remove the most recent sample")
    delete = action("delete", "remove samples by id (odar samples list --all shows them)")
    delete.add_argument("ids", type=int, nargs="+", metavar="ID", help="sample ids")
    clear = action("clear", "remove every sample of a class")
    clear.add_argument("class_name", metavar="CLASS", help="the class (either name)")
    relabel = action("relabel", "move a sample to another class")
    relabel.add_argument("id", type=int, metavar="ID", help="the sample id")
    relabel.add_argument("class_name", metavar="CLASS", help="its class from now on")
    export = action("export", "write the samples to FILE.csv or FILE.npz")
    export.add_argument("file", type=Path, metavar="FILE", help="a .csv or .npz file")
    imported = action("import", "add the samples of an export")
    imported.add_argument("file", type=Path, metavar="FILE", help="a .csv or .npz export")


class Place:
    """The state dir, artifacts and whether a daemon runs on them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store_path = config.state_dir / SAMPLES_FILE
        manifest = load_manifest(config.paths.artifacts_dir, verify_hashes=False)
        self.manifest = manifest
        self.names = display_names(manifest.classes, config.classes.names)
        self.running = self._daemon_runs()

    def _daemon_runs(self) -> bool:
        try:
            status = read_json(self.config.runtime_dir / STATUS_FILE, "status file")
        except StateError:
            return False
        return process_alive(status.get("pid")) and status.get("state_dir") == str(
            self.config.state_dir
        )

    def resolve(self, name: str) -> int:
        return class_index(name, self.manifest.classes, self.names, "CLASS")

    def layout(self) -> StoreLayout:
        manifest = self.manifest
        return StoreLayout(
            sha256_of(manifest.path),
            manifest.num_classes,
            manifest.feature_size,
            (manifest.window_samples, len(manifest.input_layout)),
        )

    def refeature(self, samples: Samples) -> Samples:
        from odar.engine import Engine

        bottleneck = Engine.load(self.config.paths.artifacts_dir, 1).bottleneck
        features = np.stack([bottleneck.features(window) for window in samples.windows])
        return Samples(samples.labels, samples.timestamps, features, samples.windows)


def run(args: argparse.Namespace) -> int:
    place = Place(load_config(args.config))
    action = args.samples_action
    if action in ("list", "export"):
        layout, samples = sample_edit.read_store(place.store_path)
        if action == "export":
            sample_edit.export(samples, place.names, layout, args.file)
            print(f"{args.file}: {len(samples)} samples exported")
        else:
            print(_listing(samples, place.names, args.all, args.json))
        return 0
    op, op_args, payload = _operation(args)
    if place.running:
        reply = sample_requests.ask(place.config.runtime_dir, op, op_args, payload)
        print(
            reply["message"] if reply["ok"] else f"odar: {reply['message']}",
            file=sys.stdout if reply["ok"] else sys.stderr,
        )
        _print_counts(place.names, reply.get("counts", []))
        return 0 if reply["ok"] else 1
    if not place.store_path.exists():
        if op != "import":
            raise StateError(f"{place.store_path}: no sample store (nothing collected yet)")
        try:
            place.config.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        except OSError as error:
            raise StateError(f"{place.config.state_dir}: cannot create: {error.strerror}") from None
    with SampleStore.open(place.store_path, place.layout()) as store:
        message = sample_requests.apply(
            store, op, op_args, place.names, payload, place.resolve, place.refeature
        )
        print(message)
        _print_counts(place.names, store.counts())
    return 0


def _operation(args: argparse.Namespace) -> tuple[str, dict[str, Any], Path | None]:
    action = args.samples_action
    if action == "delete":
        return "delete", {"ids": args.ids}, None
    if action == "delete-last":
        return "delete-last", {}, None
    if action == "clear":
        return "clear", {"class": args.class_name}, None
    if action == "relabel":
        return "relabel", {"id": args.id, "class": args.class_name}, None
    if not args.file.is_file():
        raise StateError(f"{args.file}: no such file")
    return "import", {}, args.file


def _print_counts(names: list[str] | tuple[str, ...], counts: list[int] | tuple[int, ...]) -> None:
    if counts:
        print("now: " + ", ".join(f"{name} {n}" for name, n in zip(names, counts, strict=True)))


def _listing(samples: Samples, names: tuple[str, ...], every: bool, as_json: bool) -> str:
    summaries = sample_edit.summarize(samples, names)
    if as_json:
        document = sample_edit.summary_json(summaries, len(samples))
        if every:
            document["samples"] = [
                {"id": i + 1, "class": names[label], "timestamp": float(t)}
                for i, (label, t) in enumerate(zip(samples.labels, samples.timestamps, strict=True))
            ]
        return json.dumps(document, indent=2)
    lines = [f"{'class':<16} {'count':>6}  {'first':>12}  {'last':>12}"]
    for summary in summaries:
        first = f"{summary.first:12.1f}" if summary.first is not None else f"{'-':>12}"
        last = f"{summary.last:12.1f}" if summary.last is not None else f"{'-':>12}"
        lines.append(f"{summary.name:<16} {summary.count:>6}  {first}  {last}")
    lines.append(f"{'total':<16} {len(samples):>6}   (times: sensor clock seconds)")
    if every:
        lines.append("")
        lines.append(f"{'id':>6}  {'class':<16} {'time':>12}")
        for index, (label, t) in enumerate(zip(samples.labels, samples.timestamps, strict=True)):
            lines.append(f"{index + 1:>6}  {names[label]:<16} {t:12.1f}")
    return "\n".join(lines)
