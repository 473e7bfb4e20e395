"""An SMTP server for the benchmark that costs little: it stands in for an MTA on another machine.

devtools.smtpsink (aiosmtpd) handles each command through aiosmtpd's session machinery; at
1,700 mails a run (acknowledgements and notifications) it took most of a core beside the
daemon being measured, on a 2-core machine. This one answers with fixed replies, reads DATA in
chunks up to the terminator and keeps each message as received: what the benchmark reads
(recipients, the raw bytes, when it arrived) and nothing else. It offers PIPELINING, 8BITMIME
and SMTPUTF8, like the default sink. Tests keep using devtools.smtpsink.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

from devtools._process import LOCALHOST, free_port
from devtools.smtpsink import SinkMessage

EHLO = b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 104857600\r\n"
END = b"\r\n.\r\n"


class _Session(asyncio.Protocol):
    def __init__(self, sink: LeanSink) -> None:
        self.sink = sink
        self.buffer = b""
        self.data: bytes | None = None  # b"" inside DATA, None outside
        self.searched = 0  # bytes of the buffer already searched for the end of DATA
        self.mail_from, self.rcpts = "", []  # type: tuple[str, list[str]]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(b"220 sink ESMTP\r\n")  # type: ignore[attr-defined]

    def data_received(self, chunk: bytes) -> None:
        self.buffer += chunk
        replies = []
        while self.buffer:
            if self.data is not None:
                if self.buffer.startswith(b".\r\n"):  # an empty message
                    body, self.buffer = b"", self.buffer[3:]
                else:
                    # Search only what came since the last look (less the terminator's length):
                    # a large message arrives in many chunks.
                    end = self.buffer.find(END, max(0, self.searched - len(END)))
                    if end == -1:
                        self.searched = len(self.buffer)
                        break
                    body, self.buffer = self.buffer[:end + 2], self.buffer[end + 5:]
                raw = body.replace(b"\r\n..", b"\r\n.")
                if raw.startswith(b".."):
                    raw = raw[1:]
                self.sink.received(SinkMessage(self.mail_from, tuple(self.rcpts), raw, datetime.now(timezone.utc)))
                self.data, self.rcpts, self.searched = None, [], 0
                replies.append(b"250 OK\r\n")
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                break
            self.buffer = rest
            replies.append(self._command(line))
            if replies[-1].startswith(b"221"):
                break
        if replies:
            self.transport.write(b"".join(replies))  # type: ignore[attr-defined]
            if replies[-1].startswith(b"221"):
                self.transport.close()

    def _command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            return EHLO if verb == b"EHLO" else b"250 sink\r\n"
        if verb == b"MAIL":
            self.mail_from, self.rcpts = _address(line), []
            return b"250 OK\r\n"
        if verb == b"RCPT":
            self.rcpts.append(_address(line))
            return b"250 OK\r\n"
        if verb == b"DATA":
            self.data = b""
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"QUIT":
            return b"221 Bye\r\n"
        return b"250 OK\r\n"  # RSET, NOOP


def _address(line: bytes) -> str:
    start, end = line.find(b"<"), line.find(b">")
    return line[start + 1:end].decode("utf-8", "replace") if 0 <= start < end else ""


class LeanSink:
    """Records every message sent to 127.0.0.1:``port``; runs its own event loop in a thread."""

    def __init__(self) -> None:
        self.host, self.port = LOCALHOST, free_port(LOCALHOST)
        self._messages: list[SinkMessage] = []
        self._lock = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def received(self, message: SinkMessage) -> None:
        with self._lock:
            self._messages.append(message)
            self._lock.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` messages came; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._messages) >= count, timeout)

    @property
    def messages(self) -> list[SinkMessage]:
        with self._lock:
            return list(self._messages)

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            server = self._loop.run_until_complete(
                self._loop.create_server(lambda: _Session(self), self.host, self.port))
            ready.set()
            try:
                self._loop.run_forever()
            finally:
                server.close()
                self._loop.run_until_complete(server.wait_closed())
                self._loop.close()

        self._thread = threading.Thread(target=serve, name="lean-sink", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the benchmark's SMTP sink did not start")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None
