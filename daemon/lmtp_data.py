"""The DATA of one LMTP transaction, read a chunk at a time instead of a line at a time.

aiosmtpd reads DATA with one ``readuntil(b"\\r\\n")`` per line and a dozen Python steps around
each: a 1 MiB attachment is 13,000 lines, and with the benchmark's mail that was a third of
the daemon's CPU during an LMTP burst. Here every read ends at the next ".\\r\\n", the only
place the end of data can be, so base64 and most prose arrive in one piece. Nothing past the
terminating line is consumed: PIPELINING is offered, and the next MAIL may already wait in
the buffer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

_END = b".\r\n"


@dataclass(frozen=True)
class Data:
    content: bytes  # dot-unstuffed (RFC 5321 4.5.2); empty when too_big
    size: int  # octets on the wire, terminating line excluded
    too_big: bool = False


async def read_data(reader: asyncio.StreamReader, limit: int | None) -> Data:
    """Read up to and including the lone-dot line; past ``limit`` octets, drain and say so.

    ``reader``'s own limit bounds one read; a read that overruns it is taken as it is, its
    end kept in the buffer in case the terminator starts there.
    """
    chunks: list[bytes] = []
    size = 0
    tail = b"\r\n"  # the last two octets read: at first, the DATA command's own CRLF
    too_big = False
    while True:
        try:
            chunk = await reader.readuntil(_END)
        except asyncio.LimitOverrunError as overrun:
            chunk = await reader.readexactly(overrun.consumed)
        # A terminator is ".\r\n" at a line start; its CRLF may be in the read before.
        ended = chunk.endswith(_END) and (tail + chunk[-5:]).endswith(b"\r\n" + _END)
        tail = (tail + chunk[-2:])[-2:]
        if ended:
            chunk = chunk[:-len(_END)]
        size += len(chunk)
        if limit and size > limit:
            too_big = True
            chunks.clear()  # drained, not kept: memory stays bounded whatever the client sends
        elif not too_big:
            chunks.append(chunk)
        if ended:
            break
    if too_big:
        return Data(b"", size, too_big=True)
    return Data(unstuff(b"".join(chunks)), size)


def unstuff(data: bytes) -> bytes:
    """Remove the leading dot of every line, as aiosmtpd does (a stuffed ".." becomes ".")."""
    data = data.replace(b"\r\n.", b"\r\n")
    return data[1:] if data.startswith(b".") else data
