"""The sandbox keeps connections open between requests, as Mailchimp does."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import time
from collections.abc import Iterator

import pytest

from flask_mcsync.sandbox import DEFAULT_LIST_ID
from flask_mcsync.sandbox import server as server_mod
from flask_mcsync.sandbox.server import SandboxServer
from flask_mcsync.sandbox.state import DEFAULT_API_KEY

# Every sandbox accepts its default key (SandboxServer.api_key).
AUTH = {"Authorization": "Basic " + base64.b64encode(f"any:{DEFAULT_API_KEY}".encode()).decode()}


@pytest.fixture
def own_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as sandbox:
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
    # A body the sandbox refuses before reading any of it (no API key): the next request
    # still starts where it should.
    conn.request("POST", "/3.0/batches", body=b"{" + b" " * 200_000, headers={})
    refused = conn.getresponse()
    assert refused.status == 401 and refused.read()
    status, _, body = _ask(conn, "GET", f"lists/{DEFAULT_LIST_ID}/members/kept.open@gmail.com")
    assert status == 200 and json.loads(body)["email_address"] == "kept.open@gmail.com"
    assert conn.sock is sock  # never reconnected
    conn.close()


def test_a_chunked_body_closes_its_connection(own_sandbox: SandboxServer) -> None:
    sock = socket.create_connection(("127.0.0.1", own_sandbox.port))
    auth = AUTH["Authorization"].encode()
    sock.sendall(
        b"POST /3.0/lists/nosuchlist/members HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + auth
        + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    answer, closed = _read_all(sock, 30.0)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 404") and b"Connection: close" in answer, answer[:300]
    assert closed  # the server ended the connection, without waiting for the client


def test_an_idle_connection_is_closed_and_a_stopped_sandbox_closes_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_mod._Handler, "timeout", 0.3)
    with SandboxServer() as sandbox:
        idle = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=10)
        busy = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=10)
        assert _ask(idle, "GET", "ping")[0] == 200
        time.sleep(1.0)
        assert idle.sock is not None and idle.sock.recv(1) == b""  # closed by the server
        assert _ask(busy, "GET", "ping")[0] == 200
        assert busy.sock is not None  # kept open after the answer
    # Stopped: the kept connection is closed, not served by a thread left behind. (Not a
    # refused new connection: that would mean the answer above had closed it.)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
        _ask(busy, "GET", "ping")
    idle.close()
    busy.close()


def _read_all(sock: socket.socket, seconds: float) -> tuple[bytes, bool]:
    """What the server sends within ``seconds``, and whether it closed the connection.

    Returns as soon as the server closes it: where a close is expected, ``seconds`` only
    bounds the wait for a server that never closes.
    """
    sock.settimeout(0.2)
    data, end = b"", time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _read_response(sock: socket.socket, seconds: float = 30.0) -> bytes:
    """Exactly one HTTP response (its headers, then Content-Length bytes of body);
    fails if it has not all come within ``seconds`` or the server closed before."""
    sock.settimeout(0.2)
    data, end = b"", time.monotonic() + seconds
    wanted: int | None = None
    while wanted is None or len(data) < wanted:
        assert time.monotonic() < end, f"no full response in {seconds}s: {data[:300]!r}"
        if wanted is None and b"\r\n\r\n" in data:
            head = data.split(b"\r\n\r\n", 1)[0]
            length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
            assert length is not None, head
            wanted = len(head) + 4 + int(length.group(1))
            continue
        try:
            chunk = sock.recv(65536 if wanted is None else wanted - len(data))
        except TimeoutError:
            continue
        assert chunk, f"closed before a full response: {data[:300]!r}"
        data += chunk
    return data


def test_a_client_gone_before_its_unread_body_ends_its_connection_quietly(
    own_sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = socket.create_connection(("127.0.0.1", own_sandbox.port))
    # No API key: refused before the body is read; the client sends a fifth of it, reads
    # the answer and goes away.
    sock.sendall(
        b"POST /3.0/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n" + b"{" + b" " * 20_000
    )
    answer = _read_response(sock)
    sock.shutdown(socket.SHUT_WR)
    rest, closed = _read_all(sock, 30.0)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 401") and rest == b""
    # Closed once the sandbox saw the body would never come; a failure while handling
    # the request is printed before the socket is closed, so it would be captured by now.
    assert closed
    assert "Exception occurred during processing of request" not in capsys.readouterr().err


def test_a_request_http_server_refuses_closes_its_connection(own_sandbox: SandboxServer) -> None:
    sock = socket.create_connection(("127.0.0.1", own_sandbox.port))
    auth = AUTH["Authorization"].encode()
    sock.sendall(b"GET /3.0/ping HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + b"\r\n\r\n")
    first = _read_response(sock)
    # Kept open: no "Connection: close", and the next request is answered on it below.
    assert first.startswith(b"HTTP/1.1 200") and b"connection: close" not in first.lower()
    # A request line too long: http.server answers 414 itself, and the rest of the line
    # must not be read as another request.
    # (What is left of it after 65,536 bytes reads as a request of its own, if read.)
    sock.sendall(b"GET /3.0/" + b"a" * 70_000 + b" x y HTTP/1.1\r\nHost: x\r\n\r\n")
    rest, closed = _read_all(sock, 30.0)
    sock.close()
    assert rest.startswith(b"HTTP/1.1 414") and rest.count(b"HTTP/1.1 ") == 1, rest[-300:]
    assert closed
