"""Member rules where Mailchimp is stricter (or kinder) than a naive emulator.

Archived contacts, required merge fields on updates, merge value types, compliance
state by opt-out source, and the confirmation e-mail that ``status: pending`` sends.
Each behaviour is exercised with both real clients where they can express it.
"""

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
ANY_OF = "Data did not match any of the schemas described in anyOf."


def mc3_error(exc: pytest.ExceptionInfo[MailChimpError]) -> dict[str, Any]:
    error: dict[str, Any] = exc.value.args[0]
    return error


def with_required_city(sandbox: SandboxServer) -> str:
    created = sandbox.client.create_list(
        "Required",
        [{"tag": "FNAME", "name": "First name"}, {"tag": "CITY", "name": "City", "required": True}],
    )
    return str(created["id"])


# --- archived contacts -------------------------------------------------------------


def test_status_if_new_leaves_archived_contact_archived(
    mc3: MailChimp, official: Any, sandbox: SandboxServer
) -> None:
    for n, client in enumerate(("mc3", "official")):
        email = f"archived{n}@mail.shop-demo.io"
        sandbox.client.seed_members(LIST, [{"email_address": email, "status": "archived"}])
        body = put_body(email, merge_fields={"FNAME": "Still"})
        if client == "mc3":
            reply = mc3.lists.members.create_or_update(LIST, subscriber_hash(email), body)
        else:
            reply = official.lists.set_list_member(LIST, email, body)
        # Left archived (Mailchimp: "the re-add does not stick"); merge fields updated.
        assert (reply["status"], reply["merge_fields"]["FNAME"]) == ("archived", "Still")
        assert sandbox.client.member(LIST, email)["status"] == "archived"  # type: ignore[index]
    counts = sandbox.client.members(LIST)["counts"]
    assert counts["archived"] == 2 and counts["subscribed"] == 0


def test_explicit_status_unarchives(mc3: MailChimp, official: Any, sandbox: SandboxServer) -> None:
    sandbox.client.seed_members(
        LIST,
        [
            {"email_address": "back0@mail.shop-demo.io", "status": "archived"},
            {"email_address": "back1@mail.shop-demo.io", "status": "archived"},
        ],
    )
    reply = mc3.lists.members.create_or_update(
        LIST,
        subscriber_hash("back0@mail.shop-demo.io"),
        put_body("back0@mail.shop-demo.io", status="subscribed"),
    )
    assert reply["status"] == "subscribed"
    reply = official.lists.update_list_member(
        LIST, "back1@mail.shop-demo.io", {"status": "subscribed"}
    )
    assert reply["status"] == "subscribed"


def test_archived_members_listed_only_by_status_filter(
    official: Any, sandbox: SandboxServer
) -> None:
    sandbox.client.seed_members(
        LIST,
        [
            {"email_address": "a@mail.shop-demo.io", "status": "archived"},
            {"email_address": "s@mail.shop-demo.io"},
        ],
    )
    default = official.lists.get_list_members_info(LIST)
    assert [m["email_address"] for m in default["members"]] == ["s@mail.shop-demo.io"]
    archived = official.lists.get_list_members_info(LIST, status="archived")
    assert archived["total_items"] == 1
    assert archived["members"][0]["email_address"] == "a@mail.shop-demo.io"


@pytest.mark.parametrize("status", ["cleaned", "pending", "archived"])
def test_delete_refuses_cleaned_pending_archived(
    mc3: MailChimp, official: Any, sandbox: SandboxServer, status: str
) -> None:
    email = f"{status}@mail.shop-demo.io"
    sandbox.client.seed_members(LIST, [{"email_address": email, "status": status}])
    with pytest.raises(MailChimpError) as exc:
        mc3.lists.members.delete(LIST, subscriber_hash(email))
    error = mc3_error(exc)
    assert (error["status"], error["title"]) == (405, "Method Not Allowed")
    assert error["detail"] == (
        "This list member cannot be removed. Can not archive a contact "
        "that is bounced, pending or archived"
    )
    with pytest.raises(ApiClientError) as exc2:
        official.lists.delete_list_member(LIST, email)
    assert exc2.value.status_code == 405
    assert sandbox.client.member(LIST, email)["status"] == status  # type: ignore[index]


# --- required merge fields on existing members -------------------------------------


