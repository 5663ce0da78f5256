"""Planning a manual export: read the source, judge each address, cut it into batches.

The planner streams the source in primary-key order and commits one batch at a time,
together with the cursor (``Run.planned_through``) and the counts of what it skipped.
A planner killed at any point resumes from the last committed batch: what it had read
after that is read again, nothing is lost or counted twice. Each batch is queued as soon
as it is committed, so sending starts while the rest is still being read.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from . import enqueue, leases
from .app_state import McSync
from .eligibility import Deduplicator, Fate, scan
from .errors import McSyncError
from .exclusions import load_ruleset
from .merge_values import convert_all
from .models import Batch, Run, utcnow
from .outcomes import AddressOutcome, Result, record
from .preflight import types_or_none
from .runs import finish_if_complete
from .statuses import RunStatus


def plan(ext: McSync, run_id: int, token: str | None = None) -> None:
    session = ext.session
    lease = ext.config.lease_seconds
    token = leases.claim(session, Run, run_id, lease, token, status=RunStatus.RUNNING)
    if token is None:
        return  # another worker is planning it, or it has ended
    run = session.get(Run, run_id)
    assert run is not None
    if run.started_at is None:
        run.started_at = utcnow()
        session.commit()
    if run.planning_done:
        finish_if_complete(ext, run_id)
        return

    source = ext.require_source()
    rules = load_ruleset(session)
    # Read once per planning job, not per address: the audience's field types decide how
    # each merge value is written (never a raw boolean or date).
    types = types_or_none(ext, run.list_id)
    dedup = Deduplicator()
    seq = 0
    # Resuming: the addresses of committed batches were already seen.
    for seq_, payload in session.execute(
        sa.select(Batch.seq, Batch.payload).where(Batch.run_id == run_id, Batch.retry_of.is_(None))
    ):
        seq = max(seq, seq_)
        for email, _ in payload:
            dedup.seen(email)
    after = json.loads(run.planned_through) if run.planned_through else None

    pending: list[list[Any]] = []
    skipped: list[AddressOutcome] = []
    counts = {"excluded": 0, "invalid": 0, "duplicates": 0}
    last_pk: Any = None

    def commit_batch() -> None:
        nonlocal seq, pending, skipped, counts
        values: dict[str, Any] = {
            "planned_through": json.dumps(last_pk),
            "lease_until": utcnow() + timedelta(seconds=lease),
            **{name: getattr(Run, name) + n for name, n in counts.items()},
        }
        batch_id = None
        if pending:
            seq += 1
            batch = Batch(
                run_id=run_id,
                seq=seq,
                size=len(pending),
                first_address=pending[0][0][:254],
                last_address=pending[-1][0][:254],
                payload=pending,
                total_operations=len(pending),
            )
            session.add(batch)
            session.flush()
            # Read the id now: after the commit it would reload the whole payload.
            batch_id = batch.id
            # Counted, not set to seq: a retry batch added meanwhile counts too.
            values["batch_count"] = Run.batch_count + 1
            values["total"] = Run.total + len(pending)
        record(session, run_id, skipped)
        updated = session.execute(
            sa.update(Run)
            .where(leases.holds(Run, run_id, token))
            .values(values)
            .execution_options(synchronize_session=False)
        )
        if not getattr(updated, "rowcount", 0):
            session.rollback()
            raise LostLease(f"Run {run_id}: another worker took over planning.")
        session.commit()
        if batch_id is not None:
            enqueue.enqueue_batch(ext, batch_id)
        pending, skipped = [], []
        counts = {"excluded": 0, "invalid": 0, "duplicates": 0}

    for page in scan(session, source, rules, after=after, dedup=dedup):
        for row, verdict in page:
            last_pk = row.pk
            if verdict.fate is Fate.SEND:
                pending.append(
                    [row.email.strip(), convert_all(row.merge_fields, types), row.language]
                )
                if len(pending) >= run.batch_size:
                    commit_batch()
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
        sa.update(Run)
        .where(leases.holds(Run, run_id, token))
        .values(planning_done=True, lease_until=None, lease_token=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    finish_if_complete(ext, run_id)


class LostLease(McSyncError, RuntimeError):
    """This worker no longer holds the row it was working on; it stops quietly."""
