"""Mailchimp's webhook: the endpoint it calls and the events it records.

The endpoint is fast and careful because the internet calls it:

* the secret in its URL is compared in constant time; a wrong one gets 403 and nothing
  is written;
* a callback is recorded in ``mcsync_webhook_events`` and its id handed to a job by the
  app's :mod:`handoff` thread, never on the request: a dead or hung Redis costs the
  callback nothing. The row waits and the workers' sweep applies it later;
* a replay (the same body again) is recognised by the body's digest and changes nothing;
* a malformed body gets 400 with the reason, is recorded as ``invalid``, and changes
  nothing.

Handing events to jobs and applying them is :mod:`webhook_events`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from flask import Blueprint, abort, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from . import settings as settings_mod
from .addresses import subscriber_hash
from .app_state import McSync, state
from .changes import InvalidPayload, from_webhook
from .handoff import handoff_for
from .models import WebhookEvent
from .statuses import EventStatus
from .terminal import inert
from .times import utcnow
from .webhook_events import hand_off

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # Mailchimp's callbacks are a few hundred bytes
STORED_VALUE = 300  # characters of each field kept in the event row
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
    """The payload as kept: bounded in number and length of fields, control characters
    made visible (a refused body may hold a NUL, which PostgreSQL cannot store)."""
    return {inert(k[:100]): inert(v[:STORED_VALUE]) for k, v in list(form.items())[:60]}


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
        type=inert(form.get("type", ""))[:16],
        email=inert(form.get("data[email]", ""))[:320],
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
