"""The "Sync status" dashboard, a run's page, the errors CSV and the "Diagnostic tool",
through Flask's test client on SQLite and PostgreSQL.

Runs and outcomes are written directly with explicit times where the period is the
point; the diagnostic's live lookup asks the sandbox. Untrusted texts (addresses, merge
fields, Mailchimp's error texts) must reach the pages escaped and the CSV verbatim.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from support import ADMIN_CSRF_TOKEN as TOKEN

from example_app.models import Customer, db
from flask_mcsync import exclusions, settings, state
from flask_mcsync.addresses import subscriber_hash
from flask_mcsync.admin.security import NO_AUTHORIZE, SESSION_KEY
from flask_mcsync.models import Batch, OutboxItem, Outcome, Run
from flask_mcsync.sandbox import SandboxServer

PREFIX = "/admin/mailchimp"
LIST_ID = "a1b2c3d4e5"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HOSTILE_EMAIL = f"{IMG}{SCRIPT}@evil.com"


def now() -> datetime:
    return datetime.now(timezone.utc)


# --- helpers ------------------------------------------------------------------------------


def choose_list(app: Flask) -> None:
    ext = state(app)
    settings.update(ext.session, ext.config, list_id=LIST_ID, list_name="Demo shop newsletter")


def add_run(
    kind: str = "export",
    ago: timedelta = timedelta(hours=1),
    status: str = "finished",
    seconds: float = 12.5,
    **counts: Any,
) -> Run:
    created_at = now() - ago
    run = Run(
        kind=kind,
        list_id=LIST_ID,
        status=status,
        created_at=created_at,
        started_at=created_at + timedelta(seconds=1),
        finished_at=created_at + timedelta(seconds=1 + seconds) if status != "running" else None,
        **counts,
    )
    db.session.add(run)
    db.session.commit()
    return run


def add_outcome(
    run: Run,
    email: str,
    outcome: str = "error",
    title: str | None = None,
    detail: str | None = None,
    permanent: bool = False,
    at: datetime | None = None,
    **extra: Any,
) -> Outcome:
    row = Outcome(
        run_id=run.id,
        email=email,
        email_hash=subscriber_hash(email),
        outcome=outcome,
        error_title=title,
        error_detail=detail,
        permanent=permanent,
        created_at=at or run.created_at + timedelta(seconds=2),
        **extra,
    )
    db.session.add(row)
    db.session.commit()
    return row


def add_customer(
    email: str, first: str = "Ann", last: str = "Lee", newsletter: bool = True
) -> None:
    db.session.add(Customer(email=email, first_name=first, last_name=last, newsletter=newsletter))
    db.session.commit()


def html_of(response: Any) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return str(response.get_data(as_text=True))


def run_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-run-id="(\d+)"', html)]


def section(html: str, section_id: str) -> str:
    start = html.index(f'id="{section_id}"')
    end = html.find("</section>", start)
    return html[start:end]


def table_emails(html: str) -> list[str]:
    """The addresses of the errors table, unescaped."""
    import html as html_mod

    body = html[html.index('id="errors-table"') :]
    body = body[: body.index("</table>")]
    return [html_mod.unescape(e) for e in re.findall(r'<code class="mc-email">(.*?)</code>', body)]


def csv_rows(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def resync_disabled(html: str) -> bool:
    tag = html[html.index('id="resync-button"') :]
    return "disabled" in tag[: tag.index(">")]


def assert_escaped(html: str, *texts: str) -> None:
    for text in texts:
        assert text not in html, f"{text!r} reached the page unescaped"
        assert str(escape(text)) in html, f"{text!r} is not on the page (escaped)"


# --- the period ---------------------------------------------------------------------------


def test_runs_autosyncs_and_resyncs_appear_in_their_period_with_their_counts(
    app: Flask, client: FlaskClient
) -> None:
    export = add_run(
        "export",
        timedelta(days=1),
        created=10,
        updated=5,
        skipped=0,
        errors=2,
        total=17,
        started_by="admin pages",
        seconds=95,
    )
    auto = add_run("auto", timedelta(days=3), created=1, total=1, started_by="signup")
    failed_auto = add_run(
        "auto",
        timedelta(days=3, hours=1),
        status="failed",
        errors=1,
        total=1,
        started_by="signup",
        message="Member In Compliance State: kept@example.com is in compliance state.",
    )
    resync = add_run("resync", timedelta(days=10), updated=1, total=1, started_by="diagnostic")
    old = add_run("export", timedelta(days=40), created=500, total=500)

    html = html_of(client.get(PREFIX + "/status"))  # 7 days by default
    assert run_ids(html) == [export.id, auto.id, failed_auto.id]  # newest first
    assert 'value="7"' in html
    totals = dict(re.findall(r'data-total="(\w+)">([\d,]+)<', html))
    assert totals == {
        "runs": "3",
        "created": "11",
        "updated": "5",
        "skipped": "0",
        "errors": "3",
        "archived": "0",
        "confirmations": "0",
    }
    row = html[html.index(f'data-run-id="{export.id}"') :]
    row = row[: row.index("</tr>")]
    assert "Manual export" in row and "admin pages" in row and "1 min 35 s" in row
    # created, updated, errors, archived, skipped
    assert [int(x) for x in re.findall(r'mc-num[^"]*">(\d+)<', row)] == [10, 5, 2, 0, 0]
    assert "mc-badge-finished" in row
    failed_row = html[html.index(f'data-run-id="{failed_auto.id}"') :]
    failed_row = failed_row[: failed_row.index("</tr>")]
    assert "Auto-sync" in failed_row and "mc-badge-failed" in failed_row
    # The run's message: on the line under its row.
    message = html[html.index(f'data-message-of="{failed_auto.id}"') :]
    message = message[: message.index("</tr>")]
    assert "Member In Compliance State: kept@example.com is in compliance state." in message
    # ... and the run's link is described by it, for a screen reader.
    assert f'id="run-{failed_auto.id}-message"' in message
    assert f'aria-describedby="run-{failed_auto.id}-message"' in failed_row
    assert f'data-message-of="{export.id}"' not in html  # a run without a message has none

    html = html_of(client.get(PREFIX + "/status?days=30"))
    assert run_ids(html) == [export.id, auto.id, failed_auto.id, resync.id]
    assert "Re-sync" in html
    html = html_of(client.get(PREFIX + "/status", query_string={"days": " 365 "}))
    assert run_ids(html)[-1] == old.id
    html = html_of(client.get(PREFIX + "/status?days=1"))
    assert run_ids(html) == []
    assert "No synchronisation in the last 1 day." in html


def test_the_chart_has_one_bar_pair_per_day_with_synced_and_failed(
    app: Flask, client: FlaskClient
) -> None:
    add_run("export", timedelta(days=2), created=30, updated=12, errors=4)
    add_run("auto", timedelta(days=2), created=1)
    add_run("auto", timedelta(hours=0, minutes=1), status="failed", errors=1)
    html = html_of(client.get(PREFIX + "/status?days=7"))
    chart = section(html, "chart")
    days = re.findall(r'data-day="([\d-]+)" data-synced="(\d+)" data-failed="(\d+)"', chart)
    assert len(days) == 8  # the first day of the period to today, both included
    by_day = {d: (int(s), int(f)) for d, s, f in days}
    assert by_day[(now() - timedelta(days=2)).date().isoformat()] == (43, 4)
    assert by_day[now().date().isoformat()] == (0, 1)
    assert sum(s for s, _ in by_day.values()) == 43
    # Accessible: a labelled image with a description and each day's figures as a title.
    assert 'role="img"' in chart and 'aria-labelledby="chart-title chart-desc"' in chart
    assert "43 addresses synced and 5 failed in the period" in chart
    assert re.search(r"<title>[\w ,]+: 43 synced, 4 failed, 0 skipped</title>", chart)
    assert chart.count('class="mc-bar-synced"') == 1 and chart.count('class="mc-bar-failed"') == 2
    assert "<script" not in html  # drawn by the server: no script needed


def test_runs_are_paginated_and_the_links_keep_the_period(app: Flask, client: FlaskClient) -> None:
    made = [add_run("auto", timedelta(hours=i + 1), created=1) for i in range(30)]
    add_run("auto", timedelta(days=5), created=1)  # outside a 3-day period

    first = html_of(client.get(PREFIX + "/status?days=3"))
    assert run_ids(first) == [r.id for r in made[:25]]
    assert "Page 1 of 2" in first
    older = re.search(r'rel="next" href="([^"]+)"', first)
    assert older is not None
    link = older.group(1).replace("&amp;", "&")
    assert "days=3" in link and "page=2" in link
    second = html_of(client.get(link))
    assert run_ids(second) == [r.id for r in made[25:]]
    assert "Page 2 of 2" in second and 'rel="prev"' in second and 'rel="next"' not in second
    beyond = html_of(client.get(PREFIX + "/status?days=3&page=9"))
    assert run_ids(beyond) == [] and "past the last one" in beyond
    nope = client.get(PREFIX + "/status?days=3&page=nope")
    assert nope.status_code == 400
    assert "The page must be a whole number" in nope.get_data(as_text=True)


@pytest.mark.parametrize(
    ("typed", "sentence"),
    [
        ("0", "The period must be between 1 and 365 days; got 0."),
        ("366", "The period must be between 1 and 365 days; got 366."),
        ("a week", "The period must be a number of days; got 'a week'."),
        # Past Python's 4,300-digit limit on int(), and long text: told, and cut short.
        ("9" * 5000, "The period must be between 1 and 365 days; got " + "9" * 40 + "…."),
        ("x" * 1000, "The period must be a number of days; got '" + "x" * 40 + "…'."),
    ],
)
def test_an_invalid_period_is_explained_beside_the_field(
    app: Flask, client: FlaskClient, typed: str, sentence: str
) -> None:
    add_run("export", timedelta(days=1), created=3)
    response = client.get(PREFIX + "/status", query_string={"days": typed})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert str(escape(sentence)) in section(html, "period")
    assert 'aria-invalid="true"' in html and f'value="{escape(typed)}"' in html
    # The default period is shown meanwhile.
    assert len(run_ids(html)) == 1
    csv_response = client.get(PREFIX + "/status/errors.csv", query_string={"days": typed})
    assert csv_response.status_code == 400


def test_waiting_autosyncs_are_listed_with_their_last_error(
    app: Flask, client: FlaskClient
) -> None:
    db.session.add_all(
        [
            OutboxItem(
                email="late@example.com",
                email_hash=subscriber_hash("late@example.com"),
                attempts=3,
                last_error="Too Many Requests: slow down",
            ),
            OutboxItem(email="sent@example.com", email_hash="x", status="sent"),
        ]
    )
    db.session.commit()
    html = html_of(client.get(PREFIX + "/status"))
    waiting = section(html, "waiting")
    assert "late@example.com" in waiting and "Too Many Requests: slow down" in waiting
    assert "sent@example.com" not in waiting
    assert '<span class="mc-count">1</span>' in waiting


# --- a run and its errors -----------------------------------------------------------------


def _export_with_errors() -> Run:
    run = add_run(
        "export",
        timedelta(hours=2),
        created=3,
        updated=1,
        errors=4,
        total=8,
        excluded=2,
        invalid=1,
        batch_size=4,
        started_by="admin pages",
    )
    db.session.add_all(
        [
            Batch(
                run_id=run.id,
                seq=1,
                status="done",
                size=4,
                first_address="a@gmail.com",
                last_address="d@gmail.com",
                created=3,
                updated=0,
                errors=1,
                attempts=1,
            ),
            Batch(
                run_id=run.id,
                seq=2,
                status="done",
                size=4,
                first_address="e@gmail.com",
                last_address="h@gmail.com",
                created=0,
                updated=1,
                errors=3,
                attempts=2,
                last_error="Service Unavailable: retried",
            ),
        ]
    )
    db.session.commit()
    add_outcome(
        run,
        "d@gmail.com",
        title="Member In Compliance State",
        detail="d@gmail.com is already a list member in compliance state.",
        permanent=True,
    )
    add_outcome(
        run,
        "f@gmail.com",
        title="Invalid Resource",
        detail="f@gmail.com looks fake or invalid, please enter a real email address.",
        permanent=True,
    )
    add_outcome(
        run,
        "g@gmail.com",
        title="Service Unavailable",
        detail="Gave up after 5 tries: 503 Service Unavailable.",
        permanent=False,
    )
    add_outcome(
        run,
        "h@gmail.com",
        title="Invalid Resource",
        detail="h@gmail.com looks fake or invalid, please enter a real email address.",
        permanent=True,
    )
    add_outcome(run, "a@gmail.com", outcome="created")
    return run


def test_a_run_shows_its_batches_and_mailchimps_error_texts(
    app: Flask, client: FlaskClient
) -> None:
    run = _export_with_errors()
    other = add_run("export", timedelta(hours=3), errors=1)
    add_outcome(other, "other@gmail.com", title="Other", detail="Not this run.", permanent=True)

    status_html = html_of(client.get(PREFIX + "/status?days=2"))
    link = f'href="/admin/mailchimp/status/runs/{run.id}?days=2"'
    assert link in status_html
    html = html_of(client.get(f"{PREFIX}/status/runs/{run.id}?days=2"))
    assert f"Run {run.id}: Manual export" in html
    assert 'href="/admin/mailchimp/status?days=2"' in html  # back, same period
    batches = section(html, "batches")
    assert re.findall(r'<tr data-status="(\w+)"[^>]*>', batches) == ["done", "done"]
    assert "a@gmail.com" in batches and "h@gmail.com" in batches
    assert "Service Unavailable: retried" in batches

    errors = section(html, "errors")
    assert sorted(table_emails(html)) == [
        "d@gmail.com",
        "f@gmail.com",
        "g@gmail.com",
        "h@gmail.com",
    ]
    assert "d@gmail.com is already a list member in compliance state." in errors
    assert "Gave up after 5 tries: 503 Service Unavailable." in errors
    assert errors.count("Retried, gave up</span>") == 1 and errors.count(">Permanent</span>") == 3
    assert "other@gmail.com" not in html
    # The title filter offers each title with its count, the most frequent first.
    options = re.findall(r'<option value="([^"]*)"[^>]*>[^<]*\((\d+)\)</option>', errors)
    assert options[0] == ("Invalid Resource", "2")
    assert sorted(options[1:]) == [
        ("Member In Compliance State", "1"),
        ("Service Unavailable", "1"),
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["d@gmail.com", "f@gmail.com", "g@gmail.com", "h@gmail.com"]),
        ({"kind": "permanent"}, ["d@gmail.com", "f@gmail.com", "h@gmail.com"]),
        ({"kind": "retried"}, ["g@gmail.com"]),
        ({"title": "Invalid Resource"}, ["f@gmail.com", "h@gmail.com"]),
        ({"kind": "retried", "title": "Invalid Resource"}, []),
    ],
)
def test_run_errors_filter_and_the_csv_has_the_same_rows(
    app: Flask, client: FlaskClient, query: dict[str, str], expected: list[str]
) -> None:
    run = _export_with_errors()
    html = html_of(client.get(f"{PREFIX}/status/runs/{run.id}", query_string=query))
    shown = table_emails(html) if expected else []
    if not expected:
        assert "No error matches this filter." in html
    assert sorted(shown) == expected
    # The page's "Download CSV" link carries the same filter.
    href = re.search(r'id="download-csv"\s+href="([^"]+)"', html)
    assert href is not None
    rows = csv_rows(client.get(href.group(1).replace("&amp;", "&")))
    assert [r["email"] for r in rows] == shown
    assert all(r["run_id"] == str(run.id) for r in rows)
    for row in rows:
        assert row["permanent"] == ("False" if row["email"] == "g@gmail.com" else "True")
        assert row["detail"] and row["title"]


def test_period_errors_filter_and_csv(app: Flask, client: FlaskClient) -> None:
    run = _export_with_errors()
    old = add_run("export", timedelta(days=20), errors=1)
    add_outcome(old, "old@gmail.com", title="Invalid Resource", detail="old", permanent=True)
    html = html_of(client.get(PREFIX + "/status?days=7&kind=permanent"))
    assert sorted(table_emails(html)) == ["d@gmail.com", "f@gmail.com", "h@gmail.com"]
    assert f'href="/admin/mailchimp/status/runs/{run.id}?days=7"' in section(html, "errors")
    href = re.search(r'id="download-csv"\s+href="([^"]+)"', html)
    assert href is not None and "days=7" in href.group(1) and "kind=permanent" in href.group(1)
    response = client.get(href.group(1).replace("&amp;", "&"))
    assert (
        'filename="mailchimp-errors-last-7-days-permanent.csv"'
        in response.headers["Content-Disposition"]
    )
    assert [r["email"] for r in csv_rows(response)] == table_emails(html)
    # A title clicked in the table filters by it, keeping the period and the kind.
    title_link = re.search(r'class="mc-error-title" href="([^"]+)"', html)
    assert title_link is not None
    url = title_link.group(1).replace("&amp;", "&")
    assert "days=7" in url and "kind=permanent" in url and "title=" in url
    filtered = html_of(client.get(url))
    assert 'id="title-chip"' in filtered
    wide = html_of(client.get(PREFIX + "/status?days=30"))
    assert "old@gmail.com" in table_emails(wide)


def test_an_unknown_run_is_a_404_sentence(app: Flask, client: FlaskClient) -> None:
    response = client.get(PREFIX + "/status/runs/999")
    assert response.status_code == 404
    assert "There is no sync run 999" in response.get_data(as_text=True)
    data = client.get(PREFIX + "/status/runs/999.json")
    assert data.status_code == 404 and data.json["error"] == "There is no sync run 999."


# --- hostile data -------------------------------------------------------------------------


def test_hostile_texts_are_escaped_on_the_status_and_run_pages_and_verbatim_in_csv(
    app: Flask, client: FlaskClient
) -> None:
    run = add_run(
        "auto",
        timedelta(hours=1),
        status="failed",
        errors=1,
        started_by=f"signup {SCRIPT}",
        message=f"{SCRIPT}: {IMG}",
    )
    add_outcome(
        run,
        HOSTILE_EMAIL,
        title=f"Bad {SCRIPT}",
        detail=f"Mailchimp said {IMG} & more",
        permanent=True,
    )
    db.session.add(
        OutboxItem(
            email=HOSTILE_EMAIL,
            email_hash=subscriber_hash(HOSTILE_EMAIL),
            last_error=f"Refused {SCRIPT}",
            attempts=1,
        )
    )
    db.session.commit()

    page = html_of(client.get(PREFIX + "/status"))
    main = page[page.index("<main") :]
    assert "<script" not in main and "<img" not in main
    assert_escaped(
        main,
        HOSTILE_EMAIL,
        f"Bad {SCRIPT}",
        f"Mailchimp said {IMG} & more",
        f"{SCRIPT}: {IMG}",
        f"Refused {SCRIPT}",
        f"signup {SCRIPT}",
    )

    run_html = html_of(client.get(f"{PREFIX}/status/runs/{run.id}"))
    main = run_html[run_html.index("<main") :]
    assert "<script" not in main and "<img" not in main
    assert_escaped(main, HOSTILE_EMAIL, f"Bad {SCRIPT}", f"Mailchimp said {IMG} & more")
    # The title filter is a hostile option value and text: escaped too.
    assert f'<option value="Bad {escape(SCRIPT)}"' in main
    filtered = html_of(
        client.get(f"{PREFIX}/status/runs/{run.id}", query_string={"title": f"Bad {SCRIPT}"})
    )
    assert table_emails(filtered) == [HOSTILE_EMAIL]

    for query in ({"run": run.id}, {"days": 7}):
        response = client.get(PREFIX + "/status/errors.csv", query_string=query)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        rows = csv_rows(response)
        assert [(r["email"], r["title"], r["detail"]) for r in rows] == [
            (HOSTILE_EMAIL, f"Bad {SCRIPT}", f"Mailchimp said {IMG} & more")
        ]

    data = client.get(f"{PREFIX}/status/runs/{run.id}.json").json
    assert data["message"] == f"{SCRIPT}: {IMG}"
    assert data["outcomes"][0]["email"] == HOSTILE_EMAIL


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(
    app: Flask, client: FlaskClient
) -> None:
    run = add_run("auto", errors=1)
    add_outcome(run, "=cmd|' /C calc'!A0@x.com", title="Invalid Resource", detail="-2+3")
    rows = csv_rows(client.get(PREFIX + "/status/errors.csv", query_string={"run": run.id}))
    assert rows[0]["email"] == "'=cmd|' /C calc'!A0@x.com" and rows[0]["detail"] == "'-2+3"


def test_hostile_texts_are_escaped_on_the_diagnostic_page(
    app: Flask, client: FlaskClient, sandbox: SandboxServer
) -> None:
    choose_list(app)
    victim = "victim@gmail.com"
    add_customer(victim, first=SCRIPT, last=IMG)
    sandbox.client.seed_members(
        LIST_ID,
        [
            {
                "email_address": victim,
                "status": "subscribed",
                "merge_fields": {"FNAME": f"MC {SCRIPT}", "LNAME": f"MC {IMG}"},
            }
        ],
    )
    run = add_run("auto", status="failed", errors=1)
    add_outcome(run, victim, title=f"Bad {SCRIPT}", detail=f"Mailchimp said {IMG}", permanent=True)

    html = html_of(client.get(PREFIX + "/status/diagnostic", query_string={"email": victim}))
    main = html[html.index("<main") :]
    assert "<script" not in main and "<img" not in main
    assert_escaped(
        main, SCRIPT, IMG, f"MC {SCRIPT}", f"MC {IMG}", f"Bad {SCRIPT}", f"Mailchimp said {IMG}"
    )
    assert 'data-status="subscribed"' in main

    typed = f" {HOSTILE_EMAIL} "
    html = html_of(client.get(PREFIX + "/status/diagnostic", query_string={"email": typed}))
    main = html[html.index("<main") :]
    assert "<script" not in main and "<img" not in main
    assert_escaped(main, HOSTILE_EMAIL)
    assert resync_disabled(main)
    assert 'id="mc-not-asked"' in main


# --- the diagnostic tool ------------------------------------------------------------------


def test_diagnosis_of_an_eligible_address_synced_and_subscribed(
    app: Flask, client: FlaskClient, sandbox: SandboxServer
) -> None:
    choose_list(app)
    add_customer("Anne.Synced@Gmail.com", "Anne", "Synced")
    sandbox.client.seed_members(
        LIST_ID,
        [
            {
                "email_address": "Anne.Synced@Gmail.com",
                "status": "subscribed",
                "merge_fields": {"FNAME": "Anne", "LNAME": "Synced"},
            }
        ],
    )
    export = add_run("export", timedelta(days=2), created=1)
    add_outcome(
        export,
        "Anne.Synced@Gmail.com",
        outcome="created",
        mailchimp_status="subscribed",
        sent={"merge_fields": {"FNAME": "Anne", "LNAME": "Synced"}, "status_if_new": "subscribed"},
    )

    html = html_of(
        client.get(
            PREFIX + "/status/diagnostic", query_string={"email": "  ANNE.synced@gmail.COM "}
        )
    )
    assert 'value="  ANNE.synced@gmail.COM "' in html  # what was typed is kept
    shop = section(html, "verdict")
    assert "Anne.Synced@Gmail.com" in shop and ">Subscriber<" in shop
    assert ">Valid<" in shop and ">Not excluded<" in shop and "Eligible for sync" in shop
    assert f"run {export.id}" in shop and "status if new: subscribed" in shop
    assert "None." in section(html, "fact-last-error")
    mailchimp = section(html, "mailchimp")
    assert 'data-status="subscribed"' in mailchimp and ">subscribed<" in mailchimp
    assert "Anne" in mailchimp and "Synced" in mailchimp and "<time" in mailchimp
    history = section(html, "history")
    assert re.findall(r'<tr data-outcome="(\w+)">', history) == ["created"]
    assert not resync_disabled(html)
    assert f'name="csrf_token" value="{TOKEN}"' in html
    # The tab and its subtab.
    assert 'class="mc-tab is-active"' in html and ">Sync status</a>" in html
    assert 'class="mc-subtab is-active">Diagnostic tool</a>' in html


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        (
            "someone@shop.mailinator.com",
            "excluded by the whole domain &#39;mailinator.com&#39; rule",
        ),
        ("broken@@gmail.com", "exactly one &#39;@&#39;"),
        ("nobody@gmail.com", "not in the shop&#39;s subscriber source"),
        ("opted.out@gmail.com", "not a newsletter subscriber"),
    ],
)
def test_the_button_is_disabled_with_the_reason(
    app: Flask, client: FlaskClient, email: str, reason: str
) -> None:
    choose_list(app)
    exclusions.add_rule(state(app).session, "domain", "mailinator.com")
    add_customer("Someone@Shop.Mailinator.com")
    add_customer("broken@@gmail.com")
    add_customer("opted.out@gmail.com", newsletter=False)
    html = html_of(client.get(PREFIX + "/status/diagnostic", query_string={"email": email}))
    assert resync_disabled(html)
    assert reason in section(html, "resync-action")
    if "mailinator" in email:
        assert "Excluded" in section(html, "fact-excluded")
        assert "whole domain &#39;mailinator.com&#39;" in section(html, "fact-excluded")
    if email == "nobody@gmail.com":
        assert 'data-status="none"' in html and "Not in the audience" in html


def test_mailchimp_failing_is_said_and_the_rest_shown(
    app: Flask, client: FlaskClient, sandbox: SandboxServer
) -> None:
    choose_list(app)
    add_customer("kept@gmail.com")
    sandbox.client.set_faults(error_rates={"503": 1.0})
    html = html_of(client.get(PREFIX + "/status/diagnostic?email=kept@gmail.com"))
    assert "Could not ask Mailchimp" in section(html, "mailchimp")
    assert "Eligible for sync" in html


def test_resync_queues_a_run_and_the_page_follows_it(
    app: Flask, client: FlaskClient, sandbox: SandboxServer
) -> None:
    choose_list(app)
    add_customer("una.sub@gmail.com")
    response = client.post(
        PREFIX + "/status/diagnostic/resync",
        data={"csrf_token": TOKEN, "email": "  Una.Sub@gmail.com "},
    )
    assert response.status_code == 303
    run = db.session.execute(sa.select(Run)).scalar_one()
    assert (run.kind, run.status, run.started_by) == (
        "resync",
        "queued",
        "admin pages (diagnostic tool)",
    )
    location = response.headers["Location"]
    assert f"run={run.id}" in location and "email=Una.Sub@gmail.com" in location

    # Not ended: the page polls the run's JSON with its script.
    html = html_of(client.get(location))
    assert f'data-poll-url="/admin/mailchimp/status/runs/{run.id}.json"' in html
    assert "/static/status.js" in html and "Queued" in section(html, "resync")
    data = client.get(f"{PREFIX}/status/runs/{run.id}.json").json
    assert (data["status"], data["ended"], data["kind"], data["outcomes"]) == (
        "queued",
        False,
        "resync",
        [],
    )

    # The worker's result (written here): the page shows the outcome and stops polling.
    run.status, run.updated = "finished", 1
    db.session.commit()
    add_outcome(run, "una.sub@gmail.com", outcome="updated", mailchimp_status="unsubscribed")
    data = client.get(f"{PREFIX}/status/runs/{run.id}.json").json
    assert data["ended"] and data["outcomes"][0]["outcome"] == "updated"
    assert data["outcomes"][0]["mailchimp_status"] == "unsubscribed"
    html = html_of(client.get(location))
    assert "data-poll-url" not in html and "status.js" not in html
    outcome = section(html, "resync")
    assert 'data-outcome="updated"' in outcome and "<strong>unsubscribed</strong>" in outcome
    # It appears in the dashboard as a re-sync.
    status_html = html_of(client.get(PREFIX + "/status"))
    assert run_ids(status_html) == [run.id] and "Re-sync" in status_html


def test_resync_without_an_audience_says_so(app: Flask, client: FlaskClient) -> None:
    add_customer("kept@gmail.com")
    response = client.post(
        PREFIX + "/status/diagnostic/resync",
        data={"csrf_token": TOKEN, "email": "kept@gmail.com"},
        follow_redirects=True,
    )
    html = html_of(response)
    assert "The re-synchronization could not start. No audience is chosen" in html
    assert db.session.execute(sa.select(sa.func.count()).select_from(Run)).scalar_one() == 0


# --- access and CSRF ----------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_the_resync_post_needs_the_csrf_token(
    app: Flask, client: FlaskClient, token: str | None
) -> None:
    choose_list(app)
    add_customer("kept@gmail.com")
    form = {"email": "kept@gmail.com"}
    if token:
        form["csrf_token"] = token
    response = client.post(PREFIX + "/status/diagnostic/resync", data=form)
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    assert db.session.execute(sa.select(sa.func.count()).select_from(Run)).scalar_one() == 0


def test_the_resync_post_is_forbidden_to_visitors(app: Flask) -> None:
    choose_list(app)
    visitor = app.test_client()
    with visitor.session_transaction() as sess:
        sess[SESSION_KEY] = TOKEN
    response = visitor.post(
        PREFIX + "/status/diagnostic/resync", data={"csrf_token": TOKEN, "email": "a@gmail.com"}
    )
    assert response.status_code == 403
    assert db.session.execute(sa.select(sa.func.count()).select_from(Run)).scalar_one() == 0


@pytest.mark.parametrize(
    "path",
    [
        "/status",
        "/status?days=30",
        "/status/runs/1",
        "/status/runs/1.json",
        "/status/errors.csv?days=7",
        "/status/diagnostic?email=a@gmail.com",
    ],
)
def test_without_authorize_the_status_pages_are_forbidden(bare_app: Flask, path: str) -> None:
    response = bare_app.test_client().get(PREFIX + path)
    assert response.status_code == 403
    if response.is_json:
        assert response.json["error"] == NO_AUTHORIZE
    else:
        assert str(escape(NO_AUTHORIZE)) in response.get_data(as_text=True)
    post = bare_app.test_client().post(
        PREFIX + "/status/diagnostic/resync", data={"email": "a@b.co"}
    )
    assert post.status_code == 403


def test_status_pages_send_the_strict_csp_and_load_only_our_files(
    app: Flask, client: FlaskClient
) -> None:
    add_run("export", created=1)
    for path in ("/status", "/status/runs/1", "/status/diagnostic?email=a@gmail.com"):
        response = client.get(PREFIX + path)
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        html = response.get_data(as_text=True)
        assert " style=" not in html and "<style" not in html
        assert re.findall(r"<script(?![^>]*src=\"/admin/mailchimp/static/)", html) == []


def test_redis_down_still_gives_the_diagnosis_and_says_why_mailchimp_was_not_asked(
    app: Flask, sandbox: SandboxServer
) -> None:
    from example_app import create_app

    choose_list(app)
    add_customer("kept@gmail.com")
    config = {k: v for k, v in app.config.items() if k.isupper()}
    config["MCSYNC_REDIS_URL"] = "redis://127.0.0.1:9/0"  # nothing listens there
    other = create_app(config)
    with other.app_context():
        try:
            test_client = other.test_client()
            with test_client.session_transaction() as sess:
                sess["shop_admin"] = True
            html = html_of(test_client.get(PREFIX + "/status/diagnostic?email=kept@gmail.com"))
        finally:
            db.session.remove()
            db.engine.dispose()  # the second app's own pool
    said = section(html, "mailchimp")
    assert "Could not ask Mailchimp: Redis could not be reached (" in said
    assert "Check MCSYNC_REDIS_URL." in said
    assert "Eligible for sync" in html and "kept@gmail.com" in section(html, "shop-rows")


def _with_dead_redis(app: Flask, **extra: str) -> Flask:
    """The same shop, its Redis on a port nothing listens on."""
    from example_app import create_app

    config = {k: v for k, v in app.config.items() if k.isupper()}
    config["MCSYNC_REDIS_URL"] = "redis://127.0.0.1:9/0"
    config.update(extra)
    return create_app(config)


def test_redis_down_makes_mailchimp_commands_say_so_not_a_traceback(
    app: Flask, sandbox: SandboxServer
) -> None:
    choose_list(app)
    other = _with_dead_redis(app)
    # Its own context: the CLI runs in the app context it finds (the fixture's, else).
    with other.app_context():
        try:
            runner = other.test_cli_runner()
            for args in (
                ["ping"],
                ["lists"],
                ["settings", "--list", "a1b2c3d4e5"],
                ["worker", "--burst"],  # without --burst it says so and waits for Redis
            ):
                result = runner.invoke(args=["mcsync", *args])
                assert result.exit_code == 1, (args, result.output)
                assert "Redis could not be reached" in result.output, (args, result.output)
                assert "Check MCSYNC_REDIS_URL." in result.output, (args, result.output)
                assert "Traceback" not in result.output, (args, result.output)
        finally:
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_redis_down_makes_the_webhook_buttons_say_so_in_the_pages_language(
    app: Flask, sandbox: SandboxServer, locale: str
) -> None:
    choose_list(app)
    other = _with_dead_redis(
        app, MCSYNC_PUBLIC_URL="https://shop.example.com/", MCSYNC_LOCALE=locale
    )
    try:
        client = other.test_client()
        with client.session_transaction() as sess:
            sess["shop_admin"] = True
            sess[SESSION_KEY] = TOKEN
        for path in ("/webhook/register", "/webhook/remove"):
            response = client.post(PREFIX + path, data={"csrf_token": TOKEN})
            assert response.status_code == 302, (path, response.status_code)
            html = html_of(client.get(response.headers["Location"]))
            said = "Redis est injoignable" if locale == "fr" else "Redis could not be reached"
            assert said in html, (path, html[:2000])
            # The webhook card, which could not ask Mailchimp either, says so alike.
            card = (
                "Impossible de demander à Mailchimp si le webhook est en place : Redis est"
                if locale == "fr"
                else "Could not ask Mailchimp whether the webhook is in place: Redis could"
            )
            assert card in html, (path, html[:3000])
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()
