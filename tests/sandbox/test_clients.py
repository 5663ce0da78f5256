"""Both Mailchimp clients work unchanged against the sandbox."""

from __future__ import annotations

import io
import json
import tarfile
import time
from typing import Any

import requests
from mailchimp3 import MailChimp
from mailchimp3.helpers import get_subscriber_hash

from flask_mcsync.sandbox import DEFAULT_LIST_ID
from flask_mcsync.sandbox.server import SandboxServer

LIST = DEFAULT_LIST_ID
TIMEOUT = 10.0


def read_archive(url: str) -> list[dict[str, Any]]:
    response = requests.get(url, timeout=TIMEOUT)
    assert response.status_code == 200
    results: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        for info in tar.getmembers():
            assert info.name.startswith(".")
            if info.isfile():
                assert info.name.startswith("./") and info.name.endswith(".json")
                chunk = json.load(tar.extractfile(info))  # type: ignore[arg-type]
                assert len(chunk) <= 500
                results.extend(chunk)
    return results


def put_ops(count: int) -> list[dict[str, Any]]:
    ops = []
    for i in range(count):
        email = f"buyer{i}@mail.shop-demo.io"
        ops.append(
            {
                "method": "PUT",
                "path": f"/lists/{LIST}/members/{get_subscriber_hash(email)}",
                "operation_id": f"op-{i}",
                "body": json.dumps(
                    {
                        "email_address": email,
                        "status_if_new": "subscribed",
                        "merge_fields": {"FNAME": f"Buyer {i}"},
                    }
                ),
            }
        )
    return ops


def check_batch_results(results: list[dict[str, Any]], count: int) -> None:
    assert len(results) == count
    assert {r["operation_id"] for r in results} == {f"op-{i}" for i in range(count)}
    for result in results:
        assert result["status_code"] == 200
        body = json.loads(result["response"])
        assert body["status"] == "subscribed"
        assert body["merge_fields"]["FNAME"] == f"Buyer {result['operation_id'][3:]}"


def test_ping(mc3: MailChimp, official: Any) -> None:
    assert mc3.ping.get() == {"health_status": "Everything's Chimpy!"}
    assert official.ping.get() == {"health_status": "Everything's Chimpy!"}


def test_list_audiences(mc3: MailChimp, official: Any, sandbox: SandboxServer) -> None:
    sandbox.client.create_list(
        "Second",
        [{"tag": "CITY", "name": "City", "type": "text", "required": True}],
        list_id="ffff000011",
    )
    for reply in (mc3.lists.all(get_all=True), official.lists.get_all_lists()):
        assert reply["total_items"] == 2
        first = reply["lists"][0]
        assert (first["id"], first["name"]) == (LIST, "Demo shop newsletter")
        assert first["stats"]["member_count"] == 0
        assert {"unsubscribe_count", "cleaned_count"} <= set(first["stats"])
        assert first["double_optin"] is False
    assert mc3.lists.get(LIST)["id"] == LIST
    fields = official.lists.get_list_merge_fields("ffff000011")["merge_fields"]
    assert [(f["tag"], f["required"]) for f in fields] == [("CITY", True)]
    defaults = mc3.lists.merge_fields.all(LIST, get_all=True)["merge_fields"]
    assert [(f["tag"], f["name"], f["type"]) for f in defaults] == [
        ("FNAME", "First name", "text"),
        ("LNAME", "Last name", "text"),
    ]


def test_upsert_and_read_member_mailchimp3(mc3: MailChimp) -> None:
    email = "Ann.Lee@Mail.Shop-Demo.io"
    created = mc3.lists.members.create_or_update(
        LIST,
        get_subscriber_hash(email),
        {
            "email_address": email,
            "status_if_new": "subscribed",
            "merge_fields": {"FNAME": "Ann", "LNAME": "Lee"},
        },
    )
    assert created["id"] == get_subscriber_hash(email)
    assert (created["status"], created["full_name"], created["list_id"]) == (
        "subscribed",
        "Ann Lee",
        LIST,
    )
    by_hash = mc3.lists.members.get(LIST, created["id"])
    by_address = mc3.lists.members.get(LIST, email.lower())
    assert by_hash["email_address"] == by_address["email_address"] == email
    assert mc3.lists.get(LIST)["stats"]["member_count"] == 1


