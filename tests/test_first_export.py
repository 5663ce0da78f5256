"""Signups that arrive while the first export runs (to the chosen audience, or to a new
one after the owner switched): each reaches the audience once, by the export or by
auto-sync, never by neither. Real ``flask mcsync worker`` processes, the sandbox, SQLite
and PostgreSQL.

The signups come in two waves: one while the planner is still reading the shop (the
export may or may not read them), and one after planning ended while the batches are
still being sent (the export cannot read them: the gap of issue 9.1).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from helpers_export import LIST_ID, audience_members, choose_audience, read_progress
from support import Workers, wait_for

from example_app.commands import DOMAINS

pytestmark = pytest.mark.slow

OTHER_LIST_ID = "f0e1d2c3b4"


def _ext(app: Flask) -> Any:
    from flask_mcsync import state

    return state(app)


def _read(app: Flask, query: Any) -> list[Any]:
    session = _ext(app).session
    session.commit()
    session.expire_all()
    try:
        return list(session.execute(query).all())
    finally:
        session.commit()


def _ended(app: Flask, run_id: int) -> bool:
    """Whether the run has ended: what ``progress()["ended"]`` says, from the run's status
    alone (asked after every signup; the whole progress read took a quarter of the wave)."""
    from flask_mcsync.models import Run
    from flask_mcsync.statuses import RUN_ENDED

    [(status,)] = _read(app, sa.select(Run.status).where(Run.id == run_id))
    return status in RUN_ENDED


def _insert_shop(app: Flask, count: int) -> None:
    from example_app.commands import make_customers
    from example_app.models import Customer

    session = _ext(app).session
    rows = make_customers(count, seed=11)
    for start in range(0, len(rows), 2000):
        session.execute(sa.insert(Customer), rows[start : start + 2000])
    session.commit()


def _signup(client: Any, email: str, newsletter: bool) -> None:
    data = {"email": email, "first_name": "During", "last_name": "Export"}
    if newsletter:
        data["newsletter"] = "1"
    response = client.post("/signup", data=data)
    assert response.status_code == 302, (email, response.status_code)


def _address(wave: str, i: int) -> str:
    return f"during.{wave}.{i:04d}@{DOMAINS[i % len(DOMAINS)]}"


def _waiting(app: Flask) -> int:
    from flask_mcsync.models import OutboxItem

    rows = _read(
        app,
        sa.select(sa.func.count()).where(OutboxItem.status.in_(("pending", "sending"))),
    )
    return int(rows[0][0])


def _signups_during_first_export(
    app: Flask,
    sandbox: Any,
    workers: Workers,
    *,
    customers: int,
    signups: int,
    list_id: str,
) -> None:
    from flask_mcsync.addresses import subscriber_hash
    from flask_mcsync.models import OutboxItem, Outcome, Run
    from flask_mcsync.runs import start_export

    _insert_shop(app, customers)
    # Slow Mailchimp's batch processing so the sending outlasts the second wave, even
    # when a loaded machine makes each signup slow (the export itself no longer is): at
    # this pace a batch of 1,000 takes 10-40 s. The pace is lifted after the wave.
    sandbox.client.set_faults(batch_ops_per_second=max(customers // 200, 25))
    workers.start(2)
    client = app.test_client(use_cookies=False)
    started = start_export(_ext(app), "test", batch_size=1000)
    assert started.created
    run_id = int(started.run.id)

    opted_in: set[str] = set()
    not_opted: set[str] = set()
    during_sending = 0
    for i in range(signups):
        if i == signups // 3:
            # Second wave: the planner has fixed what the export covers.
            wait_for(
                lambda: read_progress(_ext(app).session, run_id)["planning_done"],
                120,
                "the export's planning to end",
            )
        email = _address("first" if i < signups // 3 else "second", i)
        newsletter = i % 3 != 0
        _signup(client, email, newsletter)
        (opted_in if newsletter else not_opted).add(email)
        if i >= signups // 3 and not _ended(app, run_id):
            during_sending += 1
    # Otherwise this test would not test the gap.
    assert during_sending >= signups // 3, (
        f"only {during_sending} signups arrived between planning and the end of the export"
    )
    sandbox.client.set_faults(batch_ops_per_second=50_000)

    wait_for(lambda: read_progress(_ext(app).session, run_id)["ended"], 300, "the export to end")
    progress = read_progress(_ext(app).session, run_id)
    assert progress["status"] == "finished", progress["message"]
    wait_for(lambda: _waiting(app) == 0, 120, "every signup's outbox row to be handled")

    audience = audience_members(sandbox, list_id)
    missing = sorted(e for e in opted_in if e.lower() not in audience)
    assert not missing, f"{len(missing)} opted-in signups never reached the audience: {missing[:5]}"
    assert not [e for e in not_opted if e.lower() in audience]

    # Exactly one outcome per signup, in the export or in an auto-sync, never both.
    hashes = {subscriber_hash(e): e for e in opted_in | not_opted}
    outcomes = _read(
        app,
        sa.select(Outcome.email_hash, Outcome.outcome, Run.kind, Run.id)
        .join(Run, Run.id == Outcome.run_id)
        .where(Outcome.email_hash.in_(list(hashes))),
    )
    per_address = Counter(hashes[o.email_hash] for o in outcomes)
    assert {e: n for e, n in per_address.items() if n != 1} == {}
    assert set(per_address) == opted_in | not_opted, sorted(set(hashes.values()) - set(per_address))
    by_address = {hashes[o.email_hash]: o for o in outcomes}
    assert {by_address[e].outcome for e in opted_in} == {"created"}
    assert {by_address[e].outcome for e in not_opted} == {"skipped"}

    # Each outbox row says truly what happened, and points at the run that did it.
    rows = _read(
        app,
        sa.select(OutboxItem.email, OutboxItem.status, OutboxItem.run_id, OutboxItem.last_error),
    )
    assert len(rows) == signups
    kinds = Counter()
    for row in rows:
        outcome = by_address[row.email]
        assert row.run_id == outcome.id, (row, outcome)
        if outcome.kind == "export":
            assert row.run_id == run_id
            assert row.status == "sent", row
            assert (row.last_error or "").startswith(f"Already sent by export run {run_id}")
        else:
            assert outcome.kind == "auto", row
            assert row.status == ("sent" if row.email in opted_in else "skipped"), row
        kinds[outcome.kind] += 1
    # The second wave cannot be in the export: auto-sync sent it.
    assert kinds["auto"] >= during_sending, kinds


def test_signups_during_the_first_export_reach_the_audience_once(
    app: Flask, sandbox: Any, workers: Workers
) -> None:
    choose_audience(app)
    _signups_during_first_export(
        app, sandbox, workers, customers=20_000, signups=500, list_id=LIST_ID
    )


def test_signups_during_the_first_export_to_a_new_audience_reach_it_once(
    app: Flask, sandbox: Any, workers: Workers
) -> None:
    from flask_mcsync import settings

    # Auto-sync was running for the old audience; the owner switches to a new one.
    choose_audience(app)
    ext = _ext(app)
    settings.mark_first_export_done(ext.session, ext.config)
    ext.session.commit()
    sandbox.client.create_list("New audience", [], list_id=OTHER_LIST_ID)
    settings.update(ext.session, ext.config, list_id=OTHER_LIST_ID)
    assert not settings.load(ext.session, ext.config).first_export_done

    _signups_during_first_export(
        app, sandbox, workers, customers=5_000, signups=150, list_id=OTHER_LIST_ID
    )
    assert settings.load(ext.session, ext.config).first_export_done
    assert sandbox.client.members(LIST_ID)["members"] == []


def test_an_export_to_another_audience_does_not_start_auto_sync(
    app: Flask, sandbox: Any, workers: Workers
) -> None:
    """``export --list`` to an audience other than the chosen one is not its first export:
    a signup afterwards must not be sent as if auto-sync had started."""
    from flask_mcsync import settings
    from flask_mcsync.models import OutboxItem
    from flask_mcsync.runs import start_export

    choose_audience(app)
    _insert_shop(app, 50)
    sandbox.client.create_list("Other", [], list_id=OTHER_LIST_ID)
    workers.start(1)
    run_id = int(start_export(_ext(app), "test", list_id=OTHER_LIST_ID).run.id)
    wait_for(lambda: read_progress(_ext(app).session, run_id)["ended"], 120, "the export")
    assert not settings.load(_ext(app).session, _ext(app).config).first_export_done

    _signup(app.test_client(use_cookies=False), "after.other.export@gmail.com", True)
    wait_for(lambda: _waiting(app) == 0, 30, "the row to be handled")
    [row] = _read(app, sa.select(OutboxItem.status, OutboxItem.last_error))
    assert row.status == "ignored"
    assert "No first export to this audience yet" in row.last_error
    assert sandbox.client.member(LIST_ID, "after.other.export@gmail.com") is None


def test_waiting_rows_are_not_sent_by_flush_while_the_first_export_runs(
    app: Flask, sandbox: Any
) -> None:
    """No worker runs: the export stays queued, and flush leaves its signups waiting."""
    from flask_mcsync.models import OutboxItem
    from flask_mcsync.runs import start_export

    choose_audience(app)
    _insert_shop(app, 10)
    run_id = int(start_export(_ext(app), "test").run.id)
    _signup(app.test_client(use_cookies=False), "patient.signup@gmail.com", True)
    time.sleep(0.2)

    result = app.test_cli_runner().invoke(args=["mcsync", "flush"])
    assert result.exit_code == 0, result.output
    assert "waiting for the first export 1" in result.output, result.output
    [row] = _read(app, sa.select(OutboxItem.status, OutboxItem.run_id, OutboxItem.attempts))
    assert (row.status, row.run_id, row.attempts) == ("pending", run_id, 0)
    assert sandbox.client.member(LIST_ID, "patient.signup@gmail.com") is None
