"""Mailchimp's member rules and error documents, as the sync will meet them."""

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
PROBLEM = "application/problem+json; charset=utf-8"
ERROR_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"


def assert_problem(response: Any, status: int, title: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert (body["type"], body["title"], body["status"]) == (ERROR_TYPE, title, status)
    assert body["detail"] and len(body["instance"]) == 36
    return body


def test_compliance_state_blocks_resubscribe(
    mc3: MailChimp, sandbox: SandboxServer, api: Any
) -> None:
    sandbox.client.seed_members(
        LIST,
        [
            {"email_address": "gone@mail.shop-demo.io", "status": "unsubscribed"},
            {"email_address": "bounced@mail.shop-demo.io", "status": "cleaned"},
        ],
    )
    for email in ("gone@mail.shop-demo.io", "bounced@mail.shop-demo.io"):
        with pytest.raises(MailChimpError) as exc:
            mc3.lists.members.create_or_update(
                LIST, subscriber_hash(email), put_body(email, status="subscribed")
            )
        error = exc.value.args[0]
        assert error["title"] == "Member In Compliance State"
        assert error["detail"] == (
            f"{email} is in a compliance state due to unsubscribe, bounce, or compliance "
            "review and cannot be subscribed."
        )
        assert error["response"].headers["Content-Type"] == PROBLEM
    # Re-opt-in by e-mail (pending) is allowed for an unsubscribed member.
    reply = api("PATCH", f"lists/{LIST}/members/gone@mail.shop-demo.io", json={"status": "pending"})
    assert reply.status_code == 200 and reply.json()["status"] == "pending"
    assert sandbox.client.member(LIST, "bounced@mail.shop-demo.io")["status"] == "cleaned"  # type: ignore[index]


def test_status_if_new_never_changes_existing_member(
    mc3: MailChimp, sandbox: SandboxServer
) -> None:
    email = "left@mail.shop-demo.io"
    sandbox.client.seed_members(
        LIST,
        [
            {
                "email_address": email,
                "status": "unsubscribed",
                "merge_fields": {"FNAME": "Old", "LNAME": "Name"},
            }
        ],
    )
    reply = mc3.lists.members.create_or_update(
        LIST, subscriber_hash(email), put_body(email, merge_fields={"FNAME": "New"})
    )
    assert reply["status"] == "unsubscribed"
    assert reply["merge_fields"] == {"FNAME": "New", "LNAME": "Name"}
    stored = sandbox.client.member(LIST, email)
    assert stored is not None and stored["status"] == "unsubscribed"
    assert stored["full_name"] == "New Name"


def test_forgotten_address_cannot_be_reimported(official: Any, sandbox: SandboxServer) -> None:
    email = "erased@mail.shop-demo.io"
    sandbox.client.forget(LIST, [email])
    with pytest.raises(ApiClientError) as exc:
        official.lists.set_list_member(LIST, email, put_body(email))
    body = official_error(exc)
    assert exc.value.status_code == 400
    assert body["title"] == "Forgotten Email Not Subscribed"
    assert body["detail"] == (
        f"{email} was permanently deleted and cannot be re-imported. The contact must "
        "re-subscribe to get back on the list."
    )
    assert sandbox.client.member(LIST, email) is None


def test_invalid_address(api: Any) -> None:
    for email in ("no-at-sign.io", "a@b", "two@@mail.io", "dot.@mail.io", "sp ace@mail.io"):
        reply = api("PUT", f"lists/{LIST}/members/{subscriber_hash(email)}", json=put_body(email))
        body = assert_problem(reply, 400, "Invalid Resource")
        assert body["detail"] == "Please provide a valid email address."


@pytest.mark.parametrize(
    "email",
    [
        "jane@example.com",
        "jane@EXAMPLE.org",
        "jane@example.net",
        "jane@test.com",
        "jane@shop.test",
        "jane@mail.invalid",
        "jane@foo.example",
        "test@mail.shop-demo.io",
        "FAKE@mail.shop-demo.io",
    ],
)
def test_fake_looking_address(official: Any, email: str) -> None:
    with pytest.raises(ApiClientError) as exc:
        official.lists.set_list_member(LIST, email, put_body(email))
    body = official_error(exc)
    assert body["title"] == "Invalid Resource"
    assert body["detail"] == f"{email} looks fake or invalid, please enter a real email address."


def test_required_merge_field(official: Any, sandbox: SandboxServer) -> None:
    sandbox.client.create_list(
        "Strict",
        [{"tag": "FNAME", "name": "First name", "type": "text", "required": True}],
        list_id="5eed5eed00",
    )
    email = "nameless@mail.shop-demo.io"
    with pytest.raises(ApiClientError) as exc:
        official.lists.set_list_member("5eed5eed00", email, put_body(email))
    body = official_error(exc)
    assert (body["title"], body["detail"]) == (
        "Invalid Resource",
        "Your merge fields were invalid.",
    )
    assert body["errors"] == [{"field": "FNAME", "message": "Please enter a value"}]
    # The official client sends skip_merge_validation=True (capitalised).
    created = official.lists.set_list_member(
        "5eed5eed00", email, put_body(email), skip_merge_validation=True
    )
    assert created["status"] == "subscribed"


def test_member_exists_on_post(mc3: MailChimp) -> None:
    body = {"email_address": "twice@mail.shop-demo.io", "status": "subscribed"}
    mc3.lists.members.create(LIST, body)
    with pytest.raises(MailChimpError) as exc:
        mc3.lists.members.create(LIST, body)
    assert exc.value.args[0]["title"] == "Member Exists"
    assert exc.value.args[0]["detail"] == (
        "twice@mail.shop-demo.io is already a list member. Use PUT to insert or update list "
        "members."
    )


def test_put_requires_a_status_and_a_matching_hash(api: Any) -> None:
    email = "new@mail.shop-demo.io"
    reply = api(
        "PUT", f"lists/{LIST}/members/{subscriber_hash(email)}", json={"email_address": email}
    )
    assert assert_problem(reply, 400, "Invalid Resource")["errors"][0]["field"] == "status_if_new"
    reply = api(
        "PUT",
        f"lists/{LIST}/members/{subscriber_hash('other@mail.shop-demo.io')}",
        json=put_body(email),
    )
    assert (
        "does not belong to the email address"
        in assert_problem(reply, 400, "Invalid Resource")["detail"]
    )


def test_not_found_method_not_allowed_and_bad_json(api: Any) -> None:
    assert_problem(api("GET", "lists/nope"), 404, "Resource Not Found")
    assert_problem(api("GET", f"lists/{LIST}/members/{'0' * 32}"), 404, "Resource Not Found")
    assert_problem(api("GET", "no/such/thing"), 404, "Resource Not Found")
    reply = api("DELETE", "lists")
    assert_problem(reply, 405, "Method Not Allowed")
    assert reply.headers["Allow"] == "GET"
    reply = api(
        "PUT",
        f"lists/{LIST}/members/x@mail.shop-demo.io",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert_problem(reply, 400, "JSON Parse Exception")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400])