def test_required_field_checked_on_update_of_existing_member(
    mc3: MailChimp, official: Any, sandbox: SandboxServer
) -> None:
    list_id = with_required_city(sandbox)
    email = "nocity@mail.shop-demo.io"
    # The member predates the required field (seeded without it).
    sandbox.client.seed_members(
        list_id, [{"email_address": email, "merge_fields": {"FNAME": "Old"}}]
    )
    with pytest.raises(MailChimpError) as exc:
        mc3.lists.members.create_or_update(
            list_id, subscriber_hash(email), put_body(email, merge_fields={"FNAME": "New"})
        )
    error = mc3_error(exc)
    assert (error["title"], error["detail"]) == (
        "Invalid Resource",
        "Your merge fields were invalid.",
    )
    assert error["errors"] == [{"field": "CITY", "message": "Please enter a value"}]
    with pytest.raises(ApiClientError) as exc2:
        official.lists.update_list_member(list_id, email, {"status": "unsubscribed"})
    assert official_error(exc2)["errors"] == [{"field": "CITY", "message": "Please enter a value"}]
    assert sandbox.client.member(list_id, email)["status"] == "subscribed"  # type: ignore[index]
    # Filling the field in the same request makes the whole record valid.
    reply = official.lists.update_list_member(list_id, email, {"merge_fields": {"CITY": "Lyon"}})
    assert reply["merge_fields"] == {"FNAME": "Old", "CITY": "Lyon"}


def test_skip_merge_validation_true_or_capitalised(
    official: Any, sandbox: SandboxServer, api: Any
) -> None:
    list_id = with_required_city(sandbox)
    email = "skip@mail.shop-demo.io"
    sandbox.client.seed_members(list_id, [{"email_address": email}])
    # The official client sends Python's str(True): "True".
    reply = official.lists.update_list_member(
        list_id, email, {"status": "unsubscribed"}, skip_merge_validation=True
    )
    assert reply["status"] == "unsubscribed"
    raw = api(
        "PATCH",
        f"lists/{list_id}/members/{email}?skip_merge_validation=true",
        json={"merge_fields": {"FNAME": "Ok"}},
    )
    assert raw.status_code == 200, raw.text
    refused = api(
        "PATCH",
        f"lists/{list_id}/members/{email}?skip_merge_validation=false",
        json={"merge_fields": {"FNAME": "No"}},
    )
    assert refused.status_code == 400


# --- merge value types --------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False, None, ["a"], {"colour": "red"}])
def test_merge_value_must_be_string_number_or_address(
    mc3: MailChimp, official: Any, sandbox: SandboxServer, value: Any
) -> None:
    email = "typed@mail.shop-demo.io"
    body = put_body(email, merge_fields={"FNAME": value})
    with pytest.raises(MailChimpError) as exc:
        mc3.lists.members.create_or_update(LIST, subscriber_hash(email), body)
    error = mc3_error(exc)
    assert (error["status"], error["title"]) == (400, "Invalid Resource")
    assert error["errors"] == [{"field": "merge_fields.FNAME", "message": ANY_OF}]
    with pytest.raises(ApiClientError) as exc2:
        official.lists.set_list_member(LIST, email, body)
    assert official_error(exc2)["errors"] == [{"field": "merge_fields.FNAME", "message": ANY_OF}]
    assert sandbox.client.member(LIST, email) is None


