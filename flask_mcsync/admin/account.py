"""What the settings page shows about the Mailchimp account: connection and audiences.

Every failure (no key, bad key, Mailchimp or Redis unreachable) becomes a sentence for
the page instead of an error page: the shop owner must still reach the settings to fix
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from .. import messages
from ..app_state import McSync
from ..errors import McSyncError
from ..gateway import MailchimpError, gateway_for
from ..i18n import gettext as _
from ..throttle import RedisUnavailable


@dataclass
class AccountStatus:
    connected: bool
    error: str | None = None
    audiences: list[dict[str, Any]] = field(default_factory=list)

    def audience(self, list_id: str | None) -> dict[str, Any] | None:
        return next((a for a in self.audiences if a["id"] == list_id), None)


def describe_error(exc: Exception) -> str:
    if isinstance(exc, MailchimpError):
        detail = exc.full_detail
        return _("Mailchimp said: %(title)s.", title=exc.title) + (f" {detail}" if detail else "")
    if isinstance(exc, McSyncError):  # a throttle.RedisUnavailable too: it says so
        return messages.translate(str(exc))
    if isinstance(exc, RedisError):
        return messages.translate(str(RedisUnavailable(exc)))
    return str(exc)


def connection_problem(ext: McSync) -> str | None:
    """Why Mailchimp cannot be reached now (one ping), or None when it answers."""
    try:
        gateway_for(ext).ping()
    except (McSyncError, RedisError) as exc:
        return _(
            "Mailchimp cannot be reached now: %(error)s An export started now waits and"
            " retries, then fails. See the connection in General settings.",
            error=describe_error(exc),
        )
    return None


def account_status(ext: McSync) -> AccountStatus:
    """Ping the account, then list its audiences (one round trip each)."""
    try:
        gateway = gateway_for(ext)
        gateway.ping()
        return AccountStatus(connected=True, audiences=gateway.audiences())
    except (McSyncError, RedisError) as exc:
        return AccountStatus(connected=False, error=describe_error(exc))
