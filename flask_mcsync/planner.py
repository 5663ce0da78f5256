"""Planning a manual export: read the source, judge each address, cut it into batches.

Planning is spread over the workers. The run's first job (:func:`plan`) cuts the
source's primary key into ranges, one :class:`~.models.PlanChunk` row each, and queues
a job per range (:func:`plan_chunk`); every worker can take one, and the chunk's job
sends each batch as soon as it is committed (its polls are jobs of their own), so
sending starts while the rest is still read.

A chunk streams its range in key order and commits one batch at a time, together with
its cursor (``PlanChunk.planned_through``), the counts of what it skipped and the keys
of the addresses it put in the batch (:class:`~.models.PlannedAddress`, whose primary
key does the de-duplication: no process holds every address of the audience). A chunk
killed at any point resumes from its last committed batch: what it had read after that
is read again, nothing is lost, counted or sent twice. Within a chunk the first row in
key order speaks for a contact; across chunks planned side by side, the first chunk to
commit the address does (one contact, sent once, either way).
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import enqueue, jsoncodec, leases
from .addresses import subscriber_hash
from .app_state import McSync
from .eligibility import Deduplicator, Fate, scan
from .errors import McSyncError
from .exclusions import load_ruleset
from .merge_values import convert_all
from .models import Batch, PlanChunk, PlannedAddress, Run
from .outcomes import AddressOutcome, Result, record
from .preflight import recent_types
from .runs import BATCHES_OUT, end_planning, finish_if_complete, full
from .statuses import BatchStatus, ChunkStatus, RunStatus
from .times import utcnow

# A run is cut into at most this many chunks (the jobs a run adds to its batches and
# polls stay a small constant), and a chunk holds at least this many batches' worth of
# rows (a small shop is planned by one job, as before).
MAX_CHUNKS = 16
CHUNK_BATCHES = 10


def plan(ext: McSync, run_id: int, token: str | None = None) -> None:
    """The run's first job: cut the source into chunks and queue a job for each."""
    session = ext.session
    lease = ext.config.lease_seconds
    token = leases.claim(session, Run, run_id, lease, token, status=RunStatus.RUNNING)
    if token is None:
        return  # another worker is cutting it, or it has ended
    run = session.get(Run, run_id)
    assert run is not None
    if run.started_at is None:
        run.started_at = utcnow()
        session.commit()
    if run.planning_done:
        finish_if_complete(ext, run_id)
        return
    chunks = _chunk_ids(session, run_id)
    if not chunks:
        ranges = _ranges(ext, run)
        session.add_all(
            PlanChunk(
                run_id=run_id,
                seq=seq,
                after=None if after is None else json.dumps(after),
                through=None if through is None else json.dumps(through),
            )
            for seq, (after, through) in enumerate(ranges, 1)
        )
        # The chunks hold the planning from now on: the run's lease is given back in
        # the same commit, so the sweep looks at the chunks, not at this job.
        held = session.execute(
            sa.update(Run)
            .where(leases.holds(Run, run_id, token))
            .values(lease_until=None, lease_token=None)
            .execution_options(synchronize_session=False)
        )
        if not getattr(held, "rowcount", 0):
            session.rollback()
            raise LostLease(f"Run {run_id}: another worker took over planning.")
        session.commit()
        chunks = _chunk_ids(session, run_id)
    if chunks:
        enqueue.enqueue_chunk(ext, chunks[0])  # the rest follow one by one (_queue_next)


def _chunk_ids(session: Session, run_id: int) -> list[int]:
    """The run's chunks still to plan, in key order."""
    return list(
        session.execute(
            sa.select(PlanChunk.id)
            .where(PlanChunk.run_id == run_id, PlanChunk.status != ChunkStatus.DONE)
            .order_by(PlanChunk.seq)
        ).scalars()
    )


def _ranges(ext: McSync, run: Run) -> list[tuple[Any, Any]]:
    session = ext.session
    source = ext.require_source()
    if run.planned_through:
        # A run a single planner job had begun before chunks existed: the rest of it is
        # one chunk, and the addresses of its batches are claimed first.
        _claim_planned(session, run.id)
        return [(json.loads(run.planned_through), None)]
    rows = max(run.batch_size * CHUNK_BATCHES, math.ceil(source.count(session) / MAX_CHUNKS))
    return source.key_ranges(session, max(rows, 1))


