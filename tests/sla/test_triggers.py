"""The pure part of the escalation triggers: phrases found in a customer's words, subjects compared, thresholds."""

from __future__ import annotations

import pytest

from ticketd.daemon.sla.triggers import (MAX_TEXT, Triggers, first_phrase, low_rating, normalise_subject, phrase_pattern,
                                 vip_tier)

DEFAULT = Triggers()


@pytest.mark.parametrize(("text", "found"), [
    ("I want to SPEAK TO A MANAGER now.", "speak to a manager"),
    ("Let me speak to a\n  manager, please", "speak to a manager"),  # wrapped by the mail client
    ("Please escalate this.", "escalate"),
    ("Who is your Supervisor?", "supervisor"),
    ("This calls for a formal complaint.", "formal complaint"),
])
def test_a_request_for_a_manager_is_found_however_written(text: str, found: str) -> None:
    assert first_phrase(DEFAULT.manager, text) == found


@pytest.mark.parametrize("text", [
    "The problem escalated overnight.",  # a word of its own, not "escalate"
    "Our account manager says hello.", "The supervisors' meeting is moved.", "", "Thanks, all good now."])
def test_words_that_only_look_alike_are_not_a_request(text: str) -> None:
    assert first_phrase(DEFAULT.manager, text) is None


@pytest.mark.parametrize(("text", "found"), [
    ("We think we had a Data Breach.", "data breach"), ("Is this (GDPR) compliant?", "gdpr"),
    ("See CVE-2026-1234.", "cve"), ("A phishing mail came from you", "phishing"),
])
def test_security_and_compliance_words(text: str, found: str) -> None:
    assert first_phrase(DEFAULT.security, text) == found


def test_no_security_word_inside_another_word() -> None:
    assert first_phrase(DEFAULT.security, "Our CVEs page, the exploits of our team") is None
    assert first_phrase(DEFAULT.security, "a gdpr-ready form") == "gdpr"  # a hyphen ends a word


def test_own_phrases_the_longest_first_and_none_for_an_empty_list() -> None:
    pattern = phrase_pattern(("chef", "chef sprechen", "C++"))
    assert first_phrase(pattern, "Ich will den Chef sprechen") == "chef sprechen"
    assert first_phrase(pattern, "in C++ please") == "c++"  # no \b beside a "+"
    assert phrase_pattern(()) is None and first_phrase(None, "escalate") is None


def test_only_the_top_of_a_long_mail_is_read() -> None:
    assert first_phrase(DEFAULT.manager, "x" * MAX_TEXT + " escalate") is None
    assert first_phrase(DEFAULT.manager, "escalate " + "x" * MAX_TEXT) == "escalate"


@pytest.mark.parametrize(("subject", "normal"), [
    ("Invoice wrong", "invoice wrong"), ("Re: Invoice  wrong", "invoice wrong"),
    ("RE: Fwd: AW: invoice WRONG ", "invoice wrong"), ("Re: Invoice wrong [#12]", "invoice wrong"),
    ("[#12] Re[2]: Invoice wrong", "invoice wrong"), ("Fw:Invoice\twrong", "invoice wrong"),
    ("(no subject)", ""), ("Re:", ""), ("Reply needed", "reply needed"),  # "Re" only as a prefix with its colon
])
def test_subjects_normalised(subject: str, normal: str) -> None:
    assert normalise_subject(subject) == normal


def test_vip_tiers_and_low_ratings() -> None:
    assert vip_tier(DEFAULT, "vip") and vip_tier(DEFAULT, "VIP")
    assert not vip_tier(DEFAULT, "gold") and not vip_tier(DEFAULT, None) and not vip_tier(DEFAULT, "")
    assert [low_rating(DEFAULT, r) for r in range(1, 6)] == [True, True, False, False, False]  # below 3 of 5
    off = Triggers(csat_below=0)
    assert not any(low_rating(off, r) for r in range(1, 6))
