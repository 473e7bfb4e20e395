"""Tests for bench/figures.py: percentiles, the rawlog, commit-to-ack matching, statement sums."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench.figures import (Outbound, RawCommand, Statements, ack_latencies, parse_rawlog_line, percentile,
                           percentiles, read_rawlog, start_up)

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=timezone.utc)


def test_percentile_is_the_nearest_rank_so_always_an_observed_value() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0], 50) == 1.0  # rank ceil(0.5 * 2) = 1
    assert percentile([1.0, 2.0], 51) == 2.0


def test_percentiles_sort_first_and_are_empty_without_values() -> None:
    assert percentiles([5.0, 1.0, 3.0, 2.0, 4.0]) == {50: 3.0, 95: 5.0, 99: 5.0}
    assert percentiles([]) == {}
    with pytest.raises(ValueError):
        percentile([], 50)


def test_rawlog_lines_give_the_time_and_the_command_without_its_tag() -> None:
    assert parse_rawlog_line(b"1796165116.048817 HJHH2 SELECT INBOX") == RawCommand(1796165116.048817,
                                                                                    "SELECT INBOX")
    assert parse_rawlog_line(b"1796165116.053086 a3 uid search UID 1:*").command == "UID SEARCH UID 1:*"
    assert parse_rawlog_line(b"") is None
    assert parse_rawlog_line(b"not-a-time A1 NOOP") is None
    assert parse_rawlog_line(b"1796165116.0 DONE") is None  # an IDLE's DONE has no tag


def test_read_rawlog_takes_every_session_in_time_order(tmp_path: Path) -> None:
    (tmp_path / "20240304-120000.1.in").write_bytes(b"20.5 A2 UID FETCH 1:3 (BODY.PEEK[])\r\n")
    (tmp_path / "20240304-115959.2.in").write_bytes(b"10.0 B1 SELECT INBOX\r\n11.0 B2 LOGOUT\r\n")
    (tmp_path / "20240304-115959.2.out").write_bytes(b"10.1 * OK\r\n")  # what Dovecot sent: not a command
    assert [c.command for c in read_rawlog(tmp_path)] == ["SELECT INBOX", "LOGOUT", "UID FETCH 1:3 (BODY.PEEK[])"]
    assert read_rawlog(tmp_path / "missing") == []


def test_start_up_counts_from_the_spawn_and_ignores_other_sessions() -> None:
    commands = [RawCommand(99.0, "UID SEARCH ALL"),  # the bench's own session, before the spawn
                RawCommand(100.30, "SELECT INBOX"), RawCommand(100.35, "UID SEARCH UID 1:*"),
                RawCommand(100.40, "UID FETCH 1:25 (UID RFC822.SIZE BODY.PEEK[])"),
                RawCommand(200.0, "UID FETCH 1 (FLAGS)")]  # after the run ended
    seen = start_up(commands, started_at=100.0, ended_at=150.0)
    assert seen.logged_in == pytest.approx(0.30)
    assert seen.first_search == pytest.approx(0.35)
    assert seen.first_fetch == pytest.approx(0.40)
    assert seen.mail == pytest.approx(0.35)
    nothing = start_up(commands, started_at=300.0, ended_at=301.0)
    assert (nothing.logged_in, nothing.mail) == (None, None)


def test_ack_latencies_match_the_sink_to_the_outbox_by_message_id() -> None:
    outbox = {"<a@x>": Outbound(T0, T0 + timedelta(seconds=0.4)),
              "<b@x>": Outbound(T0 + timedelta(seconds=1), None)}
    delivered = [("<a@x>", T0 + timedelta(seconds=0.5)), (" <b@x>\n", T0 + timedelta(seconds=1.25)),
                 ("<other@x>", T0), ("", T0)]
    latencies = ack_latencies(delivered, outbox)
    assert latencies.received == [pytest.approx(0.5), pytest.approx(0.25)]
    assert latencies.recorded == [pytest.approx(0.4)]
    assert latencies.unmatched == 2


def test_statements_minus_an_idle_run_leaves_what_grows_with_the_messages(tmp_path: Path) -> None:
    path = tmp_path / "statements.json"
    path.write_text('{"statements": 12, "kinds": {"SELECT": 7, "INSERT": 4, "PRAGMA": 1}, "durable_commits": 3,'
                    ' "connections": 1, "shapes": {"SELECT ?": 7, "INSERT INTO t (a) VALUES (...)": 4,'
                    ' "PRAGMA x": 1}}')
    total = Statements.load(path)
    assert total is not None and total.kinds["SELECT"] == 7
    fixed = Statements(3, Counter({"SELECT": 2, "PRAGMA": 1}), 0, Counter({"SELECT ?": 2, "PRAGMA x": 1}))
    grown = total.minus(fixed)
    assert (grown.total, grown.durable_commits) == (9, 3)
    assert grown.kinds == Counter({"SELECT": 5, "INSERT": 4})  # PRAGMA is gone, not zero
    assert grown.shapes["SELECT ?"] == 5
    assert total.minus(None) is total
    assert Statements.load(tmp_path / "missing.json") is None
