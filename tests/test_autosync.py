"""Automatic sync, end to end: the example shop's signup and newsletter pages send the
signals, real ``flask mcsync worker`` processes send the outbox rows through real Redis
to the Mailchimp sandbox, on SQLite and on PostgreSQL (through the ``database_url``
fixture).

What must hold is checked where it shows: the audience in the sandbox, the request
counts the sandbox kept, the ``mcsync_outbox`` rows and the outcome history.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, current_app
from mailchimp3 import MailChimp
from redis import Redis
from rq import Worker as RqWorker
from support import (
    SLOW_ANSWER,
    OwnRedis,
    Workers,
    app_config,
    redis_server_binary,
    wait_for,
    wait_while_progressing,
    worker_env,
)

pytestmark = pytest.mark.slow

LIST_ID = "a1b2c3d4e5"  # the sandbox's default audience


# --- helpers ---------------------------------------------------------------------------


def _db() -> Any:
    from example_app.models import db

    return db


def _ext(app: Flask | None = None) -> Any:
    from flask_mcsync import state

    return state(app)


def _activate(app: Flask, first_export: bool = True) -> None:
    """Choose the sandbox's audience and (by default) record a completed first export."""
    from flask_mcsync import settings

    ext = _ext(app)
    settings.update(ext.session, ext.config, list_id=LIST_ID)
    if first_export:
        settings.mark_first_export_done(ext.session, ext.config)
    ext.session.commit()


def _signup(
    client: Any, email: str, first: str = "", last: str = "", newsletter: bool = True
) -> Any:
    data = {"email": email, "first_name": first, "last_name": last}
    if newsletter:
        data["newsletter"] = "1"
    response = client.post("/signup", data=data)
    assert response.status_code == 302, (email, response.status_code)
    return response


def _read(query: Any) -> list[Any]:
    """Run a query in a short transaction of its own (SQLite: a held read lock would
    block the workers' writes)."""
    session = _db().session
    session.commit()
    session.expire_all()
    try:
        return list(session.execute(query).all())
    finally:
        session.commit()


def _outbox(email: str | None = None) -> list[Any]:
    from flask_mcsync.addresses import subscriber_hash
    from flask_mcsync.models import OutboxItem

    query = sa.select(
        OutboxItem.id,
        OutboxItem.email,
        OutboxItem.status,
        OutboxItem.attempts,
        OutboxItem.last_error,
        OutboxItem.run_id,
    ).order_by(OutboxItem.id)
    if email is not None:
        query = query.where(OutboxItem.email_hash == subscriber_hash(email))
    return _read(query)


def _outcomes(email: str) -> list[Any]:
    from flask_mcsync.addresses import subscriber_hash
    from flask_mcsync.models import Outcome, Run

    return _read(
        sa.select(
            Outcome.outcome,
            Outcome.error_title,
            Outcome.error_detail,
            Outcome.mailchimp_status,
            Run.kind,
            Run.status,
            Run.id.label("run_id"),
        )
        .join(Run, Run.id == Outcome.run_id)
        .where(Outcome.email_hash == subscriber_hash(email))
        .order_by(Outcome.id)
    )


def _settled(email: str) -> list[Any] | None:
    """The address's outbox rows once none of them waits any more."""
    rows = _outbox(email)
    if rows and all(r.status not in ("pending", "sending") for r in rows):
        return rows
    return None


def _member(sandbox: Any, email: str) -> dict[str, Any] | None:
    return sandbox.client.member(LIST_ID, email)  # type: ignore[no-any-return]


def _puts(sandbox: Any) -> int:
    return int(sandbox.client.stats()["requests_by_method"].get("PUT", 0))


def _in_flight(sandbox: Any) -> bool:
    stats = sandbox.client.stats()
    return int(stats["requests_total"]) > sum(stats["responses_by_status"].values())


def _queued_jobs(app: Flask) -> int:
    from flask_mcsync.enqueue import make_queue

    return len(make_queue(_ext(app)))


def _ready_rows(app: Flask) -> int:
    """Outbox rows handed to the workers (the drain job's sorted set)."""
    from flask_mcsync.outbox import READY_KEY

    return int(_ext(app).redis.zcard(READY_KEY))


# --- 1. a signup reaches the audience ----------------------------------------------------


