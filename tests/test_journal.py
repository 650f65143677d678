"""Logging: journal fields when a journal exists, readable stderr lines otherwise, rate limits."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from odar import journal
from odar.journal import RateLimiter, journal_fields, log_event, setup_logging


class FakeClock:
    """Virtual time that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def restore_root_logger(monkeypatch, tmp_path):
    # No journal socket on this machine is not something to rely on.
    monkeypatch.setattr(journal, "JOURNAL_SOCKET", tmp_path / "no-journal-socket")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_without_a_journal_lines_go_to_stderr_with_timestamps_and_fields():
    stream = io.StringIO()
    handler = setup_logging("info", environ={}, stream=stream)
    assert isinstance(handler, logging.StreamHandler)
    log_event(logging.getLogger("odar.train"), "epoch 3 loss 0.41", epoch=3, loss=0.4123456789)
    logging.getLogger("odar.train").debug("not shown at info")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("INFO odar.train: epoch 3 loss 0.41 [epoch=3 loss=0.412346]")
    assert lines[0][:4].isdigit()  # a timestamp first


def test_stderr_captured_by_journald_gets_priority_prefixes_and_no_timestamp(monkeypatch):
    monkeypatch.setitem(sys.modules, "systemd", None)  # systemd-python not installed
    stream = io.StringIO()
    setup_logging(logging.DEBUG, environ={"JOURNAL_STREAM": "8:1234"}, stream=stream)
    log = logging.getLogger("odar.controls")
    log_event(log, "mode train", level=logging.WARNING, mode="train")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "<4>odar.controls: mode train [mode=train]"
    assert lines[1] == "<3>odar.controls: failed"
    assert all(line.startswith("<3>") for line in lines[1:])
    assert lines[-1] == "<3>RuntimeError: boom"


def test_with_a_journal_fields_are_sent_uppercase_and_prefixed():
    sent: list[tuple[str, dict]] = []

    def sender(MESSAGE, **fields):  # the name systemd.journal.send gives it
        sent.append((MESSAGE, fields))

    handler = setup_logging(
        "info", identifier="odar-test", environ={"JOURNAL_STREAM": "8:1"}, journal_sender=sender
    )
    assert type(handler).__name__ == "JournalHandler"
    log_event(logging.getLogger("odar.infer"), "P(Class B) 0.81", p=[0.19, 0.81], mode="infer")
    ((message, fields),) = sent
    assert message == "P(Class B) 0.81"
    assert fields["ODAR_P"] == "0.19,0.81"
    assert fields["ODAR_MODE"] == "infer"
    assert fields["SYSLOG_IDENTIFIER"] == "odar-test"
    assert fields["PRIORITY"] == "6"
    assert fields["CODE_FUNC"] == "test_with_a_journal_fields_are_sent_uppercase_and_prefixed"


def test_setting_up_again_replaces_the_handler():
    first = setup_logging("info", environ={}, stream=io.StringIO())
    second = setup_logging("warning", environ={}, stream=io.StringIO())
    root = logging.getLogger()
    assert second in root.handlers and first not in root.handlers
    assert root.level == logging.WARNING


def test_journal_field_names():
    assert journal_fields(epoch=1, ODAR_LOSS=0.5) == {"ODAR_EPOCH": "1", "ODAR_LOSS": "0.5"}
    with pytest.raises(ValueError, match="class-b"):
        journal_fields(**{"class-b": 1})


def test_rate_limiter_bounds_the_rate_and_counts_what_it_held_back():
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock)
    allowed = 0
    for _ in range(1000):  # 10 s of events at 100 Hz
        allowed += limiter.allow()
        clock.sleep(0.01)
    assert 20 <= allowed <= 21
    assert limiter.take_suppressed() == 1000 - allowed
    assert limiter.take_suppressed() == 0


def test_rate_limiter_does_not_bank_a_burst_after_a_quiet_spell():
    clock = FakeClock()
    limiter = RateLimiter(1.0, clock)
    assert limiter.allow()
    clock.sleep(60.0)
    assert [limiter.allow() for _ in range(5)] == [True, False, False, False, False]


def test_rate_limiter_rejects_a_zero_rate():
    with pytest.raises(ValueError, match="max_per_second"):
        RateLimiter(0, FakeClock())
