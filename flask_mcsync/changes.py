"""A change made in Mailchimp, as the shop is told of it, and how webhooks describe one.

A :class:`MailchimpChange` is what the host receives (through the ``mailchimp_changed``
signal and the optional ``SubscriberSource(on_mailchimp_change=...)`` hook), whether the
change came from a webhook or from a reconcile. :func:`from_webhook` reads Mailchimp's
form-encoded callback into one, and says in a sentence why a payload is refused: these
bodies come from the internet, so every field is checked and bounded.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .addresses import invalid_reason
from .errors import McSyncError

MAX_FIELD = 1000  # characters; Mailchimp's own text merge fields stop at 255
MAX_FIELDS = 100


class Kind(str, enum.Enum):
    """Mailchimp's webhook event types (the ones about members)."""

    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    PROFILE = "profile"
    UPEMAIL = "upemail"
    CLEANED = "cleaned"


# The member's status after each kind of event (profile and upemail keep the status).
STATUS_AFTER = {
    Kind.SUBSCRIBE: "subscribed",
    Kind.UNSUBSCRIBE: "unsubscribed",
    Kind.CLEANED: "cleaned",
}

# Statuses under which Mailchimp sends the person no newsletter.
OFF_STATUSES = ("unsubscribed", "cleaned", "archived")


@dataclass(frozen=True)
class MailchimpChange:
    """One change to a member, made in Mailchimp.

    :ivar email: the member's address (the old one for an address change).
    :ivar status: Mailchimp's status now: subscribed, unsubscribed, cleaned, archived,
        pending (``None`` when unknown, e.g. a profile edit of a member never seen).
    :ivar reason: why: ``manual`` or ``abuse`` (unsubscribe), ``hard`` or ``abuse``
        (cleaned), ``delete`` (archived by an admin), ``reconcile``...
    :ivar merge_fields: the member's merge fields as Mailchimp sent them.
    :ivar new_email: the new address of an address change, else ``None``.
    :ivar kind: subscribe, unsubscribe, profile, upemail or cleaned.
    :ivar changed_at: when Mailchimp made the change (``fired_at`` or ``last_changed``).
    :ivar origin: ``webhook`` or ``reconcile``.
    """

    email: str
    status: str | None
    kind: Kind
    changed_at: datetime
    reason: str | None = None
    merge_fields: dict[str, Any] = field(default_factory=dict)
    new_email: str | None = None
    origin: str = "webhook"
    list_id: str | None = None

    @property
    def newsletter_off(self) -> bool:
        """Whether the person no longer gets the newsletter (unsubscribed, cleaned, archived)."""
        return self.status in OFF_STATUSES


class InvalidPayload(McSyncError, ValueError):
    """A webhook body that is not one of Mailchimp's callbacks; the message says why."""


def parse_fired_at(value: str) -> datetime:
    """``YYYY-MM-DD HH:MM:SS`` (Mailchimp's ``fired_at``, UTC) as an aware datetime."""
    try:
        parsed = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise InvalidPayload(
            f"fired_at {value[:40]!r} is not a time like '2026-01-31 23:59:59'."
        ) from None
    return parsed.replace(tzinfo=timezone.utc)


def _plain_email(value: str | None, key: str) -> str:
    """An address Mailchimp could have sent: it goes into the shop's rows (an address
    change rewrites the customer's), so anything else refuses the callback."""
    text = (value or "").strip()
    if not text:
        raise InvalidPayload(f"{key} is missing.")
    reason = invalid_reason(text, fake=False)
    if reason is not None:
        raise InvalidPayload(f"{key} is not an e-mail address: {reason}")
    return text


def from_webhook(form: Mapping[str, str]) -> MailchimpChange:
    """Read one of Mailchimp's callbacks (its form fields, already decoded).

    :raises InvalidPayload: missing or unknown ``type``, bad ``fired_at``, no address,
        oversized fields.
    """
    if len(form) > MAX_FIELDS:
        raise InvalidPayload(f"The payload has more than {MAX_FIELDS} fields.")
    for key, value in form.items():
        if len(key) > 200 or len(value) > MAX_FIELD:
            raise InvalidPayload(f"The field {key[:60]!r} is longer than {MAX_FIELD} characters.")
        if "\x00" in key or "\x00" in value:
            # No callback of Mailchimp's holds one, and PostgreSQL cannot store one.
            raise InvalidPayload(f"The field {key[:60]!r} holds a NUL character.")
    raw_kind = form.get("type", "")
    try:
        kind = Kind(raw_kind)
    except ValueError:
        shown = raw_kind[:40] or "(none)"
        raise InvalidPayload(
            f"type {shown!r} is not one of subscribe, unsubscribe, profile, upemail, cleaned."
        ) from None
    if "fired_at" not in form:
        raise InvalidPayload("fired_at is missing.")
    fired_at = parse_fired_at(form["fired_at"])
    merges = {
        key[len("data[merges][") : -1]: value
        for key, value in form.items()
        if key.startswith("data[merges][") and key.endswith("]") and "][" not in key[13:-1]
    }
    new_email = None
    if kind is Kind.UPEMAIL:
        email = _plain_email(form.get("data[old_email]"), "data[old_email]")
        new_email = _plain_email(form.get("data[new_email]"), "data[new_email]")
    else:
        email = _plain_email(form.get("data[email]"), "data[email]")
    reason = form.get("data[reason]") or None
    status = STATUS_AFTER.get(kind)
    if kind is Kind.UNSUBSCRIBE and form.get("data[action]") == "delete":
        # An admin deleted the contact: Mailchimp archives it.
        status, reason = "archived", "delete"
    return MailchimpChange(
        email=email,
        status=status,
        kind=kind,
        changed_at=fired_at,
        reason=reason,
        merge_fields={k: v for k, v in merges.items() if k.isalnum()},
        new_email=new_email,
        origin="webhook",
        list_id=form.get("data[list_id]") or None,
    )
