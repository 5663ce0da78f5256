"""Both ways, end to end: the example shop served on a free port (werkzeug in a thread),
real ``flask mcsync worker`` processes and Redis, the Mailchimp sandbox registering the
shop's webhook (after its URL check) and firing Mailchimp-side events at it, on SQLite
and PostgreSQL. Also reconcile, the round trip with a manual export, the drift report
against an independent count, the periodic reconcile and the CLI.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from helpers_export import LIST_ID, wait_run_ended
from helpers_twoway import activate, customers, db, ext, outbox_count
from support import Workers, app_config, free_port, wait_for
from werkzeug.serving import make_server

from flask_mcsync.gateway import gateway_for
from flask_mcsync.sandbox import SandboxServer

pytestmark = pytest.mark.slow


@pytest.fixture
def app(database_url: str, redis_url: str, sandbox: SandboxServer) -> Iterator[Flask]:
    """The example shop, served for real so Mailchimp (the sandbox) can call it."""
    from example_app import create_app
    from example_app.models import db

    port = free_port()
    config = {**app_config(database_url, redis_url, sandbox)}
    config["MCSYNC_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    application = create_app(config)
    server = make_server("127.0.0.1", port, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with application.app_context():
        yield application
        db.session.remove()
    server.shutdown()
    thread.join(timeout=10)
    with application.app_context():
        db.engine.dispose()


def _shop(*rows: tuple[str, bool]) -> None:
    from example_app.models import Customer

    session = db().session
    for email, newsletter in rows:
        session.add(
            Customer(email=email, first_name="Ada", last_name="Lovelace", newsletter=newsletter)
        )
    session.commit()


def _audience(sandbox: SandboxServer, *rows: tuple[str, str]) -> None:
    sandbox.client.seed_members(
        LIST_ID,
        [
            {
                "email_address": email,
                "status": status,
                "merge_fields": {"FNAME": "Ada", "LNAME": "Lovelace"},
                "opt_out_source": "user",
            }
            for email, status in rows
        ],
    )


def _cli(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["mcsync", *args])
    db().session.commit()
    return result


# --- the webhook, fired by the sandbox -----------------------------------------------------


def test_each_mailchimp_event_reaches_the_running_shop_and_the_dashboard(
    app: Flask, sandbox: SandboxServer, workers: Workers, client: Any
) -> None:
    from flask_mcsync import connect

    activate(app)
    _shop(("leaver@laposte.net", True), ("bounce@laposte.net", True))
    _shop(("profile@laposte.net", True), ("mover@laposte.net", True))
    _audience(
        sandbox,
        ("leaver@laposte.net", "subscribed"),
        ("bounce@laposte.net", "subscribed"),
        ("profile@laposte.net", "subscribed"),
        ("mover@laposte.net", "subscribed"),
    )
    found = connect.register(ext(app))
    assert found.in_place is True
    assert found.sources == {"user": True, "admin": True, "api": False}
    workers.start(1)

    sandbox.client.unsubscribe(LIST_ID, "leaver@laposte.net")
    sandbox.client.clean(LIST_ID, "bounce@laposte.net")
    sandbox.client.edit_profile(LIST_ID, "profile@laposte.net", {"FNAME": "Augusta"})
    sandbox.client.change_address(LIST_ID, "mover@laposte.net", "moved@laposte.net")
    deliveries = sandbox.client.webhook_deliveries(LIST_ID)
    assert sorted(d["type"] for d in deliveries) == ["cleaned", "profile", "unsubscribe", "upemail"]
    assert all(d["status_code"] == 200 for d in deliveries)

    expected = {
        "leaver@laposte.net": False,
        "bounce@laposte.net": False,
        "profile@laposte.net": True,
        "moved@laposte.net": True,
    }
    wait_for(lambda: customers() == expected, 30, "the shop to follow Mailchimp")
    assert outbox_count() == 0  # nothing went back out

    page = client.get("/admin/mailchimp/status?days=1").get_data(as_text=True)
    assert page.count("From Mailchimp") >= 4
    assert "webhook: unsubscribe" in page and "webhook: upemail" in page
    settings_page = client.get("/admin/mailchimp/").get_data(as_text=True)
    assert "In place" in settings_page
    assert ext(app).config.public_url in settings_page
    secret = sandbox.client.webhook_deliveries(LIST_ID)[0]["url"].rsplit("/", 1)[1]
    assert secret not in settings_page  # never shown whole


def test_our_own_syncs_do_not_echo_back(
    app: Flask, sandbox: SandboxServer, workers: Workers
) -> None:
    from flask_mcsync import connect
    from flask_mcsync.models import WebhookEvent

    activate(app)
    connect.register(ext(app))
    workers.start(1)
    response = app.test_client().post(
        "/signup", data={"email": "new@laposte.net", "first_name": "N", "newsletter": "1"}
    )
    assert response.status_code == 302
    wait_for(lambda: sandbox.client.member(LIST_ID, "new@laposte.net"), 30, "the auto-sync")
    # Mailchimp saw an API-made subscribe; the webhook leaves the api source out.
    assert sandbox.client.webhook_deliveries(LIST_ID) == []
    session = db().session
    session.commit()
    assert session.execute(sa.select(sa.func.count()).select_from(WebhookEvent)).scalar_one() == 0


def test_status_register_and_remove_from_the_cli(app: Flask, sandbox: SandboxServer) -> None:
    activate(app)
    status = json.loads(_cli(app, "webhook", "status", "--json").output)
    assert status["in_place"] is False
    result = _cli(app, "webhook", "register")
    assert result.exit_code == 0, result.output
    assert "is in place" in result.output and "api off" in result.output
    status = json.loads(_cli(app, "webhook", "status", "--json").output)
    assert status["in_place"] is True and "…" in status["url"]
    # Registering twice keeps the one webhook.
    assert _cli(app, "webhook", "register").exit_code == 0
    assert len(gateway_for(ext(app)).webhooks(LIST_ID)) == 1
    assert "Removed 1 webhook" in _cli(app, "webhook", "remove").output
    assert gateway_for(ext(app)).webhooks(LIST_ID) == []
    assert json.loads(_cli(app, "webhook", "status", "--json").output)["in_place"] is False


def test_without_a_public_url_the_card_points_to_reconcile(
    db_only_app: Flask, sandbox: SandboxServer
) -> None:
    from flask_mcsync.admin.security import SESSION_KEY

    app = db_only_app
    activate(app)
    result = _cli(app, "webhook", "register")
    assert result.exit_code == 1
    assert "MCSYNC_PUBLIC_URL" in result.output and "reconcile" in result.output
    test_client = app.test_client()
    with test_client.session_transaction() as sess:
        sess["shop_admin"] = True
        sess[SESSION_KEY] = "t"
    page = test_client.get("/admin/mailchimp/").get_data(as_text=True)
    assert 'id="no-public-url"' in page and "flask mcsync reconcile" in page
    assert 'id="register-webhook"' not in page


# --- reconcile ----------------------------------------------------------------------------


def test_reconcile_picks_up_changes_made_while_the_webhook_was_not_registered(
    app: Flask, sandbox: SandboxServer
) -> None:
    activate(app)
    _shop(("a@laposte.net", True), ("b@laposte.net", True), ("c@laposte.net", True))
    _shop(("d@laposte.net", True))
    _audience(
        sandbox,
        ("a@laposte.net", "subscribed"),
        ("b@laposte.net", "subscribed"),
        ("c@laposte.net", "subscribed"),
        ("d@laposte.net", "subscribed"),
        ("gone@laposte.net", "unsubscribed"),
    )
    first = json.loads(_cli(app, "reconcile", "--json").output)
    assert first["first"] is True and first["read"] == 5 and first["applied"] == 1

    # No webhook: these changes reach the shop only through the next reconcile.
    sandbox.client.unsubscribe(LIST_ID, "a@laposte.net")
    sandbox.client.clean(LIST_ID, "b@laposte.net")
    sandbox.client.change_address(LIST_ID, "c@laposte.net", "c.new@laposte.net")
    second = json.loads(_cli(app, "reconcile", "--json").output)
    assert second["first"] is False
    assert second["applied"] == 3
    assert second["read"] < 5 + 3  # only what changed (and the last second again)
    assert customers() == {
        "a@laposte.net": False,
        "b@laposte.net": False,
        "c.new@laposte.net": True,
        "d@laposte.net": True,
    }
    third = json.loads(_cli(app, "reconcile", "--json").output)
    assert third["applied"] == 0 and third["stale"] == 0
    text = _cli(app, "reconcile").output
    assert "applied 0 change(s)" in text
    assert outbox_count() == 0


def test_a_reconcile_taken_over_between_two_pages_records_nothing_more(
    app: Flask, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconcile that went silent is ended by the one that takes its place. If its
    process comes back, its next page is not kept: a run records nothing after its end
    (an export's batches skip their lookup of other syncs on that promise)."""
    from flask_mcsync import reconcile as reconcile_mod
    from flask_mcsync.models import Outcome, Run
    from flask_mcsync.times import utcnow

    activate(app)
    _shop(("a@laposte.net", True), ("b@laposte.net", True))
    _audience(
        sandbox,
        ("a@laposte.net", "unsubscribed"),
        ("b@laposte.net", "unsubscribed"),
        ("c@laposte.net", "subscribed"),
    )
    real_page, pages = reconcile_mod._page, []

    def page_then_taken_over(*args: Any, **kwargs: Any) -> Any:
        pages.append(1)
        if len(pages) == 2:  # between the pages, what _claim does to a silent run
            with db().engine.begin() as other:
                other.execute(
                    sa.update(Run)
                    .where(Run.kind == "reconcile")
                    .values(status="failed", active_list_id=None, finished_at=utcnow())
                )
        return real_page(*args, **kwargs)

    monkeypatch.setattr(reconcile_mod, "_page", page_then_taken_over)
    with pytest.raises(reconcile_mod.ReconcileTakenOver):
        reconcile_mod.reconcile(ext(app), page_size=1)
    session = db().session
    session.rollback()
    run = session.execute(sa.select(Run).where(Run.kind == "reconcile")).scalar_one()
    assert run.status == "failed" and run.active_list_id is None
    recorded = session.execute(sa.select(Outcome.email).where(Outcome.run_id == run.id))
    # The first page (a, in the audience's order) was kept; the second (b), read after
    # the takeover, was not.
    assert [email for (email,) in recorded] == ["a@laposte.net"] and len(pages) == 2
    shop = customers()
    assert (shop["a@laposte.net"], shop["b@laposte.net"]) == (False, True)


