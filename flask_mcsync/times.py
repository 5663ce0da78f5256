"""Moments in time as the package keeps them: aware, in UTC.

Infrastructure: it imports nothing of ours, so the models, the stored sentences and the
gateway read times the same way.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 text (ours, or Mailchimp's with ``Z``) as an aware datetime, or None.

    A naive time is UTC, as our columns hold; a datetime passes through; empty or
    unreadable text gives None.
    """
    if isinstance(value, datetime):
        moment = value
    elif not value or not isinstance(value, str):
        return None
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
