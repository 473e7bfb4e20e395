"""A help desk's database with rows in every table, filled through the real pipeline; exports compared."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from ticketd.daemon import oauth_store
from ticketd.daemon.oauth_http import TokenAnswer
from ticketd.storage import intake, leases, status
from ticketd.storage.export import export
from ticketd.storage.models import Suppression
from tests.support.desk import ANN, SUPPORT, Desk

PDF = b"%PDF-1.4 pretend\x00\xff" * 40


def with_attachment(message_id: str, body: str, filename: str = "invoice.pdf", content: bytes = PDF,
                    subject: str = "Help", cc: str = "") -> bytes:
    """A customer's mail with one attachment, as a mail client writes it."""
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"], mail["Message-ID"] = ANN, SUPPORT, subject, message_id
    mail["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    if cc:
        mail["Cc"] = cc
    mail.set_content(body)
    mail.add_attachment(content, maintype="application", subtype="pdf", filename=filename)
    return mail.as_bytes().replace(b"\n", b"\r\n")


async def fill(desk: Desk) -> None:
    """Tickets with attachments, a Cc, a duplicate, an agent's reply, due steps, an agent away,
    a held message, a suppression, a mailbox with its UID state and its health as the fetcher writes it,
    an instance and its lease, and an OAuth2 grant as `ticketd oauth login` stores it."""
    box = await intake.mailbox_state("support")
    await intake.reset_uidvalidity(box, 7)  # as the fetcher does when it first sees the folder
    first = with_attachment("<first@example.org>", "My printer is broken.", cc="Bob <bob@example.org>")
    rows = await intake.store_batch(box, 7, [intake.Incoming(first, len(first), uid=41)], desk.cfg.max_message_bytes)
    await desk.processor.process(rows, desk.cfg.mailboxes[0])
    await desk.mail(first)  # the same mail again, piped: a duplicate of the first
    desk.clock.now += timedelta(minutes=5)
    await desk.agent(1, "#status pending\nWhich model is it?")  # relayed; a reminder and an auto-solve due
    await desk.customer("Another problem, unrelated.")
    await desk.agent(None, "#away")
    await desk.mail(b"")  # unreadable: quarantined, no ticket
    await Suppression.create(address="gone@example.org", until=desk.clock.now + timedelta(days=60),
                             reason="550 5.1.1 no such user")
    await status.write_mailboxes([status.MailboxRow("support", True, desk.clock.now, desk.clock.now, desk.clock.now,
                                                    "", None, 3, 0)], desk.clock.now)
    run, clock = leases.tortoise_run()  # a running instance and its lease, as daemon.leases writes them
    await leases.seen(run, clock, "mail1:4242:ab12cd", "mail1", "mail1.example.org", 4242)
    await leases.claim(run, clock, "mail1:4242:ab12cd", ["support"], 30)
    await oauth_store.store("mailbox:support", TokenAnswer("at-1", 3600, "rt-1", 90 * 86400), None, desk.clock.now)


async def exported(desk: Desk | None = None) -> bytes:
    """The whole database as `ticketd export` writes it (at the desk's time, if given)."""
    from tests.support.desk import START

    out = io.BytesIO()
    await export(out, desk.clock.now if desk else START, "test")
    return out.getvalue()


def rows_of(data: bytes) -> list[dict[str, Any]]:
    """The row lines of an export, parsed (header and end line left out)."""
    return [json.loads(line) for line in data.splitlines()[1:-1]]
