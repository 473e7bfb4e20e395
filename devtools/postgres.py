"""A private PostgreSQL cluster on 127.0.0.1, its data directory under one directory, for tests.

Debian's ``postgresql`` package, never its system service: ``initdb`` makes a cluster of our
own, ``postgres`` runs it as a child process on a free port (as the ``postgres`` user when we
are root: PostgreSQL refuses to run as root). Passwords are generated per cluster; a test
connects as the unprivileged role ``ticketd`` to a database of its own, which
``create_database`` copies from a template: ~11 ms with ``root`` in memory (tests/conftest.py
puts it in /dev/shm), several times that on a disk other jobs are writing to.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import re
import secrets
import signal
import subprocess
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from devtools._process import (
    ManagedServer,
    LOCALHOST, find_program, free_port, port_is_free, run_as, spawn, tail, terminate, track, untrack,
    wait_until,
)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
ADMIN = "postgres"  # the cluster's superuser: creates and drops the test databases
ROLE = "ticketd"  # what ticketd connects as: owns its databases, no superuser rights
_SERVICE_USER = "postgres"  # as root, the cluster runs as this account
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Durability off: a test cluster is thrown away with its directory, and fsync per commit and
# per CREATE DATABASE (a checkpoint with STRATEGY FILE_COPY) is most of what a test's
# database costs. No autovacuum either: no test database lives long enough to need it.
_SETTINGS = {
    "listen_addresses": LOCALHOST,
    "unix_socket_directories": "",  # TCP only: nothing to reach in a directory of ours
    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
    "autovacuum": "off", "max_connections": "200",
    "shared_buffers": "32MB",  # a test database is tiny; leave the memory to the rest of the suite
    "log_min_messages": "warning", "log_checkpoints": "off", "log_line_prefix": "%m [%p] %d ",
}

T = TypeVar("T")


def bin_dir() -> Path:
    """The directory of the newest installed server's programs (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    return Path(find_program("initdb")).resolve().parent  # elsewhere: on PATH, or an error naming the fix


def _version(path: str) -> int:
    return int(Path(path).parts[4]) if Path(path).parts[4].isdigit() else 0


