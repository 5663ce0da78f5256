"""Reconcile: read what changed in the audience since last time and apply it to the shop.

For shops Mailchimp cannot call (no public URL) and as a safety net when the webhook was
lost. The first reconcile of an audience reads all of it; later ones ask only for the
members changed since the newest change the previous one saw (``since_last_changed``,
on Mailchimp's own clock, so the shop's clock does not matter). Pages are read and
committed one at a time: memory stays flat whatever the audience's size.

Each member is compared with what we knew of it (``mcsync_audience_members``): a new
status, new merge fields or a contact seen under a new address becomes a
:class:`~.changes.MailchimpChange`, applied by the same handler as a webhook event. A
member seen for the first time is only a change when Mailchimp holds it unsubscribed,
cleaned or archived; otherwise it is recorded, and the drift report compares it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from . import messages
from . import settings as settings_mod
from .addresses import normalize, subscriber_hash
from .app_state import McSync
from .changes import OFF_STATUSES, Kind, MailchimpChange
from .errors import McSyncError
from .gateway import TransientError, gateway_for
from .inbound import RECONCILE_RUN, Applied, apply_change, close_run, insert_new
from .models import AudienceMember, Run
from .outcomes import AddressOutcome, record
from .retry import backoff_seconds
from .statuses import RunStatus
from .throttle import SlotTimeout
from .times import parse_time, utcnow

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # Mailchimp's largest page of members
PAGE_TRIES = 5
LEASE = timedelta(minutes=10)  # a reconcile silent for this long has died

KIND_OF_STATUS = {
    "subscribed": Kind.SUBSCRIBE,
    "unsubscribed": Kind.UNSUBSCRIBE,
    "archived": Kind.UNSUBSCRIBE,
    "cleaned": Kind.CLEANED,
}


class ReconcileBusy(McSyncError, RuntimeError):
    """Another reconcile of this audience is running."""


class ReconcileTakenOver(ReconcileBusy):
    """This reconcile went silent too long: a later one took its place (and ended it)."""


@dataclass
class ReconcileResult:
    run_id: int
    list_id: str
    first: bool
    since: str | None
    through: str | None
    read: int = 0
    applied: int = 0
    stale: int = 0
    recorded: int = 0  # members seen for the first time, nothing to apply
    requests: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_reconcile(session: Any, list_id: str) -> Run | None:
    return session.execute(
        sa.select(Run)
        .where(Run.kind == RECONCILE_RUN, Run.list_id == list_id, Run.status == RunStatus.FINISHED)
        .order_by(Run.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def _claim(ext: McSync, list_id: str, started_by: str) -> Run:
    """A reconcile run holding the audience's reconcile slot (one at a time)."""
    session = ext.session
    slot = f"reconcile:{list_id}"[:64]
    for _ in range(2):
        now = utcnow()
        run = Run(
            kind=RECONCILE_RUN,
            list_id=list_id,
            active_list_id=slot,
            started_by=started_by[:120],
            status=RunStatus.RUNNING,
            started_at=now,
            lease_until=now + LEASE,
        )
        session.add(run)
        try:
            session.commit()
            return run
        except IntegrityError:
            session.rollback()
        holder = session.execute(
            sa.select(Run).where(Run.active_list_id == slot)
        ).scalar_one_or_none()
        if holder is not None and holder.lease_until and holder.lease_until > utcnow():
            raise ReconcileBusy(
                f"A reconcile of this audience is already running (run {holder.id}); it"
                " will be done soon: look at Sync status."
            )
        if holder is not None:  # it died: end it and take its place
            holder.status, holder.active_list_id = RunStatus.FAILED, None
            holder.message = messages.RECONCILE_TAKEN_OVER
            holder.finished_at = utcnow()
            session.commit()
    raise ReconcileBusy("Could not start a reconcile; try again.")  # pragma: no cover


