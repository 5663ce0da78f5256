"""The admin pages in a real headless Chromium: what the shop owner clicks and sees.

The export runs in real worker processes against the sandbox, slowed down so the batches
visibly move from waiting to processing to done while the window watches.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from support import admin_login as login

from example_app.commands import make_customers
from example_app.models import Customer, db
from flask_mcsync import exclusions, settings, state
from flask_mcsync.eligibility import tally
from flask_mcsync.sandbox import SandboxServer

pytestmark = pytest.mark.browser

PREFIX = "/admin/mailchimp"
LIST_ID = "a1b2c3d4e5"
# A valid address full of HTML-significant characters, one Mailchimp refuses as fake (so
# the run has one error to show: the shop cannot tell it from a real one), and an invalid
# one that is markup.
ODD_ADDRESS = "'onmouseover=window.__pwned&x@gmail.com"
FAKE_ADDRESS = "fake@orange.fr"
MARKUP_ADDRESS = "<img src=x onerror=window.__pwned=1>@example.com"
MARKUP_NAME = "Promo <img src=x onerror=window.__pwned=1>"


def seed(count: int) -> None:
    # The odd address first: it opens batch 1, so the window must show it as text.
    rows = [{"email": ODD_ADDRESS, "first_name": "O", "last_name": "B", "newsletter": True}]
    rows += make_customers(count)
    rows.append({"email": MARKUP_ADDRESS, "first_name": "M", "last_name": "X", "newsletter": True})
    rows.append({"email": FAKE_ADDRESS, "first_name": "F", "last_name": "K", "newsletter": True})
    db.session.execute(sa.insert(Customer), rows)
    db.session.commit()


def batch_states(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all(
            "#xw-batches tbody tr", "rows => rows.map(r => r.getAttribute('data-status'))"
        )
    )


@pytest.mark.slow
def test_manual_export_window_follows_the_run(
    app: Flask, live_server: str, page: Any, shots: Any, workers: Any, sandbox: SandboxServer
) -> None:
    seed(1400)
    ext = state(app)
    settings.update(ext.session, ext.config, list_id=LIST_ID, list_name="Demo shop newsletter")
    exclusions.add_rule(ext.session, "domain", "yopmail.com")
    expected = tally(ext.session, ext.require_source(), exclusions.load_ruleset(ext.session))
    ext.session.commit()
    # ~1000 addresses in batches of 100, at 30 operations a second: each batch stays 3 s
    # or more at Mailchimp, so the window shows all ten with some still processing.
    sandbox.client.set_faults(batch_ops_per_second=30)
    workers.start(2)

    login(page, live_server)
    page.click("text=Users list synching")
    page.wait_for_url(f"{live_server}{PREFIX}/sync")
    assert page.locator("h2", has_text="Manual synching").is_visible()
    shots.take(page, "manual-synching", full_page=True)

    # The window: target audience, the numbers, the batch size.
    page.click("#export-users")
    page.wait_for_selector("#xw-prefs:not([hidden])")
    assert page.text_content("#xw-list-name") == "Demo shop newsletter"
    assert page.text_content("#xw-to-export") == f"{expected.send:,}"
    assert page.text_content("#xw-excluded") == f"{expected.excluded:,}"
    assert page.text_content("#xw-invalid") == f"{expected.invalid:,}"
    assert page.text_content("#xw-duplicates") == f"{expected.duplicate:,}"
    assert page.input_value("#xw-batch-size") == str(ext.config.default_batch_size)
    assert page.locator("h3", has_text="Preferences for users e-mail addresses").is_visible()
    shots.take(page, "export-window")

    # A wrong number is refused in place; then 100 per batch.
    page.fill("#xw-batch-size", "0")
    page.click("#xw-synchronize")
    assert "between 1 and" in page.text_content("#xw-error")
    shots.take(page, "batch-size-error")
    page.fill("#xw-batch-size", "100")
    assert page.text_content("#xw-batch-count") == f"→ {-(-expected.send // 100)} batches"
    page.click("#xw-synchronize")
    page.wait_for_selector("#xw-progress:not([hidden])")
    run_id = page.get_attribute("#xw-progress", "data-run-id")
    assert run_id

    # Batches appear and move: every batch listed, some done while others still wait or
    # are processed. (A chunk's job sends each batch as it plans it, so the first can be
    # done before the last is planned.)
    batches = -(-expected.send // 100)
    page.wait_for_function(
        "n => { const s = [...document.querySelectorAll('#xw-batches tbody tr')]"
        ".map(r => r.dataset.status);"
        " return s.length === n && s.includes('done') && s.some(x => x !== 'done'); }",
        arg=batches,
        timeout=60_000,
        # The window redraws once a second (POLL_MS): four looks a second see every
        # state it shows, where the default (every frame) kept Chromium drawing.
        polling=250,
    )
    states = batch_states(page)
    assert len(states) == batches
    first_row = page.locator("#xw-batches tbody tr").first
    assert first_row.locator("td").nth(3).text_content() == ODD_ADDRESS
    shots.take(page, "progress-running")
    processing = page.locator("#xw-batches tbody tr[data-status=processing]")
    if processing.count():
        assert "Processing at Mailchimp" in processing.first.text_content()

    # Closing the window stops nothing; "Export users" opens it again on the same run.
    page.click(".mc-close")
    assert page.locator("#export-window").is_hidden()
    shots.take(page, "window-closed")
    page.wait_for_timeout(1500)
    page.click("#export-users")
    page.wait_for_selector("#xw-progress:not([hidden])")
    assert page.get_attribute("#xw-progress", "data-run-id") == run_id
    shots.take(page, "window-reopened")
    page.keyboard.press("Escape")
    assert page.locator("#export-window").is_hidden()
    page.click("#export-users")
    page.wait_for_selector("#xw-progress:not([hidden])")
    assert page.get_attribute("#xw-progress", "data-run-id") == run_id

    # The end: the summary, then the window closes itself and the page shows the result.
    page.wait_for_selector("#xw-summary:not([hidden])", timeout=90_000)
    shots.take(page, "summary")
    assert batch_states(page) == ["done"] * len(states)
    exported = int(page.text_content("#xs-exported").replace(",", ""))
    errors = int(page.text_content("#xs-errors"))
    # Mailchimp refuses "fake@..." as fake: that is the run's one error.
    assert (exported, errors) == (expected.send - 1, 1)
    assert page.locator("#xs-errors-item.mc-stat-bad").is_visible()
    assert page.text_content("#xs-excluded") == f"{expected.excluded:,}"
    assert page.text_content("#xs-invalid") == f"{expected.invalid:,}"
    assert page.text_content("#xw-percent") == "100.0\u00a0%"
    page.wait_for_selector("#export-window", state="hidden", timeout=30_000)
    page.wait_for_selector("#last-export .mc-badge-finished")
    shots.take(page, "last-export", full_page=True)
    assert page.evaluate("window.__pwned") is None

    sandbox_counts = sandbox.client.members(LIST_ID)["counts"]
    assert sum(sandbox_counts.values()) == exported


def test_settings_choose_audience_and_add_rules(
    app: Flask, live_server: str, page: Any, shots: Any, sandbox: SandboxServer
) -> None:
    seed(400)
    promo = sandbox.client.create_list(MARKUP_NAME)
    login(page, live_server)
    assert page.locator(".mc-badge-ok", has_text="Connected").is_visible()
    shots.take(page, "settings", full_page=True)

    # Pick the audience (its name is markup: it must show as text).
    options = page.eval_on_selector_all("#list_id option", "os => os.map(o => o.textContent)")
    assert any(MARKUP_NAME in option for option in options)
    page.select_option("#list_id", promo["id"])
    page.check("input[name=double_optin]")
    page.fill("#batch_size", "250")
    page.click("text=Save settings")
    page.wait_for_selector(".mc-flash-success")
    assert "Settings saved." in page.text_content(".mc-flash-success")
    assert page.input_value("#list_id") == promo["id"]
    assert page.is_checked("input[name=double_optin]")
    shots.take(page, "settings-saved", full_page=True)

    # A bad batch size is explained beside the field, what was typed kept.
    page.fill("#batch_size", "0")
    page.click("text=Save settings")
    assert "at least 1 address" in page.text_content("#sync-settings .mc-field-error")
    assert page.input_value("#batch_size") == "0"
    page.goto(f"{live_server}{PREFIX}/")

    # Rules: add two, see how many addresses each excludes, refuse a bad one, remove one.
    page.select_option("#rule-kind", "domain")
    page.fill("#rule-value", "yopmail.com")
    page.click("text=Add rule")
    page.wait_for_selector("#rules-table")
    page.select_option("#rule-kind", "pattern")
    page.fill("#rule-value", "test+*@*")
    page.click("text=Add rule")
    # The click reloads the page: wait for the new one (counting at once could read the
    # page in between).
    page.wait_for_selector("#rules-table tbody tr:nth-child(2)")
    rows = page.locator("#rules-table tbody tr")
    assert rows.count() == 2
    assert re.fullmatch(r"[1-9]\d*", rows.nth(0).locator("td").nth(2).text_content().strip())
    assert rows.nth(1).locator("td").nth(1).text_content() == "test+*@*"
    shots.take(page, "rules", full_page=True)

    page.select_option("#rule-kind", "pattern")
    page.fill("#rule-value", "no-wildcard@example.com")
    page.click("text=Add rule")
    assert "has no wildcard" in page.text_content("#rule-error")
    assert page.input_value("#rule-value") == "no-wildcard@example.com"
    shots.take(page, "rule-error", full_page=True)

    # Remove asks first: dismissed, nothing happens; accepted, the rule goes.
    asked: list[str] = []

    def answer(dialog: Any, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    remove = page.locator("#rules-table tbody tr").nth(0).locator("button", has_text="Remove")
    page.once("dialog", lambda d: answer(d, False))
    remove.click()
    assert page.locator("#rules-table tbody tr").count() == 2
    page.once("dialog", lambda d: answer(d, True))
    remove.click()
    page.wait_for_selector(".mc-flash-success")
    assert asked[0].startswith("Remove the whole domain 'yopmail.com' rule?") and len(asked) == 2
    assert page.locator("#rules-table tbody tr").count() == 1
    ext = state(app)
    ext.session.commit()
    saved = settings.load(ext.session, ext.config)
    assert (saved.list_id, saved.list_name, saved.double_optin) == (promo["id"], MARKUP_NAME, True)

    # The sync page and its window remind the (odd) audience name, as text.
    page.click("text=Users list synching")
    page.click("#export-users")
    page.wait_for_selector("#xw-prefs:not([hidden])")
    assert page.text_content("#xw-list-name") == MARKUP_NAME
    shots.take(page, "export-window-odd-name")
    assert page.evaluate("window.__pwned") is None


def open_with_script_held(page: Any, url: str, script: str) -> Any:
    """Open ``url`` with its deferred ``script`` held back; returns the held route
    (``continue_()`` lets the script in)."""
    held: list[Any] = []
    page.route(f"**/{script}", lambda route: held.append(route))
    # A deferred script holds DOMContentLoaded back: wait for the parsed page instead.
    page.goto(url, wait_until="commit")
    page.wait_for_function("document.readyState !== 'loading'")
    for _ in range(200):  # the route's callback runs when Playwright pumps its events
        if held:
            break
        page.wait_for_timeout(50)
    assert held, f"the page did not ask for {script}"
    return held[0]


def test_the_export_button_waits_for_its_script(app: Flask, live_server: str, page: Any) -> None:
    # export.js is deferred: a click that lands before it ran would open nothing and say
    # nothing (a CI run once clicked in that gap). The button stays disabled until then.
    ext = state(app)
    settings.update(ext.session, ext.config, list_id=LIST_ID, list_name="Demo shop newsletter")
    ext.session.commit()
    login(page, live_server)
    script = open_with_script_held(page, f"{live_server}{PREFIX}/sync", "export.js")
    assert page.locator("#export-users").is_disabled()
    script.continue_()
    page.click("#export-users")
    page.wait_for_selector("#xw-prefs:not([hidden])")
    assert page.text_content("#xw-list-name") == "Demo shop newsletter"


def test_a_rule_is_never_removed_without_asking_even_before_the_script_ran(
    app: Flask, live_server: str, page: Any
) -> None:
    # confirm.js (deferred) asks before a rule is removed: a click that landed before it
    # ran posted the form and removed the rule without a question.
    ext = state(app)
    exclusions.add_rule(ext.session, "domain", "yopmail.com")
    ext.session.commit()
    login(page, live_server)
    script = open_with_script_held(page, f"{live_server}{PREFIX}/", "confirm.js")
    remove = page.locator("#rules-table tbody tr").nth(0).locator("button", has_text="Remove")
    assert remove.is_disabled()
    script.continue_()
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    remove.click()
    assert asked and asked[0].startswith("Remove the whole domain 'yopmail.com' rule?")
    assert page.locator("#rules-table tbody tr").count() == 1
    ext.session.rollback()
    assert len(exclusions.load_ruleset(ext.session).rules) == 1


def test_admin_pages_are_closed_until_login(live_server: str, page: Any, shots: Any) -> None:
    response = page.goto(f"{live_server}{PREFIX}/sync")
    assert response.status == 403
    assert "log in as a shop admin" in page.text_content(".mc-error-sentence")
    shots.take(page, "forbidden")
    login(page, live_server)
    assert page.locator(".mc-tab.is-active").text_content().strip() == "General settings"


@pytest.mark.slow
def test_export_window_asks_for_a_worker_only_when_no_worker_moves(
    app: Flask, live_server: str, page: Any, shots: Any, workers: Any, sandbox: SandboxServer
) -> None:
    """The window asks "is a worker running?" after 30 s without movement. A batch can
    take Mailchimp longer than that, or wait behind others there, with no batch
    recorded meanwhile: Mailchimp's operations done and the leases each poll renews
    count as movement. With the worker gone, nothing moves, and the window asks."""
    from support import wait_for

    seed(250)
    ext = state(app)
    settings.update(ext.session, ext.config, list_id=LIST_ID, list_name="Demo shop newsletter")
    ext.session.commit()
    # 100 s a batch of 100: an operation a second moves the progress often enough for
    # the waits below, and batch 1 is still running after them however slow they are.
    sandbox.client.set_faults(batch_ops_per_second=1)
    workers.start(1)
    page.clock.install()  # the window's own time, fast-forwarded below
    login(page, live_server)
    page.click("text=Users list synching")
    page.click("#export-users")
    page.wait_for_selector("#xw-prefs:not([hidden])")
    page.fill("#xw-batch-size", "100")
    page.click("#xw-synchronize")
    page.wait_for_selector("#xw-progress:not([hidden])")
    run_id = page.get_attribute("#xw-progress", "data-run-id")
    stalled = "Nothing has moved for 30 s"

    def progress() -> dict[str, Any]:
        """The run's progress, as the window reads it."""
        return dict(
            page.evaluate(
                "id => fetch(document.querySelector('#export-users').dataset.progressUrl"
                ".replace(/\\/0\\.json$/, `/${id}.json`)).then(r => r.json())",
                run_id,
            )
        )

    def jump(time: str) -> str:
        """Fast-forward the window's clock; its phase once it has redrawn after that."""

        def looks(response: Any) -> bool:
            return f"/runs/{run_id}.json" in response.url

        with page.expect_response(looks):
            page.clock.fast_forward(time)  # fires the look that was due
        with page.expect_response(looks, timeout=15_000):
            pass  # the next look is asked for once the one before is drawn
        return str(page.text_content("#xw-phase"))

    # Mailchimp works through the first batch: 50 s of the window's time, none recorded.
    wait_for(lambda: progress()["in_flight_operations"] > 0, timeout=30, what="progress")
    for _ in range(2):
        seen = progress()["in_flight_operations"]
        wait_for(
            lambda seen=seen: progress()["in_flight_operations"] > seen, timeout=15, what="more"
        )
        assert stalled not in jump("00:25")
    assert progress()["done"] == 0
    shots.take(page, "progress-long-batch")

    # Mailchimp stops moving (its next operation is 1000 s away); the worker still looks
    # at the batch, and each look renews the batch's lease.
    sandbox.client.set_faults(batch_ops_per_second=0.001)

    def polled_without_progress() -> bool:
        before = progress()
        page.wait_for_timeout(1500)
        after = progress()
        same = before["in_flight_operations"] == after["in_flight_operations"]
        return same and before["leased_until"] != after["leased_until"]

    wait_for(polled_without_progress, timeout=20, what="polls that see no progress")
    frozen = progress()["in_flight_operations"]
    for _ in range(2):
        seen = progress()["leased_until"]
        wait_for(lambda seen=seen: progress()["leased_until"] != seen, timeout=15, what="a poll")
        assert stalled not in jump("00:25")
    assert progress()["in_flight_operations"] == frozen  # only the leases moved

    # No worker: nothing moves, and after 30 s the window asks for one.
    workers.stop_all()
    last = progress()["leased_until"]
    page.wait_for_timeout(2000)
    assert progress()["leased_until"] == last  # no worker renews it any more
    with page.expect_response(lambda response: f"/runs/{run_id}.json" in response.url):
        pass  # the window has read it too
    assert stalled in jump("00:31")
    shots.take(page, "progress-no-worker")
