"""devtools.postgres: a private cluster on 127.0.0.1, its databases, a restart that keeps them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devtools.postgres import ROLE, Postgres, SyncConnection


def _one(url: str, sql: str) -> object:
    connection = SyncConnection(url)
    try:
        return connection.fetchval(sql)
    finally:
        connection.close()


def test_a_database_belongs_to_the_unprivileged_role_and_is_dropped_with_its_sessions(postgres: Postgres) -> None:
    url = postgres.create_database("devtools_probe")
    assert _one(url, "SELECT current_user") == ROLE
    assert _one(url, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
    assert _one(url, "SELECT current_setting('listen_addresses')") == "127.0.0.1"
    left_open = SyncConnection(url)  # a daemon a test left behind
    assert left_open.fetchval("SELECT 1") == 1
    postgres.drop_database("devtools_probe")
    with pytest.raises(Exception, match="does not exist"):
        _one(url, "SELECT 1")
    left_open.close()


def test_a_name_that_is_not_plain_is_refused(postgres: Postgres) -> None:
    with pytest.raises(ValueError, match="not a plain database name"):
        postgres.create_database('x"; DROP DATABASE postgres; --')


def test_a_restart_keeps_the_port_the_passwords_and_the_data(postgres_factory: Callable[..., Postgres]) -> None:
    server = postgres_factory()
    url = server.create_database("kept")
    _one(url, "CREATE TABLE t AS SELECT 42 AS answer")
    port, password = server.port, server.password
    server.restart()
    assert (server.port, server.password) == (port, password)
    assert _one(url, "SELECT answer FROM t") == 42
    server.stop()
    assert not server.running
