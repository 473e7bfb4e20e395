"""devtools.oauthserver over real HTTP: rotation, revocation, introspection, the device flow's pacing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest

from devtools.oauthserver import DEVICE_GRANT, OAuthServer


@pytest.fixture
def server() -> Iterator[OAuthServer]:
    with OAuthServer() as running:
        yield running


def post(server: OAuthServer, path: str, **form: str) -> tuple[int, dict[str, object]]:
    try:
        with urlopen(f"{server.url}{path}", data=urlencode(form).encode(), timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_a_refresh_rotates_and_the_old_token_is_refused(server: OAuthServer) -> None:
    first = server.grant("u@example.test")
    status, body = post(server, "/token", grant_type="refresh_token", refresh_token=first, client_id=server.client_id)
    assert status == 200 and body["refresh_token"] != first and body["token_type"] == "Bearer"
    assert post(server, "/introspect", token=str(body["access_token"])) == (200, {"active": True,
                                                                                "username": "u@example.test"})
    again = post(server, "/token", grant_type="refresh_token", refresh_token=first, client_id=server.client_id)
    assert again == (400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    server.revoke("u@example.test")
    assert post(server, "/introspect", token=str(body["access_token"]))[1] == {"active": False}
    assert post(server, "/token", grant_type="refresh_token", refresh_token=str(body["refresh_token"]),
                client_id=server.client_id)[1]["error"] == "invalid_grant"
    assert post(server, "/token", grant_type="refresh_token", refresh_token="x", client_id="other")[0] == 401


def test_the_device_flow_is_pending_then_approved(server: OAuthServer) -> None:
    server.device_user, server.approve_after = "u@example.test", 1
    status, start = post(server, "/device", client_id=server.client_id, scope="mail")
    assert status == 200 and start["interval"] == 1
    poll = {"grant_type": DEVICE_GRANT, "device_code": str(start["device_code"]), "client_id": server.client_id}
    assert post(server, "/token", **poll) == (400, {"error": "authorization_pending"})
    status, tokens = post(server, "/token", **poll)
    assert status == 200 and server.refresh_tokens[str(tokens["refresh_token"])] == "u@example.test"
    assert post(server, "/token", **poll) == (400, {"error": "expired_token"})  # a device code serves once
