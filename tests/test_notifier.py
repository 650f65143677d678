"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import time

import pytest

from odar.notifier import SystemdNotifier


@pytest.fixture
def manager(tmp_path):
    """A datagram socket where systemd would listen; yields (path, socket)."""
    path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(2.0)
    yield path, listener
    listener.close()


def received(listener: socket.socket) -> str:
    return listener.recv(4096).decode()


def test_messages_arrive_as_systemd_expects(manager):
    path, listener = manager
    with SystemdNotifier(environ={"NOTIFY_SOCKET": path}) as notifier:
        assert notifier.enabled
        assert notifier.ready() is True
        assert received(listener) == "READY=1"
        assert notifier.status("collect: 3/5 samples\nlast loss 0.4")
        assert received(listener) == "STATUS=collect: 3/5 samples last loss 0.4"
        assert notifier.watchdog()
        assert received(listener) == "WATCHDOG=1"
        assert notifier.stopping()
        assert received(listener) == "STOPPING=1"
        assert notifier.notify(errno=5, status="x")
        assert received(listener) == "ERRNO=5\nSTATUS=x"


def test_reloading_carries_the_monotonic_timestamp(manager):
    path, listener = manager
    notifier = SystemdNotifier(socket_path=path, environ={})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = dict(line.split("=", 1) for line in received(listener).splitlines())
    assert lines["RELOADING"] == "1"
    assert before <= int(lines["MONOTONIC_USEC"]) <= after
    notifier.close()


def test_abstract_socket_with_at_sign():
    name = f"odar-test-{os.getpid()}-{time.monotonic_ns()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(b"\0" + name.encode())
    listener.settimeout(2.0)
    try:
        with SystemdNotifier(environ={"NOTIFY_SOCKET": "@" + name}) as notifier:
            assert notifier.ready()
        assert received(listener) == "READY=1"
    finally:
        listener.close()


def test_without_a_socket_every_call_is_a_no_op_that_says_so():
    notifier = SystemdNotifier(environ={})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False


def test_a_vanished_manager_does_not_raise(manager, caplog):
    path, listener = manager
    notifier = SystemdNotifier(socket_path=path, environ={})
    listener.close()
    os.unlink(path)
    assert notifier.ready() is False
    assert notifier.ready() is False
    assert sum("cannot notify systemd" in r.message for r in caplog.records) == 1


def test_fields_other_than_status_cannot_span_lines(manager):
    path, _ = manager
    with pytest.raises(ValueError, match="ERRNO"):
        SystemdNotifier(socket_path=path, environ={}).notify(errno="1\nREADY=1")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}, 10.0),
        ({"WATCHDOG_USEC": "3000000"}, 1.5),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_for_this_process(environ, expected):
    assert SystemdNotifier(environ=environ).watchdog_interval() == expected
