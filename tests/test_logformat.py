"""The log formats: text as logging's own writes it, keyvalue and json with context, the journal's prefix."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from datetime import datetime

import pytest

from ticketd.daemon import logcontext
from ticketd.daemon.logformat import FORMATS, TEXT, Formatter, JsonFormatter, KeyValueFormatter, build

CREATED = 1_700_000_000.25


def record(msg: str = "sent %s", args: tuple[object, ...] = ("<a@b>",), level: int = logging.INFO,
           created: float = CREATED, name: str = "ticketd.smtp", **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    entry.created, entry.msecs = created, (created - int(created)) * 1000
    entry.__dict__.update(extra)
    return entry


def failed() -> logging.LogRecord:
    try:
        raise ValueError("boom")
    except ValueError:
        entry = record("commit failed", ())
        entry.exc_info = sys.exc_info()
    return entry


def pairs(line: str) -> list[tuple[str, str]]:
    """A keyvalue line as a logfmt reader splits it: shell-like words, each KEY=VALUE."""
    return [tuple(word.split("=", 1)) for word in shlex.split(line)]  # type: ignore[misc]


# -- text ----------------------------------------------------------------------------------------


def test_text_lines_match_the_standard_formatter_within_a_second_and_across_seconds() -> None:
    ours, standard = Formatter(TEXT), logging.Formatter(TEXT)
    for created in (1_700_000_000.001, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_000.25, 1_800_000_000.0):
        assert ours.format(record(created=created)) == standard.format(record(created=created))


def test_text_tracebacks_and_stacks_come_as_the_standard_formatter_writes_them() -> None:
    ours, standard = Formatter(TEXT), logging.Formatter(TEXT)
    assert ours.format(failed()) == standard.format(failed())
    stacked = record(stack_info="Stack (most recent call last):\n  here")
    assert ours.format(stacked) == standard.format(record(stack_info="Stack (most recent call last):\n  here"))
    assert "Traceback" in ours.format(failed()) and "ValueError: boom" in ours.format(failed())


def test_text_escapes_a_line_break_or_control_in_the_message_so_no_line_can_be_faked() -> None:
    hostile = "<x@evil>\r\n2023-11-14 22:13:20,250 ERROR ticketd.smtp: fake \x1b[2J\u202e"
    line = Formatter(TEXT).format(record("sent %s", (hostile,)))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u202e" not in line
    assert line.endswith("INFO ticketd.smtp: sent <x@evil>\\r\\n2023-11-14 22:13:20,250 ERROR ticketd.smtp: "
                         "fake \\x1b[2J\\u202e")


def test_text_leaves_printable_unicode_alone() -> None:
    assert Formatter(TEXT).format(record("opened %s", ("Drucker im 2. Stock – bitte prüfen ✓",))).endswith(
        "opened Drucker im 2. Stock – bitte prüfen ✓")


# -- keyvalue ------------------------------------------------------------------------------------


def test_keyvalue_carries_the_context_then_the_message_last() -> None:
    with logcontext.message("support", 123, "<CAF=x1@mail.gmail.com>"):
        logcontext.set_ticket(42)
        line = KeyValueFormatter(stamp=False).format(
            record("opened ticket #%d (%s)", (42, "P3 support"), name="ticketd.pipeline"))
    assert line == ('level=info logger=ticketd.pipeline mailbox=support inbound=123 '
                    'message_id="<CAF=x1@mail.gmail.com>" ticket=42 msg="opened ticket #42 (P3 support)"')


def test_keyvalue_timestamp_is_iso_8601_with_the_offset_to_the_millisecond() -> None:
    first, rest = KeyValueFormatter().format(record()).split(" ", 1)
    key, stamp = first.split("=")
    assert key == "ts" and len(stamp) == len("2023-11-14T23:13:20.250+01:00")
    assert datetime.fromisoformat(stamp).timestamp() == CREATED
    assert rest == 'level=info logger=ticketd.smtp msg="sent <a@b>"'


def test_the_scope_ends_with_its_block_and_a_ticket_set_inside_goes_with_it() -> None:
    formatter = KeyValueFormatter(stamp=False)
    with logcontext.scope(mailbox="support"):
        with logcontext.message("support", 7, "<m@x>"):
            logcontext.set_ticket(3)
        after = formatter.format(record())
    assert after == 'level=info logger=ticketd.smtp mailbox=support msg="sent <a@b>"'
    assert "mailbox" not in formatter.format(record())


@pytest.mark.parametrize("hostile", [
    '<x@evil> inbound=999 level=error msg="forged"',
    "<x@evil>\ntime=now level=error msg=forged",
    "<x@evil>\r\n\x1b]52;c;Zm9v\x07",
    'back\\slash" ticket=1',
    "bidi \u202e\u2066 and line separator \u2028 and a lone surrogate \udcff",
])
def test_peer_data_stays_one_value_in_one_line(hostile: str) -> None:
    with logcontext.message("support", 5, hostile):
        line = KeyValueFormatter(stamp=False).format(record("subject %s", (hostile,)))
    assert "\n" not in line and "\r" not in line and line.isprintable()
    parsed = pairs(line)
    assert [k for k, _ in parsed] == ["level", "logger", "mailbox", "inbound", "message_id", "msg"]
    assert dict(parsed)["inbound"] == "5"  # no value could add or replace a key


def test_quotes_and_backslashes_read_back_as_they_were() -> None:
    text = 'a "quoted" word and C:\\path'
    line = KeyValueFormatter(stamp=False).format(record("%s", (text,)))
    assert dict(pairs(line))["msg"] == text


def test_values_are_bare_only_when_a_reader_cannot_split_them() -> None:
    line = KeyValueFormatter(stamp=False).format(record("x", (), plain="<a@b>", spaced="a b", equals="a=b",
                                                        empty="", number=12))
    assert line == 'level=info logger=ticketd.smtp empty="" equals="a=b" number=12 plain=<a@b> spaced="a b" msg=x'


def test_extras_passed_by_the_code_join_the_context_and_win() -> None:
    with logcontext.message("support", 5, "<m@x>"):
        line = KeyValueFormatter(stamp=False).format(record("x", (), ticket=42, inbound=6))
    assert line == 'level=info logger=ticketd.smtp mailbox=support inbound=6 message_id=<m@x> ticket=42 msg=x'


def test_a_traceback_is_one_escaped_value() -> None:
    line = KeyValueFormatter(stamp=False).format(failed())
    assert "\n" not in line
    exc = dict(pairs(line))["exc"]
    assert exc.startswith("Traceback (most recent call last):\\n") and exc.endswith("ValueError: boom")


# -- json ----------------------------------------------------------------------------------------


def test_json_has_the_keyvalue_keys_with_numbers_as_numbers() -> None:
    with logcontext.outbound(9, "<o1@example.test>", 42):
        line = JsonFormatter().format(record(level=logging.WARNING))
    data = json.loads(line)
    assert list(data) == ["ts", "level", "logger", "outbound", "message_id", "ticket", "msg"]
    assert data["level"] == "warning" and data["outbound"] == 9 and data["ticket"] == 42
    assert datetime.fromisoformat(data["ts"]).timestamp() == CREATED


def test_json_is_ascii_one_line_and_reads_back_exactly_even_with_a_lone_surrogate() -> None:
    hostile = "Grüße\n\u2028\u202e \udcff \"q\" \\"
    line = JsonFormatter(stamp=False).format(record("subject %s", (hostile,)))
    assert line.isascii() and "\n" not in line
    line.encode("utf-8")  # a stream in UTF-8 takes it
    assert json.loads(line)["msg"] == f"subject {hostile}"


def test_json_traceback_is_the_exc_key() -> None:
    data = json.loads(JsonFormatter().format(failed()))
    assert data["msg"] == "commit failed" and data["exc"].endswith("ValueError: boom")


# -- where the lines go --------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize(("level", "prefix"), [(logging.DEBUG, "<7>"), (logging.INFO, "<6>"), (logging.WARNING, "<4>"),
                                               (logging.ERROR, "<3>"), (logging.CRITICAL, "<2>"), (25, "<6>")])
def test_the_journal_gets_the_priority_first_and_no_timestamp_of_ours(name: str, level: int, prefix: str) -> None:
    line = build(name, "journal").format(record(level=level))
    assert line.startswith(prefix) and line[3] != "<"
    assert "2023" not in line and "ts=" not in line and '"ts"' not in line


def test_in_the_journal_every_line_of_a_traceback_keeps_the_priority() -> None:
    lines = build("text", "journal").format(failed()).split("\n")
    assert len(lines) > 3 and all(line.startswith("<6>") for line in lines)
    assert lines[0] == "<6>INFO ticketd.smtp: commit failed"


@pytest.mark.parametrize(("name", "expected"), [
    ("text", "ticketd[{pid}]: INFO ticketd.smtp: sent <a@b>"),
    ("keyvalue", 'ticketd[{pid}]: level=info logger=ticketd.smtp msg="sent <a@b>"'),
    ("json", 'ticketd[{pid}]: {{"level":"info","logger":"ticketd.smtp","msg":"sent <a@b>"}}'),
])
def test_syslog_lines_start_with_the_identifier_and_leave_the_time_to_syslog(name: str, expected: str) -> None:
    entry = record()
    assert build(name, "syslog").format(entry) == expected.format(pid=entry.process)


def test_a_stream_gets_the_timestamp_in_every_format() -> None:
    assert build("text", "stream").format(record()).startswith("2023-11-1")
    assert build("keyvalue", "stream").format(record()).startswith("ts=2023-11-1")
    assert json.loads(build("json", "stream").format(record()))["ts"].startswith("2023-11-1")
