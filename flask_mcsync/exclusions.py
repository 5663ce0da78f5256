"""The shop owner's stored exclusion rules: list, add, remove, load for matching."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .i18n import gettext as _
from .models import ExclusionRule
from .rules import CatchAllRule, InvalidRule, Rule, RuleKind, RuleSet, clean_rule


def stored_rules(session: Session) -> list[Rule]:
    rows = session.execute(sa.select(ExclusionRule).order_by(ExclusionRule.id)).scalars()
    return [Rule(RuleKind(r.kind), r.value, r.id) for r in rows]


def load_ruleset(session: Session) -> RuleSet:
    return RuleSet(stored_rules(session))


def add_rule(session: Session, kind: str, value: str, allow_catch_all: bool = False) -> Rule:
    """Store a new rule and commit.

    :raises CatchAllRule: when the rule would exclude everybody and ``allow_catch_all``
        is not set (the owner has not confirmed it).
    :raises InvalidRule: when the rule is malformed or already exists.
    """
    rule = clean_rule(kind, value)
    if rule.matches_everyone() and not allow_catch_all:
        raise CatchAllRule(
            _(
                "The pattern %(value)r matches every address: it would exclude everybody."
                " Confirm it to add it anyway.",
                value=rule.value,
            )
        )
    exists = session.execute(
        sa.select(ExclusionRule.id).where(
            ExclusionRule.kind == rule.kind.value, ExclusionRule.value == rule.value
        )
    ).first()
    if exists:
        raise InvalidRule(_("The %(rule)s rule already exists.", rule=rule.describe()))
    row = ExclusionRule(kind=rule.kind.value, value=rule.value)
    session.add(row)
    session.commit()
    return Rule(rule.kind, rule.value, row.id)


def remove_rule(session: Session, rule_id: int) -> bool:
    """Delete a rule; ``False`` when there was no such rule."""
    deleted = session.execute(sa.delete(ExclusionRule).where(ExclusionRule.id == rule_id))
    session.commit()
    return bool(getattr(deleted, "rowcount", 0))
