"""The drift report: where the shop and the Mailchimp audience disagree.

Mailchimp's side is what the last reconcile (and the webhook events since) told us,
kept in ``mcsync_audience_members``; the shop's side is its subscriber source as it is
now. One query joins them on the lower-cased address and is read in a stream, so the
report of a 100,000-member audience holds one address at a time. Each disagreement
carries the action that fits it:

* the shop says subscriber, Mailchimp says unsubscribed, cleaned or archived: the person
  left in Mailchimp; **apply to the shop** (what a webhook would have done);
* the shop says not a subscriber, Mailchimp says subscribed: the person subscribed
  through Mailchimp; **apply to the shop**;
* in Mailchimp, not in the shop (a Mailchimp signup form, an import): **nothing**;
* both say subscriber but the merge fields differ: the shop holds the names;
  **re-sync**.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .changes import OFF_STATUSES
from .i18n import N_, NP_
from .inbound import RECONCILE_RUN
from .models import AudienceMember, Run
from .source import SubscriberSource
from .status import _cell
from .statuses import RunStatus, StoredStr


class DriftKind(str, enum.Enum):
    LEFT_IN_MAILCHIMP = "left_in_mailchimp"
    SUBSCRIBED_IN_MAILCHIMP = "subscribed_in_mailchimp"
    NOT_IN_SHOP = "not_in_shop"
    MERGE_FIELDS = "merge_fields"


class Action(str, enum.Enum):
    APPLY = "apply to the shop"
    RESYNC = "re-sync"
    NOTHING = "nothing"


# English (the CLI's and the CSV's words); the drift page shows them translated.
LABELS = {
    DriftKind.LEFT_IN_MAILCHIMP: N_(
        "Shop: subscriber · Mailchimp: unsubscribed, cleaned or archived"
    ),
    DriftKind.SUBSCRIBED_IN_MAILCHIMP: N_("Shop: not a subscriber · Mailchimp: subscribed"),
    DriftKind.NOT_IN_SHOP: N_("In Mailchimp, not in the shop"),
    DriftKind.MERGE_FIELDS: N_("Merge fields differ"),
}


class ShopSide(StoredStr):
    """The shop's side of a row: the CLI's and the CSV's word."""

    SUBSCRIBER = "subscriber"
    NOT_SUBSCRIBER = "not a subscriber"
    NOT_IN_SHOP = "not in the shop"


# The shop's side as the drift page shows it (translated there).
SHOP_SIDE_LABELS = {
    ShopSide.SUBSCRIBER: N_("Subscriber"),
    ShopSide.NOT_SUBSCRIBER: N_("Not a subscriber"),
    ShopSide.NOT_IN_SHOP: N_("Not in the shop"),
}
# One merge field that differs ("FNAME: shop Carol / Mailchimp Caroline").
MERGE_DIFF = N_("%(tag)s: shop %(shop)s / Mailchimp %(mailchimp)s")
# The actions as the drift page shows them (capitalised, translated there with
# pgettext("action", ...): French says "Re-synchroniser" for the action, as the page's
# legend does, but "Re-synchronisation" for a run of that kind).
ACTION_WORDS = (
    NP_("action", "Apply to the shop"),
    NP_("action", "Re-sync"),
    NP_("action", "Nothing"),
)
ACTIONS = {
    DriftKind.LEFT_IN_MAILCHIMP: Action.APPLY,
    DriftKind.SUBSCRIBED_IN_MAILCHIMP: Action.APPLY,
    DriftKind.NOT_IN_SHOP: Action.NOTHING,
    DriftKind.MERGE_FIELDS: Action.RESYNC,
}
CSV_COLUMNS = ["email", "kind", "shop", "mailchimp", "detail", "action"]


@dataclass(frozen=True)
class DriftRow:
    email: str
    kind: DriftKind
    shop: ShopSide
    mailchimp: str  # Mailchimp's status
    # The merge fields that differ, (tag, shop's value, Mailchimp's): the page says them
    # in its language; :attr:`detail` says them in English, for the CSV and the JSON.
    differ: tuple[tuple[str, str, str], ...] = ()

    @property
    def detail(self) -> str:
        return "; ".join(
            MERGE_DIFF % {"tag": t, "shop": s, "mailchimp": m} for t, s, m in self.differ
        )

    @property
    def action(self) -> Action:
        return ACTIONS[self.kind]

    def as_dict(self) -> dict[str, str]:
        return {
            "email": self.email,
            "kind": self.kind.value,
            "shop": self.shop.value,
            "mailchimp": self.mailchimp,
            "detail": self.detail,
            "action": self.action.value,
        }


