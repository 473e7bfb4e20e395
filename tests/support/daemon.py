"""Run ticketd against the session's Dovecot and SMTP sink, in-process or as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from ticketd.daemon import app
from ticketd.daemon.config import Config, load_config
from ticketd.storage import queries
from ticketd.storage.db import database
from tests.support import backend

PROJECT = Path(__file__).resolve().parents[2]


def write_config(directory: Path, imap_port: int, smtp_port: int, mailboxes: list[tuple[str, str]],
                 after: str = "seen", extra: str = "", mailbox_extra: str = "", max_bytes: int = 25 << 20,
                 auto_replies_per_hour: int = 1000) -> Path:
    """A config for one or more (name, user address) mailboxes; the user's password is "secret".

    The database is ``directory``/ticketd.db, or its PostgreSQL stand-in (tests.support.backend).
    The loop guard (automatic mails per recipient an hour) is lifted unless a test sets it:
    generated customers open several tickets within minutes, and each must be acknowledged.
    """
    directory.mkdir(parents=True, exist_ok=True)
    boxes = "".join(f"""
[[mailboxes]]
name = "{name}"
address = "{address}"
after_processing = "{after}"
poll_interval = 600
{mailbox_extra}
[mailboxes.imap]
host = "127.0.0.1"
port = {imap_port}
security = "none"
username = "{address}"
password = "secret"
timeout = 10
""" for name, address in mailboxes)
    text = f"""
[limits]
max_message_bytes = {max_bytes}
auto_replies_per_hour = {auto_replies_per_hour}

[database]
url = "{backend.url(directory / 'ticketd.db')}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "Example Support <{mailboxes[0][1]}>"
retry_base = 0.2
retry_max = 1
timeout = 10
{extra}
{boxes}"""
    path = directory / "ticketd.toml"
    path.write_text(text)
    return path


def cli(config: Path, *args: str, stdin: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    """``ticketd -c CONFIG ARGS`` as a real process."""
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    return subprocess.run([sys.executable, "-m", "ticketd.daemon", "-c", str(config), *args], input=stdin,
                          capture_output=True, timeout=timeout, env=env, cwd=PROJECT)


def cli_json(config: Path, *args: str) -> Any:
    done = cli(config, *args)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


async def run_once(config_path: Path, **kwargs: Any) -> int:
    return await app.run_once(load_config(config_path), parse_workers=0, **kwargs)


@asynccontextmanager
async def running(config_path: Path) -> AsyncIterator[Config]:
    """The daemon (``run``) in this event loop, stopped on exit."""
    config = load_config(config_path)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run_forever(config, stop, parse_workers=0))
    try:
        yield config
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def tickets(config_path: Path) -> list[dict[str, Any]]:
    async with database(load_config(config_path).database_url):
        return await queries.ticket_list()


async def ticket(config_path: Path, number: int) -> dict[str, Any]:
    async with database(load_config(config_path).database_url):
        found = await queries.ticket_detail(number)
    assert found is not None
    return found


async def eventually(check: Any, timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll an async ``check`` until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(interval)
