""" "Connect Mailchimp's changes" (General settings) and the "Drift report" tab in a real
headless Chromium, with the shop served on a port the sandbox calls back, and real
workers applying the webhook's events and running the reconcile the page queues.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from support import Workers, app_config, free_port, wait_for
from support import admin_login as _login
from werkzeug.serving import make_server

from example_app.models import Customer, db
from flask_mcsync import settings, state
from flask_mcsync.gateway import gateway_for
from flask_mcsync.sandbox import SandboxServer

pytestmark = pytest.mark.browser

PREFIX = "/admin/mailchimp"
LIST_ID = "a1b2c3d4e5"
PWN = "<img src=x onerror=window.__pwned=1>"


@pytest.fixture
def app(database_url: str, redis_url: str, sandbox: SandboxServer) -> Iterator[Flask]:
    from example_app import create_app

    port = free_port()
    config = app_config(database_url, redis_url, sandbox)
    config["MCSYNC_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    application = create_app(config)
    application.config["TEST_PORT"] = port
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", app.config["TEST_PORT"], app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def _customers() -> dict[str, bool]:
    db.session.commit()
    db.session.expire_all()
    found = dict(db.session.execute(sa.select(Customer.email, Customer.newsletter)).all())
    db.session.commit()
    return found


def test_connect_mailchimps_changes_and_read_the_drift_report(
    app: Flask,
    live_server: str,
    page: Any,
    shots: Any,
    sandbox: SandboxServer,
    workers: Workers,
) -> None:
    ext = state(app)
    settings.update(ext.session, ext.config, list_id=LIST_ID)
    settings.mark_first_export_done(ext.session, ext.config)
    ext.session.commit()
    shop = [
        ("leaver@laposte.net", True),
        ("renamed@laposte.net", True),
        ("quiet@laposte.net", False),
        ("steady@laposte.net", True),
    ]
    for email, flag in shop:
        db.session.add(Customer(email=email, first_name="Ada", last_name="Lee", newsletter=flag))
    db.session.commit()
    sandbox.client.seed_members(
        LIST_ID,
        [
            {
                "email_address": "leaver@laposte.net",
                "merge_fields": {"FNAME": "Ada", "LNAME": "Lee"},
            },
            {
                "email_address": "renamed@laposte.net",
                "merge_fields": {"FNAME": PWN, "LNAME": "Lee"},
            },
            {
                "email_address": "quiet@laposte.net",
                "merge_fields": {"FNAME": "Ada", "LNAME": "Lee"},
            },
            {
                "email_address": "steady@laposte.net",
                "merge_fields": {"FNAME": "Ada", "LNAME": "Lee"},
            },
            {"email_address": "mc.only@laposte.net", "merge_fields": {"FNAME": "Mo"}},
        ],
    )
    workers.start(1)
    _login(page, live_server)

    # General settings: the card says the webhook is not in place, and offers to connect.
    card = page.locator("#mailchimp-changes")
    card.scroll_into_view_if_needed()
    assert "Not in place" in card.inner_text()
    assert "None yet" in page.locator("#webhook-last-event").inner_text()
    shots.take(page, "settings-not-connected")
    page.click("#register-webhook")
    page.wait_for_selector(".mc-flash-success")
    assert "In place" in card.inner_text()
    assert page.locator("#webhook-sources").inner_text() == (
        "the account's admins: yes, the API: no, the person: yes"
    )
    url = page.locator("#webhook-url").inner_text()
    assert url.startswith(f"{live_server}/mcsync/webhook/") and url.endswith("…")
    secret = settings.webhook_secret(db.session)
    db.session.commit()
    assert secret and secret not in page.content()
    card.scroll_into_view_if_needed()
    shots.take(page, "settings-connected")

    # The person unsubscribes in Mailchimp: the webhook brings it to the shop.
    sandbox.client.unsubscribe(LIST_ID, "leaver@laposte.net")
    wait_for(lambda: _customers()["leaver@laposte.net"] is False, 30, "the flag to go off")
    page.reload()
    assert "unsubscribe" in page.locator("#webhook-last-event").inner_text()
    page.locator("#mailchimp-changes").scroll_into_view_if_needed()
    shots.take(page, "settings-last-event")

    # Sync status shows the change "From Mailchimp"; its Drift report subtab.
    page.click("text=Sync status")
    assert "From Mailchimp" in page.locator("main").inner_text()
    page.click(".mc-subtabs >> text=Drift report")
    page.wait_for_url(f"{live_server}{PREFIX}/status/drift")
    assert page.locator("#never-reconciled").is_visible()
    shots.take(page, "drift-before-reconcile")
    page.click("#reconcile-now")
    page.wait_for_selector(".mc-flash-info")

    def reconciled() -> bool:
        page.reload()
        return page.locator("#drift-basis").count() == 1

    wait_for(reconciled, 40, "the reconcile to finish")
    counts = {
        row.get_attribute("data-kind"): int(row.locator("td").first.get_attribute("data-count"))
        for row in page.locator("#drift-counts tbody tr").all()
    }
    assert counts == {
        "left_in_mailchimp": 0,  # the webhook already applied the unsubscribe
        "subscribed_in_mailchimp": 1,  # quiet@
        "not_in_shop": 1,  # mc.only@
        "merge_fields": 1,  # renamed@: Mailchimp holds another first name
    }
    rows = page.locator("#drift-table tbody tr")
    assert rows.count() == 3
    merge_row = page.locator("#drift-table tr[data-kind=merge_fields]")
    assert PWN in merge_row.inner_text()  # shown as text
    assert page.evaluate("window.__pwned") is None
    assert "Re-sync" in merge_row.inner_text()
    shots.take(page, "drift-report", full_page=True)
    with page.expect_download() as download:
        page.click("#drift-csv")
    with open(download.value.path(), encoding="utf-8") as handle:
        text = handle.read()
    assert text.splitlines()[0] == "email,kind,shop,mailchimp,detail,action"
    assert len(text.splitlines()) == 4

    # Disconnect: the card says so, and Mailchimp no longer holds the webhook.
    page.click("text=General settings")
    page.click("#remove-webhook")
    page.wait_for_selector(".mc-flash-success")
    assert "Not in place" in page.locator("#mailchimp-changes").inner_text()
    assert gateway_for(ext).webhooks(LIST_ID) == []
