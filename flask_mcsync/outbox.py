"""Auto-sync's outbox: the signup side (cheap, transactional) and the sending side.

On the signup's request the hook only adds an :class:`OutboxItem` to the host's session.
SQLAlchemy session events then do the rest: after the flush they note the new row ids,
after the commit they queue one job per row; a rollback forgets them, so a signup that
did not happen sends nothing. If Redis does not answer, the signup is not disturbed: the
rows wait in the database and the workers' sweep (or ``flask mcsync flush``) sends them
later. After a Redis failure the hook stops trying for a short while, so a dead Redis
does not cost every signup a connection timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from blinker import Signal
from flask import Flask, current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from .addresses import normalize, subscriber_hash
from .extension import McSync, state
from .models import OutboxItem, utcnow
from .signals import FROM_MAILCHIMP, subscriber_changed, subscriber_signed_up

log = logging.getLogger(__name__)

PENDING_KEY = "mcsync_outbox_items"
IDS_KEY = "mcsync_outbox_ids"
REDIS_PAUSE_SECONDS = 15.0


class _Breaker:
    """Skip enqueueing for a while after Redis failed, so signups stay fast."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def open(self) -> bool:
        return time.monotonic() < self._until

    def trip(self) -> None:
        with self._lock:
            self._until = time.monotonic() + REDIS_PAUSE_SECONDS


breaker = _Breaker()


def add(
    ext: McSync,
    *,
    subscriber: Any = None,
    email: str | None = None,
    previous_email: str | None = None,
    action: str = "signup",
) -> OutboxItem | None:
    """Add an outbox row for this subscriber to the host's session (no I/O).

    Repeated calls for one address in one transaction are coalesced into one row.
    Nothing is added while a change from Mailchimp is being applied (no echo).
    """
    if ext.session.info.get(FROM_MAILCHIMP):
        return None
    if email is None and subscriber is not None:
        email = getattr(subscriber, ext.require_source().email, None)
    if not email:
        log.warning("mcsync: a %s signal came without an address; nothing to sync.", action)
        return None
    session = ext.session
    pending: dict[str, OutboxItem] = session.info.setdefault(PENDING_KEY, {})
    key = normalize(email)
    item = pending.get(key)
    # A row rolled back with a savepoint is no longer in the session: make a new one.
    if item is not None and item in session:
        # A change after a signup in the same transaction is still a signup.
        item.previous_email = item.previous_email or previous_email
        return item
    item = OutboxItem(
        action=action,
        email=email.strip(),
        email_hash=subscriber_hash(email),
        previous_email=previous_email.strip() if previous_email else None,
    )
    session.add(item)
    pending[key] = item
    return item


@event.listens_for(Session, "after_flush")
def _note_ids(session: Session, _context: Any) -> None:
    # Ids are read here, not after the commit, where reading them would cost a query.
    # The address map stays for the whole transaction, so a signal after an autoflush
    # still finds its row.
    pending = session.info.get(PENDING_KEY)
    if pending:
        ids: set[int] = session.info.setdefault(IDS_KEY, set())
        ids.update(item.id for item in pending.values() if item.id is not None)


@event.listens_for(Session, "after_commit")
def _enqueue_committed(session: Session) -> None:
    ids = session.info.pop(IDS_KEY, None)
    session.info.pop(PENDING_KEY, None)
    if ids:
        enqueue_items(state(), sorted(ids))


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(IDS_KEY, None)
    session.info.pop(PENDING_KEY, None)


def enqueue_items(ext: McSync, ids: list[int]) -> int:
    """Hand rows to the workers; on any Redis trouble leave them waiting. Never raises.

    A signup pays one Redis round trip: its row id goes into a sorted set (which also
    de-duplicates, so the sweep can add a row again without doubling work), and a
    drain job is queued only when none is waiting already.
    """
    if not ext.config.redis_url or breaker.open():
        return 0
    try:
        ready(ext, ids)
    except Exception as exc:  # whatever Redis says, the signup must succeed
        breaker.trip()
        log.warning(
            "mcsync: could not queue %d auto-sync row(s) (%s); they wait in mcsync_outbox"
            " and will be sent by the workers' sweep or 'flask mcsync flush'.",
            len(ids),
            exc,
        )
        return 0
    return len(ids)


