"""The sandbox keeps connections open between requests, as Mailchimp does."""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Iterator

import pytest

from flask_mcsync.sandbox import DEFAULT_LIST_ID
from flask_mcsync.sandbox import server as server_mod
from flask_mcsync.sandbox.server import SandboxServer

AUTH = {"Authorization": "Basic " + base64.b64encode(b"any:" + b"x").decode()}


@pytest.fixture
def own_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as sandbox:
        AUTH["Authorization"] = (
            "Basic " + base64.b64encode(f"any:{sandbox.api_key}".encode()).decode()
        )
        yield sandbox


def _ask(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = dict(AUTH)
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, f"/3.0/{path}", body=body, headers=headers)
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_one_connection_serves_request_after_request(own_sandbox: SandboxServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", own_sandbox.port, timeout=10)
    status, headers, _ = _ask(conn, "GET", "ping")
    assert status == 200 and "close" not in headers.get("Connection", "").lower()
    sock = conn.sock
    member = json.dumps({"email_address": "kept.open@gmail.com", "status_if_new": "subscribed"})
    status, _, body = _ask(
        conn, "PUT", f"lists/{DEFAULT_LIST_ID}/members/kept.open@gmail.com", member.encode()
    )
    assert status == 200, body
    # A body the sandbox refuses before reading it all: the next request still starts
    # where it should.
    status, _, body = _ask(conn, "POST", "lists/nosuchlist/members", b"{" + b" " * 200_000)
    assert status in (400, 404), body
    status, _, body = _ask(conn, "GET", f"lists/{DEFAULT_LIST_ID}/members/kept.open@gmail.com")
    assert status == 200 and json.loads(body)["email_address"] == "kept.open@gmail.com"
    assert conn.sock is sock  # never reconnected
    conn.close()


def test_a_chunked_body_closes_its_connection(own_sandbox: SandboxServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", own_sandbox.port, timeout=10)
    conn.request(
        "POST",
        "/3.0/lists/nosuchlist/members",
        body=iter([b"{}"]),
        headers={**AUTH, "Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    response.read()
    assert response.getheader("Connection") == "close"
    conn.close()


def test_an_idle_connection_is_closed_and_a_stopped_sandbox_closes_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_mod._Handler, "timeout", 0.3)
    with SandboxServer() as sandbox:
        idle = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=10)
        busy = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=10)
        AUTH["Authorization"] = (
            "Basic " + base64.b64encode(f"any:{sandbox.api_key}".encode()).decode()
        )
        assert _ask(idle, "GET", "ping")[0] == 200
        time.sleep(1.0)
        assert idle.sock is not None and idle.sock.recv(1) == b""  # closed by the server
        assert _ask(busy, "GET", "ping")[0] == 200
    # Stopped: the kept connection is closed, not served by a thread left behind.
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _ask(busy, "GET", "ping")
    idle.close()
    busy.close()
