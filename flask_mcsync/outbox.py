"""Auto-sync's outbox: the signup side (cheap, transactional) and the sending side.

On the signup's request the hook only notes the change in the host's session. SQLAlchemy
session events then do the rest: just before the commit one INSERT writes the outbox
rows in the host's transaction, after the commit their ids go into the app's
:mod:`handoff` queue; a rollback (of the transaction, or of the savepoint the signal
came in) forgets them, so a signup that did not happen sends nothing. No network on
the signup's path: a background thread hands the ids to Redis, so a dead or hung Redis
costs a signup nothing. When Redis does not answer, the rows wait in the database and the workers'
sweep (or ``flask mcsync flush``) sends them later; after a Redis failure the thread
stops trying for a short while, so a backlog is not paid one socket timeout at a time.

Whether a row is sent, waits for the first export, or was covered by it is decided when
it is sent, by :mod:`first_export`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from blinker import Signal
from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from .addresses import normalize, subscriber_hash
from .extension import McSync, state
from .handoff import handoff_for
from .models import OutboxItem, utcnow
from .signals import FROM_MAILCHIMP, subscriber_changed, subscriber_signed_up
from .statuses import OutboxStatus

log = logging.getLogger(__name__)

PENDING_KEY = "mcsync_outbox_items"
IDS_KEY = "mcsync_outbox_ids"
REDIS_PAUSE_SECONDS = 15.0


class _Breaker:
    """Skip enqueueing for a while after Redis failed, so a backlog drains fast."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def open(self) -> bool:
        return time.monotonic() < self._until

    def trip(self) -> None:
        with self._lock:
            self._until = time.monotonic() + REDIS_PAUSE_SECONDS


# One per app: a Redis that fails for one app (or one test) must not pause another's.
_breakers: weakref.WeakKeyDictionary[McSync, _Breaker] = weakref.WeakKeyDictionary()


def breaker_for(ext: McSync) -> _Breaker:
    found = _breakers.get(ext)
    if found is None:
        found = _breakers[ext] = _Breaker()
    return found


@dataclass
class Pending:
    """A change to write to the outbox when the host's transaction commits."""

    action: str
    email: str
    email_hash: str
    previous_email: str | None
    # The innermost savepoint open when the signal came: rolling it back forgets us.
    savepoint: SessionTransaction | None


def add(
    ext: McSync,
    *,
    subscriber: Any = None,
    email: str | None = None,
    previous_email: str | None = None,
    action: str = "signup",
) -> Pending | None:
    """Note an outbox row for this subscriber in the host's session (no I/O).

    The row is written by one INSERT just before the host's commit, inside its
    transaction (:func:`_write_rows`). Repeated calls for one address in one transaction
    are coalesced into one row.
    Nothing is added while a change from Mailchimp is being applied (no echo).
    """
    if ext.session.info.get(FROM_MAILCHIMP):
        return None
    if email is None and subscriber is not None:
        email = getattr(subscriber, ext.require_source().email, None)
    if not email:
        log.warning("mcsync: a %s signal came without an address; nothing to sync.", action)
        return None
    # The scoped session's current Session (the proxy has no get_nested_transaction).
    session: Session = ext.db.session()
    pending: dict[str, Pending] = session.info.setdefault(PENDING_KEY, {})
    key = normalize(email)
    item = pending.get(key)
    if item is not None:
        # A change after a signup in the same transaction is still a signup; a newsletter
        # opt-in or opt-out says more than a profile change (or an earlier opt-in/out).
        item.previous_email = item.previous_email or previous_email
        if action in ("optin", "optout") and item.action != "signup":
            item.action = action
        return item
    item = pending[key] = Pending(
        action=action,
        email=email.strip(),
        email_hash=subscriber_hash(email),
        previous_email=previous_email.strip() if previous_email else None,
        savepoint=session.get_nested_transaction(),
    )
    return item


_OUTBOX = cast(sa.Table, OutboxItem.__table__)
_INSERT_ROWS = sa.insert(_OUTBOX).returning(_OUTBOX.c.id)  # built once: it is on every signup


@event.listens_for(Session, "before_commit")
def _write_rows(session: Session) -> None:
    # One Core INSERT in the host's transaction, just before its COMMIT: the signup and
    # its outbox row commit or roll back together. Core, not ORM objects: the unit of
    # work's bookkeeping for a second mapper cost a signup more than the INSERT itself.
    pending: dict[str, Pending] | None = session.info.pop(PENDING_KEY, None)
    if not pending:
        return
    rows = [
        {
            "action": item.action,
            "email": item.email,
            "email_hash": item.email_hash,
            "previous_email": item.previous_email,
        }
        for item in pending.values()
    ]
    # On the session's connection: the ORM execution path adds nothing for a Core INSERT.
    written = session.connection().execute(_INSERT_ROWS, rows)
    ids: list[int] = session.info.setdefault(IDS_KEY, [])
    ids.extend(written.scalars())


