"""Batches that Mailchimp or RQ lose, and a storm of passing failures, with real workers:

* a storm that fails each step now and then does not add up to a give-up: the retry
  budget counts failed tries of one step, and what it costs is reported;
* a batch Mailchimp no longer knows (``GET /batches/{id}`` answers 404) is sent again,
  it is not an account error; a real account error stops the run with no batch left in
  progress;
* Mailchimp's answer, not our history, says created or updated;
* a job a worker took from the queue and died holding is queued again by one sweep;
* the sweep never queues a second job for a batch whose job still waits;
* a chunk whose planner died is queued again under its lease's name, which no running
  job holds.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from helpers_export import (
    LIST_ID,
    assert_all_recorded,
    audience_members,
    prepare_export,
    shop_db,
    shop_rows,
    start_export_run,
    wait_run_ended,
)
from support import SLOW_ANSWER, wait_for

pytestmark = pytest.mark.slow

SUBMIT = {"method": "POST", "path_contains": "/batches"}
POLL = {"method": "GET", "path_contains": "/batches/"}


_db = shop_db
_start = start_export_run
_assert_all_recorded = assert_all_recorded


def _prepare(app: Flask, count: int, seed: int = 31) -> Any:
    rows = [r for r in shop_rows(count, seed=seed) if r["first_name"] != "Edge"]
    return prepare_export(app, rows)


def _batches(run_id: int) -> list[Any]:
    from flask_mcsync.models import Batch

    session = _db().session
    session.commit()
    session.expire_all()
    rows = list(
        session.execute(sa.select(Batch).where(Batch.run_id == run_id).order_by(Batch.seq))
        .scalars()
        .all()
    )
    session.commit()
    return rows


def test_fault_storm_at_batch_size_100_ends_with_every_address_recorded(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    """Each batch meets failed sends and expired results (twice each at least, so four
    failed tries of the whole batch), in a random storm of 429, 500, timeouts and
    dropped connections. None of its steps failed four times in a row: it must end."""
    expected = _prepare(app, 200)
    sandbox.client.set_faults(
        seed=9,
        retry_after=0,
        timeout_seconds=SLOW_ANSWER,  # past MCSYNC_REQUEST_TIMEOUT
        error_rates={"429": 0.1, "500": 0.05},
        timeout_rate=0.02,
        drop_rate=0.02,
        expire_results=True,
        # The next six sends fail: with two batches, one of them meets at least three.
        next=[{"status": 503, **SUBMIT, "count": 6}],
    )
    workers.env["MCSYNC_MAX_ATTEMPTS"] = "5"
    workers.start(2)
    run_id = _start(app, batch_size=100)

    def every_batch_resent_twice() -> bool:
        batches = _batches(run_id)
        return len(batches) == 2 and all(b.resends >= 2 for b in batches)

    wait_for(every_batch_resent_twice, timeout=90, what="each batch to meet expired results twice")
    sandbox.client.set_faults(expire_results=False)
    data = wait_run_ended(_db().session, run_id, timeout=120)
    sandbox.client.clear_faults()

    _assert_all_recorded(sandbox, run_id, expected, data)
    # Mailchimp created everybody (the first send did): all are "created".
    assert data["created"] == len(expected.send)
    # What the storm cost is reported, per batch and for the run.
    assert data["retries"] >= 2 * 2 + 3
    assert data["most_retries"] >= 5 and data["retry_seconds"] > 0
    for batch in data["batches"]:
        assert batch["retries"] >= 4 and batch["retry_seconds"] > 0
    print(
        f"storm: {data['retries']} failed tries, at most {data['most_retries']} per batch,"
        f" {data['retry_seconds']}s of backoff added"
    )


def _mailchimp_batch(sandbox: Any, wanted: str) -> str:
    def find() -> str | None:
        found = [i for i, status in sandbox.client.stats()["batches"].items() if status == wanted]
        return found[0] if found else None

    return str(wait_for(find, timeout=30, what=f"a Mailchimp batch {wanted}"))


def test_batch_mailchimp_no_longer_knows_is_sent_again(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    expected = _prepare(app, 150)
    # Slow enough that a batch is deleted half done: some of its members exist already.
    # Two operations a second: its 50 take 25 s, and it is deleted once 5 are done.
    sandbox.client.set_faults(batch_ops_per_second=2)
    workers.start(2)
    run_id = _start(app, batch_size=50)
    gone = _mailchimp_batch(sandbox, "started")
    auth = ("shop", sandbox.api_key)

    def finished_operations() -> int:
        reply = requests.get(f"{sandbox.api_url}batches/{gone}", auth=auth, timeout=10)
        return int(reply.json()["finished_operations"])

    wait_for(lambda: finished_operations() >= 5, timeout=60, what="5 operations done")
    deleted = requests.delete(f"{sandbox.api_url}batches/{gone}", auth=auth, timeout=10)
    assert deleted.status_code == 204
    assert len(sandbox.client.members(LIST_ID)["members"]) >= 5
    sandbox.client.set_faults(batch_ops_per_second=20_000)
    data = wait_run_ended(_db().session, run_id, timeout=60)

    _assert_all_recorded(sandbox, run_id, expected, data)
    # Members the deleted batch had created before it went are still "created".
    assert data["created"] == len(expected.send) and data["updated"] == 0
    assert any("Batch gone" in (b.last_error or "") or b.resends for b in _batches(run_id))
    assert sum(b.resends for b in _batches(run_id)) == 1


def test_account_error_stops_the_run_with_no_batch_in_progress(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    _prepare(app, 150)
    sandbox.client.set_faults(batch_ops_per_second=20, next=[{"status": 401, **POLL}])
    workers.start(2)
    run_id = _start(app, batch_size=30)
    data = wait_run_ended(_db().session, run_id, timeout=40)

    assert data["status"] == "failed"
    assert "Mailchimp refused the account or audience" in (data["message"] or "")
    statuses = Counter(b.status for b in _batches(run_id))
    assert set(statuses) <= {"done", "failed"}, statuses
    assert all(b.lease_token is None for b in _batches(run_id))


def test_reexport_after_mailchimp_lost_its_members_counts_them_created(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    """A sandbox restart (Mailchimp losing members) between two exports: the second
    creates everybody again, and must say so whatever our history holds."""
    from flask_mcsync.times import utcnow

    expected = _prepare(app, 120)
    workers.start(2)
    first = wait_run_ended(_db().session, _start(app, batch_size=40), timeout=40)
    assert first["created"] == len(expected.send)
    sandbox.client.reset()
    # Later than the clock skew allowed between our clock and Mailchimp's stamps.
    ended_at = datetime.fromisoformat(first["finished_at"])
    wait_for(lambda: utcnow() - ended_at > timedelta(seconds=3), timeout=10)
    second = wait_run_ended(_db().session, _start(app, batch_size=40), timeout=40)

    assert second["status"] == "finished"
    assert second["created"] == len(expected.send), "members Mailchimp just created"
    assert second["updated"] == 0
    # And a third export, right after, finds them all: updated.
    third = wait_run_ended(_db().session, _start(app, batch_size=40), timeout=40)
    assert third["updated"] == len(expected.send) and third["created"] == 0


def test_job_a_dead_worker_took_from_the_queue_is_requeued_by_one_sweep(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    from flask_mcsync import state
    from flask_mcsync.enqueue import make_queue

    expected = _prepare(app, 60)
    ext = state(app)
    queue = make_queue(ext)
    run_id = _start(app, batch_size=30)  # no worker yet: the plan job waits in the queue
    job_id = f"mcsync-plan-{run_id}"
    assert queue.get_job_ids() == [job_id]
    # What RQ does when a worker takes a job (BLMOVE), then the worker dies at once.
    ext.redis.lmove(queue.key, queue.intermediate_queue_key, "LEFT", "RIGHT")
    assert queue.get_job_ids() == []
    assert queue.fetch_job(job_id).get_status() == "queued"

    runner = app.test_cli_runner()
    swept = runner.invoke(args=["mcsync", "sweep"])
    assert swept.exit_code == 0, swept.output
    assert "Re-queued 1 planning job and 0 batches" in swept.output
    assert queue.get_job_ids() == [job_id]
    assert ext.redis.lrange(queue.intermediate_queue_key, 0, -1) == []
    # Nothing more to do: the next sweep says so, and queues nothing twice.
    again = runner.invoke(args=["mcsync", "sweep"])
    assert "Re-queued 0 planning jobs and 0 batches" in again.output, again.output
    assert queue.get_job_ids() == [job_id]

    workers.start(1)
    data = wait_run_ended(_db().session, run_id, timeout=30)
    _assert_all_recorded(sandbox, run_id, expected, data)


def _waiting_jobs_per_batch(ext: Any) -> Counter[int]:
    from flask_mcsync.enqueue import make_queue
    from flask_mcsync.jobs import advance_batch

    queue = make_queue(ext)
    ids = queue.get_job_ids() + queue.scheduled_job_registry.get_job_ids()
    per_batch: Counter[int] = Counter()
    for job_id in ids:
        job = queue.fetch_job(job_id)
        if job is not None and job.func_name.endswith(advance_batch.__name__):
            per_batch[int(job.args[0])] += 1
    return per_batch


def _plan_job_taken(ext: Any, run_id: int, status: Any) -> Any:
    """A run's plan job as a worker holds it: out of the queue, in ``status``."""
    from flask_mcsync.enqueue import enqueue_plan, make_queue

    assert enqueue_plan(ext, run_id)
    job = make_queue(ext).fetch_job(f"mcsync-plan-{run_id}")
    assert job is not None
    ext.redis.lrem(make_queue(ext).key, 0, job.id)  # a worker took it
    job.set_status(status)
    return job