def test_upsert_and_read_member_official(official: Any, sandbox: SandboxServer) -> None:
    email = "bo+news@mail.shop-demo.io"
    # The official client puts the raw address in the path (URL-encoded, un-hashed).
    created = official.lists.set_list_member(
        LIST,
        email,
        {"email_address": email, "status_if_new": "pending", "merge_fields": {"FNAME": "Bo"}},
    )
    assert created["status"] == "pending"
    assert created["id"] == get_subscriber_hash(email)
    assert official.lists.get_list_member(LIST, created["id"])["merge_fields"]["FNAME"] == "Bo"
    assert official.lists.get_list_member(LIST, email.upper())["id"] == created["id"]
    stored = sandbox.client.member(LIST, email)
    assert stored is not None and stored["status"] == "pending"


def test_paging_mailchimp3_get_all(mc3: MailChimp, sandbox: SandboxServer) -> None:
    emails = [f"m{i:05d}@mail.shop-demo.io" for i in range(2000)]
    sandbox.client.seed_members(LIST, [{"email_address": e} for e in emails])
    sandbox.client.reset_stats()
    reply = mc3.lists.members.all(LIST, get_all=True, count=1000)
    assert [m["email_address"] for m in reply["members"]] == emails  # insertion order
    assert reply["total_items"] == 2000
    # 2000 / 1000: mailchimp3 also asks for offset 2000, which must be empty, not an error.
    assert sandbox.client.stats()["requests_by_kind"]["members"] == 3
    empty = mc3.lists.members.all(LIST, count=1000, offset=2000)
    assert empty["members"] == [] and empty["total_items"] == 2000


def test_paging_official(official: Any, sandbox: SandboxServer) -> None:
    statuses = ["subscribed", "unsubscribed", "cleaned", "pending"]
    sandbox.client.seed_members(
        LIST,
        [
            {"email_address": f"p{i}@mail.shop-demo.io", "status": statuses[i % 4]}
            for i in range(2000)
        ],
    )
    seen: list[str] = []
    offset = 0
    while True:
        page = official.lists.get_list_members_info(LIST, count=1000, offset=offset)
        assert page["total_items"] == 2000
        if not page["members"]:
            break
        seen += [m["email_address"] for m in page["members"]]
        offset += 1000
    assert len(seen) == len(set(seen)) == 2000
    only = official.lists.get_list_members_info(LIST, status="cleaned", count=1000)
    assert only["total_items"] == 500
    assert {m["status"] for m in only["members"]} == {"cleaned"}


def test_batch_of_1000_puts_mailchimp3(mc3: MailChimp, sandbox: SandboxServer) -> None:
    batch = mc3.batch_operations.create({"operations": put_ops(1000)})
    assert batch["status"] == "pending" and batch["total_operations"] == 1000
    assert batch["response_body_url"] == ""
    deadline = time.monotonic() + 20
    while (batch := mc3.batch_operations.get(batch["id"]))["status"] != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (batch["finished_operations"], batch["errored_operations"]) == (1000, 0)
    assert batch["completed_at"]
    assert batch["response_body_url"].startswith(f"{sandbox.url}/_sandbox/batch-results/")
    check_batch_results(read_archive(batch["response_body_url"]), 1000)
    assert sandbox.client.members(LIST)["counts"]["subscribed"] == 1000
    assert [b["id"] for b in mc3.batch_operations.all()["batches"]] == [batch["id"]]
    mc3.batch_operations.delete(batch["id"])
    assert mc3.batch_operations.all()["total_items"] == 0


def test_batch_of_1000_puts_official(official: Any, sandbox: SandboxServer) -> None:
    batch = official.batches.start({"operations": put_ops(1000)})
    deadline = time.monotonic() + 20
    while (batch := official.batches.status(batch["id"]))["status"] != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert batch["errored_operations"] == 0
    check_batch_results(read_archive(batch["response_body_url"]), 1000)
    assert official.batches.list()["total_items"] == 1
