"""The configuration loader: the issue's minimum works as written; errors name file, key, expectation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ticketd.daemon.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]

MINIMUM = """\
[database]
url = "sqlite:///var/lib/ticketd/ticketd.db"

[smtp]
host = "127.0.0.1"
port = 2525
security = "none"            # tls | starttls | none
from = "Example Support <support@example.test>"

[[mailboxes]]
name = "support"
address = "support@example.test"
after_processing = "seen"    # seen | delete | move:FOLDER
[mailboxes.imap]
host = "127.0.0.1"
port = 10143
security = "none"            # tls | starttls | none
username = "support@example.test"
password = "secret"          # or password_file = "/path"
folder = "INBOX"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ticketd.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_issues_minimum_config_loads_as_written(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMUM))
    assert config.database_url == "sqlite:///var/lib/ticketd/ticketd.db"
    assert (config.smtp.host, config.smtp.port, config.smtp.security) == ("127.0.0.1", 2525, "none")
    assert config.smtp.from_address == "support@example.test"
    assert config.smtp.from_name == "Example Support"
    box = config.mailboxes[0]
    assert (box.name, box.address, str(box.after_processing)) == ("support", "support@example.test", "seen")
    assert (box.imap.port, box.imap.folder, box.imap.username) == (10143, "INBOX", "support@example.test")
    assert box.imap.password is not None and box.imap.password.reveal() == "secret"


def test_shipped_example_config_is_valid() -> None:
    load_config(ROOT / "examples" / "ticketd.toml")


def test_tls_with_certificate_checks_is_the_default(tmp_path: Path) -> None:
    text = MINIMUM.replace('security = "none"            # tls | starttls | none\nusername', 'username')
    config = load_config(write(tmp_path, text))
    assert config.mailboxes[0].imap.security == "tls"
    assert config.mailboxes[0].imap.verify_tls is True


@pytest.mark.parametrize("old, new, message", [
    ('port = 2525', 'port = "x"', "smtp.port: expected an integer, got 'x'"),
    ('security = "none"            # tls | starttls | none\nfrom', 'security = "ssl"\nfrom',
     "smtp.security: expected one of tls | starttls | none, got 'ssl'"),
    ('after_processing = "seen"', 'after_processing = "archive"',
     "mailboxes[0].after_processing: expected seen | delete | move:FOLDER, got 'archive'"),
    ('folder = "INBOX"', 'folder = "INBOX"\nfoldr = "x"', "mailboxes[0].imap.foldr: unknown key"),
    ('url = "sqlite:///var/lib/ticketd/ticketd.db"', 'url = "mysql://x"',
     "database.url: expected a sqlite:// or postgres:// URL"),
    ('from = "Example Support <support@example.test>"', 'from = "nobody"', "smtp.from: expected an address"),
])
def test_a_bad_value_names_the_file_the_key_and_what_was_expected(tmp_path: Path, old: str, new: str,
                                                                   message: str) -> None:
    assert old in MINIMUM
    path = write(tmp_path, MINIMUM.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_a_missing_required_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"smtp\.host: expected a string \(required\)"):
        load_config(write(tmp_path, MINIMUM.replace('host = "127.0.0.1"\nport = 2525\n', 'port = 2525\n')))


def test_broken_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[database\nurl = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_password_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "imap.secret"
    secret.write_text("from-file\n")
    config = load_config(write(tmp_path, MINIMUM.replace('password = "secret"', f'password_file = "{secret}"')))
    assert config.mailboxes[0].imap.password.reveal() == "from-file"  # type: ignore[union-attr]
    config = load_config(write(tmp_path, MINIMUM.replace('password = "secret"', 'password_env = "IMAP_PW"')),
                         environ={"IMAP_PW": "from-env"})
    assert config.mailboxes[0].imap.password.reveal() == "from-env"  # type: ignore[union-attr]


def test_an_unset_password_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mailboxes\\[0\\].imap.password_env: .*IMAP_PW is not set"):
        load_config(write(tmp_path, MINIMUM.replace('password = "secret"', 'password_env = "IMAP_PW"')), environ={})


def test_secrets_never_show_in_the_config_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMUM.replace('password = "secret"', 'password = "hunter2"')))
    assert "hunter2" not in repr(config)


def test_two_mailboxes_with_one_name_are_refused(tmp_path: Path) -> None:
    box = MINIMUM[MINIMUM.index("[[mailboxes]]"):]
    with pytest.raises(ConfigError, match="mailboxes\\[1\\].name: expected a unique name"):
        load_config(write(tmp_path, MINIMUM + "\n" + box))


def test_move_after_processing_names_its_folder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMUM.replace('"seen"    #', '"move:Processed"    #')))
    assert config.mailboxes[0].after_processing.action == "move"
    assert config.mailboxes[0].after_processing.folder == "Processed"


def test_the_log_format_is_text_unless_the_daemon_section_says_keyvalue_or_json(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMUM)).log_format == "text"
    for name in ("text", "keyvalue", "json"):
        assert load_config(write(tmp_path, MINIMUM + f'\n[daemon]\nlog_format = "{name}"\n')).log_format == name


def test_an_unknown_log_format_names_the_file_the_key_and_the_choices(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMUM + '\n[daemon]\nlog_format = "logfmt"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"{path}: daemon.log_format: expected one of text | keyvalue | json, got 'logfmt'")
