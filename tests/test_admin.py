"""The admin pages through Flask's test client, on SQLite and PostgreSQL.

Access is denied by default, every POST needs the CSRF token, forms validate with a
sentence, the export window's numbers are the eligibility tally's, a second
"Synchronize" joins the running export, and untrusted text never reaches a page as HTML.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from support import ADMIN_CSRF_TOKEN as TOKEN

from example_app.commands import make_customers
from example_app.models import Customer, db
from flask_mcsync import MailchimpSync, exclusions, settings, state
from flask_mcsync.admin.security import NO_AUTHORIZE, NOT_ALLOWED
from flask_mcsync.eligibility import tally
from flask_mcsync.models import Batch, ExclusionRule, Run
from flask_mcsync.sandbox import SandboxServer

PREFIX = "/admin/mailchimp"
LIST_ID = "a1b2c3d4e5"
HOSTILE = "<script>alert(1)</script>"


# --- helpers ------------------------------------------------------------------------------


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    return client.post(PREFIX + path, data={"csrf_token": TOKEN, **(data or {})}, **kw)


def post_json(client: FlaskClient, path: str, body: dict[str, Any]) -> Any:
    return client.post(PREFIX + path, json=body, headers={"X-CSRF-Token": TOKEN})


def seed_customers(count: int, extra: tuple[str, ...] = ()) -> None:
    rows = make_customers(count)
    rows += [{"email": e, "first_name": "X", "last_name": "Y", "newsletter": True} for e in extra]
    db.session.execute(sa.insert(Customer), rows)
    db.session.commit()


def choose_list(app: Flask, list_id: str = LIST_ID, name: str = "Demo shop newsletter") -> None:
    ext = state(app)
    settings.update(ext.session, ext.config, list_id=list_id, list_name=name)


# --- access and CSRF ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/sync", "/sync/export.json", "/sync/runs/1.json"])
def test_without_authorize_every_page_is_forbidden(bare_app: Flask, path: str) -> None:
    response = bare_app.test_client().get(PREFIX + path)
    assert response.status_code == 403
    if response.is_json:
        assert response.json["error"] == NO_AUTHORIZE
    else:
        assert str(escape(NO_AUTHORIZE)) in response.get_data(as_text=True)


def test_static_files_are_served_to_anyone(bare_app: Flask) -> None:
    # They hold no data, and the 403 page needs its stylesheet.
    response = bare_app.test_client().get(PREFIX + "/static/admin.css")
    assert response.status_code == 200
    assert response.mimetype == "text/css"
    response.close()


def test_forbidden_page_is_small_html_and_json_for_json(app: Flask) -> None:
    anonymous = app.test_client()
    page = anonymous.get(PREFIX + "/")
    assert page.status_code == 403
    assert page.mimetype == "text/html"
    assert NOT_ALLOWED in page.get_data(as_text=True)
    assert 'name="csrf-token"' not in page.get_data(as_text=True)
    data = anonymous.get(PREFIX + "/sync/runs/1.json")
    assert data.status_code == 403
    assert data.json == {"error": NOT_ALLOWED, "status": 403}


def test_forbidden_when_authorize_says_no(app: Flask, client: FlaskClient) -> None:
    with client.session_transaction() as sess:
        sess["shop_admin"] = False
    assert client.get(PREFIX + "/sync").status_code == 403
    assert post(client, "/rules", {"kind": "domain", "value": "x.com"}).status_code == 403


POSTS = [
    ("/settings", {"batch_size": "100"}),
    ("/rules", {"kind": "domain", "value": "mailinator.com"}),
    ("/rules/1/delete", {}),
    ("/sync/export.json", {"batch_size": "100"}),
]


@pytest.mark.parametrize(("path", "data"), POSTS)
# "é": a token with a character beyond ASCII is refused like any other wrong one.
@pytest.mark.parametrize("token", [None, "wrong-token", "jeton-é"])
def test_every_post_needs_the_csrf_token(
    app: Flask, client: FlaskClient, path: str, data: dict[str, str], token: str | None
) -> None:
    choose_list(app)
    exclusions.add_rule(state(app).session, "address", "keep@example.com")
    form = dict(data)
    if token:
        form["csrf_token"] = token
    response = client.post(PREFIX + path, data=form)
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    # Nothing changed.
    ext = state(app)
    assert settings.load(ext.session, ext.config).batch_size == ext.config.default_batch_size
    assert [r.value for r in exclusions.stored_rules(ext.session)] == ["keep@example.com"]
    assert ext.session.scalar(sa.select(sa.func.count()).select_from(Run)) == 0


@pytest.mark.parametrize("token", ["nope", "\xe9"])
def test_fetch_with_a_wrong_header_token_is_refused_as_json(
    app: Flask, client: FlaskClient, token: str
) -> None:
    choose_list(app)
    response = client.post(PREFIX + "/sync/export.json", json={}, headers={"X-CSRF-Token": token})
    assert response.status_code == 400
    assert "CSRF" in response.json["error"]


def test_pages_send_protective_headers(client: FlaskClient) -> None:
    response = client.get(PREFIX + "/sync")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_flask_wtf_csrf_protect_is_told_to_skip_the_blueprint(
    database_url: str, sandbox: SandboxServer
) -> None:
    class FakeCSRFProtect:
        def __init__(self) -> None:
            self.exempted: list[Any] = []

        def exempt(self, view: Any) -> Any:
            self.exempted.append(view)
            return view

    app = Flask("wtf_host")
    app.config.update(SECRET_KEY="t", SQLALCHEMY_DATABASE_URI=database_url)
    fake = FakeCSRFProtect()
    app.extensions["csrf"] = fake
    db.init_app(app)
    MailchimpSync(app, db=db, authorize=lambda: True)
    # The admin pages (they carry our own token) and Mailchimp's webhook (its secret).
    assert [bp.name for bp in fake.exempted] == ["mcsync", "mcsync_webhook"]
    with app.app_context():
        db.engine.dispose()


# --- General settings ---------------------------------------------------------------------


def test_settings_page_shows_connection_and_audiences(
    app: Flask, client: FlaskClient, sandbox: SandboxServer
) -> None:
    html = client.get(PREFIX + "/").get_data(as_text=True)
    assert "Connected" in html
    assert state(app).config.masked_api_key in html
    assert sandbox.api_key not in html  # never the whole key
    assert sandbox.api_url in html
    assert "Demo shop newsletter" in html
    assert "— Choose a Mailchimp audience —" in html
    assert 'class="mc-tab is-active"' in html and "Users list synching" in html


def test_settings_page_says_why_it_cannot_connect(app: Flask, client: FlaskClient) -> None:
    ext = state(app)
    ext.config = dataclasses.replace(ext.config, api_key=None)
    response = client.get(PREFIX + "/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Not connected" in html
    assert "MCSYNC_API_KEY is not set" in html


def test_saving_settings_redirects_and_stores_them(app: Flask, client: FlaskClient) -> None:
    response = post(
        client,
        "/settings",
        {"list_id": LIST_ID, "double_optin": "1", "batch_size": "250"},
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(PREFIX + "/")
    ext = state(app)
    saved = settings.load(ext.session, ext.config)
    assert (saved.list_id, saved.list_name) == (LIST_ID, "Demo shop newsletter")
    assert saved.double_optin and saved.status_if_new == "pending"
    assert saved.batch_size == 250
    assert saved.auto_sync is False  # unchecked box
    html = client.get(PREFIX + "/").get_data(as_text=True)
    assert "Settings saved." in html
    assert "(current)" in html


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        ({"batch_size": "0"}, "The batch size must be at least 1 address"),
        ({"batch_size": "many"}, "The batch size must be a whole number"),
        ({"batch_size": "100", "list_id": "nope123"}, "The account has no audience"),
    ],
)
def test_invalid_settings_are_shown_beside_the_field(
    app: Flask, client: FlaskClient, data: dict[str, str], sentence: str
) -> None:
    response = post(client, "/settings", data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert sentence in html
    assert 'class="mc-field-error"' in html
    ext = state(app)
    assert settings.load(ext.session, ext.config).list_id is None
    assert settings.load(ext.session, ext.config).batch_size == ext.config.default_batch_size


# --- Exclusion rules ----------------------------------------------------------------------


def test_rules_add_count_and_remove(app: Flask, client: FlaskClient) -> None:
    seed_customers(400)
    response = post(client, "/rules", {"kind": "domain", "value": "YopMail.com"})
    assert response.status_code == 302
    post(client, "/rules", {"kind": "pattern", "value": "test+*@*"})
    ext = state(app)
    ruleset = exclusions.load_ruleset(ext.session)
    counts = tally(ext.session, ext.require_source(), ruleset).by_rule
    html = client.get(PREFIX + "/").get_data(as_text=True)
    assert "Added the pattern &#39;test+*@*&#39; rule." in html
    rows = re.findall(
        r"<tr>\s*<td>(.*?)</td>\s*<td><code[^>]*>(.*?)</code></td>\s*"
        r"<td class=\"mc-num\">(.*?)</td>",
        html,
        re.S,
    )
    assert rows == [
        ("Whole domain", "yopmail.com", str(counts[ruleset.rules[0].id])),
        ("Pattern", "test+*@*", str(counts[ruleset.rules[1].id])),
    ]
    assert all(counts[r.id] > 0 for r in ruleset.rules)

    first = ruleset.rules[0].id
    assert post(client, f"/rules/{first}/delete").status_code == 302
    assert [r.value for r in exclusions.stored_rules(ext.session)] == ["test+*@*"]
    again = post(client, f"/rules/{first}/delete", follow_redirects=True)
    assert "That rule was already removed." in again.get_data(as_text=True)


@pytest.mark.parametrize(
    ("kind", "value", "sentence"),
    [
        ("pattern", "nobody@example.com", "has no wildcard"),
        ("domain", "a@b.com", "is not a bare domain"),
        ("address", "not an address", "is not a valid address"),
        ("regex", ".*", "Unknown rule kind"),
        ("domain", "", "The rule is empty"),
    ],
)
def test_invalid_rules_say_why_and_keep_what_was_typed(
    app: Flask, client: FlaskClient, kind: str, value: str, sentence: str
) -> None:
    response = post(client, "/rules", {"kind": kind, "value": value})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert sentence in html
    assert f'name="value" value="{value}"' in html
    assert exclusions.stored_rules(state(app).session) == []


def test_duplicate_rule_is_refused(app: Flask, client: FlaskClient) -> None:
    post(client, "/rules", {"kind": "domain", "value": "yopmail.com"})
    response = post(client, "/rules", {"kind": "domain", "value": "YOPMAIL.com"})
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)
    assert len(exclusions.stored_rules(state(app).session)) == 1


# --- Manual synching ----------------------------------------------------------------------


def test_sync_page_without_audience_says_to_choose_one(client: FlaskClient) -> None:
    html = client.get(PREFIX + "/sync").get_data(as_text=True)
    assert "Manual synching" in html and "Export users" in html
    assert "No audience chosen yet" in html
    window = client.get(PREFIX + "/sync/export.json").json
    assert window["list"] is None and window["counts"] is None and window["run"] is None
    refused = post_json(client, "/sync/export.json", {})
    assert refused.status_code == 422
    assert "No audience is chosen" in refused.json["error"]


def test_export_window_counts_are_the_tally(app: Flask, client: FlaskClient) -> None:
    seed_customers(500)
    choose_list(app)
    ext = state(app)
    exclusions.add_rule(ext.session, "domain", "yopmail.com")
    window = client.get(PREFIX + "/sync/export.json").json
    expected = tally(ext.session, ext.require_source(), exclusions.load_ruleset(ext.session))
    assert window["counts"] == expected.as_dict()
    assert window["counts"]["excluded"] > 0 and window["counts"]["invalid"] > 0
    assert window["counts"]["duplicates"] > 0
    assert window["list"] == {"id": LIST_ID, "name": "Demo shop newsletter"}
    assert window["batch_size"] == ext.config.default_batch_size
    assert window["max_batch_size"] == ext.config.max_batch_size


def test_synchronize_twice_returns_the_same_run(app: Flask, client: FlaskClient) -> None:
    seed_customers(50)
    choose_list(app)
    first = post_json(client, "/sync/export.json", {"batch_size": 10})
    assert first.status_code == 202
    assert first.json["created"] is True
    run_id = first.json["run_id"]
    assert first.json["progress"]["batch_size"] == 10
    second = post_json(client, "/sync/export.json", {"batch_size": 20})
    assert second.status_code == 200
    assert (second.json["run_id"], second.json["created"]) == (run_id, False)
    # Re-opening the window lands on the running export, not on a new preview.
    window = client.get(PREFIX + "/sync/export.json").json
    assert window["run"]["id"] == run_id and window["counts"] is None
    assert client.get(PREFIX + f"/sync/runs/{run_id}.json").json["status"] == "queued"
    page = client.get(PREFIX + "/sync").get_data(as_text=True)
    assert f"An export to this audience is running (run {run_id})" in page


@pytest.mark.parametrize("body", [b"[1, 2]", b"{bad json", b"\x00\x01", b'"a string"'])
def test_a_broken_json_body_starts_no_export(app: Flask, client: FlaskClient, body: bytes) -> None:
    seed_customers(5)
    choose_list(app)
    response = client.post(
        PREFIX + "/sync/export.json",
        data=body,
        content_type="application/json",
        headers={"X-CSRF-Token": TOKEN},
    )
    assert response.status_code == 400
    assert "no export was started" in response.json["error"]
    assert state(app).session.scalar(sa.select(sa.func.count()).select_from(Run)) == 0


@pytest.mark.parametrize("size", [10_001, "9" * 5000])
def test_a_batch_size_above_the_largest_names_the_largest_as_a_number_reads(
    app: Flask, client: FlaskClient, size: Any
) -> None:
    choose_list(app)
    response = post_json(client, "/sync/export.json", {"batch_size": size})
    assert response.status_code == 422
    error = response.json["error"]
    assert "may be at most 10,000 addresses (MCSYNC_MAX_BATCH_SIZE); got " + str(size)[:40] in error


@pytest.mark.parametrize("size", [0, 10_001, "ten", 2.5, "9" * 5000, "x" * 100_000, 10**30])
def test_synchronize_refuses_a_bad_batch_size(app: Flask, client: FlaskClient, size: Any) -> None:
    choose_list(app)
    response = post_json(client, "/sync/export.json", {"batch_size": size})
    assert response.status_code == 422
    assert response.json["field"] == "batch_size"
    assert "batch size" in response.json["error"]
    assert len(response.json["error"]) < 300  # the value is cut short, not echoed whole
    assert state(app).session.scalar(sa.select(sa.func.count()).select_from(Run)) == 0


def test_unknown_run_is_a_json_404(client: FlaskClient) -> None:
    response = client.get(PREFIX + "/sync/runs/999.json")
    assert response.status_code == 404
    assert response.json["error"] == "There is no export run 999."


# --- untrusted text -----------------------------------------------------------------------


def test_hostile_audience_name_and_rule_are_escaped(
    app: Flask, client: FlaskClient, sandbox: SandboxServer
) -> None:
    created = sandbox.client.create_list(f"Promo {HOSTILE}")
    post(client, "/rules", {"kind": "pattern", "value": f"*{HOSTILE}*"})
    post(client, "/settings", {"list_id": created["id"], "batch_size": "500"})
    for path in ("/", "/sync"):
        html = client.get(PREFIX + path).get_data(as_text=True)
        assert HOSTILE not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    window = client.get(PREFIX + "/sync/export.json")
    assert window.mimetype == "application/json"
    assert window.json["list"]["name"] == f"Promo {HOSTILE}"


def test_hostile_addresses_and_errors_stay_data(app: Flask, client: FlaskClient) -> None:
    hostile_address = f"{HOSTILE}@x.com"
    seed_customers(5, extra=(hostile_address, "o'brien&co@x.com"))
    choose_list(app)
    counts = client.get(PREFIX + "/sync/export.json").json["counts"]
    assert counts["invalid"] >= 1  # '<' is no address character: never sent
    ext = state(app)
    run = Run(
        kind="export",
        list_id=LIST_ID,
        status="failed",
        total=2,
        errors=1,
        message=f"Mailchimp said: {HOSTILE}",
    )
    ext.session.add(run)
    ext.session.flush()
    ext.session.add(
        Batch(
            run_id=run.id,
            seq=1,
            status="failed",
            size=2,
            first_address=hostile_address,
            last_address="o'brien&co@x.com",
            last_error=f"<img src=x onerror=alert(1)> {HOSTILE}",
        )
    )
    ext.session.commit()
    response = client.get(PREFIX + f"/sync/runs/{run.id}.json")
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    batch = response.json["batches"][0]
    assert batch["first"] == hostile_address
    assert batch["last_error"].startswith("<img src=x")
    page = client.get(PREFIX + "/sync").get_data(as_text=True)
    assert HOSTILE not in page
    assert "Mailchimp said: &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert ext.session.scalar(sa.select(sa.func.count()).select_from(ExclusionRule)) == 0
