"""`ticketd oauth login --browser`: the authorization-code flow with a loopback redirect (RFC 8252 7.3) and PKCE.

ticketd listens on 127.0.0.1 for the one redirect that brings the code; the browser must reach
that address (run it on the same machine, or forward the port: ``ssh -L PORT:127.0.0.1:PORT``).
The ``state`` value ties the redirect to this login, and the PKCE verifier (RFC 7636, S256)
makes a code caught by anyone else useless to them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from ticketd.daemon import oauth_http
from ticketd.daemon.config_oauth import OAuthClient
from ticketd.daemon.oauth_http import GrantRefused, TokenAnswer

_PAGE = ("HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {length}\r\n"
         "Connection: close\r\n\r\n{body}")


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> "Pkce":
        verifier = secrets.token_urlsafe(48)  # 64 characters of [A-Za-z0-9_-]: RFC 7636 4.1
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


def authorization_url(client: OAuthClient, redirect_uri: str, state: str, pkce: Pkce) -> str:
    if not client.authorize_url:
        raise GrantRefused("no_authorize_url", "the oauth table names no authorize_url for --browser")
    query = {"response_type": "code", "client_id": client.client_id, "redirect_uri": redirect_uri, "state": state,
             "code_challenge": pkce.challenge, "code_challenge_method": "S256",
             # Google hands out a refresh token only with these two; other providers ignore them.
             "access_type": "offline", "prompt": "consent"}
    if client.scope:
        query["scope"] = client.scope
    glue = "&" if "?" in client.authorize_url else "?"
    return client.authorize_url + glue + urlencode(query)


async def browser_login(client: OAuthClient, show: Callable[[str], None], port: int = 0,
                        timeout: float = 600.0) -> TokenAnswer:
    """Show the URL to open, wait for the redirect, exchange its code for tokens."""
    got: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
    state, pkce = secrets.token_urlsafe(24), Pkce.new()
    server = await asyncio.start_server(lambda r, w: _redirect(r, w, state, got), "127.0.0.1", port)
    try:
        redirect_uri = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        show(authorization_url(client, redirect_uri, state, pkce))
        try:
            answer = await asyncio.wait_for(got, timeout)
        except asyncio.TimeoutError:
            raise GrantRefused("expired_token", "no redirect came back in time: run the command again") from None
    finally:
        server.close()
        await server.wait_closed()
    if "error" in answer:
        raise GrantRefused(answer["error"], answer.get("error_description", ""))
    return await oauth_http.exchange_code(client, answer["code"], redirect_uri, pkce.verifier)


async def _redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: str,
                    got: asyncio.Future[dict[str, str]]) -> None:
    """One HTTP request: the redirect with ``code`` (or ``error``) and our ``state``; anything else is a 400."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("ascii", "replace")
        query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
        if query.get("state") != state or not ({"code", "error"} & set(query)) or got.done():
            await _answer(writer, "400 Bad Request", "ticketd: this is not the redirect of the login in progress.\n")
            return
        await _answer(writer, "200 OK", "ticketd: authorized. You can close this window.\n" if "code" in query else
                      "ticketd: the authorization was refused; the command says why.\n")
        got.set_result(query)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError, OSError):
        pass
    finally:
        writer.close()


async def _answer(writer: asyncio.StreamWriter, status: str, body: str) -> None:
    writer.write(_PAGE.format(status=status, length=len(body.encode()), body=body).encode())
    await writer.drain()
