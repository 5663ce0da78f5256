"""Resources Mailchimp has that a sync may call: a single merge field (create, read,
update, delete) and ``contact_id`` as the member key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mailchimp3 import MailChimp
from mailchimp3.mailchimpclient import MailChimpError
from mailchimp_marketing.api_client import ApiClientError

from flask_mcsync.sandbox import DEFAULT_LIST_ID
from flask_mcsync.sandbox.merge_fields_api import TYPES
from flask_mcsync.sandbox.server import SandboxServer
from flask_mcsync.sandbox.state import subscriber_hash

LIST = DEFAULT_LIST_ID


def test_create_every_merge_field_type(mc3: MailChimp, official: Any) -> None:
    for n, field_type in enumerate(TYPES):
        body: dict[str, Any] = {"name": f"Field {n}", "type": field_type, "tag": f"f{n}"}
        if field_type in ("radio", "dropdown"):
            body["options"] = {"choices": ["Red", "Blue"]}
        create = mc3.lists.merge_fields.create if n % 2 else official.lists.add_list_merge_field
        created = create(LIST, body)
        assert (created["tag"], created["type"], created["required"]) == (
            f"F{n}",
            field_type,
            False,
        )
        if field_type in ("radio", "dropdown"):
            assert created["options"]["choices"] == ["Red", "Blue"]
    listed = official.lists.get_list_merge_fields(LIST, count=100)
    assert listed["total_items"] == 2 + len(TYPES)
    assert [f["type"] for f in listed["merge_fields"][2:]] == list(TYPES)


def test_merge_field_read_update_delete(
    mc3: MailChimp, official: Any, sandbox: SandboxServer
) -> None:
    created = official.lists.add_list_merge_field(
        LIST, {"name": "City", "type": "text", "required": True, "tag": "CITY"}
    )
    merge_id = created["merge_id"]
    assert mc3.lists.merge_fields.get(LIST, merge_id)["tag"] == "CITY"
    assert official.lists.get_list_merge_field(LIST, str(merge_id))["required"] is True
    sandbox.client.seed_members(
        LIST, [{"email_address": "c@mail.shop-demo.io", "merge_fields": {"CITY": "Lyon"}}]
    )
    updated = mc3.lists.merge_fields.update(LIST, merge_id, {"required": False, "name": "Town"})
    assert (updated["required"], updated["name"], updated["type"]) == (False, "Town", "text")
    official.lists.delete_list_merge_field(LIST, str(merge_id))
    with pytest.raises(MailChimpError) as exc:
        mc3.lists.merge_fields.get(LIST, merge_id)
    assert exc.value.args[0]["status"] == 404
    member = official.lists.get_list_member(LIST, "c@mail.shop-demo.io")
    assert "CITY" not in member["merge_fields"]


def test_merge_field_errors(official: Any) -> None:
    for body in (
        {"name": "X", "type": "colour"},
        {"type": "text"},
        {"name": "X", "type": "text", "tag": "WAY_TOO_LONG_TAG"},
    ):
        with pytest.raises(ApiClientError) as exc:
            official.lists.add_list_merge_field(LIST, body)
        assert json.loads(exc.value.text)["title"] == "Invalid Resource"
    with pytest.raises(ApiClientError) as exc:
        official.lists.add_list_merge_field(LIST, {"name": "Again", "type": "text", "tag": "FNAME"})
    assert "already exists" in json.loads(exc.value.text)["detail"]
    untagged = official.lists.add_list_merge_field(LIST, {"name": "Plain", "type": "number"})
    assert untagged["tag"] == f"MMERGE{untagged['merge_id']}"


def test_contact_id_is_a_member_key(mc3: MailChimp, official: Any, api: Any) -> None:
    email = "cid@mail.shop-demo.io"
    created = official.lists.set_list_member(
        LIST, email, {"email_address": email, "status_if_new": "subscribed"}
    )
    contact_id = created["contact_id"]
    assert len(contact_id) == 32 and contact_id != created["id"]
    assert official.lists.get_list_member(LIST, contact_id)["email_address"] == email
    reply = mc3.lists.members.update(LIST, contact_id, {"merge_fields": {"FNAME": "Cid"}})
    assert reply["id"] == subscriber_hash(email)
    # Stable across an address change.
    moved = official.lists.update_list_member(
        LIST, contact_id, {"email_address": "moved@mail.shop-demo.io"}
    )
    assert moved["contact_id"] == contact_id
    assert mc3.lists.members.get(LIST, contact_id)["email_address"] == "moved@mail.shop-demo.io"
    assert api("GET", f"lists/{LIST}/members/{'f' * 32}").status_code == 404