READY_KEY = "mcsync:outbox:ready"
DRAIN_FLAG_KEY = "mcsync:outbox:drain-queued"


def ready(ext: McSync, ids: list[int]) -> None:
    """Mark rows ready for the drain job and make sure one is queued. Raises RedisError."""
    pipe = ext.redis.pipeline(transaction=False)
    pipe.zadd(READY_KEY, {str(i): i for i in ids})
    # The flag lives a lease: if the queued drain job is lost, the next signup re-queues.
    pipe.set(DRAIN_FLAG_KEY, "1", nx=True, ex=int(ext.config.lease_seconds))
    if pipe.execute()[1]:
        from .jobs import enqueue_drain

        enqueue_drain(ext)


def drain(ext: McSync) -> dict[str, int]:
    """Send every ready row, lowest id first, until none is left (the drain job).

    The flag is cleared before the first pop: a row made ready after that queues a new
    drain job, so no row is left behind between our last pop and our exit. Several
    drain jobs may run at once under load; the claim in ``send_outbox_item`` keeps
    each row to one of them.
    """
    from .single_sync import send_outbox_item

    ext.redis.delete(DRAIN_FLAG_KEY)
    results: dict[str, int] = {}
    while popped := ext.redis.zpopmin(READY_KEY, 1):
        outcome = send_outbox_item(ext, int(popped[0][0]))
        results[outcome] = results.get(outcome, 0) + 1
    return results


def _receiver(action: str) -> Callable[..., None]:
    def receive(sender: Any, **kwargs: Any) -> None:
        app = sender if isinstance(sender, Flask) else current_app._get_current_object()  # type: ignore[attr-defined]
        # ``newsletter=True/False`` says the change was a newsletter opt-in / opt-out: an
        # opt-in may ask Mailchimp to e-mail a confirmation (see single_sync.perform).
        newsletter = kwargs.get("newsletter")
        add(
            state(app),
            subscriber=kwargs.get("subscriber"),
            email=kwargs.get("email"),
            previous_email=kwargs.get("previous_email"),
            action=action if newsletter is None else ("optin" if newsletter else "optout"),
        )

    return receive


_on_signup = _receiver("signup")
_on_change = _receiver("change")
subscriber_signed_up.connect(_on_signup)
subscriber_changed.connect(_on_change)


def connect(
    signal: Signal, subscriber: Callable[..., Any], action: str = "signup"
) -> Callable[..., None]:
    """Make an existing host signal feed the outbox.

    ``subscriber(sender, **kwargs)`` picks the subscriber out of the signal's arguments,
    e.g. ``lambda sender, **kw: kw["user"]`` for Flask-Security-Too's ``user_registered``.
    """

    def receive(sender: Any, **kwargs: Any) -> None:
        add(state(), subscriber=subscriber(sender, **kwargs), action=action)

    signal.connect(receive, weak=False)
    return receive


def due_items(session: Session, limit: int = 1000, idle_seconds: float = 0) -> list[int]:
    """Rows waiting to be sent (or whose sender died), oldest first.

    ``idle_seconds`` skips rows that only just became due: their job is most likely
    still in the queue, and the sweep should not queue them a second time.
    """
    cutoff = utcnow() - timedelta(seconds=idle_seconds)
    query = (
        sa.select(OutboxItem.id)
        .where(OutboxItem.status.in_(("pending", "sending")), OutboxItem.next_attempt_at <= cutoff)
        .order_by(OutboxItem.id)
        .limit(limit)
    )
    return list(session.execute(query).scalars())


def waiting_count(session: Session) -> int:
    return int(
        session.execute(
            sa.select(sa.func.count())
            .select_from(OutboxItem)
            .where(OutboxItem.status.in_(("pending", "sending")))
        ).scalar_one()
    )
