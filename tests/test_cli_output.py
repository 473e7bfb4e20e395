"""Human CLI output: peer strings cannot drive the terminal, --json stays exact, | head ends quietly."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path
import pytest

from ticketd.daemon import cli as cli_module
from ticketd.daemon.config import load_config
from ticketd.daemon.terminal import safe_line, safe_text
from ticketd.storage.db import database
from ticketd.storage.models import (Article, Attachment, AttachmentContent, Event, InboundMessage, InboundSource, InboundStatus,
                            Ticket)
from tests.support import backend
from tests.support.daemon import PROJECT, cli, cli_json, write_config
from tests.test_config_secrets import pretend_asyncpg_is_installed

OSC52 = "\x1b]52;c;aGk=\x07"  # would write "hi" into the reader's clipboard
SUBJECT = f"\u202eexe.{OSC52}pdf\x9b31m"
BODY = f"Hello{OSC52}\nsecond\tline\r\n\x1b[2Jthird \u2066isolated\u2069 \u200bzero-width"
SENDER = "Ann\r\n<ann@example.org>\u200f"
FILENAME = "invoice\u202egpj.exe"
REASON = "spam\x1b]0;owned\x07\nsecond line"


# --- the functions themselves -----------------------------------------------------------------

@pytest.mark.parametrize("raw, shown", [
    ("\x1b[31mred", "\\x1b[31mred"),
    (OSC52, "\\x1b]52;c;aGk=\\x07"),
    ("a\x00b\x7fc\x85d\x9b", "a\\x00b\\x7fc\\x85d\\x9b"),
    ("\u202eevil\u202c \u2066x\u2069 \u200e\u200f\u061c", "\\u202eevil\\u202c \\u2066x\\u2069 \\u200e\\u200f\\u061c"),
    ("zero\u200bwidth\ufeff\u2060", "zero\\u200bwidth\\ufeff\\u2060"),
    ("tag\U000e0041\U000e0042", "tag\\U000e0041\\U000e0042"),
    ("sep\u2028arator", "sep\\u2028arator"),
    ("lone \udcff surrogate", "lone \\udcff surrogate"),
])
def test_controls_and_invisible_format_characters_become_visible_escapes(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown
    assert safe_line(raw) == shown


def test_body_text_keeps_line_breaks_and_tabs_a_line_does_not() -> None:
    assert safe_text("one\ntwo\tcols\r\nthree\rover") == "one\ntwo\tcols\nthree\\rover"
    assert safe_line("one\ntwo\tcols\r\n") == "one\\ntwo\\tcols\\r\\n"


def test_ordinary_text_of_any_script_is_left_alone() -> None:
    text = "Grüße, 你好, مرحبا, नमस्ते, می‌خواهم, 👩‍💻, so\u00adft, C:\\path\\file"
    assert safe_text(text) == text == safe_line(text)
    assert safe_line(42) == "42" and safe_line(None) == "None"


def test_every_control_and_format_character_is_escaped_but_the_joiners() -> None:
    # Checked against this Python's Unicode database, so a new format character is noticed.
    kept = {"\t", "\n", "\u200c", "\u200d", "\u00ad"}  # ZWNJ/ZWJ: Persian, Indic, emoji
    visible_marks = {0x0600, 0x0601, 0x0602, 0x0603, 0x0604, 0x0605, 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2,
                     0x110BD, 0x110CD, *range(0x13430, 0x13440)}  # prepended marks / hieroglyph joiners
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs") and char not in kept \
                and code not in visible_marks:
            assert safe_line(char).startswith("\\"), f"U+{code:04X} is not escaped"


# --- the commands ---------------------------------------------------------------------------------

async def _seed(url: str, tickets: int = 1) -> None:
    async with database(url):
        first = await Ticket.create(number=1, subject=SUBJECT, requester="ann\x9b@example.org",
                                    queue="q\x1b[0m", tags=["vip\u202e"], fired_rules=["r\x07"])
        article = await Article.create(ticket=first, direction="in", sender=SENDER, text=BODY,
                                       message_id="<m\x1b@example.org>",
                                       date=datetime(2026, 11, 24, 10, tzinfo=timezone.utc))
        attachment = await Attachment.create(article=article, filename=FILENAME, size=3, sha256="0" * 64)
        await AttachmentContent.create(attachment=attachment, content=b"abc")
        await Ticket.bulk_create([Ticket(number=n, subject=f"Ticket number {n} " + "x" * 60,
                                         requester=f"customer{n}@example.org") for n in range(2, tickets + 1)])
        subject = base64.b64encode("hi \x1b[8mhidden \u202e".encode())
        raw = b"From: eve@example.org\r\nSubject: =?utf-8?b?" + subject + b"?=\r\n\r\nbody\r\n"
        held = await InboundMessage.create(size=len(raw), sha256=hashlib.sha256(raw).hexdigest(),
                                           message_id="<q\x1b@example.org>", status=InboundStatus.QUARANTINED,
                                           reason=REASON, verdicts=[["spam", "quarantine", "score\x1b[5m 9", {}]])
        await InboundSource.create(inbound=held, content=raw)


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    config = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")])
    asyncio.run(_seed(load_config(config).database_url))
    return config


def human(config: Path, *args: str) -> str:
    """The command's output, which must hold nothing a terminal would act on or hide."""
    done = cli(config, *args)
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode("utf-8")
    assert safe_text(text) == text, [c for c in text if safe_text(c) != c]
    return text


