"""The gateway's HTTP side: pooled connections, connect and read timeouts, and nothing
personal in the host's logs, against the Mailchimp sandbox.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from helpers_export import LIST_ID, choose_audience, insert_customers

from flask_mcsync import state
from flask_mcsync.gateway import Gateway, TransientError, gateway_for, kept_connections
from flask_mcsync.sandbox import SandboxServer

API_KEY = "0123456789abcdef0123456789abcdef-us1"


class KeepAliveServer:
    """An HTTP/1.1 server that keeps connections open, as Mailchimp's does, and counts
    them (the sandbox keeps them open too, but does not count them, nor drop one on
    demand). Answers ``GET /3.0/ping`` only; closes a
    connection idle for ``idle_timeout`` seconds."""

    def wait_until_open(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.open != count:
            assert time.monotonic() < deadline, f"{self.open} connections open, not {count}"
            time.sleep(0.02)

    def __init__(self, idle_timeout: float | None = None) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_timeout

            def setup(self) -> None:
                super().setup()
                with owner.lock:
                    owner.connections += 1
                    owner.open += 1

            def do_GET(self) -> None:
                if owner.drop_next:  # the connection dies mid-request: no answer at all
                    owner.drop_next = False
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = json.dumps({"health_status": "Everything's Chimpy!"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.lock = threading.Lock()
        self.connections = 0  # opened in all
        self.open = 0  # open now
        self.drop_next = False  # drop the next request's connection without answering

        class Server(ThreadingHTTPServer):
            def shutdown_request(self, request: Any) -> None:
                super().shutdown_request(request)  # the socket is closed only here
                with owner.lock:
                    owner.open -= 1

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.api_url = f"http://127.0.0.1:{self.server.server_port}/3.0/"

    def __enter__(self) -> KeepAliveServer:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pointed_at(app: Flask, server: KeepAliveServer) -> Any:
    from flask_mcsync.config import read_config

    app.config.update(MCSYNC_API_URL=server.api_url, MCSYNC_API_KEY=API_KEY)
    ext = state(app)
    ext.config = read_config(app.config)
    return ext


def test_calls_of_one_gateway_reuse_one_connection() -> None:
    with KeepAliveServer() as server:
        gateway = Gateway(API_KEY, server.api_url, 5)
        try:
            for _ in range(5):
                assert gateway.ping()["health_status"]
            assert server.connections == 1
        finally:
            gateway.close()


def test_a_connection_dropped_mid_request_is_replaced() -> None:
    with KeepAliveServer() as server:
        gateway = Gateway(API_KEY, server.api_url, 5)
        try:
            gateway.ping()
            server.drop_next = True
            with pytest.raises(TransientError):
                gateway.ping()  # on the kept connection, which dies under it
            # The next call opens a fresh connection instead of failing on the dead one.
            assert gateway.ping()
            assert server.connections == 2
        finally:
            gateway.close()


def test_a_connection_idle_past_the_servers_timeout_is_closed_and_replaced() -> None:
    # Servers in front of APIs close kept-alive connections left idle: the next call must
    # open a new one, not fail on the closed one.
    with KeepAliveServer(idle_timeout=0.3) as server:
        gateway = Gateway(API_KEY, server.api_url, 5)
        try:
            gateway.ping()
            server.wait_until_open(0)  # closed by the server after 0.3 s of silence
            assert gateway.ping()
            assert server.connections == 2
        finally:
            gateway.close()


def test_a_workers_jobs_share_one_connection(db_only_app: Flask) -> None:
    """Each job makes its gateway; in a worker (kept_connections) they share a session,
    so an auto-sync send or a poll no longer opens a connection of its own."""
    with KeepAliveServer() as server:
        ext = _pointed_at(db_only_app, server)
        with kept_connections(ext):
            for _ in range(3):  # three jobs, each with its gateway, closed at its end
                gateway = gateway_for(ext)
                gateway.ping()
                gateway.close()
            kept = gateway.session
            assert server.connections == 1
        server.wait_until_open(0)  # the block's end closed it
        outside = gateway_for(ext)  # outside a worker: a session per gateway, as before
        try:
            assert outside.session is not kept
            outside.ping()
            assert server.connections == 2
        finally:
            outside.close()


def test_a_kept_connection_idle_too_long_is_not_reused(
    db_only_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NAT or load balancer may drop an idle connection without a word: reused, it would
    hold the next request for the whole read timeout. So one idle too long is closed."""
    from flask_mcsync import gateway as gateway_mod

    with KeepAliveServer() as server:
        ext = _pointed_at(db_only_app, server)
        with kept_connections(ext):
            gateway_for(ext).ping()
            gateway_for(ext).ping()
            assert server.connections == 1
            monkeypatch.setattr(gateway_mod, "KEPT_IDLE_SECONDS", 0.0)
            time.sleep(0.01)
            gateway_for(ext).ping()
            assert server.connections == 2


