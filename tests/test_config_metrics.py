"""The [metrics] section: a loopback address by default, and errors that say file, key, expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketd.daemon.config import ConfigError, load_config
from ticketd.daemon.config_metrics import MetricsConfig
from tests.support.daemon import cli
from tests.test_lmtp_config import BASE  # a site of [[addresses]] only: the smallest that loads



def write(tmp_path: Path, metrics: str) -> Path:
    path = tmp_path / "ticketd.toml"
    path.write_text(BASE + "\n[metrics]\n" + metrics + "\n")
    return path


def load(tmp_path: Path, metrics: str) -> MetricsConfig | None:
    return load_config(write(tmp_path, metrics)).metrics  # type: ignore[no-any-return]


def refused(tmp_path: Path, metrics: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, metrics)
    return str(caught.value)


def test_no_listen_address_serves_nothing(tmp_path: Path) -> None:
    assert load(tmp_path, "") is None
    path = tmp_path / "plain.toml"
    path.write_text(BASE)
    assert load_config(path).metrics is None


def test_loopback_addresses_v4_and_v6(tmp_path: Path) -> None:
    assert load(tmp_path, 'listen = "127.0.0.1:9101"') == MetricsConfig("127.0.0.1:9101", "127.0.0.1", 9101)
    assert load(tmp_path, 'listen = "[::1]:9101"') == MetricsConfig("[::1]:9101", "::1", 9101)
    assert load(tmp_path, 'listen = "127.0.0.2:80"') == MetricsConfig("127.0.0.2:80", "127.0.0.2", 80)


@pytest.mark.parametrize("listen", ["localhost:9101", "127.0.0.1", "::1:9101", "127.0.0.1:0", "127.0.0.1:65536",
                                    "127.0.0.1:+80", "[::1]", ":9101", "http://127.0.0.1:9101"])
def test_a_malformed_address_names_the_file_the_key_and_what_was_expected(tmp_path: Path, listen: str) -> None:
    message = refused(tmp_path, f'listen = "{listen}"')
    assert message.startswith(f"{tmp_path / 'ticketd.toml'}: metrics.listen: expected an address and port like "
                              '"127.0.0.1:9101" or "[::1]:9101"'), message
    assert message.endswith(f"got {listen!r}")


def test_another_host_may_scrape_only_when_allowed(tmp_path: Path) -> None:
    message = refused(tmp_path, 'listen = "0.0.0.0:9101"')
    assert "metrics.listen: expected" in message and "loopback" in message and "allow_remote = true" in message
    assert "got '0.0.0.0:9101'" in message
    assert "allow_remote" in refused(tmp_path, 'listen = "[2001:db8::1]:9101"')
    allowed = load(tmp_path, 'listen = "0.0.0.0:9101"\nallow_remote = true')
    assert allowed == MetricsConfig("0.0.0.0:9101", "0.0.0.0", 9101)


def test_wrong_types_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    assert "metrics.listen: expected an address and port" in refused(tmp_path, "listen = 9101")
    assert "metrics.allow_remote: expected true or false" in refused(tmp_path, 'allow_remote = "yes"')
    assert "metrics.port: unknown key" in refused(tmp_path, "port = 9101")


def test_check_config_reports_a_bad_address_and_exits_78(tmp_path: Path) -> None:
    done = cli(write(tmp_path, 'listen = "0.0.0.0:9101"'), "check-config")
    assert done.returncode == 78
    assert b"metrics.listen: expected" in done.stderr and b"Traceback" not in done.stderr
