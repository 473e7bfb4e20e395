"""The notification as drafted is byte for byte what the straightforward path writes (Date and Message-ID apart).

The straightforward path is written out below as the code was before it was made cheaper:
the standard library's email.header and formataddr, Jinja2's own SandboxedEnvironment, the
plain folding loop. Whatever a shortcut in daemon.outgoing, daemon.templating or daemon.notices
does, the mail it gives must be this one.
"""

from __future__ import annotations

import binascii
import re
from email.header import Header
from email.utils import formataddr
from pathlib import Path

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from bench.notifydraft import contexts, team_config
from ticketd.daemon import signing
from ticketd.daemon.config import Config, load_config
from ticketd.daemon.config_lifecycle import TEMPLATES
from ticketd.daemon.notices import COMMAND_HELP, check_reply_to
from ticketd.daemon.outgoing import one_line, text_message
from ticketd.daemon.responders import Draft, ResponseContext, TicketView, Withheld
from ticketd.daemon.responders.notification import MAX_TEXT, Notification
from tests.support.mail import parsed
from tests.test_outgoing_encoding import folded_by_the_loop
from tests.test_config import MINIMUM, write
from tests.test_config_agents import BOB, ISSUE, config_text


def config(tmp_path: Path, text: str = ISSUE + BOB) -> Config:
    return load_config(write(tmp_path, config_text(tmp_path, text)), environ={})


def straightforward(cfg: Config, ctx: ResponseContext) -> bytes:
    """The notification of ``ctx`` as Notification wrote it before: every step the plain way."""
    team, ticket, message, smtp = cfg.team, ctx.ticket, ctx.message, cfg.smtp
    assert team is not None and team.signing is not None
    recipients = team.recipients(ticket.queue)
    reply_to = signing.reply_address(cfg.support_address(ctx.mailbox), ticket.number, team.signing.key,
                                     team.signing.reply_format)
    customer = one_line(ticket.requester_name or (message.from_.name if message.from_ else ""))
    email = ticket.requester or (message.from_.email if message.from_ else "")
    display = f"{customer or one_line(email) or 'A customer'} via {smtp.from_name or smtp.from_address}"
    tag = f"[#{ticket.number}]"
    subject = ticket.subject if ticket.subject.startswith(tag) else f"{tag} {ticket.subject}"
    references = message.references if message.message_id else ()
    headers = [
        f"From: {formataddr((one_line(display), one_line(smtp.from_address)), 'utf-8')}\r\n".encode("ascii"),
        _line("To", ", ".join(one_line(address) for address in recipients)),
        _line("Subject", subject),
        b"Date: (removed)\r\n",
        b"Message-ID: (removed)\r\n",
        _line("Reply-To", reply_to),
    ]
    chain = [one_line(ref) for ref in references if one_line(ref)][-10:]
    if message.message_id:
        headers.append(_line("In-Reply-To", message.message_id))
        chain = [ref for ref in chain if ref != one_line(message.message_id)] + [one_line(message.message_id)]
    if chain:
        headers.append(_line("References", " ".join(chain)))
    headers += [_line("Auto-Submitted", "auto-generated"), _line("X-Auto-Response-Suppress", "All")]
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    text = message.new_text or message.text
    body = env.from_string((TEMPLATES / "notification.txt.j2").read_text(encoding="utf-8")).render(
        ticket=ticket, customer={"name": customer, "email": email}, text=text[:MAX_TEXT],
        truncated=max(len(text) - MAX_TEXT, 0), first_response=ctx.first_response,
        fired_rules=list(ticket.fired_rules), mailbox=ctx.mailbox, commands=COMMAND_HELP,
        attachments=[one_line(a.filename) or a.content_type for a in message.attachments if not a.inline])
    return text_message(headers, body)  # unchanged: the same function


def _line(name: str, value: str) -> bytes:
    value = one_line(value, 2000)
    if not value.isascii():
        return f"{name}: {Header(value, 'utf-8', header_name=name).encode(linesep=chr(13) + chr(10))}\r\n".encode()
    return folded_by_the_loop(name, value)


_VARYING = re.compile(rb"^(Date|Message-ID): .*\r\n", re.MULTILINE)


def without_date_and_id(raw: bytes) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    head, count = _VARYING.subn(lambda m: m.group(1) + b": (removed)\r\n", head + b"\r\n")
    assert count == 2, head  # each once, on one line
    return head[:-2] + sep + body


def drafted(cfg: Config, ctx: ResponseContext) -> Draft:
    [draft] = Notification(cfg).run(ctx)
    assert isinstance(draft, Draft)
    assert re.fullmatch(rf"<ticketd\.{ctx.ticket.number}\.[0-9a-f]{{17,}}@example\.test>", draft.message_id)
    assert f"\r\nMessage-ID: {draft.message_id}\r\n".encode() in draft.raw
    return draft


CUSTOMERS = {
    "ascii": ("Ann Smith <ann@example.org>", "Printer on fire", "It burns.\nPlease hurry.\n"),
    "german": ("=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@example.org>",
               "Drucker kaputt – jä, seit Montag, und die Rechnung über 1.200 € ist auch noch offen",
               "Grüße aus München: der Drucker druckt nur noch Streifen.\n" * 3),
    "chinese": ("=?utf-8?b?5byg5LyfIOadjg==?= <zw@example.cn>", "请求帮助：无法登录我的账户，密码重置邮件没有收到",
                "您好，\n我无法登录。" * 40),
    "long-ascii": ("\"O'Brien, Pat (IT)\" <pat@example.org>", "Re: " + " ".join(["the invoice number is wrong"] * 6),
                   "x" * 1500 + "\n"),
}


