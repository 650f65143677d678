"""sd_notify(3) over a plain AF_UNIX datagram socket, so the daemon needs no systemd-python for it.

Without ``$NOTIFY_SOCKET`` (not started by systemd with ``Type=notify``) every call is a no-op
that returns False, so the service code never has to ask whether it runs under systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

_log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends ``KEY=value`` lines to the service manager.

    *socket_path* overrides ``$NOTIFY_SOCKET``; a leading ``@`` names an abstract socket.
    Thread-safe: each message is one ``sendto`` on a datagram socket.
    """

    def __init__(
        self, socket_path: str | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        self._environ = os.environ if environ is None else environ
        path = socket_path if socket_path is not None else self._environ.get("NOTIFY_SOCKET")
        self._address: str | bytes | None = _socket_address(path) if path else None
        self._socket: socket.socket | None = None
        self._warned = False
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, **fields: object) -> bool:
        """Send ``FIELD=value`` for each keyword (names are upper-cased); True if it was sent."""
        lines = []
        for name, value in fields.items():
            text = str(value)
            if name.upper() == "STATUS":
                text = " ".join(text.splitlines())  # STATUS= is one line
            elif "\n" in text:
                raise ValueError(f"sd_notify field {name.upper()} cannot span lines: {text!r}")
            lines.append(f"{name.upper()}={text}")
        return self._send("\n".join(lines))

    def ready(self) -> bool:
        return self.notify(READY=1)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC=: the current start/stop limit ends no sooner than *seconds*
        from now (a save under way is not killed)."""
        return self.notify(EXTEND_TIMEOUT_USEC=int(seconds * 1e6))

    def reloading(self) -> bool:
        """RELOADING=1 with the timestamp ``Type=notify-reload`` (systemd >= 253) requires."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec)

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half systemd's timeout), or None if not asked for."""
        usec = self._environ.get("WATCHDOG_USEC")
        pid = self._environ.get("WATCHDOG_PID")
        if not usec:
            return None
        if pid and pid != str(os.getpid()):
            return None  # meant for another process (we were forked or exec'd by it)
        try:
            timeout = int(usec)
        except ValueError:
            _log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
            return None
        return timeout / 2e6 if timeout > 0 else None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, message: str) -> bool:
        if self._socket is None or self._address is None:
            return False
        try:
            self._socket.sendto(message.encode("utf-8"), self._address)
        except OSError as error:
            # The manager going away must not take the service with it; say so once.
            if not self._warned:
                _log.warning("cannot notify systemd at %r: %s", self._address, error)
                self._warned = True
            return False
        return True


def _socket_address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode("utf-8")
    return path
