"""Access tokens for XOAUTH2 / OAUTHBEARER logins: refreshed before they expire, one refresh at a time.

A peer's token is asked for at each login (IMAP session, SMTP connection). It is renewed while
it still has ``refresh_margin`` to live, never first used and found dead; concurrent logins of a
peer wait for one refresh. The database row is read again before each refresh: another
process (`run --once`, `oauth login`) may have rotated the refresh token meanwhile.

A revoked grant (``invalid_grant``) is that peer's incident alone: one error line in this
process, one mail to the admin in all (daemon.oauth_store), the metric, and a TokenError that
the login's caller retries quietly with its backoff; the other peers go on.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ticketd.daemon import oauth_http, oauth_store
from ticketd.daemon.config_oauth import OAuthClient, OAuthSettings
from ticketd.daemon.oauth_store import AdminMail, Grant
from ticketd.daemon.terminal import safe_line
from ticketd.storage import clock
from ticketd.storage.errors import is_temporary

if TYPE_CHECKING:
    from ticketd.daemon.config import Config

log = logging.getLogger("ticketd.oauth")
STORE_TRIES = 5  # commits of a new token tried, over ~15 s of waits on top of each one's busy_timeout


class TokenError(Exception):
    """No access token for a peer now. ``reported``: this process logged the incident already,
    so the caller retries without another line; ``revoked``: only a new login mends it."""

    def __init__(self, message: str, reported: bool = False, revoked: bool = False) -> None:
        super().__init__(message)
        self.reported = reported
        self.revoked = revoked


def sasl_response(mechanism: str, user: str, token: str, host: str, port: int) -> str:
    """The initial client response, base64: XOAUTH2 (Google's format) or OAUTHBEARER (RFC 7628 3.1)."""
    if mechanism == "oauthbearer":
        # gs2 header "n,a=USER," then key=value pairs, each ended by ^A, and a final ^A.
        text = f"n,a={_gs2_name(user)},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    else:
        text = f"user={user}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _gs2_name(user: str) -> str:
    return user.replace("=", "=3D").replace(",", "=2C")  # RFC 5801 4: saslname


@dataclass
class _Peer:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    grant: Grant | None = None
    failing: str = ""  # the incident this process has logged ("" while tokens come)
    stale: bool = False  # the server refused the last token: refresh, whatever its expiry says


class TokenManager:
    """Every OAuth2 peer's access token, for one daemon process."""

    def __init__(self, settings: OAuthSettings, config: Config | None = None,
                 on_outbox: Callable[[], None] | None = None, errors: Counter[tuple[str, str]] | None = None,
                 now: Callable[[], datetime] = clock.now) -> None:
        self.settings = settings
        self.config = config  # for the admin's mail: From, the envelope sender
        self.on_outbox = on_outbox or (lambda: None)
        self.errors: Counter[tuple[str, str]] = errors if errors is not None else Counter()  # (peer, reason)
        self.now = now
        self._peers: dict[str, _Peer] = {}

    async def access_token(self, client: OAuthClient) -> str:
        """A token with at least ``refresh_margin`` left (TokenError if there is none to be had)."""
        peer = self._peers.setdefault(client.peer, _Peer())
        async with peer.lock:  # the second caller finds the first one's token
            if peer.grant is not None and self._fresh(peer.grant) and not peer.stale:
                return peer.grant.access_token
            grant = await oauth_store.load(client.peer)
            if grant is None:
                raise await self._failed(client, peer, "missing", f"{_name(client.peer)}: no OAuth2 token stored "
                                         f"yet: run `ticketd oauth login {_login_args(client.peer)}`", mail=False)
            if not self._fresh(grant) or peer.stale:
                grant = await self._refresh(client, peer, grant)
            peer.grant, peer.stale = grant, False
            if peer.failing:
                log.info("%s: OAuth2 token refreshed again; logging in", _name(client.peer))
                peer.failing = ""
            await self._check_end(client, grant)
            return grant.access_token

    def forget(self, peer: str) -> None:
        """Drop the cached token: the server refused it, so the next login refreshes first."""
        if peer in self._peers:
            self._peers[peer].grant, self._peers[peer].stale = None, True

    def _fresh(self, grant: Grant) -> bool:
        margin = timedelta(seconds=self.settings.refresh_margin)
        return bool(grant.access_token) and grant.expires_at is not None and grant.expires_at - margin > self.now()

    async def _refresh(self, client: OAuthClient, peer: _Peer, grant: Grant) -> Grant:
        try:
            answer = await oauth_http.refresh(client, grant.refresh_token)
        except oauth_http.GrantRefused as exc:
            again = await oauth_store.load(client.peer)
            if again is not None and again.refresh_token != grant.refresh_token:
                # Another process rotated it between our read and our refresh: take its new one.
                return again if self._fresh(again) else await self._refresh(client, peer, again)
            raise await self._failed(client, peer, "revoked" if exc.revoked else "refused",
                                     _refused_text(client, exc), mail=True) from None
        except oauth_http.TokenEndpointError as exc:
            raise await self._failed(client, peer, "unreachable", f"{_name(client.peer)}: OAuth2 token refresh "
                                                                  f"failed, will retry: {exc}", mail=False) from None
        # Committed before the caller logs in with it: with rotation the old refresh token is dead now.
        fresh = await self._store(client, answer, grant)
        log.debug("%s: OAuth2 access token refreshed, valid until %s", _name(client.peer), fresh.expires_at)
        return fresh

    async def _store(self, client: OAuthClient, answer: oauth_http.TokenAnswer, grant: Grant) -> Grant:
        """The answer committed, a locked database waited out: a rotated refresh token lost here is a grant
        lost (the endpoint has forgotten the old one), so this tries harder than a row of mail would."""
        for attempt in range(STORE_TRIES):
            try:
                return await oauth_store.store(client.peer, answer, grant, self.now())
            except Exception as exc:
                if not is_temporary(exc) or attempt == STORE_TRIES - 1:
                    raise
                log.warning("%s: storing the new OAuth2 token must wait: %s", _name(client.peer), exc)
                await asyncio.sleep(1.0 + attempt)
        raise AssertionError("unreachable")

    async def _failed(self, client: OAuthClient, peer: _Peer, reason: str, text: str, mail: bool) -> TokenError:
        """Count, log (once), mark the incident (mail once); the error for the caller to raise."""
        self.errors[client.peer, reason] += 1
        peer.grant = None
        if peer.failing != text:  # a retry of the same failure says nothing more
            log.log(logging.WARNING if reason == "unreachable" else logging.ERROR, "%s", safe_line(text))
            peer.failing = text
        if mail and await oauth_store.mark_failed(client.peer, text, self._mail(client.peer, "login failing", text)):
            self.on_outbox()
        return TokenError(text, reported=True, revoked=reason != "unreachable")

    async def _check_end(self, client: OAuthClient, grant: Grant) -> None:
        """Tell the admin (once per refresh token) when it ends within ``expiry_warning``."""
        end = grant.refresh_expires_at
        if end is None or grant.warned or end - self.now() > timedelta(seconds=self.settings.expiry_warning):
            return
        text = (f"{_name(client.peer)}: the OAuth2 refresh token ends {end:%Y-%m-%d %H:%M} UTC: run `ticketd oauth "
                f"login {_login_args(client.peer)}` before then")
        if await oauth_store.mark_warned(client.peer, self._mail(client.peer, "token ends soon", text)):
            log.warning("%s", safe_line(text))
            self.on_outbox()

    def _mail(self, peer: str, what: str, text: str) -> AdminMail | None:
        admin, config = self.settings.admin_address, self.config
        if admin is None or config is None:
            return None
        from ticketd.daemon.notices import message_headers
        from ticketd.daemon.outgoing import text_message

        smtp = config.smtp
        domain = smtp.from_address.rpartition("@")[2] or "ticketd.invalid"
        message_id = f"<ticketd.oauth.{uuid.uuid4().hex}@{domain}>"
        headers = message_headers(config, [admin], f"ticketd: OAuth2 {what} for {_name(peer)}", message_id)
        body = (f"{text}\n\nticketd goes on retrying; the other mailboxes are not affected.\n"
                f"`ticketd oauth status` shows every login's token.\n")
        return AdminMail(smtp.envelope_from, admin, message_id, text_message(headers, body))


def _refused_text(client: OAuthClient, exc: oauth_http.GrantRefused) -> str:
    why = "consent was revoked or the grant expired" if exc.revoked else "the token endpoint refused the client"
    return (f"{_name(client.peer)}: OAuth2 {why} ({exc}); no login until `ticketd oauth login "
            f"{_login_args(client.peer)}`")


def _name(peer: str) -> str:
    return f"mailbox {peer.removeprefix('mailbox:')}" if peer.startswith("mailbox:") else "smtp"


def _login_args(peer: str) -> str:
    return peer.removeprefix("mailbox:") if peer.startswith("mailbox:") else "--smtp"

