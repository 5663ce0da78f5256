"""Mailchimp's webhook: the endpoint it calls, the events it records, and applying them.

The endpoint is fast and careful because the internet calls it:

* the secret in its URL is compared in constant time; a wrong one gets 403 and nothing
  is written;
* a callback is recorded in ``mcsync_webhook_events`` and its id handed to a job by the
  app's :mod:`handoff` thread, never on the request: a dead or hung Redis costs the
  callback nothing. The row waits and the workers' sweep applies it later;
* a replay (the same body again) is recognised by the body's digest and changes nothing;
* a malformed body gets 400 with the reason, is recorded as ``invalid``, and changes
  nothing.

The job applies the event through :func:`inbound.apply_change`, where an event fired
before the state already applied for that address changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from . import settings as settings_mod
from .addresses import subscriber_hash
from .changes import InvalidPayload, from_webhook
from .extension import McSync, state
from .handoff import handoff_for
from .inbound import WEBHOOK_RUN, Applied, apply_change, close_run, new_run
from .models import WebhookEvent, utcnow
from .statuses import EventStatus

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # Mailchimp's callbacks are a few hundred bytes
STORED_VALUE = 300  # characters of each field kept in the event row
APPLY_TIMEOUT = 300
WEBHOOK_BLUEPRINT = "mcsync_webhook"


# --- the endpoint ---------------------------------------------------------------------------


def make_webhook_blueprint() -> Blueprint:
    bp = Blueprint(WEBHOOK_BLUEPRINT, __name__)
    bp.add_url_rule("/<secret>", "receive", receive, methods=["GET", "HEAD", "POST"])
    bp.record_once(_exempt_from_flask_wtf)
    return bp


def _exempt_from_flask_wtf(setup: BlueprintSetupState) -> None:
    # Mailchimp cannot send a CSRF token; the secret in the URL is the guard instead.
    csrf = setup.app.extensions.get("csrf")
    if csrf is not None and hasattr(csrf, "exempt"):
        csrf.exempt(setup.blueprint)


def receive(secret: str) -> Response:
    ext = state()
    expected = settings_mod.webhook_secret(ext.session)
    ext.session.commit()  # end the read transaction before any work
    if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
        abort(403)
    if request.method != "POST":
        # Mailchimp checks the URL with a GET before it registers the webhook.
        return Response("ok", content_type="text/plain")
    if (request.content_length or 0) > MAX_BODY:
        raw = request.stream.read(MAX_BODY)
        record_invalid(ext, raw, {}, f"The body is larger than {MAX_BODY} bytes.")
        return Response("payload too large", status=413, content_type="text/plain")
    # A body sent without a length (chunked) is cut off at the limit too: 413.
    request.max_content_length = MAX_BODY
    raw = request.get_data(cache=True)
    form = {k: v for k, v in request.form.items(multi=False)}
    status, text = record_and_hand_off(ext, raw, form)
    return Response(text, status=status, content_type="text/plain")


def _stored(form: dict[str, str]) -> dict[str, str]:
    """The payload as kept: bounded in number and length of fields."""
    return {k[:100]: v[:STORED_VALUE] for k, v in list(form.items())[:60]}


def record_and_hand_off(ext: McSync, raw: bytes, form: dict[str, str]) -> tuple[int, str]:
    """Record one callback and queue its job; returns the HTTP status and a short text."""
    try:
        change = from_webhook(form)
    except InvalidPayload as exc:
        record_invalid(ext, raw, form, str(exc))
        return 400, f"invalid payload: {exc}"
    session = ext.session
    event = WebhookEvent(
        digest=hashlib.sha256(raw).hexdigest(),
        type=change.kind.value,
        fired_at=change.changed_at,
        email=change.email,
        email_hash=subscriber_hash(change.email),
        payload=_stored(form),
    )
    session.add(event)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return 200, "already received"
    # Queued for a background thread: a hung Redis must not hold Mailchimp's request
    # (it would time out and retry); the event is committed, the sweep applies it anyway.
    handoff_for(ext, hand_off).submit([event.id])
    return 200, "ok"


def record_invalid(ext: McSync, raw: bytes, form: dict[str, str], reason: str) -> None:
    session = ext.session
    # Invalid bodies are recorded once each too (a flood of one bad body is one row).
    event = WebhookEvent(
        digest=hashlib.sha256(raw).hexdigest(),
        type=str(form.get("type", ""))[:16],
        email=str(form.get("data[email]", ""))[:320],
        status=EventStatus.INVALID,
        message=reason[:500],
        payload=_stored(form),
        handled_at=utcnow(),
    )
    session.add(event)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()


def hand_off(ext: McSync, ids: list[int]) -> int:
    """Queue a job per event; on any Redis trouble leave them for the sweep. Never raises."""
    from .outbox import breaker_for

    breaker = breaker_for(ext)
    if not ext.config.redis_url or breaker.open():
        return 0
    try:
        from .jobs import enqueue_webhook_event

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
        return "busy"
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
