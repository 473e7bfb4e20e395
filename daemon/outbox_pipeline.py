"""SMTP transactions in flights, when the server offers PIPELINING (RFC 2920).

aiosmtplib writes a command and waits for its reply: a message costs four round trips (MAIL,
RCPT, DATA, the content) and as many turns of the event loop, in the daemon's one busy
thread. Measured against the benchmark's sink on this 2-core machine, four lanes: 0.33 ms of
CPU a message through aiosmtplib, 0.08 ms in two flights (MAIL, every RCPT and DATA in one
write; then the content). With rows waiting, the next transaction's first flight goes in the
same write as the content before it: one write a message (1,700 notifications and
acknowledgements: 2,065 socket sends instead of 3,501, 0.33 s in them instead of 0.48 s).
aiosmtplib has no PIPELINING, so it still does everything around the transaction (connect,
TLS, STARTTLS, EHLO, AUTH, RSET, QUIT); for the flights this module borrows the connection's
transport and gives it back.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import aiosmtplib
from aiosmtplib import SMTPDataError, SMTPReadTimeoutError, SMTPRecipientRefused, SMTPResponse, SMTPSenderRefused
from aiosmtplib import SMTPServerDisconnected
from aiosmtplib.protocol import COMMAND_INJECTION_REGEX, PERIOD_REGEX, normalize_message_line_endings

from ticketd.daemon.outbox_envelope import Envelope, EnvelopeError

MAX_LINE = 8192  # as aiosmtplib: a reply line, and a whole reply at four times that


def offered(smtp: aiosmtplib.SMTP) -> bool:
    return smtp.supports_extension("pipelining")


@dataclass(frozen=True)
class FirstFlight:
    """The server's replies to RCPT TO (one a recipient) and to DATA."""

    recipients: tuple[tuple[str, SMTPResponse], ...]
    data: SMTPResponse

    def refusal(self) -> SMTPRecipientRefused | SMTPDataError | None:
        """What keeps the content from being sent, as aiosmtplib would have raised it."""
        for recipient, reply in self.recipients:
            if reply.code not in (250, 251):
                return SMTPRecipientRefused(reply.code, reply.message, recipient)
        if self.data.code != 354:
            return SMTPDataError(self.data.code, self.data.message)
        return None


@dataclass(frozen=True)
class Plan:
    """One transaction's first flight, written out: MAIL FROM, every RCPT TO, DATA."""

    envelope: Envelope
    commands: bytes
    count: int


def plan(envelope: Envelope) -> Plan:
    """The first flight of ``envelope``; EnvelopeError for an address that would smuggle a command."""
    commands = [_command(b"MAIL FROM:", envelope.sender, envelope.encoding, envelope.options, "sender")]
    commands += [_command(b"RCPT TO:", r, envelope.encoding, [], "recipient") for r in envelope.recipients]
    commands.append(b"DATA\r\n")
    return Plan(envelope, b"".join(commands), len(commands))


class Flight:
    """A first flight written, its replies still to come; until they are read the connection is ours."""

    def __init__(self, smtp: aiosmtplib.SMTP, planned: Plan, replies: _Replies) -> None:
        self.smtp, self.planned, self.replies = smtp, planned, replies

    async def landed(self, timeout: float | None) -> FirstFlight:
        """The replies, in order; the connection goes back to aiosmtplib.

        A refused MAIL FROM raises SMTPSenderRefused (the session's matter, as aiosmtplib's mail());
        refused recipients or DATA come back in the result. If the server said 354 although a
        recipient was refused, it waits for content we will not send: the connection is closed,
        so nothing reaches the recipients it took.
        """
        with _reading(self.smtp, self.replies):
            got = await self.replies.read(self.planned.count, timeout)
        envelope = self.planned.envelope
        mail, data = got[0], got[-1]
        flight = FirstFlight(tuple(zip(envelope.recipients, got[1:-1])), data)
        if mail.code != 250:
            if data.code == 354:  # a server that took DATA without a sender: never give it content
                self.smtp.close()
            raise SMTPSenderRefused(mail.code, mail.message, envelope.sender)
        if data.code == 354 and flight.refusal() is not None:
            self.smtp.close()
        return flight


async def first_flight(smtp: aiosmtplib.SMTP, envelope: Envelope, timeout: float | None) -> FirstFlight:
    """MAIL FROM, every RCPT TO and DATA in one write; their replies in order (see Flight.landed)."""
    planned = plan(envelope)
    replies = _borrow(smtp)
    with _reading(smtp, replies, keep=True):
        _transport(smtp).write(planned.commands)
    return await Flight(smtp, planned, replies).landed(timeout)


async def send_content(smtp: aiosmtplib.SMTP, raw: bytes, timeout: float | None,
                       then: Plan | None = None) -> Flight | None:
    """The message after a 354, dot-stuffed and ended as aiosmtplib's data() does; raises unless 250.

    With ``then``, the next transaction's first flight goes in the same write, right behind the
    content (RFC 2920 lets MAIL follow the end of data unanswered): one write and one wake-up a
    message instead of two. Only its envelope: its content waits until this message's "sent" is
    committed, as ever. Returned as a Flight whose replies are still to be read. A refused content
    then closes the connection, as the server is in the next transaction already.
    """
    content = stuffed(raw)
    replies = _borrow(smtp)
    with _reading(smtp, replies, keep=then is not None):
        _transport(smtp).write(content + then.commands if then is not None else content)
        (reply,) = await replies.read(1, timeout)
    if reply.code != 250:
        if then is not None:
            smtp.close()
        raise SMTPDataError(reply.code, reply.message)
    return Flight(smtp, then, replies) if then is not None else None


