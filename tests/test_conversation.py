"""Issue 8 end to end on real Dovecot and SMTP: agents answer from their mail client.

A customer mails; the queue's agents are notified; an agent answers the notification the way
Outlook and Gmail write replies; the customer receives only the new text, from the support
address, threaded and tagged; the life cycle follows; the survey's answer is recorded. And mail
that merely claims an agent's From runs nothing and reaches no customer.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from tests.support.daemon import run_once, ticket, tickets, write_config
from tests.support.desk import ALICE, signing_and_alice
from tests.support.mail import simple

ANN = "ann@example.org"


def team_config(tmp_path: Path, dovecot: Dovecot, user: MailUser, sink: SmtpSink) -> Path:
    extra = signing_and_alice(tmp_path, 'groups = ["tier1"]\n') + f"""
[queues.support]
notify = ["tier1"]
lead = "{ALICE}"
"""
    return write_config(tmp_path, dovecot.port, sink.port, [("support", user.address)], extra=extra)


def sent(sink: SmtpSink, to: str, kind_subject: str = "") -> list[EmailMessage]:
    return [m.message for m in sink.messages if to in m.rcpt_tos and kind_subject in str(m.message["Subject"])]


def agent_reply(user: MailUser, notification: EmailMessage, body: str, message_id: str, subject: str = "",
                to: str = "") -> bytes:
    return simple(f"Alice Agent <{ALICE}>", subject or "RE: " + str(notification["Subject"]), message_id,
                  body=body.replace("\n", "\r\n"), to=to or str(notification["Reply-To"]),
                  extra=f"In-Reply-To: {notification['Message-ID']}\nReferences: {notification['Message-ID']}")


OUTLOOK = """#status pending
Hi Ann,

please switch the printer off and on again, then tell us whether it still smokes.

Kind regards
Alice