def test_tickets_show_escapes_the_body_and_every_header(seeded: Path) -> None:
    text = human(seeded, "tickets", "show", "1")
    assert "Ticket #1: \\u202eexe.\\x1b]52;c;aGk=\\x07pdf\\x9b31m" in text
    assert "--- Ann\\r\\n<ann@example.org>\\u200f (customer), 2026-11-24T10:00:00+00:00" in text
    assert "attachments: invoice\\u202egpj.exe (3 bytes)" in text
    assert "Message-ID: <m\\x1b@example.org>" in text
    assert "requester: ann\\x9b@example.org" in text and "tags: vip\\u202e" in text
    assert "Hello\\x1b]52;c;aGk=\\x07\nsecond\tline\n\\x1b[2Jthird \\u2066isolated\\u2069 \\u200bzero-width" in text


def test_tickets_list_escapes_and_json_keeps_the_exact_data(seeded: Path) -> None:
    text = human(seeded, "tickets", "list")
    assert "ann\\x9b@example.org" in text and "\\u202eexe.\\x1b]52;c;aGk=\\x07pdf" in text
    [listed] = cli_json(seeded, "tickets", "list", "--json")
    assert (listed["subject"], listed["requester"], listed["tags"]) == (SUBJECT, "ann\x9b@example.org", ["vip\u202e"])
    shown = cli_json(seeded, "tickets", "show", "1", "--json")
    [article] = shown["articles"]
    assert (article["text"], article["from"], article["attachments"][0]["filename"]) == (BODY, SENDER, FILENAME)


def test_quarantine_list_and_show_escape_reasons_headers_and_verdicts(seeded: Path) -> None:
    assert "spam\\x1b]0;owned\\x07\\nsecond line" in human(seeded, "quarantine", "list")
    text = human(seeded, "quarantine", "show", "1")
    assert "reason: spam\\x1b]0;owned\\x07\\nsecond line" in text
    assert "Subject: hi \\x1b[8mhidden \\u202e" in text
    assert "filter spam: quarantine (score\\x1b[5m 9)" in text
    assert cli_json(seeded, "quarantine", "show", "1", "--json")["reason"] == REASON