@pytest.mark.parametrize("case", list(CUSTOMERS))
def test_a_notification_is_byte_for_byte_the_straightforward_one(tmp_path: Path, case: str) -> None:
    cfg = config(tmp_path)
    sender, subject, text = CUSTOMERS[case]
    body = text.replace("\n", "\n        ")
    message = parsed(f"""
        From: {sender}
        To: support@example.test
        Subject: =?utf-8?b?{binascii.b2a_base64(subject.encode(), newline=False).decode()}?=
        Message-ID: <q1@example.org>
        References: <old@example.org> <older@example.org>
        MIME-Version: 1.0
        Content-Type: text/plain; charset=utf-8

        {body}
    """)
    assert message.subject == subject and message.from_ is not None
    ticket = TicketView(4242, one_line(message.subject), "new", "P2", "Hardware", "support", message.from_.email,
                        one_line(message.from_.name), ("fire", "vip"), ("urgent-words",))
    ctx = ResponseContext(ticket, message, True, "support", first_response="4 hours")
    draft = drafted(cfg, ctx)
    assert without_date_and_id(draft.raw) == without_date_and_id(straightforward(cfg, ctx))
    head = draft.raw.split(b"\r\n\r\n")[0]
    assert (b"=?utf-8?" in head) == (case in ("german", "chinese"))  # encoded words written, not avoided
    assert (b"quoted-printable" in head) == (case != "ascii")  # the body too (a 1500-character line)


def test_the_generated_mix_drafts_exactly_as_before(tmp_path: Path) -> None:
    """Foreign charsets, attachments, odd MIME, names of six languages: the benchmark's 100 messages."""
    cfg = team_config(tmp_path)
    checked = 0
    for ctx in contexts(cfg, 100):
        draft = drafted(cfg, ctx)
        assert without_date_and_id(draft.raw) == without_date_and_id(straightforward(cfg, ctx)), ctx.ticket
        checked += not draft.raw.split(b"\r\n\r\n")[0].isascii() or b"=?utf-8?" in draft.raw
    assert checked >= 5  # some of them had non-ASCII names or subjects to encode


def test_a_reply_address_that_cannot_be_made_withholds_the_mail_each_time(tmp_path: Path) -> None:
    # smtp.from (the base without a mailbox) is not checked at load: its local part leaves no room.
    long_from = "x" * 60 + "@example.test"
    text = config_text(tmp_path, ISSUE + BOB).replace('from = "Example Support <support@example.test>"',
                                                      f'from = "Example Support <{long_from}>"')
    cfg = load_config(write(tmp_path, text), environ={})
    ticket = TicketView(17, "Printer on fire", "new", "P2", "", "support", "ann@example.org", "Ann")
    ctx = ResponseContext(ticket, parsed("From: Ann <ann@example.org>\nSubject: x\n\nHi.\n"), True, "")
    responder = Notification(cfg)
    for _ in range(2):  # nothing remembered lets a second one through
        [withheld] = responder.run(ctx)
        assert isinstance(withheld, Withheld) and withheld.warn
        assert withheld.recipient == "alice@example.test, bob@example.test"
        assert withheld.reason.startswith("no signed reply address: a local part of at most")


@pytest.mark.parametrize("fmt, key", [
    ("{local}+t{ticket}@{domain}", b"k" * 32),  # no {mac}
    ("{local}{ticket}-{mac}@{domain}", b"k" * 32),  # no delimiter
    (signing.DEFAULT_FORMAT, b"k" * 31),  # a key too short
])
def test_a_bad_format_or_key_raises_on_every_call(fmt: str, key: bytes) -> None:
    for _ in range(3):  # checked formats are remembered; what they found must not be forgotten
        with pytest.raises(ValueError):
            signing.reply_address("support@example.test", 17, key, fmt)
    assert signing.reply_address("support@example.test", 17, b"k" * 32).startswith("support+t17-")


def test_a_reply_to_for_anyone_but_an_agent_is_still_refused(tmp_path: Path) -> None:
    """check_reply_to remembers the agents it found; never anyone else, never across configs."""
    (tmp_path / "both").mkdir()
    (tmp_path / "alice").mkdir()
    both, alice_only = config(tmp_path / "both"), config(tmp_path / "alice", ISSUE)
    for _ in range(2):
        check_reply_to(both, ("alice@example.test", "Bob@Example.TEST"), "x@example.test")
        with pytest.raises(ValueError, match="'mallory@example.test' is not an agent"):
            check_reply_to(both, ("alice@example.test", "mallory@example.test"), "x@example.test")
    with pytest.raises(ValueError, match="'Bob@Example.TEST' is not an agent"):  # a reload without Bob
        check_reply_to(alice_only, ("alice@example.test", "Bob@Example.TEST"), "x@example.test")
    check_reply_to(both, ("mallory@example.test",), "")  # no Reply-To: anyone may get it
    with pytest.raises(ValueError, match="is not an agent"):
        check_reply_to(load_config(write(tmp_path, MINIMUM), environ={}), ("alice@example.test",), "x@example.test")
