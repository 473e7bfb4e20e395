"""Bearer logins at the protocol level (daemon.imap_oauth, daemon.smtp_oauth): a token the server refuses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.dovecot import Dovecot
from devtools.oauthserver import OAuthServer
from devtools.smtpsink import SmtpSink
from ticketd.daemon.config import ImapConfig, SmtpConfig
from ticketd.daemon.config_oauth import OAuthSettings
from ticketd.daemon.imap import ImapError, ImapSession
from ticketd.daemon.oauth import TokenManager
from ticketd.daemon.outbox_lanes import Lanes, Unreachable
from ticketd.storage.db import database
from tests.conftest import ServerFactory
from tests.support import backend
from tests.test_oauth_tokens import _seed, client


@pytest.fixture
def tokens() -> Iterator[OAuthServer]:
    with OAuthServer() as server:
        yield server


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
async def test_a_token_dovecot_refuses_fails_at_once_and_the_next_login_refreshes(
        tmp_path: Path, tokens: OAuthServer, dovecot_factory: ServerFactory[Dovecot], mechanism: str) -> None:
    dovecot = dovecot_factory(oauth2_introspection=f"{tokens.url}/introspect")
    box = dovecot.add_user()
    cfg = ImapConfig(dovecot.host, dovecot.port, "none", box.address, None, True, None, 10.0, auth="oauth2",
                     mechanism=mechanism, oauth=client(tokens, "mailbox:b"))
    async with database(backend.url(tmp_path / "t.db")):
        await _seed("mailbox:b", tokens.grant(box.address))
        manager = TokenManager(OAuthSettings())
        first = ImapSession(cfg, manager)
        await first.open()
        assert first.uidvalidity
        await first.close()

        tokens.access_tokens.clear()  # the server forgot it; our copy has an hour to live
        refused = ImapSession(cfg, manager)
        started = time.monotonic()
        with pytest.raises(ImapError, match=f"AUTHENTICATE {mechanism.upper()} failed: NO"):
            await refused.open()
        assert time.monotonic() - started < 5  # the failure's challenge was answered, not waited out
        await refused.close()

        again = ImapSession(cfg, manager)
        await again.open()
        await again.close()
    assert len(tokens.grants("refresh_token")) == 2


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
async def test_a_token_the_smtp_server_refuses_closes_the_lane_and_the_next_connection_refreshes(
        tmp_path: Path, tokens: OAuthServer, mechanism: str) -> None:
    with SmtpSink(bearer=lambda user, token: tokens.user_of(token) == user) as sink:
        cfg = SmtpConfig(sink.host, sink.port, "none", "out@example.test", None, True, None, 10.0, auth="oauth2",
                         mechanism=mechanism, oauth=client(tokens, "smtp"), from_address="out@example.test")
        async with database(backend.url(tmp_path / "t.db")):
            await _seed("smtp", tokens.grant("out@example.test"))
            lanes = Lanes(cfg, 1, tokens=TokenManager(OAuthSettings()))
            await lanes.connection(0)
            await lanes.close_all()
            tokens.access_tokens.clear()
            with pytest.raises(Unreachable, match=f"AUTH {mechanism.upper()} refused: 535"):
                await lanes.connection(0)
            assert lanes.connections == [None]
            smtp = await lanes.connection(0)
            assert smtp.is_connected
            await lanes.close_all()
        assert [ok for _, _, ok in sink.auths] == [True, False, True]


async def test_a_server_without_the_mechanism_is_a_refused_session(tmp_path: Path, tokens: OAuthServer,
                                                                   smtp_sink: SmtpSink) -> None:
    cfg = SmtpConfig(smtp_sink.host, smtp_sink.port, "none", "out@example.test", None, True, None, 10.0,
                     auth="oauth2", oauth=client(tokens, "smtp"), from_address="out@example.test")
    async with database(backend.url(tmp_path / "t.db")):
        lanes = Lanes(cfg, 1, tokens=TokenManager(OAuthSettings()))
        with pytest.raises(Unreachable, match="does not offer AUTH XOAUTH2") as caught:
            await lanes.connection(0)
        assert caught.value.refused and lanes.connections == [None]
