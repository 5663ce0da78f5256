"""Tags, interests, marketing permissions, language and unsubscribe_reason, with both clients."""

from __future__ import annotations

from typing import Any

import pytest
from mailchimp3 import MailChimp
from mailchimp3.mailchimpclient import MailChimpError
from mailchimp_marketing.api_client import ApiClientError
from sandbox_calls import official_error, put_body

from flask_mcsync.sandbox import DEFAULT_LIST_ID
from flask_mcsync.sandbox.server import SandboxServer
from flask_mcsync.sandbox.state import subscriber_hash

LIST = DEFAULT_LIST_ID


def test_member_tags_endpoint_and_tag_ids(mc3: MailChimp, official: Any) -> None:
    email = "tagged@mail.shop-demo.io"
    key = subscriber_hash(email)
    official.lists.set_list_member(LIST, email, put_body(email))
    mc3.lists.members.tags.update(
        LIST,
        key,
        {"tags": [{"name": "VIP", "status": "active"}, {"name": "Wholesale", "status": "active"}]},
    )
    official.lists.update_list_member_tags(
        LIST,
        email,
        {
            "tags": [
                {"name": "Wholesale", "status": "inactive"},
                {"name": "Newsletter", "status": "active"},
            ]
        },
    )
    member = mc3.lists.members.get(LIST, key)
    assert [t["name"] for t in member["tags"]] == ["VIP", "Newsletter"]
    assert member["tags_count"] == 2
    page = official.lists.get_list_member_tags(LIST, email, count=1)
    assert (page["total_items"], [t["name"] for t in page["tags"]]) == (2, ["VIP"])
    assert set(page["tags"][0]) == {"id", "name", "date_added"}
    # Audience-wide tag ids: tag-search and static segments give the same ids.
    found = official.lists.tag_search(LIST, name="vi")
    assert found["total_items"] == 1 and found["tags"][0]["name"] == "VIP"
    vip_id = found["tags"][0]["id"]
    assert isinstance(vip_id, int) and vip_id == member["tags"][0]["id"]
    segments = mc3.lists.segments.all(LIST, type="static")["segments"]
    by_name = {s["name"]: s for s in segments}
    assert by_name["VIP"]["id"] == vip_id and by_name["VIP"]["member_count"] == 1
    assert by_name["Wholesale"]["member_count"] == 0
    assert official.lists.get_segment(LIST, str(vip_id))["name"] == "VIP"
    assert official.lists.list_segments(LIST, type="saved")["total_items"] == 0


def test_tags_on_create_but_not_on_put(mc3: MailChimp, official: Any, api: Any) -> None:
    created = official.lists.add_list_member(
        LIST, {"email_address": "new@mail.shop-demo.io", "status": "subscribed", "tags": ["Signup"]}
    )
    assert [t["name"] for t in created["tags"]] == ["Signup"]
    put = mc3.lists.members.create_or_update(
        LIST,
        subscriber_hash("put@mail.shop-demo.io"),
        put_body("put@mail.shop-demo.io", tags=["Ignored"]),
    )
    assert (put["tags"], put["tags_count"]) == ([], 0)
    refused = api(
        "POST",
        f"lists/{LIST}/members/new@mail.shop-demo.io/tags",
        json={"tags": [{"name": "x", "status": "on"}]},
    )
    assert refused.status_code == 400 and refused.json()["title"] == "Invalid Resource"
    missing = api(
        "POST",
        f"lists/{LIST}/members/nobody@mail.shop-demo.io/tags",
        json={"tags": [{"name": "x", "status": "active"}]},
    )
    assert (missing.status_code, missing.json()["title"]) == (404, "Resource Not Found")


def test_interest_categories_and_interests_official(official: Any) -> None:
    category = official.lists.create_list_interest_category(
        LIST, {"title": "Topics", "type": "checkboxes"}
    )
    assert (category["title"], category["type"], category["list_id"]) == (
        "Topics",
        "checkboxes",
        LIST,
    )
    shoes = official.lists.create_interest_category_interest(
        LIST, category["id"], {"name": "Shoes"}
    )
    assert (shoes["name"], shoes["category_id"], shoes["subscriber_count"]) == (
        "Shoes",
        category["id"],
        "0",
    )
    official.lists.create_interest_category_interest(LIST, category["id"], {"name": "Hats"})
    listed = official.lists.list_interest_category_interests(LIST, category["id"])
    assert [i["name"] for i in listed["interests"]] == ["Shoes", "Hats"]
    renamed = official.lists.update_interest_category_interest(
        LIST, category["id"], shoes["id"], {"name": "Boots"}
    )
    assert renamed["name"] == "Boots"
    assert (
        official.lists.get_interest_category_interest(LIST, category["id"], shoes["id"])["name"]
        == "Boots"
    )
    assert (
        official.lists.update_interest_category(
            LIST, category["id"], {"title": "Products", "type": "checkboxes"}
        )["title"]
        == "Products"
    )
    assert official.lists.get_interest_category(LIST, category["id"])["title"] == "Products"
    official.lists.delete_interest_category_interest(LIST, category["id"], shoes["id"])
    with pytest.raises(ApiClientError) as exc:
        official.lists.get_interest_category_interest(LIST, category["id"], shoes["id"])
    assert official_error(exc)["title"] == "Resource Not Found"
    official.lists.delete_interest_category(LIST, category["id"])
    assert official.lists.get_list_interest_categories(LIST)["total_items"] == 0


