"""``odar bench daemon``: one short run prints one JSON object whose figures hang together."""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, may_take_sched_fifo, write_bench_config

from odar.config import Config, load_config
from odar.harness.bench.daemon import (
    DEFINITIONS,
    BenchDaemon,
    CpuMark,
    GarbageCollectionMeter,
    add_arguments,
    bench_scenario,
    current_rss_kib,
    make_unkind,
    percentile,
    process_age_seconds,
    thread_cpu_seconds,
)
from odar.harness.emulated_wearable import EmulatedWearable
from odar.harness.scenario import load_scenario

SPEED = 20.0


@pytest.fixture(scope="module")
def report(tmp_path_factory, artifacts_dir) -> dict:
    directory = tmp_path_factory.mktemp("bench")
    config = write_bench_config(directory, artifacts_dir)
    command = [
        sys.executable,
        "-m",
        "odar.cli",
        "bench",
        "daemon",
        "--json",
        "--config",
        str(config),
        "--speed",
        str(SPEED),
        "--infer-seconds",
        "40",
        "--idle-seconds",
        "10",
        "--stages",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    return json.loads(result.stdout)


def test_latency_is_reported_in_virtual_and_real_seconds(report):
    latency = report["latency"]
    virtual, real = latency["virtual_seconds"], latency["real_seconds"]
    assert latency["windows"] >= 60  # 40 virtual seconds at a 0.5 s hop
    assert 0 < virtual["p50"] <= virtual["p99"] <= virtual["max"]
    for key in ("p50", "p99", "max"):
        assert real[key] == pytest.approx(virtual[key] / SPEED)
    assert report["speed"] == SPEED and report["hop_samples"] == 50


def test_cpu_per_sensor_second_has_a_same_run_idle_baseline(report):
    cpu = report["cpu_seconds_per_sensor_second"]
    assert cpu["infer"] > 0 and cpu["idle"] > 0
    assert cpu["infer_minus_idle"] == pytest.approx(cpu["infer"] - cpu["idle"])
    # From the first window (4 s after the start press) to the last; gaps only shorten it.
    assert 25.0 <= cpu["infer_sensor_seconds"] <= 40.5
    assert 7.0 <= cpu["idle_sensor_seconds"] <= 8.5  # 10 s less a second at each end
    for phase in ("infer_by_thread", "idle_by_thread"):
        assert cpu[phase]["odar-sensor"] > 0 and cpu[phase]["odar-windows"] > 0
    # The window thread runs the bottleneck and the head only while inferring.
    assert cpu["infer_by_thread"]["odar-windows"] > cpu["idle_by_thread"]["odar-windows"]


def test_memory_startup_and_the_inference_itself(report):
    memory, startup = report["memory"], report["startup"]
    assert memory["peak_rss_mib"] >= memory["current_rss_mib"] > 10
    # The epochs ran in the training process (numpy, a runtime, three models: > 10 MiB).
    assert memory["training_process_peak_rss_mib"] > 10
    assert startup["process_start_to_ready_seconds"] > startup["daemon_to_ready_seconds"] > 0
    pulses, windows = report["inference"]["motor_pulses"], report["inference"]["windows"]
    assert pulses["walking"] > 0.5 * windows["walking"]
    assert pulses["sitting"] < 0.5 * windows["sitting"]
    assert report["epochs"] >= 80 and report["exit_status"] == 0
    assert set(report["definitions"]) == set(DEFINITIONS)


def test_the_latency_stages_cover_the_inferred_windows_against_the_chips_truth(report):
    stages, truth = report["latency_stages"], report["truth"]
    assert stages["windows"] >= 0.9 * report["latency"]["windows"]
    assert truth["samples_compared"] >= report["sensor"]["samples"] - 1
    assert truth["samples_misaligned"] == 0 and truth["samples_settling"] == 0
    for name in ("wait_for_read", "bus_wire", "to_ring", "wake_and_cut", "compute", "total"):
        assert 0 <= stages[name]["p50_ms"] <= stages[name]["p99_ms"] <= stages[name]["max_ms"]
    # The last sample is due before the motor is told; the stages come one after the other.
    assert stages["total"]["p50_ms"] >= stages["compute"]["p50_ms"]


def test_the_world_speed_shortens_the_interpreter_slice_and_pauses_for_the_chip(report):
    assert report["interpreter_switch_interval_ms"] == pytest.approx(
        sys.getswitchinterval() * 1e3 / SPEED
    )
    # The chip's computing is real time that the world's clock did not count.
    assert 0 < report["emulator_paused_share"] < 0.9
    collections = report["garbage_collections"]
    assert set(collections) == {"0", "1", "2"}
    assert all(fig["count"] >= 0 and fig["max_ms"] >= 0 for fig in collections.values())
    # The daemon's one full collection before the sensor streams (odar.gc_pauses).
    assert report["garbage_collections_at_start"]["2"]["count"] >= 1


def test_host_stalls_are_watched_above_speed_one_where_the_watchers_may_be_real_time(report):
    stalls = report["host_stalls"]
    assert stalls["watching"] is may_take_sched_fifo()
    if stalls["watching"]:
        assert len(stalls["cpus"]) == len(os.sched_getaffinity(0))
        counted = [fig["counted_ms"] for fig in stalls["cpus"].values()]
        # Several CPUs stalled in one stretch count once: never more than all of them.
        assert 0 <= stalls["counted_once_ms"] <= sum(counted) + 0.01
        for fig in stalls["cpus"].values():
            assert fig["stalls"] == 0 or fig["longest_ms"] > 0.25


def test_a_garbage_collection_is_measured_by_generation():
    with GarbageCollectionMeter() as meter:
        gc.collect(1)
    figures = meter.figures()
    assert figures["1"]["count"] == 1 and figures["1"]["max_ms"] > 0
    assert figures["0"]["count"] == 0 and figures["2"]["count"] == 0
    assert meter._callback not in gc.callbacks


def test_collections_before_the_stream_are_kept_apart():
    streaming = False
    with GarbageCollectionMeter(streaming=lambda: streaming) as meter:
        gc.collect(2)
        streaming = True
        gc.collect(0)
    assert meter.figures(at_start=True)["2"]["count"] == 1
    assert meter.figures()["2"]["count"] == 0
    assert meter.figures()["0"]["count"] == 1
    assert meter.figures(at_start=True)["0"]["count"] == 0


def test_the_bench_scenario_is_a_valid_scenario_with_the_asked_phases(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(bench_scenario(30.0, 100.0, 3)), encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.seed == 3
    assert scenario.steps[1].kind == "wait" and scenario.steps[1].value == 30.0
    infer_waits = [s.value for s in scenario.steps[17:] if s.kind == "wait"]
    assert sum(infer_waits) == pytest.approx(100.0)
    assert scenario.steps[-1].value == "stop"
    assert [s.value for s in scenario.steps if s.kind == "until"][-1] == ("epochs", 80)
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump(bench_scenario(30.0, 100.0, 3, 5000)), encoding="utf-8")
    assert [s.value for s in load_scenario(longer).steps if s.kind == "until"][-1] == (
        "epochs",
        5000,
    )


def test_the_measuring_helpers_read_this_process():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile([], 50) is None
    assert current_rss_kib() > 1024
    assert 0 < process_age_seconds() < 24 * 3600
    assert "MainThread" in thread_cpu_seconds()
    start = CpuMark(10.0, 1.0, {"a": 0.5, "b": 0.1})
    later = CpuMark(14.0, 3.0, {"a": 1.5, "c": 9.0})
    assert start.per_sensor_second(later) == (4.0, 0.5, {"a": 0.25})
    assert later.per_sensor_second(start) is None


def test_the_sensor_and_the_interpreter_threads_are_reported(report):
    sensor = report["sensor"]
    # At every speed, where this process may: as with the real sensor.
    assert report["sensor_thread_realtime"] is may_take_sched_fifo()
    # The daemon's other threads and the wearer's one below it, where this process may.
    scheduled = report["threads_realtime"]
    motor = [name for name in scheduled if name.startswith("motor-gpio")]
    assert len(motor) == 1
    threads = ["main loop", "odar-sensor", "odar-windows", "odar-trainer", "odar-scenario", *motor]
    assert scheduled == dict.fromkeys(threads, may_take_sched_fifo(9))
    assert sensor["part"] == "0x68" and sensor["fifo_bytes"] == 1024
    assert sensor["samples"] > 0 and sensor["overflows"] == 0 and sensor["resets_detected"] == 0
    for name in ("1_thread", "2_threads"):
        figures = report["threads"][name]
        assert figures["windows"] == 300
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]


