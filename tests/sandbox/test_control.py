"""The control API, the app factory and the state it exposes."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from flask_mcsync.sandbox import (
    DEFAULT_API_KEY,
    DEFAULT_LIST_ID,
    SandboxClient,
    create_sandbox_app,
)
from flask_mcsync.sandbox.server import SandboxServer

LIST = DEFAULT_LIST_ID


def test_seed_counts_and_reset(sandbox: SandboxServer, api: Any) -> None:
    client = sandbox.client
    statuses = ["subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived"]
    reply = client.seed_members(
        LIST,
        [
            {
                "email_address": f"s{i}@mail.shop-demo.io",
                "status": s,
                "merge_fields": {"FNAME": f"S{i}"},
            }
            for i, s in enumerate(statuses)
        ],
    )
    assert reply == {"created": 6, "updated": 0}
    assert client.seed_members(
        LIST, [{"email_address": "S0@mail.shop-demo.io", "status": "cleaned"}]
    ) == {"created": 0, "updated": 1}
    members = client.members(LIST)
    assert members["counts"] == {
        "subscribed": 0,
        "unsubscribed": 1,
        "cleaned": 2,
        "pending": 1,
        "transactional": 1,
        "archived": 1,
    }
    assert len(members["members"]) == 6
    stats = api("GET", f"lists/{LIST}").json()["stats"]
    assert (stats["member_count"], stats["unsubscribe_count"], stats["cleaned_count"]) == (0, 1, 2)
    client.set_faults(latency_ms=5)
    client.reset()
    assert client.members(LIST)["members"] == []
    assert client.faults()["latency_ms"] == 0
    assert [a["id"] for a in client.lists()] == [LIST]


def test_member_lookup_and_unknown_list(sandbox: SandboxServer) -> None:
    client = sandbox.client
    assert client.member(LIST, "nobody@mail.shop-demo.io") is None
    client.seed_members(LIST, [{"email_address": "Who@Mail.Shop-Demo.io"}])
    found = client.member(LIST, "who@mail.shop-demo.io")
    assert found is not None and found["email_address"] == "Who@Mail.Shop-Demo.io"
    reply = requests.post(f"{sandbox.url}/_sandbox/lists/nope/members", json=[], timeout=5)
    assert reply.status_code == 404
    created = client.create_list("Other", double_optin=True)
    assert created["double_optin"] is True and len(created["id"]) == 10


def test_stats_by_method_and_kind(sandbox: SandboxServer, api: Any) -> None:
    api("GET", "ping")
    api("GET", f"lists/{LIST}/members")
    api(
        "PUT",
        f"lists/{LIST}/members/k@mail.shop-demo.io",
        json={"email_address": "k@mail.shop-demo.io", "status_if_new": "subscribed"},
    )
    stats = sandbox.client.stats()
    assert stats["requests_by_method"] == {"GET": 2, "PUT": 1}
    assert stats["requests_by_kind"] == {"ping": 1, "members": 1, "member": 1}
    sandbox.client.reset_stats()
    assert sandbox.client.stats()["requests_total"] == 0


def test_fields_and_patch_address_change(api: Any) -> None:
    email = "old@mail.shop-demo.io"
    api(
        "PUT",
        f"lists/{LIST}/members/{email}",
        json={"email_address": email, "status_if_new": "subscribed"},
    )
    page = api(
        "GET", f"lists/{LIST}/members", params={"fields": "members.email_address,total_items"}
    ).json()
    assert page == {"members": [{"email_address": email}], "total_items": 1}
    moved = api(
        "PATCH", f"lists/{LIST}/members/{email}", json={"email_address": "new@mail.shop-demo.io"}
    ).json()
    assert moved["email_address"] == "new@mail.shop-demo.io"
    assert api("GET", f"lists/{LIST}/members/{email}").status_code == 404
    assert api("GET", f"lists/{LIST}/members/new@mail.shop-demo.io").status_code == 200


def test_deleted_batch_stops_and_archive_404(api: Any, sandbox: SandboxServer) -> None:
    # Two operations a second: deleted well before its 100 operations could be done.
    sandbox.client.set_faults(batch_ops_per_second=2)
    ops = [{"method": "GET", "path": "ping"} for _ in range(100)]
    batch_id = api("POST", "batches", json={"operations": ops}).json()["id"]
    deadline = time.monotonic() + 30
    while sandbox.client.stats()["operations_processed"] < 1:
        assert time.monotonic() < deadline, sandbox.client.stats()
        time.sleep(0.02)
    assert api("DELETE", f"batches/{batch_id}").status_code == 204
    assert api("GET", f"batches/{batch_id}").status_code == 404
    missing = requests.get(f"{sandbox.url}/_sandbox/batch-results/{batch_id}.tar.gz", timeout=5)
    assert missing.status_code == 404 and "NoSuchKey" in missing.text
    processed = sandbox.client.stats()["operations_processed"]
    assert 1 <= processed < 100
    # Unpaced, a batch still running would do the rest of its operations before the
    # next batch (they run one at a time, in order): once that one is finished, the
    # deleted one has done nothing more.
    sandbox.client.set_faults(batch_ops_per_second=0)
    after = api("POST", "batches", json={"operations": [{"method": "GET", "path": "ping"}]})
    deadline = time.monotonic() + 30
    while api("GET", f"batches/{after.json()['id']}").json()["status"] != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert sandbox.client.stats()["operations_processed"] == processed + 1


def test_batch_operation_errors_are_per_operation(api: Any) -> None:
    ops = [
        {
            "method": "PUT",
            "path": f"/lists/{LIST}/members/a@example.com",
            "operation_id": "x",
            "body": json.dumps({"email_address": "a@example.com", "status_if_new": "subscribed"}),
        },
        {
            "method": "PUT",
            "path": f"lists/{LIST}/members/b@mail.shop-demo.io",
            "params": {"skip_merge_validation": "true"},
            "operation_id": "y",
            "body": json.dumps(
                {"email_address": "b@mail.shop-demo.io", "status_if_new": "subscribed"}
            ),
        },
        {
            "method": "PATCH",
            "path": f"lists/{LIST}/members/b@mail.shop-demo.io",
            "body": "{broken",
            "operation_id": "z",
        },
    ]
    batch_id = api("POST", "batches", json={"operations": ops}).json()["id"]
    deadline = time.monotonic() + 5
    while (batch := api("GET", f"batches/{batch_id}").json())["status"] != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert (batch["finished_operations"], batch["errored_operations"]) == (3, 2)
    assert api("POST", "batches", json={"operations": [{"path": "ping"}]}).status_code == 400


def test_app_factory_without_a_server() -> None:
    app = create_sandbox_app()
    try:
        web = app.test_client()
        reply = web.get("/3.0/ping", headers={"Authorization": f"apikey {DEFAULT_API_KEY}"})
        assert reply.get_json() == {"health_status": "Everything's Chimpy!"}
        assert web.get("/3.0/ping").status_code == 401
    finally:
        app.extensions["mcsync_sandbox"].worker.stop()
        app.extensions["mcsync_sandbox"].dispatcher.stop()


def test_server_context_manager_and_client() -> None:
    with SandboxServer() as server:
        assert server.api_url == f"http://127.0.0.1:{server.port}/3.0/"
        client = SandboxClient(server.api_url)  # the API URL works as well as the root
        try:
            assert client.members()["total_items"] == 0
        finally:
            client.close()
