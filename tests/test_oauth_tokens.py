"""daemon.oauth's TokenManager against the local token endpoint and the test database, on an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from devtools.oauthserver import OAuthServer
from ticketd.daemon import oauth_http
from ticketd.daemon.config_oauth import OAuthClient, OAuthSettings
from ticketd.daemon.oauth import TokenError, TokenManager, sasl_response
from ticketd.daemon.oauth_http import TokenAnswer
from ticketd.daemon.oauth_store import load, store
from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage
from tests.support import backend

USER = "box@example.test"


@pytest.fixture
def tokens() -> Iterator[OAuthServer]:
    with OAuthServer() as server:
        yield server


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.at

    def skip(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def client(server: OAuthServer, peer: str = "mailbox:box") -> OAuthClient:
    return OAuthClient(peer=peer, token_url=f"{server.url}/token", client_id=server.client_id, scope="mail",
                       timeout=5)


async def _seed(peer: str, refresh_token: str) -> None:
    await store(peer, TokenAnswer(access_token="", expires_in=0, refresh_token=refresh_token), None)


async def test_a_token_is_refreshed_within_the_margin_before_it_expires_and_once_for_concurrent_logins(
        tmp_path: Path, tokens: OAuthServer) -> None:
    tokens.expires_in = 600
    clock = Clock()
    async with database(backend.url(tmp_path / "t.db")):
        await _seed("mailbox:box", tokens.grant(USER))
        manager = TokenManager(OAuthSettings(refresh_margin=300), now=clock)
        first = await manager.access_token(client(tokens))
        assert await manager.access_token(client(tokens)) == first  # 600 s left: kept
        assert len(tokens.grants("refresh_token")) == 1

        clock.skip(301)  # 299 s left: still good at the server, but within the margin
        assert tokens.user_of(first) == USER
        second = await manager.access_token(client(tokens))
        assert second != first and len(tokens.grants("refresh_token")) == 2

        clock.skip(301)
        together = await asyncio.gather(*(manager.access_token(client(tokens)) for _ in range(5)))
        assert len(set(together)) == 1 and len(tokens.grants("refresh_token")) == 3  # one refresh for all five
        stored = await load("mailbox:box")
        assert stored is not None and stored.access_token == together[0]
        assert tokens.refresh_tokens.get(stored.refresh_token) == USER  # the rotated one, committed


async def test_a_process_that_lost_the_rotation_race_takes_the_new_token_from_the_database(
        tmp_path: Path, tokens: OAuthServer) -> None:
    from ticketd.daemon.oauth import _Peer

    async with database(backend.url(tmp_path / "t.db")):
        await _seed("mailbox:box", tokens.grant(USER))
        read_before = await load("mailbox:box")  # what our process read, just before the other's refresh
        assert read_before is not None
        theirs = await TokenManager(OAuthSettings()).access_token(client(tokens))  # rotates: ours is dead now
        ours = TokenManager(OAuthSettings())
        got = await ours._refresh(client(tokens), _Peer(), read_before)  # invalid_grant, then the row again
        assert got.access_token == theirs and not ours.errors
        assert len(tokens.grants("refresh_token")) == 2


async def test_a_revoked_grant_marks_one_incident_with_one_admin_mail_and_recovers_after_a_login(
        tmp_path: Path, tokens: OAuthServer) -> None:
    from ticketd.daemon.config import load_config
    from tests.support.daemon import write_config
    from tests.support.oauth import ADMIN, settings

    config = load_config(write_config(tmp_path, 10143, 10025, [("plain", "plain@example.test")], extra=settings()))
    async with database(config.database_url):
        await _seed("mailbox:box", tokens.grant(USER))
        tokens.revoke(USER)
        woken: list[int] = []
        manager = TokenManager(config.oauth, config, on_outbox=lambda: woken.append(1))
        for _ in range(3):
            with pytest.raises(TokenError, match="invalid_grant") as caught:
                await manager.access_token(client(tokens))
            assert caught.value.revoked and caught.value.reported
        assert manager.errors[("mailbox:box", "revoked")] == 3
        mails = await OutboundMessage.filter(kind="oauth_alert").all()
        assert [m.recipients for m in mails] == [[ADMIN]] and woken == [1]
        assert b"ticketd oauth login box" in mails[0].raw_bytes
        assert not any(t.encode() in mails[0].raw_bytes for t in tokens.refresh_tokens)

        await _seed("mailbox:box", tokens.grant(USER))  # `ticketd oauth login box`
        assert await manager.access_token(client(tokens))
        grant = await load("mailbox:box")
        assert grant is not None and grant.last_error == ""


async def test_a_refresh_token_near_its_end_is_told_once(tmp_path: Path, tokens: OAuthServer) -> None:
    from ticketd.daemon.config import load_config
    from tests.support.daemon import write_config
    from tests.support.oauth import settings

    tokens.refresh_token_expires_in, tokens.expires_in, tokens.rotate = 3 * 86400, 60, False
    config = load_config(write_config(tmp_path, 10143, 10025, [("plain", "plain@example.test")], extra=settings()))
    async with database(config.database_url):
        await _seed("mailbox:box", tokens.grant(USER))
        manager = TokenManager(config.oauth, config)  # expiry_warning: 7 days by default
        for _ in range(3):
            manager.forget("mailbox:box")
            await manager.access_token(client(tokens))
        mails = await OutboundMessage.filter(kind="oauth_alert").all()
        assert len(mails) == 1 and b"ends soon" in mails[0].raw_bytes


async def test_an_unreachable_endpoint_is_a_temporary_failure_without_a_mail(tmp_path: Path,
                                                                            tokens: OAuthServer) -> None:
    async with database(backend.url(tmp_path / "t.db")):
        await _seed("mailbox:box", tokens.grant(USER))
        tokens.stop()
        manager = TokenManager(OAuthSettings())
        with pytest.raises(TokenError, match="will retry") as caught:
            await manager.access_token(client(tokens))
        assert not caught.value.revoked
        grant = await load("mailbox:box")
        assert grant is not None and grant.last_error == ""  # not an incident of the grant


async def test_the_device_flow_polls_until_approved(tokens: OAuthServer) -> None:
    tokens.device_user, tokens.approve_after = USER, 1
    start = await oauth_http.device_start(OAuthClient("smtp", f"{tokens.url}/token", tokens.client_id, "mail",
                                                      device_url=f"{tokens.url}/device"))
    assert start.user_code and start.verification_uri.endswith("/activate")
    assert await oauth_http.device_poll(client(tokens), start.device_code) == "authorization_pending"
    answer = await oauth_http.device_poll(client(tokens), start.device_code)
    assert isinstance(answer, TokenAnswer) and tokens.refresh_tokens[answer.refresh_token or ""] == USER


def test_the_sasl_responses_are_rfc_7628_and_google_xoauth2() -> None:
    import base64

    assert base64.b64decode(sasl_response("xoauth2", "a@b", "T", "h", 1)) == b"user=a@b\x01auth=Bearer T\x01\x01"
    assert base64.b64decode(sasl_response("oauthbearer", "a,=b", "T", "h", 993)) == \
        b"n,a=a=2C=3Db,\x01host=h\x01port=993\x01auth=Bearer T\x01\x01"


async def test_a_rotated_token_waits_out_a_locked_database_rather_than_being_lost(
        tmp_path: Path, tokens: OAuthServer, caplog: pytest.LogCaptureFixture) -> None:
    from tests.support.locks import OtherConnection

    path = tmp_path / "t.db"
    async with database(backend.url(path), busy_timeout=0.3):
        await _seed("mailbox:box", tokens.grant(USER))
        other = OtherConnection(path)
        other.lock()  # another process writes for a while
        asyncio.get_running_loop().call_later(1.5, other.rollback)
        try:
            token = await TokenManager(OAuthSettings()).access_token(client(tokens))
        finally:
            other.close()
        stored = await load("mailbox:box")
    assert stored is not None and stored.access_token == token
    assert tokens.refresh_tokens.get(stored.refresh_token) == USER  # the rotated one made it to the database
    assert "storing the new OAuth2 token must wait" in caplog.text


async def test_an_https_endpoint_is_verified_and_a_private_ca_can_be_named(tmp_path: Path) -> None:
    from dataclasses import replace

    with OAuthServer(tls_dir=tmp_path / "tls") as server:
        assert server.url.startswith("https://127.0.0.1:")
        async with database(backend.url(tmp_path / "t.db")):
            await _seed("mailbox:box", server.grant(USER))
            with pytest.raises(TokenError, match="(?i)certificate verify failed") as caught:
                await TokenManager(OAuthSettings()).access_token(client(server))  # self-signed: refused
            assert not caught.value.revoked and not server.requests  # refused before a word was sent
            trusted = replace(client(server), ca_file=str(server.cert_path))
            assert await TokenManager(OAuthSettings()).access_token(trusted)
