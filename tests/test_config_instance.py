"""The ``[instance]`` section: optional, a name that defaults to the host name, a lease that is checked."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ticketd.daemon.config import ConfigError, load_config
from tests.test_config import MINIMUM, write


def test_without_instance_the_host_names_it_and_a_lease_is_thirty_seconds(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, MINIMUM)).instance
    assert (settings.name, settings.lease_seconds, settings.renew_every) == (socket.gethostname(), 30.0, 10.0)


def test_a_name_and_a_lease_are_taken_as_written(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, MINIMUM + '\n[instance]\nname = "mail1"\nlease_seconds = 2.5\n')).instance
    assert (settings.name, settings.lease_seconds) == ("mail1", 2.5)


@pytest.mark.parametrize("table, message", [
    ("lease_seconds = 0", "instance.lease_seconds: expected a number of seconds (1-3600), got 0.0"),
    ("lease_seconds = 86400", "instance.lease_seconds: expected a number of seconds (1-3600), got 86400.0"),
    ('lease_seconds = "30s"', "instance.lease_seconds: expected a number of seconds (1-3600), got '30s'"),
    ('name = ""', "instance.name: expected a short name for this instance (1-100 printable characters), got ''"),
    ('name = "a\\u001bb"', "instance.name: expected a short name for this instance"),
    ("lease = 30", "instance.lease: unknown key"),
])
def test_a_bad_instance_key_names_the_file_the_key_and_what_was_expected(tmp_path: Path, table: str,
                                                                          message: str) -> None:
    path = write(tmp_path, MINIMUM + f"\n[instance]\n{table}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
