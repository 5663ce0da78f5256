"""At most N requests to Mailchimp in flight per account, across every worker and machine.

Mailchimp answers a request beyond 10 simultaneous connections per account with 429.
Each request first takes a slot in a Redis sorted set keyed by the account; a slot is a
lease with a deadline (the request timeout plus a margin), so a worker killed mid-request
cannot hold a slot forever: the next caller drops expired leases before counting.

The key names anyone with read access to Redis can list, so the account in them is a
keyed hash of the API key (:func:`account_id`), never a piece of the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from . import messages
from .errors import McSyncError

# Drop expired leases, then take one if fewer than LIMIT are held. Atomic in Redis.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


log = logging.getLogger(__name__)

# Fixed and the same in every app and worker, so all workers of one account share their
# slots; changing it would split them for as long as old and new workers run side by side.
ACCOUNT_LABEL = b"flask-mcsync connection slots"


def account_id(api_key: str) -> str:
    """The account's name in Redis keys: an HMAC of a fixed label keyed by the API key.

    One-way, so the key names reveal nothing of the key. Keys named by earlier versions
    (``mcsync:slots:<last 12 hex of the key>``) are never read again and expire by
    themselves within two leases (their ``PEXPIRE``).
    """
    return hmac.new(api_key.encode(), ACCOUNT_LABEL, hashlib.sha256).hexdigest()[:32]


class SlotTimeout(McSyncError, TimeoutError):
    """No connection slot freed up in time: other workers keep all of them busy."""


class RedisUnavailable(McSyncError, redis.exceptions.ConnectionError):
    """Redis, where the connection slots live, did not answer: no request to Mailchimp
    was made. Still a Redis ``ConnectionError`` for the callers that wait for Redis.

    Made from Redis's own error (raise it ``from`` that error): the sentence quotes it.
    """

    def __init__(self, cause: Exception) -> None:
        super().__init__(messages.REDIS_DOWN(error=str(cause)))


class ConnectionSlots:
    """A distributed counting semaphore of Mailchimp connections for one account."""

    def __init__(
        self,
        connection: redis.Redis,
        account: str,
        limit: int,
        lease_seconds: float,
        wait_seconds: float = 300.0,
    ) -> None:
        self.connection = connection
        self.key = f"mcsync:slots:{account}"
        self.limit = limit
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self._acquire = connection.register_script(_ACQUIRE)

    def try_acquire(self) -> str | None:
        token = uuid.uuid4().hex
        now = time.time()
        taken = self._acquire(
            keys=[self.key],
            args=[now, now + self.lease_seconds, self.limit, token, int(self.lease_seconds * 2000)],
        )
        return token if taken else None

    def release(self, token: str) -> None:
        self.connection.zrem(self.key, token)

    def in_use(self) -> int:
        self.connection.zremrangebyscore(self.key, "-inf", time.time())
        return int(self.connection.zcard(self.key))

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of a request.

        :raises SlotTimeout: when no slot frees up within ``wait_seconds``.
        """
        deadline = time.monotonic() + self.wait_seconds
        delay = 0.005
        while (token := self._try_acquire()) is None:
            if time.monotonic() > deadline:
                raise SlotTimeout(
                    messages.SLOTS_BUSY(limit=self.limit, seconds=f"{self.wait_seconds:g}")
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        try:
            yield
        finally:
            try:
                self.release(token)
            except redis.exceptions.RedisError as exc:
                # The request was made: its answer stands. The slot's lease runs out.
                log.warning("mcsync: could not give a connection slot back to Redis (%s)", exc)

    def _try_acquire(self) -> str | None:
        try:
            return self.try_acquire()
        except redis.exceptions.RedisError as exc:
            raise RedisUnavailable(exc) from exc
