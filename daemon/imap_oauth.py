"""IMAP AUTHENTICATE XOAUTH2 / OAUTHBEARER with a token from daemon.oauth (SASL-IR, RFC 4959)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aioimaplib import aioimaplib

from ticketd.daemon.config import ImapConfig

if TYPE_CHECKING:
    from ticketd.daemon.oauth import TokenManager


async def authenticate(client: aioimaplib.IMAP4, cfg: ImapConfig, tokens: TokenManager | None) -> aioimaplib.Response:
    """Log in with a bearer token; a refused one is dropped so that the next attempt refreshes it.

    A TokenError (no token to be had) passes to the caller as the login's failure: the mailbox
    worker retries it with its backoff, like a server that is down.
    """
    from ticketd.daemon.imap import ImapError
    from ticketd.daemon.oauth import TokenError, sasl_response

    if tokens is None:
        raise ImapError('auth = "oauth2" but this process has no token manager')
    try:
        token = await tokens.access_token(cfg.oauth)
    except TokenError as exc:
        error = ImapError(str(exc))
        error.reported = exc.reported  # the worker logs it once (daemon.fetcher)
        raise error from None
    assert cfg.username is not None
    response_b64 = sasl_response(cfg.mechanism, cfg.username, token, cfg.host, cfg.port)
    protocol = client.protocol
    # The one reply to a failure's challenge: empty for XOAUTH2, ^A for OAUTHBEARER (RFC 7628 3.2.3).
    protocol.sasl_reply = b"AQ==" if cfg.mechanism == "oauthbearer" else b""
    command = aioimaplib.Command("AUTHENTICATE", protocol.new_tag(), cfg.mechanism.upper(), response_b64,
                                 loop=protocol.loop)
    try:
        response = await asyncio.wait_for(protocol.execute(command, scrub=response_b64), cfg.timeout)
    finally:
        protocol.sasl_reply = None
    if response.result == "OK":
        protocol.state = aioimaplib.AUTH
        await protocol.capability()  # some servers announce more once logged in
    else:
        tokens.forget(cfg.oauth.peer)
    return response