def test_signup_puts_the_subscriber_in_the_audience(
    app: Flask, sandbox: Any, workers: Workers
) -> None:
    _activate(app)
    workers.start(1)
    email = "Marie.Curie@laposte.net"

    _signup(app.test_client(), email, "Marie", "Curie")

    member = wait_for(lambda: _member(sandbox, email), 30, "the member in the sandbox")
    assert member["status"] == "subscribed"
    assert member["merge_fields"]["FNAME"] == "Marie"
    assert member["merge_fields"]["LNAME"] == "Curie"
    rows = wait_for(lambda: _settled(email), 30, "the outbox row to be handled")
    assert [r.status for r in rows] == ["sent"]
    assert rows[0].attempts == 1
    outcomes = _outcomes(email)
    assert [(o.outcome, o.kind, o.status) for o in outcomes] == [("created", "auto", "finished")]
    assert outcomes[0].mailchimp_status == "subscribed"
    assert rows[0].run_id == outcomes[0].run_id
    assert _puts(sandbox) == 1


def test_a_drain_reads_the_field_types_once_a_minute_and_anew_before_a_refusal(
    app: Flask, sandbox: Any, workers: Workers
) -> None:
    """Auto-sync asks Mailchimp for the audience's merge field types once a minute per
    worker, not before every PUT; a PUT refused with types kept from earlier is sent once
    more with fresh ones, so that no refusal is the cache's doing."""

    def merge_field_reads() -> int:
        return int(sandbox.client.stats()["requests_by_kind"].get("merge-fields", 0))

    _activate(app)
    workers.start(1)
    client = app.test_client(use_cookies=False)
    first = [f"reader.{i}@laposte.net" for i in range(3)]
    for email in first:
        _signup(client, email, "Reader")
    for email in first:
        wait_for(lambda e=email: _member(sandbox, e), 30, f"{email} in the audience")
    assert _puts(sandbox) == 3
    assert merge_field_reads() == 1

    # The owner makes a new field required in Mailchimp (the shop has no phone numbers):
    # the PUT with the kept types is refused, the types are read anew and the PUT sent
    # again, refused again: Mailchimp's refusal, recorded as such.
    owner = MailChimp(mc_api=sandbox.api_key)
    owner.base_url = sandbox.api_url
    owner.lists.merge_fields.create(
        LIST_ID, {"tag": "PHONE", "name": "Phone", "type": "phone", "required": True}
    )
    reads_before = merge_field_reads()
    _signup(client, "refused@laposte.net", "Refused")
    wait_for(lambda: _waiting(app) == 0, 30, "the refused row to be handled")
    assert [o.outcome for o in _outcomes("refused@laposte.net")] == ["error"]
    assert "PHONE" in (_outcomes("refused@laposte.net")[0].error_detail or "")
    assert merge_field_reads() == reads_before + 1
    assert _puts(sandbox) == 3 + 2


# --- 2. what must not be sent --------------------------------------------------------------


def test_rolled_back_signups_send_nothing(app: Flask, sandbox: Any, workers: Workers) -> None:
    from example_app.models import Customer
    from flask_mcsync.signals import subscriber_signed_up

    db = _db()
    _activate(app)

    # A request that fails after the signal (and after a flush, so the row had an id).
    @app.post("/signup-then-fail")
    def signup_then_fail() -> str:
        customer = Customer(email=str(current_app.config["FAIL_EMAIL"]), newsletter=True)
        db.session.add(customer)
        subscriber_signed_up.send(current_app._get_current_object(), subscriber=customer)
        db.session.flush()
        raise RuntimeError("payment declined")

    app.config["FAIL_EMAIL"] = "failed.request@orange.fr"
    with pytest.raises(RuntimeError, match="payment declined"):
        app.test_client().post("/signup-then-fail")

    # A transaction rolled back by the code itself, flushed or not.
    for email, flush in (("rolled.back@free.fr", True), ("never.flushed@free.fr", False)):
        customer = Customer(email=email, newsletter=True)
        db.session.add(customer)
        subscriber_signed_up.send(app, subscriber=customer)
        if flush:
            db.session.flush()
        db.session.rollback()

    assert _outbox() == []
    assert _queued_jobs(app) == 0
    assert _ready_rows(app) == 0

    # A signup that does commit, sent after the ones above would have been.
    workers.start(1)
    kept = "kept.signup@free.fr"
    _signup(app.test_client(), kept, "Kept")
    wait_for(lambda: _settled(kept), 30, "the committed signup to be sent")
    time.sleep(2.5)  # a sweep interval: nothing left behind for the sweep either
    members = {m["email_address"] for m in sandbox.client.members(LIST_ID)["members"]}
    assert members == {kept}
    assert [(r.email, r.status) for r in _outbox()] == [(kept, "sent")]
    assert _puts(sandbox) == 1


