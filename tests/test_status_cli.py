"""``odar status`` (and the status file the daemon keeps) through the public CLI."""

from __future__ import annotations

import json

import pytest
from conftest import wait_until

from odar.cli import main
from odar.controls import Mode
from odar.status_file import STATUS_FILE, TRAINING_RUN_FILE


@pytest.fixture(scope="module")
def inferring(tmp_path_factory, artifacts_dir):
    """A daemon that collected both classes, trained until the loss settled and now infers."""
    from conftest import ConfigWriter, launch_daemon
    from test_service import collect_both_classes

    directory = tmp_path_factory.mktemp("status")
    path = ConfigWriter(directory, artifacts_dir).write(
        {"training": {"stop_when": "settled"}, "classes": {"names": ["sitting", "walking"]}}
    )
    running = launch_daemon(path)
    try:
        collect_both_classes(running)
        running.press("mode")
        running.press("start")
        wait_until(
            lambda: running.daemon.trainer.runs and not running.daemon.status().running,
            "training to finish by itself",
        )
        running.press("mode")
        assert running.daemon.controls.mode is Mode.INFER
        running.press("start")
        wait_until(
            lambda: running.daemon.status_report.last_probabilities is not None,
            "an inferred window",
        )
        running.daemon._publish_status()
        yield running, path
    finally:
        running.halt()


def test_status_shows_mode_class_counts_training_and_sensor(inferring, capsys):
    running, path = inferring
    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "mode:        infer, running" in out
    counts = running.daemon.samples.counts()
    assert f"sitting {counts[0]}, walking {counts[1]}" in out
    assert f"epoch {running.daemon.status().epoch}" in out
    assert "(settled)" in out
    assert "last P:      sitting 0." in out
    assert "Hz measured (configured 100)" in out


def test_status_json_is_the_status_file(inferring, capsys):
    running, path = inferring
    assert main(["status", "--config", str(path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["mode"] == "infer" and status["running"] is True
    assert status["classes"] == ["sitting", "walking"]
    assert sum(status["counts"].values()) == sum(running.daemon.samples.counts())
    assert status["training"]["losses"] and status["loss"] == status["training"]["losses"][-1]
    assert set(status["probabilities"]["by_class"]) == {"sitting", "walking"}
    sensor = status["sensor"]
    # Measured, so below 100 Hz when the loaded test machine lets the FIFO overflow.
    assert 0 < sensor["rate_hz"] <= 110
    counters = running.daemon.wearable.sensor.counters
    assert sensor["overflows"] <= counters.overflows and sensor["gaps"] <= counters.gaps
    status_file = running.daemon.config.runtime_dir / STATUS_FILE
    assert status_file.stat().st_mode & 0o777 == 0o644


def test_watch_draws_the_loss_chart_and_probability_bars(inferring, capsys):
    _, path = inferring
    assert main(["watch", "--config", str(path), "--frames", "1"]) == 0
    out = capsys.readouterr().out
    assert "training loss, run 1" in out and "epoch" in out
    assert "P(class); the motor pulses when P(walking) > 0.75" in out
    assert "sitting┤" in out and "walking┤" in out


def test_the_finished_run_is_kept_for_odar_plot(inferring, tmp_path, capsys):
    running, path = inferring
    record = json.loads((running.daemon.config.state_dir / TRAINING_RUN_FILE).read_text())
    assert record["finish_reason"] == "loss settled"
    assert len(record["losses"]) == running.daemon.status().epoch
    image = tmp_path / "loss.png"
    status = main(["plot", str(image), "--config", str(path)])
    captured = capsys.readouterr()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert status == 1
        assert "odar plot needs matplotlib" in captured.err
        assert not image.exists()
    else:
        assert status == 0
        assert image.read_bytes().startswith(b"\x89PNG")


def test_status_without_a_daemon_exits_3_saying_so(config_writer, capsys):
    path = config_writer.write()
    assert main(["status", "--config", str(path)]) == 3
    assert "odar is not running (no status file at" in capsys.readouterr().err


def test_the_status_file_goes_when_the_daemon_stops(start_daemon):
    running = start_daemon()
    status_file = running.daemon.config.runtime_dir / STATUS_FILE
    wait_until(status_file.exists, "the status file")
    assert running.stop() == 0
    assert not status_file.exists()


def test_plot_before_any_training_names_the_file(config_writer, capsys):
    path = config_writer.write()
    assert main(["plot", "out.png", "--config", str(path)]) == 78
    assert "no training run recorded yet" in capsys.readouterr().err
