"""Planning in chunks: a run's source cut into key ranges that several jobs plan.

The jobs are called here directly (no worker, no Mailchimp): what must hold is in the
batches they commit. Every address the shop would send is in exactly one batch, the
counts match what the customer rows say, and a chunk that dies half way and runs again
adds no batch twice. The end-to-end test at the bottom runs real workers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from helpers_export import (
    audience_members,
    choose_audience,
    expected_export,
    insert_customers,
    shop_db,
    shop_rows,
    wait_run_ended,
)

pytestmark = pytest.mark.slow


_db = shop_db


def _prepare(app: Flask, rows: list[dict[str, Any]], batch_size: int) -> tuple[int, Any]:
    """The shop's rows inserted, an export started (its plan job left in the queue)."""
    from flask_mcsync import state
    from flask_mcsync.runs import start_export

    insert_customers(_db(), rows)
    choose_audience(app)
    run_id = int(start_export(state(app), "test", batch_size=batch_size).run.id)
    return run_id, expected_export(rows, rules=False)


def _cut(app: Flask, run_id: int) -> list[int]:
    """Run the plan job: the run cut into chunks. Returns their ids, in key order."""
    from flask_mcsync import state
    from flask_mcsync.models import PlanChunk
    from flask_mcsync.planner import plan

    plan(state(app), run_id)
    session = _db().session
    return list(
        session.execute(
            sa.select(PlanChunk.id).where(PlanChunk.run_id == run_id).order_by(PlanChunk.seq)
        ).scalars()
    )


def _cut_rows(
    app: Flask, rows: list[dict[str, Any]], batch_size: int
) -> tuple[int, Any, list[int]]:
    """The shop's rows in, an export started and cut into two chunks or more."""
    run_id, expected = _prepare(app, rows, batch_size)
    chunks = _cut(app, run_id)
    assert len(chunks) >= 2
    return run_id, expected, chunks


def _plan_chunk(app: Flask, chunk_id: int) -> None:
    from flask_mcsync import state
    from flask_mcsync.planner import plan_chunk

    plan_chunk(state(app), chunk_id)


def _planned(run_id: int) -> tuple[Counter[str], list[int]]:
    """Every planned address (lower-cased) with how many batches hold it, and the seqs."""
    from flask_mcsync.models import Batch

    session = _db().session
    session.commit()
    addresses: Counter[str] = Counter()
    seqs = []
    for seq, payload in session.execute(
        sa.select(Batch.seq, Batch.payload).where(Batch.run_id == run_id).order_by(Batch.seq)
    ):
        seqs.append(seq)
        addresses.update(email.lower() for email, *_ in payload)
    return addresses, seqs


def _fresh(model: Any, row_id: int) -> Any:
    """The row as the database holds it now (other sessions' commits included)."""
    session = _db().session
    session.commit()
    session.expire_all()
    return session.get(model, row_id)


def _run(run_id: int) -> Any:
    from flask_mcsync.models import Run

    return _fresh(Run, run_id)


def _assert_planned_once(run_id: int, expected: Any) -> None:
    addresses, seqs = _planned(run_id)
    assert set(addresses) == set(expected.send)
    assert max(addresses.values()) == 1, addresses.most_common(3)
    assert seqs == list(range(1, len(seqs) + 1))
    run = _run(run_id)
    assert run.planning_done
    assert run.total == len(expected.send)
    assert run.batch_count == len(seqs)
    assert (run.duplicates, run.invalid) == (expected.duplicates, expected.invalid)


def _planned_keys(run_id: int) -> int:
    from flask_mcsync.models import PlannedAddress

    return int(
        _db()
        .session.execute(sa.select(sa.func.count()).where(PlannedAddress.run_id == run_id))
        .scalar_one()
    )


