"""Queueing jobs: by dotted path, under ids that say what they are for, counted.

Jobs are named by their dotted path in :mod:`jobs` (``"flask_mcsync.jobs.plan_run"``),
never by the function object: that keeps this module below the services that queue
their next step (a batch its next poll, a sent row its retry), and it is what RQ stores
anyway, so jobs queued by an older version run the same.

The queue's job class runs each job inside the app context of the worker's app
(:class:`AppJob`, bound by :func:`bind_app` when a worker starts).
"""

from __future__ import annotations

import math
import os
import time
import weakref
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from rq import Queue
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus

from .times import parse_time, utcnow

if TYPE_CHECKING:
    from .app_state import McSync

PLAN_TIMEOUT = 4 * 3600  # a million-row source is read in minutes; leave ample room
BATCH_TIMEOUT = 15 * 60
FAILURE_TTL = 7 * 24 * 3600

#: The module holding the job functions; what RQ stores for each job is this plus a name.
JOBS = "flask_mcsync.jobs"
PLAN_RUN = f"{JOBS}.plan_run"
PLAN_CHUNK = f"{JOBS}.plan_chunk"
ADVANCE_BATCH = f"{JOBS}.advance_batch"
DRAIN_OUTBOX = f"{JOBS}.drain_outbox"
SYNC_OUTBOX_ITEM = f"{JOBS}.sync_outbox_item"
RESYNC_ADDRESS = f"{JOBS}.resync_address"
APPLY_WEBHOOK_EVENT = f"{JOBS}.apply_webhook_event"
RECONCILE_AUDIENCE = f"{JOBS}.reconcile_audience"


class AppJob(Job):
    """An RQ job run inside the app context of the worker's app."""

    ext_ref: ClassVar[weakref.ref[McSync] | None] = None
    parent_pid: ClassVar[int | None] = None

    def perform(self) -> Any:
        ext = AppJob.ext_ref() if AppJob.ext_ref else None
        if ext is None:
            raise RuntimeError(
                "This RQ worker has no Flask app: start it with 'flask mcsync worker' so"
                " jobs run inside the shop's app context."
            )
        with ext.app.app_context():
            if os.getpid() != AppJob.parent_pid:
                ext.db.engine.dispose(close=False)
            return super().perform()


def bind_app(ext: McSync) -> None:
    """Make jobs performed in this process (and its forks) run in the context of ``ext``'s app."""
    AppJob.ext_ref = weakref.ref(ext)
    AppJob.parent_pid = os.getpid()


def make_queue(ext: McSync) -> Queue:
    return Queue(ext.config.queue_name, connection=ext.redis, job_class=AppJob)


# How many export jobs (plans and batch steps) this app queued, ever: the benchmark and
# the tests read it to check that no batch is queued twice. Auto-sync jobs are not
# counted: a signup must not pay a round trip for a statistic.
ENQUEUED_KEY = "mcsync:jobs:export-enqueued:{queue}"


def batch_job_id(batch_id: int, token: str | None) -> str:
    """The id of the job that takes a batch's next step.

    Deterministic, so the sweep can see whether that job still waits instead of queueing
    another: a planned batch's first job has no token; every later step's job carries
    the lease token the batch row holds (each step takes a fresh one), so it never
    collides with the job that scheduled it.
    """
    return f"mcsync-batch-{batch_id}" if token is None else f"mcsync-batch-{batch_id}-{token}"


def enqueued_count(ext: McSync) -> int:
    """Export jobs (plans and batch steps, scheduled ones included) queued so far."""
    return int(ext.redis.get(ENQUEUED_KEY.format(queue=ext.config.queue_name)) or 0)


def _counted(ext: McSync) -> None:
    ext.redis.incr(ENQUEUED_KEY.format(queue=ext.config.queue_name))


def _enqueue_once(
    ext: McSync,
    job_id: str,
    func: str,
    *args: Any,
    timeout: int,
    at_front: bool = False,
    started_waits: bool = False,
) -> bool:
    """Queue ``func(*args)`` under a fixed id unless that job still waits; True if queued.

    ``at_front``: ahead of the jobs already queued. ``started_waits``: a job of that id
    started less than ``STARTED_GRACE`` ago counts as waiting (for ids whose job is
    done with the name once it has claimed its row, see :func:`enqueue_chunk`); one
    started longer ago was killed before it could claim, and is queued again.

    A job waits when its id is in the queue, or scheduled for a time still to come. A
    job that says "queued" but is not in the queue, and is not started a moment later,
    was taken by a worker that died before starting it (it sits in RQ's intermediate
    list, which RQ clears only after a minute or more): it is queued again now (see
    :func:`_taken_by_a_live_worker`). A scheduled job whose time has passed is
    moved to the queue, as RQ's scheduler would, since that scheduler may have died too.
    """
    queue = make_queue(ext)
    job = queue.fetch_job(job_id)
    if job is not None:
        status = _status(job)  # None: its worker ended and deleted it just now
        if status == JobStatus.DEFERRED or (
            started_waits and status == JobStatus.STARTED and _started_lately(job)
        ):
            return False
        if status == JobStatus.SCHEDULED:
            return _enqueue_if_overdue(ext, queue, job)
        if status == JobStatus.QUEUED and ext.redis.lpos(queue.key, job_id) is not None:
            return False
        if status == JobStatus.QUEUED and _taken_by_a_live_worker(queue, job_id):
            return False
        ext.redis.lrem(queue.intermediate_queue_key, 0, job_id)
        _delete(ext, job)  # finished, failed, started by a worker that is gone, or lost
    queue.enqueue(
        func,
        *args,
        job_id=job_id,
        job_timeout=timeout,
        result_ttl=0,
        failure_ttl=FAILURE_TTL,
        at_front=at_front,
    )
    _counted(ext)
    return True


