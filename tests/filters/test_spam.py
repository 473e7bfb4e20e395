"""The spam filter against a real offline spamd on 127.0.0.1, and stand-ins that refuse or stay silent."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ticketd.daemon.config import ConfigError, Section
from ticketd.daemon.filters import FilterContext
from ticketd.daemon.filters.spam import SpamFilter, SpamSettings, load_settings, relay_is_trusted
from ticketd.daemon.outage import Outage
from ticketd.daemon.parsers import parse_message
from devtools.spamd import Spamd
from tests.support.mail import raw_mail

# The Generic Test for Unsolicited Bulk Email: every SpamAssassin scores it 1000 or more.
GTUBE_LINE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

GTUBE = raw_mail(f"""
    From: Spammer <spammer@example.test>
    To: support@example.test
    Subject: Buy now
    Date: Mon, 01 Jan 2024 10:00:00 +0000
    Message-ID: <gtube@example.test>

    {GTUBE_LINE}
""")

HAM = raw_mail("""
    From: Alice Example <alice@example.test>
    To: support@example.test
    Subject: Printer on floor 2
    Date: Mon, 01 Jan 2024 10:00:00 +0000
    Message-ID: <ham@example.test>
    MIME-Version: 1.0
    Content-Type: text/plain; charset=utf-8

    Hello, the printer on the second floor jams again. Could someone look at it?
    Thanks, Alice
