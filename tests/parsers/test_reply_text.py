"""new_text and strip_reply: quoted history and signatures removed, per client format, and on hostile input."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable

import pytest

from ticketd.daemon.parsers.htmltext import html_to_text
from ticketd.daemon.parsers.reply_text import Stripped, new_text, strip_reply
from devtools.reply_measure import SAMPLES, Case, load_samples, normalized

CASES = load_samples()


def test_every_client_format_has_samples() -> None:
    stems = {case.name.split(" ")[0] for case in CASES}
    assert len(stems) == len(list(SAMPLES.glob("*.expected.txt"))) >= 40
    assert {case.name.split("-")[0] for case in CASES} >= {
        "gmail", "outlook", "apple", "thunderbird", "iphone", "android", "mobile", "forward", "no", "agent",
    }  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_sample_gives_the_expected_new_text(case: Case) -> None:
    assert normalized(new_text(case.text, case.html)) == normalized(case.expected)


URGENT = re.compile(r"urgent|dringend", re.IGNORECASE)  # en, fr, es, it, pt; de, nl
QUOTING_URGENT = [c for c in CASES if URGENT.search(c.html or c.text) and not URGENT.search(c.expected)]


@pytest.mark.parametrize("case", QUOTING_URGENT, ids=[case.name for case in QUOTING_URGENT])
def test_a_quoted_urgent_is_not_new_text(case: Case) -> None:
    assert not URGENT.search(new_text(case.text, case.html))


def test_most_samples_quote_an_urgent() -> None:
    assert len(QUOTING_URGENT) >= 30


def test_empty_message() -> None:
    assert strip_reply("") == Stripped("", quoted=False, signature=None)
    assert new_text("", None) == new_text("", "") == ""


def test_a_message_that_is_all_quote_is_kept_whole() -> None:
    stripped = strip_reply("> only a quote\n>\n> nothing new\n")
    assert stripped.new_text == "> only a quote\n>\n> nothing new"
    assert stripped.quoted


def test_an_html_forward_with_nothing_new_is_kept_whole() -> None:
    html = (SAMPLES / "forward-apple.html").read_text(encoding="utf-8")
    assert new_text("", html) == html_to_text(html)
    assert new_text(html_to_text(html), html).startswith("Begin forwarded message:")


def test_a_note_above_a_forward_is_the_new_text() -> None:
    text = "FYI, see below.\n\n---------- Forwarded message ---------\nFrom: A <a@example.com>\nDate: now\n\nhi"
    assert new_text(text) == "FYI, see below."


def test_crlf_line_ends() -> None:
    case = next(c for c in CASES if c.name == "gmail-en")
    assert normalized(new_text(case.text.replace("\n", "\r\n"))) == normalized(case.expected)


def test_commands_on_top_of_an_agent_reply_stay() -> None:
    text = "#status pending\n#priority high\n\nDone.\n\nOn Tue, Dec 1, 2026 at 9:00 AM A <a@example.com> wrote:\n> x\n"
    assert new_text(text) == "#status pending\n#priority high\n\nDone."


def test_signature_and_phone_line_are_reported() -> None:
    assert strip_reply("Hi\n\n-- \nBob\nACME\n") == Stripped("Hi", quoted=False, signature="-- \nBob\nACME")
    assert strip_reply("Yes.\n\nSent from my iPhone").signature == "Sent from my iPhone"
    assert strip_reply("Yes.\n\nSent from my desk, where typing is easier.").signature is None


def test_a_long_block_after_two_dashes_is_text() -> None:
    text = "Agenda\n--\n" + "\n".join(f"item {n}" for n in range(30))
    assert new_text(text) == text


def test_an_undated_attribution_without_quote_is_text() -> None:
    text = "On Monday the printer wrote:\nPAPER JAM\n\nOn 1 Dec 2026 it did it again."
    assert new_text(text) == text


def test_a_lone_header_line_is_text() -> None:
    text = "Hi,\n\nFrom: the accounting team, with thanks.\n\nBye"
    assert new_text(text) == text


def test_html_quote_is_used_when_the_text_shows_none() -> None:
    # An Outlook header block in a language we have no words for, marked up in the HTML.
    html = '<p>Tak!</p><div id="divRplyFwdMsg"><b>Nadawca:</b> A<br><b>Wysłano:</b> wczoraj</div><p>stare</p>'
    assert new_text("Tak!\n\nNadawca: A\nWysłano: wczoraj\n\nstare", html) == "Tak!"
    assert strip_reply("", html).quoted


def test_an_unclosed_html_quote_runs_to_the_end() -> None:
    html = '<div>new</div><blockquote type="cite"><div>old<div>older'
    assert new_text(html_to_text(html), html) == "new"


def test_html_without_client_markup_is_left_to_the_text() -> None:
    html = "<p>Look at this:</p><blockquote>a quotation the writer chose</blockquote>"
    assert new_text(html_to_text(html), html) == html_to_text(html)


def _seconds(function: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def _linear(build: Callable[[int], tuple[str, str | None]], size: int) -> None:
    """Four times the input must cost well under sixteen times the time (quadratic would)."""
    small, large = build(size), build(4 * size)
    ratio = _seconds(lambda: strip_reply(*large)) / max(_seconds(lambda: strip_reply(*small)), 1e-4)
    assert ratio < 8, f"4x input took {ratio:.1f}x the time"


def test_a_one_megabyte_line_is_fast() -> None:
    for line in ("x" * 1_000_000, "On " + "wrote " * 170_000 + ":", "> " * 500_000, "From: " + "a" * 1_000_000):
        assert _seconds(functools.partial(strip_reply, line + "\n\nhello")) < 0.5


def test_many_suspicious_lines_stay_linear() -> None:
    lines = [
        "On 1 Dec 2026 at 10:00 Name <a@example.com>",
        "wrote",
        "From: somebody",
        "Subject",
        "-- ",
        "Sent from my iPhone",
        "________",
        "> quoted",
        "-Name",
        "",
    ]
    _linear(lambda n: ("\n".join(lines * n), None), 2_000)


def test_deeply_nested_blockquotes_stay_linear() -> None:
    _linear(lambda n: ("new", "new" + '<blockquote type="cite">' * n + "old" + "</blockquote>" * n), 5_000)
    _linear(lambda n: ("new", '<div class="gmail_quote">' + "<div>" * n + "old"), 5_000)


def test_the_plain_text_decides_when_it_shows_its_quote() -> None:
    text = "Plain answer.\n\nOn Tue, Dec 1, 2026 at 9:00 AM A <a@example.com> wrote:\n> old\n"
    html = '<div>HTML answer.</div><blockquote type="cite">old</blockquote>'
    assert new_text(text, html) == "Plain answer."


def test_an_outlook_header_block_right_below_the_text() -> None:
    text = "Thanks\nBob\nFrom: Support <s@example.com>\nSent: Tuesday\nTo: Bob\nSubject: RE: x\n\nold"
    assert new_text(text) == "Thanks\nBob"
    assert new_text("Thanks\nFrom: Support\nSubject: x\n\nold") == "Thanks\nFrom: Support\nSubject: x\n\nold"


def test_sign_offs_and_list_items() -> None:
    assert new_text("Fixed.\n\n-Abhishek Kona") == "Fixed."
    assert new_text("Steps:\n\n-open the app") == "Steps:\n\n-open the app"
    assert new_text("Done.\n\nSent on Monday to the client.") == "Done.\n\nSent on Monday to the client."


def test_the_attribution_above_a_quote_goes_and_only_it() -> None:
    assert new_text("Regards\nBob\nOn Tue, 1 Dec 2026, Ann <a@example.com> wrote:\n> x") == "Regards\nBob"
    assert new_text("Hi\n\n--Am Montag, 26. Mai 2003 schrieb Dirk\n<d@example.com>:\n\n> x") == "Hi"
    assert new_text("Hi\n\nAnn Lee wrote:\n> x\n\nAs you wrote:\n> y\nok") == "Hi\n\nok"


def test_a_html_part_that_holds_another_text_is_not_used() -> None:
    html = '<div>123</div><blockquote type="cite">old</blockquote>'
    assert new_text("Liebes Team,\n\nMit freundlichen Grüßen", html) == "Liebes Team,\n\nMit freundlichen Grüßen"
