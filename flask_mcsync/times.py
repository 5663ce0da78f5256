"""Moments in time as the package keeps them: aware, in UTC.

Infrastructure: it imports nothing of ours, so the models, the stored sentences and the
gateway read times the same way.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 text (ours, or Mailchimp's with ``Z``) as an aware datetime, or None.

    A naive time is UTC, as our columns hold; a datetime passes through; empty or
    unreadable text gives None.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not value or not isinstance(value, str):
        return None
    return _parsed(value)


# A batch's 1,000 answered members carry a handful of distinct times (Mailchimp stamps
# them to the second): each is read once.
@lru_cache(maxsize=1024)
def _parsed(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
