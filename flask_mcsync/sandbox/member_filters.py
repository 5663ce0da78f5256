"""``GET /lists/{id}/members``: paging and the filters Mailchimp applies.

Filters: ``status``, ``since_last_changed`` / ``before_last_changed``,
``since_timestamp_opt`` / ``before_timestamp_opt`` and ``unsubscribed_since`` (which
only works with unsubscribed members; another status is refused, as Mailchimp says).
Times are ISO 8601 with an offset (``2026-11-25T10:00:00+00:00``, ``...Z``); one without
an offset is read as UTC. Mailchimp documents "after"/"before": the bounds are strict,
and timestamps have whole seconds, so a reader that resumes from the last
``last_changed`` it saw must overlap by a second to miss nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from .errors import SCHEMA_DETAIL, invalid_resource
from .state import STATUSES, Audience, Member

Check = Callable[[Member], bool]


def parse_time(name: str, raw: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(raw.strip().replace(" ", "T", 1))
    except ValueError:
        raise invalid_resource(
            SCHEMA_DETAIL,
            [
                {
                    "field": name,
                    "message": "Invalid date/time: use ISO 8601, e.g. 2015-10-21T15:41:36+00:00.",
                }
            ],
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _stamp(value: str) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _after(attribute: str, bound: datetime) -> Check:
    def check(member: Member) -> bool:
        stamp = _stamp(getattr(member, attribute))
        return stamp is not None and stamp > bound

    return check


def _before(attribute: str, bound: datetime) -> Check:
    def check(member: Member) -> bool:
        stamp = _stamp(getattr(member, attribute))
        return stamp is not None and stamp < bound

    return check


_TIME_FILTERS = {
    "since_last_changed": ("last_changed", _after),
    "before_last_changed": ("last_changed", _before),
    "since_timestamp_opt": ("timestamp_opt", _after),
    "before_timestamp_opt": ("timestamp_opt", _before),
    "unsubscribed_since": ("unsubscribed_at", _after),
}


def member_checks(params: dict[str, str]) -> list[Check]:
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise invalid_resource(f"Invalid status filter: {status}.")
    if params.get("unsubscribed_since"):
        if status not in (None, "unsubscribed"):
            raise invalid_resource("unsubscribed_since can only be used with status=unsubscribed.")
        status = "unsubscribed"
    # Archived contacts only show up when asked for, as in Mailchimp's audience view.
    checks: list[Check] = [
        (lambda m: m.status != "archived")
        if status is None
        else (lambda m, wanted=status: m.status == wanted)  # type: ignore[misc]
    ]
    for name, (attribute, make) in _TIME_FILTERS.items():
        if params.get(name):
            checks.append(make(attribute, parse_time(name, params[name])))
    return checks


def member_page(
    audience: Audience, params: dict[str, str], offset: int, count: int
) -> dict[str, Any]:
    checks = member_checks(params)

    def wanted() -> Iterator[Member]:
        return (m for m in audience.members.values() if all(c(m) for c in checks))

    total = sum(1 for _ in wanted())
    page = itertools.islice(wanted(), offset, offset + count)
    return {
        "members": [audience.member_json(m) for m in page],
        "list_id": audience.id,
        "total_items": total,
        "_links": [],
    }