def emulated_config(tmp_path: Path, artifacts_dir: Path) -> Config:
    config_path = tmp_path / "odar.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {"sensor": {"backend": "emulated"}, "paths": {"artifacts_dir": str(artifacts_dir)}}
        ),
        encoding="utf-8",
    )
    return load_config(config_path)


def bench_arguments(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_only_the_sensor_thread_realtime_leaves_the_others_time_sharing(tmp_path, artifacts_dir):
    assert bench_arguments("--only-sensor-thread-realtime").only_sensor_thread_realtime
    config = emulated_config(tmp_path, artifacts_dir)
    daemon = BenchDaemon(config, EmulatedWearable.open(config, tmp_path).wearable)
    try:
        # The bench schedules the emulated daemon as the product does the real one...
        assert daemon._thread_priority("odar-sensor") == 10
        assert daemon._thread_priority("odar-windows") == 9
        # ...and as before session 13 when asked to.
        daemon.only_sensor_thread_realtime = True
        assert daemon._thread_priority("odar-sensor") == 10
        assert daemon._thread_priority("odar-windows") is None
        assert daemon._thread_priority("main loop") is None
    finally:
        daemon._close()


def test_an_unkind_chip_is_the_part_and_clock_asked_for(tmp_path, artifacts_dir):
    args = bench_arguments("--part", "0x98", "--chip-clock", "-0.08", "--jitter")
    world = EmulatedWearable.open(emulated_config(tmp_path, artifacts_dir), tmp_path)
    try:
        unkind = make_unkind(world, args)
        assert world.sensor.chip.peek(0x75) == 0x98 and world.sensor.chip.fifo_capacity == 4096
        assert world.sensor.chip.clock_offset == -0.08 and world.sensor.bus.jitter is not None
        assert unkind.reset_every == 0 and unkind.stall_every == 0
    finally:
        world.wearable.close()
