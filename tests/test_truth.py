"""The project keeps the truth, end to end: real workers, real Redis, the sandbox (which
behaves like Mailchimp on archived contacts, compliance, required merge fields and merge
value types), on SQLite and PostgreSQL.

* An export into a lived-in audience: every address ends with the outcome Mailchimp
  gives, nobody is resubscribed or un-archived, the required merge field is caught
  before the export, and a boolean column reaches Mailchimp as a value it accepts.
* A customer who opts out then in again in the example shop gets Mailchimp's
  confirmation e-mail (pending), and the dashboard and the diagnostic say so.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers_export import choose_audience, insert_customers, run_cli, wait_run_ended
from support import wait_for

pytestmark = pytest.mark.slow

LIVED_IN = "b2c3d4e5f6"
PREFIX = "/admin/mailchimp"
FIELDS = [
    {"tag": "FNAME", "name": "First name", "type": "text"},
    {"tag": "LNAME", "name": "Last name", "type": "text"},
    {"tag": "VIP", "name": "VIP customer", "type": "text"},
    {"tag": "PHONE", "name": "Phone", "type": "phone", "required": True},
]

# The audience as the shop finds it, by what Mailchimp holds.
ARCHIVED = "arch.ived@gmail.com"
ADMIN_UNSUB = "admin.unsub@gmail.com"
SELF_UNSUB = "self.unsub@gmail.com"
CLEANED = "clea.ned@gmail.com"
FORGOTTEN = "forgot.ten@gmail.com"
SUBSCRIBED = "already.here@gmail.com"
NEW = [f"new.customer{i}@gmail.com" for i in range(6)]


def _ext(app: Flask) -> Any:
    from flask_mcsync import state

    return state(app)


def _db() -> Any:
    from example_app.models import db

    return db


def _seed_lived_in_audience(sandbox: Any) -> None:
    client = sandbox.client
    client.create_list("Lived-in audience", FIELDS, list_id=LIVED_IN)
    phone = {"PHONE": "+33 1 23 45 67 89"}
    client.seed_members(
        LIVED_IN,
        [
            {"email_address": ARCHIVED, "status": "archived", "merge_fields": phone},
            {
                "email_address": ADMIN_UNSUB,
                "status": "unsubscribed",
                "opt_out_source": "admin",
                "merge_fields": phone,
            },
            {
                "email_address": SELF_UNSUB,
                "status": "unsubscribed",
                "opt_out_source": "user",
                "merge_fields": phone,
            },
            {"email_address": CLEANED, "status": "cleaned", "merge_fields": phone},
            # Subscribed long ago: Mailchimp's answer (its opt-in time) says "existing".
            {
                "email_address": SUBSCRIBED,
                "status": "subscribed",
                "merge_fields": phone,
                "timestamp_opt": "2025-03-01T09:00:00+00:00",
                "last_changed": "2025-03-01T09:00:00+00:00",
            },
            {"email_address": FORGOTTEN, "status": "subscribed"},
        ],
    )
    client.forget(LIVED_IN, [FORGOTTEN])


def _shop_rows() -> list[dict[str, Any]]:
    everyone = [ARCHIVED, ADMIN_UNSUB, SELF_UNSUB, CLEANED, FORGOTTEN, SUBSCRIBED, *NEW]
    return [
        {
            "email": email,
            "first_name": f"First{i}",
            "last_name": "Shopper",
            "newsletter": True,
            "vip": i % 2 == 0,
        }
        for i, email in enumerate(everyone)
    ]


def test_export_into_a_lived_in_audience_gives_mailchimps_outcomes(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    from flask_mcsync.follow import summary_line
    from flask_mcsync.models import Batch, Outcome, Run
    from flask_mcsync.preflight import preview
    from flask_mcsync.runs import ExportError, start_export

    db = _db()
    ext = _ext(app)
    _seed_lived_in_audience(sandbox)
    rows = _shop_rows()
    insert_customers(db, rows)
    choose_audience(app, LIVED_IN)

    # Pre-flight: the audience requires PHONE, the shop does not fill it.
    check = preview(ext, LIVED_IN)
    assert check["counts"]["to_export"] == len(rows)
    merge = check["merge_fields"]
    assert merge["unmapped"] == [{"tag": "PHONE", "name": "Phone"}]
    assert merge["refused"] == len(rows) and not merge["ok"]
    assert "PHONE (Phone)" in merge["message"] and f"up to {len(rows)}" in merge["message"]
    # The CLI says the same (same function) and refuses to export without the choice.
    cli = run_cli(app, "preview", "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["merge_fields"]["unmapped"] == merge["unmapped"]
    refused = run_cli(app, "export")
    assert refused.returncode == 1 and "PHONE (Phone)" in refused.stderr
    assert "--skip-merge-validation" in refused.stderr
    with pytest.raises(ExportError, match="skip_merge_validation"):
        start_export(ext, "test")
    db.session.rollback()
    assert db.session.execute(sa.select(sa.func.count()).select_from(Run)).scalar_one() == 0

    # Passing faults on the way: one "signed up to a lot of lists" 400 on an operation
    # and one empty-body 403 on the batch submission. Both pass: retried, not recorded.
    sandbox.client.set_faults(
        next=[
            {"status": "signup_limit", "count": 1},
            {"status": "empty_403", "method": "POST", "count": 1},
        ]
    )
    workers.start(1)
    started = start_export(ext, "test", batch_size=5, skip_merge_validation=True)
    run_id = int(started.run.id)
    data = wait_run_ended(db.session, run_id, timeout=90)
    assert data["status"] == "finished", data["message"]
    assert data["skip_merge_validation"] is True

    outcomes = {
        o.email: o
        for o in db.session.execute(sa.select(Outcome).where(Outcome.run_id == run_id)).scalars()
    }
    assert set(outcomes) == {r["email"] for r in rows}
    by_result = {email: o.outcome for email, o in outcomes.items()}
    assert by_result == {
        ARCHIVED: "archived",
        ADMIN_UNSUB: "updated",
        SELF_UNSUB: "updated",
        CLEANED: "updated",
        SUBSCRIBED: "updated",
        FORGOTTEN: "error",
        **{email: "created" for email in NEW},
    }
    assert outcomes[FORGOTTEN].error_title == "Forgotten Email Not Subscribed"
    assert outcomes[FORGOTTEN].permanent
    assert outcomes[ARCHIVED].error_title == "Archived in Mailchimp: left archived"
    assert (data["created"], data["updated"], data["archived"], data["errors"]) == (6, 4, 1, 1)
    assert "1 archived in Mailchimp: left archived." in summary_line(data)  # export --wait
    # The passing 400 made a retry batch; nothing was recorded for it.
    db.session.commit()
    retried = db.session.execute(
        sa.select(sa.func.count()).select_from(Batch).where(Batch.retry_of.is_not(None))
    ).scalar_one()
    assert retried >= 1

    # Mailchimp: nobody resubscribed, nobody un-archived, no confirmation e-mail.
    client = sandbox.client
    statuses = {email: (client.member(LIVED_IN, email) or {}).get("status") for email in outcomes}
    assert statuses == {
        ARCHIVED: "archived",
        ADMIN_UNSUB: "unsubscribed",
        SELF_UNSUB: "unsubscribed",
        CLEANED: "cleaned",
        SUBSCRIBED: "subscribed",
        FORGOTTEN: None,
        **{email: "subscribed" for email in NEW},
    }
    assert client.confirmation_emails(LIVED_IN) == []
    # The boolean column arrived as text Mailchimp accepts, never as JSON true.
    vip = {r["email"]: r["vip"] for r in rows}
    for email in NEW:
        member = client.member(LIVED_IN, email)
        assert member is not None
        assert member["merge_fields"]["VIP"] == ("Yes" if vip[email] else "No")
        assert member["merge_fields"]["PHONE"] == ""

    # The CLI and the CSV count the archived contact apart.
    status = run_cli(app, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["totals"]["archived"] == 1 and report["totals"]["created"] == 6
    text = run_cli(app, "status")
    assert "1 archived in Mailchimp (left archived)" in text.stdout
    csv_out = run_cli(app, "errors", "--csv")
    assert ARCHIVED in csv_out.stdout and "Archived in Mailchimp: left archived" in csv_out.stdout
    assert FORGOTTEN in csv_out.stdout

    # A second export (same choice) still resubscribes and un-archives nobody.
    again = start_export(ext, "test", batch_size=50, skip_merge_validation=True)
    second = wait_run_ended(db.session, int(again.run.id), timeout=90)
    assert (second["created"], second["archived"], second["errors"]) == (0, 1, 1)
    after = {email: (client.member(LIVED_IN, email) or {}).get("status") for email in outcomes}
    assert after == statuses


def _first_export_done(app: Flask) -> None:
    from flask_mcsync import settings

    ext = _ext(app)
    settings.mark_first_export_done(ext.db.session, ext.config)
    ext.db.session.commit()


def _auto_runs(app: Flask, count: int) -> list[Any]:
    from flask_mcsync.models import Run

    session = _db().session

    def ended() -> list[Any] | None:
        session.commit()
        session.expire_all()
        found = list(
            session.execute(
                sa.select(Run)
                .where(Run.kind == "auto", Run.status.in_(("finished", "failed")))
                .order_by(Run.id)
            ).scalars()
        )
        return found if len(found) >= count else None

    runs: list[Any] = wait_for(ended, 60, f"{count} auto-sync run(s)")
    return runs


def test_opt_out_then_in_again_sends_mailchimps_confirmation_email(
    app: Flask, sandbox: Any, workers: Any, client: FlaskClient
) -> None:
    from flask_mcsync.models import Outcome

    list_id = "a1b2c3d4e5"
    choose_audience(app, list_id)
    _first_export_done(app)
    workers.start(1)
    email = "come.back@gmail.com"

    client.post("/signup", data={"email": email, "first_name": "Come", "newsletter": "y"})
    (signup,) = _auto_runs(app, 1)
    assert signup.sync_reason == "signup" and signup.created == 1
    assert sandbox.client.member(list_id, email)["status"] == "subscribed"

    client.post("/newsletter", data={"email": email, "newsletter": "0"})
    optout = _auto_runs(app, 2)[-1]
    assert optout.sync_reason == "optout"
    assert sandbox.client.member(list_id, email)["status"] == "unsubscribed"

    client.post("/newsletter", data={"email": email, "newsletter": "1"})
    optin = _auto_runs(app, 3)[-1]
    assert optin.sync_reason == "optin"
    assert (optin.confirmations, optin.created, optin.updated) == (1, 0, 0)
    member = sandbox.client.member(list_id, email)
    assert member["status"] == "pending"
    assert [e["email_address"] for e in sandbox.client.confirmation_emails(list_id)] == [email]
    outcome = (
        _db().session.execute(sa.select(Outcome).where(Outcome.run_id == optin.id)).scalar_one()
    )
    assert (outcome.outcome, outcome.mailchimp_status) == ("confirmation", "pending")

    # The dashboard names each sync and counts the confirmation e-mail.
    page = client.get(PREFIX + "/status").get_data(as_text=True)
    assert "Auto-sync · signup" in page
    assert "Auto-sync · opt-out" in page
    assert "Auto-sync · newsletter opt-in" in page
    assert 'data-total="confirmations">1<' in page
    run_page = client.get(f"{PREFIX}/status/runs/{optin.id}").get_data(as_text=True)
    assert "Confirmation e-mail sent" in run_page
    # The diagnostic says what happened and what Mailchimp holds now.
    diag = client.get(PREFIX + "/status/diagnostic", query_string={"email": email})
    html = diag.get_data(as_text=True)
    assert "Confirmation e-mail sent" in html and 'data-status="pending"' in html
    assert "Auto-sync · newsletter opt-in" in html and "Auto-sync · opt-out" in html
    cli = run_cli(app, "diagnose", email)
    assert "Auto-sync · newsletter opt-in: Confirmation e-mail sent" in cli.stdout


def test_fresh_opt_in_of_cleaned_or_forgotten_records_mailchimps_refusal(
    app: Flask, sandbox: Any, workers: Any, client: FlaskClient
) -> None:
    from flask_mcsync.models import Outcome

    list_id = "a1b2c3d4e5"
    bounced, deleted = "boun.ced@gmail.com", "dele.ted@gmail.com"
    sandbox.client.seed_members(
        list_id,
        [
            {"email_address": bounced, "status": "cleaned"},
            {"email_address": deleted, "status": "subscribed"},
        ],
    )
    sandbox.client.forget(list_id, [deleted])
    choose_audience(app, list_id)
    _first_export_done(app)
    workers.start(1)
    for email in (bounced, deleted):
        client.post("/signup", data={"email": email, "newsletter": "y"})
    runs = _auto_runs(app, 2)
    session = _db().session
    outcomes = {
        o.email: o
        for o in session.execute(
            sa.select(Outcome).where(Outcome.run_id.in_([r.id for r in runs]))
        ).scalars()
    }
    assert outcomes[bounced].outcome == "error"
    assert outcomes[bounced].error_title == "Member In Compliance State"
    assert outcomes[deleted].outcome == "error"
    assert outcomes[deleted].error_title == "Forgotten Email Not Subscribed"
    assert sandbox.client.member(list_id, bounced)["status"] == "cleaned"
    assert sandbox.client.member(list_id, deleted) is None
    assert sandbox.client.confirmation_emails(list_id) == []


def test_opt_out_and_confirmation_requests_pass_a_required_field_the_member_lacks(
    db_only_app: Flask, sandbox: Any
) -> None:
    """An audience that gained a required field refuses a plain PATCH of a member without
    it (Mailchimp validates the whole record): our opt-out and re-opt-in still pass."""
    from flask_mcsync.gateway import gateway_for

    _seed_lived_in_audience(sandbox)
    email = "no.phone@gmail.com"
    sandbox.client.seed_members(LIVED_IN, [{"email_address": email, "status": "subscribed"}])
    gateway = gateway_for(_ext(db_only_app))
    member = gateway.unsubscribe_member(LIVED_IN, email)
    assert member is not None and member["status"] == "unsubscribed"
    member = gateway.ask_confirmation(LIVED_IN, email)
    assert member is not None and member["status"] == "pending"
    # Without skip_merge_validation the same PATCH is refused: the test above means it.
    other = "no.phone.either@gmail.com"
    sandbox.client.seed_members(LIVED_IN, [{"email_address": other, "status": "subscribed"}])
    plain = requests.patch(
        f"{sandbox.api_url}lists/{LIVED_IN}/members/{other}",
        json={"status": "unsubscribed"},
        auth=("any", sandbox.api_key),
        timeout=10,
    )
    assert plain.status_code == 400 and "PHONE" in plain.text


def test_a_member_mailchimp_held_stays_updated_through_the_passing_faults(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    """The lived-in export's passing faults aimed at the subscriber Mailchimp already
    holds: the empty 403 on its batch's submissions (re-sent) and the "signed up to a lot
    of lists" 400 on its own write (a retry batch). Mailchimp answers with the member it
    held since 2025, so it is "updated" on every path, and its opt-in time is kept."""
    from flask_mcsync.addresses import subscriber_hash
    from flask_mcsync.models import Batch, Outcome
    from flask_mcsync.runs import start_export

    db = _db()
    ext = _ext(app)
    _seed_lived_in_audience(sandbox)
    insert_customers(db, _shop_rows())
    choose_audience(app, LIVED_IN)
    # Rules form a queue (only the head applies): first every batch's submission is
    # refused once or twice, then the 400 waits for the subscriber's own write.
    sandbox.client.set_faults(
        next=[
            {"status": "empty_403", "method": "POST", "count": 2},
            {"status": "signup_limit", "count": 1, "path_contains": subscriber_hash(SUBSCRIBED)},
        ]
    )
    workers.start(1)
    run_id = int(start_export(ext, "test", batch_size=5, skip_merge_validation=True).run.id)
    data = wait_run_ended(db.session, run_id, timeout=90)
    assert data["status"] == "finished", data["message"]
    assert sandbox.client.faults()["next"] == []  # both faults really happened

    outcome = db.session.execute(
        sa.select(Outcome).where(Outcome.run_id == run_id, Outcome.email == SUBSCRIBED)
    ).scalar_one()
    assert outcome.outcome == "updated"
    retry = db.session.execute(sa.select(Batch).where(Batch.retry_of.is_not(None))).scalar_one()
    assert [entry[0] for entry in retry.payload] == [SUBSCRIBED]
    member = sandbox.client.member(LIVED_IN, SUBSCRIBED)
    assert member is not None and member["status"] == "subscribed"
    assert member["timestamp_opt"] == "2025-03-01T09:00:00+00:00"


def test_a_member_who_opted_in_just_before_the_export_is_updated(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    """Mailchimp held the subscriber, opted in a second before the export: within the
    clock skew the export allows, so its opt-in time alone looks new. Our write changed it
    after that opt-in (last_changed moved, timestamp_opt did not): it existed, "updated"."""
    from datetime import datetime, timedelta, timezone

    from flask_mcsync.models import Outcome
    from flask_mcsync.runs import start_export

    workers.start(1)  # ready before the seed, so the export follows it closely
    db = _db()
    insert_customers(db, _shop_rows()[5:6])  # SUBSCRIBED
    choose_audience(app, LIVED_IN)
    sandbox.client.create_list("Lived-in audience", FIELDS, list_id=LIVED_IN)
    a_second_ago = (datetime.now(timezone.utc) - timedelta(seconds=1)).replace(microsecond=0)
    sandbox.client.seed_members(
        LIVED_IN,
        [
            {
                "email_address": SUBSCRIBED,
                "status": "subscribed",
                "merge_fields": {"PHONE": "1"},
                "timestamp_opt": a_second_ago.isoformat(),
                "last_changed": a_second_ago.isoformat(),
            }
        ],
    )
    run_id = int(start_export(_ext(app), "test", skip_merge_validation=True).run.id)
    data = wait_run_ended(db.session, run_id, timeout=90)
    assert data["status"] == "finished", data["message"]
    outcome = db.session.execute(sa.select(Outcome).where(Outcome.run_id == run_id)).scalar_one()
    assert (outcome.email, outcome.outcome) == (SUBSCRIBED, "updated")


def test_an_export_batch_looks_up_other_syncs_only_when_another_run_may_have_written(
    app: Flask,
) -> None:
    """A batch counts a member Mailchimp says is new as "created" unless another sync
    of the audience recorded it since the batch was sent. With no other run of the
    audience open or ended since then (a first export: auto-sync waits for its end),
    there is nothing to look up; any such run, and the lookup is made as before."""
    from datetime import timedelta

    from flask_mcsync.models import Run
    from flask_mcsync.outcomes import OTHERS_MARGIN, others_wrote_since
    from flask_mcsync.times import utcnow

    session = _ext(app).session
    since = utcnow() - timedelta(seconds=5)

    def run(list_id: str, kind: str, finished: Any) -> int:
        row = Run(kind=kind, list_id=list_id, status="finished", finished_at=finished)
        session.add(row)
        session.commit()
        return int(row.id)

    ours = run("aud1", "export", None)  # our own run, still going
    assert not others_wrote_since(session, "aud1", ours, since)
    run("aud1", "auto", since - OTHERS_MARGIN - timedelta(seconds=1))  # long before
    assert not others_wrote_since(session, "aud1", ours, since)
    run("aud2", "auto", None)  # another audience's open run
    assert not others_wrote_since(session, "aud1", ours, since)
    # A single sync that ended just before ``since`` may have recorded just after it.
    just_before = run("aud1", "auto", since - timedelta(seconds=1))
    assert others_wrote_since(session, "aud1", ours, since)
    session.delete(session.get(Run, just_before))
    session.commit()
    run("aud1", "resync", utcnow())  # ended since then
    assert others_wrote_since(session, "aud1", ours, since)
    session.query(Run).filter(Run.kind == "resync").delete()
    session.commit()
    run("aud1", "mailchimp", None)  # a webhook's run, still open
    assert others_wrote_since(session, "aud1", ours, since)


def test_a_member_another_sync_created_since_the_send_stays_updated_for_the_export(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lookup still decides when another run of the audience wrote: a signup synced
    (and so created) while the batch waited at Mailchimp is "updated" for the export."""
    from datetime import timedelta

    from flask_mcsync import outcomes
    from flask_mcsync.addresses import subscriber_hash
    from flask_mcsync.models import Run
    from flask_mcsync.outcomes import AddressOutcome, Result, created_or_updated, record
    from flask_mcsync.times import utcnow

    lookups: list[int] = []
    real_lookup = outcomes.synced_since

    def counted(*args: Any, **kwargs: Any) -> Any:
        lookups.append(1)
        return real_lookup(*args, **kwargs)

    monkeypatch.setattr(outcomes, "synced_since", counted)

    session = _ext(app).session
    since = utcnow() - timedelta(seconds=5)
    stamp = (utcnow() + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    member = {"status": "subscribed", "timestamp_opt": stamp, "last_changed": stamp}
    signups = ["lea@gmail.com", "noe@gmail.com"]
    export = Run(kind="export", list_id="aud1", status="running")
    session.add(export)
    session.commit()

    def judged() -> list[Result]:
        members = [(email, member) for email in signups]
        hashes = [subscriber_hash(email) for email in signups]
        return created_or_updated(session, "aud1", "subscribed", since, members, hashes, export.id)

    assert judged() == [Result.CREATED, Result.CREATED]
    assert lookups == []  # nothing else ran: nothing was looked up
    auto = Run(kind="auto", list_id="aud1", status="finished", finished_at=utcnow())
    session.add(auto)
    session.flush()
    record(session, auto.id, [AddressOutcome(signups[0], Result.CREATED)], bump=False)
    session.commit()
    assert judged() == [Result.UPDATED, Result.CREATED]
    assert lookups == [1]
