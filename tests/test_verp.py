"""Signed VERP return addresses: round trip, tampering, other secrets, case folding, length."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from ticketd.daemon import verp

BASE = "support@example.test"
SECRET = b"0123456789abcdef0123456789abcdef"
ACK = "<ticketd.1.5f2c@example.test>"


def test_the_return_address_carries_a_token_that_verifies_to_its_message() -> None:
    address = verp.envelope_sender(BASE, ACK, SECRET)
    local, _, domain = address.rpartition("@")
    assert domain == "example.test" and local.startswith("support+")
    assert verp.verify(address, BASE, SECRET) == verp.message_key(ACK)
    assert verp.verify(f"<{address}>", BASE, SECRET) == verp.message_key(ACK)  # as Return-Path shows it


def test_each_message_gets_its_own_address_and_the_same_message_always_the_same() -> None:
    assert verp.envelope_sender(BASE, ACK, SECRET) == verp.envelope_sender(BASE, ACK, SECRET)
    assert verp.envelope_sender(BASE, ACK, SECRET) != verp.envelope_sender(BASE, "<ticketd.2.9a@example.test>", SECRET)


def test_the_local_part_is_lower_case_atext_within_rfc_5321s_64_octets() -> None:
    local = verp.envelope_sender("b" * 31 + "@example.test", ACK, SECRET).rpartition("@")[0]
    assert len(local) == 64 and re.fullmatch(r"[a-z0-9+]+", local)


@pytest.mark.parametrize("fold", [str.upper, str.lower, str.title])
def test_an_mta_that_folds_the_case_of_the_address_does_not_break_the_proof(fold: Callable[[str], str]) -> None:
    address = verp.envelope_sender("Support@Example.Test", ACK, SECRET)
    assert verp.verify(fold(address), BASE, SECRET) == verp.message_key(ACK)


def test_a_changed_character_anywhere_in_the_token_fails() -> None:
    address = verp.envelope_sender(BASE, ACK, SECRET)
    local, _, domain = address.rpartition("@")
    start = len("support+")
    for i in range(start, len(local)):
        changed = local[:i] + ("a" if local[i] != "a" else "b") + local[i + 1:]
        assert verp.verify(f"{changed}@{domain}", BASE, SECRET) is None


@pytest.mark.parametrize("address", [
    "support@example.test",  # the plain address: no token at all
    "support+@example.test",
    "support+short@example.test",
    "support+" + "1" * 32 + "@example.test",  # not base32
    "other+{token}@example.test",  # another local part
    "support+{token}@example.org",  # another domain
    "support+x+{token}@example.test",
])
def test_addresses_that_are_not_our_signed_return_address_fail(address: str) -> None:
    token = verp.envelope_sender(BASE, ACK, SECRET).rpartition("@")[0].partition("+")[2]
    assert verp.verify(address.format(token=token), BASE, SECRET) is None


def test_another_secret_proves_nothing() -> None:
    address = verp.envelope_sender(BASE, ACK, SECRET)
    assert verp.verify(address, BASE, b"another secret of enough length") is None


@pytest.mark.parametrize("base, problem", [
    ("no-at-sign", "an address"),
    ('"quoted local"@example.test', "atext"),
    ("b" * 32 + "@example.test", "at most 31"),
])
def test_a_base_that_cannot_carry_a_token_is_refused(base: str, problem: str) -> None:
    assert problem in verp.check_base(base)
    with pytest.raises(ValueError):
        verp.envelope_sender(base, ACK, SECRET)


def test_the_envelope_recipient_is_read_from_the_headers_mtas_leave() -> None:
    headers = [("Received", "from mx"), ("Delivered-To", "Support+ABC@example.test"),
               ("X-Original-To", "x@example.test"), ("Envelope-To", "y@example.test"),
               ("To", "Support <z@example.test>, w@example.test"), ("Cc", "not-this@example.test")]
    assert verp.envelope_recipients(headers) == [
        "support+abc@example.test", "x@example.test", "y@example.test", "z@example.test", "w@example.test"]


def test_a_bounce_proves_itself_only_with_the_token_of_the_message_it_cites() -> None:
    other = "<ticketd.7.aa@example.test>"
    to_ack = [("To", verp.envelope_sender(BASE, ACK, SECRET))]
    assert verp.proof(to_ack, BASE, SECRET, ACK)[0] is True
    assert verp.proof([("Delivered-To", verp.envelope_sender(BASE, ACK, SECRET).upper())], BASE, SECRET, ACK)[0]
    proven, why = verp.proof(to_ack, BASE, SECRET, other)  # a token of ours, reused for another message
    assert not proven and "another of our messages" in why
    proven, why = verp.proof([("To", BASE)], BASE, SECRET, ACK)
    assert not proven and "not addressed to a signed return address" in why
    proven, why = verp.proof(to_ack, BASE, None, ACK)
    assert not proven and "no bounce secret" in why


def test_a_forged_bounce_with_deeply_nested_comments_is_read_without_recursion() -> None:
    # email.utils.getaddresses recursed once per "(" and raised RecursionError here.
    headers = [("To", "(" * 2000), ("Delivered-To", verp.envelope_sender(BASE, ACK, SECRET))]
    assert verp.proof(headers, BASE, SECRET, ACK)[0] is True
