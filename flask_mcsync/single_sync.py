"""Syncing one address: an auto-sync from the outbox, or a re-sync from the diagnostic tool.

What to do is decided from the shop's data as it is when the job runs, not as it was
at signup: a customer who opted out meanwhile is unsubscribed, not subscribed. The
decision goes through :func:`eligibility.judge` like every other path, so an excluded
or invalid address is recorded as skipped and never sent. Each sync is a :class:`Run`
of kind ``auto`` or ``resync`` with one outcome, so the dashboard shows it beside the
manual exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from . import messages
from . import settings as settings_mod
from .addresses import normalize, subscriber_hash
from .app_state import McSync
from .eligibility import judge
from .exclusions import load_ruleset
from .gateway import (
    AccountError,
    AddressError,
    MailchimpError,
    gateway_for,
)
from .i18n import N_
from .merge_values import convert_all
from .models import OutboxItem, Run
from .outcomes import (
    COUNTER,
    AddressOutcome,
    Result,
    archived_outcome,
    created_or_updated,
    record,
)
from .preflight import recent_types
from .settings import NoAudience, SyncSettings
from .statuses import (
    OPT_INS,
    OutboxAction,
    OutboxStatus,
    RunKind,
    RunStatus,
    SendAction,
    SyncReason,
)
from .times import utcnow

# Who starts an auto-sync, as the dashboard shows it (translated there).
SHOP = N_("shop")

# See batch_sync.CLOCK_SKEW.
CLOCK_SKEW = timedelta(seconds=2)


# The shop's actions that make a sync of a former subscriber an unsubscribe (see plan_for).
CHANGES = (OutboxAction.CHANGE, OutboxAction.OPTIN, OutboxAction.OPTOUT)


@dataclass(frozen=True)
class Plan:
    """What a single sync will do with an address."""

    action: SendAction
    email: str
    reason: str | None = None
    merge_fields: dict[str, Any] | None = None
    language: str | None = None


def plan_for(ext: McSync, email: str, wants: str) -> Plan:
    """Decide from the shop's current data.

    ``wants`` is what the shop signalled: signup, optin, optout, change (a profile or
    address change) or resync. The shop's data as it is now decides, so an opt-in
    followed by an opt-out before the job ran unsubscribes.
    """
    session = ext.session
    verdict = judge(email, load_ruleset(session))
    if not verdict.send:
        return Plan(SendAction.SKIP, email.strip(), verdict.reason)
    rows = ext.require_source().find(session, email)
    subscribed = [row for row, is_subscriber in rows if is_subscriber]
    if subscribed:
        row = subscribed[0]
        return Plan(
            SendAction.UPSERT,
            row.email.strip(),
            merge_fields=row.merge_fields,
            language=row.language,
        )
    if rows and wants in CHANGES:
        # In the shop but no longer a subscriber: they opted out of the newsletter.
        return Plan(
            SendAction.UNSUBSCRIBE, email.strip(), N_("The customer opted out in the shop.")
        )
    if rows:
        return Plan(
            SendAction.SKIP, email.strip(), N_("In the shop, but not a newsletter subscriber.")
        )
    return Plan(SendAction.SKIP, email.strip(), N_("Not in the shop's subscriber source."))


def sync_reason(plan: Plan, wants: str, previous_email: str | None) -> str:
    """What this single sync was, in the shop's words (shown on the dashboard).

    signup, optin (newsletter opt-in), optout, address_change, update (a profile
    change), resync.
    """
    if wants == SyncReason.RESYNC:
        return SyncReason.RESYNC
    if previous_email and normalize(previous_email) != normalize(plan.email):
        return SyncReason.ADDRESS_CHANGE
    if plan.action == SendAction.UNSUBSCRIBE:
        return SyncReason.OPTOUT
    if wants in OPT_INS:
        return SyncReason(wants)
    if wants == OutboxAction.OPTOUT and plan.action == SendAction.SKIP:
        return SyncReason.OPTOUT
    return SyncReason.UPDATE


def perform(
    ext: McSync,
    list_id: str,
    status_if_new: str,
    plan: Plan,
    previous_email: str | None,
    wants: str = "resync",
) -> AddressOutcome:
    """Carry out a plan against Mailchimp. Raises TransientError / AccountError.

    A fresh opt-in in the shop (``wants`` signup or optin) of someone Mailchimp holds
    unsubscribed or cleaned asks Mailchimp for ``pending``: it e-mails them to confirm
    (a cleaned address is refused, and that refusal is recorded). Nothing else ever
    changes a member's status, and an archived contact is left archived.
    """
    if plan.action == SendAction.SKIP:
        return AddressOutcome(plan.email, Result.SKIPPED, skip_reason=plan.reason)
    gateway = gateway_for(ext)
    sent: dict[str, Any] = {"action": plan.action}
    try:
        if plan.action == SendAction.UNSUBSCRIBE:
            member = gateway.unsubscribe_member(list_id, plan.email)
            if member is None:
                return AddressOutcome(
                    plan.email, Result.SKIPPED, skip_reason=N_("Opted out; not in the audience.")
                )
            return AddressOutcome(
                plan.email, Result.UNSUBSCRIBED, mailchimp_status=member.get("status"), sent=sent
            )
        # The owner looking at the diagnostic gets the audience's fields as they are now.
        types, kept = recent_types(ext, list_id, fresh=wants == SyncReason.RESYNC)
        merge = convert_all(plan.merge_fields or {}, types)
        sent.update(status_if_new=status_if_new, merge_fields=merge)
        if plan.language:
            sent["language"] = plan.language
        if previous_email and normalize(previous_email) != normalize(plan.email):
            sent["previous_email"] = previous_email
            _rename(gateway, list_id, previous_email, plan.email)
        since = utcnow() - CLOCK_SKEW
        try:
            member = gateway.upsert_member(
                list_id, plan.email, status_if_new, merge, language=plan.language
            )
        except AddressError:
            if not kept:
                raise
            # Refused with field types read up to a minute ago: a field may have changed
            # since. Once more with fresh ones (a refused PUT changed nothing).
            types, _ = recent_types(ext, list_id, fresh=True)
            merge = sent["merge_fields"] = convert_all(plan.merge_fields or {}, types)
            member = gateway.upsert_member(
                list_id, plan.email, status_if_new, merge, language=plan.language
            )
        if member.get("status") == "archived":
            return archived_outcome(plan.email, sent)
        if wants in OPT_INS and member.get("status") in ("unsubscribed", "cleaned"):
            sent["status"] = "pending"
            confirmed = gateway.ask_confirmation(list_id, plan.email) or member
            return AddressOutcome(
                plan.email,
                Result.CONFIRMATION,
                mailchimp_status=confirmed.get("status"),
                sent=sent,
                skip_reason=messages.CONFIRMATION_SENT(status=member.get("status")),
            )
    except AddressError as exc:
        return AddressOutcome(plan.email, Result.ERROR, error=exc, sent=sent)
    # Mailchimp's answer decides; our history only for a sync a moment before this one.
    [result] = created_or_updated(
        ext.session, list_id, status_if_new, since, [(plan.email, member)]
    )
    return AddressOutcome(
        plan.email,
        result,
        mailchimp_status=member.get("status"),
        sent=sent,
    )


def _rename(gateway: Any, list_id: str, old: str, new: str) -> None:
    """Move the contact to its new address, keeping its status and history.

    When the old address is not in the audience there is nothing to move; when the new
    one is already a member, the old contact is unsubscribed so mail does not go to both.
    """
    try:
        gateway.change_address(list_id, old, new)
    except AddressError:
        gateway.unsubscribe_member(list_id, old)


def run_single(
    ext: McSync,
    email: str,
    *,
    kind: str,
    started_by: str,
    wants: str,
    previous_email: str | None = None,
    run_id: int | None = None,
    commit: bool = True,
    current: SyncSettings | None = None,
) -> Run:
    """Sync one address now, as a run of its own, and record the outcome.

    The run row is written with its outcome, once Mailchimp has answered, so a try that
    will be repeated leaves nothing behind. ``run_id`` names a run made beforehand (the
    diagnostic tool shows it while it waits). ``commit=False`` leaves the commit to the
    caller, who closes its outbox rows in the same transaction. ``current``: the
    settings, when the caller has just read them in this transaction.

    :raises TransientError: when Mailchimp is unreachable or busy (the caller retries).
    :raises AccountError: when the key or audience is wrong.
    :raises NoAudience: when no audience is chosen.
    """
    session = ext.session
    if current is None:
        current = settings_mod.load(session, ext.config)
    list_id = current.audience()
    started = utcnow()
    if run_id is not None:
        session.execute(
            sa.update(Run)
            .where(Run.id == run_id)
            .values(status=RunStatus.RUNNING, started_at=started)
        )
        session.commit()
    plan = plan_for(ext, email, wants)
    outcome = perform(ext, list_id, current.status_if_new, plan, previous_email, wants)
    message = None
    if outcome.result in (Result.SKIPPED, Result.ARCHIVED, Result.CONFIRMATION):
        message = outcome.skip_reason
    elif outcome.error is not None:
        message = f"{outcome.error.title}: {outcome.error.full_detail}"
    run = _write_run(
        ext,
        run_id,
        outcome,
        {"kind": kind, "list_id": list_id, "started_by": started_by, "started_at": started},
        status_if_new=current.status_if_new,
        sync_reason=sync_reason(plan, wants, previous_email),
        status=RunStatus.FINISHED,
        finished_at=utcnow(),
        message=message,
    )
    if kind == RunKind.RESYNC and outcome.result in SENT:
        _settle_waiting(session, email, run.id)
    if commit:
        session.commit()
    else:
        session.flush()
    return run


SENT = (Result.CREATED, Result.UPDATED, Result.UNSUBSCRIBED)


def _settle_waiting(session: Any, email: str, run_id: int) -> None:
    """A re-sync that reached Mailchimp did what the address's waiting auto-syncs would
    (both read the shop's current data), so they end with it: otherwise the diagnostic
    would go on showing "Auto-sync waiting" with a stale error beside a fresh success."""
    session.execute(
        sa.update(OutboxItem)
        .where(
            OutboxItem.email_hash == subscriber_hash(email),
            OutboxItem.status == OutboxStatus.PENDING,
        )
        .values(status=OutboxStatus.SENT, last_error=None, run_id=run_id)
        .execution_options(synchronize_session=False)
    )


def _write_run(
    ext: McSync, run_id: int | None, outcome: AddressOutcome, new: dict[str, Any], **ended: Any
) -> Run:
    """Record a single-address sync's outcome with its run, flushed.

    The run made beforehand (``run_id``, the diagnostic's) gets the columns ``ended``;
    otherwise a run is inserted whole, with the columns ``new`` and ``ended`` and its
    counter: one INSERT, not an INSERT and UPDATEs (auto-sync writes one per signup).
    """
    session = ext.session
    run = session.get(Run, run_id) if run_id is not None else None
    inserted = run is None
    if run is None:
        new = {**new, "started_by": new["started_by"][:120]}  # the column's length
        run = Run(total=1, **new, **ended, **{COUNTER[outcome.result]: 1})
        session.add(run)
    else:
        for name, value in ended.items():
            setattr(run, name, value)
    session.flush()
    record(session, run.id, [outcome], bump=not inserted)
    return run


def fail_run(
    ext: McSync,
    run_id: int | None,
    email: str,
    error: MailchimpError | NoAudience,
    *,
    kind: str = RunKind.RESYNC,
    started_by: str = "",
    reason: str | None = None,
    commit: bool = True,
) -> Run:
    """Record a single-address sync that gave up: its run, failed, with the error."""
    if isinstance(error, NoAudience):  # recorded like Mailchimp's refusals, in our words
        error = AccountError(str(error))
    session = ext.session
    list_id = settings_mod.load(session, ext.config).list_id or ""
    earlier = session.get(Run, run_id) if run_id is not None else None
    if not (reason or (earlier and earlier.sync_reason)) and kind == RunKind.RESYNC:
        reason = SyncReason.RESYNC
    run = _write_run(
        ext,
        run_id,
        AddressOutcome(email, Result.ERROR, error=error),
        {"kind": kind, "list_id": list_id, "started_by": started_by, "started_at": utcnow()},
        sync_reason=reason or (earlier.sync_reason if earlier else None),
        status=RunStatus.FAILED,
        finished_at=utcnow(),
        message=f"{error.title}: {error.full_detail}" if error.full_detail else error.title,
    )
    if commit:
        session.commit()
    else:
        session.flush()
    return run