def _assert_queued_afresh(ext: Any, job_id: str) -> None:
    from rq.job import JobStatus

    from flask_mcsync.enqueue import make_queue

    assert ext.redis.lrange(make_queue(ext).key, 0, -1).count(job_id.encode()) == 1
    replaced = make_queue(ext).fetch_job(job_id)
    assert replaced is not None and replaced.get_status(refresh=True) == JobStatus.QUEUED


def test_a_job_whose_execution_vanishes_as_it_is_replaced_is_queued_again(app: Flask) -> None:
    """RQ deletes a job by reading each of its executions; one its worker deleted in
    between (the job had just ended) raised ValueError, and starting an export failed
    with "could not be queued" (CI: the sweep had queued the new run's plan a moment
    before start_export did, and a worker had just run it)."""
    import time

    from rq.job import JobStatus

    from flask_mcsync import state
    from flask_mcsync.enqueue import enqueue_plan

    ext = state(app)
    job = _plan_job_taken(ext, 4242, JobStatus.FINISHED)  # ... and ran it
    # An execution the worker is deleting: listed, its record already gone.
    ext.redis.zadd(job.execution_registry.key, {"vanished": time.time() + 600})

    assert enqueue_plan(ext, 4242)

    _assert_queued_afresh(ext, job.id)