def test_interest_categories_and_interests_mailchimp3(mc3: MailChimp) -> None:
    category = mc3.lists.interest_categories.create(LIST, {"title": "Size", "type": "radio"})
    interest = mc3.lists.interest_categories.interests.create(
        LIST, category["id"], {"name": "Large"}
    )
    assert (
        mc3.lists.interest_categories.all(LIST, get_all=True)["categories"][0]["id"]
        == category["id"]
    )
    assert (
        mc3.lists.interest_categories.interests.all(LIST, category["id"], get_all=True)[
            "interests"
        ][0]["id"]
        == interest["id"]
    )
    mc3.lists.interest_categories.interests.delete(LIST, category["id"], interest["id"])
    mc3.lists.interest_categories.delete(LIST, category["id"])
    with pytest.raises(MailChimpError) as exc:
        mc3.lists.interest_categories.get(LIST, category["id"])
    assert exc.value.args[0]["status"] == 404


def test_member_interests_and_unknown_interest_id(
    mc3: MailChimp, official: Any, sandbox: SandboxServer
) -> None:
    category = official.lists.create_list_interest_category(
        LIST, {"title": "Topics", "type": "checkboxes"}
    )
    shoes = official.lists.create_interest_category_interest(
        LIST, category["id"], {"name": "Shoes"}
    )["id"]
    hats = official.lists.create_interest_category_interest(LIST, category["id"], {"name": "Hats"})[
        "id"
    ]
    email = "groups@mail.shop-demo.io"
    created = official.lists.add_list_member(
        LIST, {"email_address": email, "status": "subscribed", "interests": {shoes: True}}
    )
    assert created["interests"] == {shoes: True, hats: False}
    updated = mc3.lists.members.update(LIST, subscriber_hash(email), {"interests": {hats: True}})
    assert updated["interests"] == {shoes: True, hats: True}
    put = official.lists.set_list_member(LIST, email, put_body(email, interests={shoes: False}))
    assert put["interests"] == {shoes: False, hats: True}
    assert (
        official.lists.get_interest_category_interest(LIST, category["id"], hats)[
            "subscriber_count"
        ]
        == "1"
    )
    # An id the audience does not have: refused, and nothing of the call is applied.
    with pytest.raises(MailChimpError) as exc:
        mc3.lists.members.update(
            LIST,
            subscriber_hash(email),
            {"merge_fields": {"FNAME": "Changed"}, "interests": {"c06bb4b529": True}},
        )
    error = exc.value.args[0]
    assert (error["status"], error["title"], error["detail"]) == (
        400,
        "Invalid Resource",
        "Invalid interest ID: 'c06bb4b529'.",
    )
    with pytest.raises(ApiClientError) as official_exc:
        official.lists.set_list_member(
            LIST,
            "other@mail.shop-demo.io",
            put_body("other@mail.shop-demo.io", interests={"0123456789": True}),
        )
    assert official_error(official_exc)["detail"] == "Invalid interest ID: '0123456789'."
    assert sandbox.client.member(LIST, "other@mail.shop-demo.io") is None
    assert sandbox.client.member(LIST, email)["merge_fields"]["FNAME"] == ""  # type: ignore[index]
    # Deleting a group takes it off every member.
    official.lists.delete_interest_category_interest(LIST, category["id"], hats)
    assert mc3.lists.members.get(LIST, subscriber_hash(email))["interests"] == {shoes: False}


def test_marketing_permissions(mc3: MailChimp, official: Any, sandbox: SandboxServer) -> None:
    assert official.lists.get_list(LIST)["marketing_permissions"] is False
    sandbox.client.add_marketing_permission(LIST, "Email", "a1b2c3d4e5")
    sandbox.client.add_marketing_permission(LIST, "Customized online advertising", "f6e5d4c3b2")
    assert [p["text"] for p in sandbox.client.marketing_permissions(LIST)] == [
        "Email",
        "Customized online advertising",
    ]
    assert mc3.lists.get(LIST)["marketing_permissions"] is True
    email = "gdpr@mail.shop-demo.io"
    created = official.lists.set_list_member(
        LIST,
        email,
        put_body(
            email,
            marketing_permissions=[{"marketing_permission_id": "a1b2c3d4e5", "enabled": True}],
        ),
    )
    assert created["marketing_permissions"] == [
        {"marketing_permission_id": "a1b2c3d4e5", "text": "Email", "enabled": True},
        {
            "marketing_permission_id": "f6e5d4c3b2",
            "text": "Customized online advertising",
            "enabled": False,
        },
    ]
    with pytest.raises(MailChimpError) as exc:
        mc3.lists.members.update(
            LIST,
            subscriber_hash(email),
            {"marketing_permissions": [{"marketing_permission_id": "0000000000", "enabled": True}]},
        )
    assert exc.value.args[0]["title"] == "Invalid Resource"
    assert "0000000000" in exc.value.args[0]["detail"]
    with pytest.raises(ApiClientError) as official_exc:
        official.lists.update_list_member(
            LIST,
            email,
            {
                "marketing_permissions": [
                    {"marketing_permission_id": "a1b2c3d4e5", "enabled": "yes"}
                ]
            },
        )
    assert official_error(official_exc)["errors"][0]["field"].endswith("enabled")
    member = mc3.lists.members.get(LIST, subscriber_hash(email))
    assert [p["enabled"] for p in member["marketing_permissions"]] == [True, False]


