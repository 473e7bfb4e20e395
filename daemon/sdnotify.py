"""systemd's service notifications (sd_notify(3)): READY, RELOADING, STOPPING, STATUS, WATCHDOG.

Written by hand rather than taken from a library: the protocol is one datagram of
``KEY=value`` lines to the AF_UNIX socket named by $NOTIFY_SOCKET. systemd-python needs
libsystemd and a compiler; sdnotify (2017) knows neither MONOTONIC_USEC nor $WATCHDOG_PID.
Without $NOTIFY_SOCKET (not started by systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Callable, Mapping

from ticketd.daemon.pause import pause

log = logging.getLogger("ticketd.systemd")


class Notifier:
    """Tells the service manager how the daemon is; never raises, never blocks the event loop."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._warned = False

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """The socket and watchdog systemd handed this process, if any."""
        env = os.environ if env is None else env
        return cls(_address(env.get("NOTIFY_SOCKET", "")), _watchdog_usec(env))

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the timeout, as sd_watchdog_enabled(3) recommends."""
        if self.address is None or not self.watchdog_usec:
            return None
        return self.watchdog_usec / 2e6

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *_status(status))

    def reloading(self) -> bool:
        # systemd >= 253 ignores a RELOADING=1 without the CLOCK_MONOTONIC time it was sent at.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        return self.send(*_status(text))

    def send(self, *lines: str) -> bool:
        """One datagram; False (and one warning per process) if the manager could not be told."""
        if self.address is None or not lines:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # a manager that stopped reading must not stall the loop
                sock.sendto("\n".join(lines).encode(), self.address)
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), exc.strerror or exc)
            return False

    async def keep_alive(self, status: Callable[[], str], stop: asyncio.Event, every: float = 30.0) -> None:
        """WATCHDOG=1 (with the current STATUS) until ``stop``, from the event loop itself.

        A task, not a thread: a ping then proves the loop runs, so a loop blocked in a system
        call or a busy callback stops the pings and systemd restarts the daemon (WatchdogSec=).
        """
        interval = self.watchdog_interval
        while not stop.is_set():
            self.send(*(["WATCHDOG=1"] if interval else []), *_status(status()))
            await pause(stop, interval or every)


def _address(value: str) -> str | None:
    if value.startswith("@"):  # an abstract socket: a leading NUL byte in the kernel's name
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:  # e.g. systemd 254's vsock:CID:PORT, for a service in a VM
        log.warning("NOTIFY_SOCKET %r is not a Unix socket; not notifying systemd", value)
    return None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """$WATCHDOG_USEC, if the watchdog is meant for this process ($WATCHDOG_PID, when set)."""
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):  # inherited by a child: the watchdog is its parent's
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def _status(text: str) -> list[str]:
    # One line: a newline would start another KEY=value of the message.
    return [f"STATUS={' '.join(text.split())}"] if text else []
