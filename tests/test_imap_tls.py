"""TLS toward IMAP: certificates are checked by default; STARTTLS upgrades before LOGIN."""

from __future__ import annotations

from pathlib import Path

from devtools.smtpsink import SmtpSink
from tests.support.daemon import run_once, tickets, write_config
from tests.support.mail import simple


def tls_config(tmp_path: Path, server, user, sink: SmtpSink, security: str, port: int,  # type: ignore[no-untyped-def]
               ca_file: Path | None) -> Path:
    config = write_config(tmp_path, port, sink.port, [("support", user.address)])
    text = config.read_text().replace('port = %d\nsecurity = "none"' % port, f'port = {port}\nsecurity = "{security}"')
    if ca_file is not None:
        text = text.replace("timeout = 10\n", f'timeout = 10\nca_file = "{ca_file}"\n', 2)
        text = text.replace(f'ca_file = "{ca_file}"\n', "", 1)  # the SMTP section keeps plain text
    config.write_text(text)
    return config


async def test_implicit_tls_with_the_servers_ca_fetches_mail(tmp_path: Path, dovecot_factory,  # type: ignore[no-untyped-def]
                                                             fresh_sink: SmtpSink) -> None:
    server = dovecot_factory(tls=True)
    user = server.add_user()
    server.deliver(user.address, simple("ann@example.org", "over TLS", "<tls1@example.org>"))
    config = tls_config(tmp_path, server, user, fresh_sink, "tls", server.tls_port, server.cert_path)
    assert 'security = "tls"' in config.read_text()
    assert await run_once(config) == 0
    assert len(await tickets(config)) == 1


async def test_an_untrusted_certificate_is_refused_by_default(tmp_path: Path, dovecot_factory,  # type: ignore[no-untyped-def]
                                                              fresh_sink: SmtpSink) -> None:
    server = dovecot_factory(tls=True)
    user = server.add_user()
    server.deliver(user.address, simple("ann@example.org", "not trusted", "<tls2@example.org>"))
    config = tls_config(tmp_path, server, user, fresh_sink, "tls", server.tls_port, None)
    assert await run_once(config) == 1
    assert await tickets(config) == []
    [(_, flags, _)] = server.messages(user.address)
    assert "\\Seen" not in flags


async def test_starttls_upgrades_the_plain_port(tmp_path: Path, dovecot_factory,  # type: ignore[no-untyped-def]
                                                fresh_sink: SmtpSink) -> None:
    server = dovecot_factory(tls=True)
    user = server.add_user()
    server.deliver(user.address, simple("ann@example.org", "starttls", "<tls3@example.org>"))
    config = tls_config(tmp_path, server, user, fresh_sink, "starttls", server.port, server.cert_path)
    assert await run_once(config) == 0
    assert len(await tickets(config)) == 1
