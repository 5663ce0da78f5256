"""The diagnostic tool: everything we know about one address, and a re-sync of it.

It answers the shop owner's questions in order: is the address in the shop and a
subscriber, is it valid, is it excluded (by which rule), what did we do with it lately,
and what does Mailchimp hold now. The live lookup may fail (Mailchimp down, no key):
the rest of the answer still comes, with the reason the lookup failed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from . import messages
from . import settings as settings_mod
from .addresses import invalid_reason, normalize, subscriber_hash
from .app_state import McSync
from .eligibility import judge
from .enqueue import enqueue_resync
from .errors import ConfigError
from .exclusions import load_ruleset
from .gateway import MailchimpError, gateway_for
from .i18n import gettext as _
from .inbound import FROM_MAILCHIMP_RUNS
from .models import OutboxItem, Outcome, Run
from .outcomes import LABELS, run_label, shown
from .statuses import Result, RunKind, RunStatus
from .throttle import RedisUnavailable, SlotTimeout

HISTORY = 20


def diagnose(ext: McSync, email: str, live: bool = True) -> dict[str, Any]:
    """What we know about ``email`` (any case, spaces around)."""
    session = ext.session
    typed = (email or "").strip()
    key = normalize(typed)
    rules = load_ruleset(session)
    verdict = judge(typed, rules)
    rows = ext.require_source().find(session, typed) if typed else []
    in_shop = [
        {"id": row.pk, "email": row.email, "subscriber": is_sub, "merge_fields": row.merge_fields}
        for row, is_sub in rows
    ]
    subscriber = any(r["subscriber"] for r in in_shop)
    current = settings_mod.load(session, ext.config)
    answer: dict[str, Any] = {
        "email": typed,
        "normalized": key,
        "subscriber_hash": subscriber_hash(typed) if typed else None,
        "valid": invalid_reason(typed) is None,
        "invalid_reason": invalid_reason(typed),
        "excluded": verdict.rule is not None,
        "excluded_by": verdict.rule.describe() if verdict.rule else None,
        "in_shop": in_shop,
        "subscriber": subscriber,
        "eligible": verdict.send and subscriber,
        "list_id": current.list_id,
        "history": history(session, typed) if typed else [],
        "waiting": waiting_rows(session, typed) if typed else [],
        "mailchimp": None,
        "mailchimp_error": None,
    }
    answer["last_error"] = next(
        (h for h in answer["history"] if h["outcome"] == Result.ERROR), None
    )
    # What we sent; changes that came from Mailchimp are in the history, not sent by us.
    answer["last_sent"] = next(
        (h for h in answer["history"] if h["sent"] and h["run_kind"] not in FROM_MAILCHIMP_RUNS),
        None,
    )
    if live and typed and answer["valid"]:
        answer.update(lookup(ext, current.list_id, typed))
    return answer


def history(session: Any, email: str) -> list[dict[str, Any]]:
    rows = session.execute(
        sa.select(Outcome, Run.kind, Run.sync_reason)
        .join(Run, Run.id == Outcome.run_id)
        .where(Outcome.email_hash == subscriber_hash(email))
        .order_by(Outcome.created_at.desc(), Outcome.id.desc())
        .limit(HISTORY)
    ).all()
    return [
        {
            **shown(o),
            "run_kind": kind,
            "sync_reason": reason,
            "run_label": run_label(kind, reason),
            "outcome_label": LABELS.get(o.outcome, o.outcome),
            "sent": o.sent,
        }
        for o, kind, reason in rows
    ]


def waiting_rows(session: Any, email: str) -> list[dict[str, Any]]:
    rows = session.execute(
        sa.select(OutboxItem)
        .where(
            OutboxItem.email_hash == subscriber_hash(email),
            OutboxItem.waiting(),
        )
        .order_by(OutboxItem.id)
    ).scalars()
    return [
        {
            "action": r.action,
            "attempts": r.attempts,
            "last_error": r.last_error,
            "next_attempt_at": r.next_attempt_at.isoformat(),
        }
        for r in rows
    ]


def lookup(ext: McSync, list_id: str | None, email: str) -> dict[str, Any]:
    """Mailchimp's member now: status, merge fields, last change; or why we cannot tell."""
    if not list_id:
        return {"mailchimp_error": str(settings_mod.NoAudience())}
    try:
        member = gateway_for(ext).get_member(list_id, email)
    except (MailchimpError, ConfigError, SlotTimeout, RedisUnavailable) as exc:
        # Redis down too: the gateway's slots say so in a sentence (RedisUnavailable).
        error = messages.translate(str(exc))
        return {"mailchimp_error": _("Could not ask Mailchimp: %(error)s", error=error)}
    if member is None:
        return {"mailchimp": {"in_audience": False}}
    return {
        "mailchimp": {
            "in_audience": True,
            "status": member.get("status"),
            "email_address": member.get("email_address"),
            "merge_fields": member.get("merge_fields") or {},
            "last_changed": member.get("last_changed"),
        }
    }


def start_resync(ext: McSync, email: str, started_by: str = "diagnostic") -> Run:
    """Queue a re-sync of one address; returns its run (poll it for the outcome).

    The job applies the same rules as every path: an excluded or invalid address is
    recorded as skipped, and an existing member's status is never changed.

    :raises NoAudience: when no audience is chosen.
    :raises ConfigError: when the queue is not configured.
    """
    session = ext.session
    list_id = settings_mod.load(session, ext.config).audience()
    run = Run(kind=RunKind.RESYNC, list_id=list_id, started_by=started_by[:120], total=1)
    session.add(run)
    session.commit()
    try:
        enqueue_resync(ext, run.id, email.strip())
    except Exception as exc:  # the run must not stay "queued" forever
        run.status = RunStatus.FAILED
        # Stored in English, like every run's message (the CLI, the CSV); the page that
        # asked is told in its own language.
        run.message = messages.RESYNC_NOT_QUEUED(error=exc)
        session.commit()
        raise ConfigError(_(messages.RESYNC_NOT_QUEUED.msgid, error=exc)) from exc
    return run
