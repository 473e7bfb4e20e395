"""The benchmark's lean SMTP sink speaks enough SMTP for aiosmtplib and keeps messages exactly."""

from __future__ import annotations

import asyncio

import aiosmtplib

from bench.leansink import LeanSink


async def test_pipelined_messages_arrive_whole_dot_stuffing_undone() -> None:
    sink = LeanSink()
    sink.start()
    try:
        smtp = aiosmtplib.SMTP(hostname=sink.host, port=sink.port, start_tls=False, use_tls=False)
        await smtp.connect()
        await smtp.ehlo()
        assert smtp.supports_extension("pipelining") and smtp.supports_extension("smtputf8")
        big = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" + (b"line\r\n" * 200_000)
        dotted = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\r\n.\r\nend\r\n"
        await smtp.sendmail("a@example.org", ["b@example.org", "c@example.org"], big)
        await smtp.sendmail("d@example.org", ["e@example.org"], dotted)
        await smtp.quit()
        await asyncio.sleep(0.05)
        first, second = sink.messages
        assert (first.mail_from, first.rcpt_tos, first.raw) == ("a@example.org", ("b@example.org", "c@example.org"), big)
        assert (second.rcpt_tos, second.raw) == (("e@example.org",), dotted)
        assert str(second.message["Subject"]) == "dots"
    finally:
        sink.stop()
