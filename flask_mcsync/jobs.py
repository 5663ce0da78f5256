"""The RQ jobs and how they are queued.

Job functions are thin: they find the app's state and call the module that does the
work (:mod:`planner`, :mod:`batch_sync`). Nothing is passed to a job but ids and lease
tokens: the rows are the truth, so a job that runs twice or late does no harm.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from rq import Queue
from rq.job import Job, JobStatus

from .extension import McSync, state
from .models import Batch, OutboxItem, PlanChunk, Run, utcnow

log = logging.getLogger(__name__)

SWEEP_GUARD_KEY = "mcsync:sweep:recent"
PLAN_TIMEOUT = 4 * 3600  # a million-row source is read in minutes; leave ample room
BATCH_TIMEOUT = 15 * 60
FAILURE_TTL = 7 * 24 * 3600
RESYNC_TRIES = 3
OUTBOX_KEEP = timedelta(days=7)  # handled rows live on as outcomes after that


# --- job functions (run in a worker, inside the app context) -------------------------


def plan_run(run_id: int, token: str | None = None) -> None:
    from .planner import LostLease, plan

    try:
        plan(state(), run_id, token)
    except LostLease as exc:
        log.info("%s", exc)


def plan_chunk(chunk_id: int, token: str | None = None) -> None:
    from .planner import LostLease
    from .planner import plan_chunk as plan_range

    try:
        plan_range(state(), chunk_id, token)
    except LostLease as exc:
        log.info("%s", exc)


def advance_batch(batch_id: int, token: str | None = None) -> None:
    from .batch_sync import advance

    advance(state(), batch_id, token)


def drain_outbox() -> dict[str, int]:
    from .outbox import drain

    return drain(state())


def sync_outbox_item(item_id: int) -> str:
    from .single_sync import send_outbox_item

    return send_outbox_item(state(), item_id)


def resync_address(run_id: int, email: str) -> None:
    """The diagnostic tool's "Re-synchronize": one address, same rules as every path."""
    from .gateway import MailchimpError, TransientError
    from .retry import backoff_seconds
    from .single_sync import fail_run, run_single
    from .throttle import SlotTimeout

    ext = state()
    # The shop owner is looking at the page: a few quick tries, then the error is shown.
    for attempt in range(1, RESYNC_TRIES + 1):
        try:
            run_single(
                ext, email, kind="resync", started_by="diagnostic", wants="resync", run_id=run_id
            )
            return
        except (TransientError, SlotTimeout) as exc:
            ext.session.rollback()
            error = exc if isinstance(exc, MailchimpError) else TransientError("Busy", str(exc))
            if attempt < RESYNC_TRIES:
                time.sleep(min(backoff_seconds(attempt, error.retry_after), 20.0))
                continue
            failure: MailchimpError = TransientError(
                f"Gave up after {attempt} tries", f"{error.title}: {error.detail}"
            )
        except MailchimpError as exc:
            ext.session.rollback()
            failure = exc
        fail_run(ext, run_id, email, failure, kind="resync", started_by="diagnostic")
        return


def apply_webhook_event(event_id: int) -> str:
    from .webhooks import apply_event

    return apply_event(state(), event_id)


def reconcile_audience() -> dict[str, Any]:
    """The periodic reconcile (queued by the workers' maintenance loop)."""
    from .reconcile import ReconcileBusy, reconcile

    try:
        return reconcile(state(), started_by="schedule").as_dict()
    except ReconcileBusy as exc:
        log.info("%s", exc)
        return {}


# --- queueing ---------------------------------------------------------------------------

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


def _enqueue_once(ext: McSync, job_id: str, func: Any, *args: Any, timeout: int) -> bool:
    """Queue ``func(*args)`` under a fixed id unless that job still waits; True if queued.

    A job waits when its id is in the queue, or scheduled for a time still to come. A
    job that says "queued" but is not in the queue was taken by a worker that died
    before starting it (it sits in RQ's intermediate list, which RQ clears only after a
    minute or more): it is queued again now. A scheduled job whose time has passed is
    moved to the queue, as RQ's scheduler would, since that scheduler may have died too.
    """
    queue = ext.queue()
    job = queue.fetch_job(job_id)
    if job is not None:
        status = job.get_status(refresh=True)
        if status == JobStatus.DEFERRED:
            return False
        if status == JobStatus.SCHEDULED:
            return _enqueue_if_overdue(ext, queue, job)
        if status == JobStatus.QUEUED and ext.redis.lpos(queue.key, job_id) is not None:
            return False
        ext.redis.lrem(queue.intermediate_queue_key, 0, job_id)
        job.delete()  # finished, failed, started by a worker that is gone, or lost
    queue.enqueue(
        func, *args, job_id=job_id, job_timeout=timeout, result_ttl=0, failure_ttl=FAILURE_TTL
    )
    _counted(ext)
    return True