def stuffed(raw: bytes) -> bytes:
    """The content as aiosmtplib's data() sends it: CRLF line ends, leading dots doubled, the end mark.

    Its two regexes cost 10-15 us each on a 2 KB mail; our own mail is CRLF already and rarely
    has a line starting with a dot, which three C-speed counts and a find tell first.
    """
    crlf = raw.count(b"\r\n")
    if crlf != raw.count(b"\n") or crlf != raw.count(b"\r"):  # a bare CR or LF somewhere
        raw = normalize_message_line_endings(raw)
    elif not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    if raw.startswith(b".") or b"\n." in raw:
        raw = PERIOD_REGEX.sub(b"..", raw)
    return raw + b".\r\n"


def _command(verb: bytes, address: str, encoding: str, options: list[str], role: str) -> bytes:
    line = b" ".join([verb + b"<" + address.encode(encoding) + b">", *(o.encode("ascii") for o in options)])
    if COMMAND_INJECTION_REGEX.search(line):  # plan_envelope lets none through; aiosmtplib's own guard
        raise EnvelopeError(role, f"{role} holds a control character")
    return line + b"\r\n"


def _transport(smtp: aiosmtplib.SMTP) -> asyncio.Transport:
    transport = smtp.transport
    if transport is None or transport.is_closing():
        raise SMTPServerDisconnected("Connection lost")
    assert isinstance(transport, asyncio.Transport)
    return transport


def _borrow(smtp: aiosmtplib.SMTP) -> _Replies:
    """The connection's replies come to us until ``_Replies.give_back``."""
    transport, owner = _transport(smtp), smtp.protocol
    assert owner is not None
    replies = _Replies(owner, transport)
    transport.set_protocol(replies)
    return replies


@contextmanager
def _reading(smtp: aiosmtplib.SMTP, replies: _Replies, keep: bool = False) -> Iterator[None]:
    """Give the replies back to aiosmtplib's protocol after (``keep``: more are to come to us)."""
    try:
        yield
    except BaseException:
        smtp.close()  # a reply still on its way would be read as the answer to the next command
        raise
    if not keep:
        replies.give_back()


class _Replies(asyncio.Protocol):
    """Collects complete replies (multi-line ones joined, as aiosmtplib does) in arrival order."""

    def __init__(self, owner: asyncio.Protocol, transport: asyncio.BaseTransport | None = None) -> None:
        self.owner = owner  # told when the connection ends, so aiosmtplib knows it is gone
        self.transport = transport
        self.buffer = bytearray()
        self.lines: list[bytes] = []  # the lines of a reply not yet complete
        self.replies: deque[SMTPResponse] = deque()
        self.failure: Exception | None = None
        self.changed: asyncio.Event = asyncio.Event()

    def give_back(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.set_protocol(self.owner)

    async def read(self, count: int, timeout: float | None) -> list[SMTPResponse]:
        # A chained flight's replies often came with the 250 before them: no timer to set then.
        if len(self.replies) < count and self.failure is None:
            try:
                async with asyncio.timeout(timeout):
                    while len(self.replies) < count and self.failure is None:
                        self.changed.clear()
                        await self.changed.wait()
            except TimeoutError:
                raise SMTPReadTimeoutError("Timed out waiting for server response") from None
        if len(self.replies) < count:
            assert self.failure is not None
            raise self.failure
        return [self.replies.popleft() for _ in range(count)]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.failure is None:
            end = self.buffer.find(b"\n")
            if end == -1:
                if len(self.buffer) > MAX_LINE:
                    self._fail("a reply line too long")
                break
            line = bytes(self.buffer[:end + 1])
            del self.buffer[:end + 1]
            self._line(line)
        self.changed.set()

    def _line(self, line: bytes) -> None:
        if len(line) > MAX_LINE or not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
            self._fail(f"a malformed reply line {line[:40]!r}")
            return
        self.lines.append(line)
        if sum(map(len, self.lines)) > 4 * MAX_LINE:
            self._fail("a reply too long")
        elif line[3:4] != b"-":
            text = b"\n".join(part[4:].strip(b" \t\r\n") for part in self.lines)
            self.replies.append(SMTPResponse(int(line[:3]), text.decode("utf-8", "surrogateescape")))
            self.lines = []

    def _fail(self, what: str) -> None:
        self.failure = SMTPServerDisconnected(f"the server sent {what}")

    def eof_received(self) -> bool:
        self.failure = self.failure or SMTPServerDisconnected("Unexpected EOF received")
        self.changed.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        failure = SMTPServerDisconnected("Connection lost")
        failure.__cause__ = exc
        self.failure = self.failure or failure
        self.changed.set()
        self.owner.connection_lost(exc)
