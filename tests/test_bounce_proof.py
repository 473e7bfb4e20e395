"""A bounce suppresses automatic mail only when it was sent to the signed return address it cites."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from ticketd.daemon import verp
from ticketd.daemon.config import ConfigError, load_config
from ticketd.storage.db import database
from ticketd.storage.models import Event, Suppression
from tests.support.daemon import run_once, tickets, write_config
from tests.support.mail import simple
from tests.test_acceptance_filters import dsn

SECRET = "test-bounce-secret-0123456789abcdef"


def signed_config(tmp_path: Path, dovecot: Dovecot, user: MailUser, sink: SmtpSink) -> Path:
    secret = tmp_path / "bounce.secret"
    secret.write_text(SECRET + "\n")
    return write_config(tmp_path, dovecot.port, sink.port, [("support", user.address)],
                        extra=f'bounce_secret_file = "{secret}"')


def bounce_to(envelope_recipient: str, failed: str, original_id: str, name: str) -> bytes:
    """A DSN as an MTA addresses it: to the MAIL FROM of the message that bounced."""
    return dsn(envelope_recipient, failed, original_id).replace(b"<dsn-1@", f"<{name}@".encode())


async def bounce_events(config: Path) -> list[dict[str, object]]:
    async with database(load_config(config).database_url):
        return [e.detail for e in await Event.filter(what="bounce").order_by("id")]


async def suppressed(config: Path) -> list[str]:
    async with database(load_config(config).database_url):
        return sorted(await Suppression.all().values_list("address", flat=True))


async def test_the_acknowledgement_goes_out_from_a_signed_return_address_and_its_dsn_suppresses(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = signed_config(tmp_path, dovecot, fresh_user, fresh_sink)
    dovecot.deliver(fresh_user.address, simple("gone@example.org", "Help", "<h1@example.org>"))
    await run_once(config)
    [ack] = fresh_sink.messages
    ack_id = str(ack.message["Message-ID"])
    assert ack.mail_from != fresh_user.address and ack.mail_from.startswith(fresh_user.address.partition("@")[0] + "+")
    assert verp.verify(ack.mail_from, fresh_user.address, SECRET.encode()) == verp.message_key(ack_id)

    dovecot.deliver(fresh_user.address, bounce_to(ack.mail_from, "gone@example.org", ack_id, "genuine"))
    assert await run_once(config) == 0
    assert await suppressed(config) == ["gone@example.org"]
    [event] = await bounce_events(config)
    assert event["suppressed"] == ["gone@example.org"]
    assert "signed return address of the bounced message" in str(event["suppression"])


async def test_forged_dsns_citing_an_acknowledgement_are_attached_and_tagged_but_suppress_nothing(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = signed_config(tmp_path, dovecot, fresh_user, fresh_sink)
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Help", "<h1@example.org>"))
    dovecot.deliver(fresh_user.address, simple("mallory@example.net", "Hi", "<m1@example.net>"))
    await run_once(config)
    ann_ack, mallory_ack = sorted(fresh_sink.messages, key=lambda m: m.rcpt_tos[0])
    ann_id = str(ann_ack.message["Message-ID"])
    local, _, domain = ann_ack.mail_from.rpartition("@")
    bad_token = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"
    # To the plain address; to ann's return address with one character changed; to the genuine
    # return address of mallory's own acknowledgement: none of them proves the bounce of ann's.
    for name, to in (("plain", fresh_user.address), ("tampered", bad_token), ("reused", mallory_ack.mail_from)):
        dovecot.deliver(fresh_user.address, bounce_to(to, "ann@example.org", ann_id, name))
    assert await run_once(config) == 0

    ann = next(t for t in await tickets(config) if t["requester"] == "ann@example.org")
    assert ann["article_count"] == 4 and "bounced" in ann["tags"]
    assert await suppressed(config) == []
    whys = [str(e["suppression"]) for e in await bounce_events(config)]
    assert whys == ["suppressed nothing: not addressed to a signed return address of ours"] * 2 + [
        "suppressed nothing: its signed return address belongs to another of our messages"]
    assert len(fresh_sink.messages) == 2  # no bounce was answered


async def test_without_a_bounce_secret_no_bounce_ever_suppresses(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)])
    dovecot.deliver(fresh_user.address, simple("gone@example.org", "Help", "<h1@example.org>"))
    await run_once(config)
    [ack] = fresh_sink.messages
    assert ack.mail_from == fresh_user.address  # unsigned: the configured envelope sender as it is
    dovecot.deliver(fresh_user.address, bounce_to(ack.mail_from, "gone@example.org", str(ack.message["Message-ID"]),
                                                  "unsigned"))
    assert await run_once(config) == 0

    [t] = await tickets(config)
    assert t["article_count"] == 2 and "bounced" in t["tags"]
    assert await suppressed(config) == []
    [event] = await bounce_events(config)
    assert "no bounce secret configured" in str(event["suppression"])


def test_the_bounce_secret_is_read_from_its_file_and_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "bounce.secret"
    secret.write_text(SECRET + "\n")
    config = load_config(write_config(tmp_path, 10143, 2525, [("support", "support@example.test")],
                                      extra=f'bounce_secret_file = "{secret}"'))
    assert config.smtp.bounce_key == SECRET.encode()
    assert SECRET not in repr(config)


@pytest.mark.parametrize("extra, expected", [
    ('bounce_secret_env = "SHORT"', "smtp.bounce_secret_env: expected a secret of at least 16 characters"),
    (f'bounce_secret = "{SECRET}"\nenvelope_from = "{"b" * 32}@example.test"',
     "smtp.envelope_from: expected a local part of at most 31 characters"),
])
def test_a_weak_secret_or_an_envelope_sender_too_long_for_a_token_stops_start_up(
        tmp_path: Path, extra: str, expected: str) -> None:
    path = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")], extra=extra)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(path, environ={"SHORT": "too short"})
