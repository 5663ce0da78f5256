"""Exclusion rules: addresses that must never reach Mailchimp.

Three kinds, all case-insensitive: an exact address, a whole domain (its subdomains
included), and a shell-style pattern (``*@mailinator.com``, ``test+*@*``). Shop owners
never write regular expressions: a pattern is translated by :mod:`fnmatch`, whose output
cannot backtrack catastrophically, and its length and wildcard count are bounded.

A :class:`RuleSet` is compiled once per run (or per single sync) and answers in constant
time for exact and domain rules, so excluding is cheap at a million addresses.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .addresses import invalid_domain, invalid_reason, normalize
from .errors import McSyncError
from .i18n import gettext as _
from .messages import RULE_KIND_LABELS

MAX_PATTERN_LENGTH = 254
MAX_WILDCARDS = 16


class RuleKind(str, enum.Enum):
    ADDRESS = "address"
    DOMAIN = "domain"
    PATTERN = "pattern"

    @property
    def label(self) -> str:
        """The kind in English (the pages translate it with ``_(kind.label)``)."""
        return RULE_KIND_LABELS[self.value]


class InvalidRule(McSyncError, ValueError):
    """A rule the shop owner typed cannot be used; the message says how to fix it."""


class CatchAllRule(InvalidRule):
    """The rule would exclude every address: only added once the owner confirms it."""


# Addresses of every shape a shop holds: a pattern that matches them all matches anybody
# (``*``, ``*@*``, ``?*@*.*``...), which no one means to type.
_CATCH_ALL_PROBES = (
    "a@b.co",
    "jean.dupont+news@mail.shop.fr",
    "x_1@sub.domain.co.uk",
    "o'neil@xn--caf-dma.com",
    "z@z.io",
)


@dataclass(frozen=True)
class Rule:
    """One exclusion rule. ``id`` is the database id when the rule is stored."""

    kind: RuleKind
    value: str
    id: int | None = None

    def matches_everyone(self) -> bool:
        return self.kind is RuleKind.PATTERN and all(
            RuleSet([self]).match(probe) for probe in _CATCH_ALL_PROBES
        )

    def describe(self) -> str:
        return f"{_(self.kind.label).lower()} {self.value!r}"


def clean_rule(kind: str | RuleKind, value: str) -> Rule:
    """Check and normalise a rule typed by the shop owner.

    :raises InvalidRule: with a sentence saying what would be accepted.
    """
    try:
        rule_kind = RuleKind(kind)
    except ValueError:
        raise InvalidRule(
            _("Unknown rule kind %(kind)r: use 'address', 'domain' or 'pattern'.", kind=kind)
        ) from None
    text = normalize(value or "")
    if not text:
        raise InvalidRule(_("The rule is empty: type an address, a domain or a pattern."))
    if rule_kind is RuleKind.ADDRESS:
        reason = invalid_reason(text, fake=False)
        if reason:
            raise InvalidRule(
                _("%(text)r is not a valid address: %(reason)s", text=text, reason=reason)
            )
    elif rule_kind is RuleKind.DOMAIN:
        text = text.removeprefix("*").removeprefix("@").removeprefix(".")
        if "@" in text or "*" in text or "?" in text:
            raise InvalidRule(
                _(
                    "%(value)r is not a bare domain: type it like 'mailinator.com', or use a"
                    " pattern rule for wildcards.",
                    value=value,
                )
            )
        if invalid_domain(text):
            raise InvalidRule(
                _("%(text)r is not a valid domain (like 'mailinator.com').", text=text)
            )
    else:
        if len(text) > MAX_PATTERN_LENGTH:
            raise InvalidRule(
                _("A pattern may be at most %(max)s characters long.", max=MAX_PATTERN_LENGTH)
            )
        wildcards = sum(text.count(c) for c in "*?[")
        if wildcards == 0:
            raise InvalidRule(
                _(
                    "%(text)r has no wildcard ('*' or '?'): add it as an exact address or a"
                    " domain rule instead.",
                    text=text,
                )
            )
        if wildcards > MAX_WILDCARDS:
            raise InvalidRule(_("A pattern may hold at most %(max)s wildcards.", max=MAX_WILDCARDS))
    return Rule(rule_kind, text)


class RuleSet:
    """The exclusion rules compiled for matching many addresses."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self._exact: dict[str, Rule] = {}
        self._domains: dict[str, Rule] = {}
        self._patterns: list[tuple[re.Pattern[str], Rule]] = []
        for rule in self.rules:
            if rule.kind is RuleKind.ADDRESS:
                self._exact.setdefault(rule.value, rule)
            elif rule.kind is RuleKind.DOMAIN:
                self._domains.setdefault(rule.value, rule)
            else:
                self._patterns.append((re.compile(fnmatch.translate(rule.value)), rule))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, address: str) -> Rule | None:
        """The first rule that excludes ``address`` (any case), or ``None``."""
        key = normalize(address)
        rule = self._exact.get(key)
        if rule is not None:
            return rule
        if self._domains:
            domain = key.rpartition("@")[2]
            # "example.com" also excludes "shop.example.com": try every suffix.
            while domain:
                rule = self._domains.get(domain)
                if rule is not None:
                    return rule
                domain = domain.partition(".")[2]
        for pattern, rule in self._patterns:
            if pattern.match(key):
                return rule
        return None
