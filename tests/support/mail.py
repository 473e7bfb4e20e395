"""Build raw messages from dedented text, the way a mail client would send them."""

from __future__ import annotations

import textwrap

from ticketd.daemon.parsers import ParsedMessage, parse_message


def raw_mail(text: str) -> bytes:
    """Dedent, strip the first newline, and use CRLF line ends."""
    body = textwrap.dedent(text).lstrip("\n")
    return body.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def parsed(text: str) -> ParsedMessage:
    return parse_message(raw_mail(text))


def simple(sender: str, subject: str, message_id: str, body: str = "Hello.", to: str = "support@example.test",
           extra: str = "") -> bytes:
    """A plain customer mail; ``extra`` adds header lines (without trailing newline)."""
    headers = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", f"Message-ID: {message_id}",
               "Date: Tue, 24 Nov 2026 10:00:00 +0000", "MIME-Version: 1.0",
               "Content-Type: text/plain; charset=utf-8"]
    if extra:
        headers += extra.splitlines()
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode("utf-8")
