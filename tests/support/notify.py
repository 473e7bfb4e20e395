"""The service manager's end of $NOTIFY_SOCKET: a real datagram socket that records what it hears."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heard:
    at: float  # time.monotonic() when it arrived
    fields: dict[str, str]


class NotifySocket:
    """Binds ``path`` (or an abstract name, given as "@name") and keeps every message with its time."""

    def __init__(self, address: str | Path) -> None:
        self.address = str(address)
        self.heard: list[Heard] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.address.replace("@", "\0", 1) if self.address.startswith("@") else self.address)
        self._sock.settimeout(0.1)
        self._lock = threading.Condition()
        self._open = True
        self._thread = threading.Thread(target=self._receive, name="notify-socket", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while self._open:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            pairs = (line.partition("=") for line in data.decode().split("\n"))
            fields = {key: value for key, equals, value in pairs if equals}
            with self._lock:
                self.heard.append(Heard(time.monotonic(), fields))
                self._lock.notify_all()

    def wait_for(self, key: str, value: str = "1", after: int = 0, timeout: float = 30.0) -> int:
        """The index of the first message from ``after`` on with ``key=value``; AssertionError if none came."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for index in range(after, len(self.heard)):
                    if self.heard[index].fields.get(key) == value:
                        return index
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {key}={value} within {timeout} s; heard {self.messages(after)}")
                self._lock.wait(left)

    def messages(self, after: int = 0) -> list[dict[str, str]]:
        with self._lock:
            return [h.fields for h in self.heard[after:]]

    def pings(self, since: float, until: float) -> list[float]:
        """When WATCHDOG=1 arrived between two time.monotonic() instants."""
        with self._lock:
            return [h.at for h in self.heard if "WATCHDOG" in h.fields and since <= h.at <= until]

    def close(self) -> None:
        self._open = False
        self._thread.join()
        self._sock.close()
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)