def _enqueue_if_overdue(ext: McSync, queue: Queue, job: Job) -> bool:
    registry = queue.scheduled_job_registry
    due = ext.redis.zscore(registry.key, job.id)
    if due is not None and due > time.time():
        return False
    # Whoever removes it from the registry queues it: never the scheduler and us both.
    if due is not None and not registry.remove(job):
        return False
    queue.enqueue_job(job)
    return True


def enqueue_plan(ext: McSync, run_id: int) -> bool:
    return _enqueue_once(ext, f"mcsync-plan-{run_id}", plan_run, run_id, timeout=PLAN_TIMEOUT)


def enqueue_chunk(ext: McSync, chunk_id: int) -> bool:
    """Queue the planning of one key range of a run unless its job already waits."""
    return _enqueue_once(
        ext, f"mcsync-chunk-{chunk_id}", plan_chunk, chunk_id, timeout=PLAN_TIMEOUT
    )


def enqueue_batch(ext: McSync, batch_id: int, token: str | None = None) -> bool:
    """Queue the batch's next step unless its job already waits (see :func:`batch_job_id`)."""
    return _enqueue_once(
        ext,
        batch_job_id(batch_id, token),
        advance_batch,
        batch_id,
        token,
        timeout=BATCH_TIMEOUT,
    )


def schedule_batch(ext: McSync, batch_id: int, token: str, delay: float) -> Job:
    """Run the batch's next step after ``delay`` seconds (needs a worker with scheduler)."""
    queue = ext.queue()
    options: dict[str, Any] = {
        "job_id": batch_job_id(batch_id, token),
        "job_timeout": BATCH_TIMEOUT,
        "result_ttl": 0,
        "failure_ttl": FAILURE_TTL,
    }
    _counted(ext)
    if delay <= 0:
        return queue.enqueue(advance_batch, batch_id, token, **options)
    return queue.enqueue_in(_not_before(delay), advance_batch, batch_id, token, **options)


def _not_before(delay: float) -> timedelta:
    """A delay RQ will not cut short.

    RQ's scheduler keeps times in whole seconds, so a job can run up to a second early;
    a delay of a second or more (a backoff, a Retry-After) is rounded up past that.
    Sub-second poll intervals are left as they are: early is harmless there.
    """
    return timedelta(seconds=math.ceil(delay) + 1 if delay >= 1 else delay)


def enqueue_drain(ext: McSync) -> None:
    ext.queue().enqueue(drain_outbox, job_timeout=3600, result_ttl=0, failure_ttl=FAILURE_TTL)


def enqueue_outbox_item(ext: McSync, item_id: int, delay: float = 0) -> None:
    options: dict[str, Any] = {"job_timeout": 300, "result_ttl": 0, "failure_ttl": FAILURE_TTL}
    queue = ext.queue()
    if delay > 0:
        queue.enqueue_in(_not_before(delay), sync_outbox_item, item_id, **options)
    else:
        queue.enqueue(sync_outbox_item, item_id, **options)


