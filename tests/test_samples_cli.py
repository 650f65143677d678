"""``odar samples`` through the CLI: list, delete, clear, relabel while the daemon runs (it
notices) and while it is stopped; export then import into a fresh state dir reproduces the
counts and the trained head's accuracy; a long press of the class button removes the last
sample with its own pattern."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ConfigWriter, launch_daemon, wait_until
from test_service import collect_both_classes

from odar.cli import main
from odar.controls import Mode
from odar.haptics import FINISHED, SAMPLE_REMOVED

SETTINGS = {
    "training": {"stop_when": "settled"},
    "classes": {"names": ["sitting", "walking"]},
    "pins": {"long_press_seconds": 0.3},
}


def train_until_finished(running) -> None:
    while running.daemon.controls.mode is not Mode.TRAIN:
        running.press("mode")
    running.press("start")
    wait_until(lambda: FINISHED in running.patterns, "training to finish by itself")


def accuracy(running, samples) -> float:
    head = running.daemon.engine.head
    params = running.daemon.latest.get().params
    predicted = [int(np.argmax(head.predict(params, f))) for f in samples.features]
    return float(np.mean(np.asarray(predicted) == samples.labels))


@pytest.fixture
def collected(tmp_path, artifacts_dir):
    """A running daemon with both classes collected (and its config path)."""
    path = ConfigWriter(tmp_path, artifacts_dir).write(SETTINGS)
    running = launch_daemon(path)
    try:
        collect_both_classes(running)
        yield running, path
    finally:
        running.halt()


def samples_json(path, capsys) -> dict:
    capsys.readouterr()
    assert main(["samples", "list", "--json", "--all", "--config", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


def test_list_shows_counts_and_times_per_class(collected, capsys):
    running, path = collected
    assert main(["samples", "list", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    counts = running.daemon.samples.counts()
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:] if line.strip()}
    assert rows["sitting"][0] == str(counts[0]) and rows["walking"][0] == str(counts[1])
    assert rows["total"][0] == str(sum(counts))
    listing = samples_json(path, capsys)
    assert [c["count"] for c in listing["classes"]] == list(counts)
    assert listing["total"] == sum(counts) == len(listing["samples"])
    sitting = listing["classes"][0]
    times = [s["timestamp"] for s in listing["samples"] if s["class"] == "sitting"]
    assert sitting["first"] == min(times) and sitting["last"] == max(times)


def test_export_while_the_daemon_runs_goes_through_it(collected, tmp_path, capsys):
    running, path = collected
    target = tmp_path / "live.csv"
    assert main(["samples", "export", str(target), "--config", str(path)]) == 0
    rows = target.read_text().splitlines()
    assert rows[0].startswith("# odar-samples-1 bottleneck_sha256=")
    assert rows[1].startswith("id,class,timestamp,f0,")
    assert len(rows) - 2 == sum(running.daemon.samples.counts())
    assert not list((running.daemon.config.runtime_dir / "requests").iterdir())


def test_changes_while_the_daemon_runs_are_made_by_it(collected, capsys):
    running, path = collected
    before = running.daemon.samples.counts()
    assert main(["samples", "delete-last", "--config", str(path)]) == 0
    assert running.daemon.samples.counts() == (before[0], before[1] - 1)
    assert main(["samples", "relabel", "1", "walking", "--config", str(path)]) == 0
    assert running.daemon.samples.counts() == (before[0] - 1, before[1])
    assert main(["samples", "delete", "1", "2", "--config", str(path)]) == 0
    assert sum(running.daemon.samples.counts()) == sum(before) - 3
    assert main(["samples", "clear", "Class A", "--config", str(path)]) == 0  # manifest name
    assert running.daemon.samples.counts()[0] == 0
    # The daemon keeps collecting into the changed store: nothing lost, nothing mislabelled.
    running.collect(0, 2)
    listing = samples_json(path, capsys)
    assert [c["count"] for c in listing["classes"]] == list(running.daemon.samples.counts())
    assert main(["samples", "delete", "999", "--config", str(path)]) == 1
    assert "no sample 999" in capsys.readouterr().err


def test_a_long_press_of_the_class_button_removes_the_last_sample(collected):
    running, _ = collected
    before = running.daemon.samples.counts()
    selected = running.daemon.controls.class_index
    pin = running.pin("class")
    played = len(running.patterns)
    pin.drive_low()
    wait_until(lambda: SAMPLE_REMOVED in running.patterns[played:], "the sample-removed pattern")
    pin.drive_high()
    assert running.daemon.samples.counts() == (before[0], before[1] - 1)  # walking came last
    assert running.daemon.controls.class_index == selected  # a long press selects nothing
    running.press_and_feel("class")  # a short press still selects the next class
    assert running.daemon.controls.class_index != selected


def test_export_then_import_into_a_fresh_state_dir_reproduces_counts_and_accuracy(
    collected, tmp_path, artifacts_dir, capsys
):
    running, path = collected
    train_until_finished(running)
    original = running.daemon.samples.load()
    original_accuracy = accuracy(running, original)
    assert running.stop() == 0
    # Stopped: the CLI works on the files itself.
    for name in ("export.npz", "export.csv"):
        assert main(["samples", "export", str(tmp_path / name), "--config", str(path)]) == 0

    for name in ("export.npz", "export.csv"):
        fresh_dir = tmp_path / f"fresh-{name}"
        fresh_dir.mkdir()
        fresh = ConfigWriter(fresh_dir, artifacts_dir).write(SETTINGS)
        assert main(["samples", "import", str(tmp_path / name), "--config", str(fresh)]) == 0
        listing = samples_json(fresh, capsys)
        assert [c["count"] for c in listing["classes"]] == np.bincount(original.labels).tolist()

    again = launch_daemon(tmp_path / "fresh-export.npz" / "odar.yaml")
    try:
        imported = again.daemon.samples.load()
        np.testing.assert_array_equal(imported.labels, original.labels)
        np.testing.assert_array_equal(imported.windows, original.windows)
        np.testing.assert_array_equal(imported.features, original.features)
        train_until_finished(again)
        assert accuracy(again, imported) >= original_accuracy - 0.05
        assert accuracy(again, imported) >= 0.9
    finally:
        assert again.stop() == 0


def test_import_of_a_file_that_is_not_an_export_names_it(collected, tmp_path, capsys):
    _, path = collected
    bogus = tmp_path / "bogus.csv"
    bogus.write_text("a,b\n1,2\n")
    assert main(["samples", "import", str(bogus), "--config", str(path)]) == 1
    assert "not an odar samples export" in capsys.readouterr().err
