"""`ticketd oauth login MAILBOX` (the device flow, RFC 8628, once per grant) and `ticketd oauth status`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from ticketd.daemon.terminal import safe_line

if TYPE_CHECKING:  # at run time only the parser's part is imported with every command, `ingest` too
    from ticketd.daemon.config import Config, Peer

EX_USAGE, EX_TEMPFAIL, EX_CONFIG = 64, 75, 78


def add_commands(sub: Any) -> None:
    oauth = sub.add_parser("oauth", help="OAuth2 logins (XOAUTH2 / OAUTHBEARER): authorize, show tokens") \
        .add_subparsers(dest="action", required=True)
    login = oauth.add_parser("login", help="authorize a mailbox's IMAP login (or --smtp) once, store its token")
    login.add_argument("mailbox", nargs="?", help="the [[mailboxes]] name")
    login.add_argument("--smtp", action="store_true", help="the [smtp] login instead of a mailbox's")
    login.add_argument("--browser", action="store_true",
                       help="the authorization-code flow: open a URL in a browser that reaches this machine's "
                            "127.0.0.1 (default: the device flow, a code entered on any device)")
    login.add_argument("--port", type=int, default=0, help="with --browser: the loopback port of the redirect "
                                                           "(default: any free one; fix it to forward it over ssh)")
    login.set_defaults(handler=login_command)
    status = oauth.add_parser("status", help="each OAuth2 login's token: expiry, last error")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=status_command)


def _peers(config: Config) -> list[tuple[str, Peer]]:
    """(what to call it, peer) of every OAuth2 login in the config."""
    found = [(f"mailbox {box.name}", box.imap) for box in config.mailboxes if box.imap.auth == "oauth2"]
    return found + ([("smtp", config.smtp)] if config.smtp.auth == "oauth2" else [])


def _chosen(config: Config, args: argparse.Namespace) -> Peer | str:
    """The peer to log in, or why there is none."""
    if args.smtp == bool(args.mailbox):
        return "name a mailbox, or give --smtp (one of them)"
    if args.smtp:
        peer: Peer = config.smtp
        what = "[smtp]"
    else:
        box = next((b for b in config.mailboxes if b.name == args.mailbox), None)
        if box is None:
            return f"no mailbox {args.mailbox!r} in {config.path}"
        peer, what = box.imap, f"mailbox {box.name}"
    if peer.auth != "oauth2":
        return f'{what} does not log in with OAuth2 (set auth = "oauth2" and its oauth table)'
    return peer


async def login_command(config: Config, args: argparse.Namespace) -> int:
    from ticketd.daemon import oauth_http, oauth_store
    from ticketd.storage.db import database

    peer = _chosen(config, args)
    if isinstance(peer, str):
        print(f"ticketd oauth login: {safe_line(peer)}", file=sys.stderr)
        return EX_USAGE
    client = peer.oauth
    try:
        answer = await (_browser(client, peer, args.port) if args.browser else _device(client, peer))
    except oauth_http.GrantRefused as exc:
        print(f"ticketd oauth login: the endpoint refused: {safe_line(str(exc))}", file=sys.stderr)
        return EX_CONFIG if exc.code != "expired_token" else EX_TEMPFAIL
    except oauth_http.TokenEndpointError as exc:
        print(f"ticketd oauth login: {safe_line(str(exc))}", file=sys.stderr)
        return EX_TEMPFAIL
    if answer.refresh_token is None:
        print("ticketd oauth login: the endpoint gave no refresh token (does the scope ask for offline access?)",
              file=sys.stderr)
        return EX_CONFIG
    async with database(config.database_url, config.busy_timeout):
        await oauth_store.store(client.peer, answer, None)
    print(safe_line(f"Authorized: the token of {client.peer} is stored; the daemon uses it at its next login."))
    return 0


async def _device(client: Any, peer: Peer) -> Any:
    from ticketd.daemon import oauth_http

    start = await oauth_http.device_start(client)
    print(safe_line(f"To let ticketd log in as {peer.username}, open {start.verification_uri}"))
    print(safe_line(f"and enter the code: {start.user_code}"))
    if start.verification_uri_complete:
        print(safe_line(f"(or open {start.verification_uri_complete})"))
    print("Waiting for the authorization...", flush=True)
    return await _poll(client, start)


async def _browser(client: Any, peer: Peer, port: int) -> Any:
    from ticketd.daemon.oauth_browser import browser_login

    def show(url: str) -> None:
        print(safe_line(f"To let ticketd log in as {peer.username}, open in a browser on this machine:"))
        print(safe_line(url))
        print("Waiting for the redirect to 127.0.0.1...", flush=True)

    return await browser_login(client, show, port)


async def _poll(client: Any, start: Any) -> Any:
    """RFC 8628 3.5: poll every ``interval`` s, 5 s more after each slow_down, until the code expires."""
    from ticketd.daemon import oauth_http

    interval, deadline = max(start.interval, 1.0), time.monotonic() + start.expires_in
    while time.monotonic() < deadline:
        await asyncio.sleep(interval)
        answer = await oauth_http.device_poll(client, start.device_code)
        if answer == "slow_down":
            interval += 5
        elif not isinstance(answer, str):
            return answer
    raise oauth_http.GrantRefused("expired_token", "the code was not entered in time: run the command again")


async def status_command(config: Config, args: argparse.Namespace) -> int:
    from ticketd.daemon import oauth_store
    from ticketd.storage.db import database

    async with database(config.database_url, config.busy_timeout):
        stored = {g.peer: g for g in await oauth_store.grants()}
    rows = []
    for what, peer in _peers(config):
        grant = stored.get(peer.oauth.peer)
        rows.append({"peer": peer.oauth.peer, "login": what, "username": peer.username, "token": grant is not None,
                     "access_expires_at": _iso(grant.expires_at) if grant else None,
                     "refresh_expires_at": _iso(grant.refresh_expires_at) if grant else None,
                     "last_error": grant.last_error if grant else ""})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no login uses OAuth2")
    for row in rows:
        state = ("no token: run `ticketd oauth login`" if not row["token"] else
                 f"error: {row['last_error']}" if row["last_error"] else f"access token until {row['access_expires_at']}")
        ends = f", refresh token until {row['refresh_expires_at']}" if row["refresh_expires_at"] else ""
        print(safe_line(f"{row['login']} ({row['username']}): {state}{ends}"))
    return 0


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
