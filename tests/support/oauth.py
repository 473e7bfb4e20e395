"""OAuth2 logins in tests: the config of a bearer mailbox, a Dovecot that checks tokens, a token seeded."""

from __future__ import annotations

from pathlib import Path

from devtools.dovecot import Dovecot
from devtools.oauthserver import OAuthServer
from ticketd.daemon.config import load_config
from ticketd.daemon.oauth_http import TokenAnswer
from ticketd.daemon.oauth_store import Grant, load, store
from ticketd.storage.db import database

ADMIN = "admin@example.test"


def oauth_table(server: OAuthServer) -> str:
    return f"""token_url = "{server.url}/token"
device_url = "{server.url}/device"
authorize_url = "{server.url}/authorize"
client_id = "{server.client_id}"
"""


def settings(margin: int = 300) -> str:
    """``[oauth]``, written before the mailboxes (tests.support.daemon.write_config's ``extra``)."""
    return f'\n[oauth]\nadmin_address = "{ADMIN}"\nrefresh_margin = {margin}\n'


def bearer_mailbox(name: str, address: str, dovecot: Dovecot, server: OAuthServer, mechanism: str = "xoauth2") -> str:
    return f"""
[[mailboxes]]
name = "{name}"
address = "{address}"
poll_interval = 600

[mailboxes.imap]
host = "127.0.0.1"
port = {dovecot.port}
security = "none"
username = "{address}"
auth = "oauth2"
mechanism = "{mechanism}"
timeout = 10

[mailboxes.oauth]
{oauth_table(server)}
"""


def bearer_smtp(address: str, server: OAuthServer, mechanism: str = "xoauth2") -> str:
    """Keys of ``[smtp]`` (its ``extra`` starts inside that table) and its ``[smtp.oauth]``."""
    return f"""username = "{address}"
auth = "oauth2"
mechanism = "{mechanism}"

[smtp.oauth]
{oauth_table(server)}
"""


async def seed(config: Path, peer: str, refresh_token: str) -> None:
    """Store a refresh token as `ticketd oauth login` would (no access token yet)."""
    async with database(load_config(config).database_url):
        await store(peer, TokenAnswer(access_token="", expires_in=0, refresh_token=refresh_token), None)


async def stored(config: Path, peer: str) -> Grant | None:
    async with database(load_config(config).database_url):
        return await load(peer)