# How long a worker may take between taking a job from the queue and marking it started.
TAKEN_GRACE = 1.0
# How long a job named by a lease may take between starting and claiming its row; RQ
# keeps a killed in-process worker's job "started" for the job's timeout (hours).
STARTED_GRACE = 60.0


def _started_lately(job: Job) -> bool:
    started = parse_time(job.started_at)
    if started is None:
        return True  # being started this instant
    return (utcnow() - started).total_seconds() < STARTED_GRACE


def _taken_by_a_live_worker(queue: Queue, job_id: str) -> bool:
    """Whether a "queued" job missing from the queue is being started, not lost.

    RQ moves a job out of the queue, then marks it started a moment later. A sweep that
    looked in between took the job for one a dead worker had left, and queued a second
    copy, which two workers then ran (seen in the full suite on a loaded machine: the
    lease let one of them act, the other's end failed in RQ). So look again after a
    moment: a job started, ended or gone meanwhile was a live worker's. The sweep meets
    this case for a job whose lease has run out. ``start_export`` meets it only when the
    sweep queued the new run's plan job and a worker is taking it at that instant: the
    one time a request waits TAKEN_GRACE.
    """
    time.sleep(TAKEN_GRACE)
    job = queue.fetch_job(job_id)
    status = None if job is None else _status(job)
    if status is None:
        return True  # it ran and ended (its result is not kept)
    return status != JobStatus.QUEUED or (queue.connection.lpos(queue.key, job_id) is not None)


def _status(job: Job) -> JobStatus | None:
    """The job's status read afresh; None when the job is gone meanwhile.

    Between ``fetch_job`` and this read, a worker can end the job and, its result not
    being kept, delete it: RQ then raises ``InvalidJobOperation``. That is the job
    having ended, as if ``fetch_job`` had found nothing.
    """
    try:
        return job.get_status(refresh=True)
    except InvalidJobOperation:
        return None


def _delete(ext: McSync, job: Job) -> None:
    """Delete ``job`` from Redis, even while the worker that ran it cleans up.

    RQ's ``Job.delete`` lists the job's executions, then reads each one; an execution
    its worker deletes in between (the job has just ended) raises ``ValueError``. That
    race made starting an export fail ("could not be queued") when the sweep had queued
    the new run's plan job a moment earlier and a worker had just run it (seen in CI).
    The job's list of executions goes first then, and the job with it.

    The job itself can end in between too: a job whose result is not kept is deleted by
    its worker as it ends, and RQ then fails to read its status (``InvalidJobOperation``;
    seen in the full suite on a loaded machine, the plan job again). Nothing of it is left
    to delete then but, perhaps, its list of executions.
    """
    try:
        try:
            job.delete()
        except ValueError:
            ext.redis.delete(job.execution_registry.key)
            job.delete()
    except InvalidJobOperation:
        ext.redis.delete(job.execution_registry.key)


def _enqueue_if_overdue(ext: McSync, queue: Queue, job: Job) -> bool:
    registry = queue.scheduled_job_registry
    due = ext.redis.zscore(registry.key, job.id)
    if due is not None and due > time.time():
        return False
    # Whoever removes it from the registry queues it: never the scheduler and us both.
    if due is not None and not registry.remove(job):
        return False
    # Not in the registry: RQ's scheduler may have queued it between our look at its
    # status and this one (or a worker run it since). Only a job still "scheduled" and
    # in no registry was lost; queueing any other would queue a stale copy of it.
    if due is None and _status(job) != JobStatus.SCHEDULED:
        return False
    queue.enqueue_job(job)
    return True


def enqueue_plan(ext: McSync, run_id: int) -> bool:
    return _enqueue_once(ext, f"mcsync-plan-{run_id}", PLAN_RUN, run_id, timeout=PLAN_TIMEOUT)


