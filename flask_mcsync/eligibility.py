"""The one place that decides an address's fate: excluded, invalid, duplicate, or to send.

Every path (manual export, auto-sync, re-sync, the export window's counts, the diagnostic
tool) asks :func:`judge` or walks :func:`scan`, so they cannot disagree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from .addresses import invalid_reason, subscriber_hash
from .i18n import gettext as _
from .rules import Rule, RuleSet
from .source import SourceRow, SubscriberSource


class Fate(str, enum.Enum):
    SEND = "send"
    EXCLUDED = "excluded"
    INVALID = "invalid"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Verdict:
    fate: Fate
    reason: str | None = None
    rule: Rule | None = None

    @property
    def send(self) -> bool:
        return self.fate is Fate.SEND


# Most rows are sent: one shared verdict (it is frozen) rather than one made per row.
_SEND = Verdict(Fate.SEND)


def judge(email: str | None, rules: RuleSet) -> Verdict:
    """Whether one address may be sent, and if not, why (with the rule that excludes it)."""
    reason = invalid_reason(email)
    if reason is not None:
        return Verdict(Fate.INVALID, reason)
    assert email is not None
    rule = rules.match(email)
    if rule is not None:
        return Verdict(
            Fate.EXCLUDED, _("Excluded by the %(rule)s rule.", rule=rule.describe()), rule
        )
    return _SEND


class Deduplicator:
    """Remembers which contacts were seen, by 64 bits of their Mailchimp id.

    Eight bytes per address instead of the address itself keeps a million-contact run
    in tens of megabytes; a false "duplicate" needs a 64-bit collision among them.
    """

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def seen(self, email: str) -> bool:
        key = int(subscriber_hash(email)[:16], 16)
        if key in self._seen:
            return True
        self._seen.add(key)
        return False

    def forget(self) -> None:
        """Start afresh: the planner keeps only the batch being cut here (the database
        remembers the rest, see :class:`~.models.PlannedAddress`)."""
        self._seen.clear()


@dataclass
class Tally:
    """How many source rows met each fate (the export window's numbers)."""

    rows: int = 0
    send: int = 0
    excluded: int = 0
    invalid: int = 0
    duplicate: int = 0
    by_rule: dict[int | None, int] = field(default_factory=dict)

    def add(self, verdict: Verdict) -> None:
        self.rows += 1
        setattr(self, verdict.fate.value, getattr(self, verdict.fate.value) + 1)
        if verdict.rule is not None:
            self.by_rule[verdict.rule.id] = self.by_rule.get(verdict.rule.id, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "to_export": self.send,
            "excluded": self.excluded,
            "invalid": self.invalid,
            "duplicates": self.duplicate,
        }


def scan(
    session: Session,
    source: SubscriberSource,
    rules: RuleSet,
    after: Any = None,
    dedup: Deduplicator | None = None,
    page_size: int = 2000,
    through: Any = None,
) -> Iterator[list[tuple[SourceRow, Verdict]]]:
    """Judge every subscriber row in primary-key order, a page at a time (after
    ``after``, up to ``through``).

    An address seen earlier (in any case) is a :attr:`Fate.DUPLICATE`: Mailchimp holds
    one contact per lower-cased address, and the first row in key order speaks for it.
    """
    dedup = dedup or Deduplicator()
    for page in source.pages(session, after=after, page_size=page_size, through=through):
        judged = []
        for row in page:
            verdict = judge(row.email, rules)
            if verdict.send and dedup.seen(row.email):
                verdict = Verdict(Fate.DUPLICATE, _("Another row of the shop has this address."))
            judged.append((row, verdict))
        yield judged


def tally(session: Session, source: SubscriberSource, rules: RuleSet) -> Tally:
    """Count what an export would do now, without sending anything."""
    counts = Tally()
    for page in scan(session, source, rules):
        for _row, verdict in page:
            counts.add(verdict)
    return counts