def test_merge_value_string_number_and_address_accepted(
    official: Any, sandbox: SandboxServer, postal_address: dict[str, str]
) -> None:
    list_id = sandbox.client.create_list(
        "Typed",
        [{"tag": "FNAME"}, {"tag": "AGE", "type": "number"}, {"tag": "ADDR", "type": "address"}],
    )["id"]
    reply = official.lists.set_list_member(
        list_id,
        "ok@mail.shop-demo.io",
        put_body(
            "ok@mail.shop-demo.io", merge_fields={"FNAME": "Ann", "AGE": 42, "ADDR": postal_address}
        ),
    )
    assert reply["merge_fields"] == {"FNAME": "Ann", "AGE": 42, "ADDR": postal_address}
    # An address missing its city is "not complete" for an address field.
    with pytest.raises(ApiClientError) as exc:
        official.lists.update_list_member(
            list_id,
            "ok@mail.shop-demo.io",
            {"merge_fields": {"ADDR": {"addr1": "1 Main St", "zip": "69001"}}},
        )
    assert official_error(exc)["errors"] == [
        {"field": "ADDR", "message": "Please enter a complete address"}
    ]


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (42, 42),
        (2.5, 2.5),
        ("12", "12"),
        (" -3.5 ", " -3.5 "),
        ("1e3", "1e3"),
        (".5", ".5"),
        ("1e308", "1e308"),
        ("9" * 308, "9" * 308),
    ],
)
def test_number_field_takes_decimal_numbers(
    official: Any, sandbox: SandboxServer, value: Any, kept: Any
) -> None:
    list_id = sandbox.client.create_list("Numbers", [{"tag": "AGE", "type": "number"}])["id"]
    email = "number@mail.shop-demo.io"
    reply = official.lists.set_list_member(
        list_id, email, put_body(email, merge_fields={"AGE": value})
    )
    assert reply["merge_fields"] == {"AGE": kept}


@pytest.mark.parametrize(
    "value",
    ["abc", "nan", "NaN", "inf", "Infinity", "1_000", "١٢", "1,5", "", "1e999", "1" + "0" * 400],
)
def test_number_field_refuses_what_is_not_written_as_a_number(
    official: Any, sandbox: SandboxServer, value: str
) -> None:
    # Python's float() reads "nan", "inf", "1_000" and Arabic-Indic digits; nothing says
    # Mailchimp does, so the sandbox refuses them (merge_values._NUMBER_TEXT), and
    # numbers no double holds (merge_values.within_double_range).
    list_id = sandbox.client.create_list(
        "Numbers", [{"tag": "AGE", "type": "number", "required": True}]
    )["id"]
    email = "number@mail.shop-demo.io"
    with pytest.raises(ApiClientError) as exc:
        official.lists.set_list_member(list_id, email, put_body(email, merge_fields={"AGE": value}))
    message = "Please enter a value" if value == "" else "Please enter a number"
    assert official_error(exc)["errors"] == [{"field": "AGE", "message": message}]
    assert sandbox.client.member(list_id, email) is None


# --- compliance state by opt-out source ---------------------------------------------


@pytest.mark.parametrize(
    ("source", "status", "blocked"),
    [
        ("user", "unsubscribed", True),
        ("abuse", "unsubscribed", True),
        (None, "cleaned", True),
        ("api", "unsubscribed", False),
        ("admin", "unsubscribed", False),
    ],
)
def test_resubscribe_depends_on_how_member_left(
    mc3: MailChimp,
    official: Any,
    sandbox: SandboxServer,
    source: str | None,
    status: str,
    blocked: bool,
) -> None:
    emails = [f"left{n}@mail.shop-demo.io" for n in range(2)]
    seed: dict[str, Any] = {"status": status}
    if source:
        seed["opt_out_source"] = source
    sandbox.client.seed_members(LIST, [{"email_address": e, **seed} for e in emails])
    calls = [
        lambda: mc3.lists.members.create_or_update(
            LIST, subscriber_hash(emails[0]), put_body(emails[0], status="subscribed")
        ),
        lambda: official.lists.update_list_member(LIST, emails[1], {"status": "subscribed"}),
    ]
    for email, call in zip(emails, calls, strict=True):
        if blocked:
            with pytest.raises((MailChimpError, ApiClientError)) as exc:
                call()
            error = exc.value
            text = error.text if isinstance(error, ApiClientError) else str(error.args[0])
            assert "Member In Compliance State" in text
            assert sandbox.client.member(LIST, email)["status"] == status  # type: ignore[index]
        else:
            assert call()["status"] == "subscribed"


def test_unsubscribed_by_api_can_be_resubscribed(official: Any) -> None:
    email = "apiout@mail.shop-demo.io"
    official.lists.set_list_member(LIST, email, put_body(email))
    official.lists.update_list_member(LIST, email, {"status": "unsubscribed"})
    assert (
        official.lists.update_list_member(LIST, email, {"status": "subscribed"})["status"]
        == "subscribed"
    )


