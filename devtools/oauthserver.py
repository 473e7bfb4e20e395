"""A small OAuth2 authorization server on 127.0.0.1, for tests: token, device code, introspection.

Endpoints (form-encoded POST, JSON answers, as RFC 6749 / 8628 / 7662 say):

* ``/token``: ``grant_type=refresh_token`` (rotating the refresh token when ``rotate`` is set:
  the old one is then refused with ``invalid_grant``) and the device-code grant;
* ``/device``: starts a device authorization; it is approved for ``device_user`` after
  ``approve_after`` polls (``authorization_pending`` until then);
* ``/authorize`` (GET): the authorization-code flow's consent page, approved at once for
  ``device_user``: a redirect to ``redirect_uri`` with the code (PKCE S256 required);
* ``/introspect``: what Dovecot's oauth2 passdb asks: ``active`` and ``username``.

``revoke(user)`` withdraws a user's consent: every refresh and access token of theirs stops
working, as when a user removes the app's access at Google or Microsoft.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from pathlib import Path

from devtools._process import LOCALHOST, ManagedServer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class _Device:
    user_code: str
    polls: int = 0
    last_poll: float = 0.0


@dataclass
class OAuthServer(ManagedServer):
    """One authorization server; its state (tokens, users) is plain attributes tests may read."""

    host: str = LOCALHOST
    port: int = 0
    expires_in: int = 3600  # lifetime of each access token, seconds
    rotate: bool = True  # each refresh hands out a new refresh token and forgets the old one
    refresh_token_expires_in: int | None = None  # told with each token answer when set (Microsoft does)
    client_id: str = "ticketd-test"
    client_secret: str | None = None  # when set, every token request must carry it
    device_user: str = ""  # whom a device (or browser) authorization is approved for
    approve_after: int = 1  # polls answered authorization_pending before approval
    interval: int = 1  # the device flow's polling interval, seconds
    tls_dir: Path | None = None  # with it: https, a self-signed certificate for 127.0.0.1 there (cert.pem)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # live refresh token -> user
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (user, expiry)
    revoked: set[str] = field(default_factory=set)  # users whose consent was withdrawn
    requests: list[dict[str, str]] = field(default_factory=list)  # every /token request's form (no secrets kept out)
    _devices: dict[str, _Device] = field(default_factory=dict)
    _codes: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # code -> (user, challenge, redirect_uri)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_dir else 'http'}://{self.host}:{self.port}"

    @property
    def cert_path(self) -> Path:
        assert self.tls_dir is not None
        return self.tls_dir / "cert.pem"

    def start(self) -> None:
        if self._server is not None:
            return
        server = ThreadingHTTPServer((self.host, self.port), _handler(self))
        server.daemon_threads = True
        if self.tls_dir is not None:
            from devtools.dovecot import _make_self_signed_cert

            key = self.tls_dir / "key.pem"
            if not self.cert_path.exists():
                _make_self_signed_cert(self.cert_path, key)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert_path, key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="oauthserver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # -- what tests set up and look at -------------------------------------------------------

    def grant(self, user: str) -> str:
        """A new refresh token for ``user``, as a finished consent would give."""
        with self._lock:
            self.revoked.discard(user)
            token = "rt-" + secrets.token_urlsafe(16)
            self.refresh_tokens[token] = user
            return token

    def revoke(self, user: str) -> None:
        with self._lock:
            self.revoked.add(user)
            self.refresh_tokens = {t: u for t, u in self.refresh_tokens.items() if u != user}
            self.access_tokens = {t: v for t, v in self.access_tokens.items() if v[0] != user}

    def grants(self, kind: str) -> list[dict[str, str]]:
        """The /token requests of one grant_type."""
        with self._lock:
            return [r for r in self.requests if r.get("grant_type") == kind]

    def user_of(self, access_token: str) -> str | None:
        """The user of a live access token, None if it is unknown, expired or revoked."""
        with self._lock:
            found = self.access_tokens.get(access_token)
        return found[0] if found and found[1] > time.time() else None

    # -- the endpoints ---------------------------------------------------------------------

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append({k: v for k, v in form.items() if k not in ("client_secret",)})
        if form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client"}
        if self.client_secret is not None and form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client"}
        kind = form.get("grant_type")
        if kind == "refresh_token":
            return self._refresh(form.get("refresh_token", ""))
        if kind == DEVICE_GRANT:
            return self._device_token(form.get("device_code", ""))
        if kind == "authorization_code":
            return self._code_token(form)
        return 400, {"error": "unsupported_grant_type"}

    def _refresh(self, token: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            user = self.refresh_tokens.get(token)
            if user is None or user in self.revoked:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            if self.rotate:
                del self.refresh_tokens[token]
            return 200, self._issue(user, new_refresh=self.rotate)

    def _device_token(self, code: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            device = self._devices.get(code)
            if device is None:
                return 400, {"error": "expired_token"}
            device.polls += 1
            if device.polls <= self.approve_after:
                return 400, {"error": "authorization_pending"}
            del self._devices[code]
            self.revoked.discard(self.device_user)
            return 200, self._issue(self.device_user, new_refresh=True)

    def _issue(self, user: str, new_refresh: bool) -> dict[str, Any]:
        """Called with the lock held."""
        access = "at-" + secrets.token_urlsafe(16)
        self.access_tokens[access] = (user, time.time() + self.expires_in)
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in}
        if new_refresh:
            refresh = "rt-" + secrets.token_urlsafe(16)
            self.refresh_tokens[refresh] = user
            answer["refresh_token"] = refresh
        if self.refresh_token_expires_in is not None:
            answer["refresh_token_expires_in"] = self.refresh_token_expires_in
        return answer

    def _code_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            user, challenge, redirect_uri = self._codes.pop(form.get("code", ""), ("", "", ""))
            verifier = form.get("code_verifier", "").encode()
            expected = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
            if not user or redirect_uri != form.get("redirect_uri") or expected != challenge:
                return 400, {"error": "invalid_grant", "error_description": "bad code, redirect_uri or verifier"}
            self.revoked.discard(user)
            return 200, self._issue(user, new_refresh=True)

    def authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """The consent page: (302, the redirect with a code) or (400, why not)."""
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return 400, "unknown client or response_type"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, "PKCE (S256) required"
        redirect = query.get("redirect_uri", "")
        if urlsplit(redirect).hostname != "127.0.0.1":
            return 400, "redirect_uri must be a loopback one"
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = (self.device_user, query["code_challenge"], redirect)
        return 302, redirect + "?" + urlencode({"code": code, "state": query.get("state", "")})

    def _device(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client"}
        code, user_code = secrets.token_urlsafe(16), secrets.token_hex(4).upper()
        with self._lock:
            self._devices[code] = _Device(user_code)
        return 200, {"device_code": code, "user_code": user_code, "verification_uri": f"{self.url}/activate",
                     "expires_in": 600, "interval": self.interval}

    def _introspect(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        user = self.user_of(form.get("token", ""))
        return 200, ({"active": True, "username": user} if user else {"active": False})


def _handler(server: OAuthServer) -> type[BaseHTTPRequestHandler]:
    routes = {"/token": server._token, "/device": server._device, "/introspect": server._introspect}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            parts = urlsplit(self.path)
            if parts.path != "/authorize":
                self.send_error(404)
                return
            status, where = server.authorize({k: v[0] for k, v in parse_qs(parts.query).items()})
            self.send_response(status)
            if status == 302:
                self.send_header("Location", where)
            self.send_header("Content-Length", "0" if status == 302 else str(len(where)))
            self.end_headers()
            if status != 302:
                self.wfile.write(where.encode())

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            form = {k: v[0] for k, v in parse_qs(body).items()}
            route = routes.get(self.path.split("?", 1)[0])
            status, answer = route(form) if route else (404, {"error": "not_found"})
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read state, not logs
            pass

    return Handler
