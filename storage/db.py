"""Open and close the database (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit

from tortoise import Tortoise, connections

MODELS = ["storage.models"]


class DatabaseError(Exception):
    """The database cannot be opened; the text says why."""


def tortoise_config(url: str) -> dict[str, object]:
    """Translate our URL into Tortoise's config, with durable SQLite settings."""
    if url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
        connection: object = {
            "engine": "tortoise.backends.sqlite",
            # WAL with synchronous=FULL: a commit survives a power cut, not only a crash.
            "credentials": {"file_path": path, "journal_mode": "WAL", "synchronous": "FULL",
                            "busy_timeout": 30000},
        }
    else:
        connection = url.replace("postgresql://", "postgres://", 1)
    return {"connections": {"default": connection},
            "apps": {"models": {"models": MODELS, "default_connection": "default"}},
            "use_tz": True, "timezone": "UTC"}


def _prepare_sqlite_dir(url: str) -> None:
    if not url.startswith("sqlite://"):
        return
    path = url[len("sqlite://"):]
    if path in ("", ":memory:"):
        return
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create database directory {parent}: {exc.strerror}") from None


async def open_database(url: str) -> None:
    """Connect and create missing tables (safe to repeat)."""
    _prepare_sqlite_dir(url)
    try:
        await Tortoise.init(config=tortoise_config(url))
        await Tortoise.generate_schemas(safe=True)
    except OSError as exc:
        raise DatabaseError(f"cannot open database {_redacted(url)}: {exc}") from None
    except Exception as exc:  # sqlite3 / asyncpg errors have no common base
        if type(exc).__module__.startswith(("sqlite3", "asyncpg", "tortoise")):
            raise DatabaseError(f"cannot open database {_redacted(url)}: {exc}") from None
        raise


async def close_database() -> None:
    await connections.close_all()


@asynccontextmanager
async def database(url: str) -> AsyncIterator[None]:
    await open_database(url)
    try:
        yield
    finally:
        await close_database()


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(parts.password, "***")
    return url
