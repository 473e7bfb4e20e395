"""Signed reply addresses and Authentication-Results: round trip, tampering, case folding, hostile headers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from ticketd.daemon import signing, tokens
from ticketd.daemon.authresults import MAX_CHARS, parse
from ticketd.daemon.signing import authentication_passed, reply_address, signed_ticket, verify

KEY = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
BASE = "support@example.test"
OURS = ["support@example.test", "sales@example.test"]
TRUSTED = "mx.example.test"


def test_a_reply_address_carries_its_ticket_and_verifies_to_it() -> None:
    address = reply_address(BASE, 42, KEY)
    assert re.fullmatch(r"support\+t42-[a-z2-7]{16}@example\.test", address), address
    assert verify(address, KEY) == 42
    assert verify(f"<{address}>", KEY) == 42
    assert reply_address(BASE, 42, KEY) == address  # the same ticket, always the same address


def test_the_mac_has_at_least_64_bits() -> None:
    mac = reply_address(BASE, 42, KEY).rpartition("-")[2].partition("@")[0]
    assert len(mac) * 5 >= 64 and signing.MAC_BYTES * 8 >= 64


def test_the_token_of_one_ticket_proves_nothing_for_another() -> None:
    address = reply_address(BASE, 41, KEY)
    assert verify(address.replace("+t41-", "+t42-"), KEY) is None
    assert verify(address.replace("+t41-", "+t041-"), KEY) is None  # one spelling per ticket
    assert verify(reply_address(BASE, 42, KEY), KEY) == 42


@pytest.mark.parametrize("position", [0, 7, 15])
def test_a_tampered_mac_proves_nothing(position: int) -> None:
    address = reply_address(BASE, 42, KEY)
    local, _, domain = address.rpartition("@")
    head, _, mac = local.rpartition("-")
    changed = mac[:position] + ("b" if mac[position] != "b" else "c") + mac[position + 1:]
    assert verify(f"{head}-{changed}@{domain}", KEY) is None
    assert verify(f"{head}-{mac[:-1]}@{domain}", KEY) is None  # shortened


def test_another_key_proves_nothing() -> None:
    assert verify(reply_address(BASE, 42, KEY), b"another key of at least thirty-two bytes") is None


def test_a_verp_mac_of_the_same_text_is_no_reply_token() -> None:
    # Domain separation: the bounce secret may equal the signing key, and still neither token is the other.
    verp_mac = tokens.sign(KEY, b"ticketd-verp-1\0", "42", signing.MAC_BYTES)
    assert verify(f"support+t42-{verp_mac}@example.test", KEY) is None


@pytest.mark.parametrize("fold", [str.upper, str.lower, str.title, str.swapcase])
def test_an_mta_that_folds_case_breaks_nothing(fold: Callable[[str], str]) -> None:
    assert verify(fold(reply_address("Support@Example.Test", 42, KEY)), KEY) == 42


@pytest.mark.parametrize("fmt", ["{local}-t{ticket}-{mac}@{domain}", "{local}+{ticket}{mac}@{domain}",
                                 "{local}+{mac}.{ticket}@{domain}", "{local}+{mac}{ticket}@{domain}"])
def test_a_configured_format_round_trips_and_only_with_itself(fmt: str) -> None:
    address = reply_address(BASE, 4711, KEY, fmt)
    assert verify(address, KEY, fmt) == 4711
    assert verify(address, KEY) is None
    assert signed_ticket([("To", address)], OURS, KEY, fmt) == 4711


def test_the_longest_ticket_number_fits_and_one_more_digit_is_refused() -> None:
    address = reply_address("s" * 33 + "@example.test", 10 ** signing.TICKET_DIGITS - 1, KEY)
    assert len(address.rpartition("@")[0]) == tokens.LOCAL_MAX
    assert verify(address, KEY) == 10 ** signing.TICKET_DIGITS - 1
    with pytest.raises(ValueError, match="at most 12 digits"):
        reply_address(BASE, 10 ** signing.TICKET_DIGITS, KEY)


@pytest.mark.parametrize("base, ticket, key, fmt, problem", [
    (BASE, 0, KEY, signing.DEFAULT_FORMAT, "positive integer"),
    (BASE, True, KEY, signing.DEFAULT_FORMAT, "positive integer"),
    (BASE, 42, b"short", signing.DEFAULT_FORMAT, "at least 32 bytes"),
    ('"quoted local"@example.test', 42, KEY, signing.DEFAULT_FORMAT, "plain atext"),
    ("s" * 34 + "@example.test", 10 ** 11, KEY, signing.DEFAULT_FORMAT, "at most 33 characters"),
    ("no-at-sign", 42, KEY, signing.DEFAULT_FORMAT, "an address like"),
    (BASE, 42, KEY, "{local}+{ticket}@{domain}", "each of {local}, {ticket}, {mac} and {domain} once"),
])
def test_what_cannot_carry_a_token_is_refused(base: str, ticket: int, key: bytes, fmt: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        reply_address(base, ticket, key, fmt)


@pytest.mark.parametrize("fmt, problem", [
    ("{local}+t{ticket}-{mac}@{domain}", ""),
    ("{local}+t{ticket}-{mac}@{domain", "expected '}'"),
    ("{local}+t{ticket}-{mac}-{mac}@{domain}", "once"),
    ("{local}+t{ticket!r}-{mac}@{domain}", "plain"),
    ("{local}+t{ticket:>5}-{mac}@{domain}", "plain"),
    ("{local}+t{ticket}-{mac}@reply.{domain}x", "@{domain} last"),
    ("{domain}+t{ticket}-{mac}@{local}", "{local} first"),
    ("{local}t{ticket}-{mac}@{domain}", "recipient delimiter"),
    ("{local}+t {ticket}-{mac}@{domain}", "plain atext"),
    ("{local}+" + "x" * 40 + "{ticket}-{mac}@{domain}", "few of them"),
])
def test_formats_are_checked(fmt: str, problem: str) -> None:
    found = signing.check_format(fmt)
    assert (problem in found and found) if problem else found == ""


def test_signed_ticket_finds_the_token_in_each_header_an_mta_or_a_client_writes() -> None:
    address = reply_address(BASE, 42, KEY)
    for name in ("To", "Cc", "Delivered-To", "X-Original-To", "cc", "TO"):
        headers = [("From", "Alice <alice@example.test>"), (name, f'"Support" <{address.upper()}>, bob@example.org')]
        assert signed_ticket(headers, OURS, KEY) == 42, name
    assert signed_ticket([("To", address)], ["SUPPORT@example.TEST"], KEY) == 42


@pytest.mark.parametrize("headers", [
    [("From", "REPLY"), ("Reply-To", "REPLY"), ("Subject", "REPLY"), ("References", "<REPLY>"),
     ("X-Forwarded-To", "REPLY")],
    [("To", "support@example.test"), ("Cc", "alice@example.test")],
])
def test_signed_ticket_reads_only_the_headers_that_say_where_a_mail_went(headers: list[tuple[str, str]]) -> None:
    address = reply_address(BASE, 42, KEY)
    assert signed_ticket([(name, value.replace("REPLY", address)) for name, value in headers], OURS, KEY) is None


def test_a_token_counts_only_on_one_of_our_support_addresses() -> None:
    local = reply_address(BASE, 42, KEY).rpartition("@")[0]
    assert verify(f"{local}@example.org", KEY) == 42  # the token itself is sound ...
    assert signed_ticket([("To", f"{local}@example.org")], OURS, KEY) is None  # ... but was not sent to us
    assert signed_ticket([("To", local.replace("support+", "alice+") + "@example.test")], OURS, KEY) is None


def test_the_envelope_headers_win_over_what_the_client_wrote() -> None:
    headers = [("To", reply_address(BASE, 41, KEY)), ("Delivered-To", reply_address(BASE, 42, KEY))]
    assert signed_ticket(headers, OURS, KEY) == 42


@pytest.mark.parametrize("hostile", [
    [("To", "(" * 100_000)],  # email.utils.getaddresses raises RecursionError at a few hundred
    [("To", '"' * 100_000)],
    [("To", "a@b," * 250_000)],
    [("To", "x" * 1_000_000 + "@example.test")],
    [("Cc", f"u{i}@example.test") for i in range(200_000)],
    [("Delivered-To", "support+t" + "9" * 1000 + "-" + "a" * 1000 + "@example.test")] * 10_000,
])
def test_hostile_headers_stay_cheap(hostile: list[tuple[str, str]]) -> None:
    started = time.perf_counter()
    assert signed_ticket(hostile, OURS, KEY) is None
    assert time.perf_counter() - started < 0.5


def test_the_work_is_bounded_so_a_token_behind_junk_is_not_looked_for() -> None:
    address = reply_address(BASE, 42, KEY)
    assert signed_ticket([("To", "x@example.org")] * (tokens.MAX_FIELDS - 1) + [("To", address)], OURS, KEY) == 42
    assert signed_ticket([("To", "x@example.org")] * tokens.MAX_FIELDS + [("To", address)], OURS, KEY) is None
    assert signed_ticket([("To", " " * tokens.MAX_HEADER + address)], OURS, KEY) is None
    junk = ", ".join(f"u{i}@example.org" for i in range(tokens.MAX_ADDRESSES))
    assert signed_ticket([("To", junk + ", " + address)], OURS, KEY) is None


# Authentication-Results (RFC 8601)

DKIM = f"{TRUSTED}; dkim=pass (2048-bit key; unprotected) header.d=example.test header.s=s1 header.b=AbCd1234"
DMARC = f"{TRUSTED} 1; dmarc=pass (p=reject dis=none) header.from=example.test"


@pytest.mark.parametrize("fields, from_domain, passed", [
    ([DKIM], "example.test", True),
    ([DKIM], "Example.TEST.", True),
    ([DKIM], "eu.example.test", True),  # relaxed alignment: the signer is a parent of the From domain
    ([DKIM], "example.org", False),
    ([DKIM], "badexample.test", False),
    ([DKIM.replace("header.d=example.test", "header.d=test")], "example.test", False),  # no public suffix
    ([DKIM.replace("header.d=example.test", "header.d=\"example.test\"")], "example.test", True),
    ([DKIM.replace("dkim=pass", "DKIM=Pass").upper()], "example.test", True),
    ([DKIM.replace("dkim=pass", "dkim=fail")], "example.test", False),
    ([DKIM.replace("dkim=pass", "dkim=neutral")], "example.test", False),
    ([DKIM.replace(" header.d=example.test", "")], "example.test", False),
    ([DMARC], "example.test", True),
    ([DMARC], "example.org", False),
    ([DMARC.replace(" header.from=example.test", "")], "example.test", False),  # judged which From?
    ([f"{TRUSTED}; none"], "example.test", False),
    ([f"{TRUSTED}; spf=pass smtp.mailfrom=example.test"], "example.test", False),  # SPF says nothing of From
    ([DKIM.replace(TRUSTED, "evil.test")], "example.test", False),  # another server's word
    ([DKIM.replace(TRUSTED, "mx.example.test.evil.test")], "example.test", False),
    ([DKIM.replace(TRUSTED, f"({TRUSTED}) evil.test")], "example.test", False),
    ([DKIM.replace(TRUSTED, f"(the MTA) {TRUSTED.upper()}")], "example.test", True),
    (["evil.test; dkim=pass header.d=example.test", DKIM], "example.test", True),
    # The MTA's own verdict is the topmost field with its id; a pass below it came from upstream.
    ([DKIM.replace("dkim=pass", "dkim=fail"), DKIM], "example.test", False),
    ([f"{TRUSTED}; spf=pass smtp.mailfrom=example.test", DMARC], "example.test", False),
    ([], "example.test", False),
    ([DKIM], "", False),
])
def test_only_the_trusted_servers_verdict_counts(fields: list[str], from_domain: str, passed: bool) -> None:
    assert authentication_passed(fields, TRUSTED, from_domain) is passed


@pytest.mark.parametrize("field", [
    # Text the MTA copied from the sender, in comments or quoted strings, is never syntax.
    f"{TRUSTED}; spf=pass (sender is \"x; dkim=pass header.d=example.test\") smtp.mailfrom=x",
    f'{TRUSTED}; spf=pass (domain of "a) dkim=pass header.d=example.test (" designates) smtp.mailfrom=a',
    f'{TRUSTED}; spf=pass smtp.mailfrom="a; dkim=pass header.d=example.test"@evil.test',
    f'{TRUSTED}; spf=pass smtp.mailfrom="=?utf-8?q?x=22;_dkim=3Dpass_header.d=3Dexample.test;?="@evil.test',
    f"{TRUSTED}; dkim=pass header.d=evil.test header.d=example.test",  # which one did the MTA mean?
    f"{TRUSTED}; dkim=pass header.d=example.test (unclosed",
    f"{TRUSTED}; dkim=pass header.d=\"example.test",
    f"{TRUSTED}; dkim=pass junk header.d=example.test",
    f"{TRUSTED}; dkim=pass policy=none header.d=example.test",  # only reason= has no dot
    f"{TRUSTED}; dkim=pass header.d=example.test.evil.test",
    f"{TRUSTED}; dkim=pass header.d=x.test {'header.x=' + 'y' * MAX_CHARS} ; dkim=pass header.d=example.test",
])
def test_a_forged_or_unreadable_pass_is_no_pass(field: str) -> None:
    assert authentication_passed([field], TRUSTED, "example.test") is False


def test_parse_reads_rfc_8601_fields() -> None:
    assert parse(DKIM) == (TRUSTED, [("dkim", "pass", {"header.d": "example.test", "header.s": "s1",
                                                       "header.b": "AbCd1234"})])
    assert parse(f"{TRUSTED};\r\n\tspf=pass reason=\"ok; fine\" smtp.mailfrom=a@example.test") == (
        TRUSTED, [("spf", "pass", {"smtp.mailfrom": "a@example.test"})])
    assert parse("(only a comment)") is None


@pytest.mark.parametrize("field", ["(" * 100_000, '"' * 100_000, f"{TRUSTED}; " + "dkim=pass " * 10_000,
                                   f"{TRUSTED}; " + "a=b; " * 20_000, f"{TRUSTED} (" + "x" * 100_000 + ")",
                                   f"{TRUSTED}; dkim=pass reason=\"" + "\\x" * 50_000])
def test_hostile_fields_stay_cheap(field: str) -> None:
    started = time.perf_counter()
    assert authentication_passed([field] * 10_000, TRUSTED, "example.test") is False
    assert time.perf_counter() - started < 0.5