@dataclass
class DriftReport:
    list_id: str | None
    reconciled_at: str | None  # when the last reconcile finished; None: never
    members_known: int
    counts: dict[str, int] = field(default_factory=dict)
    rows: list[DriftRow] = field(default_factory=list)  # the first ``limit`` of them

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "list_id": self.list_id,
            "reconciled_at": self.reconciled_at,
            "members_known": self.members_known,
            "counts": self.counts,
            "total": self.total,
            "rows": [r.as_dict() for r in self.rows],
        }


def _merge_differ(
    shop: dict[str, Any], mailchimp: dict[str, Any] | None
) -> tuple[tuple[str, str, str], ...]:
    theirs = mailchimp or {}
    return tuple(
        (tag, str(value), str(theirs.get(tag, "")))
        for tag, value in sorted(shop.items())
        if value not in ("", None) and str(theirs.get(tag, "")) != str(value)
    )


def rows(session: Session, source: SubscriberSource, list_id: str) -> Iterator[DriftRow]:
    """Every disagreement, in subscriber-hash order (a stream: one address at a time)."""
    query = (
        source.with_subscriber_flag()
        .add_columns(
            AudienceMember.email_hash,
            AudienceMember.email.label("mc_email"),
            AudienceMember.status.label("mc_status"),
            AudienceMember.merge_fields.label("mc_merge"),
        )
        .select_from(AudienceMember)
        .outerjoin(source.model, sa.func.lower(source.email_column) == AudienceMember.email_lower)
        .where(AudienceMember.list_id == list_id)
        .order_by(AudienceMember.email_hash, source.pk_column)
    )
    current: str | None = None
    group: list[Any] = []
    for row in session.execute(query.execution_options(yield_per=2000)):
        if row.email_hash != current and group:
            found = _judge(source, group)
            if found is not None:
                yield found
            group = []
        current = row.email_hash
        group.append(row)
    if group:
        found = _judge(source, group)
        if found is not None:
            yield found


def _judge(source: SubscriberSource, group: list[Any]) -> DriftRow | None:
    """One address: Mailchimp's member and the shop's rows for it (none, one or more)."""
    first = group[0]
    status = first.mc_status
    in_shop = [r for r in group if r[0] is not None]
    if not in_shop:
        if status in OFF_STATUSES:
            return None  # gone from Mailchimp's mailings and never in the shop: agreed
        return DriftRow(first.mc_email, DriftKind.NOT_IN_SHOP, ShopSide.NOT_IN_SHOP, status)
    subscriber_rows = [r for r in in_shop if r.mcsync_is_subscriber]
    if subscriber_rows and status in OFF_STATUSES:
        return DriftRow(first.mc_email, DriftKind.LEFT_IN_MAILCHIMP, ShopSide.SUBSCRIBER, status)
    if not subscriber_rows and status == "subscribed":
        return DriftRow(
            first.mc_email, DriftKind.SUBSCRIBED_IN_MAILCHIMP, ShopSide.NOT_SUBSCRIBER, status
        )
    if subscriber_rows and status == "subscribed":
        shop_row = source.row_of(tuple(subscriber_rows[0])[:-5])
        differ = _merge_differ(shop_row.merge_fields, first.mc_merge)
        if differ:
            return DriftRow(
                first.mc_email, DriftKind.MERGE_FIELDS, ShopSide.SUBSCRIBER, status, differ
            )
    return None


def report(
    session: Session, source: SubscriberSource, list_id: str | None, limit: int = 200
) -> DriftReport:
    """Counts per kind and the first ``limit`` rows (the CSV has them all)."""
    if not list_id:
        return DriftReport(None, None, 0)
    last = session.execute(
        sa.select(Run.finished_at)
        .where(Run.kind == RECONCILE_RUN, Run.list_id == list_id, Run.status == RunStatus.FINISHED)
        .order_by(Run.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    known = session.execute(
        sa.select(sa.func.count())
        .select_from(AudienceMember)
        .where(AudienceMember.list_id == list_id)
    ).scalar_one()
    result = DriftReport(list_id, last.isoformat() if last else None, int(known))
    result.counts = {kind.value: 0 for kind in DriftKind}
    for found in rows(session, source, list_id):
        result.counts[found.kind.value] += 1
        if len(result.rows) < limit:
            result.rows.append(found)
    return result


def as_csv(found: Iterator[DriftRow]) -> Iterator[str]:
    """Rows as CSV, one chunk per row; spreadsheet formulas neutralised."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in found:
        writer.writerow({k: _cell(v) for k, v in row.as_dict().items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
