"""A private SpamAssassin spamd on 127.0.0.1, offline (local rules only), for tests."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
from pathlib import Path

from devtools._process import (
    ManagedServer,
    LOCALHOST, find_program, free_port, port_is_free, spawn, tail, terminate, track, untrack,
    wait_until,
)

# Loading and compiling the rules takes a few seconds; slow CI machines take longer.
START_TIMEOUT = 90.0
# As root, spamd runs as nobody from the start (not `--username`, which would make it drop
# privileges itself and so lose the parent-death signal).
_ROOT_USER = "nobody"
# No network tests, no per-user files, and nothing learnt between runs: verdicts depend
# only on the message and the shipped rules.
_OPTIONS = ["--local", "--nouser-config", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0"]


class Spamd(ManagedServer):
    """One spamd, its log and helper home dir under `root`; `start()` returns once it PONGs."""

    def __init__(self, root: Path, port: int = 0, *, children: int = 4) -> None:
        self.root = Path(root).resolve()
        self.host = LOCALHOST
        self.port = port
        self.children = children
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "spamd.log"

    def start(self) -> None:
        if self.running:
            return
        self.port = self.port or free_port(self.host)
        if not wait_until(lambda: port_is_free(self.host, self.port), 5.0):
            raise RuntimeError(f"port {self.host}:{self.port} is still in use")
        user = _ROOT_USER if os.geteuid() == 0 else None
        self._proc = spawn(self._argv(), self.log_path, env=self._env(), user=user)
        track(self)
        try:
            if not wait_until(self._pongs, START_TIMEOUT, interval=0.05):
                raise RuntimeError(f"spamd did not answer PING on {self.host}:{self.port}:\n"
                                   f"{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop spamd and its children. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc)
        untrack(self)




    def ping(self) -> bool:
        """True when spamd answers the spamc protocol's PING with PONG."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2.0) as sock:
                sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
                return b" PONG" in sock.recv(128)
        except OSError:
            return False

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def _pongs(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"spamd exited during start-up:\n{self.log_tail()}")
        return self.ping()

    def _argv(self) -> list[str]:
        home = self._home()
        return [
            find_program("spamd"), *_OPTIONS,
            f"--listen={self.host}:{self.port}", f"--allowed-ips={self.host}",
            f"--max-children={self.children}", f"--min-children={self.children}",
            "--syslog=stderr", f"--helper-home-dir={home}",
        ]

    def _home(self) -> Path:
        home = self.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(_ROOT_USER)
            os.chown(home, user.pw_uid, user.pw_gid)
        return home

    def _env(self) -> dict[str, str]:
        # HOME must not point at root's home, which the unprivileged children cannot read.
        return {**os.environ, "HOME": str(self._home())}
