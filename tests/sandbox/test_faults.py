"""Fault injection and Mailchimp's limits: concurrency, pending batches, expiry."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from mailchimp3 import MailChimp
from mailchimp3.mailchimpclient import MailChimpError

from flask_mcsync.sandbox import DEFAULT_LIST_ID
from flask_mcsync.sandbox.server import SandboxServer

LIST = DEFAULT_LIST_ID


def wait_finished(api: Any, batch_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch: dict[str, Any] = api("GET", f"batches/{batch_id}").json()
        if batch["status"] == "finished":
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.02)


def one_op_batch(api: Any, email: str = "b@mail.shop-demo.io") -> requests.Response:
    op = {
        "method": "PUT",
        "path": f"lists/{LIST}/members/{email}",
        "body": json.dumps({"email_address": email, "status_if_new": "subscribed"}),
    }
    response: requests.Response = api("POST", "batches", json={"operations": [op]})
    return response


def test_eleventh_concurrent_request_gets_429(api: Any, sandbox: SandboxServer) -> None:
    # The ten must still be in flight when the eleventh arrives, however slowly the
    # threads start on a busy machine: they are held for a minute, and woken by
    # clearing the faults once the sandbox has refused the eleventh.
    sandbox.client.set_faults(latency_ms=60_000, retry_after=7)
    with ThreadPoolExecutor(max_workers=11) as pool:
        pending = [pool.submit(api, "GET", "ping", timeout=90) for _ in range(11)]
        try:
            deadline = time.monotonic() + 60
            while sandbox.client.stats()["too_many_requests_sent"] < 1:
                assert time.monotonic() < deadline, sandbox.client.stats()
                time.sleep(0.02)
            assert sandbox.client.stats()["in_flight"] == 10
        finally:  # a failure above must not leave the pool waiting a minute for the ten
            sandbox.client.clear_faults()
        replies = [future.result() for future in pending]
    codes = sorted(r.status_code for r in replies)
    assert codes == [200] * 10 + [429]
    refused = next(r for r in replies if r.status_code == 429)
    assert refused.headers["Retry-After"] == "7"
    assert refused.headers["Content-Type"] == "application/problem+json; charset=utf-8"
    assert refused.json()["title"] == "Too Many Requests"
    assert refused.json()["detail"] == (
        "You have exceeded the limit of 10 simultaneous connections."
    )
    stats = sandbox.client.stats()
    assert stats["max_in_flight"] == 10 and stats["too_many_requests_sent"] == 1
    # The limit is per API key: another key still gets through.
    sandbox.client.add_key("a" * 32 + "-us2")
    assert api("GET", "ping", key="a" * 32 + "-us2").status_code == 200


def test_error_rate_is_seeded_and_deterministic(api: Any, sandbox: SandboxServer) -> None:
    def run() -> list[int]:
        sandbox.client.set_faults(error_rates={"500": 0.3, "503": 0.1}, seed=1234)
        return [api("GET", "ping").status_code for _ in range(60)]

    first = run()
    assert first == run()
    assert 5 <= first.count(500) <= 35 and first.count(503) >= 1
    assert set(first) == {200, 500, 503}
    # The control API is never faulted.
    assert sandbox.client.stats()["responses_by_status"]["500"] == 2 * first.count(500)


def test_mailchimp3_sees_injected_500(mc3: MailChimp, sandbox: SandboxServer) -> None:
    sandbox.client.set_faults(error_rates={"500": 1.0})
    with pytest.raises(MailChimpError) as exc:
        mc3.ping.get()
    assert exc.value.args[0]["status"] == 500
    assert exc.value.args[0]["title"] == "Internal Server Error"


def test_one_shot_rules_in_order(api: Any, sandbox: SandboxServer) -> None:
    sandbox.client.set_faults(
        retry_after=3,
        next=[
            {"status": 503, "count": 2, "method": "PUT"},
            {"status": 429, "count": 1, "path_contains": "/batches"},
            {"status": 500},
        ],
    )
    email = "r@mail.shop-demo.io"
    body = {"email_address": email, "status_if_new": "subscribed"}
    # The head rule only matches PUTs, so this GET passes untouched.
    assert api("GET", "ping").status_code == 200
    assert [
        api("PUT", f"lists/{LIST}/members/{email}", json=body).status_code for _ in range(3)
    ] == [503, 503, 200]
    assert api("GET", "ping").status_code == 200
    refused = api("GET", "batches")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "3"
    assert [api("GET", "ping").status_code for _ in range(2)] == [500, 200]
    assert sandbox.client.faults()["next"] == []


def test_timeout_fault_makes_client_time_out(api: Any, sandbox: SandboxServer) -> None:
    # The sandbox holds the request for a minute: the client gives up at its own timeout
    # while the sandbox still holds it. Clearing the faults wakes it at once.
    sandbox.client.set_faults(timeout_rate=1.0, timeout_seconds=60)
    with pytest.raises(requests.exceptions.ReadTimeout):
        api("GET", "ping", timeout=0.3)
    # The client gave up after 0.3 s without an answer; on a busy machine the sandbox
    # may only now be taking the request in.
    deadline = time.monotonic() + 30
    while sandbox.client.stats()["in_flight"] != 1:
        assert time.monotonic() < deadline, sandbox.client.stats()
        time.sleep(0.02)
    sandbox.client.clear_faults()
    deadline = time.monotonic() + 30
    while sandbox.client.stats()["in_flight"]:
        assert time.monotonic() < deadline, sandbox.client.stats()
        time.sleep(0.02)
    # A one-shot timeout rule; with a patient client the request completes after the wait.
    sandbox.client.set_faults(timeout_seconds=0.2, next=[{"status": "timeout"}])
    started = time.monotonic()
    assert api("GET", "ping", timeout=30).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_drop_closes_connection_without_response(
    api: Any, mc3: MailChimp, sandbox: SandboxServer
) -> None:
    sandbox.client.set_faults(next=[{"status": "drop", "count": 2}])
    with pytest.raises(requests.exceptions.ConnectionError):
        api("GET", "ping")
    with pytest.raises(requests.exceptions.ConnectionError):
        mc3.ping.get()
    assert mc3.ping.get()["health_status"] == "Everything's Chimpy!"
    assert sandbox.client.stats()["responses_by_status"] == {"dropped": 2, "200": 1}
    sandbox.client.set_faults(drop_rate=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        api(
            "PUT",
            f"lists/{LIST}/members/d@mail.shop-demo.io",
            json={"email_address": "d@mail.shop-demo.io", "status_if_new": "subscribed"},
        )


def test_expired_results_answer_403(api: Any, sandbox: SandboxServer) -> None:
    batch = wait_finished(api, one_op_batch(api).json()["id"])
    assert requests.get(batch["response_body_url"], timeout=5).status_code == 200
    sandbox.client.set_faults(expire_results=True)
    expired = requests.get(batch["response_body_url"], timeout=5)
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code>" in expired.text
    assert expired.headers["Content-Type"].startswith("application/xml")


def test_500_unfinished_batches_then_429(api: Any, sandbox: SandboxServer) -> None:
    sandbox.client.set_faults(batch_ops_per_second=0.001)  # the queue barely moves
    with requests.Session() as session:
        session.auth = ("u", sandbox.api_key)
        op = {"method": "GET", "path": "/ping"}
        for _ in range(500):
            reply = session.post(sandbox.api_url + "batches", json={"operations": [op]}, timeout=5)
            assert reply.status_code == 200
        refused = session.post(sandbox.api_url + "batches", json={"operations": [op]}, timeout=5)
    assert refused.status_code == 429
    assert refused.json()["title"] == "Too Many Requests"
    assert "500 pending batches" in refused.json()["detail"]
    statuses = {b for b in sandbox.client.stats()["batches"].values()}
    assert statuses <= {"pending", "preprocessing", "started"}


def test_batch_rate_and_progress(api: Any, sandbox: SandboxServer) -> None:
    # One operation a second: seen midway however late the look comes (41 s a batch),
    # and never ahead of its pace (operation k is due k seconds after the batch starts).
    rate = 1
    sandbox.client.set_faults(batch_ops_per_second=rate)
    ops = [{"method": "GET", "path": "ping", "operation_id": str(i)} for i in range(40)]
    ops.append(
        {"method": "GET", "path": f"lists/{LIST}/members/{'0' * 32}", "operation_id": "missing"}
    )
    submitted = time.monotonic()
    batch_id = api("POST", "batches", json={"operations": ops}).json()["id"]
    deadline = time.monotonic() + 30
    while True:
        midway = api("GET", f"batches/{batch_id}").json()
        elapsed = time.monotonic() - submitted
        if midway["finished_operations"] >= 1:
            break
        assert time.monotonic() < deadline, midway
        time.sleep(0.02)
    assert midway["status"] == "started"
    assert 1 <= midway["finished_operations"] < 41
    assert midway["finished_operations"] <= elapsed * rate  # never ahead of the pace
    sandbox.client.set_faults(batch_ops_per_second=0)  # unlimited from here on
    batch = wait_finished(api, batch_id, timeout=30)
    assert (batch["finished_operations"], batch["errored_operations"]) == (41, 1)
    assert sandbox.client.stats()["operations_processed"] == 41


def test_fault_config_is_validated(sandbox: SandboxServer) -> None:
    for bad in (
        {"error_rates": {"500": 2}},
        {"bogus": 1},
        {"next": [{"status": 200}]},
        {"latency_ms": -1},
        {"drop_rate": 0.6, "timeout_rate": 0.6},
    ):
        reply = requests.post(f"{sandbox.url}/_sandbox/faults", json=bad, timeout=5)
        assert reply.status_code == 400, bad
    assert sandbox.client.faults()["error_rates"] == {}


def test_a_clear_wakes_a_request_that_took_its_hold_before_it() -> None:
    """A request takes the hold when it starts: faults cleared between then and its
    sleep (after it read a setting, or decided on a timeout) must not leave it asleep
    on the new settings' event."""
    from flask_mcsync.sandbox.faults import Faults

    faults = Faults()
    faults.configure({"timeout_seconds": 60})
    wake = faults.hold()
    seconds = faults.timeout_seconds  # read, then the faults are cleared
    faults.clear()
    assert faults.sleep(seconds, wake) is False  # woken at once, not slept fully
    # A request that starts after the clear sleeps as set.
    assert faults.sleep(0.01, faults.hold()) is True
