"""Leases: which worker holds a run's planning or a batch, and until when.

A lease is two columns, ``lease_until`` and ``lease_token``, taken with one conditional
UPDATE, so two workers can never both hold a row, whatever the database. A worker that
dies simply stops renewing; once ``lease_until`` passes, the sweep hands the row to
another worker. A job that schedules its own follow-up (the next poll of a batch)
passes the token along, so the follow-up can take the row back before the lease ends.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import Batch, PlanChunk, Run
from .statuses import BATCH_ENDED, RUN_ENDED, ChunkStatus
from .times import utcnow


def new_token() -> str:
    return uuid.uuid4().hex


def claim(
    session: Session,
    model: type[Run] | type[Batch] | type[PlanChunk],
    row_id: int,
    seconds: float,
    token: str | None = None,
    **values: object,
) -> str | None:
    """Take the lease on a row; returns the new token, or ``None`` if someone holds it.

    The row must not be ended (``Run.status`` running/queued, ``Batch.status`` not
    done/failed, ``PlanChunk.status`` not done). ``values`` are set in the same UPDATE. Commits.
    """
    now = utcnow()
    fresh = new_token()
    free = sa.or_(model.lease_until.is_(None), model.lease_until < now)
    if token is not None:
        free = sa.or_(free, model.lease_token == token)
    ended = {Run: RUN_ENDED, PlanChunk: frozenset({ChunkStatus.DONE})}.get(model, BATCH_ENDED)
    result = session.execute(
        sa.update(model)
        .where(model.id == row_id, model.status.not_in(ended), free)
        .values(lease_token=fresh, lease_until=now + timedelta(seconds=seconds), **values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return fresh if getattr(result, "rowcount", 0) == 1 else None


def holds(
    model: type[Run] | type[Batch] | type[PlanChunk], row_id: int, token: str
) -> sa.ColumnElement[bool]:
    """The WHERE clause that makes an update apply only while ``token`` holds the lease."""
    return sa.and_(model.id == row_id, model.lease_token == token)
