"""Recorded webhook events: handing them to jobs, applying them, counting them.

The endpoint (:mod:`webhooks`) records each callback; a job (or the sweep) applies it
through :func:`inbound.apply_change`, where an event fired before the state already
applied for that address changes nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from . import settings as settings_mod
from .app_state import McSync
from .changes import InvalidPayload, from_webhook
from .enqueue import enqueue_webhook_event
from .handoff import breaker_for
from .inbound import WEBHOOK_RUN, Applied, apply_change, close_run, new_run
from .models import WebhookEvent
from .statuses import EventStatus, Handled
from .times import utcnow

log = logging.getLogger(__name__)


def hand_off(ext: McSync, ids: list[int]) -> int:
    """Queue a job per event; on any Redis trouble leave them for the sweep. Never raises."""

    breaker = breaker_for(ext)
    if not ext.config.redis_url or breaker.open():
        return 0
    try:
        for event_id in ids:
            enqueue_webhook_event(ext, event_id)
    except Exception as exc:  # whatever Redis says, Mailchimp gets its answer
        breaker.trip()
        log.warning(
            "mcsync: could not queue webhook event(s) %s (%s); the workers' sweep applies them.",
            ids,
            exc,
        )
        return 0
    return len(ids)


# --- applying an event (the job) ------------------------------------------------------------


def apply_event(ext: McSync, event_id: int) -> str:
    """Apply one recorded event; returns its final status (or ``busy``: already handled).

    The claim, the shop's change, the member's state and the record are one
    transaction: a worker dying midway leaves the event ``received`` for the sweep.
    """
    session = ext.session
    claimed = session.execute(
        sa.update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == EventStatus.RECEIVED)
        .values(status=EventStatus.APPLYING, handled_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        session.rollback()
        return Handled.BUSY
    event = session.get(WebhookEvent, event_id)
    assert event is not None
    session.refresh(event)
    current = settings_mod.load(session, ext.config)
    try:
        change = from_webhook(event.payload or {})
    except InvalidPayload as exc:  # pragma: no cover - checked when received
        return _finish(session, event, EventStatus.INVALID, str(exc), None)
    if change.list_id and current.list_id and change.list_id != current.list_id:
        return _finish(
            session,
            event,
            EventStatus.IGNORED,
            f"For audience {change.list_id}, not the shop's.",
            None,
        )
    run = new_run(session, WEBHOOK_RUN, current.list_id or "", f"webhook: {change.kind.value}")
    run.total = 1
    result = apply_change(ext, change, current.list_id or "", run.id)
    close_run(run)
    status = EventStatus.APPLIED if result is Applied.APPLIED else EventStatus.STALE
    return _finish(session, event, status, None, run.id)


def _finish(
    session: Any, event: WebhookEvent, status: str, message: str | None, run_id: int | None
) -> str:
    event.status = status
    event.message = message
    event.run_id = run_id
    event.handled_at = utcnow()
    session.commit()
    return status


def due_events(session: Any, idle_seconds: float, limit: int = 1000) -> list[int]:
    """Events received but not applied (Redis was down, a worker died), oldest first."""
    cutoff = utcnow() - timedelta(seconds=idle_seconds)
    return list(
        session.execute(
            sa.select(WebhookEvent.id)
            .where(WebhookEvent.status == EventStatus.RECEIVED, WebhookEvent.received_at <= cutoff)
            .order_by(WebhookEvent.fired_at, WebhookEvent.id)
            .limit(limit)
        ).scalars()
    )


def apply_due(ext: McSync, idle_seconds: float = 0) -> dict[str, int]:
    """Apply waiting events here and now, oldest fired first (the sweep, and tests)."""
    counts: dict[str, int] = {}
    for event_id in due_events(ext.session, idle_seconds):
        status = apply_event(ext, event_id)
        counts[status] = counts.get(status, 0) + 1
    return counts


def last_event(session: Any) -> WebhookEvent | None:
    return session.execute(
        sa.select(WebhookEvent).order_by(WebhookEvent.received_at.desc()).limit(1)
    ).scalar_one_or_none()


def event_counts(session: Any) -> dict[str, int]:
    rows = session.execute(
        sa.select(WebhookEvent.status, sa.func.count()).group_by(WebhookEvent.status)
    ).all()
    return {status: int(n) for status, n in rows}
