"""An SMTP sink on 127.0.0.1 (aiosmtpd) that records, or refuses on demand, every message.

Besides DATA it can refuse MAIL FROM (`refuse_mail`), chosen recipients (`refuse_rcpt`) or sessions beyond `max_sessions`,
offer SMTPUTF8 or not (`smtputf8=`), and it logs the commands it saw (`commands`, e.g. QUIT).

Also a process: `python -m devtools.smtpsink --port 2525 --maildir DIR` stores each accepted
message in the Maildir DIR (DIR/new/) and prints one line per message.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import email.policy
import enum
import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from ticketd.daemon.lmtp_data import ChunkedData
from devtools._maildir import deliver as maildir_deliver, make_maildir
from devtools._process import ManagedServer, LOCALHOST, free_port, port_is_free, wait_until

log = logging.getLogger("devtools.smtpsink")


class Mode(enum.Enum):
    """How the sink answers DATA; the value is the SMTP reply."""

    ACCEPT = "250 2.0.0 OK"
    TEMPFAIL = "451 4.3.0 Temporary failure (devtools sink)"
    PERMFAIL = "550 5.7.1 Rejected (devtools sink)"

    @property
    def reply(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class SinkMessage:
    """One accepted message, as the client handed it over."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    received_at: datetime
    mail_options: tuple[str, ...] = ()  # e.g. ("SMTPUTF8",)

    @functools.cached_property
    def message(self) -> EmailMessage:
        """Parsed when first asked for, not as it arrives: the sink stands in for an MTA, and
        parsing every message in the benchmark's process took CPU from the daemon it measures."""
        parsed = BytesParser(policy=email.policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    """aiosmtpd handler: the replies are decided by the sink, the message kept by it."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        self._sink._saw("MAIL")
        if self._sink.refuse_mail:
            return self._sink.refuse_mail
        envelope.mail_from = address  # what aiosmtpd does without a hook
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        self._sink._saw("RCPT")
        refusal = self._sink.refuse_rcpt.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does without a hook
        if not self._sink.pipelining:
            return responses
        # aiosmtpd answers pipelined commands one by one, in order, as RFC 2920 asks.
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._sink._saw("RSET")
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._sink._saw("QUIT")
        return "221 Bye"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._sink._saw("DATA")
        return self._sink._receive(envelope)


class _BearerHandler(_Handler):
    """AUTH XOAUTH2 and OAUTHBEARER, the token checked by the sink's ``bearer`` callback.

    A refused token gets the challenge RFC 7628 3.2.3 describes (an error as JSON), then 535
    once the client has sent its one reply, as Gmail and Dovecot answer.
    """

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        if not session.authenticated:  # aiosmtpd's auth_required would warn at every start without TLS
            self._sink._saw("MAIL")
            return "530 5.7.0 Authentication required"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802 (aiosmtpd's name)
        return await self._bearer(server, "XOAUTH2", args)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._bearer(server, "OAUTHBEARER", args)

    async def _bearer(self, server: SMTP, mechanism: str, args: list[str]) -> AuthResult:
        try:
            text = base64.b64decode(args[1], validate=True).decode() if len(args) > 1 else ""
        except (binascii.Error, UnicodeDecodeError):
            text = ""
        fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
        user = fields.get("user", "")
        if mechanism == "OAUTHBEARER":  # "n,a=USER," then the fields
            user = text.split(",")[1].removeprefix("a=") if text.count(",") >= 2 else ""
            fields = dict(part.split("=", 1) for part in text.split("\x01")[1:] if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        sink = self._sink
        accepted = bool(user and token) and sink.bearer is not None and sink.bearer(user, token)
        with sink._changed:
            sink.auths.append((mechanism, user, accepted))
        if accepted:
            return AuthResult(success=True, auth_data=user)
        await server.challenge_auth(b'{"status":"401","schemes":"bearer"}')
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")


class _Session(ChunkedData):
    """aiosmtpd's SMTP session, reading DATA in chunks as the daemon's LMTP listener does.

    Beyond the sink's ``max_sessions`` open at once it greets with 421 and closes, as a relay
    with a limit per client does.
    """

    _counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sink = self.event_handler._sink
        if not sink._session_opened():
            transport.write(b"421 4.7.0 Too many connections from you (devtools sink)\r\n")  # type: ignore[attr-defined]
            transport.close()
            return
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:  # a refused one never started aiosmtpd's session
            self.event_handler._sink._session_closed()
            super().connection_lost(exc)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Session(self.handler, **self.SMTP_kwargs)


class SmtpSink(ManagedServer):
    """Records messages sent to `host:port`; `mode`/`fail_next()` make DATA fail on purpose.

    `refuse_mail` (a reply such as "530 5.7.0 Must issue a STARTTLS command first") answers
    every MAIL FROM while set; `refuse_rcpt` maps a lower-case address to the reply its RCPT
    gets. `smtputf8=False` starts a server that does not offer SMTPUTF8 (aiosmtpd does by default);
    `pipelining=False` one that does not offer PIPELINING (offered by default, as by Postfix, Exim
    and Exchange), so that a client sends command by command.

    The server runs on its own event loop in a thread (aiosmtpd's Controller), so it works
    from sync and async tests alike and keeps running while test code blocks.
    """

    def __init__(
        self, port: int = 0, *, host: str = LOCALHOST,
        on_message: Callable[[SinkMessage], None] | None = None, smtputf8: bool = True,
        pipelining: bool = True, bearer: Callable[[str, str], bool] | None = None,
    ) -> None:
        # With ``bearer`` (user, token -> accepted) the sink offers AUTH XOAUTH2 / OAUTHBEARER
        # without TLS and takes mail only after it: the token server's check (devtools.oauthserver).
        self.bearer = bearer
        self.auths: list[tuple[str, str, bool]] = []  # (mechanism, user, accepted) of each AUTH
        self.host = host
        self.port = port
        self.smtputf8 = smtputf8
        self.pipelining = pipelining
        self.mode = Mode.ACCEPT
        self.refuse_mail: str | None = None
        self.refuse_rcpt: dict[str, str] = {}
        self.max_sessions: int | None = None  # open at once; more are greeted with 421
        self.refused_sessions = 0
        self._sessions = 0
        self._commands: list[str] = []
        self._on_message = on_message
        self._messages: list[SinkMessage] = []
        self._failures: list[Mode] = []
        self._changed = threading.Condition()
        self._controller: Controller | None = None

    def _session_opened(self) -> bool:
        with self._changed:
            if self.max_sessions is not None and self._sessions >= self.max_sessions:
                self.refused_sessions += 1
                return False
            self._sessions += 1
            return True

    def _session_closed(self) -> None:
        with self._changed:
            self._sessions -= 1

    # -- life cycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen on host:port (a free port is chosen once if port is 0)."""
        if self._controller is not None:
            return
        if not self.port:
            self.port = free_port(self.host)
        if not wait_until(lambda: port_is_free(self.host, self.port), 5.0):
            raise RuntimeError(f"port {self.host}:{self.port} is still in use")
        auth = {"auth_require_tls": False} if self.bearer is not None else {}
        controller = _Controller((_BearerHandler if self.bearer is not None else _Handler)(self), hostname=self.host,
                                 port=self.port, enable_SMTPUTF8=self.smtputf8, **auth)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening and drop open connections. Safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()


    def down(self) -> None:
        """Simulate an outage: nothing listens on the port until up()."""
        self.stop()

    def up(self) -> None:
        """End an outage: listen again on the same port."""
        self.start()



    # -- what was received -----------------------------------------------------------------

    @property
    def messages(self) -> list[SinkMessage]:
        """A snapshot of the accepted messages, oldest first."""
        with self._changed:
            return list(self._messages)

    @property
    def commands(self) -> list[str]:
        """The verbs seen so far (MAIL, RCPT, RSET, DATA, QUIT), over all connections, in order."""
        with self._changed:
            return list(self._commands)

    def clear(self) -> None:
        """Forget received messages, commands and pending failures; answer normally again."""
        with self._changed:
            self._messages.clear()
            self._commands.clear()
            self._failures.clear()
            self.mode = Mode.ACCEPT
            self.refuse_mail = None
            self.refuse_rcpt = {}

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least `count` messages were accepted; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._messages) >= count, timeout)

    def wait_for_command(self, verb: str, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until `verb` (e.g. "QUIT") was seen at least `count` times; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._commands.count(verb) >= count, timeout)

    def _saw(self, verb: str) -> None:
        with self._changed:
            self._commands.append(verb)
            self._changed.notify_all()

    def fail_next(self, count: int = 1, mode: Mode = Mode.TEMPFAIL) -> None:
        """Answer the next `count` DATA commands with `mode`, then follow `self.mode` again."""
        with self._changed:
            self._failures.extend([mode] * count)

    def _receive(self, envelope: Envelope) -> str:
        mode = self._next_mode()
        if mode is not Mode.ACCEPT:
            return mode.reply
        message = _record(envelope)
        if self._on_message is not None:
            # Stored before we say 250, or not accepted at all.
            try:
                self._on_message(message)
            except Exception as error:  # a full disk must not look like a 5xx
                log.exception("could not store message")
                return f"451 4.3.0 Could not store message: {type(error).__name__}"
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()
        return mode.reply

    def _next_mode(self) -> Mode:
        with self._changed:
            return self._failures.pop(0) if self._failures else self.mode


