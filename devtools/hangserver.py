"""A TCP server on 127.0.0.1 that speaks a little SMTP, then falls silent: for timeout tests."""

from __future__ import annotations

import socket
import threading

from devtools._process import LOCALHOST, ManagedServer

# Canned answers: enough for a client to get from the greeting through DATA.
_REPLIES = {b"EHLO": b"250 hang.test\r\n", b"HELO": b"250 hang.test\r\n", b"DATA": b"354 Go on\r\n",
            b"QUIT": b"221 Bye\r\n"}


class HangServer(ManagedServer):
    """Accepts every connection and gives each its first `replies` answers (the greeting counts
    as one), then reads on without a word until stopped: replies=0 hangs before the greeting,
    3 after MAIL FROM (so at RCPT), 5 after the message body was sent."""

    def __init__(self, replies: int = 0, host: str = LOCALHOST) -> None:
        self.host = host
        self.port = 0
        self.replies = replies
        self._listener: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepted = 0

    @property
    def running(self) -> bool:
        return self._listener is not None

    @property
    def connections(self) -> int:
        """How many connections were accepted so far."""
        with self._lock:
            return self._accepted

    def start(self) -> None:
        if self._listener is not None:
            return
        listener = socket.create_server((self.host, self.port))
        listener.settimeout(0.05)  # accept() wakes up to notice stop(); closing alone would not wake it
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="hangserver", daemon=True).start()

    def stop(self) -> None:
        """Close the listener and every connection (the clients then see EOF). Safe to call twice."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by stop()
                return
            client.settimeout(None)
            with self._lock:
                self._clients.append(client)
                self._accepted += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        left = self.replies

        def say(line: bytes) -> bool:
            nonlocal left
            if left <= 0:
                return False
            client.sendall(line)
            left -= 1
            return True

        try:
            say(b"220 hang.test ESMTP\r\n")
            in_body = False
            for line in client.makefile("rb"):
                if in_body:
                    if line == b".\r\n":
                        in_body = False
                        say(b"250 OK\r\n")
                    continue
                verb = line[:4].upper()
                in_body = say(_REPLIES.get(verb, b"250 OK\r\n")) and verb == b"DATA"
        except OSError:  # stop() closed the connection under us
            pass
