"""The outbox's SMTP connections ("lanes"): opened on demand, reused, reset, closed when idle."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import aiosmtplib

from ticketd.daemon.config import SmtpConfig
from ticketd.daemon.imap import tls_context
from ticketd.daemon.outgoing import one_line

if TYPE_CHECKING:
    from ticketd.daemon.oauth import TokenManager

# Anything that goes wrong with the connection itself (dropped, hung, TLS, refused TCP): the
# server cannot take mail now, whatever the message.
TRANSPORT_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)

# A lane unused this long is closed with QUIT. Postfix in stress mode drops idle clients after
# 10 s (smtpd_timeout), so 5 s says goodbye before any common server gives up on us, while a
# burst of mail (a fetched backlog, a notify per ticket) still reuses its connections.
IDLE_AFTER = 5.0


class Unreachable(Exception):
    """The server cannot or will not take mail right now: nothing to do with one message.

    Raised for everything before RCPT (greeting, EHLO/HELO, STARTTLS, AUTH, MAIL FROM) and for a
    connection that drops or hangs. ``refused`` is a 5xx answer: our settings need a human.
    """

    def __init__(self, reason: str, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused

    @classmethod
    def of(cls, exc: BaseException) -> "Unreachable":
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return cls(f"{exc.code} {one_line(exc.message)}", refused=500 <= exc.code < 600)
        return cls(f"{type(exc).__name__}: {one_line(str(exc))}", refused=isinstance(exc, ValueError))


class Lanes:
    """A fixed number of SMTP connections, each None until first used or after it was dropped."""

    def __init__(self, config: SmtpConfig, count: int, idle_after: float = IDLE_AFTER,
                 tokens: TokenManager | None = None) -> None:
        self.config = config
        self.tokens = tokens  # daemon.oauth: the access token of an auth = "oauth2" login
        self.idle_after = idle_after
        self.connections: list[aiosmtplib.SMTP | None] = [None] * count
        self.used = [0.0] * count  # time.monotonic() of each lane's last command

    def __len__(self) -> int:
        return len(self.connections)

    def is_open(self, lane: int) -> bool:
        smtp = self.connections[lane]
        return smtp is not None and smtp.is_connected

    async def connection(self, lane: int) -> aiosmtplib.SMTP:
        smtp = self.connections[lane]
        if smtp is not None and smtp.is_connected:
            return smtp
        cfg = self.config
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.port, timeout=cfg.timeout,
            use_tls=cfg.security == "tls", start_tls=cfg.security == "starttls",
            tls_context=tls_context(cfg) if cfg.security != "none" else None,
        )
        self.connections[lane] = smtp  # before connect: a refused AUTH or EHLO still gets its QUIT
        await smtp.connect()
        if cfg.auth == "oauth2":
            from ticketd.daemon.smtp_oauth import authenticate

            try:
                await authenticate(smtp, cfg, self.tokens)
            except Unreachable:  # no token, or the server refused it: this session is over
                await self.close(lane)
                raise
        elif cfg.username and cfg.password:
            await smtp.login(cfg.username, cfg.password.reveal())
        if smtp.is_ehlo_or_helo_needed:  # the extensions (SMTPUTF8) are known only after EHLO
            try:
                await smtp.ehlo()
            except aiosmtplib.SMTPHeloError:
                await smtp.helo()
        return smtp

    async def reset(self, lane: int) -> None:
        """Abort the transaction in progress; a lane that cannot RSET is dropped instead."""
        smtp = self.connections[lane]
        if smtp is not None and smtp.is_connected:
            try:
                await smtp.rset()
                return
            except TRANSPORT_ERRORS:
                pass
        self.drop(lane)

    async def close(self, lane: int) -> None:
        """Say QUIT (bounded by the configured timeout) and forget the connection."""
        smtp, self.connections[lane] = self.connections[lane], None
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.quit()
        except (*TRANSPORT_ERRORS, ValueError):  # already gone or hung: just let go
            smtp.close()

    def drop(self, lane: int) -> None:
        """Forget a connection in an unknown state without a word: a fresh one is clean."""
        smtp, self.connections[lane] = self.connections[lane], None
        if smtp is not None:
            smtp.close()

    def touch(self, lane: int) -> None:
        self.used[lane] = time.monotonic()

    async def close_idle(self) -> None:
        """QUIT every lane unused for ``idle_after`` seconds, before the server drops it."""
        now = time.monotonic()
        for lane, smtp in enumerate(self.connections):
            if smtp is not None and now - self.used[lane] >= self.idle_after:
                await self.close(lane)

    def idle_in(self, cap: float) -> float:
        """Seconds until the next open lane is due for close_idle (``cap`` if none is open)."""
        now = time.monotonic()
        due = [self.used[lane] + self.idle_after - now for lane, smtp in enumerate(self.connections) if smtp]
        return max(0.0, min([cap, *due]))

    async def close_all(self) -> None:
        for lane in range(len(self.connections)):
            await self.close(lane)