def test_only_the_thread_and_process_that_keep_connections_share_them(
    db_only_app: Flask, sandbox: SandboxServer
) -> None:
    ext = state(db_only_app)
    with kept_connections(ext):
        kept = gateway_for(ext).session
        assert gateway_for(ext).session is kept
        # Another thread (a request of the admin pages) gets a session of its own, and
        # its own block does not disturb this one's.
        other: list[Any] = []

        def elsewhere() -> None:
            other.append(gateway_for(ext).session)
            with kept_connections(ext):
                other.append(gateway_for(ext).session)
            other.append(gateway_for(ext).session)

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        assert kept not in other and other[0] is not other[1] and other[1] is not other[2]
        assert gateway_for(ext).session is kept
        # A work horse forked per job never writes on its parent's sockets.
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 2
            try:
                code = 0 if gateway_for(ext).session is not kept else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def test_the_gateway_sends_connect_and_read_timeouts_from_the_config(
    db_only_app: Flask, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_only_app.config.update(MCSYNC_CONNECT_TIMEOUT=2.5, MCSYNC_REQUEST_TIMEOUT=7)
    from flask_mcsync.config import read_config

    state(db_only_app).config = read_config(db_only_app.config)
    gateway = gateway_for(state(db_only_app))
    sent: list[Any] = []
    request = gateway.session.request

    def spy(*args: Any, **kwargs: Any) -> Any:
        sent.append(kwargs.get("timeout"))
        return request(*args, **kwargs)

    monkeypatch.setattr(gateway.session, "request", spy)
    gateway.ping()
    gateway.audiences()
    assert sent == [(2.5, 7.0), (2.5, 7.0)]


def test_a_slow_answer_hits_the_read_timeout(sandbox: SandboxServer) -> None:
    gateway = Gateway(sandbox.api_key, sandbox.api_url, 0.5, connect_timeout=5)
    try:
        sandbox.client.set_faults(next=[{"status": "timeout"}])
        with pytest.raises(TransientError, match="did not answer within the request timeout"):
            gateway.ping()
    finally:
        gateway.close()


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_a_single_sync_logs_no_address_or_name(
    db_only_app: Flask, sandbox: SandboxServer, caplog: pytest.LogCaptureFixture, level: int
) -> None:
    from example_app.models import db
    from flask_mcsync.single_sync import run_single

    insert_customers(
        db,
        [
            {
                "email": "Zephyrine.Quillfeather@gmail.com",
                "first_name": "Zephyrine",
                "last_name": "Quillfeather",
                "newsletter": True,
            }
        ],
    )
    choose_audience(db_only_app)
    caplog.set_level(level)  # the root logger: what a host's handlers would see

    run = run_single(
        state(db_only_app),
        "zephyrine.quillfeather@gmail.com",
        kind="resync",
        started_by="test",
        wants="resync",
    )

    logged = caplog.text
    caplog.set_level(logging.WARNING)  # the sandbox lookup below is the test's, not the sync's

    assert run.status == "finished" and run.created == 1
    member = sandbox.client.member(LIST_ID, "zephyrine.quillfeather@gmail.com")
    assert member["merge_fields"]["LNAME"] == "Quillfeather"
    # The sync sent the person to Mailchimp, yet never wrote them to the log.
    for personal in ("zephyrine", "quillfeather", "gmail.com"):
        assert personal not in logged.lower(), logged


def test_a_resync_through_a_worker_logs_no_address(
    app: Flask, sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    """RQ logs each job it takes and ends at INFO, by its description: the diagnostic
    tool's re-sync job carries the address, which must not reach the host's logs."""
    from example_app.models import db
    from flask_mcsync.diagnostic import start_resync
    from flask_mcsync.worker import run_worker

    insert_customers(
        db,
        [{"email": "Ottoline.Brackenbury@gmail.com", "first_name": "Ottoline", "newsletter": True}],
    )
    choose_audience(app)
    caplog.set_level(logging.INFO)  # the root logger: what a host's handlers would see

    run = start_resync(state(app), "ottoline.brackenbury@gmail.com", started_by="test")
    run_worker(app, burst=True, with_scheduler=False)

    logged = caplog.text
    caplog.set_level(logging.WARNING)
    assert f"resync_address(run {run.id})" in logged  # the job was logged, by run
    state(app).session.rollback()
    assert state(app).session.get(type(run), run.id).status == "finished"
    for personal in ("ottoline", "brackenbury", "gmail.com"):
        assert personal not in logged.lower(), logged


def test_a_dead_redis_is_a_sentence_and_still_a_redis_connection_error() -> None:
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    from flask_mcsync.errors import McSyncError
    from flask_mcsync.throttle import ConnectionSlots, RedisUnavailable

    dead = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    slots = ConnectionSlots(dead, "dead", limit=10, lease_seconds=30)
    with pytest.raises(RedisUnavailable) as caught, slots.slot():
        raise AssertionError("no request is made without a slot")
    assert isinstance(caught.value, McSyncError)
    assert isinstance(caught.value, RedisConnectionError)  # the worker's loop waits on it
    assert str(caught.value).startswith("Redis could not be reached (")
    assert str(caught.value).endswith("Check MCSYNC_REDIS_URL.")


def test_a_slot_that_cannot_be_given_back_leaves_the_answer_standing(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    from flask_mcsync.throttle import ConnectionSlots

    slots = ConnectionSlots(Redis.from_url(redis_url), "giveback", limit=10, lease_seconds=30)

    def dies(token: str) -> None:
        raise RedisConnectionError("Redis went away after the request")

    monkeypatch.setattr(slots, "release", dies)
    answered = []
    with caplog.at_level(logging.WARNING, logger="flask_mcsync.throttle"), slots.slot():
        answered.append("Mailchimp's answer")
    assert answered == ["Mailchimp's answer"]
    assert "could not give a connection slot back" in caplog.text