def test_savepoint_rolled_back_then_signed_up_again_is_sent(
    app: Flask, sandbox: Any, workers: Workers
) -> None:
    """A host retrying a signup inside one transaction (savepoint rolled back, e.g. after
    an IntegrityError) must still get the retried signup synced, once."""
    from example_app.models import Customer
    from flask_mcsync.signals import subscriber_signed_up

    db = _db()
    _activate(app)
    workers.start(1)
    email = "retry.signup@gmail.com"

    savepoint = db.session.begin_nested()
    first = Customer(email=email, first_name="First", newsletter=True)
    db.session.add(first)
    subscriber_signed_up.send(app, subscriber=first)
    savepoint.rollback()  # the first try failed before it was flushed

    second = Customer(email=email, first_name="Second", newsletter=True)
    db.session.add(second)
    subscriber_signed_up.send(app, subscriber=second)
    db.session.commit()

    rows = _outbox(email)
    assert len(rows) == 1, f"the committed signup left {len(rows)} outbox rows"
    member = wait_for(lambda: _member(sandbox, email), 30, "the retried signup in the audience")
    assert member["merge_fields"]["FNAME"] == "Second"


def test_excluded_and_non_subscribers_are_skipped_never_sent(
    app: Flask, sandbox: Any, workers: Workers
) -> None:
    from flask_mcsync.exclusions import add_rule

    db = _db()
    _activate(app)
    add_rule(db.session, "domain", "competitor.fr")
    add_rule(db.session, "address", "Blocked.Person@gmail.com")
    workers.start(1)
    client = app.test_client()

    _signup(client, "spy@shop.competitor.fr", "Spy")
    _signup(client, "blocked.person@gmail.com", "Blocked")
    _signup(client, "no.newsletter@gmail.com", "Quiet", newsletter=False)

    expected = {
        "spy@shop.competitor.fr": "whole domain 'competitor.fr'",
        "blocked.person@gmail.com": "exact address 'blocked.person@gmail.com'",
        "no.newsletter@gmail.com": "not a newsletter subscriber",
    }
    for email, detail in expected.items():
        rows = wait_for(lambda e=email: _settled(e), 30, f"{email} to be handled")
        assert [r.status for r in rows] == ["skipped"], email
        outcomes = _outcomes(email)
        assert [(o.outcome, o.kind) for o in outcomes] == [("skipped", "auto")], email
        assert detail.lower() in (outcomes[0].error_detail or "").lower(), outcomes[0]
        assert _member(sandbox, email) is None
    assert _puts(sandbox) == 0
    assert sandbox.client.members(LIST_ID)["members"] == []


def test_nothing_is_sent_before_the_first_export(
    app: Flask, sandbox: Any, workers: Workers
) -> None:
    _activate(app, first_export=False)
    workers.start(1)
    email = "early.bird@gmail.com"

    _signup(app.test_client(), email, "Early")

    rows = wait_for(lambda: _settled(email), 30, "the outbox row to be handled")
    assert [r.status for r in rows] == ["ignored"]
    assert "first export" in (rows[0].last_error or "")
    assert _outcomes(email) == []
    assert _member(sandbox, email) is None
    assert _puts(sandbox) == 0


# --- 3. opt-out, and nobody is resubscribed -------------------------------------------------


def test_opt_out_unsubscribes_and_a_returning_unsubscriber_is_asked_to_confirm(
    app: Flask, sandbox: Any, workers: Workers
) -> None:
    _activate(app)
    returning = "Former.Reader@wanadoo.fr"
    sandbox.client.seed_members(
        LIST_ID,
        [
            {
                "email_address": returning.lower(),
                "status": "unsubscribed",
                "merge_fields": {"FNAME": "Old", "LNAME": "Name"},
            }
        ],
    )
    workers.start(1)
    client = app.test_client()
    email = "Opting.Out@gmail.com"

    _signup(client, email, "Opting", "Out")
    wait_for(
        lambda: (_member(sandbox, email) or {}).get("status") == "subscribed",
        30,
        "the subscriber in the audience",
    )
    response = client.post("/newsletter", data={"email": email.lower(), "newsletter": "0"})
    assert response.status_code == 302
    wait_for(
        lambda: (_member(sandbox, email) or {}).get("status") == "unsubscribed",
        30,
        "the opt-out to reach the audience",
    )
    # The sandbox shows the change a moment before the worker records it.
    wait_for(lambda: len(_outcomes(email)) == 2, 30, "the opt-out's outcome")
    assert [o.outcome for o in _outcomes(email)] == ["created", "unsubscribed"]

    # A fresh signup of someone Mailchimp holds unsubscribed: never a silent
    # resubscription; Mailchimp is asked to e-mail a confirmation (pending).
    _signup(client, returning, "Former", "Reader")
    rows = wait_for(lambda: _settled(returning), 30, "the returning signup to be handled")
    assert [r.status for r in rows] == ["sent"]
    member = _member(sandbox, returning)
    assert member is not None and member["status"] == "pending"
    assert member["merge_fields"]["FNAME"] == "Former"
    outcomes = _outcomes(returning)
    assert [(o.outcome, o.mailchimp_status) for o in outcomes] == [("confirmation", "pending")]
    sent = [e["email_address"] for e in sandbox.client.confirmation_emails(LIST_ID)]
    assert sent == [returning.lower()] or sent == [returning]

    # Opting in again while the confirmation is pending asks nothing more of Mailchimp.
    response = client.post("/newsletter", data={"email": returning, "newsletter": "1"})
    assert response.status_code == 302
    wait_for(lambda: len(_outcomes(returning)) == 2, 30, "the opt-in to be handled")
    member = _member(sandbox, returning)
    assert member is not None and member["status"] == "pending"
    assert len(sandbox.client.confirmation_emails(LIST_ID)) == 1


