"""The bounce filter: DSNs and common bounce formats recognised, everything else left alone."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flufl.bounce import all_failures

from ticketd.daemon.config import ConfigError, Section
from ticketd.daemon.filters import FilterContext, Verdict
from ticketd.daemon.filters.bounce import (
    Bounce,
    BounceFilter,
    BounceSettings,
    load_settings,
    parse_bounce,
)
from ticketd.daemon.parsers import UnreadableMessage, parse_message
from tests.support.mail import raw_mail, simple

DATA = Path(__file__).parent / "data" / "bounces"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
OWN = frozenset({"support@example.test"})


def bounce_of(raw: bytes) -> Bounce | None:
    return parse_bounce(parse_message(raw), raw)


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def corpus(relative: str) -> bytes:
    path = CORPUS / relative
    if not path.is_file():
        pytest.skip(f"corpus file missing: {path}")
    return path.read_bytes()


def context(raw: bytes) -> FilterContext:
    return FilterContext(parse_message(raw), raw, "support", OWN, datetime(2026, 11, 24, tzinfo=UTC))


# --- our own mail bouncing -------------------------------------------------------------------

def test_dsn_for_an_acknowledgement_gives_permanent_failure_recipient_status_and_our_message_id() -> None:
    bounce = bounce_of(fixture("dsn-ack-5.1.1.eml"))
    assert bounce == Bounce(
        recipients=("alice.customer@example.org",),
        permanent=True,
        status="5.1.1",
        diagnostic="550 5.1.1 <alice.customer@example.org>: Recipient address rejected: User unknown",
        original_message_id="<ticketd.7.abc@example.test>",
        detector="flufl:DSN",
    )


def test_delayed_dsn_is_a_temporary_failure_with_the_returned_message_id() -> None:
    bounce = bounce_of(fixture("dsn-delayed-4.4.1.eml"))
    assert bounce is not None
    assert (bounce.recipients, bounce.permanent, bounce.status) == (("bob@example.net",), False, "4.4.1")
    assert bounce.original_message_id == "<ticketd.8.d3adbeef@example.test>"
    assert bounce.diagnostic == "421 4.4.1 Connection timed out"


def test_exim_inline_bounce_is_found_by_flufl_with_status_and_id_read_from_the_text() -> None:
    bounce = bounce_of(fixture("exim-inline.eml"))
    assert bounce is not None
    assert bounce.detector == "flufl:Exim"
    assert (bounce.recipients, bounce.permanent, bounce.status) == (("carol@example.com",), True, "5.1.1")
    assert "User unknown in virtual mailbox table" in bounce.diagnostic
    assert bounce.original_message_id == "<ticketd.9.f00d@example.test>"  # the Message-ID: line of the copy


def test_a_flufl_detector_that_raises_does_not_hide_the_bounce() -> None:
    # No From header: flufl's Yale detector raises IndexError, and all_failures() gives up there;
    # run one by one, the detectors after it still get their turn and Qmail recognises the format.
    bounce = bounce_of(fixture("qmail-no-from.eml"))
    assert bounce is not None
    assert bounce.detector == "flufl:Qmail"
    assert (bounce.recipients, bounce.permanent, bounce.status) == (("dave@example.info",), True, "5.1.1")
    assert bounce.original_message_id == "<ticketd.11.0a1b@example.test>"


def test_status_class_decides_permanence_even_when_the_action_says_failed() -> None:
    # RFC 3463: 4.x.x is transient. An MTA that gave up after days of 4.4.7 did not learn that
    # the address is gone, so it must not be suppressed.
    raw = fixture("dsn-ack-5.1.1.eml").replace(b"Status: 5.1.1", b"Status: 4.4.7").replace(
        b"smtp; 550 5.1.1", b"smtp; 451 4.4.7")
    bounce = bounce_of(raw)
    assert bounce is not None
    assert (bounce.permanent, bounce.status) == (False, "4.4.7")


def test_mixed_dsn_reports_only_the_permanent_recipients_as_permanent() -> None:
    raw = raw_mail("""
        From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
        To: support@example.test
        Subject: Undelivered Mail Returned to Sender
        Message-ID: <mixed-1@mx.example.org>
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=delivery-status; boundary="b"

        --b
        Content-Type: message/delivery-status

        Reporting-MTA: dns; mx.example.org

        Final-Recipient: rfc822; slow@example.org
        Action: delayed
        Status: 4.2.2

        Final-Recipient: rfc822; gone@example.org
        Action: failed
        Status: 5.1.1
        Diagnostic-Code: smtp; 550 5.1.1 no such user

        --b
        Content-Type: text/rfc822-headers

        Message-ID: <ticketd.12.aa@example.test>

        --b--
        """)
    bounce = bounce_of(raw)
    assert bounce is not None
    assert (bounce.recipients, bounce.permanent, bounce.status) == (("gone@example.org",), True, "5.1.1")
    assert bounce.diagnostic == "550 5.1.1 no such user"
    assert bounce.original_message_id == "<ticketd.12.aa@example.test>"


def test_original_id_falls_back_to_in_reply_to_of_the_bounce() -> None:
    raw = raw_mail("""
        From: Mail Delivery Subsystem <mailer-daemon@googlemail.example>
        To: support@example.test
        Subject: Delivery Status Notification (Failure)
        Message-ID: <gm-1@mx.googlemail.example>
        In-Reply-To: <ticketd.13.bb@example.test>
        References: <ticketd.13.bb@example.test>
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=delivery-status; boundary="b"

        --b
        Content-Type: message/delivery-status

        Reporting-MTA: dns; googlemail.example

        Final-Recipient: rfc822; nobody@example.org
        Action: failed
        Status: 5.1.1

        --b--
        """)
    bounce = bounce_of(raw)
    assert bounce is not None
    assert bounce.original_message_id == "<ticketd.13.bb@example.test>"
    assert bounce.recipients == ("nobody@example.org",)


def test_success_dsn_is_not_a_bounce() -> None:
    raw = fixture("dsn-ack-5.1.1.eml").replace(b"Action: failed", b"Action: delivered").replace(
        b"Status: 5.1.1", b"Status: 2.0.0")
    assert bounce_of(raw) is None


def test_mailer_daemon_notice_in_an_unknown_format_is_still_a_bounce_without_recipients() -> None:
    # Never answered, even when no detector can read it; the ticket side decides what to flag.
    raw = simple("MAILER-DAEMON@mx.example.org (Mail Delivery System)", "Undelivered Mail Returned to Sender",
                 "<odd-1@mx.example.org>", body="Something went wrong with your message.",
                 extra="Return-Path: <>\r\nIn-Reply-To: <ticketd.14.cc@example.test>")
    bounce = bounce_of(raw)
    assert bounce == Bounce((), False, "", "", "<ticketd.14.cc@example.test>", "headers")


# --- real bounces from the corpus ------------------------------------------------------------

# file -> (detector, permanent, status, recipients, original Message-ID); every value is visible
# in the file itself (the delivery-status fields and the returned message's headers).
CORPUS_BOUNCES = {
    "ruby-mail/emails/multipart_report_emails/multi_address_bounce1.eml": (
        "flufl:DSN", True, "5.1.1",
        ("bbbbvhvbbvkjbhfbvbvjhb@gmail.com", "bscdbcjhasbcjhbdscbhbsdhcbj@gmail.com", "egyfefsdvsfvvhjsd@gmail.com",
         "kfhejkfbsjkjsbhds@gmail.com", "qfvhgsvhgsduiohncdhcvhsdfvsfygusd@gmail.com"),
        "<118707422.15521266992174819.JavaMail.root@lvmail01>"),
    "ruby-mail/emails/multipart_report_emails/report_422.eml": (
        "flufl:DSN", False, "4.2.2", ("fraser@oooooooo.com.au",),
        "<15655788.13.1200472642578.JavaMail.Administrator@mail.ttttt.com.au>"),
    "ruby-mail/emails/multipart_report_emails/report_530.eml": (
        "flufl:DSN", True, "5.3.0", ("edwin@zzzzzzz.com",), "<200712232303.lBNN3jDq002941@mail12.rrrr.com.au>"),
    "ruby-mail/emails/multipart_report_emails/multipart_report_multiple_status.eml": (
        "flufl:DSN", True, "5.3.0", ("u@ci.com",), "<4c2a146147ac8_61ff157c4ec1652df@s.h.c.mail>"),
    "ruby-mail/emails/mime_emails/raw_email_with_mimepart_without_content_type.eml": (
        "flufl:DSN", False, "4.5.0", ("larose.julie@courrier.uqam.ca",),
        "<89d7557c0610181510r6fa5ebd8n66a7deec71ade118@mail.gmail.com>"),
    "zammad/mail033-undelivered-mail-returned-to-sender.box": (
        "flufl:DSN", True, "5.1.1", ("not_existing@znuny.com",), "<20150830145601.30.608881@edenhofer.zammad.com>"),
    "zammad/mail055.box": (
        "flufl:DSN", True, "5.1.1", ("ticket-bounce-trigger2@example.com",),
        "<20170526150141.232.13312@example.zammad.loc>"),
    "zammad/mail063.box": (
        "flufl:DSN", True, "5.1.1", ("notextisting@example.com",),
        "<E8C3CD7C-8350-4E48-97C5-AE18EE900ECD@example.com>"),
    "zammad/mail078.box": (  # Gmail delay notice: also X-Original-Message-ID and In-Reply-To
        "flufl:DSN", False, "4.4.1", ("bob.smith@example.de",), "<20150830145601.30.608881@example.com>"),
    "zammad/mail053.box": (  # Action: failed, Status: 4.4.1: gave up on a transient error
        "flufl:DSN", False, "4.4.1", ("john_example@example.com",), "<20170227103514.188.920664@help.example.com>"),
    "zammad/mail018.box": (
        "flufl:DSN", True, "5.7.1", ("m.smith@example.com",), "<20131115125507.4636.975502@portal.znuny.com>"),
    "request-tracker/emails/multipart-report": (
        "flufl:DSN", True, "5.1.1", ("jesmund@mailbox.other.example.com",),
        "<200308221615.h7MGFGac020135@mx12.other.example.com>"),
    "cpython-test-email/data/msg_16.txt": (  # Status with a comment; report-type parameter missing
        "flufl:DSN", True, "5.0.0", ("jangel1@cougar.noc.ucla.edu",), "<002001c144a6$8752e060$56104586@oxy.edu>"),
    "mimekit/messages/delivery-status.txt": (  # no Status field: flufl's Action: failed decides
        "flufl:DSN", True, "", ("newsletter-request@imusic.com",), "<31FC7EB4.41C6@netscape.com>"),
    "mimekit/messages/delivery-status2.txt": ("flufl:DSN", True, "5.0.0", ("source@domain.com",), ""),
    "mimekit/messages/delivery-status-multiple-blank-lines.txt": (  # no Action: the status class decides
        "dsn", True, "5.5.0", ("orig_recip@customer.com",), ""),
    "mimekit/messages/bounce.txt": (  # a relay base64-encoded a field group; flufl sees nothing
        "dsn", True, "5.1.1", ("netec.test@netecgc.com",),
        "<44565655.JitbitHelpdesk.13439.691a0afc-a0a0-457c-8208-f20b7c4a4cb1@jitbit.com>"),
    "cpython-test-email/data/msg_25.txt": (  # the boundary parameter is cut off: fields read from the text
        "dsn", True, "5.4.6", ("scoffman@wellpartner.com",), ""),
    "zammad/mail052.box": ("headers", False, "", (), ""),  # MAILER-DAEMON, text/plain, no details
    "james-mime4j/mimetools-testmsgs/badbound.msg": ("headers", False, "", (), ""),  # broken MIME, postmaster
}


@pytest.mark.parametrize("relative", sorted(CORPUS_BOUNCES))
def test_corpus_bounce_is_recognised_with_recipients_status_and_original_id(relative: str) -> None:
    detector, permanent, status, recipients, original = CORPUS_BOUNCES[relative]
    bounce = bounce_of(corpus(relative))
    assert bounce is not None
    assert (bounce.detector, bounce.permanent, bounce.status) == (detector, permanent, status)
    assert bounce.recipients == recipients
    assert bounce.original_message_id == original


def test_corpus_dsn_with_eleven_recipients_keeps_them_all() -> None:
    bounce = bounce_of(corpus("cpython-test-email/data/msg_43.txt"))
    assert bounce is not None
    assert len(bounce.recipients) == 11 and all(r.endswith("@dot.ca.gov") for r in bounce.recipients)
    assert (bounce.permanent, bounce.status) == (True, "5.7.1")
    assert bounce.diagnostic.startswith("550 5.7.1 Message content rejected")


# Recognised as bounces, with nothing to check beyond that: msg_05 declares a delivery-status
# report without carrying one, badbound.out is Mime4j's re-serialisation of badbound.msg,
# msg_43 is checked above, and mail092's returned message is empty (no original Message-ID).
OTHER_CORPUS_BOUNCES = {
    "cpython-test-email/data/msg_05.txt", "cpython-test-email/data/msg_43.txt",
    "james-mime4j/mimetools-testmsgs/badbound.out", "mimekit/messages/delivery-status-no-blank-line.txt",
    "ruby-mail/emails/multipart_report_emails/multi_address_bounce2.eml", "zammad/mail092.box",
}
_NOT_MAIL_SUFFIXES = {".json", ".xml", ".yml", ".md", ".bin"}


def corpus_non_bounces() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    known = set(CORPUS_BOUNCES) | OTHER_CORPUS_BOUNCES
    files = (p for p in sorted(CORPUS.rglob("*")) if p.is_file() and p.suffix not in _NOT_MAIL_SUFFIXES)
    return [p for p in files if str(p.relative_to(CORPUS)) not in known
            and not p.name.startswith((".", "README", "COPYING", "LICENSE")) and "_decoded" not in p.name]


def test_every_other_corpus_message_is_not_a_bounce() -> None:
    paths = corpus_non_bounces()
    if not paths:
        pytest.skip(f"corpus missing at {CORPUS}")
    wrong = []
    for path in paths:
        raw = path.read_bytes()
        try:
            message = parse_message(raw)
        except UnreadableMessage:  # the parser's business, not ours
            continue
        if parse_bounce(message, raw) is not None:
            wrong.append(str(path.relative_to(CORPUS)))
    assert wrong == []


def test_corpus_bounce_lists_name_real_bounces() -> None:
    for relative in OTHER_CORPUS_BOUNCES:
        assert bounce_of(corpus(relative)) is not None, relative


# --- not bounces -----------------------------------------------------------------------------

# Each of these fools flufl.bounce on its own (its heuristics are made for mail sent to a
# bounce address); the MTA signs parse_bounce asks for first are what keep them out.
NOT_BOUNCES = ["customer-my-email-bounced.eml", "out-of-office.eml", "mailing-list.eml",
               "customer-forwards-a-bounce.eml"]


@pytest.mark.parametrize("name", NOT_BOUNCES)
def test_mail_that_only_talks_about_bounces_is_not_a_bounce(name: str) -> None:
    raw = fixture(name)
    temporary, permanent = all_failures(email.message_from_bytes(raw, policy=email.policy.compat32))
    assert temporary or permanent, "the fixture no longer exercises the MTA check"
    assert bounce_of(raw) is None


@pytest.mark.parametrize("subject", ["Undeliverable: my order", "Delivery failure on your side?",
                                     "Returned mail", "Re: Undelivered Mail Returned to Sender"])
def test_customer_subject_that_sounds_like_a_bounce_is_not_a_bounce(subject: str) -> None:
    raw = simple("Olivia <olivia@example.com>", subject, "<olivia-1@example.com>",
                 body="My email bounced: 550 5.1.1 user unknown, see Final-Recipient: rfc822; a@example.com")
    assert bounce_of(raw) is None


def test_postmaster_writing_a_normal_mail_is_not_a_bounce() -> None:
    raw = simple("Peggy <postmaster@example.com>", "Question about your SPF record", "<peggy-1@example.com>",
                 body="Hi, mail from you, bounces@example.test, and others fails our SPF check.")
    assert bounce_of(raw) is None


def test_out_of_office_with_null_return_path_and_bounce_words_is_not_a_bounce() -> None:
    raw = simple("Quinn <quinn@example.org>", "Out of Office: delivery failure notice", "<quinn-1@example.org>",
                 body="I am away. Contact Rita, rita@example.org, for anything urgent.",
                 extra="Return-Path: <>\r\nAuto-Submitted: auto-replied")
    assert bounce_of(raw) is None


# --- hostile input ---------------------------------------------------------------------------

HOSTILE = {
    "declared DSN without parts": b"From: MAILER-DAEMON@mx.example\r\nContent-Type: multipart/report; "
                                  b"report-type=delivery-status\r\n\r\nno boundary, no parts\r\n",
    "DSN with an empty body": b"From: MAILER-DAEMON@mx.example\r\nContent-Type: multipart/report; "
                              b"report-type=delivery-status; boundary=x\r\n\r\n",
    "garbage delivery-status": raw_mail("""
        From: MAILER-DAEMON@mx.example
        Content-Type: multipart/report; report-type=delivery-status; boundary=x

        --x
        Content-Type: message/delivery-status
        Content-Transfer-Encoding: base64

        %%%% not base64 !!
        Final-Recipient: ;;;;<<<>>>
        Original-Recipient: rfc822; <@@@>
        Action: \x00\x01 failed
        Status: 9.9.9.9.9
        Diagnostic-Code: smtp;
        : no name
        --x
        Content-Type: text/rfc822-headers
        Content-Transfer-Encoding: base64

        ====
        --x--
        """),
    "8-bit From and fields": b"From: \xff\xfe MAILER-DAEMON <MAILER-DAEMON@mx.example>\r\n"
                             b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
                             b"--x\r\nContent-Type: message/delivery-status\r\n\r\n"
                             b"Final-Recipient: rfc822; \xe9t\xe9@mx.example\r\nAction: f\xe4iled\r\n--x--\r\n",
    "base64 returned message with junk": raw_mail("""
        From: MAILER-DAEMON@mx.example
        Content-Type: multipart/report; report-type=delivery-status; boundary=x

        --x
        Content-Type: message/rfc822
        Content-Transfer-Encoding: base64

        TWVzc2FnZS1JRDogPGEuYkBj=====PgoK!!
        --x--
        """),
    "deeply nested multiparts": b"From: MAILER-DAEMON@mx.example\r\nContent-Type: multipart/report; "
                                b"report-type=delivery-status; boundary=b0\r\n\r\n" + b"".join(
                                    b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
                                    for i in range(3000)),
    "header block only": b"From: MAILER-DAEMON@mx.example\r\nX-Failed-Recipients: ,,<>,;;",
    "binary noise from a daemon": b"From: mailer-daemon@mx.example\r\n\r\n" + bytes(range(256)) * 200,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_never_raises(name: str) -> None:
    raw = HOSTILE[name]
    bounce = bounce_of(raw)
    if bounce is not None:  # whatever is reported is well-formed
        assert all("@" in r and r == r.lower() for r in bounce.recipients)
        assert bounce.status == "" or bounce.status[0] in "45"
        assert "\n" not in bounce.diagnostic and len(bounce.diagnostic) <= 200


def test_garbage_delivery_status_yields_no_made_up_recipient() -> None:
    bounce = bounce_of(HOSTILE["garbage delivery-status"])
    assert bounce is not None and bounce.recipients == () and bounce.status == ""


def test_long_lines_from_a_fake_mailer_daemon_are_bounded_in_time() -> None:
    # Several flufl patterns backtrack quadratically over a long line; lines are cut first.
    body = "did not reach the following recipient\r\n" + ("x" * 20_000 + "\r\n") * 200
    raw = ("From: MAILER-DAEMON@mx.example\r\nSubject: Undeliverable\r\n\r\n" + body).encode()
    message = parse_message(raw)
    start = time.perf_counter()
    parse_bounce(message, raw)
    assert time.perf_counter() - start < 2.0


# --- the filter and its settings -------------------------------------------------------------

async def test_filter_accepts_a_bounce_quietly_with_the_bounce_in_details() -> None:
    raw = fixture("dsn-ack-5.1.1.eml")
    verdict = await BounceFilter(BounceSettings(suppress_days=30)).check(context(raw))
    bounce = bounce_of(raw)
    assert bounce is not None
    assert verdict == Verdict(action="accept", reason="bounce: 5.1.1 alice.customer@example.org", tags=("bounce",),
                              no_auto_reply=True,
                              details={"bounce": dataclasses.asdict(bounce), "suppress_days": 30})
    assert verdict.details["bounce"]["original_message_id"] == "<ticketd.7.abc@example.test>"


async def test_filter_leaves_ordinary_mail_alone() -> None:
    raw = fixture("customer-my-email-bounced.eml")
    assert await BounceFilter(BounceSettings()).check(context(raw)) == Verdict()


def test_settings_default_to_sixty_days() -> None:
    assert load_settings(Section(Path("ticketd.toml"), "filters.bounce", {})) == BounceSettings(60)
    assert load_settings(Section(Path("ticketd.toml"), "filters.bounce", {"suppress_days": 14})).suppress_days == 14


@pytest.mark.parametrize("table", [{"suppress_days": 0}, {"suppress_days": "60"}, {"suppress_days": True},
                                   {"suppres_days": 60}])
def test_settings_errors_name_file_and_key(table: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"ticketd\.toml: filters\.bounce\.suppres"):
        load_settings(Section(Path("ticketd.toml"), "filters.bounce", table))