""")

MAX_TIMEOUT_OVERRUN = 1.0  # seconds a timed-out check may take beyond its timeout on a slow machine


def context(raw: bytes) -> FilterContext:
    return FilterContext(parse_message(raw), raw, "support", frozenset({"support@example.test"}),
                         datetime(2024, 1, 1, 10, 0, tzinfo=UTC))


def upstream_mail(received: str, status: str, flag: str = "", body: str = "Hello, where is my invoice?") -> bytes:
    """A message that passed a spam-checking MTA: ``received`` is the topmost Received header."""
    headers = [
        f"Received: {received}",
        ("Received: from client.example.net (client.example.net [198.51.100.7])\n"
         "\tby mx.example.com (Postfix) with ESMTPS id 4Tx0; Mon, 01 Jan 2024 09:59:58 +0000"),
        *([f"X-Spam-Flag: {flag}"] if flag else []),
        f"X-Spam-Status: {status}",
        "From: Bob Example <bob@example.net>",
        "To: support@example.test",
        "Subject: Invoice",
        "Date: Mon, 01 Jan 2024 09:59:50 +0000",
        "Message-ID: <upstream@example.net>",
    ]
    text = "\n".join(headers) + "\n\n" + body + "\n"
    return text.replace("\n", "\r\n").encode("utf-8")


FROM_GATEWAY = ("from mx.example.com (mx.example.com [192.0.2.1])\n"
                "\tby imap.example.test (Postfix) with ESMTPS id 1A2B; Mon, 01 Jan 2024 10:00:00 +0000")
SPAMMY_STATUS = ("Yes, score=12.3 required=5.0 tests=DKIM_INVALID,\n\tHTML_MESSAGE,URIBL_BLACK"
                 " autolearn=no\n\tversion=3.4.6")


def tcp(spamd: Spamd, **changes: Any) -> SpamSettings:
    return replace(SpamSettings(host=spamd.host, port=spamd.port, timeout=30.0), **changes)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, never listening, held for the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A listener on 127.0.0.1 that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def answering_server(answer: bytes) -> asyncio.Server:
    """A listener on 127.0.0.1 that reads a whole request, then sends ``answer`` and closes."""
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(reply, "127.0.0.1", 0)


# ---------------------------------------------------------------- scoring by spamd


async def test_gtube_mail_is_quarantined_with_score_and_rule_names(spamd: Spamd) -> None:
    verdict = await SpamFilter(tcp(spamd)).check(context(GTUBE))
    assert verdict.action == "quarantine"
    assert verdict.details["score"] >= 1000
    assert "GTUBE" in verdict.details["rules"]
    assert verdict.details["source"] == "spamd"
    assert verdict.tags == ("spam",)
    assert verdict.no_auto_reply
    assert verdict.reason.startswith(f"spam score {verdict.details['score']:.1f} >= 10.0")


async def test_an_ordinary_mail_is_accepted_with_its_score(spamd: Spamd) -> None:
    verdict = await SpamFilter(tcp(spamd)).check(context(HAM))
    assert verdict.action == "accept"
    assert isinstance(verdict.details["score"], float)
    assert verdict.details["score"] < 5.0
    assert isinstance(verdict.details["rules"], list)
    assert "GTUBE" not in verdict.details["rules"]
    assert not verdict.tags and not verdict.no_auto_reply and not verdict.reason


async def test_a_score_between_tag_and_quarantine_thresholds_tags_and_keeps_responders_quiet(
    spamd: Spamd,
) -> None:
    # Bayes and network tests are off, so the same mail scores the same every time.
    score = (await SpamFilter(tcp(spamd)).check(context(HAM))).details["score"]
    spam_filter = SpamFilter(tcp(spamd, tag_threshold=score - 1.0, quarantine_threshold=score + 1.0))
    verdict = await spam_filter.check(context(HAM))
    assert verdict.action == "tag"
    assert verdict.details["score"] == score
    assert verdict.tags == ("spam",)
    assert verdict.no_auto_reply
    assert verdict.reason.startswith(f"spam score {score:.1f} >= ")


async def test_many_concurrent_checks_each_get_their_own_answer(spamd: Spamd) -> None:
    spam_filter = SpamFilter(tcp(spamd))
    mails = [GTUBE, HAM] * 6
    verdicts = await asyncio.gather(*(spam_filter.check(context(raw)) for raw in mails))
    assert [v.action for v in verdicts] == ["quarantine", "accept"] * 6
    assert spam_filter.unreachable_count == 0
    buckets, total = spam_filter.stats.latency.snapshot()  # each exchange timed, for the metrics
    assert buckets[-1] == ("+Inf", 12) and 0 < total < 12 * 30 and not spam_filter.stats.errors


async def test_an_oversized_mail_is_not_sent_to_spamd(closed_port: int) -> None:
    # Pointed at a closed port: any attempt to reach spamd would count as unreachable.
    spam_filter = SpamFilter(SpamSettings(port=closed_port, max_size=len(GTUBE) - 1))
    verdict = await spam_filter.check(context(GTUBE))
    assert verdict.action == "accept"
    assert verdict.details["skipped"] == "too large"
    assert spam_filter.unreachable_count == 0


async def test_a_mail_of_exactly_max_size_is_still_checked(spamd: Spamd) -> None:
    verdict = await SpamFilter(tcp(spamd, max_size=len(GTUBE))).check(context(GTUBE))
    assert verdict.action == "quarantine"


# ---------------------------------------------------------------- spamd unreachable


async def test_unreachable_spamd_accepts_with_a_warning_and_counts(
    closed_port: int, caplog: pytest.LogCaptureFixture,
) -> None:
    spam_filter = SpamFilter(SpamSettings(port=closed_port))
    with caplog.at_level(logging.WARNING, logger="ticketd.spam"):
        first = await spam_filter.check(context(GTUBE))
        await spam_filter.check(context(HAM))
    assert first.action == "accept"
    assert first.reason.startswith("spamd unreachable: cannot connect to 127.0.0.1:")
    assert "error" in first.details
    assert spam_filter.unreachable_count == 2
    assert spam_filter.stats.errors == {"connect": 2}  # the metrics' reason
    assert spam_filter.stats.latency.snapshot()[0][-1] == ("+Inf", 0)  # no score: no latency
    # Both counted, one line: the second failure comes within the first step (daemon.outage).
    [warning] = [r for r in caplog.records if r.name == "ticketd.spam" and r.levelno == logging.WARNING]
    assert "<gtube@example.test>" in warning.getMessage()


async def test_spamd_down_is_one_line_per_step_however_many_checks_then_one_when_it_answers(
    closed_port: int, spamd: Spamd, caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    outage = Outage(first=1.0, clock=lambda: now[0])  # steps of 1, 2, 4 s: lines at 0, 1 and 3
    down = SpamFilter(SpamSettings(port=closed_port), outage)
    with caplog.at_level(logging.INFO, logger="ticketd.spam"):
        for at in (0.0, 0.1, 0.5, 0.99, 1.0, 1.5, 2.9, 3.0, 3.1):
            now[0] = at
            assert (await down.check(context(HAM))).action == "accept"
        # The same outage, seen by a filter whose spamd answers (a restart cannot change a port).
        assert (await SpamFilter(tcp(spamd), outage).check(context(HAM))).action == "accept"

    lines = [r.getMessage() for r in caplog.records if r.name == "ticketd.spam"]
    assert len(lines) == 4 and down.unreachable_count == 9
    assert lines[0].endswith("accepted without a spam check")
    assert lines[1].endswith("accepted without a spam check (4 checks failed since the last line)")
    assert lines[2].endswith("accepted without a spam check (3 checks failed since the last line)")
    assert lines[3] == "spamd answers again after 9 failed checks"
    assert outage.failures == 0


async def test_unreachable_spamd_defers_when_configured(closed_port: int) -> None:
    spam_filter = SpamFilter(SpamSettings(port=closed_port, on_unreachable="defer"))
    verdict = await spam_filter.check(context(GTUBE))
    assert verdict.action == "defer"
    assert verdict.reason.startswith("spamd unreachable: ")
    assert spam_filter.unreachable_count == 1


async def test_a_silent_spamd_gives_up_after_the_timeout(silent_server: int) -> None:
    timeout = 0.5
    spam_filter = SpamFilter(SpamSettings(port=silent_server, timeout=timeout))
    start = time.monotonic()
    verdict = await spam_filter.check(context(HAM))
    elapsed = time.monotonic() - start
    assert timeout * 0.9 <= elapsed < timeout + MAX_TIMEOUT_OVERRUN
    assert verdict.action == "accept"
    assert "within 0.5 s" in verdict.reason
    assert spam_filter.unreachable_count == 1
    assert spam_filter.stats.errors == {"timeout": 1}


async def test_an_error_answer_from_spamd_takes_the_unreachable_path() -> None:
    server = await answering_server(b"SPAMD/1.0 76 Bad header line: (EOF)\r\n")
    port = int(server.sockets[0].getsockname()[1])
    try:
        spam_filter = SpamFilter(SpamSettings(port=port, on_unreachable="defer"))
        verdict = await spam_filter.check(context(HAM))
    finally:
        server.close()
        await server.wait_closed()
    assert verdict.action == "defer"
    assert "answered 76" in verdict.reason
    assert spam_filter.unreachable_count == 1
    assert spam_filter.stats.errors == {"refused": 1}


async def test_the_unix_socket_wins_over_host_and_port(spamd: Spamd, server_dir: Path) -> None:
    missing = server_dir / "spamd.sock"
    spam_filter = SpamFilter(tcp(spamd, socket=str(missing)))
    verdict = await spam_filter.check(context(GTUBE))
    assert verdict.action == "accept"
    assert str(missing) in verdict.reason
    assert spam_filter.unreachable_count == 1


# ---------------------------------------------------------------- trusting an upstream MTA


async def test_upstream_headers_of_the_named_mta_are_used_without_asking_spamd(closed_port: int) -> None:
    spam_filter = SpamFilter(SpamSettings(port=closed_port, trust_upstream=("mx.example.com",)))
    verdict = await spam_filter.check(context(upstream_mail(FROM_GATEWAY, SPAMMY_STATUS, "YES")))
    assert verdict.action == "quarantine"
    assert verdict.details == {"score": 12.3, "rules": ["DKIM_INVALID", "HTML_MESSAGE", "URIBL_BLACK"],
                               "source": "upstream"}
    assert spam_filter.unreachable_count == 0


async def test_upstream_headers_are_ignored_when_no_mta_is_trusted(spamd: Spamd) -> None:
    verdict = await SpamFilter(tcp(spamd)).check(context(upstream_mail(FROM_GATEWAY, SPAMMY_STATUS, "YES")))
    assert verdict.details["source"] == "spamd"
    assert verdict.action == "accept"


@pytest.mark.parametrize("received", [
    pytest.param("from relay.example.org (relay.example.org [203.0.113.9])\n"
                 "\tby imap.example.test (Postfix); Mon, 01 Jan 2024 10:00:00 +0000", id="another-mta-delivered"),
    # The sender said HELO mx.example.com, but our MTA looked its address up as another host.
    pytest.param("from mx.example.com (evil.example [203.0.113.9])\n"
                 "\tby imap.example.test (Postfix); Mon, 01 Jan 2024 10:00:00 +0000", id="forged-helo"),
])
async def test_upstream_headers_are_not_trusted_unless_the_named_mta_delivered(spamd: Spamd, received: str) -> None:
    spam_filter = SpamFilter(tcp(spamd, trust_upstream=("mx.example.com",)))
    verdict = await spam_filter.check(context(upstream_mail(received, "No, score=-5.0 tests=none", "NO",
                                                            body=GTUBE_LINE)))
    assert verdict.details["source"] == "spamd"
    assert verdict.action == "quarantine"


async def test_an_upstream_yes_below_our_tag_threshold_still_tags(closed_port: int) -> None:
    spam_filter = SpamFilter(SpamSettings(port=closed_port, trust_upstream=("mx.example.com",)))
    status = "Yes, score=3.2 required=3.0 tests=HTML_MESSAGE"
    verdict = await spam_filter.check(context(upstream_mail(FROM_GATEWAY, status, "YES")))
    assert verdict.action == "tag"
    assert verdict.details["source"] == "upstream"


async def test_a_trusted_mta_without_a_readable_score_falls_back_to_spamd(spamd: Spamd) -> None:
    spam_filter = SpamFilter(tcp(spamd, trust_upstream=("mx.example.com",)))
    verdict = await spam_filter.check(context(upstream_mail(FROM_GATEWAY, "No", "NO", body=GTUBE_LINE)))
    assert verdict.details["source"] == "spamd"
    assert verdict.action == "quarantine"


@pytest.mark.parametrize(("received", "trusted"), [
    ("from mx.example.com (mx.example.com [192.0.2.1]) by imap.example.test (Postfix)", True),
    ("from MX.Example.COM. (mx.example.com. [192.0.2.1]) by imap.example.test", True),
    ("from mx.example.com ([192.0.2.1] helo=mx.example.com) by imap.example.test with esmtp (Exim 4.96)",
     True),
    ("from client.example.net (client.example.net [198.51.100.7]) by mx.example.com (Postfix)", True),
    ("by mx.example.com (Postfix, from userid 0)", True),
    ("from mx.example.com (unknown [203.0.113.9]) by imap.example.test (Postfix)", False),
    ("from mx.example.com (evil.example [203.0.113.9]) by imap.example.test (Postfix)", False),
    ("from mx (mx.example.com [192.0.2.1]) by imap.example.test (Postfix)", False),
    ("from [203.0.113.9] (helo=mx.example.com) by imap.example.test with esmtp (Exim 4.96)", False),
    (("from evil.example (evil.example [203.0.113.9]) (authenticated by mx.example.com) "
      "by imap.example.test"), False),
    ("from mx.example.com.evil.example (x [203.0.113.9]) by imap.example.test", False),
])
def test_a_relay_is_trusted_only_when_the_received_header_names_the_trusted_host(
    received: str, trusted: bool,
) -> None:
    assert relay_is_trusted(received, frozenset({"mx.example.com"})) is trusted


def test_every_recorded_name_of_the_relay_must_be_trusted() -> None:
    received = "from mx (mx.example.com [192.0.2.1]) by imap.example.test (Postfix)"
    assert relay_is_trusted(received, frozenset({"mx", "mx.example.com"}))


# ---------------------------------------------------------------- settings


def section(**data: Any) -> Section:
    return Section(Path("/etc/ticketd/ticketd.toml"), "filters.spam", data)


def test_settings_default_to_a_local_spamd() -> None:
    assert load_settings(section()) == SpamSettings()


def test_settings_are_read_from_the_table() -> None:
    settings = load_settings(section(
        host="spamd.internal", port=7830, socket="/run/spamd.sock", timeout=5, max_size=1024,
        tag_threshold=4, quarantine_threshold=8.5, on_unreachable="defer",
        trust_upstream=["MX.Example.com.", "mx2.example.com"],
    ))
    assert settings == SpamSettings("spamd.internal", 7830, "/run/spamd.sock", 5.0, 1024, 4.0, 8.5, "defer",
                                    ("mx.example.com", "mx2.example.com"))


@pytest.mark.parametrize(("data", "key", "expected"), [
    ({"port": 0}, "filters.spam.port", "a TCP port"),
    ({"port": 70000}, "filters.spam.port", "a TCP port"),
    ({"port": "783"}, "filters.spam.port", "an integer"),
    ({"timeout": 0}, "filters.spam.timeout", "a positive number"),
    ({"max_size": -1}, "filters.spam.max_size", "a positive number"),
    ({"tag_threshold": 12, "quarantine_threshold": 10}, "filters.spam.tag_threshold", "quarantine_threshold"),
    ({"on_unreachable": "reject"}, "filters.spam.on_unreachable", "accept | defer"),
    ({"socket": "spamd.sock"}, "filters.spam.socket", "an absolute path"),
    ({"trust_upstream": "mx.example.com"}, "filters.spam.trust_upstream", "an array of host names"),
    ({"trust_upstream": ["mx.example.com", "not a host"]}, "filters.spam.trust_upstream", "host names"),
    ({"treshold": 5}, "filters.spam.treshold", "unknown key"),
])
def test_bad_settings_are_refused_naming_the_key(data: dict[str, Any], key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(section(**data))
    message = str(raised.value)
    assert message.startswith(f"/etc/ticketd/ticketd.toml: {key}: ")
    assert expected in message


def test_the_filter_is_named_spam_for_the_pipeline_config() -> None:
    spam_filter = SpamFilter(SpamSettings())
    assert spam_filter.name == "spam"
    assert spam_filter.description
