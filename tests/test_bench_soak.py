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

from odar.harness.bench.soak import CountingStream, soak_scenario
from odar.harness.scenario import load_scenario


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


def test_the_cycle_collects_both_classes_trains_and_infers_every_hour():
    args = argparse.Namespace(
        hours=3, hour_seconds=3600.0, collect_seconds=60.0, train_seconds=120.0, seed=1, speed=20
    )
    steps = soak_scenario(args)["steps"]
    presses = [s["press"] for s in steps if "press" in s]
    # Per hour: start/stop twice with a class press between, class back, mode, start/stop,
    # mode, start ... stop, mode: every mode and both classes, back to Collect, class A.
    assert presses.count("mode") == 3 * 3 and presses.count("class") == 3 * 2
    waits = sum(s["wait"] for s in steps if "wait" in s)
    assert waits == pytest.approx(3 * 3600.0)
    # A pause after every press: gpiozero's bounce time would swallow a quick second press.
    after = [steps[i + 1] for i, s in enumerate(steps) if "press" in s]
    assert all(step == {"wait": 2.0} for step in after)
    assert steps[-1] == {"end": "stop"}


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
