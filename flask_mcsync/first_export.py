"""When auto-sync starts, and which signups the first export covers: one rule, no gap.

Auto-sync only sends once a first export to the chosen audience has completed: before
that, the first export is what brings the shop's customers in. The difficulty is the
signups that arrive *while* that export runs. The planner reads the shop in primary-key
order and fixes its range as it goes; a signup committed after the planner read past
its place (or after planning ended, while the batches are still being sent) is not in
the export. Deciding by time or by primary key cannot close that gap: on PostgreSQL a
row can commit after rows with higher keys were read, and clocks differ between
machines. Only the export's own record says what it covered.

So the rule is decided per outbox row, when a worker picks it up, from committed facts:

* auto-sync switched off, or no audience chosen: the row is **ignored** (and says so).
* no first export to this audience has completed, and none is running: **ignored**, and
  that is true: the first export, which must run before auto-sync starts, reads the
  customer from the shop (the row committed with the customer, before we looked, so
  an export started later reads it).
* a first export to this audience is queued or running: the row **waits** for it
  (``pending``, ``run_id`` = that export). When the export ends its waiting rows are
  released at once (:func:`release`, in the transaction that ends the run), and a
  waiting row is looked at again after a lease in any case.
* auto-sync is active: when an export to this audience recorded this address after the
  signup, the row is **closed with that export's outcome** (``run_id`` = the export):
  the export read the customer after the signup, so sending it again would only
  record a second outcome. Otherwise the row is **sent**. Rows about a change (new
  address, opt-out, new name) are always sent: the export may have read older data.
  A signup the export found unsubscribed or cleaned in Mailchimp is sent too: an
  export never asks for ``pending``, so only auto-sync can send the confirmation
  e-mail a fresh opt-in of that person calls for (:func:`single_sync.perform`).

Every signup is therefore covered by the export or by auto-sync, and by exactly one of
them, whatever the timing; a failed first export leaves auto-sync off (its rows are
ignored for the next export to cover). Switching audience clears the first export
(:func:`settings.update`) and an export to another audience does not count for the
current one, so the same holds for the first export to the new audience.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import messages
from .models import OutboxItem, Outcome, Run, Settings
from .settings import SyncSettings
from .statuses import OutboxAction, OutboxStatus, Result, RunKind, StoredStr
from .times import utcnow

# An export's outcome, as the outbox row it covers records it.
_COVERED_STATUS: dict[str, OutboxStatus] = {
    Result.CREATED: OutboxStatus.SENT,
    Result.UPDATED: OutboxStatus.SENT,
    Result.UNSUBSCRIBED: OutboxStatus.SENT,
    Result.SKIPPED: OutboxStatus.SKIPPED,
    Result.ERROR: OutboxStatus.FAILED,
}


# Mailchimp statuses after which a fresh signup asks for a confirmation e-mail, which an
# export never does (see single_sync.perform).
NEEDS_CONFIRMATION = ("unsubscribed", "cleaned")


class Action(StoredStr):
    """What :func:`decide` says to do with an outbox row now."""

    SEND = "send"
    HOLD = "hold"  # the first export is running: wait for it
    IGNORE = "ignore"
    COVERED = "covered"  # the export sent the address: close the row with its outcome


@dataclass(frozen=True)
class Decision:
    """What to do with an outbox row now."""

    action: Action
    reason: str | None = None
    run_id: int | None = None  # hold: the export it waits for; covered: the export
    status: str | None = None  # covered: the row's final status


def decide(session: Session, current: SyncSettings, items: Sequence[OutboxItem]) -> Decision:
    """Decide for the rows of one address (oldest first), from committed facts."""
    if not current.auto_sync:
        return Decision(Action.IGNORE, messages.AUTO_SYNC_OFF)
    if not current.list_id:
        return Decision(Action.IGNORE, messages.NO_AUDIENCE)
    if not current.first_export_done:
        # The export holding the audience (``runs.active_export``; read here by id only,
        # since runs calls :func:`release`).
        running = session.execute(
            sa.select(Run.id).where(Run.active_list_id == current.list_id)
        ).scalar_one_or_none()
        if running is not None:
            return Decision(
                Action.HOLD,
                messages.WAITING_FOR_EXPORT(run=running),
                run_id=running,
            )
        # ``current`` was read before that query: on PostgreSQL (read committed) the
        # export may have ended, and auto-sync started, in between. Read the flag again
        # after it, or a signup the export never read would be ignored and lost.
        if not _first_export_done_now(session, current.list_id):
            return Decision(
                Action.IGNORE,
                messages.NO_FIRST_EXPORT,
            )
    if all(item.action == OutboxAction.SIGNUP for item in items):
        covered = _export_outcome(session, current.list_id, items)
        if covered is not None and covered[2] not in NEEDS_CONFIRMATION:
            run_id, outcome, _ = covered
            status = _COVERED_STATUS.get(outcome, OutboxStatus.SENT)
            said = {
                OutboxStatus.SENT: messages.COVERED_SENT,
                OutboxStatus.SKIPPED: messages.COVERED_SKIPPED,
                OutboxStatus.FAILED: messages.COVERED_FAILED,
            }[status]
            return Decision(
                Action.COVERED,
                said(run=run_id, outcome=outcome),
                run_id=run_id,
                status=status,
            )
    return Decision(Action.SEND)


def _first_export_done_now(session: Session, list_id: str) -> bool:
    """Whether a first export to ``list_id`` has completed, read from the database now
    (a column, not the session's possibly older Settings object)."""
    found = session.execute(
        sa.select(Settings.first_export_at).where(Settings.list_id == list_id)
    ).first()
    return found is not None and found[0] is not None


def _export_outcome(
    session: Session, list_id: str, items: Sequence[OutboxItem]
) -> tuple[int, str, str | None] | None:
    """The outcome (and Mailchimp's status) an export to ``list_id`` recorded for the
    address after its signups.

    A probe of ``ix_mcsync_outcomes_hash_created``: the address's outcomes since the
    latest row was written, a handful at most. An outcome stamped earlier than the signup by a
    worker whose clock runs behind is missed; the row is then sent once more, which
    records a second outcome but loses nothing.
    """
    found = session.execute(
        sa.select(Outcome.run_id, Outcome.outcome, Outcome.mailchimp_status)
        .join(Run, Run.id == Outcome.run_id)
        .where(
            Outcome.email_hash == items[0].email_hash,
            Outcome.created_at >= max(item.created_at for item in items),
            Run.kind == RunKind.EXPORT,
            Run.list_id == list_id,
        )
        .order_by(Outcome.id.desc())
        .limit(1)
    ).first()
    if found is None:
        return None
    return int(found[0]), str(found[1]), found[2]


def hold(items: Sequence[OutboxItem], decision: Decision, lease_seconds: float) -> None:
    """Park the rows until their export ends (not an attempt: the claim is given back)."""
    for item in items:
        if item.status == OutboxStatus.SENDING:
            item.attempts = max(item.attempts - 1, 0)
        item.status = OutboxStatus.PENDING
        item.last_error = decision.reason
        item.run_id = decision.run_id
        item.next_attempt_at = utcnow() + timedelta(seconds=lease_seconds)


def release(session: Session, run_id: int) -> list[int]:
    """Make the rows waiting for export ``run_id`` due now; the caller commits.

    Called in the transaction that ends the run, so no row can miss the moment.
    Returns their ids, for the caller to hand to the workers after the commit.
    """
    waiting = sa.select(OutboxItem.id).where(
        OutboxItem.run_id == run_id, OutboxItem.status == OutboxStatus.PENDING
    )
    ids = list(session.execute(waiting).scalars())
    if ids:
        session.execute(
            sa.update(OutboxItem)
            .where(OutboxItem.id.in_(ids), OutboxItem.status == OutboxStatus.PENDING)
            .values(next_attempt_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return ids
