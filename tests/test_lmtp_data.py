"""daemon/lmtp_data.py: DATA read in chunks ends exactly at the lone-dot line, unstuffed, size-bounded."""

from __future__ import annotations

import asyncio

import pytest

from ticketd.daemon.lmtp_data import Data, read_data, unstuff


def feed(wire: bytes, pieces: int = 1, limit: int = 2 ** 16) -> asyncio.StreamReader:
    """A reader holding ``wire`` (fed in ``pieces`` slices, as packets arrive) and then EOF."""
    reader = asyncio.StreamReader(limit=limit)
    step = max(1, len(wire) // pieces)
    for start in range(0, len(wire), step):
        reader.feed_data(wire[start:start + step])
    reader.feed_eof()
    return reader


async def read(wire: bytes, pieces: int = 1, limit: int | None = None, stream_limit: int = 2 ** 16,
               ) -> tuple[Data, bytes]:
    reader = feed(wire, pieces, stream_limit)
    data = await read_data(reader, limit)
    return data, await reader.read()  # what is left for the next command


NEXT = b"MAIL FROM:<next@example.test>\r\n"


@pytest.mark.parametrize("pieces", [1, 3, 1000])
async def test_ends_at_the_lone_dot_and_leaves_pipelined_commands(pieces: int) -> None:
    body = b"Subject: hi\r\n\r\nIt ends here.\r\nNot yet.\r\n"
    data, rest = await read(body + b".\r\n" + NEXT, pieces)
    assert (data.content, data.size, rest) == (body, len(body), NEXT)


async def test_an_empty_message_is_the_dot_line_alone() -> None:
    data, rest = await read(b".\r\n" + NEXT)
    assert (data.content, rest) == (b"", NEXT)


@pytest.mark.parametrize("pieces", [1, 7, 1000])
async def test_dot_stuffed_lines_are_unstuffed_like_aiosmtpd(pieces: int) -> None:
    wire = b"..\r\n...dots\r\n.x\r\n\r\n..\r\n.\r\n"
    data, rest = await read(wire + NEXT, pieces)
    assert data.content == b".\r\n..dots\r\nx\r\n\r\n.\r\n"
    assert rest == NEXT


async def test_a_dot_inside_a_line_or_after_a_bare_newline_ends_nothing() -> None:
    wire = b"a.\r\nb\n.\r\nc .\r\n.\r\n"
    data, rest = await read(wire + NEXT)
    assert data.content == b"a.\r\nb\n.\r\nc .\r\n"
    assert rest == NEXT


@pytest.mark.parametrize("pieces", [1, 9])
async def test_past_the_stream_limit_the_line_start_is_known_from_the_read_before(pieces: int) -> None:
    # A read that overruns the reader's limit stops just before the ".\r\n": whether it is the
    # terminator depends on the CRLF that ended the read before.
    body = b"x" * 100 + b".\r\n" + b"y" * 100 + b"\r\n"
    data, rest = await read(body + b".\r\n" + NEXT, pieces, stream_limit=64)
    assert (data.content, rest) == (body, NEXT)


async def test_over_the_limit_is_drained_and_flagged_not_kept() -> None:
    body = b"y" * 5000 + b"\r\n"
    data, rest = await read(body * 10 + b".\r\n" + NEXT, pieces=50, limit=20000, stream_limit=4096)
    assert data.too_big and data.content == b"" and data.size == len(body) * 10
    assert rest == NEXT


async def test_a_client_gone_mid_message_is_an_incomplete_read() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        await read(b"Subject: cut\r\n\r\nhalf a mess")


def test_unstuff_matches_the_line_by_line_rule() -> None:
    lines = [b"..a\r\n", b"b\r\n", b".c\r\n", b"\r\n"]
    by_line = b"".join(line[1:] if line.startswith(b".") else line for line in lines)
    assert unstuff(b"".join(lines)) == by_line
