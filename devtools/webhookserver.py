"""A webhook receiver on 127.0.0.1 for tests: records every POST, answers what the test says, can go down and up.

    server = WebhookServer().start()       # a free port; server.url("/hook")
    server.answer(500)                     # every request from now: HTTP 500 (or answer(429, retry_after=1))
    server.stop(); ...; server.start()     # down (connections refused), then up on the same port
    server.requests                        # [Request(path, headers, body)], in arrival order

stdlib http.server in a thread, so it runs beside any event loop (the daemon's, in the test).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devtools._process import LOCALHOST, free_port
from devtools.dovecot import _make_self_signed_cert


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # names lower case
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookServer:
    def __init__(self, port: int | None = None, tls_dir: Path | None = None) -> None:
        """``tls_dir``: serve https with a self-signed certificate made there (no client trusts it)."""
        self.port = port or free_port()
        self.tls_dir = tls_dir
        self.requests: list[Request] = []  # the ones answered 2xx, and the others: see ``answered``
        self.answered: list[int] = []  # the status each request got, in the same order
        self.status, self.retry_after, self.delay = 200, None, 0.0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # kept-alive connections: a server that goes down drops them too
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/hook") -> str:
        return f"{'https' if self.tls_dir else 'http'}://{LOCALHOST}:{self.port}{path}"

    def answer(self, status: int, retry_after: str | None = None, delay: float = 0.0) -> None:
        """What every request gets from now on; ``delay``: seconds before the answer (a slow endpoint)."""
        with self._lock:
            self.status, self.retry_after, self.delay = status, retry_after, delay

    def delivered(self) -> list[Request]:
        """The requests answered 2xx, in order."""
        with self._lock:
            return [r for r, s in zip(self.requests, self.answered) if 200 <= s < 300]

    def start(self) -> WebhookServer:
        handler = _handler(self)
        for _ in range(50):  # the port of a server just stopped may linger a moment
            try:
                self._server = ThreadingHTTPServer((LOCALHOST, self.port), handler)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise OSError(f"port {self.port} stays taken")
        if self.tls_dir is not None:
            self._server.socket = self._tls().wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def _tls(self) -> ssl.SSLContext:
        assert self.tls_dir is not None
        cert, key = self.tls_dir / "cert.pem", self.tls_dir / "key.pem"
        if not cert.exists():
            _make_self_signed_cert(cert, key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return context

    def stop(self) -> None:
        """Down: the listening socket is closed, new connections are refused."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections, self._open = list(self._open), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def _record(self, request: Request) -> tuple[int, str | None, float]:
        with self._lock:
            self.requests.append(request)
            self.answered.append(self.status)
            return self.status, self.retry_after, self.delay


def _handler(owner: WebhookServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with owner._lock:
                owner._open.add(self.connection)

        def finish(self) -> None:
            with owner._lock:
                owner._open.discard(self.connection)
            super().finish()

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, retry_after, delay = owner._record(
                Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            if delay:
                time.sleep(delay)
            reply = b"ok" if status < 300 else b"no"
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
