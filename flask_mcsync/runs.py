"""Manual export runs as rows: start one, read its progress, end it.

The admin pages, the CLI and the jobs all go through these functions. A run's state is
only ever in the database, so the progress window, ``flask mcsync export --wait`` and a
worker that restarts after a crash all see the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import first_export, messages
from . import settings as settings_mod
from .app_state import McSync
from .enqueue import enqueue_plan
from .errors import McSyncError
from .i18n import N_
from .i18n import gettext as _
from .models import Batch, PlanChunk, PlannedAddress, Run
from .outbox import enqueue_items
from .preflight import refusal_message, unmapped_required
from .settings import InvalidSetting
from .statuses import (
    BATCH_ACTIVE,
    BATCH_ENDED,
    BATCH_NOT_ENDED,
    RUN_ENDED,
    BatchStatus,
    ChunkStatus,
    RunKind,
    RunStatus,
)
from .times import utcnow

# The progress window shows this many batches of each status at most: its cost must
# not grow with the run (a million addresses are 1,000 batches).
WINDOW = 20


class ExportError(McSyncError, RuntimeError):
    """A run could not be started; the message says what to do."""


@dataclass(frozen=True)
class Started:
    run: Run
    created: bool  # False: an export of this audience was already running; this is it.


def active_export(session: Session, list_id: str) -> Run | None:
    return session.execute(sa.select(Run).where(Run.active_list_id == list_id)).scalar_one_or_none()


def start_export(
    ext: McSync,
    started_by: str,
    list_id: str | None = None,
    batch_size: Any = None,
    skip_merge_validation: bool = False,
) -> Started:
    """Start a manual export (or return the one already running for the audience).

    Before a new run, the audience's required merge fields are compared with the shop's
    mapping (:func:`preflight.unmapped_required`): when the shop fills none of some
    required field, Mailchimp would refuse the addresses, so the export starts only if
    the owner chose ``skip_merge_validation`` (recorded on the run).

    :raises NoAudience: when no audience is chosen (and none is given).
    :raises ExportError: when the batch size is out of range,
        required merge fields are not filled and not skipped, or the job queue cannot be
        reached.
    """
    session = ext.session
    current = settings_mod.load(session, ext.config)
    list_id = list_id or current.audience()
    running = active_export(session, list_id)
    if running is not None:
        return Started(running, created=False)
    try:
        size = settings_mod.check_batch_size(
            batch_size if batch_size not in (None, "") else current.batch_size, ext.config
        )
    except InvalidSetting as exc:
        raise ExportError(str(exc)) from None
    source = ext.require_source()
    if not skip_merge_validation:
        missing = unmapped_required(ext, source, list_id)
        if missing:
            raise ExportError(refusal_message(missing))
    run = Run(
        kind=RunKind.EXPORT,
        list_id=list_id,
        active_list_id=list_id,
        status=RunStatus.QUEUED,
        started_by=started_by[:120],
        batch_size=size,
        status_if_new=current.status_if_new,
        skip_merge_validation=bool(skip_merge_validation),
    )
    session.add(run)
    try:
        session.commit()
    except IntegrityError:
        # Another "Synchronize" won the race for this audience: show that run.
        session.rollback()
        running = active_export(session, list_id)
        if running is None:  # it ended in between; a retry will start a fresh one
            raise ExportError(_("An export just ended: start the export again.")) from None
        return Started(running, created=False)
    try:
        enqueue_plan(ext, run.id)
    except Exception as exc:  # any failure to queue must leave no run holding the audience
        end_run(session, run.id, RunStatus.FAILED, messages.NOT_QUEUED(error=exc))
        session.commit()
        raise ExportError(
            _(
                "The export could not be queued (%(error)s). Check that Redis is running and"
                " MCSYNC_REDIS_URL points at it, then start the export again.",
                error=exc,
            )
        ) from exc
    return Started(run, created=True)


def end_run(session: Session, run_id: int, status: str, message: str | None = None) -> None:
    """Mark a run ended and free its audience for the next export. The caller commits.

    The signups that waited for it are due again in the same transaction (see
    :mod:`first_export`); the sweep hands them to the workers.
    """
    session.execute(
        sa.update(Run)
        .where(Run.id == run_id, Run.status.not_in(RUN_ENDED))
        .values(status=status, active_list_id=None, finished_at=utcnow(), message=message)
    )
    forget_planned(session, run_id)
    first_export.release(session, run_id)


def forget_planned(session: Session, run_id: int) -> None:
    """Drop the keys planning kept to de-duplicate the run's addresses (see
    :class:`~.models.PlannedAddress`): its planning is over. The caller commits."""
    session.execute(sa.delete(PlannedAddress).where(PlannedAddress.run_id == run_id))


def stop_run(session: Session, run_id: int, message: str) -> None:
    """End a run as failed and leave none of its batches in progress. The caller commits.

    For a cause no batch can get past (Mailchimp refusing the account or the audience):
    the batches not ended are marked failed with the reason, so nothing shows "waiting"
    or "processing" for a run that has stopped. Their addresses got no outcome, and the
    run's message says to export again.
    """
    end_run(session, run_id, RunStatus.FAILED, message)
    # A planner still reading the shop adds no batch after this: the run job loses its
    # lease, and each chunk commits only while the run is running.
    session.execute(
        sa.update(Run).where(Run.id == run_id).values(lease_until=None, lease_token=None)
    )
    stopped = session.execute(
        sa.update(Batch)
        .where(Batch.run_id == run_id, Batch.status.in_(BATCH_NOT_ENDED))
        .values(
            status=BatchStatus.FAILED,
            finished_at=utcnow(),
            lease_until=None,
            lease_token=None,
            last_error=messages.RUN_STOPPED,
        )
        .execution_options(synchronize_session=False)
    )
    count_ended(session, run_id, failed=getattr(stopped, "rowcount", 0) or 0)


def count_ended(session: Session, run_id: int, done: int = 0, failed: int = 0) -> None:
    """Count batches that ended, in the transaction that ends them. The caller commits."""
    if done or failed:
        session.execute(
            sa.update(Run)
            .where(Run.id == run_id)
            .values(
                batches_done=Run.batches_done + done, batches_failed=Run.batches_failed + failed
            )
        )


def count_retry(
    session: Session, run_id: int, seconds: float, batch_retries: int | None = None
) -> None:
    """Count the backoff ``seconds`` a batch waits, and its passing failure when it is
    one (the batch's ``batch_retries``-th), in the transaction that records it on the
    batch. The caller commits."""
    values: dict[str, Any] = {"retry_seconds": Run.retry_seconds + seconds}
    if batch_retries is not None:
        values["retries"] = Run.retries + 1
        values["most_retries"] = sa.case(
            (Run.most_retries < batch_retries, batch_retries), else_=Run.most_retries
        )
    session.execute(sa.update(Run).where(Run.id == run_id).values(values))


def chunks_left(run_id: Any) -> sa.Select[int]:
    """The run's chunks not done yet; ``run_id`` an id, or ``Run.id`` to correlate."""
    return sa.select(PlanChunk.id).where(
        PlanChunk.run_id == run_id, PlanChunk.status != ChunkStatus.DONE
    )


# The run's batches planned and not yet recorded: sent to Mailchimp, being sent, or
# waiting to be sent again (a passing failure, a retry batch, a batch Mailchimp lost).
# From the run row's counters, which every batch added or ended keeps in the same
# transaction (the progress window's "waiting" rests on them too).
BATCHES_OUT = Run.batch_count - Run.batches_done - Run.batches_failed


def batches_out(session: Session, run_id: int) -> int:
    """The run's batches out (:data:`BATCHES_OUT`).

    Those waiting to be sent again count too: in a storm of 429s every send fails at
    once, and planning on would only pile up batches that all go out when their backoff
    ends.
    """
    out = session.execute(sa.select(BATCHES_OUT).where(Run.id == run_id)).scalar()
    return int(out or 0)


def full(ext: McSync, run_id: int, out: int | None = None) -> bool:
    """Whether the run has its fill of batches out (``MCSYNC_BATCHES_IN_FLIGHT``): its
    planning pauses (:func:`~.planner.plan_chunk`). ``out``: the count, when the caller
    read it already."""
    if out is None:
        out = batches_out(ext.session, run_id)
    return out >= ext.config.batches_in_flight


def resumable(ext: McSync, run_id: int) -> tuple[int, str] | None:
    """The run's first paused chunk and its pause's token, when it may go on.

    A paused chunk holds no lease but keeps the token it paused with (a chunk not yet
    started has neither). It may go on once a quarter of the run's fill of batches out
    has ended (not at the first: a pause and a resume cost a few commits), and while no
    chunk of the run is being planned: each job resuming a chunk as the batches end
    would otherwise add its own batch beyond the fill.

    Asked after a batch's step (:func:`~.jobs.advance_batch`), by a chunk's job once the
    chunk paused or ended (the batches that ended meanwhile could resume nothing) and by
    the sweep. Who asks plans the chunk: callers racing each try, and the chunk's lease
    lets one in.
    """
    session = ext.session
    now = utcnow()
    chunks = session.execute(
        sa.select(PlanChunk.id, PlanChunk.lease_token, PlanChunk.lease_until)
        .where(PlanChunk.run_id == run_id, PlanChunk.status != ChunkStatus.DONE)
        .order_by(PlanChunk.seq)
    ).all()  # at most MAX_CHUNKS (16) rows
    first = next((c for c in chunks if c.lease_until is None and c.lease_token), None)
    planning = any(c.lease_until is not None and c.lease_until > now for c in chunks)
    room = (
        first is not None
        and not planning
        and batches_out(session, run_id) <= ext.config.batches_in_flight * 3 // 4
    )
    session.commit()  # ends the read (SQLite keeps a snapshot open until then)
    if first is None or not room:
        return None
    return int(first.id), str(first.lease_token)


def end_planning(ext: McSync, run_id: int) -> bool:
    """Mark the run's planning done once every chunk is, then end the run if its batches
    are. True if this call marked it.

    The last chunk to end calls it. Each chunk commits its own end before looking, so of
    two ending together at least the later one sees both ended; the condition on
    ``planning_done`` lets one win. A worker killed between its chunk's end and this
    leaves every chunk done and planning open: the sweep calls it then.
    """
    session = ext.session
    ended = session.execute(
        sa.update(Run)
        .where(Run.id == run_id, Run.planning_done.is_(False), ~chunks_left(run_id).exists())
        .values(planning_done=True, lease_until=None, lease_token=None)
        .execution_options(synchronize_session=False)
    )
    marked = bool(getattr(ended, "rowcount", 0))
    if marked:
        forget_planned(session, run_id)
    session.commit()
    finish_if_complete(ext, run_id)
    return marked


def finish_if_complete(ext: McSync, run_id: int) -> bool:
    """End the run when it is fully planned and every batch is done or failed.

    Called after each batch commits; the last one to commit sees all the others, so
    exactly one caller ends the run however batches interleave across workers.
    """
    session = ext.session
    # Probes of ix_mcsync_batches_run_status_seq: a few index entries, however many
    # batches the run has.
    pending = (
        sa.select(Batch.id)
        .where(Batch.run_id == run_id, Batch.status.in_(BATCH_NOT_ENDED))
        .exists()
    )
    # Most batches end with others still pending: one read settles it, without the
    # UPDATE below (a write lock on SQLite that the other workers would wait for).
    if session.execute(sa.select(pending)).scalar():
        session.commit()
        return False
    failed = (
        sa.select(Batch.id)
        .where(Batch.run_id == run_id, Batch.status == BatchStatus.FAILED)
        .exists()
    )
    status = RunStatus.FAILED if session.execute(sa.select(failed)).scalar() else RunStatus.FINISHED
    ended = session.execute(
        sa.update(Run)
        .where(
            Run.id == run_id,
            Run.status == RunStatus.RUNNING,
            Run.planning_done.is_(True),
            ~pending,
        )
        .values(
            status=status,
            active_list_id=None,
            finished_at=utcnow(),
            message=(
                None if status == RunStatus.FINISHED else N_("Some batches failed after retries.")
            ),
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(ended, "rowcount", 0):
        if status == RunStatus.FINISHED:
            list_id = session.execute(sa.select(Run.list_id).where(Run.id == run_id)).scalar()
            settings_mod.mark_first_export_done(session, ext.config, list_id)
        # The signups that waited for this export go out now, in this transaction.
        waiting = first_export.release(session, run_id)
        session.commit()
        _wake(ext, waiting)
        return True
    session.commit()
    return False


BATCH_COLUMNS = (
    Batch.seq,
    Batch.status,
    Batch.size,
    Batch.first_address,
    Batch.last_address,
    Batch.finished_operations,
    Batch.total_operations,
    Batch.created,
    Batch.updated,
    Batch.errors,
    Batch.archived,
    Batch.attempts,
    Batch.retries,
    Batch.retry_seconds,
    Batch.last_error,
    Batch.finished_at,
)


def _batch_dict(b: Any) -> dict[str, Any]:
    return {
        "seq": b.seq,
        "status": b.status,
        "size": b.size,
        "first": b.first_address,
        "last": b.last_address,
        "finished_operations": b.finished_operations,
        "total_operations": b.total_operations,
        "created": b.created,
        "updated": b.updated,
        "errors": b.errors,
        "archived": b.archived,
        "attempts": b.attempts,
        "retries": b.retries,
        "retry_seconds": round(b.retry_seconds or 0.0, 1),
        "last_error": b.last_error,
    }


def batches(session: Session, run_id: int) -> list[dict[str, Any]]:
    """Every batch of a run, in order: the run page's full table (not the live window)."""
    rows = session.execute(
        sa.select(*BATCH_COLUMNS).where(Batch.run_id == run_id).order_by(Batch.seq)
    )
    return [_batch_dict(b) for b in rows]


def _window(session: Session, run_id: int) -> list[Any]:
    """The batches the progress window shows: the first few of each status still to
    come, the last few done and failed. Each is an index range read of at most WINDOW
    rows, so the answer costs the same at 10 batches and at 2,000."""
    rows: list[Any] = []
    for status in BatchStatus:
        order = Batch.seq.desc() if status in BATCH_ENDED else Batch.seq
        rows += session.execute(
            sa.select(*BATCH_COLUMNS)
            .where(Batch.run_id == run_id, Batch.status == status)
            .order_by(order)
            .limit(WINDOW)
        ).all()
    return sorted(rows, key=lambda b: b.seq)


def _wake(ext: McSync, ids: list[int]) -> None:
    """Tell the workers about released rows; without Redis the sweep finds them."""
    if ids:
        enqueue_items(ext, ids)


# An estimate needs this much steady running behind it, else it is a guess.
ESTIMATE_MIN_BATCHES = 2
ESTIMATE_MIN_SECONDS = 3.0


def estimate_seconds_left(
    total: int,
    done: int,
    planning_done: bool,
    finished: list[tuple[datetime, int]],
    now: datetime,
) -> int | None:
    """Seconds until the run ends, or None while no honest figure can be given.

    Dividing what is done by the time since the start counts the start-up (a worker
    picking the run up, the shop being read, the first batch waiting its turn at
    Mailchimp) as if it recurred, while batches then finish side by side: such figures
    ran 3 to 9 times too long. The rate is measured instead from the first finished
    batch to now, once enough batches finished to show it, and the total is known.
    """
    if not planning_done or total <= 0 or done >= total:
        return None
    ends = sorted(finished)
    if len(ends) < ESTIMATE_MIN_BATCHES:
        return None
    first_end, first_size = ends[0]
    window = (now - first_end).total_seconds()
    if window < ESTIMATE_MIN_SECONDS:
        return None
    rate = (done - first_size) / window
    if rate <= 0:
        return None
    return max(1, round((total - done) / rate))


def progress(session: Session, run_id: int) -> dict[str, Any] | None:
    """Everything the progress window and ``export --wait`` show, as plain data.

    The counts come from the run row (kept by the batches as they end or retry) and
    from the batches in flight (an index count); ``batches`` is only the window of
    :func:`_window`. Nothing here reads every batch of the run.
    """
    run = session.execute(
        sa.select(Run).where(Run.id == run_id).execution_options(populate_existing=True)
    ).scalar_one_or_none()  # one query, fresh even if the session held the row
    if run is None:
        return None
    active, in_flight_operations, leased_until = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(Batch.finished_operations), 0),
            sa.func.max(Batch.lease_until),
        ).where(Batch.run_id == run_id, Batch.status.in_(BATCH_ACTIVE))
    ).one()
    counts = {
        "done": run.batches_done,
        "failed": run.batches_failed,
        "active": int(active),
        "waiting": max(run.batch_count - run.batches_done - run.batches_failed - int(active), 0),
    }
    window = _window(session, run_id)
    done_addresses = run.created + run.updated + run.archived + run.confirmations + run.errors
    now = utcnow()
    elapsed = ((run.finished_at or now) - run.started_at).total_seconds() if run.started_at else 0
    rate = done_addresses / elapsed if elapsed > 0 else 0.0
    seconds_left = (
        None
        if run.status in RUN_ENDED
        else estimate_seconds_left(
            run.total,
            done_addresses,
            run.planning_done,
            # The last WINDOW batches done: the recent pace, not the whole run's.
            [
                (b.finished_at, b.size)
                for b in window
                if b.status == BatchStatus.DONE and b.finished_at
            ],
            now,
        )
    )
    return {
        "id": run.id,
        "kind": run.kind,
        "list_id": run.list_id,
        "status": run.status,
        "ended": run.status in RUN_ENDED,
        "message": run.message,
        "planning_done": run.planning_done,
        "batch_size": run.batch_size,
        "total": run.total,
        "done": done_addresses,
        "created": run.created,
        "updated": run.updated,
        "errors": run.errors,
        "archived": run.archived,
        "skipped": run.skipped,
        "skip_merge_validation": run.skip_merge_validation,
        "excluded": run.excluded,
        "invalid": run.invalid,
        "duplicates": run.duplicates,
        # What passing failures cost: tries that failed, and the backoff they added.
        "retries": run.retries,
        "most_retries": run.most_retries,
        "retry_seconds": round(run.retry_seconds or 0.0, 1),
        "percent": round(100.0 * done_addresses / run.total, 1)
        if run.total
        else (100.0 if run.status in RUN_ENDED else 0.0),
        "rate": round(rate, 1),
        "seconds_left": seconds_left,
        "elapsed": round(elapsed, 1),
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "batch_count": run.batch_count,
        "batch_counts": counts,
        # Operations Mailchimp already processed in the batches in flight: they move the
        # bar before their batch is counted done.
        "in_flight_operations": int(in_flight_operations),
        # The latest lease of a batch in flight. Each step a worker takes of a batch (a
        # poll too) renews its lease: while this moves, workers are at work, even when
        # Mailchimp has not started the run's batches (the window's stall hint).
        "leased_until": leased_until.isoformat() if leased_until else None,
        "batches": [_batch_dict(b) for b in window],
    }


def latest_export(session: Session, list_id: str | None = None) -> Run | None:
    query = sa.select(Run).where(Run.kind == RunKind.EXPORT)
    if list_id:
        query = query.where(Run.list_id == list_id)
    return session.execute(query.order_by(Run.id.desc()).limit(1)).scalar_one_or_none()
