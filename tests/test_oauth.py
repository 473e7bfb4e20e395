"""OAuth2 logins end to end: Dovecot with an oauth2 passdb, the SMTP sink checking bearer tokens,
and a local token endpoint (devtools.oauthserver), all on 127.0.0.1; `ticketd` as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlsplit
from urllib.request import urlopen

import pytest

from devtools.dovecot import Dovecot
from devtools.oauthserver import OAuthServer
from devtools.smtpsink import SmtpSink
from tests.conftest import ServerFactory
from tests.support import scrape
from tests.support.daemon import PROJECT, cli, tickets, write_config
from tests.support.mail import simple
from tests.support.oauth import ADMIN, bearer_mailbox, bearer_smtp, seed, settings, stored


@pytest.fixture
def tokens() -> Iterator[OAuthServer]:
    with OAuthServer() as server:
        yield server


@pytest.fixture
def bearer_dovecot(dovecot_factory: ServerFactory[Dovecot], tokens: OAuthServer) -> Dovecot:
    return dovecot_factory(oauth2_introspection=f"{tokens.url}/introspect")


@pytest.fixture
def bearer_sink(tokens: OAuthServer) -> Iterator[SmtpSink]:
    """A sink that takes mail only after AUTH with a token the token server knows for that user."""
    with SmtpSink(bearer=lambda user, token: tokens.user_of(token) == user) as sink:
        yield sink


def _seen(dovecot: Dovecot, user: str) -> list[bool]:
    return ["\\Seen" in flags for _, flags, _ in dovecot.messages(user)]


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
async def test_a_bearer_mailbox_fetches_and_acknowledges_over_a_bearer_smtp_login(
        tmp_path: Path, tokens: OAuthServer, bearer_dovecot: Dovecot, bearer_sink: SmtpSink, mechanism: str) -> None:
    plain, box = bearer_dovecot.add_user(), bearer_dovecot.add_user()
    extra = bearer_smtp(plain.address, tokens, mechanism) + settings() + bearer_mailbox(
        "bearer", box.address, bearer_dovecot, tokens, mechanism)
    config = write_config(tmp_path, bearer_dovecot.port, bearer_sink.port, [("plain", plain.address)], extra=extra)
    await seed(config, "mailbox:bearer", tokens.grant(box.address))
    await seed(config, "smtp", tokens.grant(plain.address))
    bearer_dovecot.deliver(box.address, simple("Ann <ann@example.org>", "Printer on fire", "<p1@example.org>"))

    done = cli(config, "-v", "run", "--once")  # debug logging: still no token in the log

    assert done.returncode == 0, done.stderr.decode()
    assert [t["subject"] for t in await tickets(config)] == ["Printer on fire"]
    assert _seen(bearer_dovecot, box.address) == [True]  # acknowledged on the server after the commit
    assert bearer_sink.wait_for(1)
    assert [list(m.rcpt_tos) for m in bearer_sink.messages] == [["ann@example.org"]]
    assert (mechanism.upper(), plain.address, True) in bearer_sink.auths
    assert f"method={mechanism.upper()}" in bearer_dovecot.log_tail(200)
    for text in (done.stderr.decode(), (tmp_path / "ticketd.toml").read_text()):
        assert not any(t in text for t in [*tokens.access_tokens, *tokens.refresh_tokens])  # no token is ever logged


async def test_a_rotated_refresh_token_is_stored_at_once_and_serves_the_next_process(
        tmp_path: Path, tokens: OAuthServer, bearer_dovecot: Dovecot, smtp_sink: SmtpSink) -> None:
    plain, box = bearer_dovecot.add_user(), bearer_dovecot.add_user()
    config = write_config(tmp_path, bearer_dovecot.port, smtp_sink.port, [("plain", plain.address)],
                          extra=settings() + bearer_mailbox("bearer", box.address, bearer_dovecot, tokens))
    first = tokens.grant(box.address)
    await seed(config, "mailbox:bearer", first)
    tokens.expires_in = 60  # within refresh_margin (300 s): the next process must refresh before it logs in
    bearer_dovecot.deliver(box.address, simple("Ann <ann@example.org>", "One", "<r1@example.org>"))

    assert cli(config, "run", "--once").returncode == 0
    rotated = await stored(config, "mailbox:bearer")
    assert rotated is not None and rotated.refresh_token not in ("", first)
    assert tokens.refresh_tokens.get(rotated.refresh_token) == box.address and first not in tokens.refresh_tokens
    assert tokens._refresh(first)[1]["error"] == "invalid_grant"  # the old one is dead at the server

    bearer_dovecot.deliver(box.address, simple("Bo <bo@example.org>", "Two", "<r2@example.org>"))
    again = cli(config, "run", "--once")  # a restart: a new process, only the database remembers

    assert again.returncode == 0, again.stderr.decode()
    assert sorted(t["subject"] for t in await tickets(config)) == ["One", "Two"]
    used = [r["refresh_token"] for r in tokens.grants("refresh_token")]
    assert used == [first, rotated.refresh_token]
    latest = await stored(config, "mailbox:bearer")
    assert latest is not None and latest.refresh_token not in (first, rotated.refresh_token)


async def test_revoked_grants_are_one_error_one_metric_one_admin_mail_each_and_the_other_mailbox_goes_on(
        tmp_path: Path, tokens: OAuthServer, bearer_dovecot: Dovecot, fresh_sink: SmtpSink) -> None:
    plain, first, second = bearer_dovecot.add_user(), bearer_dovecot.add_user(), bearer_dovecot.add_user()
    port = scrape.free_port()
    boxes = bearer_mailbox("one", first.address, bearer_dovecot, tokens) + bearer_mailbox(
        "two", second.address, bearer_dovecot, tokens, "oauthbearer")
    config = scrape.with_metrics(write_config(tmp_path, bearer_dovecot.port, fresh_sink.port,
                                              [("plain", plain.address)], extra=settings() + boxes), port)
    for name, user in (("one", first), ("two", second)):
        await seed(config, f"mailbox:{name}", tokens.grant(user.address))
        tokens.revoke(user.address)  # the user withdrew the app's access
        bearer_dovecot.deliver(user.address, simple("Ann <ann@example.org>", "Stuck", f"<s-{name}@example.org>"))
    log = tmp_path / "daemon.log"

    def retried() -> bool:
        samples = scrape.scrape(port)
        return all((scrape.value(samples, "ticketd_oauth_token_errors_total", peer=f"mailbox:{name}",
                                 reason="revoked") or 0) >= 3 for name in ("one", "two"))

    with scrape.daemon(config, log) as process:
        assert scrape.until(retried, timeout=40), log.read_text()  # each retried with its backoff: 1, 2, 4 s
        bearer_dovecot.deliver(plain.address, simple("Bo <bo@example.org>", "Works", "<w1@example.org>"))
        assert scrape.until(lambda: fresh_sink.wait_for(3, timeout=0.2), timeout=30), log.read_text()
        assert process.poll() is None
        await seed(config, "mailbox:one", tokens.grant(first.address))  # `ticketd oauth login one`, meanwhile
        assert scrape.until(lambda: "mailbox one: OAuth2 token refreshed again" in log.read_text(), timeout=60), \
            log.read_text()  # at its next retry, without a restart
        assert scrape.until(lambda: fresh_sink.wait_for(4, timeout=0.2), timeout=30), log.read_text()  # its ack

    text = log.read_text()
    assert "Traceback" not in text
    for name in ("one", "two"):
        lines = [line for line in text.splitlines() if f"mailbox {name}" in line and "revoked" in line]
        assert len(lines) == 1, text  # one clear line, not one per retry
        assert "ERROR" in lines[0] and "invalid_grant" in lines[0] and f"ticketd oauth login {name}" in lines[0]
        admin = [m for m in fresh_sink.messages if list(m.rcpt_tos) == [ADMIN] and f"mailbox {name}" in
                 m.message["Subject"]]
        assert len(admin) == 1 and f"ticketd oauth login {name}" in admin[0].raw.decode()
    assert sorted(t["subject"] for t in await tickets(config)) == ["Stuck", "Works"]  # two's waits on the server
    grant = await stored(config, "mailbox:two")
    assert grant is not None and "invalid_grant" in grant.last_error

    again = cli(config, "run", "--once")  # another process: its own one line, but no new mail
    assert again.returncode == 1
    said = [line for line in again.stderr.decode().splitlines() if "mailbox " in line and "revoked" in line]
    assert len(said) == 1 and "mailbox two" in said[0], again.stderr.decode()
    assert len([m for m in fresh_sink.messages if list(m.rcpt_tos) == [ADMIN]]) == 2

    status = cli(config, "oauth", "status", "--json")
    assert status.returncode == 0
    assert {row["peer"]: bool(row["last_error"]) for row in json.loads(status.stdout)} == {
        "mailbox:one": False, "mailbox:two": True}


async def test_oauth_login_runs_the_device_flow_and_the_daemon_then_logs_in(
        tmp_path: Path, tokens: OAuthServer, bearer_dovecot: Dovecot, smtp_sink: SmtpSink) -> None:
    plain, box = bearer_dovecot.add_user(), bearer_dovecot.add_user()
    config = write_config(tmp_path, bearer_dovecot.port, smtp_sink.port, [("plain", plain.address)],
                          extra=settings() + bearer_mailbox("bearer", box.address, bearer_dovecot, tokens))
    tokens.device_user, tokens.approve_after = box.address, 2
    login = subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "oauth", "login", "bearer"],
                             cwd=PROJECT, env=dict(os.environ, PYTHONPATH=str(PROJECT)), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert login.stdout is not None
        shown = login.stdout.readline() + login.stdout.readline()  # what the admin reads, before approving
        assert f"{tokens.url}/activate" in shown and "enter the code:" in shown
        out, err = login.communicate(timeout=30)
    finally:
        if login.poll() is None:
            login.send_signal(signal.SIGKILL)
    assert login.returncode == 0, err
    assert "Authorized" in out
    assert len(tokens.grants("urn:ietf:params:oauth:grant-type:device_code")) == 3  # pending twice, then approved
    grant = await stored(config, "mailbox:bearer")
    assert grant is not None and tokens.refresh_tokens.get(grant.refresh_token) == box.address

    status = cli(config, "oauth", "status")
    assert status.returncode == 0 and "mailbox bearer" in status.stdout.decode()
    bearer_dovecot.deliver(box.address, simple("Ann <ann@example.org>", "After login", "<l1@example.org>"))
    done = cli(config, "run", "--once")
    assert done.returncode == 0, done.stderr.decode()
    assert [t["subject"] for t in await tickets(config)] == ["After login"]


async def test_oauth_login_browser_takes_the_loopback_redirect_with_pkce_and_refuses_a_forged_one(
        tmp_path: Path, tokens: OAuthServer, bearer_dovecot: Dovecot, smtp_sink: SmtpSink) -> None:
    plain = bearer_dovecot.add_user()
    config = write_config(tmp_path, bearer_dovecot.port, smtp_sink.port, [("plain", plain.address)],
                          extra=bearer_smtp(plain.address, tokens) + settings())
    tokens.device_user = plain.address
    login = subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "oauth", "login", "--smtp",
                              "--browser"], cwd=PROJECT, env=dict(os.environ, PYTHONPATH=str(PROJECT)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert login.stdout is not None
        lines = [login.stdout.readline() for _ in range(3)]
        url = next(line.strip() for line in lines if line.startswith("http"))
        query = parse_qs(urlsplit(url).query)
        assert url.startswith(f"{tokens.url}/authorize?") and query["code_challenge_method"] == ["S256"]
        forged = f"{query['redirect_uri'][0]}?code=stolen&state=guessed"
        with pytest.raises(HTTPError) as refused:
            urlopen(forged, timeout=10)
        assert refused.value.code == 400
        with urlopen(url, timeout=10) as page:  # the browser: consent, then the redirect to ticketd's loopback
            assert b"authorized" in page.read()
        out, err = login.communicate(timeout=30)
    finally:
        if login.poll() is None:
            login.send_signal(signal.SIGKILL)
    assert login.returncode == 0, err
    grant = await stored(config, "smtp")
    assert grant is not None and tokens.refresh_tokens.get(grant.refresh_token) == plain.address
    assert [r.get("grant_type") for r in tokens.requests] == ["authorization_code"]


def test_a_mailbox_without_a_token_says_how_to_get_one(
        tmp_path: Path, tokens: OAuthServer, bearer_dovecot: Dovecot, smtp_sink: SmtpSink) -> None:
    plain, box = bearer_dovecot.add_user(), bearer_dovecot.add_user()
    config = write_config(tmp_path, bearer_dovecot.port, smtp_sink.port, [("plain", plain.address)],
                          extra=settings() + bearer_mailbox("bearer", box.address, bearer_dovecot, tokens))
    started = time.monotonic()
    done = cli(config, "run", "--once")
    assert done.returncode == 1
    said = [line for line in done.stderr.decode().splitlines() if "mailbox bearer" in line and "lease" not in line]
    assert len(said) == 1 and "run `ticketd oauth login bearer`" in said[0], done.stderr.decode()
    assert time.monotonic() - started < 30


def test_oauth_login_names_what_it_needs(tmp_path: Path, tokens: OAuthServer, smtp_sink: SmtpSink) -> None:
    config = write_config(tmp_path, 10143, smtp_sink.port, [("plain", "plain@example.test")], extra=settings())
    for args, says in ((["oauth", "login"], "name a mailbox, or give --smtp"),
                       (["oauth", "login", "nope"], "no mailbox 'nope'"),
                       (["oauth", "login", "plain"], 'mailbox plain does not log in with OAuth2'),
                       (["oauth", "login", "--smtp"], "[smtp] does not log in with OAuth2")):
        done = cli(config, *args)
        assert done.returncode == 64 and says in done.stderr.decode(), (args, done.stderr.decode())
    assert cli(config, "oauth", "status").stdout.decode().strip() == "no login uses OAuth2"


async def test_a_revoked_smtp_grant_keeps_the_mail_in_the_outbox_and_says_so_once(
        tmp_path: Path, tokens: OAuthServer, bearer_dovecot: Dovecot, bearer_sink: SmtpSink) -> None:
    plain = bearer_dovecot.add_user()
    config = write_config(tmp_path, bearer_dovecot.port, bearer_sink.port, [("plain", plain.address)],
                          extra=bearer_smtp(plain.address, tokens) + settings())
    await seed(config, "smtp", tokens.grant(plain.address))
    tokens.revoke(plain.address)
    bearer_dovecot.deliver(plain.address, simple("Ann <ann@example.org>", "Hello", "<h1@example.org>"))

    done = cli(config, "run", "--once")

    said = done.stderr.decode()
    assert done.returncode == 1 and "Traceback" not in said
    assert [t["subject"] for t in await tickets(config)] == ["Hello"]  # the mailbox went on
    assert len([line for line in said.splitlines() if "ERROR ticketd.oauth: smtp: OAuth2 consent" in line]) == 1, said
    assert "ticketd oauth login --smtp" in said and "2 still waiting for delivery" in said  # the ack, the admin's mail
    assert bearer_sink.messages == []
