"""Agent mail commands: the block at the top of the new text, checked for form."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ticketd.daemon.commands import away_until, parse


def test_the_block_at_the_top_is_read_and_removed_from_the_text() -> None:
    got = parse("\n#status pending\n#Priority p2\n\nThanks, we are on it.\n#status solved is text here\n")
    assert [(c.name, c.value) for c in got.commands] == [("status", "pending"), ("priority", "P2")]
    assert got.errors == ()
    assert got.text == "Thanks, we are on it.\n#status solved is text here"
    assert got.value("status") == "pending" and got.value("queue") is None


def test_text_that_merely_starts_with_a_hash_is_not_a_command() -> None:
    for text in ("#1 thing first", "# Heading", "#: odd"):
        got = parse(text)
        assert got.commands == () and got.errors == () and got.text == text


def test_note_cc_assign_queue_away_back() -> None:
    got = parse("#note\n#cc add <Bob@Example.ORG>\n#cc remove carol@example.org\n#assign Alice Agent\n"
                "#queue billing\n#away until 2026-12-24\nbody")
    assert got.note
    assert got.cc == (("add", "bob@example.org"), ("remove", "carol@example.org"))
    assert got.value("assign") == "Alice Agent" and got.value("queue") == "billing"
    assert got.value("away") == "2026-12-24"
    away = [c for c in got.commands if c.name == "away"][0]
    assert away_until(away) == datetime(2026, 12, 25, tzinfo=timezone.utc)
    assert parse("#back").value("back") == "" and away_until(parse("#away").commands[0]) is None


@pytest.mark.parametrize("line, fragment", [
    ("#stauts pending", "unknown command #stauts"),
    ("#status waiting", "#status takes one of"),
    ("#priority P7", "#priority takes one of"),
    ("#assign", "needs an agent"),
    ("#note please", "#note takes nothing"),
    ("#cc add nobody", "#cc takes add ADDRESS"),
    ("#cc invite x@example.org", "#cc takes add ADDRESS"),
    ("#away next week", "#away takes nothing or until"),
    ("#away until 2026-13-40", "#away takes nothing or until"),
])
def test_a_malformed_command_is_an_error_naming_the_line(line: str, fragment: str) -> None:
    got = parse(f"#status open\n{line}\nHello")
    assert len(got.errors) == 1 and fragment in got.errors[0] and repr(line) in got.errors[0]
    assert got.text == "Hello"


def test_a_long_run_of_hash_lines_stops_being_commands() -> None:
    text = "\n".join(["#note"] * 50)
    got = parse(text)
    assert len(got.commands) == 20 and got.text.count("#note") == 30


def test_hostile_input_stays_linear() -> None:
    got = parse("#" + "a" * 200_000 + " " + "b " * 100_000)
    assert len(got.errors) == 1 and len(got.errors[0]) < 400
