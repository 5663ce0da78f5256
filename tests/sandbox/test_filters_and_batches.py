"""Member list filters (last_changed, unsubscribed_since), batch submission checks and
``GET /batches`` paging, with both clients."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mailchimp3 import MailChimp
from mailchimp3.mailchimpclient import MailChimpError
from mailchimp_marketing.api_client import ApiClientError

from flask_mcsync.sandbox import DEFAULT_LIST_ID
from flask_mcsync.sandbox.server import SandboxServer
from flask_mcsync.sandbox.state import subscriber_hash

LIST = DEFAULT_LIST_ID


def seed_history(sandbox: SandboxServer) -> None:
    sandbox.client.seed_members(
        LIST,
        [
            {
                "email_address": f"h{i}@mail.shop-demo.io",
                "last_changed": f"2026-01-0{i + 1}T10:00:00+00:00",
            }
            for i in range(5)
        ],
    )


def addresses(reply: dict[str, Any]) -> list[str]:
    return [m["email_address"] for m in reply["members"]]


def test_since_and_before_last_changed(
    mc3: MailChimp, official: Any, sandbox: SandboxServer
) -> None:
    seed_history(sandbox)
    # 2026-01-03T11:00+01:00 is h2's own second: "after" is strict.
    since = "2026-01-03T11:00:00+01:00"
    by_mc3 = mc3.lists.members.all(LIST, since_last_changed=since)
    by_official = official.lists.get_list_members_info(LIST, since_last_changed=since)
    for reply in (by_mc3, by_official):
        assert addresses(reply) == ["h3@mail.shop-demo.io", "h4@mail.shop-demo.io"]
        assert reply["total_items"] == 2
    window = official.lists.get_list_members_info(
        LIST, since_last_changed="2026-01-01T10:00:00Z", before_last_changed="2026-01-04T10:00:00Z"
    )
    assert addresses(window) == ["h1@mail.shop-demo.io", "h2@mail.shop-demo.io"]
    # Paged with the filter's own total.
    page = official.lists.get_list_members_info(
        LIST, since_last_changed="2025-12-31T00:00:00+00:00", count=2, offset=2
    )
    assert addresses(page) == ["h2@mail.shop-demo.io", "h3@mail.shop-demo.io"]
    assert page["total_items"] == 5


def test_every_change_moves_last_changed(official: Any, sandbox: SandboxServer) -> None:
    seed_history(sandbox)
    official.lists.set_list_member(LIST, "h0@mail.shop-demo.io", {"merge_fields": {"FNAME": "N"}})
    official.lists.update_list_member(LIST, "h1@mail.shop-demo.io", {"status": "unsubscribed"})
    official.lists.delete_list_member(LIST, "h2@mail.shop-demo.io")
    # Sending the same values again is no change.
    official.lists.set_list_member(LIST, "h3@mail.shop-demo.io", {"merge_fields": {}})
    recent = official.lists.get_list_members_info(LIST, since_last_changed="2026-02-01T00:00:00Z")
    assert addresses(recent) == ["h0@mail.shop-demo.io", "h1@mail.shop-demo.io"]
    archived = official.lists.get_list_members_info(
        LIST, status="archived", since_last_changed="2026-02-01T00:00:00Z"
    )
    assert addresses(archived) == ["h2@mail.shop-demo.io"]


def test_unsubscribed_since(
    mc3: MailChimp, official: Any, sandbox: SandboxServer, api: Any
) -> None:
    sandbox.client.seed_members(
        LIST,
        [
            {
                "email_address": "old@mail.shop-demo.io",
                "status": "unsubscribed",
                "unsubscribed_at": "2026-01-01T00:00:00+00:00",
            },
            {
                "email_address": "new@mail.shop-demo.io",
                "status": "unsubscribed",
                "unsubscribed_at": "2026-03-01T00:00:00+00:00",
            },
            {"email_address": "sub@mail.shop-demo.io"},
        ],
    )
    reply = official.lists.get_list_members_info(
        LIST, status="unsubscribed", unsubscribed_since="2026-02-01T00:00:00+00:00"
    )
    assert addresses(reply) == ["new@mail.shop-demo.io"]
    assert addresses(mc3.lists.members.all(LIST, unsubscribed_since="2026-02-01T00:00:00Z")) == [
        "new@mail.shop-demo.io"
    ]
    wrong = api("GET", f"lists/{LIST}/members?status=subscribed&unsubscribed_since=2026-02-01")
    assert wrong.status_code == 400
    bad = api("GET", f"lists/{LIST}/members?since_last_changed=yesterday")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "since_last_changed"


# --- batch submission ---------------------------------------------------------------


GOOD = "g@mail.shop-demo.io"
GOOD_OP = {
    "method": "PUT",
    "path": f"/lists/{LIST}/members/{subscriber_hash(GOOD)}",
    "body": json.dumps({"email_address": GOOD, "status_if_new": "subscribed"}),
}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({**GOOD_OP, "body": {"email_address": "g@mail.shop-demo.io"}}, "operations.item:1.body"),
        ({**GOOD_OP, "method": "FETCH"}, "operations.item:1.method"),
        ({**GOOD_OP, "path": f"/3.0/lists/{LIST}/members"}, "operations.item:1.path"),
        ({**GOOD_OP, "params": "fields=id"}, "operations.item:1.params"),
    ],
)
def test_malformed_operation_refuses_whole_batch(
    mc3: MailChimp, official: Any, sandbox: SandboxServer, bad: dict[str, Any], field: str
) -> None:
    body = {"operations": [GOOD_OP, bad]}
    if not field.endswith("method"):  # mailchimp3 checks the method itself (ValueError)
        with pytest.raises(MailChimpError) as exc:
            mc3.batch_operations.create(body)
        error = exc.value.args[0]
        assert (error["status"], error["title"]) == (400, "Invalid Resource")
        assert [e["field"] for e in error["errors"]] == [field]
    with pytest.raises(ApiClientError) as exc2:
        official.batches.start(body)
    assert json.loads(exc2.value.text)["errors"][0]["field"] == field
    assert official.batches.list()["total_items"] == 0
    assert sandbox.client.member(LIST, "g@mail.shop-demo.io") is None


def test_batches_list_pages(mc3: MailChimp, official: Any, sandbox: SandboxServer) -> None:
    sandbox.client.set_faults(batch_start_delay=600)  # nothing runs: only listing matters
    ids = [
        official.batches.start({"operations": [{"method": "GET", "path": "/ping"}]})["id"]
        for _ in range(12)
    ]
    first = official.batches.list()
    assert first["total_items"] == 12 and [b["id"] for b in first["batches"]] == ids[:10]
    rest = mc3.batch_operations.all(count=10, offset=10)
    assert rest["total_items"] == 12 and [b["id"] for b in rest["batches"]] == ids[10:]
    every = mc3.batch_operations.all(get_all=True)
    assert [b["id"] for b in every["batches"]] == ids
