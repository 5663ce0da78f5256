"""The sweep: finding work nobody is doing (a worker died, Redis lost a job) and queueing it.

Every worker runs it from its maintenance loop (:mod:`worker`), at most once per
``MCSYNC_SWEEP_INTERVAL`` across all workers; ``flask mcsync sweep`` runs it by hand.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from .app_state import McSync
from .enqueue import enqueue_batch, enqueue_chunk, enqueue_plan
from .models import Batch, OutboxItem, PlanChunk, Run
from .outbox import due_items, ready
from .runs import chunks_left, end_planning, finish_if_complete, resumable
from .statuses import BATCH_ENDED, RUN_ENDED, ChunkStatus, RunKind, RunStatus
from .times import utcnow
from .webhook_events import due_events, hand_off

SWEEP_GUARD_KEY = "mcsync:sweep:recent"
OUTBOX_KEEP = timedelta(days=7)  # handled rows live on as outcomes after that


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
        "plans_ended": 0,
        "batches": 0,
        "runs_closed": 0,
        "outbox": 0,
        "outbox_pruned": 0,
        "webhook_events": 0,
    }
    # A run not yet cut into chunks waits for its plan job; once cut, for its chunks'.
    cut = sa.select(PlanChunk.id).where(PlanChunk.run_id == Run.id).exists()
    uncut = sa.select(Run.id).where(
        Run.kind == RunKind.EXPORT,
        Run.status.not_in(RUN_ENDED),
        Run.planning_done.is_(False),
        sa.or_(Run.lease_until.is_(None), Run.lease_until < now),
        ~cut,
    )
    for run_id in session.execute(uncut).scalars().all():
        counts["plans"] += int(enqueue_plan(ext, run_id))
    # A chunk whose planner died, and the first chunk not started or paused (each chunk
    # queues the next when it starts sending, a batch's end resumes a paused one: either
    # job may be the one lost).
    unplanned = (
        sa.select(PlanChunk.id, PlanChunk.run_id, PlanChunk.lease_until, PlanChunk.lease_token)
        .join(Run, Run.id == PlanChunk.run_id)
        .where(
            Run.status == RunStatus.RUNNING,
            PlanChunk.status != ChunkStatus.DONE,
            sa.or_(PlanChunk.lease_until.is_(None), PlanChunk.lease_until < now),
        )
        .order_by(PlanChunk.run_id, PlanChunk.seq)
    )
    first_waiting: set[int] = set()
    for chunk_id, run_id, lease_until, lease_token in session.execute(unplanned).all():
        if lease_until is None:
            if run_id in first_waiting:
                continue
            first_waiting.add(run_id)
            if lease_token is not None:  # paused: resumed once few enough batches are out
                paused = resumable(ext, run_id)
                counts["plans"] += int(paused is not None and enqueue_chunk(ext, *paused))
                continue
        # Named by its lease once started: its first job's name may be planning another.
        counts["plans"] += int(enqueue_chunk(ext, chunk_id, lease_token))
    # The job a stalled batch waits for is named by its row (see batch_job_id): one that
    # still waits in the queue (a long queue outlives a lease) is left alone.
    stalled = (
        sa.select(Batch.id, Batch.lease_token)
        .join(Run, Run.id == Batch.run_id)
        .where(
            Run.status == RunStatus.RUNNING,
            Batch.status.not_in(BATCH_ENDED),
            sa.or_(Batch.lease_until.is_(None), Batch.lease_until < now),
        )
    )
    for batch_id, token in session.execute(stalled).all():
        counts["batches"] += int(enqueue_batch(ext, batch_id, token))
    # Every chunk done and planning still open: the last chunk's worker died between
    # committing its chunk's end and marking the run's (see end_planning).
    planned_out = sa.select(Run.id).where(
        Run.kind == RunKind.EXPORT,
        Run.status == RunStatus.RUNNING,
        Run.planning_done.is_(False),
        cut,
        ~chunks_left(Run.id).exists(),
    )
    for run_id in session.execute(planned_out).scalars().all():
        counts["plans_ended"] += int(end_planning(ext, run_id))

    running = sa.select(Run.id).where(
        Run.kind == RunKind.EXPORT, Run.status == RunStatus.RUNNING, Run.planning_done.is_(True)
    )
    for (run_id,) in session.execute(running).all():
        counts["runs_closed"] += int(finish_if_complete(ext, run_id))
    session.commit()
    # Auto-sync rows whose job was lost (Redis down at signup, restarted) or whose
    # worker died while sending.

    due = due_items(session, idle_seconds=ext.config.sweep_interval)
    if due:
        # A sorted set: rows still waiting there from before are not added twice.
        ready(ext, due, always_drain=True)
    counts["outbox"] = len(due)
    # Handled rows live on as outcomes; pruning keeps the outbox (and its scans) small.
    pruned = session.execute(
        sa.delete(OutboxItem).where(
            ~OutboxItem.waiting(),
            OutboxItem.updated_at < now - OUTBOX_KEEP,
        )
    )
    session.commit()
    counts["outbox_pruned"] = int(getattr(pruned, "rowcount", 0) or 0)
    # Webhook events recorded while Redis was down (or whose job was lost).

    events = due_events(session, idle_seconds=ext.config.sweep_interval)
    session.commit()
    if events:
        hand_off(ext, events)
    counts["webhook_events"] = len(events)
    return counts
