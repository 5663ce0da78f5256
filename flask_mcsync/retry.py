"""How long to wait before trying again after a passing failure."""

from __future__ import annotations

import random

MAX_DELAY = 600.0


def backoff_seconds(attempt: int, retry_after: float | None, first: float) -> float:
    """Exponential backoff with jitter: ``first`` (``MCSYNC_RETRY_DELAY``, 2 s by
    default), then twice that, 4 times... at most ten minutes.

    Never shorter than Mailchimp's Retry-After; the jitter keeps workers that failed
    together from all coming back in the same second.
    """
    base = min(MAX_DELAY, first * (2 ** max(attempt - 1, 0)))
    return max(base * (0.5 + random.random() / 2), retry_after or 0.0)
