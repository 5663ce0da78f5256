"""The "Sync status" dashboard and the "Diagnostic tool" in a real headless Chromium.

A small export runs in real worker processes against the sandbox; the dashboard then
shows it with Mailchimp's refusals, and the diagnostic tool's re-sync is carried out by
the same workers while the page waits for the outcome by itself. Hostile texts (an
address, merge fields, an error title) must show as text: no injected script may run.
"""

from __future__ import annotations

import csv
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from support import add_refused_autosync
from support import admin_login as login

from example_app.commands import make_customers
from example_app.models import Customer, db
from flask_mcsync import exclusions, settings, state
from flask_mcsync.models import Run
from flask_mcsync.runs import progress, start_export
from flask_mcsync.sandbox import SandboxServer

pytestmark = pytest.mark.browser

PREFIX = "/admin/mailchimp"
LIST_ID = "a1b2c3d4e5"
PWN = "<img src=x onerror=window.__pwned=1>"
# A valid address full of HTML-significant characters, shown as text on every page.
ODD_ADDRESS = "'onmouseover=window.__pwned&x@gmail.com"
# Valid for the shop, refused by Mailchimp as fake: an error row to show (the shop itself
# judges example.com and the like invalid, so the local part is what Mailchimp refuses).
FAKE_ADDRESS = "fake@gmail.com"
FORGOTTEN = "gone.forever@gmail.com"


def customer(
    email: str, first: str = "Ann", last: str = "Lee", newsletter: bool = True
) -> dict[str, Any]:
    return {"email": email, "first_name": first, "last_name": last, "newsletter": newsletter}


def wait_ended(session: Any, run_id: int, timeout: float = 60) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        session.commit()
        session.expire_all()
        data = progress(session, run_id)
        session.commit()
        if data and data["ended"]:
            return data
        if time.monotonic() > deadline:
            pytest.fail(f"export run {run_id} did not end in {timeout}s: {data}")
        time.sleep(0.2)


def add_old_autosync(days_ago: int) -> Run:
    """An auto-sync that Mailchimp refused some days ago, with a hostile error title."""
    at = datetime.now(timezone.utc) - timedelta(days=days_ago)
    run = add_refused_autosync(
        db.session,
        ["late.signup@gmail.com"],
        f"Timeout {PWN}",
        "Gave up after 5 tries.",
        message=f"Refused {PWN}",
        permanent=False,
        at=at,
        list_id=LIST_ID,
    )
    run.started_at = run.finished_at = at
    db.session.commit()
    return run


def no_injection(page: Any) -> None:
    assert page.evaluate("window.__pwned") is None, "an injected script ran"


