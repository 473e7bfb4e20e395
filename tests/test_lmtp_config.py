"""The [lmtp] section: a Unix socket path or a loopback address, and errors that say file, key, expectation."""

from __future__ import annotations

import grp
import os
from pathlib import Path

import pytest

from ticketd.daemon.config import ConfigError, load_config
from ticketd.daemon.config_lmtp import LmtpConfig

BASE = """\
[database]
url = "sqlite:///var/lib/ticketd/ticketd.db"

[smtp]
host = "127.0.0.1"
port = 2525
security = "none"
from = "Example Support <support@example.test>"

[[addresses]]
name = "support"
address = "support@example.test"
"""


def load(tmp_path: Path, lmtp: str) -> LmtpConfig:
    path = tmp_path / "ticketd.toml"
    path.write_text(BASE + "\n[lmtp]\n" + lmtp + "\n")
    config = load_config(path).lmtp
    assert isinstance(config, LmtpConfig)
    return config


def refused(tmp_path: Path, lmtp: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, lmtp)
    return str(caught.value)


def test_a_unix_socket_path_with_a_restrictive_default_mode(tmp_path: Path) -> None:
    config = load(tmp_path, 'listen = "/run/ticketd/lmtp.sock"')
    assert config.path == Path("/run/ticketd/lmtp.sock") and config.host is None
    assert config.socket_mode == 0o660 and config.socket_group is None


def test_loopback_addresses_v4_and_v6(tmp_path: Path) -> None:
    v4 = load(tmp_path, 'listen = "127.0.0.1:2424"')
    assert (v4.host, v4.port, v4.path) == ("127.0.0.1", 2424, None)
    v6 = load(tmp_path, 'listen = "[::1]:2424"')
    assert (v6.host, v6.port) == ("::1", 2424)


def test_without_the_section_the_daemon_does_not_listen(tmp_path: Path) -> None:
    path = tmp_path / "ticketd.toml"
    path.write_text(BASE)
    assert load_config(path).lmtp is None


@pytest.mark.parametrize("listen", ["0.0.0.0:2424", "192.0.2.7:24", "[::]:2424", "[2001:db8::1]:24"])
def test_a_host_that_is_not_loopback_names_file_key_and_expectation(tmp_path: Path, listen: str) -> None:
    message = refused(tmp_path, f'listen = "{listen}"')
    assert message.startswith(f"{tmp_path / 'ticketd.toml'}: lmtp.listen: expected ")
    assert "loopback" in message and repr(listen) in message


@pytest.mark.parametrize("listen", ["localhost:2424", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", "::1:2424",
                                    "lmtp.sock", "127.0.0.1:x"])
def test_what_is_neither_an_address_nor_a_path_is_refused(tmp_path: Path, listen: str) -> None:
    assert "lmtp.listen: expected an absolute Unix socket path" in refused(tmp_path, f'listen = "{listen}"')


def test_a_socket_path_too_long_for_the_kernel_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, f'listen = "/run/{"x" * 120}/lmtp.sock"')
    assert "lmtp.listen: expected a socket file path of at most 107 bytes" in message


def test_socket_mode_and_group(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    config = load(tmp_path, f'listen = "/run/t/lmtp.sock"\nsocket_mode = "0600"\nsocket_group = "{group}"')
    assert config.socket_mode == 0o600 and config.socket_group == group
    assert "lmtp.socket_mode: expected an octal permission string" in refused(
        tmp_path, 'listen = "/run/t/lmtp.sock"\nsocket_mode = "rw-rw----"')
    assert "lmtp.socket_mode: expected an octal" in refused(tmp_path, 'listen = "/run/t/l.sock"\nsocket_mode = 432')
    assert "lmtp.socket_group: expected an existing group" in refused(
        tmp_path, 'listen = "/run/t/lmtp.sock"\nsocket_group = "no-such-group-here"')


def test_socket_settings_with_a_tcp_address_are_a_mistake(tmp_path: Path) -> None:
    assert "lmtp.socket_mode: expected no such key with a TCP address" in refused(
        tmp_path, 'listen = "127.0.0.1:2424"\nsocket_mode = "0600"')


def test_an_unknown_key_is_named(tmp_path: Path) -> None:
    assert "lmtp.lisen: unknown key" in refused(tmp_path, 'listen = "/run/t/lmtp.sock"\nlisen = "x"')