class Postgres(ManagedServer):
    """One cluster: data directory, log and password files under ``root``.

    ``start()`` runs initdb once (the data directory survives ``restart()``), starts the
    server and returns when it accepts connections; ``stop()`` is a fast shutdown (open
    sessions are ended, as a test run's stray connections should not hold it up).
    """

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = Path(root).resolve()
        self.host = LOCALHOST
        self.port = port
        self._user = _SERVICE_USER if os.geteuid() == 0 else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin: SyncConnection | None = None
        self._bin = bin_dir()

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def password(self) -> str:
        """The ``ticketd`` role's password (generated with the cluster)."""
        return self._secret("role")

    def url(self, database: str) -> str:
        """What ticketd's ``database.url`` says to reach ``database`` as ``ticketd``."""
        return f"postgres://{ROLE}:{self.password}@{self.host}:{self.port}/{database}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgres://{ADMIN}:{self._secret('admin')}@{self.host}:{self.port}/{database}"

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self.port = self.port or free_port(self.host)
        if not wait_until(lambda: port_is_free(self.host, self.port), 5.0):
            raise RuntimeError(f"port {self.host}:{self.port} is still in use")
        settings = [arg for key, value in {**_SETTINGS, "port": str(self.port)}.items()
                    for arg in ("-c", f"{key}={value}")]
        self._proc = spawn([str(self._bin / "postgres"), "-D", str(self.data_dir), *settings],
                           self.log_path, user=self._user)
        track(self)
        try:
            if not wait_until(self._ready, START_TIMEOUT, interval=0.05):
                raise RuntimeError(f"PostgreSQL did not accept connections on {self.host}:{self.port}:\n"
                                   f"{self.log_tail()}")
            self._admin = SyncConnection(self.admin_url())
            _ensure_role(self._admin, self.password)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then whatever is left is killed. Safe to call twice."""
        admin, self._admin = self._admin, None
        if admin is not None:
            admin.close()
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            terminate(proc, grace=1.0, whole_group=True)
        untrack(self)

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    # -- databases -------------------------------------------------------------------------

    def create_database(self, name: str, template: str = "template1") -> str:
        """A new database owned by ``ticketd``, a copy of ``template``; its URL.

        FILE_COPY copies the template's files and takes a checkpoint, which costs nothing
        with fsync off; the default WAL_LOG writes every page of it to the WAL instead
        (measured in /dev/shm: 11 ms against 24 ms a database).
        """
        self._running_admin().execute(f'CREATE DATABASE "{_checked(name)}" TEMPLATE "{_checked(template)}" '
                                      f'OWNER "{ROLE}" STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any session still in it (a daemon a test left running)."""
        self._running_admin().execute(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')

    def _running_admin(self) -> SyncConnection:
        if self._admin is None:
            raise RuntimeError("the PostgreSQL cluster is not running")
        return self._admin

    # -- set-up ----------------------------------------------------------------------------

    def _initdb(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # as root: the postgres account must reach its data directory
        self.data_dir.mkdir(mode=0o700)
        pwfile = self.root / "admin.pw"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self._secret("admin") + "\n")
        owner = pwd.getpwnam(self._user) if self._user else None
        if owner:
            os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        argv = [str(self._bin / "initdb"), "-D", str(self.data_dir), "-U", ADMIN, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"]
        done = subprocess.run(run_as(self._user) + argv, capture_output=True, text=True, timeout=120,
                              cwd=self.root)  # initdb wants to read its working directory
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")

    def _secret(self, name: str) -> str:
        """A password made once per cluster and kept (mode 0600) beside the data directory."""
        path = self.root / f"{name}.secret"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(16))
        return path.read_text()

    def _ready(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited during start-up:\n{self.log_tail()}")
        # pg_isready says "accepting" only after recovery, when a login would succeed.
        probe = [str(self._bin / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port), "-t", "1"]
        return subprocess.run(probe, capture_output=True, timeout=5).returncode == 0


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a plain database name (lower case, digits, _)")
    return name


def _ensure_role(admin: SyncConnection, password: str) -> None:
    # The password goes in as a literal: a utility statement takes no parameters. It is hex.
    exists = admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", ROLE)
    verb = "ALTER" if exists else "CREATE"
    admin.execute(f"{verb} ROLE \"{ROLE}\" LOGIN PASSWORD '{password}'")


class SyncConnection:
    """One asyncpg connection driven from synchronous code (a test's config writer, the SMTP
    sink's thread), inside a running event loop or not: it lives in a thread of its own."""

    def __init__(self, url: str) -> None:
        import asyncpg  # only here: the rest of devtools runs without the postgres extra

        self._asyncpg = asyncpg
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="postgres-sync", daemon=True)
        self._thread.start()
        self._lock = threading.Lock()
        self._url = url
        self._connection: Any = None

    def execute(self, sql: str, *args: Any) -> str:
        return self._run(self._execute(sql, *args))

    def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._run(self._fetch(sql, *args))]

    def fetchval(self, sql: str, *args: Any) -> Any:
        rows = self.fetch(sql, *args)
        return rows[0][0] if rows else None

    def close(self) -> None:
        async def closing() -> None:
            if self._connection is not None and not self._connection.is_closed():
                await self._connection.close(timeout=5)
        try:
            self._run(closing(), timeout=10)
        except Exception:  # the server may be gone already; the thread stops regardless
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self, work: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        with self._lock:  # one statement at a time on the one connection
            return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    async def _connected(self) -> Any:
        if self._connection is None or self._connection.is_closed():
            self._connection = await self._asyncpg.connect(self._url)
        return self._connection

    async def _execute(self, sql: str, *args: Any) -> str:
        return str(await (await self._connected()).execute(sql, *args))

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        return list(await (await self._connected()).fetch(sql, *args))