@pytest.mark.slow
def test_sync_status_shows_the_export_its_errors_and_the_csv(
    app: Flask,
    live_server: str,
    page: Any,
    shots: Any,
    workers: Any,
    sandbox: SandboxServer,
    tmp_path: Path,
) -> None:
    rows = make_customers(120)
    rows += [customer(ODD_ADDRESS), customer(FORGOTTEN), customer("test@orange.fr")]
    rows += [customer(FAKE_ADDRESS)]
    db.session.execute(sa.insert(Customer), rows)
    db.session.commit()
    ext = state(app)
    settings.update(ext.session, ext.config, list_id=LIST_ID, list_name="Demo shop newsletter")
    sandbox.client.forget(LIST_ID, [FORGOTTEN])
    old = add_old_autosync(days_ago=2)
    workers.start(1)
    run_id = int(start_export(ext, "admin pages", batch_size=40).run.id)
    ext.session.commit()
    done = wait_ended(ext.session, run_id)
    assert done["status"] == "finished" and done["errors"] == 3, done

    login(page, live_server)
    page.click(".mc-tab >> text=Sync status")
    page.wait_for_url(re.compile(r".*/status$"))
    assert page.locator(".mc-tab.is-active").text_content().strip() == "Sync status"
    assert page.locator(".mc-subtab", has_text="Diagnostic tool").is_visible()
    assert page.input_value("#days") == "7"
    shots.take(page, "status-default", full_page=True)

    # Pick a period and Search: the URL says it, so it can be shared.
    page.fill("#days", "3")
    page.click("#search")
    page.wait_for_url(re.compile(r".*/status\?days=3$"))
    runs = page.locator("#runs-table tbody tr[data-run-id]")
    assert runs.count() == 2
    first = runs.first
    assert first.get_attribute("data-run-id") == str(run_id)
    assert "Manual export" in first.text_content()
    assert runs.nth(1).get_attribute("data-run-id") == str(old.id)
    # The chart: four days, bars for today's export and the failed auto-sync.
    assert page.locator("svg.mc-chart").is_visible()
    assert page.locator("svg.mc-chart .mc-chart-day").count() == 4
    today = datetime.now(timezone.utc).date().isoformat()
    day = page.locator(f'.mc-chart-day[data-day="{today}"]')
    assert day.get_attribute("data-synced") == str(done["created"] + done["updated"])
    assert day.get_attribute("data-failed") == "3"
    assert page.locator("svg.mc-chart .mc-bar-failed").count() == 2
    assert page.text_content("[data-total=errors]") == "4"
    shots.take(page, "status-3-days", full_page=True)
    no_injection(page)
    # Both tables fit the page at 1280 px, the errors' long unbroken title included (a
    # title column kept from breaking inside words pushed the When and Run columns out).
    overflow = page.evaluate(
        "() => [...document.querySelectorAll('.mc-table-scroll')]"
        ".map(e => [e.querySelector('table').id, e.scrollWidth - e.clientWidth])"
    )
    assert overflow and all(px <= 0 for _, px in overflow), overflow

    # A too long period is refused with a sentence.
    page.fill("#days", "400")
    page.click("#search")
    assert "between 1 and 365 days" in page.text_content("#days-error")
    shots.take(page, "status-bad-period")
    page.goto(f"{live_server}{PREFIX}/status?days=3")

    # The run: its batches and Mailchimp's refusals.
    page.click(f'#runs-table a:text-is("Run {run_id}")')
    page.wait_for_url(re.compile(rf".*/status/runs/{run_id}\?days=3$"))
    batch_rows = page.locator("#batches-table tbody tr[data-status]")
    assert batch_rows.count() == len(done["batches"])
    assert all(s == "done" for s in batch_rows.evaluate_all("rs => rs.map(r => r.dataset.status)"))
    errors = page.locator("#errors-table tbody tr")
    assert errors.count() == 3
    emails = errors.locator("code.mc-email").all_text_contents()
    assert sorted(emails) == sorted([FAKE_ADDRESS, FORGOTTEN, "test@orange.fr"])
    odd = page.locator("#errors-table tbody tr", has_text=FAKE_ADDRESS)
    assert "looks fake or invalid" in odd.text_content()
    shots.take(page, "run", full_page=True)

    # Filter by Mailchimp's title, then by kind.
    page.select_option("#error-title", "Forgotten Email Not Subscribed")
    page.click("#filter-errors")
    page.wait_for_url(re.compile(r".*title=Forgotten.*"))
    assert page.locator("#errors-table code.mc-email").all_text_contents() == [FORGOTTEN]
    shots.take(page, "run-filtered-title", full_page=True)
    page.click("#clear-filters")
    page.select_option("#error-kind", "retried")
    page.click("#filter-errors")
    page.wait_for_selector("#no-errors")
    page.select_option("#error-kind", "permanent")
    page.click("#filter-errors")
    page.wait_for_url(re.compile(r".*kind=permanent.*"))
    shown = page.locator("#errors-table code.mc-email").all_text_contents()
    assert len(shown) == 3
    shots.take(page, "run-filtered-permanent", full_page=True)

    # Download CSV: the rows of the page, as text.
    with page.expect_download() as info:
        page.click("#download-csv")
    download = info.value
    assert download.suggested_filename == f"mailchimp-errors-run-{run_id}-permanent.csv"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    with target.open(newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [r["email"] for r in csv_rows] == shown
    assert {r["title"] for r in csv_rows} == {"Invalid Resource", "Forgotten Email Not Subscribed"}
    no_injection(page)

    # The older failed auto-sync: its hostile texts show as text.
    page.click("#back-to-status")
    page.click(f'#runs-table a:text-is("Run {old.id}")')
    page.wait_for_selector("#errors-table")
    assert page.text_content("#run-message") == f"Refused {PWN}"
    assert page.locator("#errors-table .mc-error-title").text_content() == f"Timeout {PWN}"
    assert page.locator("#errors-table .mc-badge-retried").is_visible()
    shots.take(page, "run-autosync", full_page=True)
    no_injection(page)


@pytest.mark.slow
def test_diagnostic_tool_looks_up_and_resynchronizes(
    app: Flask, live_server: str, page: Any, shots: Any, workers: Any, sandbox: SandboxServer
) -> None:
    db.session.execute(
        sa.insert(Customer),
        [
            customer("Anne.Synced@Gmail.com", "Anne", "Synced"),
            customer("someone@shop.mailinator.com", "Ex", "Cluded"),
            customer("Una.Sub@gmail.com", "Una", PWN),
        ],
    )
    db.session.commit()
    ext = state(app)
    settings.update(ext.session, ext.config, list_id=LIST_ID, list_name="Demo shop newsletter")
    exclusions.add_rule(ext.session, "domain", "mailinator.com")
    sandbox.client.seed_members(
        LIST_ID,
        [
            {
                "email_address": "Anne.Synced@Gmail.com",
                "status": "subscribed",
                "merge_fields": {"FNAME": "Anne", "LNAME": "Synced"},
            },
            {
                "email_address": "una.sub@gmail.com",
                "status": "unsubscribed",
                "merge_fields": {"FNAME": "Old", "LNAME": PWN},
            },
        ],
    )
    workers.start(1)

    login(page, live_server)
    page.goto(f"{live_server}{PREFIX}/status")
    page.click(".mc-subtab >> text=Diagnostic tool")
    page.wait_for_url(re.compile(r".*/status/diagnostic$"))
    shots.take(page, "diagnostic-empty")

    # An eligible address, typed in another case with spaces around.
    page.fill("#email", "  ANNE.synced@gmail.com ")
    page.click("#lookup-search")
    page.wait_for_selector("#verdict")
    assert page.get_attribute("#mc-status", "data-status") == "subscribed"
    assert "Subscriber" in page.text_content("#fact-shop")
    assert "Anne.Synced@Gmail.com" in page.text_content("#shop-rows")
    assert page.text_content("#fact-valid").strip() == "Valid"
    assert "Not excluded" in page.text_content("#fact-excluded")
    assert page.is_enabled("#resync-button")
    shots.take(page, "diagnostic-eligible", full_page=True)

    # An excluded one: the rule is named and the button disabled, saying why.
    page.fill("#email", "Someone@Shop.Mailinator.com")
    page.click("#lookup-search")
    page.wait_for_selector("#verdict")
    assert "whole domain 'mailinator.com'" in page.text_content("#fact-excluded")
    assert page.is_disabled("#resync-button")
    assert "excluded by the whole domain 'mailinator.com' rule" in page.text_content(
        "#resync-refusal"
    )
    shots.take(page, "diagnostic-excluded", full_page=True)

    # Unsubscribed in the audience: re-synchronize; the outcome appears by itself and
    # the status stays unsubscribed while the merge fields are updated.
    page.fill("#email", "una.sub@gmail.com")
    page.click("#lookup-search")
    page.wait_for_selector("#verdict")
    assert page.get_attribute("#mc-status", "data-status") == "unsubscribed"
    assert PWN in page.text_content("#mc-merge")
    shots.take(page, "diagnostic-unsubscribed", full_page=True)
    page.click("#resync-button")
    page.wait_for_selector("#resync")
    shots.take(page, "resync-queued")
    page.wait_for_selector("#resync-outcome", timeout=30_000)
    assert page.get_attribute("#resync-outcome", "data-outcome") == "updated"
    assert "unsubscribed" in page.text_content("#resync-outcome")
    assert page.get_attribute("#mc-status", "data-status") == "unsubscribed"
    assert "Una" in page.text_content("#mc-merge") and "Old" not in page.text_content("#mc-merge")
    assert page.locator("#history-table tbody tr").first.get_attribute("data-outcome") == "updated"
    shots.take(page, "resync-done", full_page=True)
    no_injection(page)
    member = sandbox.client.member(LIST_ID, "una.sub@gmail.com")
    assert member is not None and member["status"] == "unsubscribed"
    assert member["merge_fields"]["FNAME"] == "Una"

    # The re-sync is in the dashboard.
    page.click(".mc-subtab >> text=Sync status")
    page.wait_for_selector("#runs-table")
    assert "Re-sync" in page.locator("#runs-table tbody tr[data-run-id]").first.text_content()
    shots.take(page, "status-with-resync", full_page=True)
    no_injection(page)