# --- 4. Redis down ----------------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("redis-server is not installed: this test stops and restarts its own")
    server = OwnRedis(binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_app(database_url: str, own_redis: OwnRedis, sandbox: Any) -> Iterator[Flask]:
    from example_app import create_app

    application = create_app(app_config(database_url, own_redis.url, sandbox))
    with application.app_context():
        yield application
        _db().session.remove()
        _db().engine.dispose()


@pytest.fixture
def own_workers(own_app: Flask, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(worker_env(own_app), tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def fresh_breaker(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The hand-off's Redis breaker is per app; start this test with none tripped."""
    from flask_mcsync import handoff

    monkeypatch.setattr(handoff, "_breakers", handoff.weakref.WeakKeyDictionary())
    return handoff


def _created_per_address() -> dict[str, int]:
    from flask_mcsync.models import Outcome

    rows = _read(
        sa.select(sa.func.lower(Outcome.email), sa.func.count())
        .where(Outcome.outcome == "created")
        .group_by(sa.func.lower(Outcome.email))
    )
    return {email: count for email, count in rows}


def _not_created(email: str, sandbox: Any) -> dict[str, Any]:
    """What a failed "created exactly once" check needs to be understood."""
    member = _member(sandbox, email) or {}
    return {
        "email": email,
        "outbox": _outbox(email),
        "outcomes": _outcomes(email),
        "member": {
            k: member.get(k)
            for k in ("status", "timestamp_opt", "last_changed", "timestamp_signup")
        },
    }


def _status_counts() -> dict[str, int]:
    """Outbox rows by status and attempts."""
    from flask_mcsync.models import OutboxItem

    rows = _read(
        sa.select(OutboxItem.status, OutboxItem.attempts, sa.func.count()).group_by(
            OutboxItem.status, OutboxItem.attempts
        )
    )
    return {f"{status}/{attempts}": count for status, attempts, count in rows}


def _waiting(app: Flask) -> int:
    from flask_mcsync.outbox import waiting_count

    session = _db().session
    session.commit()
    try:
        return waiting_count(session)
    finally:
        session.commit()


def test_signups_wait_while_redis_is_down_and_flush_sends_them(
    own_app: Flask, own_redis: OwnRedis, sandbox: Any, fresh_breaker: Any
) -> None:
    app = own_app
    _activate(app)
    client = app.test_client()

    own_redis.stop()
    down = [f"redis.down.{i:02d}@gmail.com" for i in range(20)]
    started = time.monotonic()
    for i, email in enumerate(down):
        _signup(client, email, "Down", str(i))  # answers 302: the signup succeeded
    assert time.monotonic() - started < 10
    rows = _outbox()
    assert len(rows) == len(down)
    assert {(r.status, r.attempts) for r in rows} == {("pending", 0)}
    assert _member(sandbox, down[0]) is None

    # Redis is back: flush sends them, right here, and says how many.
    own_redis.start()
    result = app.test_cli_runner().invoke(args=["mcsync", "flush"])
    assert result.exit_code == 0, result.output
    assert f"Sent {len(down)} waiting rows" in result.output, result.output
    assert "0 still waiting" in result.output, result.output
    assert {r.status for r in _outbox()} == {"sent"}
    assert sandbox.client.members(LIST_ID)["counts"]["subscribed"] == len(down)
    assert _puts(sandbox) == len(down)
    assert set(_created_per_address().values()) == {1}


def test_a_hung_redis_costs_signups_nothing_and_their_rows_are_sent(
    own_app: Flask, own_redis: OwnRedis, own_workers: Workers, sandbox: Any, fresh_breaker: Any
) -> None:
    """Redis accepts connections and never answers (SIGSTOP): every signup still answers
    at once; ``flush`` sends the waiting rows without Redis; once Redis answers again
    (SIGCONT) the worker sends the rest. Real figures are in benchmarks/bench_signup.py;
    the bound here is generous (the socket timeout is 10 s)."""
    app = own_app
    _activate(app)
    [worker] = own_workers.start(1)
    client = app.test_client(use_cookies=False)
    _signup(client, "before.the.hang@gmail.com")
    wait_for(lambda: _member(sandbox, "before.the.hang@gmail.com"), 30, "the first signup")
    # Its row closed too: a worker slow to close it (a loaded machine) would otherwise
    # hang on Redis's slot release below, and flush would find the row's lease run out.
    wait_for(lambda: _settled("before.the.hang@gmail.com"), 30, "the first signup's row")

    own_redis.hang()
    seconds: list[float] = []

    def signups(emails: list[str]) -> None:
        for i, email in enumerate(emails):
            started = time.monotonic()
            _signup(client, email, "Hung", str(i))
            seconds.append(time.monotonic() - started)

    first = [f"redis.hung.{i:02d}@gmail.com" for i in range(10)]
    signups(first)
    assert max(seconds) < 2, f"signup times with a hung Redis: {seconds}"
    assert {(r.status, r.attempts) for r in _outbox() if r.email in first} == {("pending", 0)}

    # flush needs Redis only for the connection slots: it says so and sends the rows.
    started = time.monotonic()
    result = app.test_cli_runner().invoke(args=["mcsync", "flush"])
    flushed_in = time.monotonic() - started
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "Redis did not answer" in result.output, result.output
    assert f"Sent {len(first)} waiting rows" in result.output, result.output
    assert flushed_in < 30, f"flush took {flushed_in:.1f} s with a hung Redis"
    for email in first:
        assert _member(sandbox, email) is not None, email

    second = [f"redis.hung.later.{i:02d}@gmail.com" for i in range(10)]
    signups(second)
    assert max(seconds) < 2, f"signup times with a hung Redis: {seconds}"
    # RQ's loop gives up on a Redis that does not answer outside its wait for a job
    # ("Redis connection timeout, quitting...") and returns: the worker must not exit
    # (it did, on a slow machine; test_a_worker_loop_that_rq_ends_is_started_over).
    assert worker.poll() is None, "the worker exited while Redis hung"
    own_redis.resume()
    for email in second:
        wait_for(lambda e=email: _member(sandbox, e), 60, f"{email} once Redis answers again")
    wait_for(lambda: _waiting(app) == 0, 30, "every row to be handled")
    assert worker.poll() is None, "the worker exited while Redis hung"
    created = _created_per_address()
    assert {e: n for e, n in created.items() if n != 1} == {}
    assert set(created) == {"before.the.hang@gmail.com", *first, *second}
    assert _puts(sandbox) == 1 + len(first) + len(second)


def test_a_drain_flag_left_without_its_job_holds_no_row_past_the_next_sweep(
    app: Flask, sandbox: Any, fresh_breaker: Any
) -> None:
    """A hung Redis runs the commands it buffered once it wakes up: the hand-off's
    "drain job queued" flag gets set for a client that had already timed out and queued
    no job (bench_signup's hang left 277 rows unsent for 120 s that way). The next sweep
    must queue a drain job for rows that waited a sweep interval, not trust the flag for
    a whole lease."""
    from flask_mcsync.models import OutboxItem
    from flask_mcsync.outbox import DRAIN_FLAG_KEY
    from flask_mcsync.sweep import sweep_once
    from flask_mcsync.times import utcnow
    from flask_mcsync.worker import run_worker

    _activate(app)
    ext = _ext(app)
    ext.redis.set(DRAIN_FLAG_KEY, "1", ex=3600)  # what the woken Redis left behind
    email = "flag.without.job@gmail.com"
    _signup(app.test_client(), email)
    wait_for(lambda: _ready_rows(app) == 1, 10, "the hand-off to mark the row ready")
    assert _queued_jobs(app) == 0  # the flag says a drain job is queued; none is

    # A sweep interval later the row is still waiting: the sweep hands it on.
    aged = utcnow() - timedelta(seconds=2 * ext.config.sweep_interval)
    ext.session.execute(sa.update(OutboxItem).values(next_attempt_at=aged))
    ext.session.commit()
    assert sweep_once(ext)["outbox"] == 1
    assert _queued_jobs(app) == 1
    run_worker(app, burst=True, with_scheduler=False)
    member = _member(sandbox, email)
    assert member is not None and member["status"] == "subscribed"
    assert [r.status for r in _outbox(email)] == ["sent"]
    assert _puts(sandbox) == 1


def test_a_worker_loop_that_rq_ends_is_started_over(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RQ's ``work()`` returns, as if asked to stop, when Redis does not answer outside
    its wait for a job (a hung Redis, a network dropping packets). Unless a stop was
    asked for, ``run_worker`` waits for Redis and starts the loop over."""
    from flask_mcsync import worker as worker_mod

    loops: list[bool] = []

    def work(self: Any, burst: bool = False, with_scheduler: bool = True) -> bool:
        loops.append(burst)
        if len(loops) == 2:  # the second loop is stopped by a SIGTERM
            self.handle_warm_shutdown_request()
        return False  # what RQ returns after "Redis connection timeout, quitting..."

    monkeypatch.setattr(worker_mod.InProcessWorker, "work", work)
    assert worker_mod.run_worker(app) is False
    assert loops == [False, False]


def test_a_sigterm_during_the_sweep_stops_the_worker(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RQ answers a SIGTERM in an idle worker by raising StopRequested wherever the
    worker is. In the sweep, the sweep's own "a failure waits for the next interval"
    handler took it, and the worker ran on after the SIGTERM (CI: a worker still alive
    20 s after terminate())."""
    from rq.exceptions import StopRequested

    from flask_mcsync import worker as worker_mod
    from flask_mcsync.enqueue import make_queue

    _activate(app)
    worker = worker_mod.InProcessWorker([make_queue(_ext(app))], connection=_ext(app).redis)

    def sweep_interrupted(ext: Any) -> dict[str, int]:
        worker.handle_warm_shutdown_request()  # what RQ's SIGTERM handler calls first
        raise StopRequested()  # then this, from the sweep's middle

    monkeypatch.setattr(worker_mod, "sweep_if_due", sweep_interrupted)
    with pytest.raises(StopRequested):
        worker.run_maintenance_tasks()

    # A sweep's failure of its own still leaves the worker running.
    def sweep_failing(ext: Any) -> dict[str, int]:
        raise RuntimeError("the database went away")

    idle = worker_mod.InProcessWorker([make_queue(_ext(app))], connection=_ext(app).redis)
    monkeypatch.setattr(worker_mod, "sweep_if_due", sweep_failing)
    idle.run_maintenance_tasks()


def test_a_worker_asked_to_stop_stops(
    own_app: Flask, own_workers: Workers, own_redis: OwnRedis
) -> None:
    """SIGTERM (what a process supervisor sends) still ends the worker, now that a loop
    RQ ends on its own is started over (a hung Redis)."""
    restarted = Redis.from_url(own_redis.url)
    try:
        [worker] = own_workers.start(1)
        # Idle: past RQ's start-up, whose signal handlers come last.
        wait_for(
            lambda: [w.get_state() for w in RqWorker.all(connection=restarted)] == ["idle"],
            30,
            "the worker to wait for jobs",
        )
        os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker.poll() == 0, "the worker did not stop on SIGTERM"
        assert RqWorker.count(connection=restarted) == 0
    finally:
        restarted.close()


def test_a_busy_worker_survives_a_redis_restart(
    own_app: Flask, own_redis: OwnRedis, own_workers: Workers, sandbox: Any, fresh_breaker: Any
) -> None:
    """Redis restarts while the worker is in the middle of a job: the worker must
    reconnect and carry on (the rows whose jobs Redis lost come back through its sweep)."""
    app = own_app
    _activate(app)
    sandbox.client.set_faults(latency_ms=1500)  # each PUT takes long: the worker is busy
    [worker] = own_workers.start(1)
    client = app.test_client()
    before = [f"before.restart.{i}@gmail.com" for i in range(3)]
    for email in before:
        _signup(client, email)
    wait_for(lambda: any(r.status == "sending" for r in _outbox()), 20, "the worker to take a row")
    wait_for(lambda: _in_flight(sandbox), 20, "the worker's request to Mailchimp")
    own_redis.stop()
    # The job ends while Redis is away: its request is answered, and the worker's next
    # word to Redis (releasing its request slot) fails.
    wait_for(lambda: not _in_flight(sandbox), 20, "the request in flight to be answered")
    time.sleep(0.5)  # the answer's way back to the worker: local, milliseconds
    own_redis.start()
    sandbox.client.clear_faults()
    restarted = Redis.from_url(own_redis.url)
    try:
        wait_for(lambda: RqWorker.count(connection=restarted), 20, "the worker to come back")
    finally:
        restarted.close()
    assert worker.poll() is None, "'flask mcsync worker' exited when Redis restarted"
    after = "after.restart@gmail.com"
    _signup(client, after)
    for email in [*before, after]:
        wait_for(lambda e=email: _member(sandbox, e), 30, f"{email} in the audience")
    wait_for(lambda: _waiting(app) == 0, 30, "every row to be handled")


def test_a_thousand_signups_through_a_redis_crash_none_lost_none_twice(
    own_app: Flask, own_redis: OwnRedis, own_workers: Workers, sandbox: Any, fresh_breaker: Any
) -> None:
    from flask_mcsync.models import OutboxItem

    app = own_app
    _activate(app)
    # No cookies: each signup flashes a welcome that no page shows here, and a client
    # keeping the session would carry all of them (a cookie re-read and re-signed at
    # every request, growing with each: 20 % of this process's time).
    client = app.test_client(use_cookies=False)
    many = [f"load.{i:04d}@gmail.com" for i in range(1000)]
    started = time.monotonic()
    for i, email in enumerate(many):
        if i == 400:
            own_redis.stop()  # every job queued so far is lost with it
        if i == 600:
            own_redis.start()
            own_workers.start(3)  # (a worker busy when Redis dies exits: see the test above)
        _signup(client, email, "Load", str(i))
    signups_done = time.monotonic() - started

    # The workers (their jobs, and their sweep for the jobs Redis lost) send them all.
    # However slow the machine, rows keep going out: a pause of 45 s (over twenty sweeps,
    # five leases) means the workers are stuck, and flush would hide it.
    left = wait_while_progressing(lambda: _waiting(app), stall=45)
    stuck = None
    if left:
        stuck = (
            f"the workers stopped sending with {left} rows waiting (no row sent for"
            f" 45 s): {_status_counts()}; {_queued_jobs(app)} jobs queued for"
            f" {len(many)} rows; workers alive: {[p.poll() is None for p in own_workers.procs]};"
            f" the signups took {signups_done:.1f} s"
        )
    drained = time.monotonic() - started
    # Whatever is left (nothing, when the workers kept up) goes through flush.
    result = app.test_cli_runner().invoke(args=["mcsync", "flush"])
    assert result.exit_code == 0, result.output
    assert "0 still waiting" in result.output, result.output

    retried = _read(
        sa.select(OutboxItem.email, OutboxItem.attempts, OutboxItem.last_error).where(
            OutboxItem.attempts != 1
        )
    )
    assert _status_counts() == {"sent/1": len(many)}, (f"drained in {drained:.1f}s", retried)
    audience = sandbox.client.members(LIST_ID)
    assert audience["counts"]["subscribed"] == len(many)
    created = _created_per_address()
    assert {e: n for e, n in created.items() if n != 1} == {}
    not_created = sorted(set(many) - set(created))
    assert not not_created, (_puts(sandbox), [_not_created(e, sandbox) for e in not_created[:5]])
    assert _puts(sandbox) == len(many)  # one PUT per address: none was sent twice
    assert stuck is None, stuck
    assert "Sent 0 waiting rows" in result.output, result.output


# --- 5. Mailchimp failing for a while -------------------------------------------------------


def test_rows_are_retried_while_mailchimp_fails_then_synced(
    app: Flask, sandbox: Any, workers: Workers
) -> None:
    from flask_mcsync.models import Run

    _activate(app)
    sandbox.client.set_faults(error_rates={"503": 1.0})
    workers.start(1)
    email = "Patient.Person@gmail.com"

    _signup(app.test_client(), email, "Patient")

    def retried() -> Any:
        rows = _outbox(email)
        return rows if rows and rows[0].attempts >= 2 and rows[0].status == "pending" else None

    rows = wait_for(retried, 30, "a second failed attempt")
    assert "Service Unavailable" in (rows[0].last_error or ""), rows[0].last_error
    assert rows[0].last_error.startswith("Attempt ")
    assert _member(sandbox, email) is None
    # A try that will be repeated leaves no run or outcome behind.
    assert _outcomes(email) == []
    assert _read(sa.select(Run.id).where(Run.kind == "auto")) == []

    sandbox.client.clear_faults()
    rows = wait_for(lambda: _settled(email), 40, "the row to be sent after recovery")
    assert [r.status for r in rows] == ["sent"]
    assert rows[0].attempts >= 3
    assert rows[0].last_error is None
    member = _member(sandbox, email)
    assert member is not None and member["status"] == "subscribed"
    assert [(o.outcome, o.kind) for o in _outcomes(email)] == [("created", "auto")]
    assert len(_read(sa.select(Run.id).where(Run.kind == "auto"))) == 1


def test_one_shot_failures_are_retried(app: Flask, sandbox: Any, workers: Workers) -> None:
    _activate(app)
    sandbox.client.set_faults(
        next=[
            {"status": 500, "method": "PUT", "path_contains": "/members/"},
            {"status": "timeout", "method": "PUT", "path_contains": "/members/"},
        ],
        timeout_seconds=SLOW_ANSWER,
    )
    workers.start(1)
    email = "Twice.Unlucky@gmail.com"

    _signup(app.test_client(), email, "Twice")

    rows = wait_for(lambda: _settled(email), 45, "the row to be sent on its third try")
    assert [(r.status, r.attempts) for r in rows] == [("sent", 3)]
    member = _member(sandbox, email)
    assert member is not None and member["status"] == "subscribed"
    # The timed-out PUT was applied by the sandbox all the same; the one that counts
    # is recorded once.
    assert [o.outcome for o in _outcomes(email)] in (["created"], ["updated"])
    assert len(_outcomes(email)) == 1


# --- 6. coalescing --------------------------------------------------------------------------


def test_signals_for_one_address_in_one_transaction_make_one_row(app: Flask) -> None:
    from example_app.models import Customer
    from flask_mcsync.signals import subscriber_changed, subscriber_signed_up

    db = _db()
    _activate(app)
    customer = Customer(email="Same.Person@gmail.com", first_name="Same", newsletter=True)
    db.session.add(customer)
    subscriber_signed_up.send(app, subscriber=customer)
    subscriber_signed_up.send(app, subscriber=customer)
    customer.last_name = "Person"
    subscriber_changed.send(app, email="same.person@GMAIL.com")
    db.session.flush()
    subscriber_changed.send(app, email=" SAME.PERSON@gmail.com ")
    db.session.commit()

    rows = _outbox()
    assert len(rows) == 1, rows


def test_several_waiting_rows_for_one_address_make_one_put(
    app: Flask, sandbox: Any, workers: Workers
) -> None:
    from example_app.models import Customer
    from flask_mcsync.signals import subscriber_changed, subscriber_signed_up

    db = _db()
    _activate(app)
    email = "Busy.Bee@gmail.com"
    customer = Customer(email=email, first_name="Busy", newsletter=True)
    db.session.add(customer)
    subscriber_signed_up.send(app, subscriber=customer)
    db.session.commit()
    for last_name in ("B", "Bee"):
        customer.last_name = last_name
        subscriber_changed.send(app, subscriber=customer)
        db.session.commit()
    subscriber_changed.send(app, email=email.lower())
    db.session.commit()
    assert len(_outbox(email)) == 4
    # Handed to Redis by the background hand-off thread, not by the signup itself.
    # The hand-off marks the rows ready, then queues the drain job in a second round
    # trip to Redis: wait for both, then check that the four rows queued just one.
    wait_for(
        lambda: _ready_rows(app) == 4 and _queued_jobs(app) >= 1,
        10,
        "the hand-off to mark the 4 rows ready and queue a drain job",
    )
    assert _queued_jobs(app) == 1  # one drain job for all of them

    workers.start(1)
    rows = wait_for(lambda: _settled(email), 30, "the rows to be handled")
    assert {r.status for r in rows} == {"sent"}
    assert len({r.run_id for r in rows}) == 1  # one sync, for all four rows
    member = _member(sandbox, email)
    assert member is not None and member["merge_fields"]["LNAME"] == "Bee"
    wait_for(lambda: _queued_jobs(app) == 0, 10, "the other jobs to find nothing to do")
    assert _puts(sandbox) == 1
    assert [o.outcome for o in _outcomes(email)] == ["created"]


def test_a_busy_worker_tells_redis_it_is_alive_every_few_seconds_not_twice_a_job(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RQ refreshes the worker's key before and after every job in round trips of their
    own: on an export that was 6 of a job's ~35. Those come every HEARTBEAT_EVERY now;
    the refreshes RQ pipelines with other commands (the suspension check, the job's
    start) cost no round trip and still come with every job."""
    from rq import SimpleWorker

    from flask_mcsync import worker as worker_mod
    from flask_mcsync.enqueue import enqueue_drain

    beats: list[str] = []
    original = SimpleWorker.heartbeat

    def counted(self: Any, timeout: Any = None, pipeline: Any = None) -> None:
        beats.append("piped" if pipeline is not None else "plain")
        original(self, timeout, pipeline)

    monkeypatch.setattr(SimpleWorker, "heartbeat", counted)
    jobs = 20
    for _ in range(jobs):
        enqueue_drain(_ext(app))  # nothing in the outbox: each job ends at once
    started = time.monotonic()
    assert worker_mod.run_worker(app, burst=True, with_scheduler=False)
    took = time.monotonic() - started
    assert _queued_jobs(app) == 0
    assert beats.count("piped") >= 2 * jobs
    # RQ's own worker gave two plain ones a job (40 here), whatever the time taken.
    assert beats.count("plain") <= 1 + took / worker_mod.HEARTBEAT_EVERY