def test_pending_sends_confirmation_to_self_unsubscribed(
    mc3: MailChimp, official: Any, sandbox: SandboxServer
) -> None:
    emails = ["again0@mail.shop-demo.io", "again1@mail.shop-demo.io"]
    sandbox.client.seed_members(
        LIST,
        [{"email_address": e, "status": "unsubscribed", "opt_out_source": "user"} for e in emails],
    )
    assert sandbox.client.confirmation_emails(LIST) == []
    reply = mc3.lists.members.create_or_update(
        LIST, subscriber_hash(emails[0]), put_body(emails[0], status="pending")
    )
    assert reply["status"] == "pending"
    assert (
        official.lists.update_list_member(LIST, emails[1], {"status": "pending"})["status"]
        == "pending"
    )
    sent = sandbox.client.confirmation_emails(LIST)
    assert [s["email_address"] for s in sent] == emails and all(s["sent_at"] for s in sent)


@pytest.mark.parametrize(("status", "source"), [("cleaned", None), ("unsubscribed", "abuse")])
def test_pending_refused_for_cleaned_and_reported(
    official: Any, sandbox: SandboxServer, status: str, source: str | None
) -> None:
    seed: dict[str, Any] = {"email_address": "no@mail.shop-demo.io", "status": status}
    if source:
        seed["opt_out_source"] = source
    sandbox.client.seed_members(LIST, [seed])
    with pytest.raises(ApiClientError) as exc:
        official.lists.update_list_member(LIST, "no@mail.shop-demo.io", {"status": "pending"})
    assert official_error(exc)["title"] == "Member In Compliance State"
    assert sandbox.client.confirmation_emails(LIST) == []


def test_new_pending_member_gets_confirmation(mc3: MailChimp, sandbox: SandboxServer) -> None:
    email = "new@mail.shop-demo.io"
    mc3.lists.members.create_or_update(
        LIST, subscriber_hash(email), {"email_address": email, "status_if_new": "pending"}
    )
    assert [s["email_address"] for s in sandbox.client.confirmation_emails(LIST)] == [email]


def test_seed_takes_source_and_reason(sandbox: SandboxServer, official: Any) -> None:
    sandbox.client.seed_members(
        LIST,
        [
            {
                "email_address": "why@mail.shop-demo.io",
                "status": "unsubscribed",
                "opt_out_source": "admin",
                "unsubscribe_reason": "Asked by phone",
            }
        ],
    )
    seen = sandbox.client.member(LIST, "why@mail.shop-demo.io")
    assert seen is not None and seen["opt_out_source"] == "admin"
    reply = official.lists.get_list_member(LIST, "why@mail.shop-demo.io")
    assert reply["unsubscribe_reason"] == "Asked by phone"


def test_seed_rejects_unknown_opt_out_source(sandbox: SandboxServer) -> None:
    with pytest.raises(Exception, match="opt_out_source"):
        sandbox.client.seed_members(
            LIST,
            [
                {
                    "email_address": "x@mail.shop-demo.io",
                    "status": "unsubscribed",
                    "opt_out_source": "me",
                }
            ],
        )


# --- PUT without address, PATCH without transactional --------------------------------


def test_put_existing_member_without_email_address(
    official: Any, api: Any, sandbox: SandboxServer
) -> None:
    email = "known@mail.shop-demo.io"
    sandbox.client.seed_members(LIST, [{"email_address": email}])
    reply = official.lists.set_list_member(LIST, email, {"merge_fields": {"FNAME": "Kay"}})
    assert reply["merge_fields"]["FNAME"] == "Kay"
    # A new member still needs its address.
    missing = api(
        "PUT",
        f"lists/{LIST}/members/{subscriber_hash('x@mail.shop-demo.io')}",
        json={"status_if_new": "subscribed"},
    )
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "email_address"


def test_patch_refuses_transactional(mc3: MailChimp, official: Any, sandbox: SandboxServer) -> None:
    email = "tx@mail.shop-demo.io"
    sandbox.client.seed_members(LIST, [{"email_address": email}])
    with pytest.raises(MailChimpError) as exc:
        mc3.lists.members.update(LIST, subscriber_hash(email), {"status": "transactional"})
    assert mc3_error(exc)["errors"][0]["field"] == "status"
    with pytest.raises(ApiClientError):
        official.lists.update_list_member(LIST, email, {"status": "transactional"})
    # PUT's enum has it.
    reply = official.lists.set_list_member(LIST, email, put_body(email, status="transactional"))
    assert reply["status"] == "transactional"
