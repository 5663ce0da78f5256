"""The gateway's HTTP side: pooled connections, connect and read timeouts, and nothing
personal in the host's logs, against the Mailchimp sandbox.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from helpers_export import LIST_ID, choose_audience, insert_customers

from flask_mcsync import state
from flask_mcsync.gateway import Gateway, TransientError
from flask_mcsync.sandbox import SandboxServer


def _connections_opened(gateway: Gateway) -> int:
    """How many connections the gateway's pools opened in all (urllib3 counts them)."""
    manager = gateway.session.get_adapter("http://").poolmanager
    return sum(pool.num_connections for pool in manager.pools._container.values())


def test_calls_of_one_gateway_reuse_one_connection(sandbox: SandboxServer) -> None:
    gateway = Gateway(sandbox.api_key, sandbox.api_url, 5)
    try:
        gateway.ping()
        for n in range(5):
            gateway.upsert_member(LIST_ID, f"pool.{n}@gmail.com", "subscribed")
        assert gateway.get_member(LIST_ID, "pool.0@gmail.com") is not None
        assert _connections_opened(gateway) == 1
    finally:
        gateway.close()


def test_a_connection_closed_by_mailchimp_is_replaced(sandbox: SandboxServer) -> None:
    gateway = Gateway(sandbox.api_key, sandbox.api_url, 5)
    try:
        gateway.ping()
        sandbox.client.set_faults(next=[{"status": "drop"}])
        with pytest.raises(TransientError):
            gateway.ping()
        # The next call opens a fresh connection instead of failing on the dead one.
        assert gateway.ping()
    finally:
        gateway.close()


def test_the_gateway_sends_connect_and_read_timeouts_from_the_config(
    db_only_app: Flask, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_only_app.config.update(MCSYNC_CONNECT_TIMEOUT=2.5, MCSYNC_REQUEST_TIMEOUT=7)
    from flask_mcsync.config import read_config

    state(db_only_app).config = read_config(db_only_app.config)
    gateway = state(db_only_app).gateway()
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
