"""``odar samples``: see and fix the collected samples.

  list            samples per class, with the first and last one's time (--all: every sample)
  delete-last     remove the most recent sample (as a long press of the class button does)
  delete ID...    remove samples by id (list --all shows the ids; they never change)
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
import contextlib
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from odar import sample_edit, sample_requests
from odar.class_names import class_index, display_names
from odar.config import Config, load_config
from odar.errors import StateError
from odar.manifest import load_manifest
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
        same_state = status.get("state_dir") == str(self.config.state_dir)
        return process_alive(status.get("pid")) and same_state

    def resolve(self, name: str) -> int:
        return class_index(name, self.manifest.classes, self.names, "CLASS")

    def open_store(self, create: bool) -> SampleStore:
        """The stopped daemon's store, opened as the daemon opens it."""
        from odar.engine import Engine

        if not self.store_path.exists():
            if not create:
                raise StateError(f"{self.store_path}: no sample store (nothing collected yet)")
            try:
                self.config.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            except OSError as error:
                raise StateError(
                    f"{self.config.state_dir}: cannot create: {error.strerror}"
                ) from None
        engine = Engine.load(self.config.paths.artifacts_dir, 1)
        manifest = engine.manifest
        self.features_of = engine.bottleneck.features_of
        layout = StoreLayout(
            engine.bottleneck_sha256,
            manifest.num_classes,
            manifest.feature_size,
            (manifest.window_samples, len(manifest.input_layout)),
        )
        return SampleStore.open(
            self.store_path,
            layout,
            features_for=engine.bottleneck.features_of,
            legacy_manifest_hash=engine.manifest_hash,
        )


def run(args: argparse.Namespace) -> int:
    place = Place(load_config(args.config))
    op, op_args, file = _operation(args)
    if place.running:
        upload = file if op == "import" else None
        suffix = file.suffix.lower() if op == "export" and file is not None else None
        if suffix is not None and suffix not in (".csv", ".npz"):
            raise StateError(f"{file}: export to .csv or .npz")
        reply, produced = sample_requests.ask(place.config.runtime_dir, op, op_args, upload, suffix)
        if not reply["ok"]:
            print(f"odar: {reply['message']}", file=sys.stderr)
            return 1
        if produced is not None and file is not None:
            shutil.move(produced, file)
        return _report(args, place, reply)
    with contextlib.closing(place.open_store(create=op == "import")) as store:
        message, data = sample_requests.apply(
            store, op, op_args, place.names, file, place.resolve, place.features_of
        )
        reply = {"ok": True, "message": message, "counts": list(store.counts()), **data}
    return _report(args, place, reply)


def _report(args: argparse.Namespace, place: Place, reply: dict[str, Any]) -> int:
    op, file = args.samples_action, getattr(args, "file", None)
    if op == "list":
        print(_listing(reply, place.names, args.all, args.json))
        return 0
    print(f"{file}: {reply['message']}" if op == "export" else reply["message"])
    if op != "export":
        _print_counts(place.names, reply.get("counts", []))
    return 0


def _operation(args: argparse.Namespace) -> tuple[str, dict[str, Any], Path | None]:
    action = args.samples_action
    if action == "list":
        return "list", {}, None
    if action == "export":
        return "export", {}, args.file
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


def _print_counts(names: Sequence[str], counts: Sequence[int]) -> None:
    if counts:
        print("now: " + ", ".join(f"{name} {n}" for name, n in zip(names, counts, strict=True)))


def _listing(data: dict[str, Any], names: Sequence[str], every: bool, as_json: bool) -> str:
    ids = np.asarray(data["ids"], np.int64)
    labels = np.asarray(data["labels"], np.int64)
    timestamps = np.asarray(data["timestamps"], np.float64)
    samples = Samples(ids, labels, timestamps, np.zeros((len(ids), 0), np.float32))
    summaries = sample_edit.summarize(samples, names)
    if as_json:
        document = sample_edit.summary_json(summaries, len(samples))
        if every:
            document["samples"] = [
                {"id": int(i), "class": names[label], "timestamp": float(t)}
                for i, label, t in zip(ids, labels, timestamps, strict=True)
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
        for i, label, t in zip(ids, labels, timestamps, strict=True):
            lines.append(f"{int(i):>6}  {names[label]:<16} {t:12.1f}")
    return "\n".join(lines)
