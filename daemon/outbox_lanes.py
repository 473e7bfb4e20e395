"""The outbox's SMTP connections ("lanes"): opened on demand, reused, reset, closed when idle."""

from __future__ import annotations

import asyncio
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

# A server that refused one more session while others of ours were open (a hosted relay's limit
# per client, Postfix's smtpd_client_connection_count_limit) gets as many as it took at once,
# for this long; then the configured number is tried again.
SESSION_CAP_FOR = 900.0


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


class SessionLimit(Exception):
    """A fresh connection refused while others of ours were open: the server's limit, not an outage.

    Nothing of the row in hand was sent (the refusal came before MAIL FROM): it goes back to the queue.
    """

    def __init__(self, problem: Unreachable, taken: int) -> None:
        super().__init__(str(problem))
        self.problem, self.taken = problem, taken


class Lanes:
    """A fixed number of SMTP connections, each None until first used or after it was dropped."""

    def __init__(self, config: SmtpConfig, count: int, idle_after: float = IDLE_AFTER,
                 tokens: TokenManager | None = None) -> None:
        self.config = config
        self.tokens = tokens  # daemon.oauth: the access token of an auth = "oauth2" login
        self.idle_after = idle_after
        self.connections: list[aiosmtplib.SMTP | None] = [None] * count
        self.used = [0.0] * count  # time.monotonic() of each lane's last command
        self._cap: int | None = None  # as many sessions as the server took at once (SessionLimit)
        self._cap_until = 0.0
        self._greeted: set[int] = set()  # lanes whose session is set up (greeting, AUTH, EHLO)

    def __len__(self) -> int:
        return len(self.connections)

    def is_open(self, lane: int) -> bool:
        smtp = self.connections[lane]
        return smtp is not None and smtp.is_connected

    async def settled(self, lane: int, timeout: float) -> None:
        """Until every other lane's session is set up or gone (at most ``timeout``): rare, so polled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
                other != lane and other not in self._greeted and self.is_open(other) for other in range(len(self))):
            await asyncio.sleep(0.005)

    def usable(self) -> int:
        """How many lanes a pass may use: all of them, or as many as the server last took at once."""
        if self._cap is not None and time.monotonic() >= self._cap_until:
            self._cap = None
        return min(self._cap or len(self.connections), len(self.connections))

    def refused_beside(self, lane: int, problem: Unreachable) -> SessionLimit | None:
        """A SessionLimit if ``lane``'s fresh connection failed while other lanes were open.

        A 5xx (our settings) is no limit, nor is a failure with no other session open (an outage).
        """
        taken = sum(1 for other in self._greeted if other != lane and self.is_open(other))
        return SessionLimit(problem, taken) if taken and not problem.refused else None

    def limit(self, taken: int) -> bool:
        """Use at most ``taken`` lanes for SESSION_CAP_FOR; True if that is fewer than before."""
        before = self.usable()
        self._cap, self._cap_until = taken, time.monotonic() + SESSION_CAP_FOR
        return taken < before

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
        self._greeted.add(lane)
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
        self._greeted.discard(lane)
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.quit()
        except (*TRANSPORT_ERRORS, ValueError):  # already gone or hung: just let go
            smtp.close()

    def drop(self, lane: int) -> None:
        """Forget a connection in an unknown state without a word: a fresh one is clean."""
        smtp, self.connections[lane] = self.connections[lane], None
        self._greeted.discard(lane)
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
