"""How often a batch at Mailchimp is looked at.

Mailchimp runs one batch of an account at a time, and a batch can wait "pending" behind
the others for minutes. A batch a poll found running is polled again after
``MCSYNC_POLL_INTERVAL``; one found waiting, after an eighth of its wait so far (at most
20 s), so a run's batches out do not ask Mailchimp about every waiting batch every
interval.

The jobs are called here directly against the sandbox, without a worker: the next look
is read from the lease the poll left and from RQ's registry of scheduled jobs.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from helpers_export import audience_members, prepare_export, shop_rows, start_export_run
from support import wait_for

import flask_mcsync
from flask_mcsync.batch_sync import MAX_POLL_DELAY, poll_delay
from flask_mcsync.enqueue import _not_before


def test_a_batch_mailchimp_runs_is_polled_at_the_interval() -> None:
    for status in ("started", "preprocessing", "finalizing", "None", "unknown"):
        assert poll_delay(2.0, status, waited=600.0) == 2.0


def test_a_waiting_batch_is_polled_after_an_eighth_of_its_wait_within_bounds() -> None:
    assert poll_delay(2.0, "pending", waited=1.0) == 2.0  # never sooner than the interval
    assert poll_delay(2.0, "pending", waited=80.0) == 10.0
    assert poll_delay(2.0, "pending", waited=3600.0) == MAX_POLL_DELAY == 20.0
    assert poll_delay(60.0, "pending", waited=3600.0) == 60.0  # the owner's longer interval


def _polls_in(seconds: float, spaced: bool) -> tuple[int, float]:
    """Polls of a batch that waits ``seconds`` at the default 2 s, as RQ schedules them
    (whole seconds, see enqueue._not_before), and the longest gap between two."""
    waited, polls, longest = 0.0, 0, 0.0
    while waited < seconds:
        delay = poll_delay(2.0, "pending", waited) if spaced else 2.0
        gap = _not_before(delay).total_seconds()
        waited, polls, longest = waited + gap, polls + 1, max(longest, gap)
    return polls, longest


def test_polls_of_an_hour_pending_batch_grow_with_the_logarithm_of_its_wait() -> None:
    """At the default 2 s, an hour's wait is asked about 185 times instead of 1,200;
    two polls are at most 21 s apart as scheduled (RQ's scheduler adds up to a second),
    under the export window's 30 s without movement."""
    assert _polls_in(3600, spaced=False) == (1200, 3.0)
    polls, longest = _polls_in(3600, spaced=True)
    assert polls == 185 and longest == 21.0
    assert _polls_in(16, spaced=True) == _polls_in(16, spaced=False)  # short waits: as before


def test_the_export_window_waits_longer_than_the_longest_gap_between_two_polls() -> None:
    """Each poll renews its batch's lease, which the export window counts as movement.
    Its hint that no worker may be running (export.js, STALL_S) must wait longer than
    two polls can be apart (a whole-second delay plus RQ's scheduler tick of a second),
    or a batch waiting its turn at Mailchimp would be shown as a stalled worker."""
    script = Path(flask_mcsync.__file__).parent / "static" / "mcsync" / "export.js"
    found = re.search(r"var STALL_S = (\d+);", script.read_text(encoding="utf-8"))
    assert found is not None, "export.js no longer says STALL_S as this test reads it"
    _, longest = _polls_in(3600, spaced=True)
    assert int(found.group(1)) > longest + 1.0 >= MAX_POLL_DELAY


def _one_batch_sent(app: Flask, sandbox: Any) -> tuple[Any, int, str]:
    """An export of one batch, sent to the sandbox; the extension, the batch, its token."""
    from flask_mcsync import batch_sync, planner, state
    from flask_mcsync.models import Batch, PlanChunk

    rows = [r for r in shop_rows(30, seed=7) if r["first_name"] != "Edge"]
    prepare_export(app, rows)
    ext = state(app)
    run_id = start_export_run(app, batch_size=100)
    planner.plan(ext, run_id)
    session = ext.session
    chunks = session.execute(
        sa.select(PlanChunk.id).where(PlanChunk.run_id == run_id).order_by(PlanChunk.seq)
    ).scalars()
    for chunk_id in list(chunks):
        planner.plan_chunk(ext, chunk_id)  # no sender: the batch is queued for a job
    batch_id = session.execute(sa.select(Batch.id).where(Batch.run_id == run_id)).scalar_one()
    session.commit()
    batch_sync.advance(ext, batch_id)  # the batch's job: sends it, schedules its poll
    token = session.execute(sa.select(Batch.lease_token).where(Batch.id == batch_id)).scalar()
    session.commit()
    assert token is not None
    return ext, batch_id, token


def _backdate_send(ext: Any, batch_id: int, seconds: float) -> datetime:
    """Say the batch was sent ``seconds`` ago; when that is, as stored."""
    from flask_mcsync.models import Batch
    from flask_mcsync.times import utcnow

    ext.session.execute(
        sa.update(Batch)
        .where(Batch.id == batch_id)
        .values(submitted_at=utcnow() - timedelta(seconds=seconds))
    )
    ext.session.commit()
    sent_at: datetime = ext.session.execute(
        sa.select(Batch.submitted_at).where(Batch.id == batch_id)
    ).scalar_one()
    ext.session.commit()
    return sent_at


def _next_look_at(ext: Any, batch_id: int) -> tuple[datetime, datetime]:
    """When the batch's lease ends, and when its next poll job is due (RQ's scheduler
    keeps whole seconds)."""
    from rq.registry import ScheduledJobRegistry

    from flask_mcsync.enqueue import batch_job_id, make_queue
    from flask_mcsync.models import Batch

    row = ext.session.execute(
        sa.select(Batch.lease_until, Batch.lease_token).where(Batch.id == batch_id)
    ).one()
    ext.session.commit()
    queue = make_queue(ext)
    due = ScheduledJobRegistry(queue=queue).get_scheduled_time(
        batch_job_id(batch_id, row.lease_token)
    )
    lease_until: datetime = row.lease_until
    return lease_until, due if due.tzinfo else due.replace(tzinfo=timezone.utc)


def _next_look(ext: Any, batch_id: int) -> tuple[float, float]:
    """Seconds from now until the batch's lease ends, and until its next poll job is due."""
    from flask_mcsync.times import utcnow

    lease_until, due = _next_look_at(ext, batch_id)
    now = utcnow()
    return (lease_until - now).total_seconds(), (due - now).total_seconds()


@pytest.mark.slow
def test_a_batch_waiting_behind_others_is_polled_after_an_eighth_of_its_wait(
    app: Flask, sandbox: Any
) -> None:
    from flask_mcsync import batch_sync
    from flask_mcsync.times import utcnow

    sandbox.client.set_faults(batch_start_delay=3600)  # Mailchimp has not started it
    ext, batch_id, token = _one_batch_sent(app, sandbox)
    assert set(sandbox.client.stats()["batches"].values()) == {"pending"}
    sent_at = _backdate_send(ext, batch_id, 80)  # sent 80 s ago, still waiting

    before = utcnow()
    batch_sync.advance(ext, batch_id, token)  # its poll: "pending"
    after = utcnow()

    # The poll read the clock between ``before`` and ``after``: the batch had waited 80 s
    # and a little more, and its next look is an eighth of that wait (10 s and a little)
    # after that moment. Bounded from both sides, however long the poll took.
    def eighth_of_wait(now: datetime) -> timedelta:
        return (now - sent_at) / 8

    assert timedelta(seconds=10) <= eighth_of_wait(before)
    assert eighth_of_wait(after) <= timedelta(seconds=MAX_POLL_DELAY)
    lease_until, due = _next_look_at(ext, batch_id)
    lease = timedelta(seconds=ext.config.lease_seconds)
    tick = timedelta(milliseconds=1)
    low, high = before + eighth_of_wait(before), after + eighth_of_wait(after)
    assert low + lease - tick <= lease_until <= high + lease + tick, (low, lease_until, high)
    # _not_before: a delay of a second or more is rounded up to whole seconds, plus one;
    # RQ's registry then keeps the due time in whole seconds (rounded down).
    assert low <= due <= high + timedelta(seconds=2), (low, due, high)


@pytest.mark.slow
def test_the_batch_mailchimp_is_running_is_polled_at_the_interval(app: Flask, sandbox: Any) -> None:
    from flask_mcsync import batch_sync
    from flask_mcsync.models import Batch

    sandbox.client.set_faults(batch_ops_per_second=1)  # started, and long at it
    ext, batch_id, token = _one_batch_sent(app, sandbox)
    wait_for(
        lambda: audience_members(sandbox),
        timeout=10,
        what="Mailchimp to start the batch",
    )
    assert set(sandbox.client.stats()["batches"].values()) == {"started"}
    _backdate_send(ext, batch_id, 80)

    batch_sync.advance(ext, batch_id, token)  # its poll: "started"

    lease_left, due_in = _next_look(ext, batch_id)
    interval, lease = ext.config.poll_interval, ext.config.lease_seconds
    assert lease_left <= interval + lease + 1, lease_left
    assert due_in <= interval + 1, due_in
    progress = ext.session.execute(
        sa.select(Batch.finished_operations).where(Batch.id == batch_id)
    ).scalar()
    ext.session.commit()
    assert progress is not None and progress >= 1  # what the export window shows
