"""OAuth2 in the configuration (daemon.config_oauth): providers, defaults, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketd.daemon.config import ConfigError, load_config
from tests.test_config import MINIMUM, write

PASSWORD_LINE = 'password = "secret"          # or password_file = "/path"'


def bearer(tmp_path: Path, imap: str = "", oauth: str = "", top: str = "") -> Path:
    text = MINIMUM.replace(PASSWORD_LINE, 'auth = "oauth2"\n' + imap)
    return write(tmp_path, top + text + ("[mailboxes.oauth]\n" + oauth if oauth is not None else ""))


def refused(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=environ)
    assert str(err.value).startswith(f"{path}: "), err.value
    return str(err.value)


def test_password_stays_the_default_and_takes_no_oauth_table(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMUM))
    assert (config.mailboxes[0].imap.auth, config.smtp.auth, config.mailboxes[0].imap.oauth) == ("password", "password",
                                                                                                None)
    stray = write(tmp_path, MINIMUM + '[mailboxes.oauth]\nprovider = "google"\n')
    assert 'mailboxes[0].oauth: expected no oauth table unless mailboxes[0].imap.auth = "oauth2"' in refused(stray)


def test_google_and_microsoft_defaults(tmp_path: Path) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text("s3cr3t\n")
    google = load_config(bearer(tmp_path, oauth=f'provider = "google"\nclient_id = "id"\n'
                                                f'client_secret_file = "{secret}"\n')).mailboxes[0].imap
    assert (google.auth, google.mechanism) == ("oauth2", "xoauth2")
    assert google.oauth.token_url == "https://oauth2.googleapis.com/token"
    assert google.oauth.device_url == "https://oauth2.googleapis.com/device/code"
    assert google.oauth.scope == "https://mail.google.com/" and google.oauth.peer == "mailbox:support"
    assert google.oauth.client_secret.reveal() == "s3cr3t" and "s3cr3t" not in repr(google)

    ms = load_config(bearer(tmp_path, imap='mechanism = "oauthbearer"\n',
                            oauth='provider = "microsoft"\ntenant = "contoso.onmicrosoft.com"\nclient_id = "id"\n'))
    client = ms.mailboxes[0].imap.oauth
    assert client.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert client.device_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode"
    assert "offline_access" in client.scope and "IMAP.AccessAsUser.All" in client.scope
    assert ms.mailboxes[0].imap.mechanism == "oauthbearer"


def test_a_shared_provider_and_the_smtp_login(tmp_path: Path) -> None:
    top = ('[oauth]\nadmin_address = "admin@example.test"\nexpiry_warning_days = 3\n'
           '[oauth.providers.corp]\ntoken_url = "https://sso.example.test/token"\nclient_id = "corp"\n'
           'client_secret_env = "CORP_SECRET"\n\n')
    text = bearer(tmp_path, oauth='provider = "corp"\n', top=top).read_text()
    text = text.replace('from = "Example Support <support@example.test>"\n',
                        'from = "Example Support <support@example.test>"\nusername = "support@example.test"\n'
                        'auth = "oauth2"\n[smtp.oauth]\nprovider = "corp"\nscope = "smtp"\n')
    path = write(tmp_path, text)
    config = load_config(path, environ={"CORP_SECRET": "from-env"})
    assert config.oauth.admin_address == "admin@example.test" and config.oauth.expiry_warning == 3 * 86400
    imap, smtp = config.mailboxes[0].imap.oauth, config.smtp.oauth
    assert (imap.token_url, imap.client_id, imap.client_secret.reveal()) == ("https://sso.example.test/token", "corp",
                                                                            "from-env")
    assert (smtp.peer, smtp.scope) == ("smtp", "smtp")
    assert "CORP_SECRET" in refused(path, environ={})  # the variable's name, never a value


@pytest.mark.parametrize("imap, oauth, says", [
    ("", 'client_id = "x"\n', "mailboxes[0].oauth.token_url: expected a string (required"),
    ("", 'token_url = "http://sso.example.test/token"\nclient_id = "x"\n', "expected an https:// URL"),
    ("", 'token_url = "ftp://127.0.0.1/token"\nclient_id = "x"\n', "expected an https:// URL"),
    ("", 'provider = "yahoo"\nclient_id = "x"\n', "mailboxes[0].oauth.provider: expected one of google | microsoft"),
    ('mechanism = "plain"\n', 'provider = "google"\nclient_id = "x"\n', "mailboxes[0].imap.mechanism: expected one of"),
    ('password = "secret"\n', 'provider = "google"\nclient_id = "x"\n',
     'mailboxes[0].imap.password: expected no password with auth = "oauth2"'),
    ("", 'provider = "google"\nclient_id = "x"\nscopes = "x"\n', "mailboxes[0].oauth.scopes: unknown key"),
])
def test_broken_oauth_config_names_the_key(tmp_path: Path, imap: str, oauth: str, says: str) -> None:
    assert says in refused(bearer(tmp_path, imap=imap, oauth=oauth))


def test_a_missing_oauth_table_and_a_loopback_endpoint(tmp_path: Path) -> None:
    text = MINIMUM.replace(PASSWORD_LINE, 'auth = "oauth2"\n')
    assert "mailboxes[0].oauth: expected a table (required)" in refused(write(tmp_path, text))
    for host in ("127.0.0.1:8080", "[::1]:8080", "localhost"):
        path = bearer(tmp_path, oauth=f'token_url = "http://{host}/token"\nclient_id = "x"\n')
        assert load_config(path).mailboxes[0].imap.oauth.token_url == f"http://{host}/token"


def test_a_private_ca_for_the_token_endpoint(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    path = bearer(tmp_path, oauth=f'provider = "google"\nclient_id = "x"\nca_file = "{ca}"\n')
    assert load_config(path).mailboxes[0].imap.oauth.ca_file == str(ca)
    missing = bearer(tmp_path, oauth='provider = "google"\nclient_id = "x"\nca_file = "/nonexistent.pem"\n')
    assert "mailboxes[0].oauth.ca_file: expected an existing CA bundle file" in refused(missing)
