"""PIPELINING (RFC 2920): two flights a message, the replies read in order, a refusal never half-sent."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ticketd.daemon.outbox_pipeline import _Replies, stuffed
from devtools.postfix import Postfix
from devtools.smtpsink import SmtpSink
from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage, OutboundStatus
from tests.support import backend
from tests.support.outbox import START, outbox, row


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[None]:
    async with database(backend.url(tmp_path / "outbox.db")):
        yield


class Recorder:
    """An SMTP server on loopback that offers PIPELINING, keeps every chunk it reads, and answers
    RCPT TO with ``rcpt`` (by recipient) and DATA with ``data``: it may say 354 where a good
    server would not."""

    def __init__(self, rcpt: dict[str, bytes] | None = None, data: bytes = b"354 go on",
                 content: dict[bytes, bytes] | None = None, slow: float = 0.0, close_after: int = 0) -> None:
        self.rcpt = rcpt or {}
        self.data = data
        self.content = content or {}  # the reply to a message holding this text (else 250)
        self.slow = slow  # seconds before answering a message's content
        self.close_after = close_after  # messages a connection takes before the server closes it
        self.chunks: list[bytes] = []
        self.messages: list[bytes] = []
        self.connections = 0

    async def __aenter__(self) -> Recorder:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 recorder ESMTP\r\n")
        pending, content, taken = b"", None, 0
        while chunk := await reader.read(65536):
            self.chunks.append(chunk)
            pending += chunk
            while True:
                if content is not None:
                    end = pending.find(b"\r\n.\r\n")
                    if end == -1:
                        break
                    message, pending, content = pending[:end + 2], pending[end + 5:], None
                    await asyncio.sleep(self.slow)
                    reply = next((r for text, r in self.content.items() if text in message), b"250 2.0.0 queued")
                    if reply.startswith(b"250"):
                        self.messages.append(message)
                        taken += 1
                    writer.write(reply + b"\r\n")
                    if self.close_after and taken >= self.close_after:
                        writer.close()
                        return
                    continue
                line, sep, rest = pending.partition(b"\r\n")
                if not sep:
                    break
                pending = rest
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-recorder\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"RCPT":
                    address = line.partition(b"<")[2].partition(b">")[0].decode()
                    writer.write(self.rcpt.get(address, b"250 ok") + b"\r\n")
                elif verb == b"DATA":
                    writer.write(self.data + b"\r\n")
                    content = b"" if self.data.startswith(b"354") else None
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                else:  # MAIL, RSET, NOOP
                    writer.write(b"250 ok\r\n")
        writer.close()


_rows = itertools.count(1)


async def one_row(raw: bytes, *recipients: str) -> OutboundMessage:
    return await OutboundMessage.create(
        kind="ack", message_id=f"<p{next(_rows)}@example.test>", mail_from="support@example.test",
        recipients=list(recipients), recipient=recipients[0], raw_bytes=raw, next_try_at=START, created_at=START)


async def test_mail_rcpt_and_data_go_in_one_write_then_the_content(db: None) -> None:
    await one_row(b"Subject: x\r\n\r\nHello.\r\n", "a@example.test", "b@example.test")
    async with Recorder() as server:
        sender = outbox(server.port)
        report = await sender.deliver_due()
        await sender.close()
    assert report.sent == 1
    envelope = next(c for c in server.chunks if c.startswith(b"MAIL"))
    assert envelope == (b"MAIL FROM:<support@example.test>\r\nRCPT TO:<a@example.test>\r\n"
                        b"RCPT TO:<b@example.test>\r\nDATA\r\n")
    assert server.messages == [b"Subject: x\r\n\r\nHello.\r\n"]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "command-by-command"])
async def test_dots_and_bare_line_ends_arrive_as_they_do_command_by_command(db: None, pipelining: bool) -> None:
    raw = b"Subject: dots\r\n\r\n.leading dot\r\n..two\nbare LF\rbare CR\r\n.\r\nlast line without end"
    await one_row(raw, "a@example.test")
    with SmtpSink(pipelining=pipelining) as sink:
        sender = outbox(sink.port)
        assert (await sender.deliver_due()).sent == 1
        await sender.close()
        assert sink.wait_for(1)
    # Line ends made CRLF, the dots unstuffed by the server, a final CRLF added: what
    # aiosmtplib's own data() sends, whichever way the message went.
    assert sink.messages[0].raw == (b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\nbare LF\r\nbare CR\r\n.\r\n"
                                    b"last line without end\r\n")


async def test_a_refused_recipient_after_which_the_server_still_says_354_gets_no_content(db: None) -> None:
    await one_row(b"Subject: first\r\n\r\nHello.\r\n", "a@example.test", "gone@example.test")
    await one_row(b"Subject: second\r\n\r\nHello.\r\n", "c@example.test")
    async with Recorder(rcpt={"gone@example.test": b"550 5.1.1 no such user"}) as server:
        sender = outbox(server.port)  # one lane: the second row comes after the first's refusal
        report = await sender.deliver_due()
        await sender.close()
    # Whatever followed on that connection (RSET, the next envelope) would have been read as
    # the content of a message to a@; the connection is dropped instead, the next row gets a new one.
    assert (report.failed, report.sent) == (1, 1)
    assert not any(b"RSET" in chunk for chunk in server.chunks)
    assert server.messages == [b"Subject: second\r\n\r\nHello.\r\n"]
    first, second = await OutboundMessage.all().order_by("id")
    assert first.status == OutboundStatus.FAILED and "gone@example.test" in first.last_error
    assert second.status == OutboundStatus.SENT


async def test_a_refused_data_leaves_the_row_pending_and_the_lane_usable(db: None) -> None:
    await one_row(b"Subject: x\r\n\r\nHello.\r\n", "a@example.test")
    async with Recorder(data=b"451 4.3.0 try later") as server:
        sender = outbox(server.port)
        report = await sender.deliver_due()
        assert sender.lanes.is_open(0)  # RSET, not a new connection
        await sender.close()
    assert report.deferred == 1 and server.messages == []
    assert (await OutboundMessage.get()).status == OutboundStatus.PENDING
    assert any(c.startswith(b"RSET") for c in server.chunks)


async def test_the_next_envelope_goes_behind_the_content_and_its_content_after_the_commit(db: None) -> None:
    for n in range(3):
        await one_row(f"Subject: m{n}\r\n\r\nHello {n}.\r\n".encode(), f"c{n}@example.test")
    async with Recorder() as server:
        sender = outbox(server.port)  # one lane: row after row on one connection
        report = await sender.deliver_due()
        await sender.close()
    assert report.sent == 3 and server.connections == 1
    assert server.messages == [f"Subject: m{n}\r\n\r\nHello {n}.\r\n".encode() for n in range(3)]
    # One write a message: its content, and behind it the next one's MAIL, RCPT and DATA.
    def envelope(n: int) -> bytes:
        return f"MAIL FROM:<support@example.test>\r\nRCPT TO:<c{n}@example.test>\r\nDATA\r\n".encode()

    def content(n: int) -> bytes:
        return f"Subject: m{n}\r\n\r\nHello {n}.\r\n.\r\n".encode()

    assert server.chunks[1:] == [envelope(0), content(0) + envelope(1), content(1) + envelope(2), content(2),
                                 b"QUIT\r\n"]  # the last one alone
    assert {r.status for r in await OutboundMessage.all()} == {OutboundStatus.SENT}


async def test_a_refused_content_with_the_next_envelope_behind_it_costs_that_row_nothing(db: None) -> None:
    await one_row(b"Subject: first\r\n\r\nrefuse me\r\n", "a@example.test")
    await one_row(b"Subject: second\r\n\r\nHello.\r\n", "b@example.test")
    async with Recorder(content={b"refuse me": b"554 5.7.1 spam"}) as server:
        sender = outbox(server.port)
        report = await sender.deliver_due()
        await sender.close()
    # The server was in the second row's DATA already: no RSET (it would be read as content);
    # a new connection takes the second row, once.
    assert (report.failed, report.sent) == (1, 1)
    assert not any(b"RSET" in chunk for chunk in server.chunks)
    assert server.messages == [b"Subject: second\r\n\r\nHello.\r\n"] and server.connections == 2
    first, second = await OutboundMessage.all().order_by("id")
    assert first.status == OutboundStatus.FAILED and "554" in first.last_error
    assert second.status == OutboundStatus.SENT


async def test_a_row_in_flight_when_the_pass_ends_is_given_back_unsent(db: None) -> None:
    await one_row(b"Subject: first\r\n\r\nHello.\r\n", "a@example.test")
    await one_row(b"Subject: second\r\n\r\nHello.\r\n", "b@example.test")
    async with Recorder(slow=0.5) as server:
        sender = outbox(server.port)
        # The first content goes before the deadline, with the second envelope behind it;
        # its 250 comes after: the second row must not be begun.
        report = await sender.deliver_due(deadline=time.monotonic() + 0.25)
        await sender.close()
    assert (report.sent, report.deferred) == (1, 1)
    assert any(b"RCPT TO:<b@example.test>" in chunk for chunk in server.chunks)  # its envelope went...
    assert server.messages == [b"Subject: first\r\n\r\nHello.\r\n"]  # ...never its content
    first, second = await OutboundMessage.all().order_by("id")
    assert (first.status, second.status) == (OutboundStatus.SENT, OutboundStatus.PENDING)
    assert second.attempts == 0


async def test_a_server_that_closes_after_each_message_gets_the_next_on_a_new_connection(db: None) -> None:
    for n in range(3):
        await one_row(f"Subject: m{n}\r\n\r\nHello {n}.\r\n".encode(), f"c{n}@example.test")
    async with Recorder(close_after=1) as server:
        sender = outbox(server.port)
        report = await sender.deliver_due()
        await sender.close()
    assert (report.sent, report.deferred, report.failed) == (3, 0, 0)
    assert len(server.messages) == 3 and server.connections == 3


@pytest.mark.slow
async def test_a_real_postfix_takes_a_burst_in_two_flights_a_message_and_relays_each_once(
        db: None, postfix_factory: Callable[..., Postfix], fresh_sink: SmtpSink) -> None:
    postfix = postfix_factory(["/bin/false"], domains=["mta.invalid"], relayhost=f"[127.0.0.1]:{fresh_sink.port}")
    for n in range(40):
        await row(f"customer{n}@example.test")
    sender = outbox(postfix.port, lanes=4)
    report = await sender.drain(60)
    assert report.sent == 40
    assert fresh_sink.wait_for(40, timeout=60)
    assert sorted(m.rcpt_tos for m in fresh_sink.messages) == sorted((f"customer{n}@example.test",) for n in range(40))
    lane = await sender.lanes.connection(0)
    assert lane.supports_extension("pipelining")  # so the burst above went in flights
    await sender.close()


def replies_of(*chunks: bytes) -> _Replies:
    replies = _Replies(asyncio.Protocol())
    for chunk in chunks:
        replies.data_received(chunk)
    return replies


def test_replies_split_anywhere_and_multi_line_ones_come_out_whole_and_in_order() -> None:
    replies = replies_of(b"250 o", b"k\r\n550-5.1.1 no such\r\n", b"550 5.1.1 user\r\n354 go", b" on\r\n")
    assert [(r.code, r.message) for r in replies.replies] == [
        (250, "ok"), (550, "5.1.1 no such\n5.1.1 user"), (354, "go on")]
    assert replies.failure is None


@pytest.mark.parametrize("chunk", [b"hello\r\n", b"25x ok\r\n", b"250" + b"x" * 9000, b"250-x\r\n" * 6000],
                         ids=["no-code", "bad-code", "endless-line", "endless-reply"])
def test_a_server_speaking_nonsense_ends_the_session(chunk: bytes) -> None:
    replies = replies_of(chunk)
    assert not replies.replies and replies.failure is not None


async def test_a_connection_that_ends_mid_flight_raises_instead_of_waiting() -> None:
    replies = replies_of(b"250 ok\r\n")
    replies.connection_lost(None)
    with pytest.raises(ConnectionError):
        await replies.read(2, timeout=5)


def test_stuffed_content_is_exactly_what_aiosmtplib_would_send() -> None:
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    rng = random.Random(7)
    samples = [b"", b".", b"\r", b"\n", b"a\r\n", b".x\r\n.y", b"a\r\r\n", b"a\n\r.b", b"\r\n.\r\n"]
    samples += [bytes(rng.choice(b"a.\r\n") for _ in range(rng.randrange(12))) for _ in range(3000)]
    for raw in samples:
        assert stuffed(raw) == PERIOD_REGEX.sub(b"..", normalize_message_line_endings(raw)) + b".\r\n", raw
