"""RQ plumbing: jobs that run inside the host app's context, the queue, the worker.

The worker is started by ``flask mcsync worker`` (so it has the host app) and runs each
job in its own process (RQ's ``SimpleWorker``): no fork, no new database connection and
no freshly compiled SQL per job, which cost 4-8 ms a job (issue 10). What a crash loses
is the same as with a fork per job: the job in flight, whose batch or outbox row a lease
hands to another worker. Each job gets its own app context, so its session is removed
when it ends whatever it did.

``MCSYNC_FORK_PER_JOB=true`` brings back RQ's fork of a work horse per job (a job stuck
in C code can then be killed at its timeout). A forked child must not reuse the parent's
database connections (two processes on one socket corrupt both), so each job in a child
first drops the inherited pool; the parent's connections are left open for the parent.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import SimpleWorker, Worker
from rq.exceptions import StopRequested

from .app_state import McSync, state
from .enqueue import AppJob, bind_app, make_queue, reconcile_if_due
from .gateway import kept_connections
from .sweep import sweep_if_due
from .throttle import RedisUnavailable

log = logging.getLogger(__name__)


class Sweeping:
    """Mixed into an RQ worker class: it also sweeps for work a dead worker left behind,
    and remembers whether it was asked to stop (see :func:`run_worker`)."""

    stop_requested = False

    def handle_warm_shutdown_request(self) -> None:
        # RQ calls this on SIGINT / SIGTERM and on a shutdown command, before it stops.
        self.stop_requested = True
        super().handle_warm_shutdown_request()  # type: ignore[misc]

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[misc]
        try:
            self._maintain()
        finally:
            # A SIGTERM while idle makes RQ raise StopRequested wherever the worker is; in
            # the sweep, a handler of ours may have taken it for a failure. Stop anyway
            # (RQ's loop stops on it), or the worker would run on after one SIGTERM.
            if self.stop_requested:
                raise StopRequested()

    def _maintain(self) -> None:
        try:
            found = sweep_if_due(state())
        except StopRequested:
            raise
        except Exception:  # a sweep that fails must not take the worker down with it
            log.exception("mcsync: the sweep failed; it will run again at the next interval")
            state().session.rollback()
            return
        if found and any(found.values()):
            log.info("mcsync sweep: %s", found)
        try:
            if reconcile_if_due(state()):
                log.info("mcsync: periodic reconcile queued")
        except Exception:  # like the sweep: a failure waits for the next interval
            log.exception("mcsync: could not queue the periodic reconcile")


# How often a worker busy with jobs tells Redis it is alive in a round trip of its own.
# RQ does so before and after every job (a write and two expiries each time: 6 of a
# job's ~31 Redis round trips, as many waits on Redis per batch of an export). The key
# stays alive without them because RQ also refreshes it inside pipelines it sends anyway,
# which are never skipped: at the top of every loop (its suspension check, to
# worker_ttl + 60 s, longer than any wait for a job) and when a job starts.
HEARTBEAT_EVERY = 5.0


class McSyncWorker(Sweeping, Worker):
    """Forks a work horse per job (``MCSYNC_FORK_PER_JOB=true``)."""


class InProcessWorker(Sweeping, SimpleWorker):
    """Runs each job in the worker's own process (the default)."""

    _beat_at = float("-inf")

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        # Only RQ's plain "still here" is spaced out: one given a TTL or a pipeline is
        # part of starting a job and goes with the rest of it.
        beat = time.monotonic()
        if timeout is None and pipeline is None and beat - self._beat_at < HEARTBEAT_EVERY:
            return
        super().heartbeat(timeout, pipeline)
        self._beat_at = beat


def run_worker(app: Flask, burst: bool = False, with_scheduler: bool = True) -> bool:
    """Run an RQ worker on the extension's queue until stopped (or, in burst mode, idle).

    RQ reconnects to Redis only while it waits for a job; a Redis restart while a job
    runs makes ``work()`` raise, and a Redis that does not answer within the socket
    timeout (hung, or a network that drops packets) makes it log "Redis connection
    timeout, quitting..." and return, as if asked to stop. A worker for a shop must
    outlive both: unless it was asked to stop, wait until Redis answers again and start
    over (the job's batch or outbox row is picked up again through its lease).
    """
    ext = state(app)
    bind_app(ext)
    # Maintenance (the sweep) runs in this process and needs the app, whoever calls us.
    # The jobs share one connection to Mailchimp (see gateway.kept_connections).
    with app.app_context(), kept_connections(ext):
        while True:
            worker_class = McSyncWorker if ext.config.fork_per_job else InProcessWorker
            try:
                # RQ's worker asks Redis already when it is made: a worker started while
                # Redis is down waits for it too.
                worker = worker_class(
                    [make_queue(ext)],
                    connection=ext.redis,
                    job_class=AppJob,
                    # RQ waits worker_ttl - 15 s for a job before it looks at maintenance
                    # (and so at the sweep) again: an idle worker sweeps every
                    # sweep_interval.
                    worker_ttl=ext.config.sweep_interval + 15,
                    maintenance_interval=ext.config.sweep_interval,
                )
                worked = bool(worker.work(burst=burst, with_scheduler=with_scheduler))
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if burst:
                    raise RedisUnavailable(exc) from exc
                log.warning("mcsync worker: %s Waiting for it.", RedisUnavailable(exc))
                _wait_for_redis(ext)
                continue
            if burst or worker.stop_requested:
                return worked
            log.warning(
                "mcsync worker: RQ's worker loop ended without a stop request (it quits when"
                " Redis does not answer in time, or on an error it logged just above);"
                " waiting for Redis to answer, then starting over"
            )
            _wait_for_redis(ext)


def _wait_for_redis(ext: McSync) -> None:
    delay = 0.5
    while True:
        time.sleep(delay)
        try:
            ext.redis.ping()
            return
        except (RedisConnectionError, RedisTimeoutError):
            delay = min(delay * 2, 10.0)
