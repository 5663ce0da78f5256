"""The sync status dashboard's queries: what was synced in a period, and what failed.

Every query is bounded by an indexed column (``mcsync_runs.created_at``,
``mcsync_outcomes(run_id, outcome)``, ``mcsync_outcomes(outcome, created_at)``), so a
year of history (a million outcomes) answers in milliseconds. The per-day chart sums
the runs' counters instead of counting outcome rows: one row per run, not per address.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .errors import McSyncError
from .i18n import gettext as _
from .inputs import beyond, brief
from .models import OutboxItem, Outcome, Run
from .outbox import waiting_count
from .outcomes import LABELS
from .statuses import Result
from .times import utcnow

MAX_DAYS = 365
PER_PAGE = 25
ERROR_KINDS = ("permanent", "retried")  # "retried": passing failures that ran out of tries


class InvalidPeriod(McSyncError, ValueError):
    """The period asked for is not 1 to 365 days; the message says so."""


def check_days(value: Any) -> int:
    typed = str(value).strip()
    # More digits than 365 has: out of range, told without int(), which refuses more
    # than 4,300 digits as not a number.
    days = None
    if not beyond(typed, MAX_DAYS):
        try:
            days = int(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidPeriod(
                _("The period must be a number of days; got %(value)r.", value=brief(value))
            ) from None
    if days is None or not 1 <= days <= MAX_DAYS:
        raise InvalidPeriod(
            _(
                "The period must be between 1 and %(max)s days; got %(days)s.",
                max=MAX_DAYS,
                days=brief(typed),
            )
        )
    return days


def run_summary(run: Run) -> dict[str, Any]:
    end = run.finished_at
    duration = (end - run.started_at).total_seconds() if end and run.started_at else None
    return {
        "id": run.id,
        "kind": run.kind,
        "list_id": run.list_id,
        "status": run.status,
        "started_by": run.started_by,
        "created_at": run.created_at.isoformat(),
        "duration": round(duration, 1) if duration is not None else None,
        "total": run.total,
        "created": run.created,
        "updated": run.updated,
        "skipped": run.skipped,
        "errors": run.errors,
        "archived": run.archived,
        "confirmations": run.confirmations,
        "sync_reason": run.sync_reason,
        "skip_merge_validation": run.skip_merge_validation,
        "excluded": run.excluded,
        "invalid": run.invalid,
        "message": run.message,
    }


@dataclass(frozen=True)
class Period:
    days: int
    since: datetime
    until: datetime

    @classmethod
    def last(cls, days: int, now: datetime | None = None) -> Period:
        until = now or utcnow()
        return cls(days, until - timedelta(days=days), until)


def runs_in(
    session: Session, period: Period, page: int = 1, per_page: int = PER_PAGE
) -> dict[str, Any]:
    """The period's syncs, newest first, one page of them, with the total count."""
    where = (Run.created_at >= period.since, Run.created_at <= period.until)
    total = session.execute(sa.select(sa.func.count()).select_from(Run).where(*where)).scalar_one()
    page = max(1, page)
    rows = session.execute(
        sa.select(Run)
        .where(*where)
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).scalars()
    return {
        "total": total,
        "page": page,
        "pages": max(1, -(-total // per_page)),
        "runs": [run_summary(r) for r in rows],
    }


def daily(session: Session, period: Period) -> list[dict[str, Any]]:
    """Per day of the period: addresses synced (created, updated, unsubscribed) and failed."""
    created: Any = Run.created_at
    if session.get_bind().dialect.name == "postgresql":
        # date(timestamptz) uses the session's time zone; the chart's days are UTC days.
        created = sa.func.timezone("UTC", Run.created_at)
    day = sa.func.date(created)
    rows = session.execute(
        sa.select(
            day,
            sa.func.sum(Run.created + Run.updated),
            sa.func.sum(Run.errors),
            sa.func.sum(Run.skipped),
        )
        .where(Run.created_at >= period.since, Run.created_at <= period.until)
        .group_by(day)
    ).all()
    by_day = {str(d): (int(s or 0), int(f or 0), int(k or 0)) for d, s, f, k in rows}
    first: date = period.since.date()
    out = []
    for offset in range((period.until.date() - first).days + 1):
        key = (first + timedelta(days=offset)).isoformat()
        synced, failed, skipped = by_day.get(key, (0, 0, 0))
        out.append({"day": key, "synced": synced, "failed": failed, "skipped": skipped})
    return out


def totals(session: Session, period: Period) -> dict[str, int]:
    row = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(Run.created), 0),
            sa.func.coalesce(sa.func.sum(Run.updated), 0),
            sa.func.coalesce(sa.func.sum(Run.skipped), 0),
            sa.func.coalesce(sa.func.sum(Run.errors), 0),
            sa.func.coalesce(sa.func.sum(Run.archived), 0),
            sa.func.coalesce(sa.func.sum(Run.confirmations), 0),
        ).where(Run.created_at >= period.since, Run.created_at <= period.until)
    ).one()
    names = ("runs", "created", "updated", "skipped", "errors", "archived", "confirmations")
    return dict(zip(names, map(int, row), strict=True))


