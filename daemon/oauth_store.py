"""The ``oauth_token`` rows: read a grant, store a new (rotated) one at once, mark an incident once.

An incident (a revoked grant, a refresh token near its end) is marked by a conditional UPDATE:
whichever process flips the row first writes the admin's mail into the outbox in the same
transaction, so the admin gets one mail per incident however many processes and retries see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from ticketd.daemon.oauth_http import TokenAnswer
from ticketd.storage import clock
from ticketd.storage.models import OAuthToken, OutboundMessage, OutboundStatus

ALERT_KIND = "oauth_alert"  # the outbox rows' kind (and so the metrics' label)


@dataclass(frozen=True)
class Grant:
    peer: str
    refresh_token: str
    access_token: str
    expires_at: datetime | None
    refresh_expires_at: datetime | None
    last_error: str
    warned: bool


@dataclass(frozen=True)
class AdminMail:
    """A mail to the admin, ready for the outbox (daemon.oauth writes its text)."""

    mail_from: str
    recipient: str
    message_id: str
    raw: bytes


async def load(peer: str) -> Grant | None:
    row = await OAuthToken.get_or_none(peer=peer)
    if row is None:
        return None
    return Grant(row.peer, row.refresh_token, row.access_token, row.expires_at, row.refresh_expires_at,
                 row.last_error, row.warned_at is not None)


async def store(peer: str, answer: TokenAnswer, old: Grant | None, now: datetime | None = None) -> Grant:
    """Commit the endpoint's answer: a rotated refresh token is saved before anyone uses the access token.

    A new refresh token (login, rotation) clears the incident marks; a refresh that keeps the
    old one keeps the "warned" mark, which belongs to that refresh token.
    """
    now = now or clock.now()
    rotated = answer.refresh_token is not None and (old is None or answer.refresh_token != old.refresh_token)
    refresh_token = answer.refresh_token or (old.refresh_token if old else "")
    refresh_end = (now + timedelta(seconds=answer.refresh_token_expires_in)
                   if answer.refresh_token_expires_in is not None else (old.refresh_expires_at if old else None))
    values: dict[str, Any] = {
        "refresh_token": refresh_token, "access_token": answer.access_token,
        "expires_at": now + timedelta(seconds=answer.expires_in), "refresh_expires_at": refresh_end,
        "last_error": "", "updated_at": now}
    if rotated or old is None:
        values["warned_at"] = None
    async with in_transaction():
        updated = await OAuthToken.filter(peer=peer).update(**values)
        if not updated:
            await OAuthToken.create(peer=peer, **values)
    warned = bool(old and old.warned and not rotated)
    return Grant(peer, refresh_token, answer.access_token, values["expires_at"], refresh_end, "", warned)


async def mark_failed(peer: str, error: str, mail: AdminMail | None) -> bool:
    """Record ``error`` on the grant; True if this begins the incident (the mail is queued then)."""
    now = clock.now()
    async with in_transaction():
        first = await OAuthToken.filter(peer=peer, last_error="").update(last_error=error, updated_at=now)
        if first and mail is not None:
            await _queue(mail, now)
    return bool(first)


async def mark_warned(peer: str, mail: AdminMail | None) -> bool:
    """Note that the admin was told of the refresh token's end; True (and the mail queued) the first time."""
    now = clock.now()
    async with in_transaction():
        first = await OAuthToken.filter(peer=peer, warned_at=None).update(warned_at=now)
        if first and mail is not None:
            await _queue(mail, now)
    return bool(first)


async def grants() -> list[Grant]:
    return [Grant(r.peer, r.refresh_token, r.access_token, r.expires_at, r.refresh_expires_at, r.last_error,
                  r.warned_at is not None) for r in await OAuthToken.all().order_by("peer")]


async def _queue(mail: AdminMail, now: datetime) -> None:
    await OutboundMessage.create(
        ticket=None, kind=ALERT_KIND, message_id=mail.message_id, mail_from=mail.mail_from,
        recipients=[mail.recipient], recipient=mail.recipient.lower(), automatic=True,
        status=OutboundStatus.PENDING, attempts=0, next_try_at=now, last_error="", created_at=now, sent_at=None,
        raw_bytes=mail.raw)
