"""LMTP intake (RFC 2033): the recipient chooses the mailbox; 250 per recipient once the bytes commit."""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import Envelope, Session

from ticketd.daemon.addresses import normalize, split
from ticketd.daemon.config import AddressConfig, Config, MailboxConfig
from ticketd.daemon.lmtp_data import ChunkedData
from ticketd.daemon.lmtp_store import GroupCommit
from ticketd.daemon.terminal import safe_line
from ticketd.storage.errors import describe, is_temporary

log = logging.getLogger("ticketd.lmtp")

TOO_BIG = "552 5.3.4 Message exceeds the size limit of this mailbox"
# The reply that ends a DATA over the size limit (daemon.lmtp_data), sent once however many
# recipients there are; RFC 2033 4.2 wants one reply per accepted recipient.
_DATA_REPLIES = {"552 Error: Too much mail data": TOO_BIG}
_MAIL_REPLIES = {"552 Error: message size exceeds fixed maximum message size": TOO_BIG}
# <dot-atom@host> and its parameters: what MTAs send nearly always, read without aiosmtpd's
# RFC 5322 header parser (about a tenth of the work per message). Anything else goes to it.
_PLAIN_PATH = re.compile(r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                         r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?: +(.*))?")


class Delivery(Envelope):
    """aiosmtpd's envelope plus the mailbox each accepted recipient chose, in RCPT order."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[str] = []


class LmtpServer(ChunkedData, LMTP):
    """aiosmtpd's LMTP session with our reply codes; one instance per connection."""

    def __init__(self, handler: LmtpHandler, max_bytes: int, hostname: str) -> None:
        # The reader's limit: one read of DATA (daemon.lmtp_data) and one command line. Mail
        # with long lines exists; the size limit already bounds what we buffer.
        self.line_length_limit = max_bytes + 3
        super().__init__(handler, data_size_limit=max_bytes, enable_SMTPUTF8=True, hostname=hostname,
                         ident="ticketd LMTP")

    def _create_envelope(self) -> Envelope:
        return Delivery()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN_PATH.fullmatch(arg.strip())
        if plain:
            return plain.group(1), plain.group(2) or ""
        return super()._getaddr(arg)

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status in _DATA_REPLIES and self.envelope and self.envelope.rcpt_tos:
            status = "\r\n".join([_DATA_REPLIES[status]] * len(self.envelope.rcpt_tos))
        elif isinstance(status, str) and status in _MAIL_REPLIES:
            status = _MAIL_REPLIES[status]
        await super().push(status)


class Routes:
    """Recipient address -> the name of its [[addresses]] or [[mailboxes]] entry."""

    def __init__(self, config: Config) -> None:
        self.config = config
        points: tuple[AddressConfig | MailboxConfig, ...] = (*config.addresses, *config.mailboxes)
        self.table: dict[str, str] = {normalize(p.address): p.name for p in points}

    def find(self, recipient: str) -> str | None:
        """Exact address first, then without its +detail (support+t42-3f9a@ is support@)."""
        address = normalize(recipient)
        if address in self.table:
            return self.table[address]
        local, domain = split(address)
        base = local.split("+", 1)[0]
        return self.table.get(f"{base}@{domain}") if base and domain else None


def trace(mail_from: str, recipients: list[str]) -> bytes:
    """The lines a final delivery adds on top (RFC 5321 4.4), as Postfix's pipe flags DR do.

    The bounce filter reads them: a DSN proves itself by the signed return address it was
    delivered to (Delivered-To), and a null Return-Path is one of the signs of a bounce.
    """
    lines = [f"Return-Path: <{_printable(mail_from)}>", *(f"Delivered-To: {_printable(r)}" for r in recipients)]
    return "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape")


def _printable(address: str) -> str:
    # The peer's text goes into a header: no CR or LF may end it early.
    return "".join(c for c in address if c.isprintable())


class LmtpHandler:
    """aiosmtpd's hooks: RCPT picks the mailbox, DATA commits and answers for each recipient."""

    def __init__(self, config: Callable[[], Config], store: GroupCommit) -> None:
        self._config = config  # the running configuration (a SIGHUP may swap it)
        self._routes: Routes | None = None
        self.store = store
        self.stopping = False  # once set, no new message is taken; those in hand finish

    def routes(self) -> Routes:
        config = self._config()
        if self._routes is None or self._routes.config is not config:
            self._routes = Routes(config)
        return self._routes

    async def handle_EHLO(self, server: LMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        # RFC 2033 5: an LMTP server must offer both. aiosmtpd reads pipelined commands in order.
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(self, server: LMTP, session: Session, envelope: Delivery, address: str,
                          mail_options: list[str]) -> str:
        if self.stopping:  # RFC 5321 4.2.3: the MTA closes, and tries again (elsewhere or later)
            return "421 4.3.2 Shutting down, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: LMTP, session: Session, envelope: Delivery, address: str,
                          rcpt_options: list[str]) -> str:
        name = self.routes().find(address)
        if name is None:
            log.info("recipient <%s> refused: no [[addresses]] or [[mailboxes]] entry", safe_line(address))
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.points.append(name)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: LMTP, session: Session, envelope: Delivery) -> str:
        raw = envelope.original_content or b""
        names = list(dict.fromkeys(envelope.points))  # one row per mailbox, however many recipients
        copies = [(name, trace(envelope.mail_from or "", [r for r, p in zip(envelope.rcpt_tos, envelope.points)
                                                          if p == name])) for name in names]
        try:
            rows = await self.store.store(raw, copies)
        except Exception as exc:
            return self._failed(exc, envelope)
        ids = {name: row.id for name, row in zip(names, rows)}
        return "\r\n".join(f"250 2.0.0 OK, inbound {ids[name]}" for name in envelope.points)

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd would answer our bug with a permanent 500 and the MTA bounce the mail."""
        log.error("LMTP session error, answered 451: %s", describe(error), exc_info=error)
        return "451 4.3.0 Internal error, try again later"

    def _failed(self, exc: Exception, envelope: Delivery) -> str:
        """451 for every recipient: the MTA keeps the message and tries again; nothing is bounced."""
        if is_temporary(exc):
            log.warning("LMTP message not stored, the MTA will retry: %s", describe(exc))
        else:  # our bug, not the message's fault: say so in the log, never bounce
            log.error("LMTP message not stored, the MTA will retry: %s", describe(exc), exc_info=exc)
        return "\r\n".join(["451 4.3.0 Not stored, try again later"] * len(envelope.rcpt_tos))
