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

from aiosmtpd.smtp import MISSING, SMTP

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


class ChunkedData(SMTP):
    """aiosmtpd's session with DATA read by ``read_data``; every reply is aiosmtpd's own.

    For the LMTP listener and the development SMTP sink. Relies on aiosmtpd internals
    (``_reader``, ``_call_handler_hook``, ``_set_post_data_state``), so pyproject pins 1.4.
    """

    async def smtp_DATA(self, arg: str) -> None:
        """As aiosmtpd's own, but with the body read in chunks (and no line-length limit)."""
        if self._decode_data:  # text content: aiosmtpd's own path (neither of ours asks for it)
            return await super().smtp_DATA(arg)
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            data = await read_data(self._reader, self.data_size_limit)
        except asyncio.IncompleteReadError:  # the client went away mid-message
            self._writer.close()
            raise ConnectionResetError("connection lost during DATA") from None
        if data.too_big:
            await self.push("552 Error: Too much mail data")  # LmtpServer.push repeats it per recipient
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = data.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)