@event.listens_for(Session, "after_commit")
def _enqueue_committed(session: Session) -> None:
    ids = session.info.pop(IDS_KEY, None)
    if ids:
        handoff_for(state(), enqueue_items).submit(sorted(ids))


@event.listens_for(Session, "after_soft_rollback")
def _forget_savepoint(session: Session, previous_transaction: SessionTransaction) -> None:
    # A savepoint rolled back (e.g. a host retrying after an IntegrityError): forget the
    # signals sent inside it. A whole-transaction rollback is handled below.
    pending: dict[str, Pending] | None = session.info.get(PENDING_KEY)
    if not pending or not previous_transaction.nested:
        return
    for key, item in list(pending.items()):
        savepoint = item.savepoint
        while savepoint is not None and savepoint is not previous_transaction:
            savepoint = savepoint.parent
        if savepoint is not None:
            del pending[key]


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(IDS_KEY, None)
    session.info.pop(PENDING_KEY, None)


def enqueue_items(ext: McSync, ids: list[int]) -> int:
    """Hand rows to the workers; on any Redis trouble leave them waiting. Never raises.

    Called by the hand-off thread, never on a signup's request: one Redis round trip
    puts the row ids into a sorted set (which also de-duplicates, so the sweep can add a
    row again without doubling work), and a drain job is queued only when none is
    waiting already.
    """
    breaker = breaker_for(ext)
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
        .where(OutboxItem.waiting(), OutboxItem.next_attempt_at <= cutoff)
        .order_by(OutboxItem.id)
        .limit(limit)
    )
    return list(session.execute(query).scalars())


#: How long ``flush`` waits for Redis to answer before sending without it.
FLUSH_REDIS_PROBE_SECONDS = 2.0


@dataclass
class FlushResult:
    """What ``flask mcsync flush`` did: outcomes by kind, and whether it had Redis."""

    results: dict[str, int] = field(default_factory=dict)
    still_waiting: int = 0
    redis_problem: str | None = None  # why it sent without the shared connection slots

    def count(self, outcome: str) -> int:
        return self.results.get(outcome, 0)


def redis_problem(ext: McSync, timeout: float = FLUSH_REDIS_PROBE_SECONDS) -> str | None:
    """None when Redis answers a PING within ``timeout``; else what went wrong."""
    if not ext.config.redis_url:
        return None
    probe = Redis.from_url(
        ext.config.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
    )
    try:
        probe.ping()
    except RedisError as exc:
        return f"Redis did not answer within {timeout:g} s ({exc.__class__.__name__}: {exc})"
    finally:
        probe.close()
    return None


def flush(ext: McSync) -> FlushResult:
    """Send the waiting rows right here, oldest first (``flask mcsync flush``).

    Redis is needed only for the shared connection slots (at most 10 connections to
    Mailchimp across all workers). When it does not answer (down, or hung: it accepts
    the connection and never replies), the rows are sent all the same, one at a time
    from this process, without slots or jobs: one connection at most, and the workers
    cannot take slots either while Redis is silent. If Redis stops answering midway,
    the row in hand is given back and the rest go out the same way.
    """
    from .single_sync import send_outbox_item

    session = ext.session
    done = FlushResult(redis_problem=redis_problem(ext))
    was_offline = ext.redis_offline
    ext.redis_offline = was_offline or done.redis_problem is not None
    try:
        while ids := due_items(session):
            for item_id in ids:
                try:
                    outcome = send_outbox_item(ext, item_id)
                except RedisError as exc:
                    if ext.redis_offline:
                        raise
                    session.rollback()
                    done.redis_problem = f"Redis stopped answering ({exc})"
                    ext.redis_offline = True
                    _give_back(session, item_id)
                    outcome = send_outbox_item(ext, item_id)
                done.results[outcome] = done.count(outcome) + 1
            if done.count("retry") + done.count("busy") + done.count("held") >= len(ids):
                break  # what is left is held by a worker or waits for a later try
    finally:
        ext.redis_offline = was_offline
    done.still_waiting = waiting_count(session)
    return done


def _give_back(session: Session, item_id: int) -> None:
    """Undo our claim on a row whose send broke on Redis (nothing was recorded)."""
    session.execute(
        sa.update(OutboxItem)
        .where(OutboxItem.id == item_id, OutboxItem.status == OutboxStatus.SENDING)
        .values(
            status=OutboxStatus.PENDING,
            attempts=OutboxItem.attempts - 1,  # the claim counted a try that never went out
            next_attempt_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()


def waiting_count(session: Session) -> int:
    return int(
        session.execute(
            sa.select(sa.func.count())
            .select_from(OutboxItem)
            .where(OutboxItem.waiting())
        ).scalar_one()
    )
