"""Talking to an OAuth2 token endpoint: the refresh grant (RFC 6749 6) and the device flow (RFC 8628).

Every request goes over verified TLS (ssl.create_default_context()); only a loopback endpoint
may be plain http (daemon.config_oauth checks that at load). Tokens never reach a log line or
an exception's text: errors carry the endpoint's ``error`` code and a shortened description.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from ticketd.daemon.config_oauth import OAuthClient
from ticketd.daemon.outgoing import one_line

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# Answers that mean the grant itself is gone: consent withdrawn, password changed, token
# expired or (with rotation) used twice. Only a new `ticketd oauth login` mends it.
REVOKED = ("invalid_grant",)
# The client's registration is wrong (id, secret, scope): a human must mend the config.
REFUSED = ("invalid_client", "unauthorized_client", "invalid_scope", "unsupported_grant_type", "access_denied")


class TokenEndpointError(Exception):
    """The endpoint could not be asked or gave no usable answer: try again later."""


class GrantRefused(Exception):
    """The endpoint said no for good (``code``: its ``error``); ``revoked`` for invalid_grant."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}" + (f": {description}" if description else ""))
        self.code = code
        self.revoked = code in REVOKED


@dataclass(frozen=True)
class TokenAnswer:
    access_token: str
    expires_in: float
    refresh_token: str | None = None  # a new one when the endpoint rotates them
    refresh_token_expires_in: float | None = None  # Microsoft tells it; Google does not


@dataclass(frozen=True)
class DeviceStart:
    device_code: str
    user_code: str
    verification_uri: str
    interval: float
    expires_in: float
    verification_uri_complete: str = ""


def tls_context(client: OAuthClient) -> ssl.SSLContext:
    """The system's CAs (and ``ca_file``'s), hostnames checked: there is no switch to turn it off."""
    context = ssl.create_default_context()
    if client.ca_file:
        context.load_verify_locations(cafile=client.ca_file)
    return context


async def refresh(client: OAuthClient, refresh_token: str) -> TokenAnswer:
    """A new access token for ``refresh_token`` (GrantRefused, TokenEndpointError)."""
    status, body = await _post(client, client.token_url, {"grant_type": "refresh_token",
                                                          "refresh_token": refresh_token})
    return _token_answer(status, body)


async def device_start(client: OAuthClient) -> DeviceStart:
    """RFC 8628 3.1: a device code and the code the user types at the verification page."""
    if not client.device_url:
        raise GrantRefused("no_device_url", "the oauth table names no device_url for the device flow")
    status, body = await _post(client, client.device_url, {"scope": client.scope} if client.scope else {})
    _raise_error(status, body)
    try:
        return DeviceStart(str(body["device_code"]), str(body["user_code"]),
                           str(body.get("verification_uri") or body.get("verification_url")),  # Google says _url
                           float(body.get("interval", 5)), float(body.get("expires_in", 600)),
                           str(body.get("verification_uri_complete", "")))
    except (KeyError, TypeError, ValueError):
        raise TokenEndpointError("the device endpoint's answer lacks device_code or user_code") from None


async def device_poll(client: OAuthClient, device_code: str) -> TokenAnswer | str:
    """RFC 8628 3.4: the tokens, or "authorization_pending" / "slow_down" to poll again."""
    status, body = await _post(client, client.token_url, {"grant_type": DEVICE_GRANT, "device_code": device_code})
    if status >= 400 and body.get("error") in ("authorization_pending", "slow_down"):
        return str(body["error"])
    return _token_answer(status, body)


async def exchange_code(client: OAuthClient, code: str, redirect_uri: str, verifier: str) -> TokenAnswer:
    """RFC 6749 4.1.3 with the PKCE verifier (RFC 7636 4.5): the tokens for an authorization code."""
    status, body = await _post(client, client.token_url, {"grant_type": "authorization_code", "code": code,
                                                          "redirect_uri": redirect_uri, "code_verifier": verifier})
    return _token_answer(status, body)


async def _post(client: OAuthClient, url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    form = {**form, "client_id": client.client_id}
    if client.client_secret is not None:  # client_secret_post (RFC 6749 2.3.1), which Google and Microsoft take
        form["client_secret"] = client.client_secret.reveal()
    try:
        async with httpx.AsyncClient(verify=tls_context(client), timeout=client.timeout, follow_redirects=False) as http:
            response = await http.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise TokenEndpointError(f"token endpoint unreachable: {type(exc).__name__}: {one_line(str(exc), 200)}") \
            from None
    if response.status_code >= 500:
        raise TokenEndpointError(f"token endpoint answered HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TokenEndpointError(f"token endpoint answered HTTP {response.status_code} without a JSON object")
    return response.status_code, body


def _raise_error(status: int, body: dict[str, Any]) -> None:
    if status >= 400 or "error" in body:
        code = one_line(str(body.get("error") or f"http_{status}"), 60)
        raise GrantRefused(code, one_line(str(body.get("error_description") or ""), 200))


def _token_answer(status: int, body: dict[str, Any]) -> TokenAnswer:
    _raise_error(status, body)
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenEndpointError("token endpoint answered without an access_token")
    refresh_token = body.get("refresh_token")
    try:
        lifetime = float(body.get("expires_in", 3600))
        refresh_life = body.get("refresh_token_expires_in")
        return TokenAnswer(token, lifetime, refresh_token if isinstance(refresh_token, str) and refresh_token else None,
                           float(refresh_life) if refresh_life is not None else None)
    except (TypeError, ValueError):
        raise TokenEndpointError("token endpoint answered with an unreadable expires_in") from None