def _error_filter(kind: str | None) -> list[Any]:
    if kind == "permanent":
        return [Outcome.outcome == Result.ERROR, Outcome.permanent.is_(True)]
    if kind == "retried":
        return [Outcome.outcome == Result.ERROR, Outcome.permanent.is_(False)]
    return []


def errors(
    session: Session,
    *,
    run_id: int | None = None,
    period: Period | None = None,
    kind: str | None = None,
    title: str | None = None,
    limit: int | None = 200,
    outcomes: tuple[str, ...] = (Result.ERROR,),
) -> list[dict[str, Any]]:
    """Error outcomes of one run or of a period: address, Mailchimp's title and detail.

    ``outcomes`` adds other outcomes that need the owner's eye (the CSV adds
    ``archived``: contacts left archived in Mailchimp, which receive nothing).
    """
    # Only the columns shown: whole Outcome objects (with their "sent" JSON) make a year's
    # CSV several times slower.
    query = sa.select(
        Outcome.run_id,
        Outcome.created_at,
        Outcome.email,
        Outcome.error_title,
        Outcome.error_detail,
        Outcome.permanent,
        Outcome.outcome,
    ).where(Outcome.outcome.in_(outcomes), *_error_filter(kind))
    if run_id is not None:
        query = query.where(Outcome.run_id == run_id)
    if period is not None:
        query = query.where(Outcome.created_at >= period.since, Outcome.created_at <= period.until)
    if title:
        query = query.where(Outcome.error_title == title)
    query = query.order_by(Outcome.created_at.desc(), Outcome.id.desc())
    if limit:
        query = query.limit(limit)
    return [
        {
            "run_id": run_id,
            "at": at.isoformat(),
            "email": email,
            "title": title,
            "detail": detail,
            "permanent": permanent,
            "outcome": LABELS.get(outcome, outcome),
        }
        for run_id, at, email, title, detail, permanent, outcome in session.execute(query)
    ]


def error_titles(session: Session, run_id: int) -> list[tuple[str, int]]:
    rows = session.execute(
        sa.select(Outcome.error_title, sa.func.count())
        .where(Outcome.run_id == run_id, Outcome.outcome == Result.ERROR)
        .group_by(Outcome.error_title)
        .order_by(sa.func.count().desc())
    ).all()
    return [(t, int(n)) for t, n in rows if t is not None]


CSV_COLUMNS = ["run_id", "at", "email", "outcome", "title", "detail", "permanent"]
# The CSV lists errors and contacts left archived (both mean: this address gets no mail).
CSV_OUTCOMES = (Result.ERROR, Result.ARCHIVED)


def errors_csv(
    rows: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    delimiter: str = ",",
    bom: bool = False,
) -> Iterator[str]:
    """The error list as CSV, one chunk per row (streamed by the admin page).

    ``headers`` titles the columns (the field names by default); a French spreadsheet
    wants ``delimiter=";"`` and ``bom=True`` (see :func:`flask_mcsync.i18n.csv_dialect`).
    """
    buffer = io.StringIO()
    if bom:
        buffer.write("\ufeff")
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, delimiter=delimiter)
    writer.writerow(headers or {k: k for k in CSV_COLUMNS})
    for row in rows:
        # A leading =, +, - or @ would be a formula in a spreadsheet: neutralise it.
        writer.writerow({k: _cell(row.get(k, "")) for k in CSV_COLUMNS})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def waiting(session: Session, limit: int = 50) -> dict[str, Any]:
    """Auto-sync rows not sent yet, with their last error (they will be retried)."""
    where = OutboxItem.waiting()
    count = waiting_count(session)
    rows = session.execute(
        sa.select(OutboxItem).where(where).order_by(OutboxItem.id).limit(limit)
    ).scalars()
    return {
        "count": count,
        "rows": [
            {
                "email": r.email,
                "action": r.action,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "next_attempt_at": r.next_attempt_at.isoformat(),
                "created_at": r.created_at.isoformat(),
            }
            for r in rows
        ],
    }


def report(session: Session, days: int, page: int = 1) -> dict[str, Any]:
    """Everything the Sync status page and ``flask mcsync status`` show."""
    period = Period.last(check_days(days))
    return {
        "days": period.days,
        "since": period.since.isoformat(),
        "until": period.until.isoformat(),
        "totals": totals(session, period),
        "daily": daily(session, period),
        **runs_in(session, period, page),
        "waiting": waiting(session),
    }
