"""Auto-sync's sending side: the ready set, the drain job, sending one row, ``flush``.

The signup side (:mod:`hook`) commits a row and hands its id to Redis; :func:`ready`
puts it in a sorted set and makes sure a drain job is queued; the drain job sends
every ready row through :func:`send_outbox_item`, which claims the row, sends the
address like every single-address sync (:mod:`single_sync`) and closes the row with
what Mailchimp said. ``flask mcsync flush`` sends waiting rows from the command line,
with or without Redis.

Whether a row is sent, waits for the first export, or was covered by it is decided when
it is sent, by :mod:`first_export`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from . import first_export, messages
from . import settings as settings_mod
from .app_state import McSync
from .enqueue import enqueue_drain, enqueue_outbox_item
from .gateway import AccountError, MailchimpError, TransientError, as_mailchimp_error, gave_up
from .handoff import breaker_for
from .models import OutboxItem
from .retry import backoff_seconds
from .settings import NoAudience
from .single_sync import SHOP, fail_run, run_single
from .statuses import NEWSLETTER_SAID, Handled, OutboxAction, OutboxStatus, RunKind, SyncReason
from .throttle import SlotTimeout
from .times import utcnow

log = logging.getLogger(__name__)


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


def ready(ext: McSync, ids: list[int], *, always_drain: bool = False) -> None:
    """Mark rows ready for the drain job and make sure one is queued. Raises RedisError.

    ``always_drain`` (the sweep) queues a drain job even when the flag says one is
    queued. The flag can outlive its job: a hung Redis runs the commands it buffered
    once it wakes up, so the flag gets set for a client that had already timed out and
    never queued the job; every later ``ready`` then trusts the flag for a whole lease.
    Rows the sweep finds have waited a sweep interval, so a drain job for them is never
    wasted work, and a second drain job doubles nothing (each row is claimed once).
    """
    pipe = ext.redis.pipeline(transaction=False)
    pipe.zadd(READY_KEY, {str(i): i for i in ids})
    # The flag lives a lease: if the queued drain job is lost, the next signup re-queues.
    pipe.set(DRAIN_FLAG_KEY, "1", nx=True, ex=int(ext.config.lease_seconds))
    if pipe.execute()[1] or always_drain:
        enqueue_drain(ext)


def drain(ext: McSync) -> dict[str, int]:
    """Send every ready row, lowest id first, until none is left (the drain job).

    The flag is cleared before the first pop: a row made ready after that queues a new
    drain job, so no row is left behind between our last pop and our exit. Several
    drain jobs may run at once under load; the claim in ``send_outbox_item`` keeps
    each row to one of them.
    """

    ext.redis.delete(DRAIN_FLAG_KEY)
    results: dict[str, int] = {}
    while popped := ext.redis.zpopmin(READY_KEY, 1):
        outcome = send_outbox_item(ext, int(popped[0][0]))
        results[outcome] = results.get(outcome, 0) + 1
    return results


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
            if sum(done.count(h) for h in (Handled.RETRY, Handled.BUSY, Handled.HELD)) >= len(ids):
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
            sa.select(sa.func.count()).select_from(OutboxItem).where(OutboxItem.waiting())
        ).scalar_one()
    )


# --- sending one row -------------------------------------------------------------------


def send_outbox_item(ext: McSync, item_id: int) -> Handled:
    """Send one waiting outbox row (and any other waiting rows for the same address).

    Returns what happened: sent, skipped, retry, failed, ignored, held (it waits for the
    first export), covered (an export sent it), or busy (another worker holds it). Safe
    to call twice: the row is claimed with a conditional UPDATE first.
    """
    session = ext.session
    now = utcnow()
    claimed = session.execute(
        sa.update(OutboxItem)
        .where(
            OutboxItem.id == item_id,
            OutboxItem.waiting(),
            OutboxItem.next_attempt_at <= now,
        )
        .values(
            status=OutboxStatus.SENDING,
            attempts=OutboxItem.attempts + 1,
            next_attempt_at=now + timedelta(seconds=ext.config.lease_seconds),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if getattr(claimed, "rowcount", 0) != 1:
        return Handled.BUSY
    # Read anew even if the session holds it (a host may turn off expire_on_commit).
    item = session.get(OutboxItem, item_id, populate_existing=True)
    assert item is not None
    # Coalesce: later rows for the same address ride along (the job reads current data).
    siblings = list(
        session.execute(
            sa.select(OutboxItem)
            .where(
                OutboxItem.email_hash == item.email_hash,
                OutboxItem.status == OutboxStatus.PENDING,
                OutboxItem.id != item.id,
            )
            .order_by(OutboxItem.id)
        ).scalars()
    )
    wants = wanted([i.action for i in sorted([item, *siblings], key=lambda i: i.id)])
    previous = next((i.previous_email for i in [item, *siblings] if i.previous_email), None)
    latest_email = siblings[-1].email if siblings else item.email

    closing = [item, *siblings]
    current = settings_mod.load(session, ext.config)
    decision = first_export.decide(session, current, closing)
    if decision.action == first_export.Action.HOLD:
        first_export.hold(closing, decision, ext.config.lease_seconds)
        session.commit()
        return Handled.HELD
    if decision.action != first_export.Action.SEND:
        covered = decision.action == first_export.Action.COVERED
        status = decision.status if covered else OutboxStatus.IGNORED
        _close(session, closing, status or OutboxStatus.IGNORED, decision.reason, decision.run_id)
        return Handled.COVERED if covered else Handled.IGNORED
    failure: MailchimpError | NoAudience
    try:
        run = run_single(
            ext,
            latest_email,
            kind=RunKind.AUTO,
            started_by=SHOP,
            wants=wants,
            previous_email=previous,
            commit=False,
            current=current,
        )
    except (TransientError, SlotTimeout) as exc:
        session.rollback()
        if item.attempts >= ext.config.max_attempts:
            failure = gave_up(item.attempts, exc, "attempts")
        else:
            error = as_mailchimp_error(exc)
            delay = backoff_seconds(item.attempts, error.retry_after, ext.config.retry_delay)
            item.status = OutboxStatus.PENDING
            item.last_error = messages.ATTEMPT(tries=item.attempts, error=error)
            item.next_attempt_at = utcnow() + timedelta(seconds=delay)
            session.commit()
            if not ext.redis_offline:  # else the row waits, due again after its backoff
                enqueue_outbox_item(ext, item.id, delay=delay)
            return Handled.RETRY
    except (AccountError, NoAudience) as exc:
        session.rollback()
        failure = exc
    else:
        # The outcome and the outbox rows commit together: a crash cannot leave the
        # address recorded as synced while its row waits to be sent again. (A new run's
        # counters were written with it, so the ones in hand are the row's.)
        status = (
            OutboxStatus.SKIPPED
            if run.skipped
            else (OutboxStatus.FAILED if run.errors else OutboxStatus.SENT)
        )
        _close(session, closing, status, run.message, run.id)
        return Handled(status.value)
    run = fail_run(
        ext,
        None,
        latest_email,
        failure,
        kind=RunKind.AUTO,
        started_by=SHOP,
        reason=_asked(wants, previous),
        commit=False,
    )
    _close(session, closing, OutboxStatus.FAILED, str(failure), run.id)
    return Handled.FAILED


def wanted(actions: list[str]) -> str:
    """What the shop asked for, from its rows' actions, oldest first.

    The latest newsletter statement wins (a signup then an opt-out is an opt-out). A
    profile change after an opt-in keeps the opt-in: else a customer who opted in again
    and then edited their name would never get Mailchimp's confirmation e-mail.
    """
    said = [a for a in actions if a != OutboxAction.SIGNUP]
    if not said:
        return OutboxAction.SIGNUP
    last = said[-1]
    if last == OutboxAction.CHANGE:
        opted = [a for a in actions if a in NEWSLETTER_SAID]
        if opted and opted[-1] != OutboxAction.OPTOUT:
            # plan_for treats it as a change too (an opt-out since unsubscribes)
            return OutboxAction.OPTIN
    return last


def _asked(wants: str, previous: str | None) -> str:
    """The sync's reason when it failed before the shop's data was read."""
    if previous:
        return SyncReason.ADDRESS_CHANGE
    return SyncReason.UPDATE if wants == OutboxAction.CHANGE else wants


def _close(
    session: Any, items: list[OutboxItem], status: str, message: str | None, run_id: int | None
) -> None:
    for outbox_item in items:
        outbox_item.status = status
        outbox_item.last_error = message
        outbox_item.run_id = run_id
    session.commit()
