"""Real servers on 127.0.0.1 for the whole suite: Dovecot, an SMTP sink, on demand spamd, Postfix
and (TICKETD_TEST_DB=postgres) PostgreSQL."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

# `devtools` is a top-level package of the checkout, not of the installed distribution.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from devtools.dovecot import Dovecot, MailUser  # noqa: E402
from devtools.pipeuser import pipe_python as make_pipe_python  # noqa: E402
from devtools.postfix import Postfix  # noqa: E402
from devtools.postgres import Postgres  # noqa: E402
from devtools.smtpsink import SmtpSink  # noqa: E402
from devtools.spamd import Spamd  # noqa: E402
from tests.support import backend  # noqa: E402

S = TypeVar("S", Dovecot, Postfix, Postgres)


def _server_dir(name: str) -> Path:
    """A fresh directory that unprivileged server processes can reach.

    Not tmp_path: pytest makes /tmp/pytest-of-<user> mode 0700, and when the suite runs as
    root, Dovecot's mail processes (uid nobody) could not enter it. For the same reason root
    ignores $TMPDIR, which may be private too.
    """
    parent = "/tmp" if os.geteuid() == 0 else None
    path = Path(tempfile.mkdtemp(prefix=f"ticketd-{name}-", dir=parent))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the session; use `fresh_user` so tests do not see each other's mail."""
    root = _server_dir("dovecot")
    try:
        with Dovecot(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _memory_dir(name: str) -> Path:
    """Like ``_server_dir``, but in memory (/dev/shm) where there is one.

    A PostgreSQL database is some 300 files: on the shared disk, with other jobs writing, each
    file created cost ~1 ms (a CREATE DATABASE 300 ms; in memory 11 ms).
    """
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return _server_dir(name)
    path = Path(tempfile.mkdtemp(prefix=f"ticketd-{name}-", dir=shm))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One private PostgreSQL cluster for the session (a missing install fails, never skips)."""
    root = _memory_dir("postgres")
    try:
        with Postgres(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_databases(postgres: Postgres) -> Iterator[backend.Databases]:
    databases = backend.Databases(postgres)
    databases.make_template()
    backend.use(databases)
    try:
        yield databases
    finally:
        backend.use(None)


@pytest.fixture(autouse=True)
def _test_databases(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under PostgreSQL, the databases a test made (``backend.url``) are dropped when it ends."""
    if not backend.POSTGRES:
        yield
        return
    databases: backend.Databases = request.getfixturevalue("postgres_databases")
    yield
    databases.drop_all()


@pytest.fixture
def fresh_user(dovecot: Dovecot) -> MailUser:
    """A new login with an empty INBOX on the session Dovecot."""
    return dovecot.add_user()


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """Like tmp_path, but reachable by the unprivileged processes of a server run as root."""
    path = _server_dir("test")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class ServerFactory(Generic[S]):
    """Starts private servers in fresh directories; remembers them for clean-up and failure logs."""

    def __init__(self, name: str, make: Callable[..., S], where: Callable[[str], Path] = _server_dir) -> None:
        self.name = name
        self.make = make
        self.where = where
        self.servers: list[S] = []

    def __call__(self, *args: Any, **kwargs: Any) -> S:
        server = self.make(self.where(self.name), *args, **kwargs)
        self.servers.append(server)  # before start(), so a failed start is cleaned up too
        server.start()
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def dovecot_factory() -> Iterator[ServerFactory[Dovecot]]:
    """Start private Dovecot instances (e.g. to restart one); all are stopped afterwards."""
    factory = ServerFactory("dovecot", Dovecot)
    yield factory
    factory.close()


@pytest.fixture
def postgres_factory() -> Iterator[ServerFactory[Postgres]]:
    """Start private PostgreSQL clusters (e.g. to restart one); all are stopped afterwards."""
    factory = ServerFactory("postgres", Postgres, where=_memory_dir)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    """One SMTP sink for the session; use `fresh_sink` to start a test from a clean slate."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture(scope="session")
def plain_smtp_sink() -> Iterator[SmtpSink]:
    """A session sink that does not offer PIPELINING: the outbox sends command by command."""
    with SmtpSink(pipelining=False) as sink:
        yield sink


def _clean(sink: SmtpSink) -> Iterator[SmtpSink]:
    sink.up()
    sink.clear()
    yield sink
    sink.up()
    sink.clear()


@pytest.fixture
def fresh_sink(smtp_sink: SmtpSink) -> Iterator[SmtpSink]:
    """The session sink, listening, empty and accepting, and left listening afterwards."""
    yield from _clean(smtp_sink)


@pytest.fixture(params=["pipelining", "command-by-command"])
def either_sink(request: pytest.FixtureRequest, smtp_sink: SmtpSink, plain_smtp_sink: SmtpSink) -> Iterator[SmtpSink]:
    """``fresh_sink`` offering PIPELINING, then one that does not: the outbox's two ways to send."""
    yield from _clean(smtp_sink if request.param == "pipelining" else plain_smtp_sink)


@pytest.fixture(scope="session")
def spamd() -> Iterator[Spamd]:
    """A private offline spamd, started (a few seconds) only if some test asks for it."""
    root = _server_dir("spamd")
    try:
        with Spamd(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pipe_python() -> Iterator[Path]:
    """An interpreter Postfix's pipe user can run, with this checkout's code (see devtools.postfix)."""
    dest = _server_dir("pipe-python")
    try:
        yield make_pipe_python(REPO_ROOT, dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


@pytest.fixture
def postfix_factory() -> Iterator[ServerFactory[Postfix]]:
    """Start private Postfix instances (`factory(pipe_argv, domains=..., relayhost=...)`)."""
    factory = ServerFactory("postfix", Postfix)
    yield factory
    factory.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Show the end of the servers' logs under a failed test."""
    report: pytest.TestReport = yield
    if report.failed:
        for name, server in _servers(getattr(item, "funcargs", {})):
            report.sections.append((f"{name} log (end)", server.log_tail()))
        if (cluster := backend.cluster()) is not None:
            report.sections.append(("postgres log (end)", cluster.log_tail()))
    return report


def _servers(funcargs: dict[str, object]) -> Iterator[tuple[str, Dovecot | Spamd | Postfix | Postgres]]:
    for name, value in funcargs.items():
        if isinstance(value, (Dovecot, Spamd, Postfix)):
            yield name, value
        elif isinstance(value, ServerFactory):
            for n, server in enumerate(value.servers):
                yield f"{name}[{n}]", server