def test_check_config_shows_the_database_without_its_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pretend_asyncpg_is_installed(monkeypatch)
    path = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")])
    path.write_text(path.read_text().replace(backend.url(tmp_path / "ticketd.db"), "postgres://tk:hunter2@db/tk")
                    .replace("username = ", 'folder = "IN\\u001b[2JBOX"\nusername = '))
    assert asyncio.run(cli_module._check(load_config(path), argparse.Namespace())) == 0
    out = capsys.readouterr().out
    assert "  database: postgres://tk:***@db/tk\n" in out and "hunter2" not in out
    assert "/IN\\x1b[2JBOX" in out and "\x1b" not in out


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_tickets_list_into_a_reader_that_goes_away_ends_quietly(tmp_path: Path, extra: list[str]) -> None:
    config = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")])
    asyncio.run(_seed(load_config(config).database_url, tickets=1500))  # far more than a pipe holds
    errors = tmp_path / "stderr"
    with errors.open("wb") as stderr:  # not a pipe: nothing must wait on it to drain
        process = subprocess.Popen([sys.executable, "-m", "ticketd.daemon.cli", "-c", str(config), "tickets", "list",
                                    *extra], stdout=subprocess.PIPE, stderr=stderr, cwd=PROJECT,
                                   env=dict(os.environ, PYTHONPATH=str(PROJECT)))
        assert process.stdout is not None
        first = process.stdout.readline()  # like `| head -1`
        process.stdout.close()
        code = process.wait(timeout=120)
    assert first.strip()
    assert errors.read_bytes() == b""  # no BrokenPipeError traceback, no "Exception ignored"
    assert code == 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`


# --- conversations: filters, the assignee column, the conversation view -------------------------------

async def _seed_conversations(url: str) -> None:
    async with database(url):
        await Ticket.create(number=1, subject="a", requester="a@example.org", status="open", queue="it",
                            assignee="bob@example.test")
        await Ticket.create(number=2, subject="b", requester="b@example.org", status="open", queue="sales")
        third = await Ticket.create(number=3, subject="c", requester="c@example.org", status="pending", queue="it",
                                    assignee="bob@example.test")
        at = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
        first = await Article.create(ticket=third, direction="in", sender="c@example.org", text="Help", created_at=at)
        note = await Article.create(ticket=third, direction="in", sender="bob@example.test", author="agent",
                                    internal=True, text="Call\x1b[2J her\n> Help", new_text="Call\x1b[2J her",
                                    created_at=at + timedelta(hours=1))
        await Event.create(ticket=third, what="created", detail={"article": first.id}, at=at)
        await Event.create(ticket=third, what="article", detail={"article": note.id}, at=at + timedelta(hours=1))
        await Event.create(ticket=third, what="status_changed", who="bob@example.test",
                           detail={"from": "open", "to": "pending"}, at=at + timedelta(hours=1))


@pytest.fixture
def conversations(tmp_path: Path) -> Path:
    config = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")])
    asyncio.run(_seed_conversations(load_config(config).database_url))
    return config


def test_tickets_list_filters_by_status_queue_and_assignee(conversations: Path) -> None:
    listed = cli_json(conversations, "tickets", "list", "--json", "--status", "open", "--queue", "it",
                      "--assignee", "BOB@example.test")
    assert [(t["number"], t["assignee"]) for t in listed] == [(1, "bob@example.test")]
    assert [t["number"] for t in cli_json(conversations, "tickets", "list", "--json", "--queue", "it")] == [3, 1]
    rows = human(conversations, "tickets", "list", "--status", "open").splitlines()
    assert [row.split()[:5] for row in rows[:-1]] == [["#2", "open", "P3", "sales", "-"],
                                                      ["#1", "open", "P3", "it", "bob@example.test"]]
    assert rows[-1] == "2 ticket(s)"


def test_tickets_show_prints_the_conversation_with_notes_and_status_changes(conversations: Path) -> None:
    text = human(conversations, "tickets", "show", "3")
    assert "--- [internal note] bob@example.test (agent), 2026-03-02T10:00:00+00:00\n" in text
    assert text.index("\nHelp\n") < text.index("Call\\x1b[2J her") < text.index("* status open -> pending by bob")
    assert "> Help" not in text
    shown = cli_json(conversations, "tickets", "show", "3", "--json")
    assert [(a["author"], a["internal"], a["new_text"]) for a in shown["articles"]] == [
        ("customer", False, "Help"), ("agent", True, "Call\x1b[2J her")]
    assert [(e["what"], e["who"]) for e in shown["events"]] == [
        ("created", ""), ("article", ""), ("status_changed", "bob@example.test")]