def test_marketing_permissions_refused_on_an_audience_without_them(api: Any) -> None:
    email = "plain@mail.shop-demo.io"
    reply = api(
        "PUT",
        f"lists/{LIST}/members/{email}",
        json=put_body(
            email,
            marketing_permissions=[{"marketing_permission_id": "a1b2c3d4e5", "enabled": True}],
        ),
    )
    assert (reply.status_code, reply.json()["title"]) == (400, "Invalid Resource")


def test_language_is_stored_and_returned(mc3: MailChimp, official: Any) -> None:
    email = "lang@mail.shop-demo.io"
    created = official.lists.add_list_member(
        LIST, {"email_address": email, "status": "subscribed", "language": "fr"}
    )
    assert created["language"] == "fr"
    assert (
        mc3.lists.members.update(LIST, subscriber_hash(email), {"language": "de"})["language"]
        == "de"
    )
    put = mc3.lists.members.create_or_update(
        LIST, subscriber_hash(email), put_body(email, language="es_ES")
    )
    assert put["language"] == "es_ES"
    assert official.lists.get_list_member(LIST, email)["language"] == "es_ES"
    with pytest.raises(ApiClientError):
        official.lists.update_list_member(LIST, email, {"language": 7})


def test_unsubscribe_reason(mc3: MailChimp, official: Any, sandbox: SandboxServer) -> None:
    sandbox.client.seed_members(
        LIST,
        [
            {"email_address": f"{who}@mail.shop-demo.io", "status": "subscribed"}
            for who in ("self", "admin", "api")
        ],
    )
    sandbox.client.unsubscribe(LIST, "self@mail.shop-demo.io")
    sandbox.client.unsubscribe(LIST, "admin@mail.shop-demo.io", source="admin")
    official.lists.update_list_member(LIST, "api@mail.shop-demo.io", {"status": "unsubscribed"})
    reasons = {
        who: mc3.lists.members.get(LIST, subscriber_hash(f"{who}@mail.shop-demo.io"))[
            "unsubscribe_reason"
        ]
        for who in ("self", "admin", "api")
    }
    assert reasons == {
        "self": "I no longer want to receive these emails",
        "admin": "N/A (Unsubscribed by an admin)",
        "api": "N/A (Unsubscribed by API)",
    }
    back = official.lists.update_list_member(
        LIST, "api@mail.shop-demo.io", {"status": "subscribed"}
    )
    assert "unsubscribe_reason" not in back


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_a_create_with_a_language_is_stamped_once_however_the_clock_ticks(
    mc3: MailChimp, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """Mailchimp stamps a new contact once: last_changed equals timestamp_opt. The
    sandbox used to set the language after creating the member, and a second boundary
    crossed between the two made last_changed later: a contact just created then looked
    "changed after it opted in", which callers read as "existed before" (an "updated"
    for a new subscriber, seen in the thousand-signups test under load)."""
    from flask_mcsync.sandbox import members, state

    ticks = iter(f"2026-11-25T23:10:{n:02d}+00:00" for n in range(60))
    monkeypatch.setattr(members, "now_iso", lambda: next(ticks))
    monkeypatch.setattr(state, "now_iso", lambda: next(ticks))
    email = "stamped.once@mail.shop-demo.io"
    body = {"email_address": email, "language": "fr"}
    if method == "PUT":
        mc3.lists.members.create_or_update(
            LIST, subscriber_hash(email), {**body, "status_if_new": "subscribed"}
        )
    else:
        mc3.lists.members.create(LIST, {**body, "status": "subscribed"})
    member = mc3.lists.members.get(LIST, subscriber_hash(email))
    assert member["language"] == "fr"
    assert member["last_changed"] == member["timestamp_opt"] != ""
    # A later change of language is a change of its own, and moves last_changed.
    mc3.lists.members.update(LIST, subscriber_hash(email), {"language": "de"})
    changed = mc3.lists.members.get(LIST, subscriber_hash(email))
    assert changed["last_changed"] > changed["timestamp_opt"]
