"""The sync status dashboard at backend and CLI level: ``flask_mcsync.status`` and
``flask mcsync status`` / ``flask mcsync errors``, on SQLite and PostgreSQL.

Periods, counts, order and paging are checked on runs written directly (with the
``created_at`` a test needs); Mailchimp's error texts come from real syncs against the
sandbox (a manual export with a real worker, an auto-sync from a real signup, a
re-sync that meets a 503).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from helpers_export import LIST_ID, choose_audience, insert_customers, wait_run_ended
from support import add_error_outcome, wait_for

from flask_mcsync import jobs

HOSTILE = "<script>alert('mcsync')</script>"


def _db() -> Any:
    from example_app.models import db

    return db


def _ext(app: Flask) -> Any:
    from flask_mcsync import state

    return state(app)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def add_run(session: Any, kind: str, created_at: datetime, **fields: Any) -> int:
    """A finished run written directly, as the dashboard will read it."""
    from flask_mcsync.models import Run

    values: dict[str, Any] = {
        "kind": kind,
        "list_id": LIST_ID,
        "status": "finished",
        "started_by": "test",
        "created_at": created_at,
        "started_at": created_at,
        "finished_at": created_at + timedelta(seconds=3),
        **fields,
    }
    run = Run(**values)
    session.add(run)
    session.commit()
    return int(run.id)


def add_error(session: Any, *args: Any, created_at: datetime | None = None, **kwargs: Any) -> None:
    """:func:`support.add_error_outcome`, committed."""
    add_error_outcome(session, *args, at=created_at or _now(), **kwargs)
    session.commit()


def _cli(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["mcsync", *args])
    return result


# --- periods, counts, order, paging ------------------------------------------------------


def test_report_shows_the_syncs_of_the_period_newest_first_with_their_counts(
    db_only_app: Flask,
) -> None:
    from flask_mcsync.status import report

    session = _db().session
    now = _now()
    old = add_run(
        session,
        "export",
        now - timedelta(days=10),
        total=900,
        created=800,
        updated=60,
        errors=40,
        skipped=5,
    )
    export = add_run(
        session,
        "export",
        now - timedelta(days=3),
        total=500,
        created=20,
        updated=470,
        errors=10,
        skipped=2,
        excluded=3,
        invalid=1,
    )
    auto = add_run(
        session, "auto", now - timedelta(hours=5), total=1, created=1, started_by="signup"
    )
    resync = add_run(
        session,
        "resync",
        now - timedelta(minutes=1),
        total=1,
        skipped=1,
        started_by="diagnostic",
        message="Excluded by the whole domain rule.",
    )
    ancient = add_run(session, "export", now - timedelta(days=400), total=5, created=5)

    week = report(session, 7)
    assert [r["id"] for r in week["runs"]] == [resync, auto, export]
    assert [r["kind"] for r in week["runs"]] == ["resync", "auto", "export"]
    assert week["total"] == 3 and week["pages"] == 1 and week["page"] == 1
    assert week["totals"] == {
        "runs": 3,
        "created": 21,
        "updated": 470,
        "skipped": 3,
        "errors": 10,
        "archived": 0,
        "confirmations": 0,
    }
    by_id = {r["id"]: r for r in week["runs"]}
    assert by_id[export]["created"] == 20 and by_id[export]["updated"] == 470
    assert by_id[export]["errors"] == 10 and by_id[export]["excluded"] == 3
    assert by_id[export]["invalid"] == 1 and by_id[export]["duration"] == 3.0
    assert by_id[resync]["message"] == "Excluded by the whole domain rule."
    assert by_id[auto]["started_by"] == "signup"

    month = report(session, 30)
    assert [r["id"] for r in month["runs"]] == [resync, auto, export, old]
    assert month["totals"]["errors"] == 50 and month["totals"]["created"] == 821
    assert ancient not in [r["id"] for r in report(session, 365)["runs"]]

    # Newest first by creation time, not by id.
    late_id_early_time = add_run(session, "auto", now - timedelta(days=2), created=1)
    assert [r["id"] for r in report(session, 7)["runs"]] == [
        resync,
        auto,
        late_id_early_time,
        export,
    ]


def test_daily_sums_synced_and_failed_per_day(db_only_app: Flask) -> None:
    from flask_mcsync.status import Period, daily

    session = _db().session
    now = _now()
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon > now:
        noon -= timedelta(days=1)
    two_days_ago = noon - timedelta(days=2)
    add_run(session, "export", two_days_ago, created=10, updated=5, errors=2, skipped=1)
    add_run(session, "auto", two_days_ago + timedelta(hours=3), created=1)
    add_run(session, "resync", two_days_ago + timedelta(hours=4), errors=1)
    add_run(session, "export", noon - timedelta(days=5), created=7, updated=0, errors=3)
    add_run(session, "export", noon - timedelta(days=20), created=100)  # outside 7 days

    period = Period.last(7, now)
    days = daily(session, period)
    assert days[0]["day"] == period.since.date().isoformat()
    assert days[-1]["day"] == now.date().isoformat()
    assert len(days) == 8  # the partial first day, six whole ones, today
    by_day = {d["day"]: d for d in days}
    assert by_day[two_days_ago.date().isoformat()] == {
        "day": two_days_ago.date().isoformat(),
        "synced": 16,
        "failed": 3,
        "skipped": 1,
    }
    five = (noon - timedelta(days=5)).date().isoformat()
    assert (by_day[five]["synced"], by_day[five]["failed"]) == (7, 3)
    assert sum(d["synced"] for d in days) == 23
    assert sum(d["failed"] for d in days) == 6


def test_daily_buckets_by_utc_day_whatever_the_database_time_zone(db_only_app: Flask) -> None:
    """A PostgreSQL server in another time zone must not move runs to other days (or off
    the chart): the day keys are UTC dates, so the grouping must be by UTC date too."""
    from flask_mcsync.status import Period, daily

    db = _db()
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no session time zone")
    session = db.session
    now = _now()
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    add_run(session, "export", noon, created=5, errors=1)
    add_run(session, "auto", noon - timedelta(days=2), created=1)
    period = Period.last(7, now)
    in_utc = daily(session, period)
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):  # UTC+14, UTC-11
        session.execute(sa.text(f"SET TIME ZONE '{zone}'"))
        assert daily(session, period) == in_utc, f"days moved with the time zone {zone}"
        session.rollback()


def test_run_list_is_paged(db_only_app: Flask) -> None:
    from flask_mcsync.status import PER_PAGE, report

    session = _db().session
    now = _now()
    ids = [
        add_run(session, "auto", now - timedelta(minutes=10 * i), created=1)
        for i in range(PER_PAGE + 3)
    ]  # ids[0] is the newest
    first = report(session, 7)
    assert first["total"] == PER_PAGE + 3 and first["pages"] == 2
    assert [r["id"] for r in first["runs"]] == ids[:PER_PAGE]
    second = report(session, 7, page=2)
    assert second["page"] == 2
    assert [r["id"] for r in second["runs"]] == ids[PER_PAGE:]
    assert second["totals"]["runs"] == PER_PAGE + 3  # totals cover the whole period
    assert report(session, 7, page=0)["runs"] == first["runs"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (0, "between 1 and 365 days; got 0"),
        (366, "between 1 and 365 days; got 366"),
        (-3, "between 1 and 365 days; got -3"),
        ("abc", "must be a number of days; got 'abc'"),
        (None, "must be a number of days"),
    ],
)
def test_check_days_rejects_with_a_sentence(value: Any, words: str) -> None:
    from flask_mcsync.status import InvalidPeriod, check_days

    with pytest.raises(InvalidPeriod) as info:
        check_days(value)
    assert words in str(info.value)
    assert str(info.value).endswith(".")


def test_check_days_accepts_the_range(db_only_app: Flask) -> None:
    from flask_mcsync.status import InvalidPeriod, check_days, report

    assert check_days(1) == 1 and check_days(365) == 365 and check_days("30") == 30
    with pytest.raises(InvalidPeriod):
        report(_db().session, 366)


def test_cli_refuses_a_bad_period_with_the_sentence(db_only_app: Flask) -> None:
    result = _cli(db_only_app, "status", "--days", "0")
    assert result.exit_code == 1
    assert "between 1 and 365 days; got 0" in result.output
    assert "Traceback" not in result.output
    result = _cli(db_only_app, "errors", "--days", "366", "--csv")
    assert result.exit_code == 1
    assert "between 1 and 365 days; got 366" in result.output
    result = _cli(db_only_app, "status", "--days", "abc")
    assert result.exit_code != 0 and "abc" in result.output


# --- errors: filters, CSV, hostile texts -------------------------------------------------


def _error_fixture(session: Any) -> dict[str, int]:
    now = _now()
    export = add_run(session, "export", now - timedelta(days=2), created=3, errors=3)
    auto = add_run(session, "auto", now - timedelta(hours=1), errors=1, status="failed")
    old = add_run(session, "export", now - timedelta(days=20), errors=1)
    add_error(
        session,
        export,
        "gone@gmail.com",
        "Forgotten Email Not Subscribed",
        "gone@gmail.com was permanently deleted and cannot be re-imported.",
        permanent=True,
        created_at=now - timedelta(days=2),
    )
    add_error(
        session,
        export,
        '=HYPERLINK("http://evil")@x.com',
        "=cmd|' /C calc'!A0",
        '+SUM(1,2), "quoted"\nsecond line',
        permanent=True,
        created_at=now - timedelta(days=2) + timedelta(seconds=1),
    )
    add_error(
        session,
        export,
        "@lead.at@x.com",
        "-2+3",
        "@SUM(A1)",
        permanent=False,
        created_at=now - timedelta(days=2) + timedelta(seconds=2),
    )
    add_error(
        session,
        auto,
        "busy@gmail.com",
        "Gave up after 8 attempts",
        "Service Unavailable: This service is temporarily unavailable.",
        permanent=False,
        created_at=now - timedelta(hours=1),
    )
    add_error(
        session,
        old,
        "older@gmail.com",
        "Invalid Resource",
        "Old one.",
        permanent=True,
        created_at=now - timedelta(days=20),
    )
    return {"export": export, "auto": auto, "old": old}


def _parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _as_csv_cells(row: dict[str, Any]) -> dict[str, str]:
    """What a CSV reader gives back for one error row: strings, formulas neutralised."""
    out = {}
    for key, value in row.items():
        text = "" if value is None else str(value)
        if isinstance(value, str) and text[:1] in ("=", "+", "-", "@"):
            text = "'" + text
        out[key] = text
    return out


def test_errors_filter_by_period_kind_and_run(db_only_app: Flask) -> None:
    from flask_mcsync.status import Period, error_titles, errors

    session = _db().session
    ids = _error_fixture(session)
    week = errors(session, period=Period.last(7))
    assert [e["email"] for e in week] == [
        "busy@gmail.com",
        "@lead.at@x.com",
        '=HYPERLINK("http://evil")@x.com',
        "gone@gmail.com",
    ]
    assert week[-1]["title"] == "Forgotten Email Not Subscribed"
    assert week[-1]["detail"] == "gone@gmail.com was permanently deleted and cannot be re-imported."
    assert week[-1]["run_id"] == ids["export"] and week[-1]["permanent"] is True
    permanent = errors(session, period=Period.last(7), kind="permanent")
    assert {e["email"] for e in permanent} == {"gone@gmail.com", '=HYPERLINK("http://evil")@x.com'}
    retried = errors(session, period=Period.last(7), kind="retried")
    assert {e["email"] for e in retried} == {"busy@gmail.com", "@lead.at@x.com"}
    assert {e["email"] for e in errors(session, period=Period.last(30))} >= {"older@gmail.com"}
    assert [e["email"] for e in errors(session, run_id=ids["auto"])] == ["busy@gmail.com"]
    assert len(errors(session, run_id=ids["export"])) == 3
    assert len(errors(session, run_id=ids["export"], kind="permanent")) == 2
    assert len(errors(session, period=Period.last(7), limit=2)) == 2
    titled = errors(session, period=Period.last(7), title="Forgotten Email Not Subscribed")
    assert [e["email"] for e in titled] == ["gone@gmail.com"]
    assert sorted(error_titles(session, ids["export"])) == sorted(
        [("Forgotten Email Not Subscribed", 1), ("=cmd|' /C calc'!A0", 1), ("-2+3", 1)]
    )


def test_errors_csv_parses_back_to_the_rows_with_formulas_neutralised(db_only_app: Flask) -> None:
    from flask_mcsync.status import CSV_COLUMNS, Period, errors, errors_csv

    session = _db().session
    _error_fixture(session)
    rows = errors(session, period=Period.last(30), limit=None)
    assert len(rows) == 5
    parsed = _parse_csv("".join(errors_csv(rows)))
    assert [list(p) for p in parsed] == [CSV_COLUMNS] * len(rows)
    assert parsed == [_as_csv_cells(r) for r in rows]
    by_email = {p["email"]: p for p in parsed}
    evil = by_email['\'=HYPERLINK("http://evil")@x.com']
    assert evil["title"] == "'=cmd|' /C calc'!A0"
    assert evil["detail"] == '\'+SUM(1,2), "quoted"\nsecond line'  # commas, quotes, newline kept
    lead = by_email["'@lead.at@x.com"]
    assert (lead["title"], lead["detail"], lead["permanent"]) == ("'-2+3", "'@SUM(A1)", "False")
    # No cell of the file starts a formula.
    assert not [cell for p in parsed for cell in p.values() if cell[:1] in ("=", "+", "-", "@")]
    assert _parse_csv("".join(errors_csv([]))) == []


def test_errors_csv_also_neutralises_tab_and_carriage_return() -> None:
    """OWASP's list of formula triggers includes a leading tab and carriage return:
    spreadsheets strip them and evaluate what follows."""
    from flask_mcsync.status import errors_csv

    row = {
        "run_id": 1,
        "at": "2024-01-01T00:00:00+00:00",
        "email": "a@b.com",
        "title": "\t=1+2",
        "detail": '\r=HYPERLINK("http://evil")',
        "permanent": True,
    }
    parsed = _parse_csv("".join(errors_csv([row])))[0]
    assert parsed["title"] == "'\t=1+2"
    assert parsed["detail"] == '\'\r=HYPERLINK("http://evil")'


def test_hostile_texts_are_kept_verbatim_in_data_csv_and_cli(db_only_app: Flask) -> None:
    from flask_mcsync.status import Period, errors, errors_csv, report

    session = _db().session
    run = add_run(
        session,
        "auto",
        _now() - timedelta(minutes=5),
        errors=1,
        status="failed",
        message=f"{HOSTILE}: {HOSTILE}",
    )
    email = f"x{HOSTILE}@evil.com"
    add_error(session, run, email, HOSTILE, f'Detail {HOSTILE} & "more"', permanent=True)

    rows = errors(session, period=Period.last(1))
    assert rows[0]["email"] == email and rows[0]["title"] == HOSTILE
    assert rows[0]["detail"] == f'Detail {HOSTILE} & "more"'
    assert _parse_csv("".join(errors_csv(rows)))[0]["title"] == HOSTILE
    assert report(session, 1)["runs"][0]["message"] == f"{HOSTILE}: {HOSTILE}"

    status = _cli(db_only_app, "status", "--days", "1", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["runs"][0]["message"] == f"{HOSTILE}: {HOSTILE}"
    text = _cli(db_only_app, "errors", "--days", "1")
    assert text.exit_code == 0, text.output
    assert email in text.output and f"{HOSTILE}: Detail {HOSTILE}" in text.output
    as_csv = _cli(db_only_app, "errors", "--days", "1", "--csv")
    assert _parse_csv(as_csv.output)[0]["email"] == email


def test_cli_status_json_and_errors_csv_give_the_functions_data(db_only_app: Flask) -> None:
    from flask_mcsync.status import Period, errors, errors_csv, report

    session = _db().session
    _error_fixture(session)
    for i in range(30):
        add_run(session, "auto", _now() - timedelta(hours=i), created=1)
    for days, page in ((30, 1), (30, 2), (7, 1), (1, 1)):
        result = _cli(db_only_app, "status", "--days", str(days), "--page", str(page), "--json")
        assert result.exit_code == 0, result.output
        from_cli = json.loads(result.output)
        direct = json.loads(json.dumps(report(session, days, page), default=str))
        for moving in ("since", "until"):
            from_cli.pop(moving), direct.pop(moving)
        assert from_cli == direct
    text = _cli(db_only_app, "status", "--days", "30")
    assert text.exit_code == 0 and "Page 1 of 2." in text.output

    for args, kwargs in (
        (["--days", "30"], {"period": Period.last(30)}),
        (["--days", "7", "--kind", "permanent"], {"period": Period.last(7), "kind": "permanent"}),
        (["--days", "7", "--kind", "retried"], {"period": Period.last(7), "kind": "retried"}),
    ):
        result = _cli(db_only_app, "errors", "--csv", *args)
        assert result.exit_code == 0, result.output
        expected = "".join(errors_csv(errors(session, limit=None, **kwargs)))
        assert _parse_csv(result.output) == _parse_csv(expected)
        assert len(_parse_csv(result.output)) == len(errors(session, limit=None, **kwargs))


# --- real syncs: a manual export, an auto-sync and a re-sync with Mailchimp's errors ------


@pytest.mark.slow
def test_real_syncs_show_on_the_dashboard_with_mailchimps_error_texts(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    from flask_mcsync.diagnostic import start_resync
    from flask_mcsync.models import Run
    from flask_mcsync.runs import start_export
    from flask_mcsync.status import Period, errors, errors_csv, report

    db = _db()
    session = db.session
    ext = _ext(app)
    good = [f"client{i}@gmail.com" for i in range(12)]
    rows = [
        {"email": e, "first_name": "C", "last_name": str(i), "newsletter": True}
        for i, e in enumerate(good)
    ]
    rows += [
        {"email": "gone.person@gmail.com", "first_name": "G", "last_name": "P", "newsletter": True},
        {"email": "fake@gmail.com", "first_name": "F", "last_name": "K", "newsletter": True},
        {"email": "busy.person@gmail.com", "first_name": "B", "last_name": "P", "newsletter": True},
    ]
    insert_customers(db, rows)
    choose_audience(app)
    sandbox.client.forget(LIST_ID, ["gone.person@gmail.com"])
    workers.start(1)

    export_id = int(start_export(ext, "test", batch_size=5).run.id)
    data = wait_run_ended(session, export_id, timeout=60)
    assert data["status"] == "finished", data["message"]
    assert (data["created"], data["errors"]) == (13, 2)

    # An auto-sync from a real signup in the shop (the first export is done).
    client = app.test_client()
    client.post(
        "/signup", data={"email": "new.one@gmail.com", "first_name": "New", "newsletter": "y"}
    )

    def auto_run() -> Any:
        session.commit()
        session.expire_all()
        return session.execute(
            sa.select(Run).where(Run.kind == "auto", Run.status == "finished")
        ).scalar_one_or_none()

    auto = wait_for(auto_run, 30, "the auto-sync of the signup")
    assert auto.created == 1

    # A re-sync that meets a 503 at each of its tries: it ends with Mailchimp's passing
    # error recorded.
    sandbox.client.set_faults(next=[{"status": 503, "method": "PUT", "count": jobs.RESYNC_TRIES}])
    resync_id = int(start_resync(ext, "busy.person@gmail.com", started_by="test").id)

    def resync_ended() -> Any:
        session.commit()
        session.expire_all()
        run = session.get(Run, resync_id)
        return run if run.status in ("finished", "failed") else None

    resync = wait_for(resync_ended, 30, "the re-sync")
    assert resync.errors == 1

    week = report(session, 7)
    assert [(r["id"], r["kind"]) for r in week["runs"]] == [
        (resync_id, "resync"),
        (auto.id, "auto"),
        (export_id, "export"),
    ]
    assert week["totals"] == {
        "runs": 3,
        "created": 14,
        "updated": 0,
        "skipped": 0,
        "errors": 3,
        "archived": 0,
        "confirmations": 0,
    }
    today = week["daily"][-1]
    assert (today["synced"], today["failed"]) == (14, 3)

    period = Period.last(7)
    everything = errors(session, period=period)
    by_email = {e["email"]: e for e in everything}
    assert set(by_email) == {"gone.person@gmail.com", "fake@gmail.com", "busy.person@gmail.com"}
    gone = by_email["gone.person@gmail.com"]
    assert gone["title"] == "Forgotten Email Not Subscribed" and gone["permanent"] is True
    assert gone["detail"] == (
        "gone.person@gmail.com was permanently deleted and cannot be re-imported. The contact"
        " must re-subscribe to get back on the list."
    )
    fake = by_email["fake@gmail.com"]
    assert fake["title"] == "Invalid Resource" and fake["permanent"] is True
    assert "fake@gmail.com looks fake or invalid" in fake["detail"]
    busy = by_email["busy.person@gmail.com"]
    assert busy["title"] == f"Gave up after {jobs.RESYNC_TRIES} tries"
    assert busy["permanent"] is False
    assert busy["detail"].startswith("Service Unavailable:")
    assert "temporarily unavailable" in busy["detail"]

    assert {e["email"] for e in errors(session, period=period, kind="permanent")} == {
        "gone.person@gmail.com",
        "fake@gmail.com",
    }
    assert [e["email"] for e in errors(session, period=period, kind="retried")] == [
        "busy.person@gmail.com"
    ]
    assert {e["email"] for e in errors(session, run_id=export_id)} == {
        "gone.person@gmail.com",
        "fake@gmail.com",
    }
    assert _parse_csv("".join(errors_csv(everything))) == [_as_csv_cells(e) for e in everything]

    cli = _cli(app, "status", "--days", "7", "--json")
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output)["runs"] == week["runs"]
    cli_csv = _cli(app, "errors", "--days", "7", "--csv")
    assert cli_csv.exit_code == 0, cli_csv.output
    assert _parse_csv(cli_csv.output) == [_as_csv_cells(e) for e in everything]
    permanent_only = _cli(app, "errors", "--days", "7", "--kind", "permanent")
    assert "Forgotten Email Not Subscribed" in permanent_only.output
    assert "busy.person@gmail.com" not in permanent_only.output
    assert "2 errors." in permanent_only.output


def test_outcome_rows_keep_every_character_and_value_they_were_given(db_only_app: Flask) -> None:
    """A batch's outcome rows go to PostgreSQL as one block of COPY text built by us: a
    tab, a newline, a carriage return or a backslash in Mailchimp's words, an address
    or what was sent must come back as they were, and so must None, True and JSON null."""
    from flask_mcsync.gateway import AddressError
    from flask_mcsync.models import Outcome, Run
    from flask_mcsync.outcomes import AddressOutcome, record
    from flask_mcsync.statuses import Result

    ext = _ext(db_only_app)
    session = ext.session
    run = Run(kind="export", list_id=LIST_ID, status="running", status_if_new="subscribed")
    session.add(run)
    session.commit()
    odd = "a\\b\tc\nd\re \\N \\t é 漢 \U0001f600"
    given = [
        AddressOutcome(
            "o'brien+x@example.com",
            Result.ERROR,
            error=AddressError(f"Invalid Resource{odd}", f"Detail{odd}"),
            sent={"merge_fields": {"FNAME": odd, "LNAME": None, "AGE": 3}, "language": "fr"},
        ),
        AddressOutcome("plain@example.com", Result.CREATED, mailchimp_status="subscribed"),
        AddressOutcome("skip\\me@example.com", Result.SKIPPED, skip_reason=f"Excluded{odd}"),
    ]
    counts = record(session, run.id, given)
    session.commit()
    assert counts == {"errors": 1, "created": 1, "skipped": 1}
    rows = session.execute(
        sa.select(Outcome).where(Outcome.run_id == run.id).order_by(Outcome.id)
    ).scalars()
    got = [
        (o.email, o.outcome, o.permanent, o.error_title, o.error_detail, o.mailchimp_status, o.sent)
        for o in rows
    ]
    assert got == [
        (
            "o'brien+x@example.com",
            "error",
            True,
            f"Invalid Resource{odd}",
            f"Detail{odd}",
            None,
            {"merge_fields": {"FNAME": odd, "LNAME": None, "AGE": 3}, "language": "fr"},
        ),
        ("plain@example.com", "created", False, None, None, "subscribed", None),
        ("skip\\me@example.com", "skipped", False, "Skipped", f"Excluded{odd}", None, None),
    ]
    # JSON null, as the ORM writes None into this column, not SQL NULL.
    nulls = session.execute(
        sa.select(sa.func.count()).where(Outcome.run_id == run.id, Outcome.sent.is_(None))
    ).scalar()
    assert nulls == 0


def test_outcome_rows_are_recorded_with_a_host_json_serializer_that_gives_bytes(
    db_only_app: Flask,
) -> None:
    """A host's engine may encode JSON with orjson, whose ``dumps`` returns bytes: what
    was sent is still recorded, and read back as it was."""
    from sqlalchemy.orm import Session

    from flask_mcsync.models import Outcome, Run
    from flask_mcsync.outcomes import AddressOutcome, record
    from flask_mcsync.statuses import Result

    engine = sa.create_engine(
        _ext(db_only_app).session.get_bind().url,
        json_serializer=lambda value: json.dumps(value, ensure_ascii=False).encode(),
    )
    sent = {"merge_fields": {"FNAME": "Zoë \\ 漢"}, "status_if_new": "subscribed"}
    try:
        with Session(engine) as session:
            run = Run(kind="export", list_id=LIST_ID, status="running", status_if_new="subscribed")
            session.add(run)
            session.flush()
            record(session, run.id, [AddressOutcome("zoe@example.com", Result.CREATED, sent=sent)])
            session.commit()
            stored = session.execute(
                sa.select(Outcome.sent).where(Outcome.run_id == run.id)
            ).scalar_one()
    finally:
        engine.dispose()
    assert stored == sent