def reconcile(ext: McSync, started_by: str = "cli", page_size: int = PAGE_SIZE) -> ReconcileResult:
    """Read the members changed since the last reconcile and apply their changes.

    :raises NoAudience: no audience chosen.
    :raises ReconcileBusy: another reconcile of this audience is running.
    :raises MailchimpError: Mailchimp refused (bad key, unknown audience) or stayed busy.
    """
    session = ext.session
    list_id = settings_mod.load(session, ext.config).audience()
    previous = last_reconcile(session, list_id)
    since = _since(previous.planned_through) if previous is not None else None
    run = _claim(ext, list_id, started_by)
    result = ReconcileResult(
        run_id=run.id,
        list_id=list_id,
        first=previous is None,
        since=since,
        through=previous.planned_through if previous is not None else None,
    )
    started = time.monotonic()
    gateway = gateway_for(ext)
    try:
        # Mailchimp lists archived contacts only when asked for them: a second pass.
        for status in (None, "archived"):
            offset = 0
            while True:
                members, total = _page(
                    gateway,
                    list_id,
                    offset,
                    page_size,
                    since,
                    status,
                    result,
                    ext.config.retry_delay,
                )
                if not members:
                    break
                _apply_page(ext, run, list_id, members, result)
                # The page's changes are kept only while this run holds the audience's
                # slot. A later reconcile that took over (_claim) has ended this run:
                # it must record nothing after its end (an export's batches rely on a
                # run's end, see outcomes.others_wrote_since).
                held = session.execute(
                    sa.update(Run)
                    .where(Run.id == run.id, Run.active_list_id.is_not(None))
                    .values(lease_until=utcnow() + LEASE, total=result.read)
                    .execution_options(synchronize_session=False)
                )
                if not getattr(held, "rowcount", 0):
                    session.rollback()
                    raise ReconcileTakenOver(str(messages.RECONCILE_TAKEN_OVER))
                session.commit()
                offset += len(members)
                if offset >= total:
                    break
    except ReconcileTakenOver:
        raise  # the reconcile that took over has ended this run already
    except BaseException as exc:
        session.rollback()
        run.status, run.active_list_id, run.finished_at = RunStatus.FAILED, None, utcnow()
        run.message = messages.RECONCILE_STOPPED(read=result.read, error=exc)[:2000]
        session.commit()
        raise
    result.seconds = round(time.monotonic() - started, 2)
    run.total = result.read
    run.skipped = result.stale
    run.planned_through = result.through
    run.active_list_id = None
    if result.first:
        said = messages.RECONCILE_WHOLE(read=result.read, applied=result.applied)
    else:
        said = messages.RECONCILE_CHANGED(
            read=result.read, since=since or messages.SINCE_THE_START, applied=result.applied
        )
    close_run(run, said)
    session.commit()
    return result


def _since(through: str | None) -> str | None:
    """A second before the newest change the last reconcile saw: a member changed in that
    same second after its read is not missed (one read again changes nothing)."""
    stamp = parse_time(through)
    return (stamp - timedelta(seconds=1)).isoformat() if stamp else None


def _page(
    gateway: Any,
    list_id: str,
    offset: int,
    count: int,
    since: str | None,
    status: str | None,
    result: ReconcileResult,
    retry_delay: float,
) -> tuple[list[dict[str, Any]], int]:
    for attempt in range(1, PAGE_TRIES + 1):
        result.requests += 1
        try:
            members, total = gateway.members_page(
                list_id, offset=offset, count=count, since_last_changed=since, status=status
            )
            return members, total
        except (TransientError, SlotTimeout) as exc:
            if attempt == PAGE_TRIES:
                raise
            retry_after = exc.retry_after if isinstance(exc, TransientError) else None
            time.sleep(min(backoff_seconds(attempt, retry_after, retry_delay), 30.0))
    raise AssertionError("unreachable")  # pragma: no cover


