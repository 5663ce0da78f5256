"""Manual export, end to end: real ``flask mcsync worker`` processes, real Redis, the
Mailchimp sandbox, on SQLite and PostgreSQL (through the ``app`` fixture).

What must hold is worked out from the customer rows by ``helpers_export``, not by the
extension's own eligibility code, so the two are checked against each other.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from helpers_export import (
    LIST_ID,
    ROOT,
    add_standard_rules,
    assert_one_outcome_each,
    audience_members,
    choose_audience,
    expected_export,
    flask_cli,
    insert_customers,
    read_progress,
    run_cli,
    run_clis,
    shop_rows,
    wait_run_ended,
)
from support import Workers, app_config, wait_for, worker_env

pytestmark = pytest.mark.slow


def _db() -> Any:
    from example_app.models import db

    return db


def _ext(app: Flask) -> Any:
    from flask_mcsync import state

    return state(app)


def _start(app: Flask, batch_size: int) -> int:
    from flask_mcsync.runs import start_export

    started = start_export(_ext(app), "test", batch_size=batch_size)
    assert started.created
    return int(started.run.id)


def _shop_with_standard_rules(app: Flask, rows: list[Any]) -> Any:
    """The shop holds ``rows``, the audience is chosen, the standard exclusion rules are
    set: what an export of it should do."""
    db = _db()
    insert_customers(db, rows)
    choose_audience(app)
    add_standard_rules(db.session)
    return expected_export(rows)


def _first_export_done(app: Flask) -> bool:
    from flask_mcsync import settings

    ext = _ext(app)
    ext.db.session.commit()
    ext.db.session.expire_all()
    return settings.load(ext.db.session, ext.config).first_export_done


def test_export_puts_every_eligible_address_in_the_audience_exactly_once(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    from flask_mcsync.models import Outcome

    db = _db()
    rows = shop_rows(400)
    expected = _shop_with_standard_rules(app, rows)
    assert len(expected.send) > 200 and expected.excluded and expected.invalid
    assert expected.duplicates >= 2  # at least the hand-made case variants
    assert not _first_export_done(app)

    workers.start(2)
    run_id = _start(app, batch_size=40)
    data = wait_run_ended(db.session, run_id, timeout=60)

    assert data["status"] == "finished", data["message"]
    members = audience_members(sandbox)
    assert set(members) == set(expected.send)
    # Spot checks of the rules' edges.
    assert "anne.case@gmail.com" in members
    assert "y@notmailinator.com" in members
    for never in (
        "someone@mailinator.com",
        "x@shop.mailinator.com",
        "test+promo@orange.fr",
        "blocked.person@gmail.com",
        "late.optin@free.fr",
        "broken@@gmail.com",
    ):
        assert never not in members
    for low, member in members.items():
        assert member["status"] == "subscribed", low
        for tag, value in expected.merge[low].items():
            assert member["merge_fields"][tag] == value, (low, tag)
    # The first row in key order speaks for a contact: its spelling is what was sent.
    assert members["anne.case@gmail.com"]["email_address"] == "Anne.Case@Gmail.com"

    assert data["total"] == len(expected.send)
    assert data["created"] == len(expected.send)
    assert data["updated"] == 0
    assert data["errors"] == 0
    assert data["excluded"] == expected.excluded
    assert data["invalid"] == expected.invalid
    assert data["duplicates"] == expected.duplicates
    assert sum(b["size"] for b in data["batches"]) == data["total"]
    assert all(b["status"] == "done" for b in data["batches"])

    outcomes = assert_one_outcome_each(db.session, run_id, expected.send)
    assert all(o.outcome == "created" for o in outcomes)
    skipped = db.session.execute(
        sa.select(sa.func.count()).where(Outcome.run_id == run_id, Outcome.outcome == "skipped")
    ).scalar_one()
    assert skipped == expected.excluded + expected.invalid
    assert _first_export_done(app)


def test_rerun_keeps_unsubscribed_and_cleaned_and_reports_forgotten(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    db = _db()
    rows = shop_rows(150, seed=11)
    expected = _shop_with_standard_rules(app, rows)
    addresses = sorted(expected.send)
    unsubscribed, cleaned = addresses[0:3], addresses[3:5]
    subscribed_before = addresses[5:7]
    forgotten = addresses[7:9]
    sandbox.client.seed_members(
        LIST_ID,
        [
            {"email_address": a, "status": "unsubscribed", "merge_fields": {"FNAME": "Old"}}
            for a in unsubscribed
        ]
        + [
            {"email_address": a, "status": "cleaned", "merge_fields": {"FNAME": "Old"}}
            for a in cleaned
        ]
        + [
            {"email_address": a, "status": "subscribed", "merge_fields": {"FNAME": "Old"}}
            for a in subscribed_before
        ],
    )
    sandbox.client.forget(LIST_ID, forgotten)
    existing = len(unsubscribed) + len(cleaned) + len(subscribed_before)

    workers.start(2)
    first = wait_run_ended(db.session, _start(app, batch_size=25), timeout=60)
    second = wait_run_ended(db.session, _start(app, batch_size=25), timeout=60)

    for data in (first, second):
        # Forgotten addresses are errors, so neither run is a failure of the run itself.
        assert data["status"] == "finished", data["message"]
        assert data["total"] == len(expected.send)
        assert data["errors"] == len(forgotten)
        assert data["created"] + data["updated"] + data["errors"] == data["total"]
    # The members seeded a moment ago as subscribed cannot be told from new ones by their
    # opt-in time; the unsubscribed and cleaned ones can (their status was kept).
    assert first["created"] + first["updated"] == len(expected.send) - len(forgotten)
    assert first["updated"] >= len(unsubscribed) + len(cleaned)
    assert first["created"] >= len(expected.send) - existing - len(forgotten)

    members = audience_members(sandbox)
    assert set(members) == set(expected.send) - set(forgotten)
    for address in unsubscribed:
        assert members[address]["status"] == "unsubscribed"
    for address in cleaned:
        assert members[address]["status"] == "cleaned"
    for address in unsubscribed + cleaned + subscribed_before:
        # Merge fields of existing members are updated, whatever their status.
        assert members[address]["merge_fields"]["FNAME"] == expected.merge[address]["FNAME"]
    for address in set(members) - set(unsubscribed) - set(cleaned):
        assert members[address]["status"] == "subscribed"

    for data in (first, second):
        outcomes = assert_one_outcome_each(db.session, data["id"], expected.send)
        by_address = {o.email.lower(): o for o in outcomes}
        for address in unsubscribed + cleaned:
            assert by_address[address].outcome == "updated", address
            assert by_address[address].mailchimp_status in ("unsubscribed", "cleaned")
        errors = {o.email.lower(): o for o in outcomes if o.outcome == "error"}
        assert set(errors) == set(forgotten)
        for outcome in errors.values():
            assert outcome.error_title == "Forgotten Email Not Subscribed"
            assert outcome.permanent
            assert "permanently deleted" in (outcome.error_detail or "")
    # Forgotten addresses cost one operation each per run, never a retry.
    assert all(b["retry_of"] is None for b in _batch_rows(first["id"]))
    # Everybody is in the audience by now: the re-run creates nobody.
    assert second["created"] == 0, "the second run counted existing members as created"
    assert second["updated"] == len(expected.send) - len(forgotten)


def _batch_rows(run_id: int) -> list[dict[str, Any]]:
    from flask_mcsync.models import Batch

    session = _db().session
    session.commit()
    return [
        {
            "seq": b.seq,
            "retry_of": b.retry_of,
            "size": b.size,
            "status": b.status,
            "mailchimp_batch_id": b.mailchimp_batch_id,
        }
        for b in session.execute(
            sa.select(Batch).where(Batch.run_id == run_id).order_by(Batch.seq)
        ).scalars()
    ]


def test_worker_killed_mid_run_loses_nothing(app: Flask, sandbox: Any, workers: Any) -> None:
    from rq.scheduler import RQScheduler

    db = _db()
    rows = shop_rows(320, seed=3)
    insert_customers(db, rows)
    choose_audience(app)
    expected = expected_export(rows, rules=False)
    # 3 s of Mailchimp-side processing a batch (they run one at a time): the run stays
    # half done for many seconds, however late the looks below come.
    sandbox.client.set_faults(batch_ops_per_second=10)

    (first,) = workers.start(1)
    run_id = _start(app, batch_size=30)

    def some_done_some_not() -> bool:
        data = read_progress(db.session, run_id)
        statuses = [b["status"] for b in data["batches"]]
        done = statuses.count("done")
        return data["planning_done"] and done >= 2 and len(statuses) - done >= 3

    wait_for(some_done_some_not, timeout=120, what="a run half done")
    workers.kill(first)
    # The dead worker's scheduler (RQ's, which queues the polls any worker scheduled)
    # keeps its lock for a minute. Held here for ten minutes: the run must end without
    # any scheduler, through the leases (9 s) and the sweep (every 2 s) alone. Ending
    # within the 120 s below is the proof (without the sweep's moving of overdue polls
    # it waits for the lock).
    redis = _ext(app).redis
    lock = RQScheduler.get_locking_key(_ext(app).config.queue_name)
    assert redis.get(lock) is not None, "the killed worker ran no scheduler"
    assert redis.expire(lock, 600)
    sandbox.client.set_faults(batch_ops_per_second=20_000)
    workers.start(1)

    data = wait_run_ended(db.session, run_id, timeout=120)
    assert data["status"] == "finished", data["message"]
    members = audience_members(sandbox)
    assert set(members) == set(expected.send)
    assert_one_outcome_each(db.session, run_id, expected.send)
    assert data["created"] + data["updated"] + data["errors"] == data["total"]
    assert data["total"] == len(expected.send)
    assert data["errors"] == 0


def test_two_synchronize_at_once_start_one_run(app: Flask, sandbox: Any, workers: Any) -> None:
    from flask_mcsync.models import Run
    from flask_mcsync.runs import start_export

    db = _db()
    rows = shop_rows(200, seed=5)
    insert_customers(db, rows)
    choose_audience(app)
    expected = expected_export(rows, rules=False)

    barrier = threading.Barrier(2)
    results: list[tuple[int, bool]] = []
    failures: list[BaseException] = []

    def click() -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=10)
                started = start_export(_ext(app), "admin", batch_size=50)
                results.append((int(started.run.id), started.created))
                _db().session.remove()
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures
    assert len(results) == 2
    assert results[0][0] == results[1][0]
    assert sorted(created for _, created in results) == [False, True]
    run_id = results[0][0]

    workers.start(2)
    data = wait_run_ended(db.session, run_id, timeout=60)
    assert data["status"] == "finished", data["message"]
    db.session.commit()
    assert (
        db.session.execute(
            sa.select(sa.func.count()).select_from(Run).where(Run.kind == "export")
        ).scalar_one()
        == 1
    )
    batches = _batch_rows(run_id)
    assert [b["seq"] for b in batches] == list(range(1, len(batches) + 1))
    assert len(batches) == -(-len(expected.send) // 50)
    assert sum(b["size"] for b in batches) == len(expected.send)
    # One Mailchimp batch per batch of ours: nothing was planned or sent twice.
    assert len(sandbox.client.stats()["batches"]) == len(batches)
    assert set(audience_members(sandbox)) == set(expected.send)
    assert_one_outcome_each(db.session, run_id, expected.send)


def test_two_cli_exports_started_together_join_one_run(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    db = _db()
    rows = shop_rows(120, seed=9)
    insert_customers(db, rows)
    choose_audience(app)
    expected = expected_export(rows, rules=False)

    # From the fork server: a fresh interpreter importing the stack took most of a
    # minute on a slow, loaded machine.
    command = ["export", "--batch-size", "40", "--json"]
    results = run_clis(app, command, command, timeout=90)
    for result in results:
        assert result.returncode == 0, result.stderr
    run_ids = {json.loads(result.stdout)["id"] for result in results}
    assert len(run_ids) == 1
    (run_id,) = run_ids

    workers.start(1)
    data = wait_run_ended(db.session, run_id, timeout=60)
    assert data["status"] == "finished", data["message"]
    batches = _batch_rows(run_id)
    assert len(batches) == -(-len(expected.send) // 40)
    assert len(sandbox.client.stats()["batches"]) == len(batches)
    assert set(audience_members(sandbox)) == set(expected.send)
    assert_one_outcome_each(db.session, run_id, expected.send)


def test_cli_export_wait_shows_progress_and_summary(app: Flask, sandbox: Any, workers: Any) -> None:
    rows = shop_rows(150, seed=13)
    expected = _shop_with_standard_rules(app, rows)
    sandbox.client.set_faults(batch_ops_per_second=100)  # a run of a couple of seconds

    workers.start(1)
    result = run_cli(app, "export", "--batch-size", "30", "--wait")

    assert result.returncode == 0, result.stderr
    assert "Started export run" in result.stdout
    bars = [line for line in result.stderr.split("\r") if line.strip().startswith("[")]
    assert bars, result.stderr
    assert "100.0%" in bars[-1]
    assert f"{len(expected.send)}/{len(expected.send)} addresses" in bars[-1]
    summary = result.stdout.strip().splitlines()[-1]
    assert " finished in " in summary
    assert f"exported {len(expected.send)} ({len(expected.send)} created, 0 updated)" in summary
    assert f"excluded {expected.excluded}," in summary
    assert f"invalid {expected.invalid}," in summary
    assert f"duplicates {expected.duplicates}," in summary
    assert "errors 0." in summary
    assert set(audience_members(sandbox)) == set(expected.send)


def test_cli_export_wait_exits_non_zero_when_the_run_fails(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    from flask_mcsync.models import Run

    db = _db()
    insert_customers(db, shop_rows(60, seed=17))
    choose_audience(app)
    # A key of the right shape that the sandbox account does not know.
    bad_key = "f" * 32 + "-us1"
    workers.env["MCSYNC_API_KEY"] = bad_key
    workers.start(1)

    env = worker_env(app)
    env["MCSYNC_API_KEY"] = bad_key
    result = subprocess.run(
        flask_cli("export", "--batch-size", "20", "--wait"),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,  # a fresh interpreter: most of a minute on a loaded machine
    )

    assert result.returncode != 0
    assert " failed in " in result.stdout
    assert "API Key Invalid" in result.stdout
    db.session.commit()
    run = db.session.execute(sa.select(Run).where(Run.kind == "export")).scalar_one()
    assert run.status == "failed"
    assert "API Key Invalid" in (run.message or "")
    assert run.active_list_id is None  # the audience is free for the next export
    assert sandbox.client.members(LIST_ID)["members"] == []


def test_the_example_shop_runs_sqlite_as_the_operations_guide_says(app: Flask) -> None:
    """WAL, ``synchronous=NORMAL`` and a checkpoint every 40,000 pages on every
    connection (docs/operations.rst): the figures in benchmarks/README.md assume them."""
    db = _db()
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's settings")
    with db.engine.connect() as connection:
        read = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert read("journal_mode") == "wal"
        assert read("synchronous") == 1  # NORMAL
        assert read("wal_autocheckpoint") == 40_000


def test_an_export_on_sqlites_default_journal_reaches_every_address(
    tmp_path: Path, redis_url: str, sandbox: Any
) -> None:
    """The example shop runs SQLite in WAL mode (docs/operations.rst); a host that never
    chose a journal has SQLite's own, where a read waits for each commit and workers wait
    for one another's. An export there, read by the progress window as it runs, still
    ends with every address once."""
    from example_app import create_app

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    application = create_app({**app_config(url, redis_url, sandbox), "SHOP_SQLITE_WAL": False})
    with application.app_context():
        db = _db()
        rows = shop_rows(300)
        expected = _shop_with_standard_rules(application, rows)
        pool = Workers({**worker_env(application), "SHOP_SQLITE_WAL": "0"}, tmp_path)
        try:
            pool.start(2)
            run_id = _start(application, batch_size=25)
            reads, deadline = 0, time.monotonic() + 90
            while not (data := read_progress(db.session, run_id))["ended"]:
                assert time.monotonic() < deadline, f"the run did not end: {data}"
                reads += 1
                time.sleep(0.05)
            assert data["status"] == "finished", data["message"]
            assert reads > 0
            assert set(audience_members(sandbox)) == set(expected.send)
            assert data["created"] == len(expected.send) and data["errors"] == 0
            assert_one_outcome_each(db.session, run_id, expected.send)
            # Nothing switched the file to WAL behind the test's back.
            journal = db.session.execute(sa.text("PRAGMA journal_mode")).scalar()
            assert journal == "delete"
        finally:
            pool.stop_all()
            db.session.remove()
            db.engine.dispose()
