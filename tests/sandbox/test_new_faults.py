"""Faults Mailchimp really produces that a sync must survive.

The temporary "signed up to a lot of lists" 400, a 403 without a body, batches that sit
in "pending" before they start, and results that expire for one batch, not all.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from typing import Any

import pytest
import requests
from mailchimp3 import MailChimp
from mailchimp3.mailchimpclient import MailChimpError
from mailchimp_marketing.api_client import ApiClientError

from flask_mcsync.sandbox import DEFAULT_LIST_ID
from flask_mcsync.sandbox.server import SandboxServer
from flask_mcsync.sandbox.state import subscriber_hash

LIST = DEFAULT_LIST_ID
SIGNUP_LIMIT = (
    "{} has signed up to a lot of lists very recently; we're not allowing more signups for now"
)


def put(email: str) -> dict[str, Any]:
    return {"email_address": email, "status_if_new": "subscribed"}


def submit(api: Any, emails: list[str]) -> str:
    ops = [
        {
            "method": "PUT",
            "path": f"lists/{LIST}/members/{subscriber_hash(e)}",
            "operation_id": e,
            "body": json.dumps(put(e)),
        }
        for e in emails
    ]
    reply = api("POST", "batches", json={"operations": ops})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["id"])


def wait_finished(api: Any, batch_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (batch := api("GET", f"batches/{batch_id}").json())["status"] != "finished":
        assert time.monotonic() < deadline, batch
        time.sleep(0.02)
    result: dict[str, Any] = batch
    return result


def results(url: str) -> list[dict[str, Any]]:
    reply = requests.get(url, timeout=10)
    assert reply.status_code == 200
    found: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(reply.content), mode="r:gz") as tar:
        for info in tar.getmembers():
            if info.isfile():
                found += json.load(tar.extractfile(info))  # type: ignore[arg-type]
    return found


def test_signup_limit_one_shot(mc3: MailChimp, official: Any, sandbox: SandboxServer) -> None:
    sandbox.client.set_faults(next=[{"status": "signup_limit", "count": 2}])
    # Not a member write: the rule waits for one.
    assert mc3.ping.get()["health_status"]
    email = "busy@mail.shop-demo.io"
    with pytest.raises(MailChimpError) as exc:
        mc3.lists.members.create_or_update(LIST, subscriber_hash(email), put(email))
    error = exc.value.args[0]
    assert (error["status"], error["title"]) == (400, "Invalid Resource")
    assert error["detail"] == SIGNUP_LIMIT.format(email)
    with pytest.raises(ApiClientError) as exc2:
        official.lists.add_list_member(LIST, {"email_address": email, "status": "subscribed"})
    assert json.loads(exc2.value.text)["detail"] == SIGNUP_LIMIT.format(email)
    assert sandbox.client.member(LIST, email) is None
    # Temporary: the next attempt goes through.
    assert official.lists.set_list_member(LIST, email, put(email))["status"] == "subscribed"


def test_signup_limit_rate_in_batches(api: Any, sandbox: SandboxServer) -> None:
    sandbox.client.set_faults(signup_limit_rate=0.5, seed=3)
    emails = [f"b{i}@mail.shop-demo.io" for i in range(40)]
    batch = wait_finished(api, submit(api, emails))
    found = results(batch["response_body_url"])
    refused = [r for r in found if r["status_code"] == 400]
    assert 0 < len(refused) < 40 and batch["errored_operations"] == len(refused)
    for entry in refused:
        assert json.loads(entry["response"])["detail"] == SIGNUP_LIMIT.format(entry["operation_id"])
    assert sandbox.client.members(LIST)["counts"]["subscribed"] == 40 - len(refused)


def test_empty_403(mc3: MailChimp, official: Any, api: Any, sandbox: SandboxServer) -> None:
    sandbox.client.set_faults(empty_403_rate=1.0)
    reply = api("GET", "ping")
    assert (reply.status_code, reply.content) == (403, b"")
    # The official client raises nothing on an empty body: it returns the raw
    # requests.Response (a caller must check for that).
    raw = official.ping.get()
    assert isinstance(raw, requests.Response) and raw.status_code == 403
    with pytest.raises(MailChimpError):
        mc3.ping.get()
    sandbox.client.set_faults(empty_403_rate=0.0, next=[{"status": "empty_403"}])
    assert api("GET", "ping").content == b""
    assert api("GET", "ping").status_code == 200


def test_batch_start_delay_keeps_batch_pending(api: Any, sandbox: SandboxServer) -> None:
    sandbox.client.set_faults(batch_start_delay=60)
    batch_id = submit(api, ["late@mail.shop-demo.io"])
    time.sleep(0.3)
    assert api("GET", f"batches/{batch_id}").json()["status"] == "pending"
    assert sandbox.client.member(LIST, "late@mail.shop-demo.io") is None
    sandbox.client.set_faults(batch_start_delay=0)
    assert wait_finished(api, batch_id)["finished_operations"] == 1


def test_results_expire_for_one_batch(api: Any, sandbox: SandboxServer) -> None:
    first = wait_finished(api, submit(api, ["one@mail.shop-demo.io"]))
    second = wait_finished(api, submit(api, ["two@mail.shop-demo.io"]))
    sandbox.client.set_faults(expire_batches=[first["id"]])
    expired = requests.get(first["response_body_url"], timeout=5)
    assert expired.status_code == 403 and "<Code>AccessDenied</Code>" in expired.text
    assert [r["operation_id"] for r in results(second["response_body_url"])] == [
        "two@mail.shop-demo.io"
    ]
    # Expired results are dropped from memory: gone for good, like on S3.
    stored = sandbox.sandbox.state.batches[first["id"]].results
    assert stored.stored_bytes == 0


def test_results_expire_for_a_fraction_of_batches(api: Any, sandbox: SandboxServer) -> None:
    sandbox.client.set_faults(expire_results_rate=0.5, seed=11)
    urls = [
        wait_finished(api, submit(api, [f"f{i}@mail.shop-demo.io"]))["response_body_url"]
        for i in range(12)
    ]
    first = [requests.get(u, timeout=5).status_code for u in urls]
    assert set(first) == {200, 403}
    # Each batch keeps its fate.
    assert [requests.get(u, timeout=5).status_code for u in urls] == first


def test_new_fault_settings_validated(sandbox: SandboxServer) -> None:
    for bad in (
        {"expire_batches": "x"},
        {"batch_start_delay": -1},
        {"signup_limit_rate": 0.7, "empty_403_rate": 0.7},
        {"expire_results_rate": 2},
    ):
        reply = requests.post(f"{sandbox.url}/_sandbox/faults", json=bad, timeout=5)
        assert reply.status_code == 400, bad
    shown = sandbox.client.set_faults(expire_batches=["abc"], batch_start_delay=2)
    assert (shown["expire_batches"], shown["batch_start_delay"]) == (["abc"], 2.0)