def _merge_differs(known: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    known = known or {}
    return any(
        str(known.get(tag, "")) != str(value)
        for tag, value in now.items()
        if isinstance(value, (str, int, float)) and value != ""
    )


def _apply_page(
    ext: McSync, run: Run, list_id: str, members: list[dict[str, Any]], result: ReconcileResult
) -> None:
    session = ext.session
    by_hash = {subscriber_hash(str(m.get("email_address") or "")): m for m in members}
    known = {
        row.email_hash: row
        for row in session.execute(
            sa.select(
                AudienceMember.email_hash,
                AudienceMember.status,
                AudienceMember.merge_fields,
                AudienceMember.contact_id,
            ).where(AudienceMember.email_hash.in_(list(by_hash)))
        )
    }
    contacts = [
        str(m["contact_id"]) for h, m in by_hash.items() if h not in known and m.get("contact_id")
    ]
    moved = (
        {
            row.contact_id: row
            for row in session.execute(
                sa.select(AudienceMember.contact_id, AudienceMember.email).where(
                    AudienceMember.contact_id.in_(contacts)
                )
            )
        }
        if contacts
        else {}
    )
    fresh: list[dict[str, Any]] = []
    outcomes: list[AddressOutcome] = []
    now = utcnow()
    for key, member in by_hash.items():
        result.read += 1
        email = str(member.get("email_address") or "")
        status = str(member.get("status") or "")
        merge = {
            k: v
            for k, v in (member.get("merge_fields") or {}).items()
            if isinstance(v, (str, int, float))
        }
        changed_at = parse_time(member.get("last_changed")) or now
        stamp = changed_at.isoformat()
        if result.through is None or stamp > result.through:
            result.through = stamp
        prev = known.get(key)
        kind: Kind | None = None
        old_email = None
        if prev is None:
            origin = moved.get(str(member.get("contact_id") or ""))
            if origin is not None:
                kind, old_email = Kind.UPEMAIL, origin.email
            elif status in OFF_STATUSES:
                kind = KIND_OF_STATUS[status]
            else:
                fresh.append(_snapshot_row(key, list_id, member, email, status, merge, changed_at))
                continue
        elif prev.status != status and status in KIND_OF_STATUS:
            kind = KIND_OF_STATUS[status]
        elif _merge_differs(prev.merge_fields, merge):
            kind = Kind.PROFILE
        elif prev.status != status:  # pending, transactional: nothing for the shop to do
            session.execute(
                sa.update(AudienceMember)
                .where(AudienceMember.email_hash == key)
                .values(status=status, changed_at=changed_at, seen_at=now)
            )
            continue
        else:
            continue
        change = MailchimpChange(
            email=old_email or email,
            new_email=email if old_email else None,
            status=status,
            kind=kind,
            changed_at=changed_at,
            reason="archived" if status == "archived" else "reconcile",
            merge_fields=merge,
            origin="reconcile",
            list_id=list_id,
        )
        if apply_change(ext, change, list_id, run.id, outcomes) is Applied.APPLIED:
            result.applied += 1
            if member.get("contact_id"):
                session.execute(
                    sa.update(AudienceMember)
                    .where(AudienceMember.email_hash == key)
                    .values(contact_id=str(member["contact_id"])[:64])
                )
        else:
            result.stale += 1
    if fresh:
        insert_new(session, fresh)
        result.recorded += len(fresh)
    # One insert and one counter update for the page's changes, not one per change.
    record(session, run.id, outcomes)


def _snapshot_row(
    key: str,
    list_id: str,
    member: dict[str, Any],
    email: str,
    status: str,
    merge: dict[str, Any],
    changed_at: datetime,
) -> dict[str, Any]:
    return {
        "email_hash": key,
        "list_id": list_id,
        "email": email[:320],
        "email_lower": normalize(email)[:320],
        "status": status[:16],
        "merge_fields": merge or None,
        "contact_id": str(member.get("contact_id") or "")[:64] or None,
        "changed_at": changed_at,
        "seen_at": utcnow(),
    }