def _claim_planned(session: Session, run_id: int) -> None:
    batch_ids = session.execute(
        sa.select(Batch.id).where(Batch.run_id == run_id, Batch.retry_of.is_(None))
    ).scalars()
    for batch_id in list(batch_ids):
        payload = session.execute(sa.select(Batch.payload).where(Batch.id == batch_id)).scalar()
        _claim(session, run_id, sorted({address_key(email) for email, *_ in payload or []}))


def address_key(email: str) -> int:
    """60 bits of the address's Mailchimp id: a signed 64-bit integer on every database.
    A false duplicate needs a 60-bit collision among one run's addresses."""
    return int(subscriber_hash(email)[:15], 16)


# One statement with the keys as one parameter: compiled once, whatever their number
# (a 1,000-row VALUES list cost ~10x more CPU on SQLite, most of it compiling).
CLAIM_SQL = {
    "sqlite": "INSERT INTO mcsync_planned_addresses (run_id, key)"
    " SELECT :run_id, value FROM json_each(:keys) WHERE true"
    " ON CONFLICT DO NOTHING RETURNING key",
    "postgresql": "INSERT INTO mcsync_planned_addresses (run_id, key)"
    " SELECT :run_id, unnest(CAST(:keys AS BIGINT[]))"
    " ON CONFLICT DO NOTHING RETURNING key",
}


def _claim(session: Session, run_id: int, keys: list[int]) -> set[int]:
    """Record ``keys`` as planned for the run; returns those no batch had before.

    One INSERT that skips the keys already there. The keys go in sorted, so two chunks
    inserting at once on PostgreSQL lock them in the same order and never deadlock.
    """
    if not keys:
        return set()
    dialect = session.get_bind().dialect.name
    if dialect in CLAIM_SQL:
        # As text: a JSON array for SQLite, an array literal for PostgreSQL (the driver's
        # dumping of a list of 1,000 integers cost more than building the text).
        keys_param = (
            json.dumps(keys) if dialect == "sqlite" else "{" + ",".join(map(str, keys)) + "}"
        )
        inserted = session.execute(
            sa.text(CLAIM_SQL[dialect]), {"run_id": run_id, "keys": keys_param}
        ).scalars()
        return {int(key) for key in inserted}
    # Elsewhere: read what is there, insert the rest; a chunk racing for the same key
    # makes the commit fail, and the job is retried from its cursor.
    there = set(
        session.execute(
            sa.select(PlannedAddress.key).where(
                PlannedAddress.run_id == run_id, PlannedAddress.key.in_(keys)
            )
        ).scalars()
    )
    new = [{"run_id": run_id, "key": key} for key in keys if key not in there]
    if new:
        session.execute(sa.insert(PlannedAddress), new)
    return {row["key"] for row in new}


class Sends(Protocol):
    """What sends the batches a chunk's job commits (:class:`~.batch_sync.Sender`)."""

    def send(self, batch_id: int, token: str, payload: list[list[Any]], run: Run) -> None:
        """Send a batch just committed, leased to this job with ``token``."""

    def settle(self) -> None:
        """Record Mailchimp's answer to a batch still in flight, if any."""