def test_a_job_that_ends_as_it_is_replaced_is_queued_again(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job itself can end between the look at its status and its deletion: its
    worker deletes it as it ends (its result is not kept), and RQ's ``delete`` then
    raised InvalidJobOperation, so starting an export failed (full suite, loaded machine:
    ``test_worker_killed_mid_run_loses_nothing``)."""
    from rq.job import Job, JobStatus

    from flask_mcsync import state
    from flask_mcsync.enqueue import enqueue_plan

    ext = state(app)
    job = _plan_job_taken(ext, 4343, JobStatus.STARTED)
    looked = Job.get_status
    ended: list[str] = []

    def ends_right_after_the_look(self: Job, refresh: bool = True) -> JobStatus:
        status = looked(self, refresh)
        if self.id == job.id and status == JobStatus.STARTED:
            self.connection.delete(self.key)  # the worker ends it and deletes it
            ended.append(self.id)
        return status

    monkeypatch.setattr(Job, "get_status", ends_right_after_the_look)
    assert enqueue_plan(ext, 4343)
    monkeypatch.undo()

    assert ended == [job.id], "the job did not end where the test meant it to"
    _assert_queued_afresh(ext, job.id)


@pytest.mark.parametrize(
    "status, after_fetch, queued_again",
    [
        # Started: the first look, just after the fetch, finds it gone: queued afresh.
        ("started", 1, True),
        # "Queued" but out of the queue: the second look, after the grace, finds it gone:
        # a live worker took it and ended it, so nothing is queued.
        ("queued", 2, False),
    ],
)
def test_a_job_that_ends_right_after_it_is_fetched_is_taken_for_ended(
    app: Flask,
    monkeypatch: pytest.MonkeyPatch,
    status: str,
    after_fetch: int,
    queued_again: bool,
) -> None:
    """The same race one step earlier: the job ends (and is deleted) between fetching it
    and reading its status, there and in the second look at a job a worker is taking."""
    from rq import Queue
    from rq.job import JobStatus

    from flask_mcsync import enqueue, state
    from flask_mcsync.enqueue import enqueue_plan, make_queue

    ext = state(app)
    job = _plan_job_taken(ext, 4444, JobStatus(status))
    fetch = Queue.fetch_job
    fetches_left = [after_fetch]

    def ends_right_after_the_fetch(self: Queue, job_id: str) -> Any:
        found = fetch(self, job_id)
        if found is not None and job_id == job.id:
            fetches_left[0] -= 1
            if fetches_left[0] == 0:
                self.connection.delete(found.key)  # its worker ends it and deletes it
        return found

    monkeypatch.setattr(Queue, "fetch_job", ends_right_after_the_fetch)
    monkeypatch.setattr(enqueue, "TAKEN_GRACE", 0.0)
    assert enqueue_plan(ext, 4444) is queued_again
    monkeypatch.undo()

    assert fetches_left == [0], "the job did not end where the test meant it to"
    if queued_again:
        _assert_queued_afresh(ext, job.id)
    else:
        assert ext.redis.lpos(make_queue(ext).key, job.id) is None
        assert make_queue(ext).fetch_job(job.id) is None


def test_a_scheduled_job_the_scheduler_queues_meanwhile_is_not_queued_twice(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status read as "scheduled", then RQ's scheduler moves the job to the queue before
    we look in its registry: the job is waiting, and queueing our stale copy would have
    put its id in the queue twice (found by a helper's review)."""
    from rq.job import Job, JobStatus

    from flask_mcsync import state
    from flask_mcsync.enqueue import enqueue_plan

    ext = state(app)
    assert enqueue_plan(ext, 4646)
    job_id = "mcsync-plan-4646"
    looked = Job.get_status
    first_look: list[str] = []

    def scheduler_moves_it_right_after(self: Job, refresh: bool = True) -> JobStatus:
        status = looked(self, refresh)
        if self.id == job_id and not first_look:
            first_look.append(job_id)
            return JobStatus.SCHEDULED  # what we read, an instant before the scheduler ran
        return status

    monkeypatch.setattr(Job, "get_status", scheduler_moves_it_right_after)
    assert not enqueue_plan(ext, 4646)
    monkeypatch.undo()

    assert first_look == [job_id]
    _assert_queued_afresh(ext, job_id)  # the scheduler's one copy, nothing more


def test_sweep_never_queues_a_second_job_for_a_batch(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    from flask_mcsync import state
    from flask_mcsync.enqueue import enqueued_count
    from flask_mcsync.sweep import sweep_once
    from flask_mcsync.times import utcnow

    expected = _prepare(app, 90)
    ext = state(app)
    sandbox.client.set_faults(batch_ops_per_second=3)  # the batches stay "processing"
    (worker,) = workers.start(1)
    run_id = _start(app, batch_size=30)
    wait_for(
        lambda: (
            len(_batches(run_id)) == 3 and all(b.status == "processing" for b in _batches(run_id))
        ),
        timeout=30,
        what="every batch sent to Mailchimp",
    )
    workers.kill(worker)  # its scheduler goes with it: the polls it scheduled wait
    latest = max(b.lease_until for b in _batches(run_id))
    wait_for(lambda: utcnow() > latest, timeout=30, what="the batches' leases to run out")
    for _ in range(3):
        sweep_once(ext)
        per_batch = _waiting_jobs_per_batch(ext)
        assert set(per_batch.values()) == {1}, per_batch
        assert set(per_batch) == {b.id for b in _batches(run_id)}

    sandbox.client.set_faults(batch_ops_per_second=20_000)
    workers.start(2)
    data = wait_run_ended(_db().session, run_id, timeout=60)
    _assert_all_recorded(sandbox, run_id, expected, data)
    polls = sandbox.client.stats()["requests_by_kind"].get("batch", 0)
    jobs = enqueued_count(ext)
    print(f"jobs enqueued: {jobs} for {len(data['batches'])} batches and {polls} polls")
    assert jobs <= len(data["batches"]) + polls + 5


def test_batch_that_gives_up_records_what_mailchimp_holds_as_synced(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    """Results that always expire use up the re-send budget, but every send reached
    Mailchimp: each address is looked up, and none is recorded as failed."""
    from flask_mcsync.models import Outcome

    expected = _prepare(app, 40)
    sandbox.client.set_faults(expire_results=True)
    workers.env["MCSYNC_MAX_ATTEMPTS"] = "2"
    workers.start(1)
    run_id = _start(app, batch_size=50)
    data = wait_run_ended(_db().session, run_id, timeout=40)

    _assert_all_recorded(sandbox, run_id, expected, data)
    assert data["created"] == len(expected.send)
    (batch,) = _batches(run_id)
    assert batch.resends == 2 and "Mailchimp holds every address" in (batch.last_error or "")
    session = _db().session
    assert not session.execute(
        sa.select(Outcome.id).where(Outcome.run_id == run_id, Outcome.outcome == "error")
    ).all()


def test_batch_that_never_reached_mailchimp_gives_up_with_errors(
    app: Flask, sandbox: Any, workers: Any
) -> None:
    from flask_mcsync.models import Outcome

    expected = _prepare(app, 30)
    sandbox.client.set_faults(retry_after=0, next=[{"status": 503, **SUBMIT, "count": 2}])
    workers.env["MCSYNC_MAX_ATTEMPTS"] = "2"
    workers.start(1)
    run_id = _start(app, batch_size=50)
    data = wait_run_ended(_db().session, run_id, timeout=40)

    assert data["status"] == "failed"
    assert data["errors"] == len(expected.send) and audience_members(sandbox) == {}
    session = _db().session
    titles = set(
        session.execute(sa.select(Outcome.error_title).where(Outcome.run_id == run_id)).scalars()
    )
    assert titles == {"Gave up after 2 tries"}


def test_worker_that_lost_the_lease_before_sending_leaves_the_send_to_the_new_holder(
    app: Flask, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load a worker stalls between taking a batch and sending it, past its lease,
    and the sweep hands the batch to another worker. The stalled one must not send it:
    its send created the members before the holder recorded when the batch was first
    sent, so Mailchimp's answer to the holder's own send (each member already there,
    opted in seconds before) read "updated" for members this export created.

    One process plays both workers, in the order load produced: deterministic."""
    from flask_mcsync import batch_sync, leases, planner, state
    from flask_mcsync.models import Batch, Outcome, PlanChunk, Run
    from flask_mcsync.times import utcnow

    expected = _prepare(app, 40)
    ext = state(app)
    run_id = _start(app, batch_size=100)
    planner.plan(ext, run_id)  # cuts the run into key ranges; each is planned here
    session = ext.session
    chunks = session.execute(
        sa.select(PlanChunk.id).where(PlanChunk.run_id == run_id).order_by(PlanChunk.seq)
    ).scalars()
    for chunk_id in list(chunks):
        planner.plan_chunk(ext, chunk_id)
    batch_id = session.execute(sa.select(Batch.id).where(Batch.run_id == run_id)).scalar_one()
    session.commit()
    # Worker A takes the batch, then stalls until its lease has run out.
    stalled = leases.claim(session, Batch, batch_id, ext.config.lease_seconds)
    assert stalled is not None
    session.execute(
        sa.update(Batch)
        .where(Batch.id == batch_id)
        .values(lease_until=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    real_gateway_for = batch_sync.gateway_for

    def gateway_of_worker_b(ext: Any) -> Any:
        # B has taken the batch over and read it; now A wakes up and goes on sending.
        monkeypatch.setattr(batch_sync, "gateway_for", real_gateway_for)
        batch_sync._submit(
            ext,
            real_gateway_for(ext),
            session.get(Run, run_id),
            session.get(Batch, batch_id),
            stalled,
        )
        wait_for(
            lambda: all(s == "finished" for s in sandbox.client.stats()["batches"].values()),
            timeout=20,
            what="Mailchimp to process what worker A sent",
        )
        # B, slowed by the load too, sends later than the clock skew allowed.
        woke = utcnow()
        wait_for(lambda: utcnow() - woke > timedelta(seconds=3), timeout=10)
        return real_gateway_for(ext)

    monkeypatch.setattr(batch_sync, "gateway_for", gateway_of_worker_b)
    batch_sync.advance(ext, batch_id)  # worker B: claims the expired lease and sends

    def finished() -> bool:
        if not all(s == "finished" for s in sandbox.client.stats()["batches"].values()):
            return False
        token = session.execute(
            sa.select(Batch.lease_token).where(Batch.id == batch_id)
        ).scalar_one()
        session.commit()
        if token is None:
            return True
        batch_sync.advance(ext, batch_id, token)  # B's scheduled poll
        return False

    wait_for(finished, timeout=30, what="the batch to be recorded")
    assert set(audience_members(sandbox)) == set(expected.send)
    outcomes = Counter(
        session.execute(
            sa.select(Outcome.outcome).where(Outcome.run_id == run_id, Outcome.outcome != "skipped")
        ).scalars()
    )
    session.commit()
    assert outcomes == {"created": len(expected.send)}
    assert len(sandbox.client.stats()["batches"]) == 1, "only the lease holder sends"


def test_a_job_a_live_worker_is_starting_is_not_queued_twice(app: Flask) -> None:
    """RQ takes a job out of the queue, then marks it started a moment later: a sweep
    looking in between must not take it for a dead worker's and queue a copy."""
    from rq.job import JobStatus

    from flask_mcsync import state
    from flask_mcsync.enqueue import enqueue_plan, make_queue

    _prepare(app, 30)
    ext = state(app)
    queue = make_queue(ext)
    run_id = _start(app, batch_size=30)  # no worker: the plan job waits in the queue
    job_id = f"mcsync-plan-{run_id}"
    # What RQ does when a worker takes this job (BLMOVE to its intermediate list).
    assert ext.redis.lrem(queue.key, 0, job_id) == 1
    ext.redis.rpush(queue.intermediate_queue_key, job_id)
    job = queue.fetch_job(job_id)
    starting = threading.Timer(0.2, lambda: job.set_status(JobStatus.STARTED))
    starting.start()
    try:
        assert enqueue_plan(ext, run_id) is False
    finally:
        starting.join()
    assert job_id not in queue.get_job_ids()  # no copy queued
    assert queue.fetch_job(job_id) is not None  # nor the worker's job deleted


@pytest.mark.parametrize("started_ago, queued_again", [(1.0, False), (600.0, True)])
def test_a_chunk_job_named_by_a_lease_and_started_is_queued_again_only_when_long_started(
    app: Flask, started_ago: float, queued_again: bool
) -> None:
    """A job the sweep names by a chunk's lease claims the chunk right after it starts.
    Started a moment ago, it is left to do so; started long ago without claiming, its
    worker died first (RQ keeps an in-process worker's job "started" for hours): it is
    queued again, or the chunk would wait that long."""
    from datetime import datetime, timedelta, timezone

    from rq.job import JobStatus

    from flask_mcsync import state
    from flask_mcsync.enqueue import enqueue_chunk, make_queue

    ext = state(app)
    assert enqueue_chunk(ext, 77, "t0k3n")
    job_id = "mcsync-chunk-77-t0k3n"
    job = make_queue(ext).fetch_job(job_id)
    assert job is not None
    ext.redis.lrem(make_queue(ext).key, 0, job_id)  # a worker took it...
    job.started_at = datetime.now(timezone.utc) - timedelta(seconds=started_ago)
    job.save()
    job.set_status(JobStatus.STARTED)  # ... and started it

    assert enqueue_chunk(ext, 77, "t0k3n") is queued_again
    if queued_again:
        _assert_queued_afresh(ext, job_id)
    else:
        assert ext.redis.lpos(make_queue(ext).key, job_id) is None


def test_the_sweep_queues_a_chunk_whose_planner_died_under_a_name_its_first_job_does_not_hold(
    app: Flask, sandbox: Any
) -> None:
    """A chunk's first job, ``mcsync-chunk-{id}``, may still be running, planning other
    chunks it went on with, when the job that later resumed the chunk dies holding its
    lease. The sweep must not take that running job for the chunk's: it queues one
    named by the dead job's lease, once, and that job plans the chunk to its end."""
    from rq.job import JobStatus

    from flask_mcsync import jobs, leases, planner, state
    from flask_mcsync.enqueue import enqueue_chunk, make_queue
    from flask_mcsync.models import Batch, PlanChunk
    from flask_mcsync.statuses import ChunkStatus
    from flask_mcsync.sweep import sweep_once
    from flask_mcsync.times import utcnow

    _prepare(app, 60)
    ext = state(app)
    run_id = _start(app, batch_size=100)
    planner.plan(ext, run_id)  # cut into chunks; the first one's job is queued
    session = ext.session
    chunk_id = (
        session.execute(
            sa.select(PlanChunk.id).where(PlanChunk.run_id == run_id).order_by(PlanChunk.seq)
        )
        .scalars()
        .first()
    )
    session.commit()
    assert chunk_id is not None
    queue = make_queue(ext)
    first_job = f"mcsync-chunk-{chunk_id}"
    enqueue_chunk(ext, chunk_id)
    job = queue.fetch_job(first_job)
    assert job is not None
    ext.redis.lrem(queue.key, 0, first_job)  # a worker runs it, on another chunk by now
    job.started_at = utcnow()
    job.save()
    job.set_status(JobStatus.STARTED)
    dead = leases.claim(session, PlanChunk, chunk_id, ext.config.lease_seconds)
    assert dead is not None  # the job that resumed the chunk, then died holding it
    session.execute(
        sa.update(PlanChunk)
        .where(PlanChunk.id == chunk_id)
        .values(lease_until=utcnow() - timedelta(seconds=1))
    )
    session.commit()

    assert sweep_once(ext)["plans"] == 1
    named = f"mcsync-chunk-{chunk_id}-{dead}"
    running = queue.fetch_job(first_job)  # left alone: a live worker's, on another chunk
    assert running is not None and running.get_status() == JobStatus.STARTED
    assert ext.redis.lpos(queue.key, first_job) is None
    assert ext.redis.lpos(queue.key, named) is not None
    assert queue.fetch_job(named).args == (chunk_id,)  # the token only names the job
    assert sweep_once(ext)["plans"] == 0  # it waits: not queued twice
    assert queue.get_job_ids().count(named) == 1

    jobs.plan_chunk(chunk_id)  # what that job runs: it claims the expired lease
    status = session.execute(
        sa.select(PlanChunk.status).where(PlanChunk.id == chunk_id)
    ).scalar_one()
    planned = session.execute(
        sa.select(sa.func.count()).select_from(Batch).where(Batch.run_id == run_id)
    ).scalar_one()
    session.commit()
    assert status == ChunkStatus.DONE and planned >= 1
