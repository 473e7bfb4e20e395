"""SMTP AUTH XOAUTH2 / OAUTHBEARER (RFC 4954, RFC 7628) with a token from daemon.oauth."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiosmtplib

from ticketd.daemon.config import SmtpConfig
from ticketd.daemon.outgoing import one_line

if TYPE_CHECKING:
    from ticketd.daemon.oauth import TokenManager


async def authenticate(smtp: aiosmtplib.SMTP, cfg: SmtpConfig, tokens: TokenManager | None) -> None:
    """AUTH with the initial response; Unreachable (daemon.outbox_lanes) if it cannot be done.

    No token to be had is the session's failure, as a refused password is: the outbox keeps
    the rows and retries with its backoff.
    """
    from ticketd.daemon.oauth import TokenError, sasl_response
    from ticketd.daemon.outbox_lanes import Unreachable

    if tokens is None:
        raise Unreachable('auth = "oauth2" but this process has no token manager', refused=True)
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    if cfg.mechanism not in smtp.server_auth_methods:
        raise Unreachable(f"the server does not offer AUTH {cfg.mechanism.upper()} (mechanism = "
                          f"{cfg.mechanism!r})", refused=True)
    try:
        token = await tokens.access_token(cfg.oauth)
    except TokenError as exc:
        raise Unreachable(str(exc), refused=exc.revoked) from None
    assert cfg.username is not None
    initial = sasl_response(cfg.mechanism, cfg.username, token, cfg.host, cfg.port)
    response = await smtp.execute_command(b"AUTH", cfg.mechanism.upper().encode("ascii"), initial.encode("ascii"))
    if response.code == 334:  # a refusal's challenge (the error as JSON): one reply ends it (RFC 7628 3.2.3)
        response = await smtp.execute_command(b"AQ==" if cfg.mechanism == "oauthbearer" else b"")
    if response.code != 235:
        tokens.forget(cfg.oauth.peer)  # the next connection refreshes first
        raise Unreachable(f"AUTH {cfg.mechanism.upper()} refused: {response.code} {one_line(response.message, 200)}",
                          refused=500 <= response.code < 600)
