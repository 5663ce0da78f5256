"""Where the branches merged for issues 8, 9 and 11 meet: re-opt-in against the outbox's
coalescing and the first-export rule, and the webhook against a hung Redis. Real
workers, the sandbox, SQLite and PostgreSQL, a redis-server of the test's own.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask
from helpers_export import LIST_ID, choose_audience, insert_customers, wait_run_ended
from helpers_twoway import activate, db, ext
from test_autosync import OwnRedis, fresh_breaker, own_app, own_redis  # noqa: F401
from test_webhook_endpoint import payload

from flask_mcsync.addresses import subscriber_hash


def test_a_profile_change_after_an_opt_in_keeps_the_opt_in() -> None:
    """Coalesced rows: an opt-in then a name change must still ask for confirmation."""
    from flask_mcsync.outbox import wanted

    assert wanted(["optin", "change"]) == "optin"
    assert wanted(["signup", "change"]) == "optin"
    assert wanted(["optout", "optin", "change"]) == "optin"
    assert wanted(["optin", "optout", "change"]) == "change"
    assert wanted(["signup", "optout"]) == "optout"
    assert wanted(["signup"]) == "signup"
    assert wanted(["change", "change"]) == "change"


def test_an_opt_in_after_a_change_in_one_transaction_is_an_opt_in(app: Flask) -> None:
    from flask_mcsync.models import OutboxItem
    from flask_mcsync.signals import subscriber_changed

    activate(app)
    email = "same.transaction@gmail.com"
    subscriber_changed.send(app, email=email)
    subscriber_changed.send(app, email=email, newsletter=True)
    db().session.commit()
    actions = db().session.execute(sa.select(OutboxItem.action)).scalars().all()
    assert actions == ["optin"]


def test_an_export_does_not_cover_a_signup_that_needs_a_confirmation_email(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    """A customer Mailchimp holds unsubscribed (by an admin) signs up again; an export
    reads them after the signup (it never asks for ``pending``). Their signup row must
    still be sent, so Mailchimp e-mails the confirmation: not closed as "covered"."""
    from flask_mcsync import settings
    from flask_mcsync.models import OutboxItem, Run
    from flask_mcsync.outbox import send_outbox_item
    from flask_mcsync.runs import start_export

    email = "back.again@gmail.com"
    choose_audience(app)
    mc = ext(app)
    settings.mark_first_export_done(mc.session, mc.config)
    mc.session.commit()
    sandbox.client.seed_members(
        LIST_ID, [{"email_address": email, "status": "unsubscribed", "opt_out_source": "admin"}]
    )
    insert_customers(
        db(), [{"email": email, "first_name": "Back", "last_name": "Again", "newsletter": True}]
    )
    # The signup's row, not yet due (its job is late), written before the export runs.
    session = mc.session
    item = OutboxItem(
        action="signup",
        email=email,
        email_hash=subscriber_hash(email),
        created_at=mc_now() - timedelta(seconds=5),
        next_attempt_at=mc_now() + timedelta(hours=1),
    )
    session.add(item)
    session.commit()
    item_id = item.id

    workers.start(1)
    run_id = int(start_export(mc, "test").run.id)
    progress = wait_run_ended(session, run_id)
    assert progress["status"] == "finished", progress
    assert sandbox.client.member(LIST_ID, email)["status"] == "unsubscribed"

    session.execute(
        sa.update(OutboxItem).where(OutboxItem.id == item_id).values(next_attempt_at=mc_now())
    )
    session.commit()
    assert send_outbox_item(mc, item_id) == "sent"
    assert sandbox.client.member(LIST_ID, email)["status"] == "pending"
    run = session.execute(sa.select(Run).where(Run.kind == "auto")).scalar_one()
    assert (run.confirmations, run.sync_reason) == (1, "signup")


def mc_now() -> Any:
    from flask_mcsync.times import utcnow

    return utcnow()


def test_a_webhook_never_waits_on_a_hung_redis(
    own_app: Flask,  # noqa: F811
    own_redis: OwnRedis,  # noqa: F811
    fresh_breaker: Any,  # noqa: F811
) -> None:
    """Mailchimp's callback answers at once while Redis accepts and never replies; the
    event waits in the database for the sweep."""
    from flask_mcsync.models import WebhookEvent

    secret = activate(own_app)
    own_redis.hang()
    try:
        client = own_app.test_client()
        started = time.monotonic()
        for i in range(3):
            response = client.post(
                f"/mcsync/webhook/{secret}",
                data=payload("unsubscribe", f"hung.{i}@gmail.com", f"2026-01-0{i + 1} 10:00:00"),
            )
            assert response.status_code == 200, response.get_data(as_text=True)
        took = time.monotonic() - started
    finally:
        own_redis.resume()
    assert took < 2, f"three webhook callbacks took {took:.1f} s with a hung Redis"
    statuses = db().session.execute(sa.select(WebhookEvent.status)).scalars().all()
    assert statuses == ["received"] * 3


def test_a_late_unsubscribe_from_mailchimp_does_not_undo_a_newer_opt_in(app: Flask) -> None:
    """The customer unsubscribed from an e-mail, then opted in again in the shop; the
    unsubscribe's webhook arrives after that (Mailchimp retries late ones). The shop's
    newer choice stands: its flag stays on, so auto-sync asks for the confirmation."""
    from example_app.models import Customer
    from flask_mcsync.signals import subscriber_changed
    from flask_mcsync.webhook_events import apply_due

    secret = activate(app)
    email = "changed.mind@gmail.com"
    session = db().session
    session.add(Customer(email=email, first_name="Changed", last_name="Mind", newsletter=True))
    subscriber_changed.send(app, email=email, newsletter=True)
    session.commit()
    fired = (mc_now() - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    response = app.test_client().post(
        f"/mcsync/webhook/{secret}", data=payload("unsubscribe", email, fired)
    )
    assert response.status_code == 200
    assert apply_due(ext(app)) == {"stale": 1}
    session.expire_all()
    assert session.execute(sa.select(Customer.newsletter)).scalars().all() == [True]


def test_a_batch_that_gives_up_leaves_an_archived_contact_archived_not_failed(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    """batchfix's give-up looks each address up; truth's archived outcome must win there
    too. The batch never reached Mailchimp, so the archived contact does not hold the
    shop's merge fields; a retry would leave it archived all the same: never "Gave up"."""
    from flask_mcsync.models import Outcome
    from flask_mcsync.runs import start_export

    email = "kept.archived@gmail.com"
    choose_audience(app)
    insert_customers(
        db(),
        [
            {"email": email, "first_name": "Kept", "last_name": "Archived", "newsletter": True},
            {
                "email": "fresh.one@gmail.com",
                "first_name": "Fresh",
                "last_name": "One",
                "newsletter": True,
            },
        ],
    )
    sandbox.client.seed_members(LIST_ID, [{"email_address": email, "status": "archived"}])
    submit = {"method": "POST", "path_contains": "/batches"}
    sandbox.client.set_faults(retry_after=0, next=[{"status": 503, **submit, "count": 2}])
    workers.env["MCSYNC_MAX_ATTEMPTS"] = "2"
    workers.start(1)
    run_id = int(start_export(ext(app), "test").run.id)
    data = wait_run_ended(db().session, run_id, timeout=40)

    outcomes = dict(
        db()
        .session.execute(sa.select(Outcome.email, Outcome.outcome).where(Outcome.run_id == run_id))
        .all()
    )
    assert outcomes == {email: "archived", "fresh.one@gmail.com": "error"}
    assert (data["archived"], data["errors"], data["done"]) == (1, 1, 2)


def test_a_first_export_that_ends_while_a_row_is_decided_does_not_lose_it(app: Flask) -> None:
    """PostgreSQL race seen in test_first_export: the row's worker read the settings
    (no first export yet), then the export ended (audience freed, auto-sync started),
    then it looked for a running export and found none: the row was "ignored", and a
    signup the export never read would be lost. The decision must read the flag again."""
    from dataclasses import replace

    from flask_mcsync import first_export, settings
    from flask_mcsync.models import OutboxItem

    mc = ext(app)
    choose_audience(app)
    before = settings.load(mc.session, mc.config)  # read before the export ended
    assert not before.first_export_done
    settings.mark_first_export_done(mc.session, mc.config)
    mc.session.commit()
    email = "raced.signup@gmail.com"
    item = OutboxItem(action="signup", email=email, email_hash=subscriber_hash(email))
    mc.session.add(item)
    mc.session.commit()
    decision = first_export.decide(mc.session, replace(before), [item])
    assert decision.action == "send", decision