________________________________
From: Ann via Support <{support}>
Sent: Tuesday, December 1, 2026 10:00 AM
To: Alice Agent <{alice}>
Subject: [#1] Printer on fire

My printer is on fire. URGENT!
"""

GMAIL = """#status solved
We replaced the fuse; it is fixed.

On Tue, Dec 1, 2026 at 11:00 AM Ann <{ann}> wrote:
> It still smokes a little.
>
> On Tue, Dec 1, 2026 Support wrote:
>> please switch the printer off and on again
"""


async def test_a_conversation_from_notification_to_satisfaction(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = team_config(tmp_path, dovecot, fresh_user, fresh_sink)
    support = fresh_user.address
    dovecot.deliver(support, simple(f"Ann <{ANN}>", "Printer on fire", "<c1@example.org>",
                                    body="My printer is on fire. URGENT!", to=support))
    assert await run_once(config) == 0

    [notification] = sent(fresh_sink, ALICE)
    assert "[#1]" in str(notification["Subject"]) and support in str(notification["From"])
    reply_to = str(notification["Reply-To"])
    assert reply_to.startswith(support.split("@")[0] + "+t1-")
    assert all(reply_to not in m.raw.decode("latin-1") for m in fresh_sink.messages if ANN in m.rcpt_tos)

    # Outlook: new text on top, signature, the quoted notification below a divider; #status pending.
    dovecot.deliver(support, agent_reply(fresh_user, notification, OUTLOOK.format(support=support, alice=ALICE),
                                         "<a1@example.test>"))
    assert await run_once(config) == 0
    [relayed] = [m for m in sent(fresh_sink, ANN) if "switch the printer" in m.get_content()]
    body = relayed.get_content()
    assert "#status" not in body and "From: Ann" not in body and "on fire" not in body
    assert str(relayed["From"]).endswith(f"<{support}>") and ALICE not in str(relayed["From"])
    assert relayed["Reply-To"] is None and str(relayed["Subject"]) == "Re: Printer on fire [#1]"
    assert relayed["In-Reply-To"] == "<c1@example.org>" and "<c1@example.org>" in str(relayed["References"])
    detail = await ticket(config, 1)
    assert detail["status"] == "pending" and detail["first_response_at"] is not None

    # The customer answers: a pending ticket is open again.
    dovecot.deliver(support, simple(ANN, "Re: Printer on fire [#1]", "<c2@example.org>",
                                    body="It still smokes a little.", to=support,
                                    extra=f"In-Reply-To: {relayed['Message-ID']}"))
    assert await run_once(config) == 0
    assert (await ticket(config, 1))["status"] == "open"

    # Gmail: "On ... wrote:" and ">" quotes; #status solved sends the survey.
    dovecot.deliver(support, agent_reply(fresh_user, notification, GMAIL.format(ann=ANN), "<a2@example.test>"))
    assert await run_once(config) == 0
    [second] = [m for m in sent(fresh_sink, ANN) if "replaced the fuse" in m.get_content()]
    assert "still smokes" not in second.get_content() and "#status" not in second.get_content()
    [survey] = [m for m in sent(fresh_sink, ANN) if "1" in m.get_content() and "excellent" in m.get_content().lower()]
    detail = await ticket(config, 1)
    assert detail["status"] == "solved" and detail["solved_at"] is not None

    # The customer rates: recorded, and the ticket stays solved.
    dovecot.deliver(support, simple(ANN, str(survey["Subject"]), "<c3@example.org>", body="5\r\n\r\nGreat help.",
                                    to=support, extra=f"In-Reply-To: {survey['Message-ID']}"))
    assert await run_once(config) == 0
    detail = await ticket(config, 1)
    assert (detail["csat"], detail["status"], detail["agent_replies"]) == (5, "solved", 2)
    first_response = datetime.fromisoformat(detail["first_response_at"])
    assert datetime.fromisoformat(detail["created_at"]) <= first_response <= datetime.fromisoformat(detail["solved_at"])
    authors = [(a["author"], a["internal"]) for a in detail["articles"]]
    assert authors == [("customer", False), ("agent", False), ("customer", False), ("agent", False),
                       ("customer", False)]
    assert "switch the printer" in detail["articles"][1]["new_text"]
    assert "From: Ann" not in detail["articles"][1]["new_text"] and "From: Ann" in detail["articles"][1]["text"]
    assert [e["to"] for e in (e["detail"] for e in detail["events"]) if "to" in e and e.get("from")] == \
        ["pending", "open", "solved"]


async def test_mail_with_an_agents_from_but_no_valid_token_runs_nothing_and_reaches_no_customer(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = team_config(tmp_path, dovecot, fresh_user, fresh_sink)
    support = fresh_user.address
    for n in (1, 2):
        dovecot.deliver(support, simple(f"Customer {n} <c{n}@example.org>", f"Question {n}", f"<q{n}@example.org>",
                                        to=support))
    assert await run_once(config) == 0
    notifications = {n: m for m in sent(fresh_sink, ALICE) for n in (1, 2) if f"[#{n}]" in str(m["Subject"])}
    fresh_sink.clear()
    local, _, domain = support.partition("@")
    attempts = [
        # no token at all: the plain support address
        simple(f"Alice Agent <{ALICE}>", "Re: Question 1 [#1]", "<f1@evil.example>",
               body="#status closed\r\nClosing this.", to=support),
        # a made-up token
        simple(f"Alice Agent <{ALICE}>", "Re: Question 1 [#1]", "<f2@evil.example>",
               body="#priority P1\r\nUrgent now.", to=f"{local}+t1-aaaaaaaaaaaaaaaa@{domain}"),
        # ticket 2's genuine token on a reply to ticket 1
        simple(f"Alice Agent <{ALICE}>", "Re: Question 1 [#1]", "<f3@evil.example>",
               body="#status solved\r\nDone.", to=str(notifications[2]["Reply-To"])),
    ]
    for raw in attempts:
        dovecot.deliver(support, raw)
    assert await run_once(config) == 0

    assert not [m for m in fresh_sink.messages if {"c1@example.org", "c2@example.org"} & set(m.rcpt_tos)]
    notices = sent(fresh_sink, ALICE, "Not relayed")
    assert len(notices) == 3
    one, two = await ticket(config, 1), await ticket(config, 2)
    assert (one["status"], one["priority"], two["status"]) == ("new", "P3", "new")
    # Alice is no participant of #1, so by its subject tag alone the mail is a stranger's: each is
    # a new ticket in her name, with its customer article, no acknowledgement and no notification.
    others = [await ticket(config, n["number"]) for n in await tickets(config) if n["number"] > 2]
    assert all(a["author"] == "customer" for t in (one, two, *others) for a in t["articles"])
    assert sum([e["what"] for e in t["events"]].count("agent_mail_refused") for t in (one, two, *others)) == 3
    assert len(fresh_sink.messages) == 3  # the three notices, nothing else