def test_nan_and_infinity_are_not_json(api: Any, sandbox: SandboxServer, literal: str) -> None:
    # Python's json reads these (and json.dumps writes the first three for a float that
    # is not finite, reads 1e400 as an infinity and 400 digits as an int no double
    # holds); JSON has no such value, or none Mailchimp could store.
    email = "nan@mail.shop-demo.io"
    body = '{"email_address": "%s", "status_if_new": "subscribed", "merge_fields": {"AGE": %s}}'
    reply = api(
        "PUT",
        f"lists/{LIST}/members/{email}",
        data=(body % (email, literal)).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert_problem(reply, 400, "JSON Parse Exception")
    assert sandbox.client.member(LIST, email) is None


def test_api_key_missing_invalid_and_added(api: Any, sandbox: SandboxServer) -> None:
    body = assert_problem(api("GET", "ping", key=None), 401, "API Key Missing")
    assert body["detail"] == "Your request did not include an API key."
    body = assert_problem(api("GET", "ping", key="f" * 32 + "-us9"), 401, "API Key Invalid")
    assert body["detail"] == (
        "Your API key may be invalid, or you've attempted to access the wrong datacenter."
    )
    sandbox.client.add_key("f" * 32 + "-us9")
    assert api("GET", "ping", key="f" * 32 + "-us9").status_code == 200
    bearer = api("GET", "ping", key=None, headers={"Authorization": f"Bearer {sandbox.api_key}"})
    assert bearer.status_code == 200


def test_delete_archives_and_delete_permanent_forgets(api: Any, sandbox: SandboxServer) -> None:
    email = "bye@mail.shop-demo.io"
    assert api("PUT", f"lists/{LIST}/members/{email}", json=put_body(email)).status_code == 200
    assert api("DELETE", f"lists/{LIST}/members/{email}").status_code == 204
    assert api("GET", f"lists/{LIST}/members/{email}").json()["status"] == "archived"
    assert api("GET", f"lists/{LIST}/members").json()["total_items"] == 0
    reply = api("POST", f"lists/{LIST}/members/{email}/actions/delete-permanent")
    assert reply.status_code == 204
    assert_problem(
        api("PUT", f"lists/{LIST}/members/{email}", json=put_body(email)),
        400,
        "Forgotten Email Not Subscribed",
    )


def test_batch_subscribe(mc3: MailChimp, sandbox: SandboxServer, api: Any) -> None:
    sandbox.client.seed_members(
        LIST, [{"email_address": "out@mail.shop-demo.io", "status": "unsubscribed"}]
    )
    members = [
        {"email_address": "in1@mail.shop-demo.io", "status": "subscribed"},
        {"email_address": "out@mail.shop-demo.io", "status": "subscribed"},
        {"email_address": "x@example.com", "status": "subscribed"},
    ]
    reply = mc3.lists.update_members(LIST, {"members": members, "update_existing": False})
    assert (reply["total_created"], reply["total_updated"], reply["error_count"]) == (1, 0, 2)
    codes = {e["email_address"]: e["error_code"] for e in reply["errors"]}
    assert codes == {
        "out@mail.shop-demo.io": "ERROR_CONTACT_EXISTS",
        "x@example.com": "ERROR_GENERIC",
    }
    # update_existing really resubscribes: the reason the sync must not use this path.
    reply = mc3.lists.update_members(LIST, {"members": members[1:2], "update_existing": True})
    assert reply["total_updated"] == 1
    assert reply["updated_members"][0]["status"] == "subscribed"
    too_many = [
        {"email_address": f"n{i}@mail.shop-demo.io", "status": "subscribed"} for i in range(501)
    ]
    assert_problem(
        api("POST", f"lists/{LIST}", json={"members": too_many}), 400, "Invalid Resource"
    )
