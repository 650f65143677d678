"""``odar bench soak``: a short run (two 90-second "hours") whose figures hang together."""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, write_bench_config

from odar.controls import Controls
from odar.harness.bench.soak import CountingStream, soak_scenario
from odar.harness.scenario import load_scenario
from odar.service import Status


@pytest.fixture(scope="module")
def report(tmp_path_factory, artifacts_dir) -> dict:
    directory = tmp_path_factory.mktemp("soak")
    config = write_bench_config(directory, artifacts_dir)
    command = [
        sys.executable, "-m", "odar.cli", "bench", "soak", "--json", "--config", str(config),
        "--hours", "2", "--hour-seconds", "90", "--collect-seconds", "20",
        "--train-seconds", "10", "--speed", "10",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout[result.stdout.index("{") :])


def test_every_hour_is_read_and_the_store_and_journal_grow(report):
    readings = report["readings"]
    assert [r["hour"] for r in readings] == [0, 1, 2]
    assert report["exit_status"] == 0
    for earlier, later in itertools.pairwise(readings):
        # Presses are logged every hour; windows may be lost to a starved emulator.
        assert later["journal_bytes"] > earlier["journal_bytes"]
        assert later["samples"] >= earlier["samples"]
        assert later["store_bytes"] >= earlier["store_bytes"]
    first, last = readings[0], readings[-1]
    assert last["samples"] > first["samples"] and last["store_bytes"] > first["store_bytes"]
    assert last["epochs"] > 0 and last["inferred"] > 0
    assert all(r["rss_mib"] > 10 and r["fds"] > 0 and r["threads"] >= 4 for r in readings)
    assert report["rss_growth_after_first_hour_mib"] >= 0


def test_what_start_built_stays_frozen_and_the_collector_walks_little(report):
    readings = report["readings"]
    assert all(r["gc_frozen_objects"] > 10_000 for r in readings)
    # Without the freeze a full collection walked every object start built (tens of thousands).
    assert all(r["gc_walked_objects"] < r["gc_frozen_objects"] / 2 for r in readings)
    collected = report["garbage_collections"]
    assert set(collected["by_generation"]) == {"0", "1", "2"}
    assert collected["by_generation"]["0"]["count"] > 0
    assert isinstance(collected["walked_objects_growth_after_first_hour"], int)


def test_the_cycle_collects_both_classes_trains_and_infers_every_hour(tmp_path):
    args = argparse.Namespace(
        hours=3, hour_seconds=3600.0, collect_seconds=60.0, train_seconds=120.0, seed=1, speed=20
    )
    steps = soak_scenario(args)["steps"]
    assert not [s for s in steps if "press" in s]  # blind presses fall out of step
    waits = sum(s["wait"] for s in steps if "wait" in s)
    assert waits == pytest.approx(3 * 3600.0)
    assert steps[-1] == {"end": "stop"}
    # Walk the `set` steps on real Controls, pressing what each asks for.
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(soak_scenario(args)), encoding="utf-8")
    controls = Controls(2, 1, lambda: (5, 5))
    press = {
        "mode": controls.press_mode,
        "class": controls.press_class,
        "start": controls.press_start_stop,
    }
    reached = []
    for step in load_scenario(path).steps:
        if step.kind != "set":
            continue
        for _ in range(10):
            snapshot = controls.snapshot()
            status = Status(
                snapshot.mode, snapshot.running, snapshot.class_index, (5, 5), 0, (), True, False
            )
            button = step.value.next_press(status)
            if button is None:
                break
            press[button]()
        reached.append((controls.mode.value, controls.class_index, controls.running))
    hour = [
        ("collect", 0, True),
        ("collect", 0, False),
        ("collect", 1, True),
        ("collect", 1, False),
        ("train", 1, True),
        ("train", 1, False),
        ("infer", 1, True),
        ("collect", 1, False),
    ]
    assert reached == hour * 3


def test_soak_scenario_loads(tmp_path):
    args = argparse.Namespace(
        hours=1, hour_seconds=600.0, collect_seconds=60.0, train_seconds=120.0, seed=1, speed=20
    )
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(soak_scenario(args)), encoding="utf-8")
    assert load_scenario(path).steps[-1].kind == "end"


def test_counting_stream_counts_bytes_and_lines():
    stream = CountingStream()
    stream.write("<6>odar: é\n")
    assert (stream.bytes, stream.lines) == (len("<6>odar: é\n".encode()), 1)