def test_the_workers_reconcile_periodically_when_configured(
    database_url: str, redis_url: str, sandbox: SandboxServer
) -> None:
    from example_app import create_app
    from flask_mcsync.models import Run

    config = {**app_config(database_url, redis_url, sandbox), "MCSYNC_RECONCILE_INTERVAL": 1}
    application = create_app(config)
    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test",
        **{k: str(v) for k, v in config.items() if k.startswith("MCSYNC_") and v},
    }
    import os

    env.update({k: v for k, v in os.environ.items() if not k.startswith("MCSYNC_")})
    pool = Workers(env)
    with application.app_context():
        activate(application)
        _shop(("a@laposte.net", True))
        _audience(sandbox, ("a@laposte.net", "unsubscribed"))
        pool.start(1)
        try:
            wait_for(lambda: customers() == {"a@laposte.net": False}, 40, "a periodic reconcile")
        finally:
            pool.stop_all()
        session = db().session
        kinds = session.execute(sa.select(Run.kind, Run.started_by)).all()
        assert ("reconcile", "schedule") in kinds
        session.remove()
        db().engine.dispose()


# --- the round trip -------------------------------------------------------------------------


def test_an_unsubscribe_in_mailchimp_survives_a_manual_export(
    app: Flask, sandbox: SandboxServer, workers: Workers
) -> None:
    from flask_mcsync import connect
    from flask_mcsync.runs import start_export

    activate(app)
    _shop(("stays@laposte.net", True), ("leaves@laposte.net", True))
    _audience(sandbox, ("stays@laposte.net", "subscribed"), ("leaves@laposte.net", "subscribed"))
    connect.register(ext(app))
    workers.start(1)
    sandbox.client.unsubscribe(LIST_ID, "leaves@laposte.net")
    wait_for(lambda: customers()["leaves@laposte.net"] is False, 30, "the flag to go off")

    started = start_export(ext(app), "test")
    wait_run_ended(db().session, started.run.id, 60)

    assert sandbox.client.member(LIST_ID, "leaves@laposte.net")["status"] == "unsubscribed"
    assert sandbox.client.member(LIST_ID, "stays@laposte.net")["status"] == "subscribed"
    assert customers()["leaves@laposte.net"] is False