def _record(envelope: Envelope) -> SinkMessage:
    raw = envelope.original_content or b""
    if isinstance(raw, str):  # only with decode_data=True, which we do not use
        raw = raw.encode()
    return SinkMessage(
        mail_from=envelope.mail_from or "",
        rcpt_tos=tuple(envelope.rcpt_tos),
        mail_options=tuple(envelope.mail_options),
        raw=raw,
        received_at=datetime.now(timezone.utc),
    )


# -- the standalone process -----------------------------------------------------------------


def _store_and_print(maildir: Path | None) -> Callable[[SinkMessage], None]:
    def on_message(message: SinkMessage) -> None:
        where = str(maildir_deliver(maildir, message.raw)) if maildir else "-"
        subject = str(message.message.get("Subject", "")).replace("\n", " ")
        recipients = ", ".join(message.rcpt_tos)
        print(f"{message.received_at:%H:%M:%S} {message.mail_from} -> {recipients} "
              f"{subject!r} {len(message.raw)} bytes {where}", flush=True)
    return on_message


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devtools.smtpsink", description=__doc__)
    parser.add_argument("--host", default=LOCALHOST)
    parser.add_argument("--port", type=int, default=2525, help="0 picks a free port")
    parser.add_argument("--maildir", type=Path, help="store accepted messages here (Maildir)")
    parser.add_argument("--mode", choices=[m.name.lower() for m in Mode], default="accept")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.maildir:
        args.maildir.mkdir(parents=True, exist_ok=True)
        make_maildir(args.maildir)
    sink = SmtpSink(args.port, host=args.host, on_message=_store_and_print(args.maildir))
    sink.mode = Mode[args.mode.upper()]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with sink:
        print(f"smtpsink listening on {sink.host}:{sink.port}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
