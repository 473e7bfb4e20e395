"""Each line names what it is about: mailbox, inbound row, Message-ID, ticket, outbound row."""

from __future__ import annotations

import asyncio
import io
import logging
import shlex
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ticketd.daemon import logcontext
from ticketd.daemon.logformat import KeyValueFormatter
from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from tests.support.daemon import run_once, write_config
from tests.support.mail import simple

Lines = Callable[[], list[dict[str, str]]]


@pytest.fixture
def keyvalue_lines() -> Iterator[Lines]:
    """The ticketd loggers' lines in the keyvalue format, formatted as they are written (when the
    context is read), each as a dict; call the fixture's value to read them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter(stamp=False))
    logger = logging.getLogger("ticketd")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [dict(w.split("=", 1) for w in shlex.split(line)) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, never listening, held for the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_a_scope_is_seen_by_the_tasks_started_inside_it_and_by_no_other() -> None:
    async def main() -> tuple[dict[str, object], ...]:
        async def look() -> dict[str, object]:
            await asyncio.sleep(0)
            return logcontext.current()

        with logcontext.scope(mailbox="support"):
            inside = asyncio.create_task(look())
            detached = asyncio.create_task(look(), context=logcontext.detached())
        outside = asyncio.create_task(look())
        return await inside, await detached, await outside

    assert asyncio.run(main()) == ({"mailbox": "support"}, {}, {})


def test_nested_scopes_add_to_the_outer_one_and_leave_it_as_it_was() -> None:
    with logcontext.scope(mailbox="support"):
        with logcontext.message("support", 7, None):
            logcontext.set_ticket(3)
            assert logcontext.current() == {"mailbox": "support", "inbound": 7, "ticket": 3}
        assert logcontext.current() == {"mailbox": "support"}
    assert logcontext.current() == {}


async def test_the_lines_of_a_run_name_their_message_ticket_and_outbox_row(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink, closed_port: int,
        keyvalue_lines: Lines) -> None:
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Printer", "<p1@example.org>"))
    dovecot.deliver(fresh_user.address, simple("eve@blocked.test", "Buy", "<b1@blocked.test>"))
    filters = (f'\n[filters]\npipeline = ["senders", "spam"]\n[filters.senders]\nblock = ["@blocked.test"]\n'
               f'[filters.spam]\nport = {closed_port}\n')  # spamd down: accepted with a warning
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)], extra=filters)

    assert await run_once(config) == 0

    lines = keyvalue_lines()
    [ack] = fresh_sink.messages
    opened = next(x for x in lines if x["msg"].startswith("<p1@example.org> opened ticket #1"))
    assert {k: opened[k] for k in ("mailbox", "message_id", "ticket")} == {
        "mailbox": "support", "message_id": "<p1@example.org>", "ticket": "1"}
    spam = next(x for x in lines if x["logger"] == "ticketd.spam")
    assert (spam["mailbox"], spam["inbound"], spam["message_id"]) == ("support", opened["inbound"], "<p1@example.org>")
    rejected = next(x for x in lines if " rejected: " in x["msg"])
    assert (rejected["mailbox"], rejected["message_id"]) == ("support", "<b1@blocked.test>")
    assert rejected["inbound"] != opened["inbound"] and "ticket" not in rejected
    sent = next(x for x in lines if x["msg"].startswith("sent "))
    assert (sent["message_id"], sent["ticket"]) == (ack.message["Message-ID"], "1")
    assert "outbound" in sent and "inbound" not in sent and "mailbox" not in sent
