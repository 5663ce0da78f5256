"""The webhooks resource and the callbacks of member events, seen by a real receiver."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
from mailchimp3 import MailChimp
from mailchimp3.mailchimpclient import MailChimpError
from mailchimp_marketing.api_client import ApiClientError

from flask_mcsync.sandbox import DEFAULT_LIST_ID
from flask_mcsync.sandbox.client import SandboxError
from flask_mcsync.sandbox.server import SandboxServer
from flask_mcsync.sandbox.state import subscriber_hash

LIST = DEFAULT_LIST_ID
ALL_EVENTS = {e: True for e in ("subscribe", "unsubscribe", "profile", "cleaned", "upemail")}
FIRED_AT = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    form: list[tuple[str, str]]


@dataclass
class Receiver:
    """A shop's webhook endpoint: records every request; answers per path."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    # path -> (status for GET, status for POST); unknown paths answer 200.
    answers: dict[str, tuple[int, int]] = field(default_factory=dict)
    # POSTs to these paths wait for the gate before answering.
    gated: set[str] = field(default_factory=set)
    gate: threading.Event = field(default_factory=threading.Event)

    def posts(self, path: str | None = None) -> list[Hit]:
        return [h for h in self.hits if h.method == "POST" and path in (None, h.path)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            found.hits.append(
                Hit(method, self.path, dict(self.headers), parse_qsl(raw, keep_blank_values=True))
            )
            if method == "POST" and self.path in found.gated:
                found.gate.wait(10)
            get_code, post_code = found.answers.get(self.path, (200, 200))
            self.send_response(get_code if method == "GET" else post_code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    found.url = f"http://127.0.0.1:{server.server_port}"
    yield found
    server.shutdown()
    server.server_close()
    thread.join(5)


def add_hook(call: Any, url: str, events: dict[str, bool], /, **sources: bool) -> dict[str, Any]:
    reply = call(
        "POST",
        f"lists/{LIST}/webhooks",
        json={
            "url": url,
            "events": events,
            "sources": {"user": False, "admin": False, "api": False, **sources},
        },
    )
    assert reply.status_code == 200, reply.text
    hook: dict[str, Any] = reply.json()
    return hook


def seed(sandbox: SandboxServer, email: str, **fields: Any) -> None:
    sandbox.client.seed_members(
        LIST,
        [
            {
                "email_address": email,
                "status": "subscribed",
                "merge_fields": {"FNAME": "Ada", "LNAME": "Byron"},
                **fields,
            }
        ],
    )


def member_fields(sandbox: SandboxServer, email: str) -> list[tuple[str, str]]:
    """The data[...] fields every member event carries, for ``email`` as it is now."""
    member = sandbox.client.member(LIST, email)
    assert member is not None
    return [
        ("data[id]", subscriber_hash(email)),
        ("data[email]", email),
        ("data[email_type]", "html"),
        ("data[ip_opt]", ""),
        ("data[web_id]", str(member["web_id"])),
        ("data[merges][EMAIL]", email),
        ("data[merges][FNAME]", member["merge_fields"]["FNAME"]),
        ("data[merges][LNAME]", member["merge_fields"]["LNAME"]),
        ("data[list_id]", LIST),
    ]


def check_form(hit: Hit, event: str, expected: list[tuple[str, str]]) -> None:
    assert hit.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert hit.headers["User-Agent"] == "MailChimp.com"
    assert hit.form[0] == ("type", event)
    assert hit.form[1][0] == "fired_at"
    assert re.match(FIRED_AT, hit.form[1][1])
    assert hit.form[2:] == expected


def test_webhook_crud_official_client(official: Any, receiver: Receiver) -> None:
    body = {
        "url": f"{receiver.url}/hook?key=s3cret",
        "events": {"unsubscribe": True, "cleaned": True},
        "sources": {"user": True, "admin": True},
    }
    created = official.lists.create_list_webhook(LIST, body)
    # Mailchimp checks the URL with a GET before it creates the webhook.
    assert [(h.method, h.path, h.headers["User-Agent"]) for h in receiver.hits] == [
        ("GET", "/hook?key=s3cret", "MailChimp.com WebHook Validator")
    ]
    assert created["url"] == body["url"] and created["list_id"] == LIST
    assert created["events"] == {
        "subscribe": False,
        "unsubscribe": True,
        "profile": False,
        "cleaned": True,
        "upemail": False,
        "campaign": False,
    }
    assert created["sources"] == {"user": True, "admin": True, "api": False}
    listed = official.lists.get_list_webhooks(LIST)
    assert (listed["total_items"], listed["webhooks"][0]["id"]) == (1, created["id"])
    assert official.lists.get_list_webhook(LIST, created["id"])["url"] == body["url"]
    updated = official.lists.update_list_webhook(LIST, created["id"], {"events": {"profile": True}})
    assert updated["events"]["profile"] is True and updated["events"]["unsubscribe"] is True
    official.lists.delete_list_webhook(LIST, created["id"])
    assert official.lists.get_list_webhooks(LIST)["total_items"] == 0
    with pytest.raises(ApiClientError) as exc:
        official.lists.get_list_webhook(LIST, created["id"])
    assert exc.value.status_code == 404


def test_webhook_crud_mailchimp3(mc3: MailChimp, official: Any, receiver: Receiver) -> None:
    # mailchimp3 refuses loopback URLs client-side, so the official client creates it.
    hook = official.lists.create_list_webhook(LIST, {"url": f"{receiver.url}/mc3"})
    assert mc3.lists.webhooks.all(LIST)["webhooks"][0]["id"] == hook["id"]
    assert mc3.lists.webhooks.get(LIST, hook["id"])["url"] == f"{receiver.url}/mc3"
    patched = mc3.lists.webhooks.update(LIST, hook["id"], {"sources": {"api": True}})
    assert patched["sources"] == {"user": False, "admin": False, "api": True}
    mc3.lists.webhooks.delete(LIST, hook["id"])
    assert mc3.lists.webhooks.all(LIST)["total_items"] == 0


def test_url_that_does_not_answer_200_is_refused(
    mc3: MailChimp, official: Any, api: Any, receiver: Receiver
) -> None:
    receiver.answers["/missing"] = (404, 200)
    with pytest.raises(ApiClientError) as exc:
        official.lists.create_list_webhook(LIST, {"url": f"{receiver.url}/missing"})
    assert exc.value.status_code == 400
    error = json.loads(exc.value.text)
    assert (error["title"], error["detail"]) == (
        "Invalid Resource",
        (
            "We couldn't verify the URL is working. Please double check and try again. "
            "HTTP Code: 404"
        ),
    )
    # A host that does not answer at all (mailchimp3 accepts the URL's syntax).
    with pytest.raises(MailChimpError) as mc3_exc:
        mc3.lists.webhooks.create(LIST, {"url": "http://shop.invalid/hook"})
    assert mc3_exc.value.args[0]["detail"].endswith("HTTP Code: 0")
    reply = api("POST", f"lists/{LIST}/webhooks", json={"url": "ftp://shop.io/x"})
    assert reply.status_code == 400 and reply.json()["errors"][0]["field"] == "url"
    hook = add_hook(api, f"{receiver.url}/once", ALL_EVENTS, user=True)
    again = api("POST", f"lists/{LIST}/webhooks", json={"url": f"{receiver.url}/once"})
    assert again.status_code == 400
    # A new URL given to an existing webhook is checked the same way.
    moved = api(
        "PATCH", f"lists/{LIST}/webhooks/{hook['id']}", json={"url": f"{receiver.url}/missing"}
    )
    assert moved.status_code == 400 and moved.json()["detail"].endswith("HTTP Code: 404")
    assert api("GET", f"lists/{LIST}/webhooks/{hook['id']}").json()["url"] == f"{receiver.url}/once"
    assert api("GET", f"lists/{LIST}/webhooks").json()["total_items"] == 1


def test_person_unsubscribing_posts_mailchimps_form(
    api: Any, sandbox: SandboxServer, receiver: Receiver
) -> None:
    email = "ada@mail.shop-demo.io"
    seed(sandbox, email)
    add_hook(api, f"{receiver.url}/hook", ALL_EVENTS, user=True, admin=True)
    before = sandbox.client.member(LIST, email)
    assert before is not None
    expected = [
        ("data[action]", "unsub"),
        ("data[reason]", "manual"),
        *member_fields(sandbox, email),
        ("data[campaign_id]", "c4mp41gn"),
    ]
    reply = sandbox.client.unsubscribe(LIST, email, campaign_id="c4mp41gn")
    check_form(receiver.posts("/hook")[0], "unsubscribe", expected)
    assert [d["status_code"] for d in reply["deliveries"]] == [200]
    member = api("GET", f"lists/{LIST}/members/{email}").json()
    assert member["status"] == "unsubscribed"
    assert member["unsubscribe_reason"] == "I no longer want to receive these emails"
    assert member["last_changed"] >= before["last_changed"]
    assert sandbox.client.member(LIST, email)["opt_out_source"] == "user"  # type: ignore[index]
    # Twice is refused: the person is no longer subscribed.
    with pytest.raises(SandboxError, match="400"):
        sandbox.client.unsubscribe(LIST, email)


def test_complaint_and_admin_delete(api: Any, sandbox: SandboxServer, receiver: Receiver) -> None:
    seed(sandbox, "spam@mail.shop-demo.io")
    seed(sandbox, "gone@mail.shop-demo.io")
    add_hook(api, f"{receiver.url}/hook", ALL_EVENTS, admin=True, user=True)
    sandbox.client.unsubscribe(LIST, "spam@mail.shop-demo.io", reason="abuse")
    reply = sandbox.client.unsubscribe(
        LIST, "gone@mail.shop-demo.io", action="delete", source="admin"
    )
    forms = [dict(h.form) for h in receiver.posts()]
    assert [(f["data[reason]"], f["data[action]"]) for f in forms] == [
        ("abuse", "unsub"),
        ("manual", "delete"),
    ]
    spam = sandbox.client.member(LIST, "spam@mail.shop-demo.io")
    assert spam is not None
    assert (spam["status"], spam["opt_out_source"]) == ("unsubscribed", "abuse")
    assert reply["member"]["status"] == "archived"


def test_bounce_cleans_the_address(api: Any, sandbox: SandboxServer, receiver: Receiver) -> None:
    email = "bounce@mail.shop-demo.io"
    seed(sandbox, email)
    # Bounces are Mailchimp's own doing: no source box filters them out.
    add_hook(api, f"{receiver.url}/hook", {"cleaned": True})
    sandbox.client.clean(LIST, email, reason="hard", campaign_id="c1")
    check_form(
        receiver.posts()[0],
        "cleaned",
        [
            ("data[list_id]", LIST),
            ("data[campaign_id]", "c1"),
            ("data[reason]", "hard"),
            ("data[email]", email),
        ],
    )
    assert sandbox.client.member(LIST, email)["status"] == "cleaned"  # type: ignore[index]


def test_profile_edit(api: Any, sandbox: SandboxServer, receiver: Receiver) -> None:
    email = "edit@mail.shop-demo.io"
    seed(sandbox, email)
    add_hook(api, f"{receiver.url}/hook", ALL_EVENTS, user=True)
    reply = sandbox.client.edit_profile(LIST, email, {"FNAME": "Augusta"})
    assert reply["member"]["merge_fields"]["FNAME"] == "Augusta"
    check_form(receiver.posts()[0], "profile", member_fields(sandbox, email))
    assert dict(receiver.posts()[0].form)["data[merges][FNAME]"] == "Augusta"
    with pytest.raises(SandboxError, match="no merge field NOPE"):
        sandbox.client.edit_profile(LIST, email, {"NOPE": "x"})


def test_address_change_moves_the_member(
    api: Any, sandbox: SandboxServer, receiver: Receiver
) -> None:
    old, new = "old@mail.shop-demo.io", "New@mail.shop-demo.io"
    seed(sandbox, old)
    add_hook(api, f"{receiver.url}/hook", ALL_EVENTS, admin=True)
    sandbox.client.change_address(LIST, old, new, source="admin")
    check_form(
        receiver.posts()[0],
        "upemail",
        [
            ("data[list_id]", LIST),
            ("data[new_id]", subscriber_hash(new)),
            ("data[new_email]", new),
            ("data[old_email]", old),
        ],
    )
    assert api("GET", f"lists/{LIST}/members/{subscriber_hash(old)}").status_code == 404
    moved = api("GET", f"lists/{LIST}/members/{subscriber_hash(new)}").json()
    assert (moved["email_address"], moved["id"]) == (new, subscriber_hash(new))


def test_sources_pick_the_webhooks(api: Any, sandbox: SandboxServer, receiver: Receiver) -> None:
    seed(sandbox, "a@mail.shop-demo.io")
    add_hook(api, f"{receiver.url}/user", ALL_EVENTS, user=True)
    add_hook(api, f"{receiver.url}/admin", ALL_EVENTS, admin=True)
    add_hook(api, f"{receiver.url}/profile-only", {"profile": True}, user=True, admin=True)
    sandbox.client.unsubscribe(LIST, "a@mail.shop-demo.io", source="admin")
    assert [h.path for h in receiver.posts()] == ["/admin"]


def test_api_changes_reach_only_webhooks_with_the_api_source(
    mc3: MailChimp, official: Any, api: Any, sandbox: SandboxServer, receiver: Receiver
) -> None:
    add_hook(api, f"{receiver.url}/no-echo", ALL_EVENTS, user=True, admin=True)
    add_hook(api, f"{receiver.url}/api", ALL_EVENTS, api=True)
    email = "echo@mail.shop-demo.io"
    mc3.lists.members.create_or_update(
        LIST,
        subscriber_hash(email),
        {"email_address": email, "status_if_new": "subscribed", "merge_fields": {"FNAME": "Echo"}},
    )
    official.lists.update_list_member(LIST, email, {"merge_fields": {"LNAME": "Chamber"}})
    official.lists.update_list_member(LIST, email, {"email_address": "echo2@mail.shop-demo.io"})
    mc3.lists.members.update(
        LIST, subscriber_hash("echo2@mail.shop-demo.io"), {"status": "unsubscribed"}
    )
    deliveries = sandbox.client.webhook_deliveries(LIST)  # waits for queued callbacks
    assert [(d["type"], d["source"], d["status_code"]) for d in deliveries] == [
        ("subscribe", "api", 200),
        ("profile", "api", 200),
        ("upemail", "api", 200),
        ("unsubscribe", "api", 200),
    ]
    assert {d["url"] for d in deliveries} == {f"{receiver.url}/api"}
    assert receiver.posts("/no-echo") == []
    assert dict(receiver.posts("/api")[0].form)["data[merges][FNAME]"] == "Echo"
    assert dict(receiver.posts("/api")[2].form)["data[old_email]"] == email
    member = api("GET", f"lists/{LIST}/members/echo2@mail.shop-demo.io").json()
    assert member["unsubscribe_reason"] == "N/A (Unsubscribed by API)"
    # A PUT that changes nothing says nothing.
    sandbox.client.clear_webhook_deliveries()
    api(
        "PUT",
        f"lists/{LIST}/members/echo2@mail.shop-demo.io",
        json={"email_address": "echo2@mail.shop-demo.io", "status_if_new": "subscribed"},
    )
    assert sandbox.client.webhook_deliveries(LIST) == []


def test_batch_operations_fire_api_callbacks(
    api: Any, sandbox: SandboxServer, receiver: Receiver
) -> None:
    add_hook(api, f"{receiver.url}/api", {"subscribe": True}, api=True)
    ops = [
        {
            "method": "PUT",
            "path": f"lists/{LIST}/members/b{i}@mail.shop-demo.io",
            "body": json.dumps(
                {"email_address": f"b{i}@mail.shop-demo.io", "status_if_new": "subscribed"}
            ),
        }
        for i in range(3)
    ]
    batch_id = api("POST", "batches", json={"operations": ops}).json()["id"]
    for _ in range(200):
        if api("GET", f"batches/{batch_id}").json()["status"] == "finished":
            break
        threading.Event().wait(0.05)
    deliveries = sandbox.client.webhook_deliveries()
    assert sorted(d["payload"]["data[email]"] for d in deliveries) == [
        f"b{i}@mail.shop-demo.io" for i in range(3)
    ]


def test_failing_webhook_never_breaks_the_event(
    api: Any, sandbox: SandboxServer, receiver: Receiver
) -> None:
    email = "fail@mail.shop-demo.io"
    seed(sandbox, email)
    receiver.answers["/broken"] = (200, 500)
    add_hook(api, f"{receiver.url}/broken", ALL_EVENTS, user=True)
    add_hook(api, f"{receiver.url}/fine", ALL_EVENTS, user=True)
    reply = sandbox.client.unsubscribe(LIST, email)
    assert sorted((d["url"].rsplit("/", 1)[1], d["status_code"]) for d in reply["deliveries"]) == [
        ("broken", 500),
        ("fine", 200),
    ]
    assert reply["member"]["status"] == "unsubscribed"
    assert len(sandbox.client.webhook_deliveries()) == 2


def test_who_unsubscribed_decides_who_may_be_resubscribed(
    mc3: MailChimp, sandbox: SandboxServer
) -> None:
    for email in ("self@mail.shop-demo.io", "admin@mail.shop-demo.io"):
        seed(sandbox, email)
    sandbox.client.unsubscribe(LIST, "self@mail.shop-demo.io", source="user")
    sandbox.client.unsubscribe(LIST, "admin@mail.shop-demo.io", source="admin")
    with pytest.raises(MailChimpError) as exc:
        mc3.lists.members.update(
            LIST, subscriber_hash("self@mail.shop-demo.io"), {"status": "subscribed"}
        )
    assert exc.value.args[0]["title"] == "Member In Compliance State"
    back = mc3.lists.members.update(
        LIST, subscriber_hash("admin@mail.shop-demo.io"), {"status": "subscribed"}
    )
    assert back["status"] == "subscribed" and "unsubscribe_reason" not in back


def test_person_confirming_a_pending_opt_in(
    official: Any, api: Any, sandbox: SandboxServer, receiver: Receiver
) -> None:
    email = "again@mail.shop-demo.io"
    sandbox.client.seed_members(
        LIST,
        [
            {
                "email_address": email,
                "status": "unsubscribed",
                "merge_fields": {"FNAME": "Ada", "LNAME": "Byron"},
            }
        ],
    )
    add_hook(api, f"{receiver.url}/hook", ALL_EVENTS, user=True)
    # The shop asks for Mailchimp's confirmation e-mail; the person clicks its link.
    assert (
        official.lists.update_list_member(LIST, email, {"status": "pending"})["status"] == "pending"
    )
    reply = sandbox.client.confirm(LIST, email, ip_opt="203.0.113.7")
    assert reply["member"]["status"] == "subscribed"
    expected = member_fields(sandbox, email)
    expected[3] = ("data[ip_opt]", "203.0.113.7")
    check_form(receiver.posts()[0], "subscribe", [*expected, ("data[ip_signup]", "")])
    with pytest.raises(SandboxError, match="not pending"):
        sandbox.client.confirm(LIST, email)


def test_batch_subscribe_calls_back_api_webhooks(
    mc3: MailChimp, api: Any, sandbox: SandboxServer, receiver: Receiver
) -> None:
    add_hook(api, f"{receiver.url}/api", ALL_EVENTS, api=True)
    mc3.lists.update_members(
        LIST,
        {
            "members": [
                {"email_address": "one@mail.shop-demo.io", "status": "subscribed"},
                {"email_address": "bad@example.com", "status": "subscribed"},
            ]
        },
    )
    deliveries = sandbox.client.webhook_deliveries()
    assert [(d["type"], d["payload"]["data[email]"]) for d in deliveries] == [
        ("subscribe", "one@mail.shop-demo.io")
    ]


def test_reset_drops_callbacks_of_the_old_account(
    api: Any, sandbox: SandboxServer, receiver: Receiver
) -> None:
    receiver.gated.add("/slow")
    add_hook(api, f"{receiver.url}/slow", ALL_EVENTS, api=True)
    for i in range(3):
        email = f"r{i}@mail.shop-demo.io"
        api(
            "PUT",
            f"lists/{LIST}/members/{email}",
            json={"email_address": email, "status_if_new": "subscribed"},
        )
    sandbox.client.reset()
    receiver.gate.set()
    assert sandbox.client.webhook_deliveries() == []
    # The first callback was already on its way; the two queued behind it never left.
    assert len(receiver.posts("/slow")) <= 1


def test_payload_flattens_addresses_and_names_interest_groups(
    official: Any,
    api: Any,
    sandbox: SandboxServer,
    receiver: Receiver,
    postal_address: dict[str, str],
) -> None:
    sandbox.client.create_list(
        "Shop",
        [
            {"tag": "FNAME", "name": "First name"},
            {"tag": "ADDRESS", "name": "Address", "type": "address"},
        ],
        list_id="add4e55000",
    )
    category = official.lists.create_list_interest_category(
        "add4e55000", {"title": "Topics", "type": "checkboxes"}
    )
    shoes = official.lists.create_interest_category_interest(
        "add4e55000", category["id"], {"name": "Shoes"}
    )["id"]
    official.lists.create_interest_category_interest("add4e55000", category["id"], {"name": "Hats"})
    email = "home@mail.shop-demo.io"
    official.lists.add_list_member(
        "add4e55000",
        {
            "email_address": email,
            "status": "subscribed",
            "interests": {shoes: True},
            "merge_fields": {"FNAME": "Ada", "ADDRESS": postal_address},
        },
    )
    reply = api(
        "POST",
        "lists/add4e55000/webhooks",
        json={
            "url": f"{receiver.url}/hook",
            "events": {"profile": True},
            "sources": {"user": True},
        },
    )
    assert reply.status_code == 200
    sandbox.client.edit_profile("add4e55000", email, {"FNAME": "Augusta"})
    form = dict(receiver.posts()[0].form)
    assert form["data[merges][FNAME]"] == "Augusta"
    assert form["data[merges][ADDRESS][addr1]"] == postal_address["addr1"]
    assert form["data[merges][ADDRESS][city]"] == postal_address["city"]
    assert form["data[merges][INTERESTS]"] == "Shoes"
    assert form["data[list_id]"] == "add4e55000"