def test_duplicate_in_two_chunks_is_planned_once_whichever_chunk_runs_first(
    app: Flask,
) -> None:
    rows = shop_rows(300, seed=5)
    # The same contact near the start and at the very end of the shop: two chunks apart.
    rows.insert(1, {**rows[0], "email": "Twice@Laposte.net", "newsletter": True})
    rows.append({**rows[0], "email": "twice@laposte.net ", "newsletter": True})
    run_id, expected = _prepare(app, rows, batch_size=10)
    chunks = _cut(app, run_id)
    assert len(chunks) >= 3

    for chunk_id in reversed(chunks):  # the last range first: it claims the address
        _plan_chunk(app, chunk_id)

    _assert_planned_once(run_id, expected)
    assert _planned_keys(run_id) == 0, "planning over: its keys are dropped"


def test_chunk_killed_between_batches_resumes_without_doubling(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_mcsync import enqueue, state
    from flask_mcsync.models import PlanChunk
    from flask_mcsync.sweep import sweep_once
    from flask_mcsync.times import utcnow

    run_id, expected, chunks = _cut_rows(app, shop_rows(200, seed=9), batch_size=10)
    _plan_chunk(app, chunks[0])  # planned whole, between two chunks the crash comes

    class Killed(BaseException):
        """The worker dying: nothing after this line runs."""

    queued: list[int] = []
    real_enqueue = enqueue.enqueue_batch

    def dies_at_third(ext: Any, batch_id: int, token: Any = None) -> bool:
        if len(queued) == 2:
            raise Killed  # the third batch is committed, its job never queued
        queued.append(batch_id)
        return real_enqueue(ext, batch_id, token)

    monkeypatch.setattr(enqueue, "enqueue_batch", dies_at_third)
    with pytest.raises(Killed):
        _plan_chunk(app, chunks[1])
    monkeypatch.setattr(enqueue, "enqueue_batch", real_enqueue)
    session = _db().session
    session.rollback()
    # Its lease runs out; the sweep queues the chunk again, and the batch never queued.
    session.execute(
        sa.update(PlanChunk)
        .where(PlanChunk.id == chunks[1])
        .values(lease_until=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    swept = sweep_once(state(app))
    assert swept["batches"] == 1, swept  # the batch whose job was never queued
    for chunk_id in chunks[1:]:
        _plan_chunk(app, chunk_id)

    _assert_planned_once(run_id, expected)


def test_last_chunk_killed_after_its_end_leaves_the_sweep_to_end_planning(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between committing its chunk's end and marking the run's planning done,
    the last chunk's worker leaves every chunk done and no job to rerun: the sweep ends
    the planning (without it, the run stayed 'running' with every batch done)."""
    from flask_mcsync import planner, state
    from flask_mcsync.models import PlanChunk
    from flask_mcsync.runs import end_planning
    from flask_mcsync.sweep import sweep_once

    rows = shop_rows(200, seed=11)
    run_id, expected = _prepare(app, rows, batch_size=10)
    chunks = _cut(app, run_id)
    for chunk_id in chunks[:-1]:
        _plan_chunk(app, chunk_id)

    class Killed(BaseException):
        """The worker dying: nothing after this line runs."""

    def dies(ext: Any, run_id: int) -> bool:
        raise Killed

    monkeypatch.setattr(planner, "end_planning", dies)
    with pytest.raises(Killed):
        _plan_chunk(app, chunks[-1])
    monkeypatch.setattr(planner, "end_planning", end_planning)
    session = _db().session
    session.rollback()
    statuses = session.execute(sa.select(PlanChunk.status).where(PlanChunk.run_id == run_id))
    assert set(statuses.scalars()) == {"done"}
    assert not _run(run_id).planning_done

    swept = sweep_once(state(app))
    assert swept["plans_ended"] == 1 and swept["plans"] == 0, swept
    _assert_planned_once(run_id, expected)
    assert _planned_keys(run_id) == 0, "planning over: its keys are dropped"
    assert sweep_once(state(app))["plans_ended"] == 0  # done once


def test_two_planners_side_by_side_share_the_run(app: Flask) -> None:
    """Two chunks planned at the same time, each in its own session (two workers)."""
    rows = shop_rows(400, seed=13)
    for i in range(0, 400, 37):  # the last chunk repeats addresses of every other one
        rows.append({**rows[i], "email": rows[i]["email"].upper()})
    run_id, expected = _prepare(app, rows, batch_size=10)
    chunks = _cut(app, run_id)
    assert len(chunks) >= 4
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def planner(mine: list[int]) -> None:
        try:
            with app.app_context():
                start.wait(timeout=10)
                for chunk_id in mine:
                    _plan_chunk(app, chunk_id)
                _db().session.remove()
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    threads = [
        threading.Thread(target=planner, args=(chunks[0::2],)),
        threading.Thread(target=planner, args=(chunks[1::2],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures

    _assert_planned_once(run_id, expected)


def test_two_workers_plan_and_send_a_chunked_run(app: Flask, sandbox: Any, workers: Any) -> None:
    from flask_mcsync import state
    from flask_mcsync.enqueue import enqueued_count
    from flask_mcsync.models import PlanChunk
    from flask_mcsync.runs import start_export

    rows = shop_rows(500, seed=17)
    rows.append({**rows[3], "email": rows[3]["email"].upper()})
    insert_customers(_db(), rows)
    choose_audience(app)
    expected = expected_export(rows, rules=False)
    workers.start(2)
    run_id = int(start_export(state(app), "test", batch_size=10).run.id)
    data = wait_run_ended(_db().session, run_id, timeout=90)

    assert data["status"] == "finished", data["message"]
    assert set(audience_members(sandbox)) == set(expected.send)
    assert data["total"] == len(expected.send)
    assert data["duplicates"] == expected.duplicates
    chunks = (
        _db()
        .session.execute(sa.select(PlanChunk.status).where(PlanChunk.run_id == run_id))
        .scalars()
        .all()
    )
    assert len(chunks) >= 3 and set(chunks) == {"done"}
    # The plan job, one job per chunk, and per batch its polls (its chunk's job sends it).
    assert enqueued_count(state(app)) >= 1 + len(chunks) + data["batch_count"]


def test_planner_killed_before_sending_a_batch_it_committed(
    app: Flask, sandbox: Any, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk's job sends each batch it commits; killed between the commit and the
    send, the batch waits out its lease, then the sweep has it sent, once."""
    from flask_mcsync import jobs, state
    from flask_mcsync.models import Batch, PlanChunk
    from flask_mcsync.sweep import sweep_once
    from flask_mcsync.times import utcnow

    rows = shop_rows(200, seed=23)
    run_id, expected = _prepare(app, rows, batch_size=10)
    chunks = _cut(app, run_id)

    class Killed(BaseException):
        """The worker dying: nothing after this line runs."""

    sent: list[int] = []
    real_send = jobs.Sender.send

    def dies_at_third(sender: Any, batch_id: int, *args: Any, **kwargs: Any) -> None:
        if len(sent) == 2:
            raise Killed  # the third batch is committed, leased, never sent
        sent.append(batch_id)
        real_send(sender, batch_id, *args, **kwargs)

    monkeypatch.setattr(jobs.Sender, "send", dies_at_third)
    with pytest.raises(Killed):
        jobs.plan_chunk(chunks[0])
    monkeypatch.setattr(jobs.Sender, "send", real_send)
    session = _db().session
    session.rollback()
    unsent = session.execute(
        sa.select(Batch).where(Batch.run_id == run_id, Batch.id.not_in(sent))
    ).scalar_one()
    assert unsent.status == "sending" and unsent.mailchimp_batch_id is None
    assert unsent.lease_until > utcnow()  # nobody else sends it meanwhile
    # The leases run out (the chunk's and the batch's); the sweep queues both again.
    past = utcnow() - timedelta(seconds=1)
    session.execute(sa.update(PlanChunk).where(PlanChunk.id == chunks[0]).values(lease_until=past))
    session.execute(sa.update(Batch).where(Batch.id == unsent.id).values(lease_until=past))
    session.commit()
    swept = sweep_once(state(app))
    assert swept["batches"] == 1, swept
    workers.start(2)
    data = wait_run_ended(_db().session, run_id, timeout=90)

    assert data["status"] == "finished", data["message"]
    assert set(audience_members(sandbox)) == set(expected.send)
    assert data["created"] == len(expected.send) and data["errors"] == 0
    # Every batch sent once: the killed one by the sweep's job, none twice.
    posts = sandbox.client.stats()["requests_by_kind"].get("batches", 0)
    assert posts == data["batch_count"], (posts, data["batch_count"])


def _fail_in_second_batch_commit(monkeypatch: pytest.MonkeyPatch, fail: Any) -> None:
    """Call ``fail`` inside the planner's second batch commit: after its claim of the
    addresses and its run and chunk UPDATEs, before its batch INSERT and COMMIT."""
    import sys

    from flask_mcsync import leases

    real, calls = leases.new_token, []

    def new_token() -> str:
        if sys._getframe(1).f_code.co_name == "commit_batch":
            calls.append(1)
            if len(calls) == 2:
                fail()
        return real()

    monkeypatch.setattr(leases, "new_token", new_token)


def test_a_chunk_job_interrupted_mid_commit_leaves_nothing_of_that_commit(
    app: Flask, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job timeout or a cold shutdown in the middle of a batch's commit: the batch in
    flight is still recorded, but nothing of the half-written commit with it (its
    addresses claimed with no batch to send them would never be sent)."""
    from flask_mcsync import jobs
    from flask_mcsync.models import Batch, PlanChunk, PlannedAddress, Run
    from flask_mcsync.times import utcnow

    rows = shop_rows(60, seed=23)
    run_id, expected = _prepare(app, rows, batch_size=10)
    chunks = _cut(app, run_id)

    class Interrupted(BaseException):
        """RQ's job timeout, or its cold shutdown (SystemExit)."""

    def interrupt() -> None:
        raise Interrupted

    _fail_in_second_batch_commit(monkeypatch, interrupt)
    with pytest.raises(Interrupted):
        jobs.plan_chunk(chunks[0])
    monkeypatch.undo()
    session = _db().session
    session.rollback()
    first = session.execute(sa.select(Batch).where(Batch.run_id == run_id)).scalar_one()
    assert first.mailchimp_batch_id is not None  # the batch in flight was recorded
    # Nothing of the interrupted commit: no address claimed or counted beyond the first
    # batch.
    claimed = session.execute(
        sa.select(sa.func.count()).where(PlannedAddress.run_id == run_id)
    ).scalar_one()
    run = session.get(Run, run_id)
    assert run is not None
    assert claimed == run.total == first.size == 10 and run.batch_count == 1
    # The chunk's lease runs out and its job runs again: every address is planned.
    past = utcnow() - timedelta(seconds=1)
    session.execute(sa.update(PlanChunk).where(PlanChunk.id == chunks[0]).values(lease_until=past))
    session.commit()
    jobs.plan_chunk(chunks[0])
    session.rollback()
    planned = {
        email.lower()
        for (payload,) in session.execute(sa.select(Batch.payload).where(Batch.run_id == run_id))
        for email, *_ in payload
    }
    assert set(expected.send) <= planned, sorted(set(expected.send) - planned)[:5]


def test_a_database_error_in_a_chunk_job_is_its_error_and_the_batch_in_flight_is_recorded(
    app: Flask, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement of the job fails (on PostgreSQL that aborts the transaction): recording
    the answer to the batch in flight must not meet that transaction, nor hide the job's
    own error."""
    from flask_mcsync import jobs, state
    from flask_mcsync.models import Batch

    rows = shop_rows(60, seed=23)
    run_id, _ = _prepare(app, rows, batch_size=10)
    chunks = _cut(app, run_id)

    class Refused(Exception):
        pass

    def failing_statement() -> None:
        try:
            state(app).session.execute(sa.text("SELECT * FROM mcsync_no_such_table"))
        except sa.exc.DBAPIError as exc:
            raise Refused from exc

    _fail_in_second_batch_commit(monkeypatch, failing_statement)
    with pytest.raises(Refused):
        jobs.plan_chunk(chunks[0])
    session = _db().session
    session.rollback()
    first = session.execute(sa.select(Batch).where(Batch.run_id == run_id)).scalar_one()
    assert first.mailchimp_batch_id is not None and first.status == "processing"
    assert sandbox.client.stats()["requests_by_kind"].get("batches") == 1


def test_an_account_error_on_a_post_in_flight_stops_the_run_and_nothing_more_is_sent(
    app: Flask, sandbox: Any
) -> None:
    from flask_mcsync import jobs
    from flask_mcsync.models import Batch, Run

    rows = shop_rows(60, seed=23)
    run_id, _ = _prepare(app, rows, batch_size=10)
    chunks = _cut(app, run_id)
    sandbox.client.set_faults(
        next=[{"status": 401, "method": "POST", "path_contains": "/batches", "count": 1}]
    )
    jobs.plan_chunk(chunks[0])
    session = _db().session
    session.rollback()
    run = session.get(Run, run_id)
    batches = session.execute(
        sa.select(Batch.status, Batch.lease_token).where(Batch.run_id == run_id)
    ).all()
    assert run is not None and run.status == "failed"
    assert sandbox.client.stats()["requests_by_kind"].get("batches") == 1  # one POST only
    assert batches and all(status == "failed" and token is None for status, token in batches)


class _Posted:
    """A sender that posts nothing: the batches stay "sending", counted as out."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def send(self, batch_id: int, token: str, payload: list[list[Any]], run: Any) -> None:
        self.sent.append(batch_id)

    def settle(self) -> None:
        pass


def _fill(app: Flask, monkeypatch: pytest.MonkeyPatch, in_flight: int) -> Any:
    from dataclasses import replace

    from flask_mcsync import state

    ext = state(app)
    monkeypatch.setattr(ext, "config", replace(ext.config, batches_in_flight=in_flight))
    return ext


def _chunk(chunk_id: int) -> Any:
    from flask_mcsync.models import PlanChunk

    return _fresh(PlanChunk, chunk_id)


def _end_batches(run_id: int, count: int) -> None:
    """Mailchimp did ``count`` of the run's batches out, and their polls recorded them."""
    _set_batches(run_id, "sending", "done", count)


def _set_batches(run_id: int, status: str, to: str, count: int) -> None:
    """The first ``count`` of the run's batches in ``status`` go to ``to``, counted on
    the run as a batch's end counts them."""
    from flask_mcsync.models import Batch
    from flask_mcsync.runs import count_ended

    session = _db().session
    ids = list(
        session.execute(
            sa.select(Batch.id)
            .where(Batch.run_id == run_id, Batch.status == status)
            .order_by(Batch.seq)
            .limit(count)
        ).scalars()
    )
    session.execute(sa.update(Batch).where(Batch.id.in_(ids)).values(status=to))
    ended = len(ids)
    count_ended(
        session, run_id, done=ended if to == "done" else 0, failed=ended if to == "failed" else 0
    )
    session.commit()


def _set_lease(chunk_id: int, until: Any) -> None:
    from flask_mcsync.models import PlanChunk

    session = _db().session
    session.execute(sa.update(PlanChunk).where(PlanChunk.id == chunk_id).values(lease_until=until))
    session.commit()


def _queued_jobs(app: Flask) -> list[str]:
    from flask_mcsync import state
    from flask_mcsync.enqueue import make_queue

    return list(make_queue(state(app)).job_ids)


def test_planning_pauses_with_its_fill_of_batches_out_and_resumes_at_three_quarters(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_mcsync.planner import plan_chunk
    from flask_mcsync.runs import batches_out, resumable
    from flask_mcsync.sweep import sweep_once
    from flask_mcsync.times import utcnow

    run_id, expected, chunks = _cut_rows(app, shop_rows(2000, seed=31), batch_size=5)
    ext = _fill(app, monkeypatch, in_flight=8)
    sender = _Posted()
    session = _db().session

    plan_chunk(ext, chunks[0], sender=sender)
    # Eight batches out: the chunk stopped at its last committed one, lease given back.
    assert len(sender.sent) == 8 and batches_out(session, run_id) == 8
    paused = _chunk(chunks[0])
    assert paused.status != "done" and paused.lease_until is None
    assert paused.lease_token is not None and paused.planned_through is not None
    token = paused.lease_token
    # The next chunk, queued behind the first batch, finds the run full: it sends nothing.
    plan_chunk(ext, chunks[1], sender=sender)
    assert len(sender.sent) == 8
    assert _chunk(chunks[1]).lease_until is None and _chunk(chunks[1]).lease_token is not None
    # One batch ended: 7 out, above three quarters of the fill; nothing is resumed, by
    # the sweep neither. A batch waiting to be sent again (a 429) still counts as out.
    _end_batches(run_id, 1)
    _set_batches(run_id, "sending", "waiting", 1)
    resumed = f"mcsync-chunk-{chunks[0]}-{token}"
    assert batches_out(session, run_id) == 7 and resumable(ext, run_id) is None
    sweep_once(ext)
    assert resumed not in _queued_jobs(app)
    # At 6, the first paused chunk may go on: the job whose batch ended plans it...
    _end_batches(run_id, 1)
    assert resumable(ext, run_id) == (chunks[0], token)
    # ... unless a chunk is being planned: each resumer would add a batch beyond the fill.
    _set_lease(chunks[1], utcnow() + timedelta(seconds=60))
    assert resumable(ext, run_id) is None
    _set_lease(chunks[1], None)
    # Its worker gone, the sweep queues one job under the pause's name, ahead of the
    # polls, however often it sweeps.
    sweep_once(ext)
    sweep_once(ext)
    assert _queued_jobs(app).count(resumed) == 1
    assert _queued_jobs(app)[0] == resumed, "planning goes ahead of the polls"
    assert plan_chunk(ext, chunks[0], sender=sender) == run_id  # paused again
    assert len(sender.sent) == 10 and batches_out(session, run_id) == 8
    # The job the sweep queued comes late: it finds the run full, and pauses the chunk again.
    assert plan_chunk(ext, chunks[0], sender=sender) == run_id
    assert len(sender.sent) == 10 and _chunk(chunks[0]).lease_until is None

    _plan_to_the_end(ext, run_id, chunks, sender)
    _assert_planned_once(run_id, expected)
    assert len(sender.sent) == len(set(sender.sent)) == _run(run_id).batch_count


def _plan_to_the_end(ext: Any, run_id: int, chunks: list[int], sender: Any) -> None:
    """Each time a quarter of the batches out end, the first paused chunk goes on (or,
    none paused, the next chunk, queued by the one before it), until every chunk is done."""
    from flask_mcsync.models import PlanChunk
    from flask_mcsync.planner import plan_chunk
    from flask_mcsync.runs import resumable

    session = _db().session
    for _ in range(200):
        if all(_chunk(c).status == "done" for c in chunks):
            return
        _end_batches(run_id, 2)
        _set_batches(run_id, "waiting", "done", 8)
        paused_id = (resumable(ext, run_id) or (None, None))[0]
        if paused_id is None:
            paused_id = session.execute(
                sa.select(PlanChunk.id)
                .where(
                    PlanChunk.run_id == run_id,
                    PlanChunk.status != "done",
                    PlanChunk.lease_token.is_(None),
                )
                .order_by(PlanChunk.seq)
                .limit(1)
            ).scalar_one()
        plan_chunk(ext, paused_id, sender=sender)
    raise AssertionError("the chunks were not all planned")


def test_chunk_killed_while_it_pauses_is_planned_on_after_its_lease(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies in the pause, after the batch in flight was settled and before the
    chunk's lease was given back: the chunk keeps its lease (nobody plans it meanwhile),
    then the sweep has it planned on from its last committed batch, nothing doubled."""
    from flask_mcsync.planner import plan_chunk
    from flask_mcsync.runs import batches_out, resumable
    from flask_mcsync.sweep import sweep_once
    from flask_mcsync.times import utcnow

    run_id, expected, chunks = _cut_rows(app, shop_rows(600, seed=37), batch_size=5)
    ext = _fill(app, monkeypatch, in_flight=4)

    class Killed(BaseException):
        """The worker dying: nothing after this line runs."""

    class DiesInThePause(_Posted):
        def settle(self) -> None:
            if len(self.sent) == 4:  # the fill: only the pause settles then
                raise Killed

    dying = DiesInThePause()
    with pytest.raises(Killed) as caught:
        plan_chunk(ext, chunks[0], sender=dying)
    assert any(entry.name == "_pause" for entry in caught.traceback)
    session = _db().session
    session.rollback()
    killed = _chunk(chunks[0])
    assert killed.status != "done" and killed.planned_through is not None
    assert killed.lease_until is not None and killed.lease_until > utcnow()
    assert batches_out(session, run_id) == 4 and _run(run_id).batch_count == 4
    # Room again, but the dead worker's lease still holds: nobody plans the chunk yet.
    _end_batches(run_id, 2)
    assert resumable(ext, run_id) is None
    assert sweep_once(ext)["plans"] == 0
    # The lease runs out: the sweep queues the chunk once, and it goes on where it was.
    _set_lease(chunks[0], utcnow() - timedelta(seconds=1))
    assert sweep_once(ext)["plans"] == 1
    sweep_once(ext)
    chunk_jobs = [j for j in _queued_jobs(app) if j.startswith(f"mcsync-chunk-{chunks[0]}-")]
    assert chunk_jobs == [f"mcsync-chunk-{chunks[0]}-{killed.lease_token}"], _queued_jobs(app)
    sender = _Posted()
    sender.sent = list(dying.sent)
    plan_chunk(ext, chunks[0], sender=sender)
    assert sender.sent[4:] and not set(sender.sent[4:]) & set(dying.sent)
    _plan_to_the_end(ext, run_id, chunks, sender)
    _assert_planned_once(run_id, expected)
    assert len(sender.sent) == len(set(sender.sent)) == _run(run_id).batch_count


def test_two_workers_keep_at_most_their_fill_of_batches_out(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    """Mailchimp slower than the planning: the run keeps at most MCSYNC_BATCHES_IN_FLIGHT
    batches out (one more when both workers commit one at the same moment), its chunks
    pause and resume, and every address still goes once."""
    from flask_mcsync import state
    from flask_mcsync.models import Batch, PlanChunk
    from flask_mcsync.runs import start_export

    rows = shop_rows(400, seed=37)
    insert_customers(_db(), rows)
    choose_audience(app)
    expected = expected_export(rows, rules=False)
    workers.env["MCSYNC_BATCHES_IN_FLIGHT"] = "3"
    # No sweep after the first: the jobs whose batches end resume the paused chunks.
    workers.env["MCSYNC_SWEEP_INTERVAL"] = "3600"
    sandbox.client.set_faults(batch_ops_per_second=100)  # a batch of 10 takes 0.1 s
    workers.start(2)
    run_id = int(start_export(state(app), "test", batch_size=10).run.id)
    session = _db().session
    most, paused_seen = 0, False
    paused = sa.select(PlanChunk.id).where(
        PlanChunk.run_id == run_id,
        PlanChunk.status != "done",
        PlanChunk.lease_until.is_(None),
        PlanChunk.lease_token.is_not(None),
    )
    deadline = time.monotonic() + 90
    while _run(run_id).status not in ("finished", "failed") and time.monotonic() < deadline:
        # Counted on the batch rows, not on the run's counters the planner reads.
        out = sa.select(sa.func.count()).where(
            Batch.run_id == run_id, Batch.status.not_in(["done", "failed"])
        )
        most = max(most, session.execute(out).scalar_one())
        paused_seen = paused_seen or session.execute(paused.exists().select()).scalar()
        session.commit()
        time.sleep(0.01)
    data = wait_run_ended(session, run_id, timeout=30)

    assert data["status"] == "finished", data["message"]
    assert sorted(audience_members(sandbox)) == sorted(expected.send)
    assert data["total"] == len(expected.send)
    assert paused_seen, f"the planning never had to wait for Mailchimp (at most {most} out)"
    assert 3 <= most <= 4, most
