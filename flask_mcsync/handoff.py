"""The after-commit hand-off of new outbox rows to the workers, off the request path.

A signup's transaction commits its outbox row; telling the workers about it needs Redis,
and Redis may be slow, dead, or hung (it accepts the connection and never answers, so a
call waits for the whole socket timeout). None of that may reach the signup. So the
request thread only appends the new row ids to a bounded in-memory queue (no I/O, no
lock, no wake-up: microseconds); a background thread of this process looks at it every
``POLL_SECONDS`` and hands what it finds to Redis (:func:`outbox.enqueue_items`) in one
round trip, with every wait and every failure on its side.

Nothing is lost by this: the rows are already committed. When the queue is full (Redis
hung for long under heavy signups) or the process exits before the thread ran, the ids
are dropped and the rows wait in ``mcsync_outbox`` for the workers' sweep, which queues
every row that stayed due for a sweep interval, and for ``flask mcsync flush``.

One thread per app (its Redis), started on first use and again in a forked child (a
thread does not survive ``fork``, e.g. gunicorn's ``--preload``); it ends after a minute
without work, so short-lived apps (tests, scripts) do not accumulate threads.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app_state import McSync

log = logging.getLogger(__name__)

#: Row-id lists waiting for the thread. At a few ids each, this bounds memory to a few
#: hundred kB while Redis hangs; beyond it, the sweep picks the rows up.
QUEUE_SIZE = 10_000
IDLE_EXIT_SECONDS = 60.0
#: How often the thread looks for new ids: the signup-to-Mailchimp latency it adds
#: (half of it on average), against a wake-up that costs a few microseconds.
POLL_SECONDS = 0.05
#: How long an exiting process waits for the thread to hand over what it has.
EXIT_WAIT_SECONDS = 1.0
REDIS_PAUSE_SECONDS = 15.0


class _Breaker:
    """Skip enqueueing for a while after Redis failed, so a backlog drains fast."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def open(self) -> bool:
        return time.monotonic() < self._until

    def trip(self) -> None:
        with self._lock:
            self._until = time.monotonic() + REDIS_PAUSE_SECONDS


# One per app: a Redis that fails for one app (or one test) must not pause another's.
_breakers: weakref.WeakKeyDictionary[McSync, _Breaker] = weakref.WeakKeyDictionary()


def breaker_for(ext: McSync) -> _Breaker:
    found = _breakers.get(ext)
    if found is None:
        found = _breakers[ext] = _Breaker()
    return found


class Handoff:
    """One app's queue of committed row ids and the thread that hands them to Redis."""

    def __init__(self, ext: McSync, deliver: Callable[[McSync, list[int]], int]) -> None:
        self._ext = weakref.ref(ext)
        self._deliver = deliver
        self._lock = threading.Lock()
        self._pid = -1
        self._ids: deque[list[int]] = deque()
        self._thread: threading.Thread | None = None
        self._busy = False
        self.dropped = 0

    def submit(self, ids: list[int]) -> bool:
        """Queue ``ids`` for the thread; never blocks. False when they were dropped.

        A plain append, no wake-up: waking the thread here would hand it the GIL (and,
        on a busy machine, the CPU) in the middle of the signup's request.
        """
        thread = self._thread
        if self._pid != os.getpid() or thread is None or not thread.is_alive():
            self._start()
        if len(self._ids) >= QUEUE_SIZE:
            self.dropped += 1
            return False
        self._ids.append(ids)
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything queued was handed over (for process exit and tests)."""
        deadline = time.monotonic() + timeout
        while self._ids or self._busy:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                # A forked child: the parent's queue and thread are not ours.
                self._ids = deque()
                self._thread = None
                self._pid = os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="mcsync-handoff", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            time.sleep(POLL_SECONDS)
            if not self._ids:
                if time.monotonic() - idle_since < IDLE_EXIT_SECONDS:
                    continue
                with self._lock:
                    # ``submit`` starts a new thread once this one has let go.
                    if not self._ids:
                        self._thread = None
                        return
            idle_since = time.monotonic()
            self._busy = True
            batch: list[int] = []
            try:
                while self._ids and len(batch) < 1000:
                    batch.extend(self._ids.popleft())
                ext = self._ext()
                if ext is None:
                    self._ids.clear()
                    self._thread = None
                    return
                self._deliver(ext, sorted(set(batch)))
            except Exception:  # the thread must outlive anything; the rows wait in the DB
                log.exception("mcsync: handing outbox rows to Redis failed; the sweep sends them")
            finally:
                self._busy = False


# Per app, one hand-off per kind of row (outbox rows, webhook events): each has its
# own queue and thread, so the ids of one are never delivered as the other's.
_handoffs: weakref.WeakKeyDictionary[McSync, dict[Callable[[McSync, list[int]], int], Handoff]] = (
    weakref.WeakKeyDictionary()
)
_registry_lock = threading.Lock()


def handoff_for(ext: McSync, deliver: Callable[[McSync, list[int]], int]) -> Handoff:
    """The app's hand-off for ``deliver`` (made on first use); its thread calls
    ``deliver(ext, ids)``."""
    found = _handoffs.get(ext, {}).get(deliver)
    if found is None:
        with _registry_lock:
            per_app = _handoffs.setdefault(ext, {})
            found = per_app.get(deliver)
            if found is None:
                found = per_app[deliver] = Handoff(ext, deliver)
    return found


def settle(timeout: float, ext: McSync | None = None) -> bool:
    """Wait until the hand-offs of this process (``ext``'s only, when given) have nothing
    in flight; False when ``timeout`` ran out first. Ids whose delivery failed (Redis
    down, or skipped after a failure) count as done: their rows wait for the sweep.

    For a process about to exit, and for tests: a test that ends within a poll of its
    last signup leaves ids that its app's thread hands to Redis a moment later, into
    the next test's queue when both use one Redis.
    """
    deadline = time.monotonic() + timeout
    with _registry_lock:  # handoff_for may register an app from another thread
        apps = [ext] if ext is not None else list(_handoffs.keys())
    settled = True
    for app in apps:
        for handoff in list(_handoffs.get(app, {}).values()):
            if handoff._pid == os.getpid():
                settled &= handoff.wait_idle(max(0.0, deadline - time.monotonic()))
    return settled


@atexit.register
def _drain_at_exit() -> None:
    # A script that signs customers up and exits: give the thread a moment, so its rows
    # go out now rather than at the next sweep. Bounded: a hung Redis cannot hold exit.
    settle(EXIT_WAIT_SECONDS)