def plan_chunk(
    ext: McSync, chunk_id: int, token: str | None = None, sender: Sends | None = None
) -> int | None:
    """Plan one chunk: read its key range, commit its batches, queue each.

    With a ``sender`` (the worker's job), each batch is committed leased to this job and
    sent by it at once instead of being queued: the batch's rows are in hand, so its
    first step costs no job, no claim and no reload of its payload. The chunk pauses
    while the run has its fill of batches out (:func:`_pause`). Paused or done, it
    returns the run's id, for the caller to ask :func:`~.runs.resumable` whether a
    paused chunk may go on at once (none may while this one holds its lease).
    """
    session = ext.session
    lease = ext.config.lease_seconds
    token = leases.claim(session, PlanChunk, chunk_id, lease, token)
    if token is None:
        return None  # another worker is planning it, or it is done
    chunk = session.get(PlanChunk, chunk_id)
    assert chunk is not None
    run_id = chunk.run_id
    run = session.get(Run, run_id)
    assert run is not None
    if run.status != RunStatus.RUNNING:
        return None  # stopped: its chunks add nothing
    if sender is not None and full(ext, run_id):
        # Started by the chunk before it (or the sweep) while the run has its fill out.
        _pause(ext, chunk_id, token, run_id, sender)
        return run_id
    batch_size = run.batch_size
    source = ext.require_source()
    rules = load_ruleset(session)
    # Read once per chunk, not per address: the audience's field types decide how each
    # merge value is written (never a raw boolean or date). A chunk resumed after a pause
    # takes them as this process last read them, within a minute: no staler than a
    # chunk planned in one go has them by its end.
    types, _ = recent_types(ext, run.list_id, fresh=not chunk.planned_through)
    cursor = chunk.planned_through or chunk.after
    after = json.loads(cursor) if cursor else None
    through = json.loads(chunk.through) if chunk.through else None
    # Only the batch being cut is remembered here; the database knows the rest.
    dedup = Deduplicator()
    session.refresh(run)  # loaded whole, for the sends, before it is detached here
    session.expunge_all()  # nothing of this job lingers in the identity map

    chunk_seq = chunk.seq
    pending: list[list[Any]] = []
    skipped: list[AddressOutcome] = []
    counts = {"excluded": 0, "invalid": 0, "duplicates": 0}
    last_pk: Any = None
    next_queued = False

    def commit_batch() -> bool:
        """Commit the batch cut so far; True when the run has its fill of batches out."""
        nonlocal pending, skipped, counts, next_queued
        batch = _first_of_each(pending)
        claimed = _claim(session, run_id, sorted({key for key, _ in batch}))
        batch_rows = [row for key, row in batch if key in claimed]
        counts["duplicates"] += len(pending) - len(batch_rows)
        values: dict[str, Any] = {name: getattr(Run, name) + n for name, n in counts.items()}
        if batch_rows:
            # Counted, not set: a retry batch added meanwhile counts too.
            values["batch_count"] = Run.batch_count + 1
            values["total"] = Run.total + len(batch_rows)
        # The run's row, locked by this UPDATE until the commit, also hands out the
        # batch's number: chunks planned side by side never take the same.
        numbered = session.execute(
            sa.update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.RUNNING)
            .values(values)
            .returning(Run.batch_count, BATCHES_OUT)
            .execution_options(synchronize_session=False)
        ).first()
        seq, out = numbered if numbered is not None else (None, 0)
        held = session.execute(
            sa.update(PlanChunk)
            .where(leases.holds(PlanChunk, chunk_id, token))
            .values(
                planned_through=json.dumps(last_pk),
                lease_until=utcnow() + timedelta(seconds=lease),
            )
            .execution_options(synchronize_session=False)
        )
        if seq is None or not getattr(held, "rowcount", 0):
            session.rollback()
            raise LostLease(f"Run {run_id}: chunk {chunk_id} was taken over or stopped.")
        batch_id = None
        # Sent by this job: leased to it from the start, as a claim would (see send).
        batch_token = leases.new_token()
        sending: dict[str, Any] = (
            {
                "status": BatchStatus.SENDING,
                "started_at": utcnow(),
                "lease_token": batch_token,
                "lease_until": utcnow() + timedelta(seconds=lease),
            }
            if sender is not None
            else {}
        )
        if batch_rows:
            batch_id = session.execute(
                sa.insert(Batch)
                .values(
                    run_id=run_id,
                    seq=seq,
                    size=len(batch_rows),
                    first_address=batch_rows[0][0][:254],
                    last_address=batch_rows[-1][0][:254],
                    payload=jsoncodec.column_value(batch_rows, session.get_bind().dialect),
                    total_operations=len(batch_rows),
                    **sending,
                )
                .returning(Batch.id)
            ).scalar_one()
        record(session, run_id, skipped)
        session.commit()
        if batch_id is not None:
            if sender is not None:
                sender.send(batch_id, batch_token, batch_rows, run)
            else:
                enqueue.enqueue_batch(ext, batch_id)
            if not next_queued:
                next_queued = _queue_next(ext, run_id, chunk_seq)
        elif sender is not None:
            # A stretch of the shop with nothing to send: the batch in flight is recorded
            # now, not after it, so its lease does not run out meanwhile.
            sender.settle()
        pending, skipped = [], []
        counts = {"excluded": 0, "invalid": 0, "duplicates": 0}
        dedup.forget()
        # The count the run's UPDATE returned, this batch included: batches that ended
        # since then only make room.
        return sender is not None and batch_id is not None and full(ext, run_id, out)

    for page in scan(session, source, rules, after=after, through=through, dedup=dedup):
        for row, verdict in page:
            last_pk = row.pk
            if verdict.fate is Fate.SEND:
                pending.append(
                    [row.email.strip(), convert_all(row.merge_fields, types), row.language]
                )
                if len(pending) >= batch_size and commit_batch():
                    assert sender is not None
                    _pause(ext, chunk_id, token, run_id, sender)
                    return run_id
            elif verdict.fate is Fate.DUPLICATE:
                counts["duplicates"] += 1
            else:
                counts["excluded" if verdict.fate is Fate.EXCLUDED else "invalid"] += 1
                skipped.append(
                    AddressOutcome(row.email or "", Result.SKIPPED, skip_reason=verdict.reason)
                )
        # Commit skipped addresses at least once a page, so a huge excluded stretch of
        # the source does not pile up in memory.
        if skipped and not pending:
            commit_batch()
    if pending or skipped or any(counts.values()) or last_pk is not None:
        commit_batch()
    session.execute(
        sa.update(PlanChunk)
        .where(leases.holds(PlanChunk, chunk_id, token))
        .values(status=ChunkStatus.DONE, lease_until=None, lease_token=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if not next_queued:
        _queue_next(ext, run_id, chunk_seq)
    end_planning(ext, run_id)
    return run_id


def _pause(ext: McSync, chunk_id: int, token: str, run_id: int, sender: Sends) -> None:
    """Stop planning the chunk, at its last committed batch, while the run has its fill
    of batches out (``MCSYNC_BATCHES_IN_FLIGHT``).

    Planning ahead of Mailchimp would only queue batches there: polls that find them
    unfinished, past 500 a 429, and workers that plan instead of recording what
    Mailchimp has done. The chunk gives back its lease but keeps a token of the pause.
    Once the run is down to three quarters of its fill, the next job to take a step of
    one of its batches goes on with the chunk from its cursor (:func:`~.jobs.advance_batch`,
    :func:`~.runs.resumable`), so pausing adds no job; the sweep queues one if none did.
    """
    session = ext.session
    sender.settle()  # the batch in flight is recorded as sent before the lease goes
    held = session.execute(
        sa.update(PlanChunk)
        .where(leases.holds(PlanChunk, chunk_id, token))
        .values(lease_until=None, lease_token=leases.new_token())
        .execution_options(synchronize_session=False)
    )
    if not getattr(held, "rowcount", 0):
        session.rollback()
        raise LostLease(f"Run {run_id}: chunk {chunk_id} was taken over or stopped.")
    session.commit()


def _queue_next(ext: McSync, run_id: int, seq: int) -> bool:
    """Queue the next chunk behind this chunk's first batch.

    Queued all at once, the chunks would sit ahead of every batch in RQ's first-in
    first-out queue, and no batch would be sent before the whole shop was read. One
    at a time, each behind the batches planned so far, planning and sending take turns
    on every worker, and two workers plan side by side (this chunk and the next).
    """
    following = ext.session.execute(
        sa.select(PlanChunk.id).where(
            PlanChunk.run_id == run_id,
            PlanChunk.seq == seq + 1,
            PlanChunk.status != ChunkStatus.DONE,
            # Never taken: a chunk started (planning or paused) has a token. A chunk
            # resumed after a pause must not start the next one's job again.
            PlanChunk.lease_token.is_(None),
        )
    ).scalar()
    ext.session.commit()
    if following is not None:
        enqueue.enqueue_chunk(ext, following)
    return True


def _first_of_each(pending: list[list[Any]]) -> list[tuple[int, list[Any]]]:
    """The batch's rows with their keys, the first row of each address only (a row can
    repeat one the in-memory check forgot at the previous batch's commit)."""
    seen: set[int] = set()
    out = []
    for row in pending:
        key = address_key(row[0])
        if key not in seen:
            seen.add(key)
            out.append((key, row))
    return out


class LostLease(McSyncError, RuntimeError):
    """This worker no longer holds the row it was working on; it stops quietly."""
