"""The shop owner's whole path in a real headless Chromium, once in French (the browser
says ``fr-FR``) and once in English (``en-US``), with a screenshot of every page in
``test-artifacts/<test>/``. In French no English sentence may be left on a page.

Also here: the export window's first seconds and what the page shows after the window
was closed by accident while the export runs.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from support import PAGE_TIMEOUT_MS
from support import admin_login as login

from example_app.commands import make_customers
from example_app.models import Customer, db
from flask_mcsync.sandbox import SandboxServer

pytestmark = pytest.mark.browser

PREFIX = "/admin/mailchimp"
LIST_ID = "a1b2c3d4e5"

WORDS = {
    "fr-FR": {
        "settings": "Paramètres généraux",
        "sync": "Synchronisation de la liste d'utilisateurs",
        "manual": "Synchronisation manuelle",
        "export": "Exporter les utilisateurs",
        "prefs": "Préférences pour la synchronisation des adresses e-mail des utilisateurs",
        "synchronize": "Synchroniser",
        "status": "État des synchronisations",
        "search": "Rechercher",
        "diagnostic": "Outil de diagnostic",
        "save": "Enregistrer les paramètres",
        "saved": "Paramètres enregistrés.",
        "add_rule": "Ajouter la règle",
        "remove": "Supprimer",
        "resync": "Re-synchroniser",
        "per_batch": "par lot",
        "lots": r"→ \d lots",
        "finished": "Terminée",
        "running": ("En cours", "En file d'attente"),
        "csv_header": ["synchronisation", "date (UTC)", "adresse e-mail"],
        "delimiter": ";",
    },
    "en-US": {
        "settings": "General settings",
        "sync": "Users list synching",
        "manual": "Manual synching",
        "export": "Export users",
        "prefs": "Preferences for users e-mail addresses synchronisation",
        "synchronize": "Synchronize",
        "status": "Sync status",
        "search": "Search",
        "diagnostic": "Diagnostic tool",
        "save": "Save settings",
        "saved": "Settings saved.",
        "add_rule": "Add rule",
        "remove": "Remove",
        "resync": "Re-synchronize",
        "per_batch": "per batch",
        "lots": r"→ \d batches",
        "finished": "Finished",
        "running": ("Running", "Queued"),
        "csv_header": ["run_id", "at", "email"],
        "delimiter": ",",
    },
}

# Words no French page should hold outside addresses, codes and Mailchimp's own texts.
ENGLISH = re.compile(
    r"\b(the|and|with|your|this|which|have|been|will|from|addresses|batch|"
    r"settings|search|status|errors?|run)\b",
    re.IGNORECASE,
)
LEFTOVERS_JS = """() => {
  const body = document.body.cloneNode(true);
  body.querySelectorAll('code, script, .mc-email, .mc-address, .mc-value, .mc-error-text,'
    + ' .mc-batch-error, .mc-message, .mc-logo, option, [hidden], #xw-batches')
    .forEach(n => n.remove());
  return body.innerText;
}"""


def english_leftovers(page: Any) -> list[str]:
    text = page.evaluate(LEFTOVERS_JS)
    # "Mailchimp", "e-mail", "opt-in", "newsletter", "worker", "CSV" are French here too.
    return sorted({m.group(0) for m in ENGLISH.finditer(text)})


@pytest.fixture
def browser_page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    lang = request.param
    context = chromium.new_context(
        viewport={"width": 1280, "height": 900},
        locale=lang,
        extra_http_headers={"Accept-Language": f"{lang},{lang[:2]};q=0.9"},
        accept_downloads=True,
        reduced_motion="reduce",  # as the page fixture's (browser/conftest.py says why)
    )
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    not_found: list[str] = []
    tab.on("response", lambda r: not_found.append(r.url) if r.status == 404 else None)
    tab.set_default_timeout(PAGE_TIMEOUT_MS)
    tab.lang = lang
    yield tab
    context.close()
    assert errors == [], f"the page reported errors: {errors}"
    # Every page asked for a favicon and got a 404: now it names one that exists.
    assert not [u for u in not_found if "favicon" in u], not_found


@pytest.mark.slow
@pytest.mark.parametrize("browser_page", ["fr-FR", "en-US"], indirect=True)
def test_the_shop_owners_whole_path_in_their_language(
    app: Flask,
    live_server: str,
    browser_page: Any,
    shots: Any,
    workers: Any,
    sandbox: SandboxServer,
    database_url: str,
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the walk is about the pages: once is enough")
    page = browser_page
    w = WORDS[page.lang]
    french = page.lang.startswith("fr")
    rows = make_customers(320)
    zoe = {"email": "zoe@example.org", "first_name": "Z", "last_name": "R", "newsletter": True}
    rows.append(zoe)
    db.session.execute(sa.insert(Customer), rows)
    db.session.commit()
    # Mailchimp holds the batches until the page has closed the window and opened it
    # again on the running export (on a slow machine those steps outlast a paced run).
    sandbox.client.set_faults(batch_ops_per_second=1)
    workers.start(2)

    def check(label: str) -> None:
        shots.take(page, label, full_page=True)
        assert page.get_attribute("html", "lang") == page.lang[:2]
        if french:
            assert english_leftovers(page) == [], label

    # General settings: choose the audience, save.
    login(page, live_server)
    assert page.locator("h1", has_text=w["settings"]).is_visible()
    check("settings")
    page.select_option("#list_id", LIST_ID)
    page.fill("#batch_size", "100")
    page.click(f"text={w['save']}")
    page.wait_for_selector(".mc-flash-success")
    assert w["saved"] in page.text_content(".mc-flash-success")
    check("settings-saved")

    # A catch-all pattern warns and waits for a confirmation; a real rule goes in.
    page.select_option("#rule-kind", "pattern")
    page.fill("#rule-value", "*@*")
    page.click(f"text={w['add_rule']}")
    page.wait_for_selector("#catch-all-warning")
    check("rule-catch-all-warning")
    page.select_option("#rule-kind", "domain")
    page.fill("#rule-value", "yopmail.com")
    page.click(f"text={w['add_rule']}")
    page.wait_for_selector("#rules-table")
    assert page.locator("#rules-future-only").is_visible()
    check("rules")
    page.select_option("#rule-kind", "domain")
    page.fill("#rule-value", "mailinator.com")
    page.click(f"text={w['add_rule']}")
    page.wait_for_selector(".mc-flash-success")
    page.once("dialog", lambda d: d.accept())
    page.locator("#rules-table tbody tr").nth(1).locator("button", has_text=w["remove"]).click()
    page.wait_for_selector(".mc-flash-success")
    assert page.locator("#rules-table tbody tr").count() == 1

    # Users list synching: the window, a wrong batch size, then Synchronize.
    page.click(f".mc-tab >> text={w['sync']}")
    page.wait_for_selector(f"h2:has-text('{w['manual']}')")
    check("sync")
    page.click("#export-users")
    page.wait_for_selector("#xw-prefs:not([hidden])")
    assert page.locator("h3", has_text=w["prefs"]).is_visible()
    assert w["per_batch"] in page.text_content("#xw-size-field")
    page.fill("#xw-batch-size", "99999")
    assert page.text_content("#xw-batch-count") == ""  # no "→ 1 batch" beside an error
    page.click(f"#xw-synchronize:has-text('{w['synchronize']}')")
    assert page.locator("#xw-error").is_visible()
    assert page.text_content("#xw-batch-count") == ""
    check("export-window-error")
    page.fill("#xw-batch-size", "80")
    assert re.fullmatch(w["lots"], page.text_content("#xw-batch-count"))
    check("export-window")
    page.click("#xw-synchronize")
    page.wait_for_selector("#xw-progress:not([hidden])")
    check("progress")

    # Closed by accident while it runs: the page behind shows the running export.
    page.click("#export-window .mc-close")
    page.wait_for_selector("#running-notice")
    badge = page.text_content("#last-export .mc-card-head .mc-badge").strip()
    assert badge in w["running"], badge
    check("window-closed-while-running")
    page.click("#export-users")
    page.wait_for_selector("#xw-progress:not([hidden])")
    sandbox.client.set_faults(batch_ops_per_second=80)  # now the run may end
    page.wait_for_selector("#xw-summary:not([hidden])", timeout=60_000)
    check("export-summary")
    page.wait_for_selector("#export-window", state="hidden", timeout=30_000)
    page.wait_for_selector("#last-export .mc-badge-finished")
    assert w["finished"] in page.text_content("#last-export .mc-badge-finished")
    check("last-export")

    # Sync status: Search, the run, the CSV.
    page.click(f".mc-tab >> text={w['status']}")
    page.wait_for_selector("#period-form")
    page.fill("#days", "3")
    page.click(f"#search:has-text('{w['search']}')")
    page.wait_for_url(re.compile(r".*days=3$"))
    check("status")
    # The runs table fits the page at 1280 px in both languages: its Message column made
    # it scroll sideways, hiding that column and, in French, the errors.
    overflow = page.evaluate(
        "() => { const e = document.querySelector('#runs .mc-table-scroll');"
        " return e.scrollWidth - e.clientWidth; }"
    )
    assert overflow <= 0, f"the runs table is {overflow} px wider than its card"
    page.locator("#runs-table tbody tr a").first.click()
    page.wait_for_selector("#batches-table")
    check("run")
    with page.expect_download() as info:
        page.click("#download-csv")
    raw = Path(info.value.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") == french
    header = next(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=w["delimiter"]))
    assert header[:3] == w["csv_header"]

    # The Diagnostic tool: a fake-looking address is invalid with the reason; a re-sync.
    page.click(f".mc-subtab >> text={w['diagnostic']}")
    page.fill("#email", "zoe@example.org")
    page.click("#lookup-search")
    page.wait_for_selector("#verdict")
    assert page.locator("#fact-valid .mc-badge-bad").is_visible()
    check("diagnostic-invalid")
    address = next(r["email"] for r in rows if r["newsletter"] and "gmail" in str(r["email"]))
    page.fill("#email", str(address))
    page.click("#lookup-search")
    page.wait_for_selector("#verdict")
    check("diagnostic")
    page.click(f"#resync-button:has-text('{w['resync']}')")
    page.wait_for_selector("#resync-outcome", timeout=30_000)
    check("diagnostic-resynced")

    # An error page, in the same language.
    page.goto(f"{live_server}{PREFIX}/status/runs/99999")
    check("error-page")


def fake_progress(**overrides: Any) -> dict[str, Any]:
    """What /sync/runs/<id>.json says a few seconds into a 3,250-address export."""
    data: dict[str, Any] = {
        "id": 7,
        "kind": "export",
        "list_id": LIST_ID,
        "list_name": "Demo",
        "status": "running",
        "ended": False,
        "message": None,
        "message_text": "",
        "planning_done": False,
        "batch_size": 25,
        "total": 3250,
        "done": 0,
        "created": 0,
        "updated": 0,
        "errors": 0,
        "skipped": 0,
        "excluded": 0,
        "invalid": 0,
        "duplicates": 0,
        "percent": 0.0,
        "rate": 0.0,
        "seconds_left": None,
        "elapsed": 2.0,
        "batches": [
            {
                "seq": i + 1,
                "status": "waiting",
                "size": 25,
                "first": f"a{i}@gmail.com",
                "last": f"z{i}@gmail.com",
                "finished_operations": 0,
                "total_operations": 0,
                "created": 0,
                "updated": 0,
                "errors": 0,
                "attempts": 0,
                "retries": 0,
                "last_error": None,
            }
            for i in range(130)
        ],
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("browser_page", ["fr-FR", "en-US"], indirect=True)
def test_the_windows_first_seconds_say_nothing_false(
    app: Flask, live_server: str, browser_page: Any, shots: Any, database_url: str
) -> None:
    """Reading the shop: no "0 of 3,250 read so far" beside "(130 so far)", no 0.0 %."""
    if not database_url.startswith("sqlite"):
        pytest.skip("the window is the same on both databases")
    page = browser_page
    french = page.lang.startswith("fr")
    window = {
        "list": {"id": LIST_ID, "name": "Demo"},
        "settings_url": "/",
        "batch_size": 25,
        "max_batch_size": 10000,
        "status_if_new": "subscribed",
        "unreachable": None,
        "counts": None,
        "error": None,
        "run": fake_progress(),
    }
    page.route(re.compile(r".*/sync/export\.json$"), lambda r: r.fulfill(json=window))
    page.route(re.compile(r".*/sync/runs/\d+\.json$"), lambda r: r.fulfill(json=fake_progress()))
    login(page, live_server)
    page.goto(f"{live_server}{PREFIX}/sync")
    page.click("#export-users")
    page.wait_for_selector("#xw-progress:not([hidden])")
    counts, phase = page.text_content("#xw-counts"), page.text_content("#xw-phase")
    shots.take(page, "first-seconds")
    assert page.text_content("#xw-percent") == ""
    assert "is-indeterminate" in page.get_attribute("#xw-bar", "class")
    if french:
        assert counts == "0 adresse synchronisée pour le moment"
        assert phase == (
            "Lecture des adresses de la boutique : 3\u202f250 à envoyer pour le moment,"
            " en 130 lots…"
        )
    else:
        assert counts == "0 addresses synchronised so far"
        assert phase == "Reading the shop's addresses: 3,250 to send so far, in 130 batches…"
    assert "left" not in page.text_content("#xw-rate") and "restant" not in page.text_content(
        "#xw-rate"
    )
    # The next poll: the shop is read, and the first operations are through.
    page.unroute(re.compile(r".*/sync/runs/\d+\.json$"))
    moving = fake_progress(planning_done=True, done=500, created=500, percent=15.4, rate=50.0)
    page.route(re.compile(r".*/sync/runs/\d+\.json$"), lambda r: r.fulfill(json=moving))
    page.wait_for_selector("#xw-percent:not(:empty)")
    assert page.text_content("#xw-percent") == ("15,4\u00a0%" if french else "15.4\u00a0%")
    assert page.text_content("#xw-counts") == (
        "500 adresses sur 3\u202f250" if french else "500 of 3,250 addresses"
    )
    shots.take(page, "moving")
    assert json.dumps(window)  # the data really was the page's only source
