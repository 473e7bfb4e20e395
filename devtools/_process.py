"""Plumbing shared by the dev servers: programs, free ports, children that never outlive us."""

from __future__ import annotations


import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

LOCALHOST = "127.0.0.1"

# Daemons live in /usr/sbin, which is not on an ordinary user's PATH on Debian.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class Stoppable(Protocol):
    def stop(self) -> None: ...


# Strong references: a server whose object was dropped must still be stopped at exit.
_running: set[Stoppable] = set()


def find_program(name: str) -> str:
    """Return the absolute path of `name`, looking in the sbin directories too."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    found = shutil.which(name, path=path)
    if found is None:
        raise FileNotFoundError(f"{name} not found; run scripts/install-system-deps.sh")
    return found


def free_port(host: str = LOCALHOST) -> int:
    """Ask the kernel for a currently unused TCP port on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when a listener could bind `port` now (SO_REUSEADDR, as servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll `check` until it returns True or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None, user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own process group, stdout/stderr appended to `log`.

    When called from the main thread the child also gets a parent-death signal (setpriv
    --pdeathsig), so a SIGKILLed or SIGTERMed test run cannot leave servers behind. Linux
    sends that signal when the *thread* that forked dies, hence main thread only; and it
    forgets it when the process changes its uid, hence `user` (run as that user from the
    start, root only) for servers that would otherwise drop privileges themselves.
    """
    wrapper = _as_user(user)
    if threading.current_thread() is threading.main_thread():
        wrapper += ["--pdeathsig", "TERM"]
    if wrapper:
        argv = [find_program("setpriv"), *wrapper, "--", *argv]
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )


def run_as(user: str | None) -> list[str]:
    """The prefix that runs a command as ``user`` (root only); [] for ourselves."""
    wrapper = _as_user(user)
    return [find_program("setpriv"), *wrapper, "--"] if wrapper else []


def _as_user(user: str | None) -> list[str]:
    if user is None:
        return []
    return [f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--clear-groups"]


def terminate(proc: subprocess.Popen[bytes], grace: float = 5.0, whole_group: bool = False) -> None:
    """SIGTERM the process (or its whole group), SIGKILL after `grace`, then kill what is left.

    Dovecot wants `whole_group`: its master, told alone, waits a second for its log process
    to drain; with every process told, it is gone in milliseconds.
    """
    if proc.poll() is None:
        if whole_group:
            _signal_group(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # Children (login/imap processes, spamd workers) share the group; none may linger
    # holding the listening socket or mail files.
    _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def track(server: Stoppable) -> None:
    """Remember a running server so that interpreter exit stops it."""
    _running.add(server)


def untrack(server: Stoppable) -> None:
    _running.discard(server)


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


def tail(path: Path, lines: int = 60) -> str:
    """The last `lines` lines of a log file ('' if it does not exist)."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 64 * 1024))
            text = log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ManagedServer:
    """The life-cycle sugar every dev server shares: restart, and use as a context manager."""

    _proc: subprocess.Popen[bytes] | None = None  # set by servers that run as a child process

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        """Stop and start again on the same port(s), keeping the server's data."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
