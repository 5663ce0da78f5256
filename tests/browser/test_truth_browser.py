"""The truth in a real headless Chromium: a customer opts out then in again through the
example shop's own pages, Mailchimp (the sandbox) holds them ``pending`` and the Sync
status dashboard and the Diagnostic tool say a confirmation e-mail was sent; and the
export window stops on a required merge field the shop does not fill until the owner
ticks skip_merge_validation.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from support import admin_login as login

from example_app.models import Customer, db
from flask_mcsync import settings, state
from flask_mcsync.models import Run
from flask_mcsync.sandbox import SandboxServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PREFIX = "/admin/mailchimp"
LIST_ID = "a1b2c3d4e5"


def wait_until(predicate: Any, what: str, timeout: float = 45) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def auto_runs_ended(count: int) -> bool:
    db.session.commit()
    db.session.expire_all()
    ended = db.session.execute(
        sa.select(sa.func.count())
        .select_from(Run)
        .where(Run.kind == "auto", Run.status.in_(("finished", "failed")))
    ).scalar_one()
    return int(ended) >= count


def test_opt_out_then_in_again_shows_the_confirmation_email(
    app: Flask, live_server: str, page: Any, shots: Any, workers: Any, sandbox: SandboxServer
) -> None:
    ext = state(app)
    settings.update(ext.session, ext.config, list_id=LIST_ID, list_name="Demo shop newsletter")
    settings.mark_first_export_done(ext.session, ext.config)
    ext.session.commit()
    workers.start(1)
    email = "back.again@gmail.com"

    def status() -> str | None:
        return (sandbox.client.member(LIST_ID, email) or {}).get("status")

    # The shop's pages, as the customer uses them.
    page.goto(f"{live_server}/")
    page.fill("#email", email)
    page.fill("#first_name", "Back")
    page.check("input[name=newsletter]")
    page.click("button[type=submit]")
    wait_until(lambda: status() == "subscribed" and auto_runs_ended(1), "the signup")

    page.goto(f"{live_server}/newsletter")
    page.fill("#email", email)
    page.check("input[name=newsletter][value='0']")
    page.click("button[type=submit]")
    wait_until(lambda: status() == "unsubscribed" and auto_runs_ended(2), "the opt-out")

    page.goto(f"{live_server}/newsletter")
    page.fill("#email", email)
    page.check("input[name=newsletter][value='1']")
    page.click("button[type=submit]")
    wait_until(lambda: auto_runs_ended(3), "the opt-in again")
    assert status() == "pending"
    assert [e["email_address"] for e in sandbox.client.confirmation_emails(LIST_ID)] == [email]

    login(page, live_server)
    page.goto(f"{live_server}{PREFIX}/status")
    kinds = page.eval_on_selector_all(
        "#runs-table tbody tr td:nth-child(4) .mc-kind", "els => els.map(e => e.textContent)"
    )
    assert kinds == [
        "Auto-sync · newsletter opt-in",
        "Auto-sync · opt-out",
        "Auto-sync · signup",
    ]
    assert page.text_content("[data-total=confirmations]") == "1"
    shots.take(page, "dashboard", full_page=True)

    page.goto(f"{live_server}{PREFIX}/status/diagnostic")
    page.fill("#email", email)
    page.click("#lookup-search")
    page.wait_for_selector("#history-table")
    assert page.get_attribute("#mc-status", "data-status") == "pending"
    first = page.locator("#history-table tbody tr").first
    assert first.get_attribute("data-outcome") == "confirmation"
    assert "Confirmation e-mail sent" in (first.text_content() or "")
    assert "Auto-sync · newsletter opt-in" in (first.text_content() or "")
    shots.take(page, "diagnostic", full_page=True)


def test_export_window_names_the_unfilled_required_field_until_skipped(
    app: Flask, live_server: str, page: Any, shots: Any, workers: Any, sandbox: SandboxServer
) -> None:
    audience = "c3d4e5f6a7"
    sandbox.client.create_list(
        "Needs a phone",
        [
            {"tag": "FNAME", "name": "First name"},
            {"tag": "PHONE", "name": "Phone", "type": "phone", "required": True},
        ],
        list_id=audience,
    )
    emails = [f"window.buyer{i}@gmail.com" for i in range(4)]
    db.session.execute(
        sa.insert(Customer),
        [{"email": e, "first_name": "W", "newsletter": True, "vip": True} for e in emails],
    )
    db.session.commit()
    ext = state(app)
    settings.update(ext.session, ext.config, list_id=audience, list_name="Needs a phone")
    ext.session.commit()
    workers.start(1)

    login(page, live_server)
    page.goto(f"{live_server}{PREFIX}/sync")
    page.click("#export-users")
    page.wait_for_selector("#xw-prefs:not([hidden])")
    page.wait_for_selector("#xw-merge:not([hidden])")
    message = page.text_content("#xw-merge-message") or ""
    assert "PHONE (Phone)" in message and "up to 4" in message
    shots.take(page, "merge-warning")

    page.click("#xw-synchronize")
    page.wait_for_selector("#xw-error:not([hidden])")
    assert "PHONE (Phone)" in (page.text_content("#xw-error") or "")

    page.check("#xw-skip-merge")
    page.click("#xw-synchronize")
    page.wait_for_selector("#xw-summary:not([hidden])", timeout=60_000)
    assert page.text_content("#xs-created") == "4"
    db.session.commit()
    run = db.session.execute(sa.select(Run).where(Run.kind == "export")).scalar_one()
    assert run.skip_merge_validation
    for email in emails:
        member = sandbox.client.member(audience, email)
        assert member is not None and member["status"] == "subscribed"
    page.goto(f"{live_server}{PREFIX}/status/runs/{run.id}")
    assert "skip_merge_validation" in (page.text_content("#run-merge-validation") or "")
