"""An LMTP client for tests and measurements, with RFC 2033's reply per recipient after DATA.

`smtplib.LMTP` speaks LHLO and connects to a Unix socket path, but its `data()` reads one
reply; an LMTP server sends one per accepted recipient, which `LmtpClient.deliver` reads.

Also a process: `python -m devtools.lmtpclient /run/ticketd/lmtp.sock --count 1000` sends that
many small messages over one connection and prints the rate at which they were answered 250.
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import time
from collections.abc import Sequence
from types import TracebackType

Reply = tuple[int, str]


class LmtpClient:
    """One LMTP connection, to a Unix socket path or to (host, port)."""

    def __init__(self, target: str | tuple[str, int], timeout: float = 60.0) -> None:
        if isinstance(target, str):
            self.smtp = smtplib.LMTP(target, timeout=timeout)
        else:
            self.smtp = smtplib.LMTP(target[0], target[1], timeout=timeout)
        code, reply = self.smtp.ehlo("client.ticketd.test")
        if code != 250:
            raise smtplib.SMTPHeloError(code, reply)

    def deliver(self, mail_from: str, recipients: Sequence[str], raw: bytes,
                mail_options: Sequence[str] = ()) -> list[Reply]:
        """The final reply for each recipient: RCPT's when refused there, else DATA's."""
        code, text = self.smtp.mail(mail_from, list(mail_options))
        if code != 250:
            self.smtp.rset()
            return [(code, text.decode())] * len(recipients)
        replies: dict[int, Reply] = {}
        accepted = []
        for i, rcpt in enumerate(recipients):
            code, text = self.smtp.rcpt(rcpt)
            if code in (250, 251):
                accepted.append(i)
            else:
                replies[i] = (code, text.decode())
        if not accepted:
            self.smtp.rset()
        else:
            for n, i in enumerate(accepted):
                code, text = self._data(raw) if n == 0 else self.smtp.getreply()
                replies[i] = (code, text.decode())
        return [replies[i] for i in range(len(recipients))]

    def _data(self, raw: bytes) -> tuple[int, bytes]:
        try:
            return self.smtp.data(raw)
        except smtplib.SMTPDataError as exc:  # refused at DATA itself (no 354)
            text = exc.smtp_error
            return exc.smtp_code, text if isinstance(text, bytes) else text.encode()

    def close(self) -> None:
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()

    def __enter__(self) -> LmtpClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def message(n: int, to: str = "support@example.test", tag: str = "burst") -> bytes:
    """A small customer mail with its own Message-ID and subject."""
    return (f"From: Customer {n} <customer{n}@customer.test>\r\nTo: {to}\r\n"
            f"Subject: {tag} {n}\r\nMessage-ID: <{tag}-{n}@customer.test>\r\n"
            f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nPrinter {n} jams again.\r\n").encode()


def burst(target: str | tuple[str, int], messages: Sequence[bytes], to: str = "support@example.test",
          mail_from: str = "sender@customer.test") -> list[bool]:
    """Send each message over one connection; which were answered 250, until the server went away."""
    accepted: list[bool] = []
    try:
        with LmtpClient(target) as client:
            for raw in messages:
                [(code, _)] = client.deliver(mail_from, [to], raw)
                accepted.append(code == 250)
    except (OSError, smtplib.SMTPException):  # the daemon died mid-burst: the rest was never answered
        pass
    return accepted + [False] * (len(messages) - len(accepted))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a Unix socket path, or HOST:PORT")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--to", default="support@example.test")
    parser.add_argument("--tag", default=f"burst{int(time.time())}", help="subject and Message-ID prefix")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    target: str | tuple[str, int] = args.target if args.target.startswith("/") else (host.strip("[]"), int(port))
    messages = [message(n, args.to, args.tag) for n in range(args.count)]
    started = time.perf_counter()
    accepted = burst(target, messages, args.to)
    elapsed = time.perf_counter() - started
    print(f"{sum(accepted)} of {len(messages)} answered 250 in {elapsed:.2f} s: "
          f"{sum(accepted) / elapsed:.0f} messages/s")
    return 0 if all(accepted) else 1


if __name__ == "__main__":
    sys.exit(main())
