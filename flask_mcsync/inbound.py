"""Applying a change made in Mailchimp to the shop: the one handler behind webhooks and
reconcile.

In one transaction of the caller's:

1. the member's row in ``mcsync_audience_members`` is moved to the new state only if
   the change is not older than the state already applied (a conditional UPDATE, which
   also locks the row until the commit, so two workers applying two events for one
   address do so one after the other): an event fired earlier than what we know changes
   nothing;
2. the host is told, through the ``mailchimp_changed`` signal and its
   ``SubscriberSource(on_mailchimp_change=...)`` hook, and changes its own rows in the
   same session. Auto-sync signals sent meanwhile are ignored (see :mod:`outbox`): a
   change that came from Mailchimp is never sent back to it;
3. the change is recorded as an outcome of a "From Mailchimp" run, which the dashboard
   and the diagnostic history show.

The caller commits: the shop's rows, the member's state and the record go together.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import messages
from .addresses import normalize, subscriber_hash
from .app_state import McSync
from .changes import Kind, MailchimpChange
from .models import AudienceMember, OutboxItem, Run, metadata
from .outcomes import AddressOutcome, Result, record
from .signals import FROM_MAILCHIMP, mailchimp_changed
from .statuses import OPT_INS, RunKind, RunStatus
from .times import utcnow

log = logging.getLogger(__name__)

WEBHOOK_RUN = RunKind.MAILCHIMP  # a run per webhook event
RECONCILE_RUN = RunKind.RECONCILE  # a run per reconcile, an outcome per change it applied
FROM_MAILCHIMP_RUNS = (WEBHOOK_RUN, RECONCILE_RUN)


class Applied(str, enum.Enum):
    APPLIED = "applied"
    STALE = "stale"


@contextlib.contextmanager
def from_mailchimp(session: Session) -> Iterator[None]:
    """Mark the session as applying Mailchimp's changes (no auto-sync echo)."""
    before = session.info.get(FROM_MAILCHIMP)
    session.info[FROM_MAILCHIMP] = True
    try:
        yield
    finally:
        if before is None:
            session.info.pop(FROM_MAILCHIMP, None)
        else:
            session.info[FROM_MAILCHIMP] = before


def apply_change(
    ext: McSync,
    change: MailchimpChange,
    list_id: str,
    run_id: int,
    outcomes: list[AddressOutcome] | None = None,
) -> Applied:
    """Apply one change if it is newer than what we know; record it under ``run_id``.

    With ``outcomes`` the record is appended there for the caller to write with others
    (reconcile writes a page's at once); else it is added to the session now. The caller
    commits (or rolls back: nothing then happened).
    """
    session = ext.session
    previous_status = _advance(session, change, list_id)
    if previous_status is Applied.STALE:
        stale_because = messages.STALE_ALREADY_APPLIED
    elif (opted_in := _shop_opted_in_after(session, change)) is not None:
        stale_because = messages.STALE_OPTED_IN(opted_in=f"{opted_in:%Y-%m-%d %H:%M:%S}")
    else:
        stale_because = None
    if stale_because is not None:
        outcome = AddressOutcome(
            change.email,
            Result.SKIPPED,
            skip_reason=messages.STALE_CHANGE(
                kind=change.kind.value,
                changed_at=f"{change.changed_at:%Y-%m-%d %H:%M:%S}",
                reason=stale_because,
            ),
            mailchimp_status=change.status,
            sent=_described(change, None),
        )
    else:
        if change.status is None and previous_status:
            change = _with_status(change, previous_status)
        what = tell_host(ext, change)
        outcome = AddressOutcome(
            change.email,
            Result.UPDATED,
            mailchimp_status=change.status,
            sent=_described(change, what),
        )
    if outcomes is None:
        record(session, run_id, [outcome])
    else:
        outcomes.append(outcome)
    return Applied.STALE if stale_because is not None else Applied.APPLIED