# --- the drift report ----------------------------------------------------------------------


def test_drift_counts_match_an_independent_count(
    app: Flask, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, client: Any
) -> None:
    from example_app.models import Customer

    activate(app)
    shop = {f"s{i}@laposte.net": i % 3 != 0 for i in range(60)}  # every third: no newsletter
    names = {email: ("Ada" if i % 7 else "Grace") for i, email in enumerate(shop)}
    db().session.execute(
        sa.insert(Customer),
        [
            {"email": e, "first_name": names[e], "last_name": "Lovelace", "newsletter": flag}
            for e, flag in shop.items()
        ],
    )
    db().session.commit()
    statuses = ["subscribed", "unsubscribed", "cleaned", "subscribed", "archived"]
    audience = {email: statuses[i % 5] for i, email in enumerate(list(shop)[:50])}
    audience.update({f"mc{i}@laposte.net": "subscribed" for i in range(7)})
    audience["mc-gone@laposte.net"] = "unsubscribed"
    sandbox.client.seed_members(
        LIST_ID,
        [
            {"email_address": e, "status": s, "merge_fields": {"FNAME": "Ada", "LNAME": "Lovelace"}}
            for e, s in audience.items()
        ],
    )
    # The reconcile would apply the unsubscribes to the shop: keep the shop as it is so
    # the drift is there to count (a host without the hook).
    monkeypatch.setattr(ext(app).source, "on_mailchimp_change", None)
    assert _cli(app, "reconcile").exit_code == 0
    monkeypatch.undo()

    off = ("unsubscribed", "cleaned", "archived")
    independent = {
        "left_in_mailchimp": sum(
            1 for e, s in audience.items() if shop.get(e) is True and s in off
        ),
        "subscribed_in_mailchimp": sum(
            1 for e, s in audience.items() if shop.get(e) is False and s == "subscribed"
        ),
        "not_in_shop": sum(1 for e, s in audience.items() if e not in shop and s not in off),
        "merge_fields": sum(
            1
            for e, s in audience.items()
            if shop.get(e) is True and s == "subscribed" and names[e] != "Ada"
        ),
    }
    assert all(independent.values()), independent
    report = json.loads(_cli(app, "drift", "--json").output)
    assert report["counts"] == independent
    assert report["total"] == len(report["rows"]) == sum(independent.values())
    actions = {r["kind"]: r["action"] for r in report["rows"]}
    assert actions == {
        "left_in_mailchimp": "apply to the shop",
        "subscribed_in_mailchimp": "apply to the shop",
        "not_in_shop": "nothing",
        "merge_fields": "re-sync",
    }
    rows = list(csv.DictReader(io.StringIO(_cli(app, "drift", "--csv").output)))
    assert len(rows) == sum(independent.values())
    assert {r["email"] for r in rows} == {r["email"] for r in report["rows"]}
    text = _cli(app, "drift").output
    assert "Merge fields differ" in text
    # The page says each side in the owner's language; the CSV keeps its English words.
    assert {r["shop"] for r in rows} == {"subscriber", "not a subscriber", "not in the shop"}
    page = client.get("/admin/mailchimp/status/drift", headers={"Accept-Language": "fr-FR"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for english, french in (
        ("not in the shop", "Absente de la boutique"),
        ("not a subscriber", "Non abonné"),
        ("subscriber", "Abonné"),
    ):
        assert f'<td data-shop="{english}">{french}</td>' in html
    assert "abonné</span>" in html  # Mailchimp's "subscribed", as its French interface says
    # A merge field that differs: the CSV's English, the page's French.
    merge = next(r for r in rows if r["kind"] == "merge_fields")
    assert re.fullmatch(r"(\w+): shop .* / Mailchimp .*", merge["detail"].split("; ")[0])
    tag = merge["detail"].split(":")[0]
    assert f"{tag} : boutique " in unescape(html) and ": shop " not in html