def enqueue_chunk(ext: McSync, chunk_id: int, token: str | None = None) -> bool:
    """Queue the planning of one key range of a run unless its job already waits.

    At the front of the queue: the batches a chunk sends are what keeps Mailchimp busy,
    and the number of them out at once is bounded (``MCSYNC_BATCHES_IN_FLIGHT``), so
    planning first never floods Mailchimp.

    ``token``: the lease token the chunk's row holds (a pause's, or an expired lease's),
    which names the job. A chunk's first job is ``mcsync-chunk-{id}``, but a job goes on
    with other paused chunks when it has planned its own (:func:`~.jobs.advance_batch`),
    so that name may be running for another chunk: a job the sweep queues for a chunk
    that started is named by its lease instead, a new name each time, and one of that
    name started a moment ago counts as waiting (it claims the chunk at once; one
    started long ago died first). The token only names the job: the job claims the
    chunk as any planner does, once no live lease holds it.
    """
    return _enqueue_once(
        ext,
        f"mcsync-chunk-{chunk_id}" if token is None else f"mcsync-chunk-{chunk_id}-{token}",
        PLAN_CHUNK,
        chunk_id,
        timeout=PLAN_TIMEOUT,
        at_front=True,
        started_waits=token is not None,
    )


def enqueue_batch(ext: McSync, batch_id: int, token: str | None = None) -> bool:
    """Queue the batch's next step unless its job already waits (see :func:`batch_job_id`)."""
    return _enqueue_once(
        ext,
        batch_job_id(batch_id, token),
        ADVANCE_BATCH,
        batch_id,
        token,
        timeout=BATCH_TIMEOUT,
    )


def schedule_batch(ext: McSync, batch_id: int, token: str, delay: float) -> Job:
    """Run the batch's next step after ``delay`` seconds (needs a worker with scheduler)."""
    queue = make_queue(ext)
    options: dict[str, Any] = {
        "job_id": batch_job_id(batch_id, token),
        "job_timeout": BATCH_TIMEOUT,
        "result_ttl": 0,
        "failure_ttl": FAILURE_TTL,
    }
    _counted(ext)
    if delay <= 0:
        return queue.enqueue(ADVANCE_BATCH, batch_id, token, **options)
    return queue.enqueue_in(_not_before(delay), ADVANCE_BATCH, batch_id, token, **options)


def _not_before(delay: float) -> timedelta:
    """A delay RQ will not cut short.

    RQ's scheduler keeps times in whole seconds, so a job can run up to a second early;
    a delay of a second or more (a backoff, a Retry-After) is rounded up past that.
    Sub-second poll intervals are left as they are: early is harmless there.
    """
    return timedelta(seconds=math.ceil(delay) + 1 if delay >= 1 else delay)


def enqueue_drain(ext: McSync) -> None:
    make_queue(ext).enqueue(DRAIN_OUTBOX, job_timeout=3600, result_ttl=0, failure_ttl=FAILURE_TTL)


def enqueue_outbox_item(ext: McSync, item_id: int, delay: float = 0) -> None:
    options: dict[str, Any] = {"job_timeout": 300, "result_ttl": 0, "failure_ttl": FAILURE_TTL}
    queue = make_queue(ext)
    if delay > 0:
        queue.enqueue_in(_not_before(delay), SYNC_OUTBOX_ITEM, item_id, **options)
    else:
        queue.enqueue(SYNC_OUTBOX_ITEM, item_id, **options)


def enqueue_webhook_event(ext: McSync, event_id: int) -> None:
    make_queue(ext).enqueue(
        APPLY_WEBHOOK_EVENT,
        event_id,
        job_timeout=300,
        result_ttl=0,
        failure_ttl=FAILURE_TTL,
    )


RECONCILE_GUARD_KEY = "mcsync:reconcile:recent"
RECONCILE_TIMEOUT = 4 * 3600


def reconcile_if_due(ext: McSync) -> bool:
    """Queue a reconcile when MCSYNC_RECONCILE_INTERVAL says one is due (off when 0).

    Called from every worker's maintenance loop, like the sweep; the guard key makes one
    worker of all queue it per interval.
    """
    interval = ext.config.reconcile_interval
    if interval <= 0 or not ext.redis.set(RECONCILE_GUARD_KEY, "1", nx=True, ex=interval):
        return False
    return enqueue_reconcile(ext)


def enqueue_reconcile(ext: McSync) -> bool:
    """Queue a reconcile unless one is already waiting ("Reconcile now", the schedule)."""
    return _enqueue_once(ext, "mcsync-reconcile", RECONCILE_AUDIENCE, timeout=RECONCILE_TIMEOUT)


def enqueue_resync(ext: McSync, run_id: int, email: str) -> None:
    make_queue(ext).enqueue(
        RESYNC_ADDRESS,
        run_id,
        email,
        job_timeout=300,
        result_ttl=0,
        failure_ttl=FAILURE_TTL,
        # RQ logs a job's description at INFO as it takes and ends it, and shows it in
        # `rq info`; by default that is the call with its arguments, the address here.
        description=f"{RESYNC_ADDRESS}(run {run_id})",
    )