def enqueue_webhook_event(ext: McSync, event_id: int) -> None:
    ext.queue().enqueue(
        apply_webhook_event,
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
    return _enqueue_once(ext, "mcsync-reconcile", reconcile_audience, timeout=RECONCILE_TIMEOUT)


def enqueue_resync(ext: McSync, run_id: int, email: str) -> None:
    ext.queue().enqueue(
        resync_address, run_id, email, job_timeout=300, result_ttl=0, failure_ttl=FAILURE_TTL
    )


def sweep_if_due(ext: McSync) -> dict[str, int] | None:
    """Run the sweep unless another worker ran it less than an interval ago.

    Called from every worker's maintenance loop, not from a scheduled job: a scheduled
    job needs RQ's scheduler, whose lock a SIGKILLed worker keeps for a minute, and the
    sweep is exactly what must keep working when a worker died.
    """
    if not ext.redis.set(SWEEP_GUARD_KEY, "1", nx=True, ex=ext.config.sweep_interval):
        return None
    return sweep_once(ext)


def sweep_once(ext: McSync) -> dict[str, int]:
    """Find runs and batches nobody is working on and queue them again.

    * planning not done and its lease expired (planner died), or never taken and no plan
      job waiting (the job was lost, e.g. Redis restarted); once the run is cut into
      chunks, the same for each chunk not done;
    * a batch whose lease expired (its worker died between two steps, or its scheduled
      poll was lost), or never taken and no job waiting for it;
    * a run whose batches are all ended but which was not closed.
    """
    session = ext.session
    now = utcnow()
    counts = {
        "plans": 0,
        "batches": 0,
        "runs_closed": 0,
        "outbox": 0,
        "outbox_pruned": 0,
        "webhook_events": 0,
    }
    # A run not yet cut into chunks waits for its plan job; once cut, for its chunks'.
    cut = sa.select(PlanChunk.id).where(PlanChunk.run_id == Run.id).exists()
    uncut = sa.select(Run.id).where(
        Run.kind == "export",
        Run.status.in_(("queued", "running")),
        Run.planning_done.is_(False),
        sa.or_(Run.lease_until.is_(None), Run.lease_until < now),
        ~cut,
    )
    for run_id in session.execute(uncut).scalars().all():
        counts["plans"] += int(enqueue_plan(ext, run_id))
    # A chunk whose planner died, and the first chunk not started (each chunk queues
    # the next when it starts sending: its job may be the one lost).
    unplanned = (
        sa.select(PlanChunk.id, PlanChunk.run_id, PlanChunk.lease_until)
        .join(Run, Run.id == PlanChunk.run_id)
        .where(
            Run.status == "running",
            PlanChunk.status != "done",
            sa.or_(PlanChunk.lease_until.is_(None), PlanChunk.lease_until < now),
        )
        .order_by(PlanChunk.run_id, PlanChunk.seq)
    )
    first_waiting: set[int] = set()
    for chunk_id, run_id, lease_until in session.execute(unplanned).all():
        if lease_until is None:
            if run_id in first_waiting:
                continue
            first_waiting.add(run_id)
        counts["plans"] += int(enqueue_chunk(ext, chunk_id))
    # The job a stalled batch waits for is named by its row (see batch_job_id): one that
    # still waits in the queue (a long queue outlives a lease) is left alone.
    stalled = (
        sa.select(Batch.id, Batch.lease_token)
        .join(Run, Run.id == Batch.run_id)
        .where(
            Run.status == "running",
            Batch.status.not_in(("done", "failed")),
            sa.or_(Batch.lease_until.is_(None), Batch.lease_until < now),
        )
    )
    for batch_id, token in session.execute(stalled).all():
        counts["batches"] += int(enqueue_batch(ext, batch_id, token))
    from .runs import finish_if_complete

    running = sa.select(Run.id).where(
        Run.kind == "export", Run.status == "running", Run.planning_done.is_(True)
    )
    for (run_id,) in session.execute(running).all():
        counts["runs_closed"] += int(finish_if_complete(ext, run_id))
    session.commit()
    # Auto-sync rows whose job was lost (Redis down at signup, restarted) or whose
    # worker died while sending.
    from .outbox import due_items, ready

    due = due_items(session, idle_seconds=ext.config.sweep_interval)
    if due:
        # A sorted set: rows still waiting there from before are not added twice.
        ready(ext, due)
    counts["outbox"] = len(due)
    # Handled rows live on as outcomes; pruning keeps the outbox (and its scans) small.
    pruned = session.execute(
        sa.delete(OutboxItem).where(
            OutboxItem.status.not_in(("pending", "sending")),
            OutboxItem.updated_at < now - OUTBOX_KEEP,
        )
    )
    session.commit()
    counts["outbox_pruned"] = int(getattr(pruned, "rowcount", 0) or 0)
    # Webhook events recorded while Redis was down (or whose job was lost).
    from .webhooks import due_events, hand_off

    events = due_events(session, idle_seconds=ext.config.sweep_interval)
    session.commit()
    if events:
        hand_off(ext, events)
    counts["webhook_events"] = len(events)
    return counts