def _shop_opted_in_after(session: Session, change: MailchimpChange) -> Any:
    """When the shop's customer opted in (signup, newsletter opt-in) after Mailchimp's
    unsubscribe fired, the time of that opt-in; else None.

    A late webhook or a reconcile reads an unsubscribe that the customer has since undone
    in the shop: clearing the shop's flag would silently lose the re-opt-in that
    auto-sync turns into Mailchimp's confirmation e-mail. Cleaned (a bounce) and archived
    still apply: the shop cannot mail that address anyway.
    """
    if change.kind is not Kind.UNSUBSCRIBE or change.status != "unsubscribed":
        return None
    return session.execute(
        sa.select(OutboxItem.created_at)
        .where(
            OutboxItem.email_hash == subscriber_hash(change.email),
            OutboxItem.action.in_(OPT_INS),
            OutboxItem.created_at > change.changed_at,
        )
        .order_by(OutboxItem.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def tell_host(ext: McSync, change: MailchimpChange) -> str | None:
    """Send the signal and call the source's hook, auto-sync muted. Returns the hook's
    sentence (what the shop did)."""
    session = ext.session
    source = ext.source
    with from_mailchimp(session):
        mailchimp_changed.send(
            ext.app,
            change=change,
            email=change.email,
            status=change.status,
            reason=change.reason,
            merge_fields=change.merge_fields,
            new_email=change.new_email,
        )
        if source is not None and source.on_mailchimp_change is not None:
            answer = source.on_mailchimp_change(change)
            # The hook's changes are flushed here, while auto-sync is still muted.
            session.flush()
            return str(answer)[:500] if answer else None
        session.flush()
    return None


def _described(change: MailchimpChange, what: str | None) -> dict[str, Any]:
    """What the history shows of a change: its kind, reason, new address, the shop's part."""
    described: dict[str, Any] = {
        "from_mailchimp": change.kind.value,
        "origin": change.origin,
        "at": change.changed_at.isoformat(),
    }
    if change.reason:
        described["reason"] = change.reason[:100]
    if change.new_email:
        described["new_email"] = change.new_email
    if change.merge_fields:
        described["merge_fields"] = change.merge_fields
    if what:
        described["shop"] = what
    return described


def _with_status(change: MailchimpChange, status: str) -> MailchimpChange:
    from dataclasses import replace

    return replace(change, status=status)


def _advance(session: Session, change: MailchimpChange, list_id: str) -> Applied | str | None:
    """Move the member's known state forward; STALE when the change is older.

    Returns the member's previous status (``None`` when we did not know it) otherwise.
    """
    key = subscriber_hash(change.email)
    now = utcnow()
    row = session.execute(
        sa.select(AudienceMember.status, AudienceMember.merge_fields).where(
            AudienceMember.email_hash == key
        )
    ).first()
    previous_status = row[0] if row else None
    values: dict[str, Any] = {"changed_at": change.changed_at, "seen_at": now}
    if change.status is not None:
        values["status"] = change.status
    if change.merge_fields:
        values["merge_fields"] = {**((row[1] if row else None) or {}), **change.merge_fields}
    if row is not None:
        # Not older than what we hold: equal times are two events of one second (an
        # address change fires upemail and profile together); replays are stopped
        # earlier, by the event's digest.
        done = session.execute(
            sa.update(AudienceMember)
            .where(AudienceMember.email_hash == key, AudienceMember.changed_at <= change.changed_at)
            .values(values)
            .execution_options(synchronize_session=False)
        )
        if getattr(done, "rowcount", 0) != 1:
            return Applied.STALE
    else:
        _insert(session, change, key, list_id, values)
    if change.kind is Kind.UPEMAIL and change.new_email:
        _move(session, key, change, list_id)
    return previous_status


def _insert(
    session: Session, change: MailchimpChange, key: str, list_id: str, values: dict[str, Any]
) -> None:
    row = {
        "email_hash": key,
        "list_id": list_id,
        "email": change.email,
        "email_lower": normalize(change.email),
        "status": change.status or "subscribed",
        "merge_fields": change.merge_fields or None,
        "contact_id": None,
        **values,
    }
    if not insert_new(session, [row]):
        # Another worker inserted it meanwhile: go through the ordered update instead.
        session.execute(
            sa.update(AudienceMember)
            .where(AudienceMember.email_hash == key, AudienceMember.changed_at <= change.changed_at)
            .values(values)
            .execution_options(synchronize_session=False)
        )


def insert_new(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert member rows, skipping any address already there; returns how many were new.

    ``ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL) rather than a savepoint per row:
    a first reconcile inserts a whole audience, and a savepoint costs a round trip.
    """
    table = metadata.tables[AudienceMember.__tablename__]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(table).on_conflict_do_nothing(index_elements=["email_hash"])
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=["email_hash"])
    else:  # another database: one savepoint per row
        done = 0
        for row in rows:
            try:
                with session.begin_nested():
                    session.execute(sa.insert(table), [row])
                done += 1
            except IntegrityError:
                continue
        return done
    result = session.execute(statement, rows)
    return int(getattr(result, "rowcount", 0) or 0)


def _move(session: Session, old_key: str, change: MailchimpChange, list_id: str) -> None:
    """An address change: the member's known state now lives under the new address."""
    assert change.new_email is not None
    new_key = subscriber_hash(change.new_email)
    if new_key == old_key:
        session.execute(
            sa.update(AudienceMember)
            .where(AudienceMember.email_hash == old_key)
            .values(email=change.new_email)
            .execution_options(synchronize_session=False)
        )
        return
    session.execute(sa.delete(AudienceMember).where(AudienceMember.email_hash == new_key))
    session.execute(
        sa.update(AudienceMember)
        .where(AudienceMember.email_hash == old_key)
        .values(
            email_hash=new_key,
            email=change.new_email,
            email_lower=normalize(change.new_email),
        )
        .execution_options(synchronize_session=False)
    )


def new_run(session: Session, kind: str, list_id: str, started_by: str) -> Run:
    """A "From Mailchimp" run (one webhook event, or one reconcile), flushed for its id."""
    run = Run(
        kind=kind,
        list_id=list_id or "",
        started_by=started_by[:120],
        status=RunStatus.RUNNING,
        started_at=utcnow(),
    )
    session.add(run)
    session.flush()
    return run


def close_run(run: Run, message: str | None = None) -> None:
    run.status = RunStatus.FINISHED
    run.finished_at = utcnow()
    if message:
        run.message = message
