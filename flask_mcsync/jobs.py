"""The RQ jobs: the entry points a worker runs.

Job functions are thin: they find the app's state and call the service that does the
work (:mod:`planner`, :mod:`batch_sync`, :mod:`outbox`, ...). Nothing is passed to a job
but ids and lease tokens: the rows are the truth, so a job that runs twice or late does
no harm. They are queued by dotted path (:mod:`enqueue`): their names here are what
jobs already waiting in Redis call, so they stay.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .app_state import McSync, state
from .batch_sync import Sender, advance
from .gateway import MailchimpError, TransientError, as_mailchimp_error, gave_up
from .outbox import drain, send_outbox_item
from .planner import LostLease, plan
from .planner import plan_chunk as plan_range
from .reconcile import ReconcileBusy, reconcile
from .retry import backoff_seconds
from .runs import resumable
from .settings import NoAudience
from .single_sync import fail_run, run_single
from .statuses import RunKind, SyncReason
from .throttle import SlotTimeout
from .webhook_events import apply_event

log = logging.getLogger(__name__)

RESYNC_TRIES = 3


def plan_run(run_id: int, token: str | None = None) -> None:
    try:
        plan(state(), run_id, token)
    except LostLease as exc:
        log.info("%s", exc)


def plan_chunk(chunk_id: int, token: str | None = None) -> None:
    _plan(state(), chunk_id, token)


def _plan(ext: McSync, chunk_id: int, token: str | None) -> None:
    """Plan a chunk, and go on with the run's paused chunks while there is room."""
    sender = Sender(ext)
    try:
        run_id = plan_range(ext, chunk_id, token, sender=sender)
        # Paused or done: the batches that ended while this chunk held its lease found no
        # chunk they could resume (see runs.resumable); one may go on now.
        while run_id is not None and (paused := resumable(ext, run_id)) is not None:
            run_id = plan_range(ext, paused[0], sender=sender)
    except LostLease as exc:
        log.info("%s", exc)
    finally:
        sender.close()


def advance_batch(batch_id: int, token: str | None = None) -> None:
    ext = state()
    run_id = advance(ext, batch_id, token)
    # The step may have made room among the run's batches out (runs.resumable): this
    # job goes on with the paused planning (a job of its own: one more per few batches).
    paused = resumable(ext, run_id) if run_id is not None else None
    if paused is not None:
        _plan(ext, paused[0], None)  # claimed as any planner claims it


def drain_outbox() -> dict[str, int]:
    return drain(state())


def sync_outbox_item(item_id: int) -> str:
    return send_outbox_item(state(), item_id)


def resync_address(run_id: int, email: str) -> None:
    """The diagnostic tool's "Re-synchronize": one address, same rules as every path."""
    ext = state()
    # The shop owner is looking at the page: a few quick tries, then the error is shown.
    for attempt in range(1, RESYNC_TRIES + 1):
        failure: MailchimpError | NoAudience
        try:
            run_single(
                ext,
                email,
                kind=RunKind.RESYNC,
                started_by="diagnostic",
                wants=SyncReason.RESYNC,
                run_id=run_id,
            )
            return
        except (TransientError, SlotTimeout) as exc:
            ext.session.rollback()
            if attempt < RESYNC_TRIES:
                delay = backoff_seconds(
                    attempt, as_mailchimp_error(exc).retry_after, ext.config.retry_delay
                )
                time.sleep(min(delay, 20.0))
                continue
            failure = gave_up(attempt, exc)
        except (MailchimpError, NoAudience) as exc:
            ext.session.rollback()
            failure = exc
        fail_run(ext, run_id, email, failure, kind=RunKind.RESYNC, started_by="diagnostic")
        return


def apply_webhook_event(event_id: int) -> str:
    return apply_event(state(), event_id)


def reconcile_audience() -> dict[str, Any]:
    """The periodic reconcile (queued by the workers' maintenance loop)."""
    try:
        return reconcile(state(), started_by="schedule").as_dict()
    except ReconcileBusy as exc:
        log.info("%s", exc)
        return {}
